"""KPI engine benchmark: kpi_table vs a plain per-group pandas loop, on 1,000,000 deals.

    python bench/kpi_bench.py [--deals N] [--loop-owners K] [--loop-months K]

Data: N deals (100 owners in 10 teams, 50,000 accounts, 3 years), N/4 leads, monthly costs per team and
category, quarterly targets per owner and per team. Timed in the same run:
- kpi_table(book, by="owner") and kpi_table(book, by="month"): every KPI for every group;
- the loop a pandas user would write: for each owner, filter the tables to that owner and call the
  single-KPI functions; for each month, call them with that month's dates. The loop is timed on the
  first K groups and extrapolated to all groups (printed as such) so the run stays short.
The loop's values are checked against kpi_table's, so both compute the same thing.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from salessheet import kpi, schema  # noqa: E402
from salessheet.book import Book  # noqa: E402

START = np.datetime64("2023-01-01")
DAYS = 3 * 365


def _frame(table: str, cols: dict) -> pd.DataFrame:
    n = len(next(iter(cols.values())))
    index = pd.RangeIndex(2, 2 + n, name="row")
    out = {}
    for c in schema.TABLES[table].columns:
        v = cols.get(c.name)
        if v is None:
            v = (np.full(n, np.datetime64("NaT"), dtype="datetime64[us]") if c.kind in ("date", "datetime")
                 else np.full(n, np.nan) if c.kind in ("money", "number", "percent", "int")
                 else np.full(n, None, dtype=object))
        # text as object dtype, like the reader (pandas 3 would otherwise infer "str")
        out[c.name] = pd.Series(v, index=index, dtype=object if np.asarray(v).dtype == object else None)
    return pd.DataFrame(out, index=index)


def make_book(n: int, seed: int = 7) -> Book:
    rng = np.random.default_rng(seed)
    owners = np.array([f"Rep {i:03d}" for i in range(100)], dtype=object)
    teams = np.array([f"Team {i}" for i in range(10)], dtype=object)
    accounts = np.array([f"Account {i:05d}" for i in range(50_000)], dtype=object)
    stages = np.array([s.name for s in schema.DEFAULT_STAGES], dtype=object)

    o = rng.integers(0, 100, n)
    stage = rng.choice(len(stages), n, p=[0.08, 0.08, 0.07, 0.07, 0.40, 0.30])
    closed_mask = stage >= 4  # Closed Won, Closed Lost
    created = START + rng.integers(0, DAYS - 30, n).astype("timedelta64[D]")
    closed = (created + rng.integers(1, 120, n).astype("timedelta64[D]")).astype("datetime64[us]")
    closed[~closed_mask] = np.datetime64("NaT")
    expected = (created + rng.integers(10, 180, n).astype("timedelta64[D]")).astype("datetime64[us]")
    expected[closed_mask] = np.datetime64("NaT")
    prob = np.where(rng.random(n) < 0.3, rng.random(n).round(2), np.nan)
    units = np.where(rng.random(n) < 0.2, np.nan, rng.integers(1, 50, n).astype(float))
    deals = _frame("Deals", {
        "Deal ID": np.array([f"D-{i}" for i in range(n)], dtype=object),
        "Account": accounts[rng.integers(0, len(accounts), n)], "Owner": owners[o], "Team": teams[o // 10],
        "Stage": stages[stage], "Probability": prob, "Amount": rng.gamma(2.0, 5000.0, n).round(2), "Units": units,
        "Created Date": created.astype("datetime64[us]"), "Expected Close": expected, "Closed Date": closed})

    m = n // 4
    lo = rng.integers(0, 100, m)
    leads = _frame("Leads", {
        "Lead ID": np.array([f"L-{i}" for i in range(m)], dtype=object),
        "Created Date": (START + rng.integers(0, DAYS, m).astype("timedelta64[D]")).astype("datetime64[us]"),
        "Owner": owners[lo], "Team": teams[lo // 10],
        "Status": np.array(schema.LEAD_STATUSES, dtype=object)[rng.integers(0, 5, m)]})

    months = np.arange(np.datetime64("2023-01"), np.datetime64("2026-01"))
    grid = pd.MultiIndex.from_product([months, teams, schema.COST_CATEGORIES]).to_frame(index=False)
    costs = _frame("Costs", {"Month": grid[0].to_numpy().astype("datetime64[us]"),
                             "Team": grid[1].to_numpy(dtype=object), "Category": grid[2].to_numpy(dtype=object),
                             "Amount": rng.uniform(5_000, 50_000, len(grid)).round(2)})

    q_start = np.arange(np.datetime64("2023-01"), np.datetime64("2026-01"), 3)
    q_end = (q_start + 3).astype("datetime64[D]") - 1
    rep = pd.MultiIndex.from_product([range(len(q_start)), range(100)]).to_frame(index=False)
    team = pd.MultiIndex.from_product([range(len(q_start)), range(10)]).to_frame(index=False)
    targets = _frame("Targets", {
        "Period Start": np.concatenate([q_start[rep[0]], q_start[team[0]]]).astype("datetime64[us]"),
        "Period End": np.concatenate([q_end[rep[0]], q_end[team[0]]]).astype("datetime64[us]"),
        "Owner": np.concatenate([owners[rep[1]], np.full(len(team), None, dtype=object)]),
        "Team": np.concatenate([teams[rep[1] // 10], teams[team[1]]]),
        "Quota": np.concatenate([np.full(len(rep), 400_000.0), np.full(len(team), 4_000_000.0)])})
    return Book(source="bench", tables={"Deals": deals, "Leads": leads, "Costs": costs, "Targets": targets})


def cold(book: Book) -> Book:
    """Forget what the engine memoised on the Book, so every timed run does the whole work."""
    book.__dict__.pop("_kpi_memo", None)
    return book


def timed(f, *a, **k):
    t = time.perf_counter()
    out = f(*a, **k)
    return time.perf_counter() - t, out


def loop_by_owner(book: Book, owners) -> list[dict]:
    rows = []
    for o in owners:
        sub = Book(source=book.source, tables={
            name: t[t["Owner"] == o] if "Owner" in t.columns else t for name, t in book.tables.items()})
        rows.append({"owner": o, **{k: f(sub) for k, f in kpi.KPIS.items() if k != "cac"}})
    return rows


def loop_by_month(book: Book, labels) -> list[dict]:
    rows = []
    for label in labels:
        first, last = kpi.period_bounds(label)
        rows.append({"month": label, **{k: f(book, start=first, end=last) for k, f in kpi.KPIS.items()}})
    return rows


def check(table: pd.DataFrame, rows: list[dict], by: str) -> None:
    t = table.set_index(by)
    for r in rows:
        for k, v in r.items():
            if k == by:
                continue
            w = t.loc[r[by], k]
            assert (v is None and w is None) or math.isclose(v, w, rel_tol=1e-9), (by, r[by], k, v, w)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--deals", type=int, default=1_000_000)
    ap.add_argument("--loop-owners", type=int, default=100, help="owners the loop is timed on (of 100)")
    ap.add_argument("--loop-months", type=int, default=6, help="months the loop is timed on (of 36)")
    args = ap.parse_args(argv)

    t_gen, book = timed(make_book, args.deals)
    print(f"generated {args.deals:,} deals, {len(book.tables['Leads']):,} leads, {len(book.tables['Costs']):,} "
          f"cost rows, {len(book.tables['Targets']):,} targets in {t_gen:.1f} s")
    kpi.kpi_table(book, by="owner")  # warm-up (imports, first-call allocations)

    results = []
    for by, loop, k in (("owner", loop_by_owner, args.loop_owners), ("month", loop_by_month, args.loop_months)):
        runs = [timed(kpi.kpi_table, cold(book), by=by) for _ in range(3)]
        t_table, table = min(r[0] for r in runs), runs[0][1]
        groups = list(table[by])
        subset = groups[:k]
        t_loop, rows = timed(loop, cold(book), subset)
        check(table, rows, by)
        t_all = t_loop / len(subset) * len(groups)
        results.append((by, len(groups), t_table, len(subset), t_loop, t_all, t_all / t_table))

    print(f"\n{'by':<7}{'groups':>7}{'kpi_table s':>13}{'loop groups':>13}{'loop s':>9}{'loop, all groups s':>20}"
          f"{'speed-up':>10}")
    for by, n, tt, k, tl, ta, ratio in results:
        mark = "" if k == n else " (extrapolated)"
        print(f"{by:<7}{n:>7}{tt:>13.3f}{k:>13}{tl:>9.2f}{ta:>20.1f}{ratio:>9.0f}x{mark}")
    print("\nkpi_table: best of 3 runs. Loop: timed on the first groups, scaled to all groups when fewer; "
          "its values equal kpi_table's.")


if __name__ == "__main__":
    main()
