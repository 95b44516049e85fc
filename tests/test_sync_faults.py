"""A sync killed (SIGKILL) at each named point leaves the master and the state either fully old or fully new
(or new state + old master, which the next sync detects and repairs); the next sync completes correctly.
Also: two syncs at once never interleave."""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from salessheet.errors import LockedError
from salessheet.state import default_path, lock
from salessheet.sync import CRASH_POINTS, sync
from test_sync_support import by_key, deal, table, team_xlsx

CLI = [sys.executable, "-m", "salessheet.cli"]


def amounts(master) -> dict:
    return {k: r["Amount"] for k, r in by_key(table(master)).items()}


def state_runs(master) -> list[str]:
    with sqlite3.connect(default_path(master)) as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return [r[0] for r in con.execute("SELECT status FROM runs ORDER BY id")]


def wait_until_locked(master, timeout: float = 60.0) -> None:
    """Return once another process holds the sync lock of this master's state store."""
    import fcntl

    path = str(default_path(master)) + ".lock"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            time.sleep(0.05)
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(fd, fcntl.LOCK_UN)
        except BlockingIOError:
            return
        finally:
            os.close(fd)
        time.sleep(0.05)
    raise AssertionError("the first sync never took the lock")


def run_cli(args, env=None, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(CLI + [str(a) for a in args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})}, **kw)


@pytest.fixture
def synced(tmp_path):
    d = tmp_path / "teams"
    d.mkdir()
    team_xlsx(d / "north.xlsx", [deal("N-1"), deal("N-2", Amount=2000.0)])
    team_xlsx(d / "south.xlsx", [deal("S-1", Amount=3000.0)])
    master = tmp_path / "master.xlsx"
    sync([d], master)
    return d, master


OLD = {"N-1": 1000.0, "N-2": 2000.0, "S-1": 3000.0}
NEW = {"N-1": 5.0, "N-2": 2000.0, "N-3": 7.0, "S-1": 3000.0}


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_killed_at_each_point_then_the_next_sync_completes(synced, point):
    d, master = synced
    team_xlsx(d / "north.xlsx", [deal("N-1", Amount=5.0), deal("N-2", Amount=2000.0), deal("N-3", Amount=7.0)])
    r = run_cli(["sync", d, "--into", master, "--format", "json"], env={"SALESSHEET_TEST_CRASH_AT": point})
    assert r.returncode == -signal.SIGKILL, r.stderr
    runs = state_runs(master)
    got = amounts(master)  # the master opens and holds one whole version
    before_commit = CRASH_POINTS.index(point) < CRASH_POINTS.index("after-state-commit")
    if before_commit:
        assert got == OLD and runs == ["done"]
    elif point == "after-state-commit":  # new state, old master: detectably mid-way
        assert got == OLD and runs == ["done", "committed"]
    else:
        assert got == NEW and runs[-1] in ("committed", "done")
    res = sync([d], master)
    assert amounts(master) == NEW
    if point == "after-state-commit":
        assert res.wrote_master and any("interrupted" in n for n in res.notes)
    again = sync([d], master)
    assert (again.added, again.updated, again.removed, again.wrote_master) == (0, 0, 0, False)
    assert not list(master.parent.glob(".*.tmp")), "temp files left behind"
    assert state_runs(master)[-1] == "no-change" and "committed" not in state_runs(master)
    assert (master.parent / "master.xlsx.bak").exists()


def test_a_second_sync_waits_for_the_first(synced):
    d, master = synced
    team_xlsx(d / "north.xlsx", [deal("N-1", Amount=5.0), deal("N-2", Amount=2000.0), deal("N-3", Amount=7.0)])
    slow = subprocess.Popen(CLI + ["sync", str(d), "--into", str(master), "--format", "json"],
                            env={**os.environ, "SALESSHEET_TEST_SLEEP_AT": "after-read:2"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until_locked(master)  # the first holds the lock (it sleeps after reading)
        second = run_cli(["sync", d, "--into", master, "--format", "json", "--wait", "60"])
        first_out, first_err = slow.communicate(timeout=120)
    finally:
        slow.kill()
    assert slow.returncode == 0, first_err
    assert second.returncode == 0, second.stderr
    first, after = json.loads(first_out), json.loads(second.stdout)
    assert (first["added"], first["updated"]) == (1, 1)
    assert (after["added"], after["updated"], after["removed"]) == (0, 0, 0)  # it ran after the first, whole
    assert amounts(master) == NEW


def test_a_second_sync_that_cannot_wait_fails_clearly(synced):
    d, master = synced
    team_xlsx(d / "north.xlsx", [deal("N-1", Amount=5.0)])
    slow = subprocess.Popen(CLI + ["sync", str(d), "--into", str(master), "--format", "json"],
                            env={**os.environ, "SALESSHEET_TEST_SLEEP_AT": "after-read:8"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until_locked(master)
        t0 = time.monotonic()
        second = run_cli(["sync", d, "--into", master, "--wait", "0.5"])
        waited = time.monotonic() - t0
        slow.communicate(timeout=120)
    finally:
        slow.kill()
    assert second.returncode == 2
    assert "another sync is running" in second.stderr and "Traceback" not in second.stderr
    assert waited >= 0.5
    assert slow.returncode == 0


def test_lock_held_in_process_gives_locked_error_and_changes_nothing(synced):
    d, master = synced
    team_xlsx(d / "north.xlsx", [deal("N-1", Amount=5.0)])
    with lock(default_path(master)):
        with pytest.raises(LockedError, match="another sync"):
            sync([d], master, wait=0.2)
    assert amounts(master) == OLD and state_runs(master) == ["done"]


def test_killed_with_workers_leaves_no_process_holding_the_lock(tmp_path):
    d = tmp_path / "t"
    d.mkdir()
    for i in range(5):
        team_xlsx(d / f"t{i}.xlsx", [deal(f"T{i}-{k}") for k in range(5)])
    master = tmp_path / "m.xlsx"
    r = run_cli(["sync", d, "--into", master], env={"SALESSHEET_TEST_CRASH_AT": "mid-read"})
    assert r.returncode == -signal.SIGKILL
    res = sync([d], master, wait=5)  # would raise LockedError if an orphaned worker kept the lock
    assert res.added == 25
