"""Spreadsheet functions at dashboard scale.

(1) 500 KPI cells over 100,000 deals, each called through the adapter core (udf.evaluate) with the
    tables passed as a host passes them: 2-D lists, header first, dates as float serials. Measured with
    the table cache, twice (the same list object on every call; a fresh equal list on every call), and
    without it (udf.BookCache(size=0)) on a few calls, extrapolated to 500.
(2) `salessheet recalc` on a 100,000-row standard workbook with a Dashboard of salessheet formulas,
    against just reading the Deals table with python-calamine, in the same run.

Run: python bench/udf_bench.py [--rows N] [--cells N] [--nocache-calls N] [--skip-cells] [--skip-recalc]
Goals: (1) all cells under 2 s with the cache and >= 10x faster than without; (2) within 2x of calamine.
"""
from __future__ import annotations

import argparse
import datetime as dt
import random
import re
import tempfile
import time
import zipfile
from pathlib import Path

from salessheet import schema, udf

EPOCH = dt.date(1899, 12, 30)
OWNERS = [f"Rep {i}" for i in range(40)]
TEAMS = [f"Team {i}" for i in range(8)]


def serial(d: dt.date) -> float:
    return float((d - EPOCH).days)


def deal_records(n: int, seed: int = 7) -> list[dict]:
    rnd = random.Random(seed)
    stages = schema.DEFAULT_STAGES
    base = dt.date(2024, 1, 1)
    out = []
    for i in range(n):
        st = stages[rnd.randrange(len(stages))]
        created = base + dt.timedelta(days=rnd.randrange(700))
        owner = rnd.randrange(len(OWNERS))
        out.append({
            "Deal ID": f"D-{i:06d}", "Deal Name": f"Deal {i}", "Account": f"Account {rnd.randrange(8000)}",
            "Owner": OWNERS[owner], "Team": TEAMS[owner % len(TEAMS)], "Lead Source": "Website", "Stage": st.name,
            "Probability": rnd.choice([None, None, 0.2, 0.5]), "Amount": round(rnd.uniform(500, 50000), 2),
            "Units": float(rnd.randrange(1, 20)), "Created Date": created,
            "Expected Close": created + dt.timedelta(days=60),
            "Closed Date": created + dt.timedelta(days=rnd.randrange(5, 150)) if st.is_closed else None})
    return out


def other_records(seed: int = 8) -> dict[str, list[dict]]:
    rnd = random.Random(seed)
    leads = [{"Lead ID": f"L-{i}", "Created Date": dt.date(2024, 1, 1) + dt.timedelta(days=rnd.randrange(700)),
              "Source": "Website", "Owner": rnd.choice(OWNERS), "Team": rnd.choice(TEAMS),
              "Status": rnd.choice(["New", "Working", "Qualified", schema.CONVERTED_STATUS])} for i in range(10_000)]
    months = [dt.date(2024 + m // 12, m % 12 + 1, 1) for m in range(24)]
    costs = [{"Month": m, "Team": t, "Category": "Sales", "Amount": 10_000.0} for m in months for t in TEAMS]
    quarters = [dt.date(2024 + q // 4, 3 * (q % 4) + 1, 1) for q in range(8)]
    targets = [{"Period Start": q, "Period End": (q + dt.timedelta(days=95)).replace(day=1) - dt.timedelta(days=1),
                "Owner": o, "Quota": 250_000.0} for q in quarters for o in OWNERS]
    return {"Leads": leads, "Costs": costs, "Targets": targets}


def as_range(table: str, records: list[dict]) -> list[list]:
    """A range as a host passes it: header row, then values; dates as float serials, blanks None."""
    names = schema.TABLES[table].names
    return [list(names)] + [[serial(v) if isinstance(v, dt.date) else v for v in (r.get(c) for c in names)]
                            for r in records]


def dashboard_calls(n: int) -> list[tuple[str, tuple, tuple]]:
    """n cells: (function, filter args (owner, team, start, end), which ranges it passes)."""
    quarters = [(dt.date(2024 + q // 4, 3 * (q % 4) + 1, 1), None) for q in range(8)]
    quarters = [(s, (s + dt.timedelta(days=95)).replace(day=1) - dt.timedelta(days=1)) for s, _ in quarters]
    names = list(udf.FUNCTIONS)
    calls = []
    for i in range(n):
        fname = names[i % len(names)]
        k = i // len(names)
        start, end = quarters[k % len(quarters)] if k % 3 else (None, None)
        owner = OWNERS[k % len(OWNERS)] if k % 2 and fname != "CAC" else None
        team = TEAMS[k % len(TEAMS)] if not k % 2 or fname == "CAC" else None
        filters = (owner, team, serial(start) if start else None, serial(end) if end else None)
        tables = {"CONVERSIONRATE": ("Leads",), "CAC": ("Deals", "Costs"), "QUOTAATTAINMENT": ("Deals", "Targets")}
        calls.append((fname, filters, tables.get(fname, ("Deals",))))
    return calls


def run_cells(calls, ranges, cache, fresh: bool = False) -> tuple[float, list]:
    """Time every call; with fresh=True each call gets a new equal copy of its ranges (copying not timed)."""
    total, out = 0.0, []
    for fname, filters, tables in calls:
        rs = [[list(r) for r in ranges[t]] if fresh else ranges[t] for t in tables]
        args = [rs[0], *filters, *rs[1:]]
        t0 = time.perf_counter()
        out.append(udf.evaluate(fname, args, cache=cache))
        total += time.perf_counter() - t0
        del rs, args
    return total, out


def bench_cells(rows: int, cells: int, nocache_calls: int) -> None:
    t0 = time.perf_counter()
    ranges = {"Deals": as_range("Deals", deal_records(rows))}
    ranges.update({k: as_range(k, v) for k, v in other_records().items()})
    calls = dashboard_calls(cells)
    print(f"(1) {cells} KPI cells over {rows:,} deals (data built in {time.perf_counter() - t0:.1f} s)")

    fp = min(_timed(lambda: udf._fingerprint(ranges["Deals"])) for _ in range(3))
    print(f"    content fingerprint of the Deals range: {fp * 1000:.0f} ms per call when the list is new")

    results, totals = {}, {}
    for label, fresh in (("same list object per call", False), ("fresh equal list per call", True)):
        cache = udf.BookCache()
        cold, _ = run_cells(calls[:1], ranges, cache, fresh)  # the first cell parses the table
        warm, res = run_cells(calls, ranges, cache, fresh)
        results[label], totals[label] = res, cold + warm
        print(f"    cached, {label}: {cold + warm:6.2f} s for {cells + 1} calls = first parse {cold:.2f} s "
              f"+ {cells} cells {warm:.2f} s ({warm / cells * 1000:.1f} ms/cell); "
              f"hits {cache.hits}, misses {cache.misses}")
    assert _same(*results.values()), "fresh lists gave different results"

    cache = udf.BookCache(size=0)
    sample = calls[:nocache_calls]
    nc, res = run_cells(sample, ranges, cache)
    assert _same(res, results["same list object per call"][:nocache_calls])
    per = nc / len(sample)
    print(f"    no cache: {nc:.2f} s for {len(sample)} calls ({per:.2f} s/call; hits {cache.hits}, misses "
          f"{cache.misses}) -> {per * cells:.0f} s for {cells} (extrapolated)")
    ratios = ", ".join(f"{per * cells / t:.0f}x ({label})" for label, t in totals.items())
    print(f"    speed-up with the cache: {ratios} (goals: all cells < 2 s, >= 10x)")


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _same(a: list, b: list) -> bool:
    def norm(v):
        return (v.code, v.message) if isinstance(v, udf.UDFError) else v
    return [norm(x) for x in a] == [norm(x) for x in b]


# --- (2) recalc on a 100k-row workbook ----------------------------------------------------------


def dashboard_formulas() -> tuple[dict[str, str], dict[str, str]]:
    """Dashboard cells (column E onwards, from row 30) -> formula; and one KPITABLE array by owner."""
    cells = {}
    row = 30
    for fname in udf.FUNCTIONS:
        cells[f"E{row}"] = f'{fname}(Deals[#All],,"{TEAMS[2]}")'
        cells[f"F{row}"] = f'{fname}(Deals[#All],,"{TEAMS[1]}",DATE(2025,1,1),DATE(2025,3,31))'
        if fname != "CAC":
            cells[f"G{row}"] = f'{fname}(,"{OWNERS[3]}",,DATE(2024,7,1),DATE(2024,12,31))'
        row += 1
    arrays = {f"E{row + 2}:Q{row + 2 + len(OWNERS)}": 'KPITABLE(,"owner")'}
    return cells, arrays


def add_formulas(path: Path, sheet_part: str, cells: dict[str, str], arrays: dict[str, str]) -> None:
    """Append formula cells to a worksheet (rows after its last one) by rewriting just that part."""
    from salessheet.formula import parse_cell
    from salessheet.xlsxpkg import atomic_write, rewrite

    with zipfile.ZipFile(path) as z:
        xml = z.read(sheet_part).decode()
    by_row: dict[int, list[tuple[int, str]]] = {}
    for ref, f in cells.items():
        r, c = parse_cell(ref)
        by_row.setdefault(r, []).append((c, f'<c r="{ref}"><f>{_esc(f)}</f><v>0</v></c>'))
    for ref, f in arrays.items():
        first = ref.split(":")[0]
        r, c = parse_cell(first)
        by_row.setdefault(r, []).append((c, f'<c r="{first}"><f t="array" ref="{ref}">{_esc(f)}</f><v>0</v></c>'))
    rows = "".join(f'<row r="{r}">{"".join(x for _, x in sorted(v))}</row>' for r, v in sorted(by_row.items()))
    last = max(int(n) for n in re.findall(r'<row r="(\d+)"', xml))
    assert last < min(by_row), "formulas must go below the sheet's last row"
    xml = xml.replace("</sheetData>", rows + "</sheetData>", 1)
    with atomic_write(path, backup=False) as tmp:
        rewrite(path, tmp, replace={sheet_part: xml.encode()})


def _esc(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def bench_recalc(rows: int, repeat: int) -> None:
    import python_calamine as pc

    from salessheet import template
    from salessheet.recalc import recalc
    from salessheet.xlsxpkg import sheet_parts

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "deals.xlsx"
        t0 = time.perf_counter()
        template.write_workbook(path, tables={"Deals": deal_records(rows), **other_records()})
        with zipfile.ZipFile(path) as z:
            part = sheet_parts(z)[template.DASHBOARD_SHEET]
        cells, arrays = dashboard_formulas()
        add_formulas(path, part, cells, arrays)
        print(f"(2) recalc on a {rows:,}-deal workbook, {len(cells)} formulas + a KPITABLE array added "
              f"({path.stat().st_size / 1e6:.1f} MB, built in {time.perf_counter() - t0:.0f} s)")

        def calamine():
            return pc.CalamineWorkbook.from_path(str(path), load_tables=True).get_table_by_name("Deals").to_python()

        out = Path(d) / "out.xlsx"
        raw = min(_timed(calamine) for _ in range(repeat))
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            res = recalc(path, out)
            times.append(time.perf_counter() - t0)
        assert len(res.cells) >= len(cells) + len(arrays) and not res.skipped, res.skipped
        ours = min(times)
        print(f"    {len(res.cells)} formula cells recalculated (the template's own and the ones added)")
        print(f"    python-calamine read of Deals: {raw:.2f} s; salessheet recalc: {ours:.2f} s "
              f"-> {ours / raw:.2f}x (goal <= 2x); parts rewritten: {', '.join(res.parts)}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--cells", type=int, default=500)
    ap.add_argument("--nocache-calls", type=int, default=5)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--skip-recalc", action="store_true")
    ap.add_argument("--skip-cells", action="store_true")
    args = ap.parse_args()
    if not args.skip_cells:
        bench_cells(args.rows, args.cells, args.nocache_calls)
    if not args.skip_recalc:
        bench_recalc(args.rows, args.repeat)


if __name__ == "__main__":
    main()
