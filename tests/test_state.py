"""The SQLite state store on its own: WAL and transactions, versions and current rows, the lock, read-only
opens that leave no trace, and row history with time in stage."""
from __future__ import annotations

import json
import multiprocessing as mp
import sqlite3
import time

import numpy as np
import pytest

from salessheet.errors import LockedError, SyncError
from salessheet.state import State, default_path, lock, row_history
from salessheet.sync_rows import TableRows


def vals(**kw) -> str:
    return json.dumps({k.replace("_", " "): v for k, v in kw.items()})


def record(st: State, run: int, sid: int, rows: list[tuple], started: str) -> None:
    """One run that read source `sid` with rows (row, key, hash, values json)."""
    r, k, h, v = (list(c) for c in zip(*rows))
    with st.transaction():
        st.add_run(run, started, "done", "m.xlsx", 1, {}, 0.1, True, None, None, {})
        st.record_read(sid, run, f"h{run}", True, {}, {"Deals": TableRows(
            np.array(r), k, np.array(h, dtype=np.int64), [None] * len(r), np.zeros(len(r), dtype=np.int64), v)})


@pytest.fixture
def st(tmp_path):
    s = State.open(tmp_path / "s.db")
    with s.transaction():
        s.source_sid("/t/a.xlsx", "a.xlsx", "file")
    yield s
    s.close()


def test_default_path_is_beside_the_master(tmp_path):
    assert default_path(tmp_path / "m.xlsx") == tmp_path / "m.xlsx.salessheet.db"


def test_wal_journal_and_rollback(st):
    assert st.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with pytest.raises(RuntimeError):
        with st.transaction():
            st.set_meta("x", 1)
            raise RuntimeError("boom")
    assert st.meta("x") is None
    with st.transaction():
        st.set_meta("x", {"a": [1]})
    assert st.meta("x") == {"a": [1]}


def test_versions_keep_first_and_last_run_and_current_is_replaced(st):
    a1, a2 = vals(Stage="Prospecting"), vals(Stage="Proposal")
    record(st, 1, 1, [(2, "D-1", 11, a1), (3, "D-2", 20, vals(Stage="Proposal"))], "2026-01-01T00:00:00")
    record(st, 2, 1, [(2, "D-1", 11, a1)], "2026-01-02T00:00:00")
    record(st, 3, 1, [(5, "D-1", -12, a2)], "2026-01-03T00:00:00")
    rows = {(k, h): (f, l) for k, h, f, l in st.conn.execute("SELECT key, hash, first_run, last_run FROM versions")}
    assert rows == {("D-1", 11): (1, 2), ("D-2", 20): (1, 1), ("D-1", -12): (3, 3)}
    assert st.current_rows(1) == {"Deals": [(5, "D-1", -12, None, 0)]}
    assert st.version_values([("Deals", "D-1", 1, 11)]) == {("Deals", "D-1", 1, 11): a1}
    assert st.next_run_id() == 4


def test_failed_read_keeps_the_last_good_rows(st):
    record(st, 1, 1, [(2, "D-1", 1, vals(Stage="Proposal"))], "2026-01-01T00:00:00")
    with st.transaction():
        st.record_read(1, 2, "bad", False, {"error": "truncated"}, None)
    assert st.current_rows(1) == {"Deals": [(2, "D-1", 1, None, 0)]}
    assert st.sources()["/t/a.xlsx"].ok is False


def _hold(path, ready, seconds):
    with lock(path):
        ready.set()
        time.sleep(seconds)


def test_lock_waits_a_bounded_time_then_fails(tmp_path):
    path = tmp_path / "s.db"
    ready = mp.Event()
    p = mp.Process(target=_hold, args=(path, ready, 3))
    p.start()
    try:
        assert ready.wait(20)
        t0 = time.monotonic()
        with pytest.raises(LockedError, match="another sync is running"):
            with lock(path, wait=0.4):
                pass
        assert 0.4 <= time.monotonic() - t0 < 2.5
        with lock(path, wait=20):  # and is granted once the holder lets go
            assert not p.is_alive() or time.monotonic() - t0 >= 2
    finally:
        p.join(10)


def test_readonly_untouched_open_leaves_no_files(tmp_path):
    s = State.open(tmp_path / "s.db")
    with s.transaction():
        s.set_meta("k", 1)
    s.close()
    before = sorted(p.name for p in tmp_path.iterdir())
    mtime = (tmp_path / "s.db").stat().st_mtime_ns
    with State.open(tmp_path / "s.db", readonly=True, untouched=True) as ro:
        assert ro.meta("k") == 1
        with pytest.raises(SyncError):
            with ro.transaction():
                pass
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert (tmp_path / "s.db").stat().st_mtime_ns == mtime
    with State.open(tmp_path / "none.db", readonly=True) as ro:  # no store yet: an empty one in memory
        assert ro.sources() == {}
    assert not (tmp_path / "none.db").exists()


def test_not_a_state_store(tmp_path):
    (tmp_path / "x.db").write_text("hello")
    with pytest.raises(SyncError):
        State.open(tmp_path / "x.db", readonly=True)


def test_row_history_stages_and_time_in_stage(st, tmp_path):
    record(st, 1, 1, [(2, "D-1", 1, vals(Stage="Prospecting", Last_Updated="2026-03-01T08:00:00"))],
           "2026-03-01T09:00:00")
    record(st, 2, 1, [(2, "D-1", 2, vals(Stage="Negotiation", Last_Updated="2026-03-04T20:00:00"))],
           "2026-03-05T09:00:00")
    record(st, 3, 1, [(2, "D-1", 3, vals(Stage="Negotiation", Amount=5.0))], "2026-03-06T09:00:00")
    record(st, 4, 1, [(2, "D-1", 4, vals(Stage="Closed Lost"))], "2026-03-10T09:00:00")
    h = row_history(tmp_path / "s.db", "D-1", now="2026-03-12T09:00:00")
    assert [v["hash"] for v in h["versions"]] == [1, 2, 3, 4]
    assert [(s["stage"], s["since"], s["until"], s["days"]) for s in h["stages"]] == [
        ("Prospecting", "2026-03-01T08:00:00", "2026-03-04T20:00:00", 3.5),
        ("Negotiation", "2026-03-04T20:00:00", "2026-03-10T09:00:00", 5.5),  # no Last Updated: sync time
        ("Closed Lost", "2026-03-10T09:00:00", None, 2.0)]
    assert h["versions"][2]["changed"] == ["Last Updated", "Amount"]
    with pytest.raises(SyncError, match="not found"):
        row_history(tmp_path / "s.db", "D-404")
    with pytest.raises(SyncError, match="no sync state"):
        row_history(tmp_path / "missing.db", "D-1")


def test_state_file_is_plain_sqlite(st, tmp_path):
    record(st, 1, 1, [(2, "D-1", 1, vals(Stage="Prospecting"))], "2026-03-01T09:00:00")
    with sqlite3.connect(tmp_path / "s.db") as con:
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"runs", "sources", "versions", "current", "master_rows", "meta"} <= tables
