"""Reading a 100,000-row Deals sheet: salessheet.read_workbook against raw python-calamine.

Both read the same file in the same run; the ratio is what matters (goal: within 1.5x).
Run: python bench/read_bench.py [--rows N]
"""
from __future__ import annotations

import argparse
import datetime as dt
import random
import tempfile
import time
from pathlib import Path


def make_file(path: Path, rows: int, as_table: bool = True) -> None:
    import xlsxwriter

    from salessheet import schema

    rnd = random.Random(7)
    wb = xlsxwriter.Workbook(str(path), {"constant_memory": not as_table})
    ws = wb.add_worksheet("Deals")
    datef = wb.add_format({"num_format": "yyyy-mm-dd"})
    money = wb.add_format({"num_format": "#,##0.00"})
    stages = [s.name for s in schema.DEFAULT_STAGES]
    header = schema.DEALS.names
    ws.write_row(0, 0, header)
    base = dt.date(2024, 1, 1)
    for r in range(1, rows + 1):
        created = base + dt.timedelta(days=rnd.randrange(900))
        stage = rnd.choice(stages)
        closed = created + dt.timedelta(days=rnd.randrange(5, 120)) if stage.startswith("Closed") else None
        ws.write_string(r, 0, f"D-{r:06d}")
        ws.write_string(r, 1, f"Deal {r}")
        ws.write_string(r, 2, f"Account {rnd.randrange(5000)}")
        ws.write_string(r, 3, f"Rep {rnd.randrange(100)}")
        ws.write_string(r, 4, f"Team {rnd.randrange(10)}")
        ws.write_string(r, 5, rnd.choice(["Website", "Referral", "Outbound"]))
        ws.write_string(r, 6, stage)
        if rnd.random() < 0.3:
            ws.write_number(r, 7, rnd.choice([0.1, 0.3, 0.6]))
        ws.write_number(r, 8, round(rnd.uniform(500, 50000), 2), money)
        ws.write_number(r, 9, rnd.randrange(1, 50))
        ws.write_datetime(r, 10, created, datef)
        ws.write_datetime(r, 11, created + dt.timedelta(days=60), datef)
        if closed:
            ws.write_datetime(r, 12, closed, datef)
        if stage == "Closed Lost":
            ws.write_string(r, 13, "Price")
        ws.write_string(r, 14, "Call")
        ws.write_datetime(r, 15, dt.datetime(2026, 1, 1, 9, 30), wb.add_format({"num_format": "yyyy-mm-dd hh:mm"}) if r == 1 else datef)
    if as_table:
        ws.add_table(0, 0, rows, len(header) - 1, {"name": "Deals", "columns": [{"header": h} for h in header]})
    wb.close()


def raw_calamine(path: Path, as_table: bool):
    import python_calamine as pc

    wb = pc.CalamineWorkbook.from_path(str(path), load_tables=as_table)
    if as_table:
        return wb.get_table_by_name("Deals").to_python()
    return wb.get_sheet_by_name("Deals").to_python()


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    from salessheet import read_workbook

    with tempfile.TemporaryDirectory() as d:
        print(f"{'layout':<14} {'rows':>8} {'calamine s':>11} {'salessheet s':>13} {'ratio':>6}")
        for as_table in (True, False):
            path = Path(d) / f"deals-{as_table}.xlsx"
            make_file(path, args.rows, as_table)
            book = read_workbook(path)
            assert len(book.tables["Deals"]) == args.rows, len(book.tables["Deals"])
            raw = best(lambda: raw_calamine(path, as_table), args.repeat)
            ours = best(lambda: read_workbook(path), args.repeat)
            layout = "Excel table" if as_table else "plain sheet"
            print(f"{layout:<14} {args.rows:>8} {raw:>11.3f} {ours:>13.3f} {ours / raw:>6.2f}")


if __name__ == "__main__":
    main()
