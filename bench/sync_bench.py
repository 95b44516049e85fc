"""Sync benchmark: 200 team workbooks x 2,000 deals into one master.

    python bench/sync_bench.py [--teams 200] [--deals 2000] [--workers 2] [--cache DIR]

The team workbooks are generated once (xlsxwriter, constant_memory: a Deals sheet and a Stages sheet) into
a cache folder and reused. Each step runs in its own process so its peak memory (ru_maxrss, the reading
workers included) is its own:
- baseline: read every sheet of every file with python-calamine (one process, nothing else);
- first sync into an empty folder: its phases reported separately: hash (content hashes of the sources),
  read (read and encode every source), merge, state (rows into SQLite), sheets (the master's tables built
  as frames), write (the master file written by salessheet.master, hashed, renamed into place);
- second sync, nothing changed: everything skipped by content hash;
- third sync after one row of one team's workbook changed (the master is rewritten).
Goals: read + merge within 1.5x of the baseline; second sync under 10% of the first; memory under 1 GB.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def make_team(path: Path, team: int, deals: int, edit_first: bool = False) -> None:
    import xlsxwriter

    from salessheet import schema

    rnd = random.Random(team)
    wb = xlsxwriter.Workbook(str(path), {"constant_memory": True})
    ws = wb.add_worksheet("Deals")
    datef = wb.add_format({"num_format": "yyyy-mm-dd"})
    stampf = wb.add_format({"num_format": "yyyy-mm-dd hh:mm"})
    stages = [s.name for s in schema.DEFAULT_STAGES]
    ws.write_row(0, 0, schema.DEALS.names)
    base = dt.datetime(2024, 1, 1)
    for r in range(1, deals + 1):
        created = base + dt.timedelta(days=rnd.randrange(700))
        stage = rnd.choice(stages)
        closed = stage.startswith("Closed")
        row = [f"T{team:03d}-{r:05d}", f"Deal {r}", f"Account {rnd.randrange(3000)}", f"Rep {team}-{rnd.randrange(8)}",
               f"Team {team}", rnd.choice(["Website", "Referral", "Outbound"]), stage,
               rnd.choice([None, None, 0.3, 0.6]), round(rnd.uniform(500, 80000), 2), rnd.randrange(1, 40)]
        for c, v in enumerate(row):
            if v is None:
                continue
            (ws.write_number if isinstance(v, (int, float)) else ws.write_string)(r, c, v)
        ws.write_datetime(r, 10, created, datef)
        ws.write_datetime(r, 11, created + dt.timedelta(days=60), datef)
        if closed:
            ws.write_datetime(r, 12, created + dt.timedelta(days=rnd.randrange(5, 120)), datef)
        if stage == "Closed Lost":
            ws.write_string(r, 13, "Price")
        if not closed:
            ws.write_string(r, 14, "Call back")
        if edit_first and r == 1:
            ws.write_string(r, 14, "Edited: send the contract")
        ws.write_datetime(r, 15, created + dt.timedelta(days=rnd.randrange(0, 90), minutes=rnd.randrange(600)),
                          stampf)
    st = wb.add_worksheet("Stages")
    st.write_row(0, 0, schema.STAGES.names)
    for i, s in enumerate(schema.DEFAULT_STAGES, 1):
        st.write_row(i, 0, [s.name, s.order, s.probability, s.is_closed, s.is_won])
    wb.close()


def ensure_teams(cache: Path, teams: int, deals: int) -> list[Path]:
    d = cache / f"teams-{teams}x{deals}"
    d.mkdir(parents=True, exist_ok=True)
    paths = [d / f"team{t:03d}.xlsx" for t in range(teams)]
    missing = [p for p in paths if not p.exists()]
    if missing:
        t0 = time.perf_counter()
        for p in missing:
            make_team(p, int(p.stem[4:]), deals)
        print(f"generated {len(missing)} team workbooks in {time.perf_counter() - t0:.1f}s ({d})")
    return paths


def peak_mb() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, kids) / 1024  # Linux: KiB


# --- steps, each in its own process -------------------------------------------------------------

def step_baseline(paths: list[Path]) -> dict:
    import python_calamine as pc

    t0 = time.perf_counter()
    cells = 0
    for p in paths:
        wb = pc.CalamineWorkbook.from_path(str(p))
        for name in wb.sheet_names:
            rows = wb.get_sheet_by_name(name).to_python()
            cells += sum(len(r) for r in rows)
    return {"seconds": time.perf_counter() - t0, "cells": cells, "peak_mb": peak_mb()}


def step_sync(folder: Path, master: Path, workers: int) -> dict:
    from salessheet.sync import sync

    t0 = time.perf_counter()
    res = sync([folder], master, workers=workers)
    out = res.to_dict()
    out.update({"seconds": time.perf_counter() - t0, "phases": res.phases, "peak_mb": peak_mb(),
                "wrote_master": res.wrote_master, "master_mb": master.stat().st_size / 1e6})
    return out


def run_step(*args) -> dict:
    r = subprocess.run([sys.executable, __file__, "--step", *map(str, args)], capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(r.stderr)
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--teams", type=int, default=200)
    ap.add_argument("--deals", type=int, default=2000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "salessheet-bench")
    ap.add_argument("--step", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.step:
        kind, *rest = args.step
        if kind == "baseline":
            out = step_baseline(sorted(Path(rest[0]).glob("*.xlsx")))
        else:
            out = step_sync(Path(rest[0]), Path(rest[1]), int(rest[2]))
        print(json.dumps(out))
        return

    paths = ensure_teams(args.cache, args.teams, args.deals)
    work = Path(tempfile.mkdtemp(prefix="sync-bench-"))
    try:
        teams = work / "teams"
        teams.mkdir()
        for p in paths:
            shutil.copy2(p, teams / p.name)
        master = work / "master.xlsx"
        base = run_step("baseline", teams)
        first = run_step("sync", teams, master, args.workers)
        second = run_step("sync", teams, master, args.workers)
        make_team(teams / paths[0].name, 0, args.deals, edit_first=True)  # one row of one team's workbook changes
        third = run_step("sync", teams, master, args.workers)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    ph = first["phases"]
    read_merge = ph.get("hash", 0) + ph.get("read", 0) + ph.get("merge", 0)
    rows = args.teams * args.deals
    print(f"\n{args.teams} workbooks x {args.deals:,} deals = {rows:,} rows; workers={args.workers}; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"{'step':<34}{'seconds':>9}{'peak MB':>9}")
    print(f"{'calamine: read every sheet':<34}{base['seconds']:>9.2f}{base['peak_mb']:>9.0f}")
    print(f"{'first sync':<34}{first['seconds']:>9.2f}{first['peak_mb']:>9.0f}")
    for k in ("hash", "read", "merge", "state", "sheets", "write"):
        print(f"{'  ' + k:<34}{ph.get(k, 0):>9.2f}")
    print(f"{'second sync (nothing changed)':<34}{second['seconds']:>9.2f}{second['peak_mb']:>9.0f}")
    print(f"{'third sync (one workbook changed)':<34}{third['seconds']:>9.2f}{third['peak_mb']:>9.0f}")
    for k in ("hash", "read", "merge", "state", "sheets", "write"):
        print(f"{'  ' + k:<34}{third['phases'].get(k, 0):>9.2f}")
    print(f"\nmaster: {first['master_mb']:.1f} MB, {first['added']:,} rows added; third sync: "
          f"{third['added']:,} added, {third['updated']:,} updated, {third['removed']:,} removed")
    print(f"read + merge / calamine read: {read_merge / base['seconds']:.2f}x (goal <= 1.5x)")
    print(f"second / first sync:          {second['seconds'] / first['seconds']:.1%} (goal < 10%)")
    peak = max(first["peak_mb"], second["peak_mb"], third["peak_mb"])
    print(f"peak memory:                  {peak:.0f} MB (goal < 1024 MB)")


if __name__ == "__main__":
    main()
