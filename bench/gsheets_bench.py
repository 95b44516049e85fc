"""Google Sheets sync benchmark against the local Sheets API emulator (tests/gsheets_emulator.py).

    python bench/gsheets_bench.py [--sources 20] [--rows 10,100,1000,5000]

For each row count: `--sources` Google team sheets of that many deals each sync into a new Google master,
then again with nothing changed, then after one deal changed in one sheet. Reported per run: Sheets API reads
per source, Drive requests per source, Sheets writes to the master (and per owned tab), the largest request
body, rows per second, and wall time. Goals: 2 reads per source and a constant number of writes per master
tab, whatever the row count (a write body stays under 2 MB, so a master over ~2 MB of JSON takes more
value-writing requests: they are counted separately).

Wall time includes the emulator (pure Python, in this process: it deep-copies the spreadsheet on every
batchUpdate and dominates the wall time); "client cpu s" is the CPU time of the thread running the sync, i.e.
salessheet's own cost (building, hashing and encoding the rows), and rows/s is given both ways over the
master's rows (sources x rows).

Pacing is turned off here (the emulator has no quota) to measure salessheet's own cost; against Google the
per-user quota of 60 reads a minute sets the pace: the "at quota" column is what the reads alone would take
at salessheet's default 55 a minute.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]


def team_rows(team: int, n: int) -> list[list]:
    import datetime as dt

    from salessheet import schema

    stages = [s.name for s in schema.DEFAULT_STAGES]
    rows = [list(schema.DEALS.names)]
    for j in range(n):
        d = {"Deal ID": f"T{team}-{j}", "Deal Name": f"Deal {j}", "Account": f"Account {j % 97}",
             "Owner": f"Rep {j % 7}", "Team": f"Team {team}", "Lead Source": "Website", "Stage": stages[j % 6],
             "Amount": 1000.0 + j, "Units": 1 + j % 5, "Created Date": dt.date(2026, 1, 1) + dt.timedelta(days=j % 300),
             "Next Step": "Call back", "Last Updated": dt.datetime(2026, 6, 1, 9, 30) + dt.timedelta(minutes=j)}
        rows.append([d.get(c) for c in schema.DEALS.names])
    return rows


def run(n_sources: int, n_rows: int) -> list[dict]:
    from gsheets_emulator import Emulator

    from salessheet import gsheets, schema
    from salessheet.reader import column_letter
    from salessheet.sync import sync

    out = []
    with Emulator() as emu, tempfile.TemporaryDirectory() as tmp:
        keys = [emu.create_spreadsheet(f"Team {i}", sheets={"Deals": team_rows(i, n_rows)}) for i in range(n_sources)]
        master = emu.create_spreadsheet("Master", sheets={"Notes": [["mine"]]})
        client = gsheets.connect(session=emu.session(), pacer=gsheets.Pacer(reads=10**9, writes=10**9), fresh=True)
        gsheets.use(client=client)
        amount = column_letter(schema.DEALS.names.index("Amount"))
        for label in ("first", "unchanged", "one deal changed"):
            if label == "one deal changed":
                client.write_values(keys[0], [{"range": f"'Deals'!{amount}2", "values": [[5.0]]}])
            emu.reset_requests()
            t0, c0 = time.perf_counter(), time.thread_time()
            r = sync([f"gsheet:{k}" for k in keys], f"gsheet:{master}", state=Path(tmp) / "s.db")
            wall, cpu = time.perf_counter() - t0, time.thread_time() - c0
            reqs = emu.requests
            v4 = [q for q in reqs if q.path.startswith("/v4/")]
            src_reads = [q for q in v4 if q.method == "GET" and master not in q.path]
            writes = [q for q in v4 if q.method != "GET"]
            value_writes = [q for q in writes if q.path.endswith("values:batchUpdate")]
            biggest = max((len(json.dumps(q.body)) for q in writes if q.body), default=0)
            owned = 10  # the owned tabs a master gets (Deals ... Dashboard)
            out.append({
                "rows/source": n_rows, "run": label, "sources read": n_sources - r.skipped_sources,
                "reads/source read": round(len(src_reads) / max(n_sources - r.skipped_sources, 1), 2),
                "drive/source": round(sum(q.path.startswith("/drive/") for q in reqs) / n_sources, 2),
                "master reads": sum(q.method == "GET" and master in q.path for q in v4),
                "master writes": len(writes), "value writes": len(value_writes),
                "writes/owned tab": round(len(writes) / owned, 2), "largest body KB": round(biggest / 1024),
                "rows read": r.rows_read, "wall s": round(wall, 2), "client cpu s": round(cpu, 2),
                "rows/s (wall)": round(n_sources * n_rows / wall),
                "rows/s (client cpu)": round(n_sources * n_rows / cpu),
                "at quota s": round(sum(q.method == "GET" for q in v4) / 55 * 60),
            })
        gsheets.use()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sources", type=int, default=20)
    ap.add_argument("--rows", default="10,100,1000,5000")
    a = ap.parse_args()
    results = [row for n in map(int, a.rows.split(",")) for row in run(a.sources, n)]
    cols = list(results[0])
    widths = [max(len(c), *(len(str(r[c])) for r in results)) for c in cols]
    print("  ".join(c.rjust(w) for c, w in zip(cols, widths)))
    for r in results:
        print("  ".join(str(r[c]).rjust(w) for c, w in zip(cols, widths)))


if __name__ == "__main__":
    main()
