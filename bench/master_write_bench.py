"""Writing the sync master: salessheet.master.write_master against xlsxwriter and rustpy-xlsxwriter.

Every writer gets the same Deals frame (20 columns: the standard 16 plus Source, Source Row, Synced At
and an extra text column, with blanks) and runs in its own process (time and peak memory of that
writer alone; building the frame is not timed, and "frame-only" shows the memory the frame itself
takes). Also timed: replacing one small owned sheet, and the whole Deals sheet, in an existing master
that holds a chart (only the owned parts are rewritten, every other part is copied as it is).

Run: python bench/master_write_bench.py [--rows 100000 400000] [--writers ...] [--repeat 2]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WRITERS = ("frame-only", "salessheet", "salessheet-zlib", "rustpy-xlsxwriter", "xlsxwriter", "replace-small",
           "replace-deals")


def make_deals(n: int, seed: int = 7):
    import numpy as np
    import pandas as pd

    from salessheet import schema

    rng = np.random.default_rng(seed)
    stages = np.array([s.name for s in schema.DEFAULT_STAGES], dtype=object)
    st = stages[rng.integers(0, len(stages), n)]
    created = np.datetime64("2023-01-01") + rng.integers(0, 900, n).astype("timedelta64[D]")
    closed = np.where(pd.Series(st).str.startswith("Closed").to_numpy(),
                      created + rng.integers(5, 120, n).astype("timedelta64[D]"), np.datetime64("NaT"))

    def pick(values, k=None):
        values = np.array(values, dtype=object)
        return pd.Series(values[rng.integers(0, len(values), n)] if k is None else values, dtype=object)

    ids = np.array([f"D-{i:07d}" for i in range(n)], dtype=object)
    return pd.DataFrame({
        "Deal ID": pd.Series(ids, dtype=object),
        "Deal Name": pd.Series([f"Deal {i} & co" if i % 1000 == 0 else f"Deal {i}" for i in range(n)], dtype=object),
        "Account": pick([f"Account {i}" for i in range(5000)]),
        "Owner": pick([f"Rep {i}" for i in range(100)]),
        "Team": pick([f"Team {i}" for i in range(10)]),
        "Lead Source": pick(list(schema.DEFAULT_LEAD_SOURCES)),
        "Stage": pd.Series(st, dtype=object),
        "Probability": np.where(rng.random(n) < 0.3, rng.choice([0.1, 0.3, 0.6], n), np.nan),
        "Amount": np.round(rng.uniform(500, 50000, n), 2),
        "Units": rng.integers(1, 50, n).astype(float),
        "Created Date": created.astype("datetime64[us]"),
        "Expected Close": (created + 60).astype("datetime64[us]"),
        "Closed Date": closed.astype("datetime64[us]"),
        "Lost Reason": pd.Series(np.where(st == "Closed Lost", "Price", None), dtype=object),
        "Next Step": pd.Series(np.where(rng.random(n) < 0.5, "Call back", None), dtype=object),
        "Last Updated": (np.datetime64("2025-01-01T00:00") + rng.integers(0, 10**6, n).astype("timedelta64[m]"))
        .astype("datetime64[us]"),
        "Source": pick([f"team{i:03d}.xlsx" for i in range(200)]),
        "Source Row": rng.integers(2, 2002, n).astype(float),
        "Synced At": np.full(n, np.datetime64("2025-06-01T12:00:00", "us")),
        "Region": pd.Series(np.where(rng.random(n) < 0.1, '=HYPERLINK("x")', "EMEA"), dtype=object),
    })


def _master_with_chart(path: Path, df) -> None:
    """A master as a manager keeps it: salessheet's sheets plus a Report sheet with a chart on Deals."""
    import xlsxwriter

    from salessheet.master import write_master

    base = path.with_name("report.xlsx")
    wb = xlsxwriter.Workbook(str(base))
    ws = wb.add_worksheet("Report")
    ws.write_formula("B1", "=SUM(Deals!I:I)")
    chart = wb.add_chart({"type": "column"})
    chart.add_series({"values": "=Deals!$I$2:$I$50", "categories": "=Deals!$A$2:$A$50"})
    ws.insert_chart("D2", chart)
    wb.close()
    write_master(base, {"Deals": df}, out=path)
    base.unlink()


def run_one(writer: str, rows: int, tmp: Path) -> dict:
    if writer == "salessheet-zlib":
        sys.modules["isal"] = None  # the fallback deflate (zlib) when isal is not installed
    import pandas as pd

    df = make_deals(rows)
    out = tmp / f"{writer}-{rows}.xlsx"
    if writer.startswith("replace"):
        _master_with_chart(out, df)
    t = time.perf_counter()
    if writer == "frame-only":  # the baseline: memory of the frame alone, nothing written
        out.write_bytes(b"")
    elif writer in ("salessheet", "salessheet-zlib"):
        from salessheet.master import write_master

        write_master(out, {"Deals": df})
    elif writer == "replace-small":
        from salessheet.master import write_master

        write_master(out, {"Sync Log": pd.DataFrame({"Time": [pd.Timestamp("2025-06-01 12:00")], "Sources": [200]})})
    elif writer == "replace-deals":
        from salessheet.master import write_master

        write_master(out, {"Deals": df.iloc[::-1]})
    elif writer == "rustpy-xlsxwriter":
        import rustpy_xlsxwriter as rp

        frame = df.copy()
        for c in frame.columns:  # it rejects NaT; None is a blank
            if frame[c].dtype.kind == "M":
                frame[c] = frame[c].astype(object).where(frame[c].notna(), None)
        rp.FastExcel(str(out)).freeze(row=1).format(datetime_format="yyyy-mm-dd").sheet(
            "Deals", frame, autofilter=True).save()
    elif writer == "xlsxwriter":
        _xlsxwriter(out, df)
    else:
        raise SystemExit(f"unknown writer {writer}")
    seconds = time.perf_counter() - t
    return {"writer": writer, "rows": rows, "seconds": round(seconds, 2), "mb": round(out.stat().st_size / 1e6, 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


def _xlsxwriter(out: Path, df) -> None:
    """xlsxwriter in constant_memory mode, written the fast way (typed writes, prepared columns).
    constant_memory cannot add a table, so this is a plain sheet with an autofilter."""
    import pandas as pd
    import xlsxwriter

    wb = xlsxwriter.Workbook(str(out), {"constant_memory": True, "strings_to_formulas": False,
                                        "strings_to_numbers": False, "strings_to_urls": False})
    ws = wb.add_worksheet("Deals")
    date_f = wb.add_format({"num_format": "yyyy-mm-dd"})
    ws.freeze_panes(1, 0)
    ws.write_row(0, 0, list(df.columns))
    cols = []
    for c in df.columns:
        s = df[c]
        if s.dtype.kind == "M":
            cols.append(([None if v is pd.NaT else v.to_pydatetime() for v in s], ws.write_datetime, date_f))
        elif s.dtype.kind == "f":
            cols.append(([None if v != v else v for v in s.tolist()], ws.write_number, None))
        else:
            cols.append((s.tolist(), ws.write_string, None))
    for r in range(len(df)):
        for j, (vals, write, fmt) in enumerate(cols):
            v = vals[r]
            if v is not None:
                write(r + 1, j, v, fmt)
    ws.autofilter(0, 0, len(df), df.shape[1] - 1)
    wb.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, nargs="+", default=[100_000, 400_000])
    ap.add_argument("--writers", nargs="+", default=list(WRITERS), choices=WRITERS)
    ap.add_argument("--repeat", type=int, default=1, help="runs per writer and size; the fastest is reported")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        with tempfile.TemporaryDirectory() as d:
            print(json.dumps(run_one(args.one, args.rows[0], Path(d))))
        return
    print(f"{'writer':<20}{'rows':>9}{'seconds':>9}{'MB':>7}{'peak RSS MB':>13}")
    for rows in args.rows:
        for w in args.writers:
            if w == "rustpy-xlsxwriter":
                import importlib.util

                if importlib.util.find_spec("rustpy_xlsxwriter") is None:
                    print(f"{w:<20}{rows:>9}  (not installed: pip install rustpy-xlsxwriter)")
                    continue
            best = None
            for _ in range(args.repeat):
                env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
                r = subprocess.run([sys.executable, __file__, "--one", w, "--rows", str(rows)], capture_output=True,
                                   text=True, env=env)
                if r.returncode:
                    print(f"{w:<20}{rows:>9}  failed: {r.stderr.strip().splitlines()[-1]}")
                    break
                res = json.loads(r.stdout.strip().splitlines()[-1])
                best = res if best is None or res["seconds"] < best["seconds"] else best
            if best:
                print(f"{w:<20}{rows:>9}{best['seconds']:>9}{best['mb']:>7}{best['peak_rss_mb']:>13}", flush=True)


if __name__ == "__main__":
    main()
