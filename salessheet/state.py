"""The sync state store: an SQLite file that remembers every run and every version of every row.

Tables (all written in one transaction per sync, WAL journal, synchronous=FULL):
- ``runs``: one row per sync (time, options, counts, master hash before/after, whether it wrote the master).
- ``sources``: per source its content hash when last read, whether that read worked, and what the read
  found besides rows (issues, Stages, column order) so an unchanged source need not be read again.
- ``versions``: every distinct version of every row seen in a source: (table, key, source, content hash)
  -> values as JSON, first and last run that saw it. Never deleted: it is the history of every deal.
- ``current``: which version each row of each source had at its last good read (with its sheet row).
- ``master_rows``: what the master holds per (table, key): the source version it came from, the hash of
  the values written, Synced At, Sync Status, and the values themselves only when they differ from that
  source version (edits made in the master, columns only the master has).
- ``meta``: small settings, among them the hash the master file must have if nobody touched it.
Row hashes are 64-bit blake2b digests of a row's canonical JSON (sync_rows.row_hash), stored as INTEGER.

One sync at a time: ``lock()`` takes an exclusive fcntl lock on ``<state>.lock`` (released by the OS
even when the process is killed) and waits a bounded time for it, then raises LockedError.
"""
from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from . import schema
from .errors import LockedError, SyncError

SCHEMA_VERSION = "1"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY, started TEXT NOT NULL, finished TEXT, status TEXT NOT NULL, master TEXT,
    sources INTEGER, counts TEXT, duration REAL, wrote_master INTEGER NOT NULL DEFAULT 0,
    master_before TEXT, master_after TEXT, options TEXT);
CREATE TABLE IF NOT EXISTS sources (
    sid INTEGER PRIMARY KEY, id TEXT UNIQUE NOT NULL, name TEXT, kind TEXT, content_hash TEXT,
    ok INTEGER NOT NULL DEFAULT 0, read_run INTEGER, info TEXT);
CREATE TABLE IF NOT EXISTS versions (
    tbl TEXT NOT NULL, key TEXT NOT NULL, sid INTEGER NOT NULL, hash INTEGER NOT NULL, vals TEXT NOT NULL,
    first_run INTEGER NOT NULL, last_run INTEGER NOT NULL, row INTEGER,
    PRIMARY KEY (tbl, key, sid, hash)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS current (
    sid INTEGER NOT NULL, tbl TEXT NOT NULL, row INTEGER NOT NULL, key TEXT NOT NULL, hash INTEGER NOT NULL,
    updated TEXT, flags INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (sid, tbl, row)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS master_rows (
    tbl TEXT NOT NULL, key TEXT NOT NULL, sid INTEGER, src_hash INTEGER, mhash INTEGER NOT NULL, row INTEGER,
    synced_at TEXT, status TEXT, vals TEXT,
    PRIMARY KEY (tbl, key)) WITHOUT ROWID;
"""


def default_path(master: Path) -> Path:
    """The state file beside the master: ``<master>.salessheet.db``."""
    master = Path(master)
    return master.with_name(master.name + ".salessheet.db")


@dataclass
class SourceRecord:
    sid: int
    id: str
    name: str
    kind: str
    content_hash: str | None
    ok: bool
    read_run: int | None
    info: dict


@dataclass
class MasterRow:
    """One row of one master table as the state knows it. ``vals`` is JSON."""

    key: str
    sid: int | None
    src_hash: int | None
    mhash: int
    row: int | None
    synced_at: str | None
    status: str
    vals: str


class State:
    """An open state store. ``State.open(path)`` creates it; ``readonly=True`` never writes (dry runs)."""

    def __init__(self, path: Path | None, conn: sqlite3.Connection, readonly: bool):
        self.path, self.conn, self.readonly = path, conn, readonly

    @classmethod
    def open(cls, path, readonly: bool = False, busy_timeout: float = 30.0, untouched: bool = False) -> "State":
        """readonly: never write. untouched (with readonly, for dry runs under the sync lock): not even the
        -wal/-shm files SQLite makes beside a WAL database may appear."""
        path = Path(path)
        if readonly:
            if not path.exists():  # a dry run before the first sync: an empty state in memory
                conn = sqlite3.connect(":memory:", isolation_level=None)
                conn.executescript(_SCHEMA)
                return cls(None, conn, True)
            try:
                if untouched and not Path(str(path) + "-wal").exists():
                    # No writer holds it (we hold the lock) and no WAL is pending: the file is all there is.
                    uri = f"{path.resolve().as_uri()}?mode=ro&immutable=1"
                    conn = sqlite3.connect(uri, uri=True, isolation_level=None)
                else:
                    conn = sqlite3.connect(str(path), isolation_level=None, timeout=busy_timeout)
                    conn.execute("PRAGMA query_only = 1")
                conn.execute("SELECT count(*) FROM meta").fetchone()
            except sqlite3.DatabaseError as e:
                raise SyncError(f"{path}: not a sync state store ({e})") from None
            return cls(path, conn, True)
        try:
            conn = sqlite3.connect(str(path), isolation_level=None, timeout=busy_timeout)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.executescript(_SCHEMA)
        except sqlite3.DatabaseError as e:
            raise SyncError(f"{path}: the sync state store cannot be opened ({e}); move it away to start afresh"
                            ) from None
        st = cls(path, conn, False)
        if st.meta("schema") is None:
            st.conn.execute("INSERT OR REPLACE INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
        return st

    def close(self) -> None:
        self.conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- reading -------------------------------------------------------------------------------

    def meta(self, k: str, default=None):
        row = self.conn.execute("SELECT v FROM meta WHERE k = ?", (k,)).fetchone()
        return default if row is None else json.loads(row[0])

    def sources(self) -> dict[str, SourceRecord]:
        out = {}
        for sid, id_, name, kind, h, ok, run, info in self.conn.execute(
                "SELECT sid, id, name, kind, content_hash, ok, read_run, info FROM sources"):
            out[id_] = SourceRecord(sid, id_, name, kind, h, bool(ok), run, json.loads(info or "{}"))
        return out

    def source_names(self) -> dict[int, str]:
        return dict(self.conn.execute("SELECT sid, name FROM sources"))

    def current_rows(self, sid: int) -> dict[str, list[tuple]]:
        """table -> [(row, key, hash, updated, flags)] of a source's last good read, in sheet order."""
        out: dict[str, list[tuple]] = {}
        for tbl, row, key, h, upd, flags in self.conn.execute(
                "SELECT tbl, row, key, hash, updated, flags FROM current WHERE sid = ? ORDER BY tbl, row", (sid,)):
            out.setdefault(tbl, []).append((row, key, h, upd, flags))
        return out

    def version_values(self, wanted: Iterable[tuple[str, str, int, str]]) -> dict[tuple, str]:
        """(tbl, key, sid, hash) -> values JSON."""
        out = {}
        cur = self.conn.cursor()
        for w in wanted:
            r = cur.execute("SELECT vals FROM versions WHERE tbl=? AND key=? AND sid=? AND hash=?", w).fetchone()
            if r:
                out[w] = r[0]
        return out

    def master_rows(self) -> dict[str, list[tuple]]:
        """table -> [(key, sid, src_hash, mhash, row, synced_at, status)]: the master as the last sync wrote it
        (values apart: master_vals / iter_master_vals)."""
        out: dict[str, list[tuple]] = {}
        for r in self.conn.execute("SELECT tbl, key, sid, src_hash, mhash, row, synced_at, status FROM master_rows"):
            out.setdefault(r[0], []).append(r[1:])
        return out

    _VALS = ("SELECT m.key, COALESCE(m.vals, v.vals, '{}') FROM master_rows m LEFT JOIN versions v "
             "ON v.tbl = m.tbl AND v.key = m.key AND v.sid = m.sid AND v.hash = m.src_hash WHERE m.tbl = ?")

    def master_vals(self, tbl: str, key: str) -> str | None:
        """The values (JSON) of one master row: its own when stored, else its source version's."""
        r = self.conn.execute(self._VALS + " AND m.key = ?", (tbl, key)).fetchone()
        return r[1] if r else None

    def iter_master_vals(self, tbl: str) -> Iterator[tuple[str, str]]:
        """(key, values JSON) of every master row of a table, streamed."""
        cur = self.conn.execute(self._VALS, (tbl,))
        while rows := cur.fetchmany(10_000):
            yield from rows

    def master_status_counts(self) -> dict[str, int]:
        return dict(self.conn.execute("SELECT status, count(*) FROM master_rows GROUP BY status"))

    def runs(self, wrote_master_only: bool = False) -> list[dict]:
        q = ("SELECT id, started, finished, status, master, sources, counts, duration, wrote_master FROM runs"
             + (" WHERE wrote_master = 1" if wrote_master_only else "") + " ORDER BY id")
        return [{"id": i, "started": s, "finished": f, "status": st, "master": m, "sources": n,
                 "counts": json.loads(c or "{}"), "duration": d, "wrote_master": bool(w)}
                for i, s, f, st, m, n, c, d, w in self.conn.execute(q)]

    def next_run_id(self) -> int:
        return (self.conn.execute("SELECT max(id) FROM runs").fetchone()[0] or 0) + 1

    def history(self, key: str, tbl: str = "Deals") -> list[dict]:
        """Every version of one row, oldest first, with the times of the runs that first and last saw it."""
        q = ("SELECT v.hash, v.vals, v.first_run, v.last_run, v.row, s.name, s.id, r1.started, r2.started, "
             "EXISTS(SELECT 1 FROM current c WHERE c.sid = v.sid AND c.tbl = v.tbl AND c.key = v.key "
             "AND c.hash = v.hash) FROM versions v JOIN sources s ON s.sid = v.sid "
             "LEFT JOIN runs r1 ON r1.id = v.first_run LEFT JOIN runs r2 ON r2.id = v.last_run "
             "WHERE v.tbl = ? AND v.key = ? ORDER BY v.first_run, v.last_run, s.name")
        return [{"hash": h, "values": json.loads(vals), "first_run": fr, "last_run": lr, "row": row,
                 "source": name, "source_id": sid_, "first_seen": t1, "last_seen": t2, "current": bool(cur)}
                for h, vals, fr, lr, row, name, sid_, t1, t2, cur in self.conn.execute(q, (tbl, key))]

    # -- writing -------------------------------------------------------------------------------

    @contextmanager
    def transaction(self):
        """BEGIN IMMEDIATE ... COMMIT; rolled back on any exception (and by SQLite if the process dies)."""
        if self.readonly:
            raise SyncError("the state store is open read-only")
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def set_meta(self, k: str, v) -> None:
        self.conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (k, json.dumps(v)))

    def source_sid(self, id_: str, name: str, kind: str) -> int:
        self.conn.execute("INSERT INTO sources (id, name, kind) VALUES (?, ?, ?) "
                          "ON CONFLICT(id) DO UPDATE SET name = excluded.name, kind = excluded.kind",
                          (id_, name, kind))
        return self.conn.execute("SELECT sid FROM sources WHERE id = ?", (id_,)).fetchone()[0]

    def record_read(self, sid: int, run: int, content_hash: str | None, ok: bool, info: dict,
                    rows: dict | None) -> None:
        """A source was read in `run`. rows: table -> TableRows (sync_rows.py) with their JSON values (None: the
        read failed; the previous rows stay the source's current ones)."""
        from itertools import repeat

        self.conn.execute("UPDATE sources SET content_hash = ?, ok = ?, read_run = ?, info = ? WHERE sid = ?",
                          (content_hash, int(ok), run, json.dumps(info, ensure_ascii=False), sid))
        if rows is None:
            return
        self.conn.execute("DELETE FROM current WHERE sid = ?", (sid,))
        for tbl, t in rows.items():
            n, r, h = len(t), t.row.tolist(), t.hash.tolist()
            self.conn.executemany(
                "INSERT INTO versions (tbl, key, sid, hash, vals, first_run, last_run, row) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(tbl, key, sid, hash) DO UPDATE SET "
                "last_run = excluded.last_run, row = excluded.row",
                zip(repeat(tbl, n), t.key, repeat(sid, n), h, t.json, repeat(run, n), repeat(run, n), r))
            self.conn.executemany(
                "INSERT OR REPLACE INTO current (sid, tbl, row, key, hash, updated, flags) VALUES (?,?,?,?,?,?,?)",
                zip(repeat(sid, n), repeat(tbl, n), r, t.key, h, t.updated or repeat(None, n), t.flags.tolist()))

    def put_master_rows(self, tbl: str, rows: Iterable[tuple]) -> None:
        """rows: (key, sid, src_hash, mhash, row, synced_at, status, vals): vals None when they are the source
        version's, sync_merge.KEEP to keep the ones stored."""
        self.conn.executemany(
            "INSERT INTO master_rows (tbl, key, sid, src_hash, mhash, row, synced_at, status, vals) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(tbl, key) DO UPDATE SET sid = excluded.sid, "
            "src_hash = excluded.src_hash, mhash = excluded.mhash, row = excluded.row, "
            "synced_at = excluded.synced_at, status = excluded.status, "
            "vals = CASE WHEN excluded.vals = char(0) || 'keep' THEN master_rows.vals ELSE excluded.vals END",
            ((tbl, *r) for r in rows))

    def delete_master_rows(self, tbl: str, keys: Iterable[str]) -> None:
        self.conn.executemany("DELETE FROM master_rows WHERE tbl = ? AND key = ?", ((tbl, k) for k in keys))

    def add_run(self, run: int, started: str, status: str, master: str, sources: int, counts: dict,
                duration: float, wrote_master: bool, master_before: str | None, master_after: str | None,
                options: dict) -> None:
        self.conn.execute(
            "INSERT INTO runs (id, started, finished, status, master, sources, counts, duration, wrote_master, "
            "master_before, master_after, options) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (run, started, _now(), status, master, sources, json.dumps(counts), duration, int(wrote_master),
             master_before, master_after, json.dumps(options)))

    def set_run_status(self, run: int, status: str) -> None:
        self.conn.execute("UPDATE runs SET status = ?, finished = ? WHERE id = ?", (status, _now(), run))


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S")


_held: list[int] = []  # fds of locks this process holds (worker processes close their inherited copies)


def held_lock_fd() -> int | None:
    return _held[-1] if _held else None


@contextmanager
def lock(state_path: Path, wait: float = 30.0, create: bool = True) -> Iterator[None]:
    """Hold the exclusive sync lock of a state store, waiting up to `wait` seconds for it. create=False: when
    there is no lock file (no sync ever ran), hold nothing rather than create one."""
    path = Path(str(state_path) + ".lock")
    if not create and not path.exists():
        yield
        return
    fd = os.open(path, os.O_RDWR | (os.O_CREAT if create else 0), 0o644)
    try:
        deadline = time.monotonic() + wait
        while not _try_lock(fd):
            if time.monotonic() >= deadline:
                raise LockedError(state_path, f"another sync is running on this state store (waited {wait:g}s); "
                                              "try again when it has finished")
            time.sleep(0.05)
        _held.append(fd)
        try:
            yield
        finally:
            _held.remove(fd)
            _unlock(fd)
    finally:
        os.close(fd)


try:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)
except ImportError:  # Windows
    import msvcrt

    def _try_lock(fd: int) -> bool:
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False

    def _unlock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)


def row_history(path, key: str, table: str = "Deals", now: str | None = None) -> dict:
    """The versions of one row over time and, for deals, its stages with how long each lasted.

    Returns {"table", "key", "versions": [{first_seen, last_seen, source, row, current, values, changed}],
    "stages": [{stage, since, until, days}]}. A stage starts at the Last Updated of the first version showing
    it (when the sheet has one, else when sync first saw it) and lasts until the next stage starts; the
    current stage lasts until now.
    """
    path = Path(path)
    if not path.exists():
        raise SyncError(f"{path}: no sync state store here; run salessheet sync first (or pass --state)")
    with State.open(path, readonly=True) as st:
        versions = st.history(key, table)
    if not versions:
        raise SyncError(f"{key}: not found in the {table} history of {path.name}")
    stage_col, updated_col = schema.DEALS.column("Stage").name, schema.DEALS.column("Last Updated").name
    versions.sort(key=lambda v: (v["first_run"], v["values"].get(updated_col) or "", v["source"]))
    prev = None
    for v in versions:
        vals = v["values"]
        v["changed"] = [] if prev is None else [c for c in dict.fromkeys([*prev, *vals]) if prev.get(c) != vals.get(c)]
        prev = vals
    stages: list[dict] = []
    if table == schema.DEALS.name:
        for v in versions:
            stage = v["values"].get(stage_col)
            when = v["values"].get(updated_col) or v["first_seen"]
            if stages and stages[-1]["stage"] == stage:
                continue
            if stages:
                stages[-1]["until"] = max(when, stages[-1]["since"])
            stages.append({"stage": stage, "since": when, "until": None, "source": v["source"]})
        ongoing = any(v["current"] for v in versions)
        end = now or time.strftime("%Y-%m-%dT%H:%M:%S")
        if stages and not ongoing:
            stages[-1]["until"] = versions[-1]["last_seen"]
        for s in stages:
            s["days"] = round(_days(s["since"], s["until"] or end), 1)
    return {"table": table, "key": key, "versions": versions, "stages": stages}


def stage_history(path):
    """Every stage each deal has been seen in: Deal ID, Stage, Seen At (its Last Updated, else when sync
    first saw that version). What forecast learns stage win rates from."""
    import json

    import pandas as pd

    stage_col, updated_col = schema.DEALS.column("Stage").name, schema.DEALS.column("Last Updated").name
    with State.open(Path(path), readonly=True) as st:
        rows = st.conn.execute("SELECT v.key, v.vals, r.started FROM versions v JOIN runs r ON r.id = v.first_run "
                             "WHERE v.tbl = ?", (schema.DEALS.name,)).fetchall()
    out = []
    for key, vals, started in rows:
        vals = json.loads(vals)
        if vals.get(stage_col):
            out.append((key, vals[stage_col], vals.get(updated_col) or started))
    df = pd.DataFrame(out, columns=[schema.DEALS.key, stage_col, "Seen At"])
    df["Seen At"] = pd.to_datetime(df["Seen At"], errors="coerce", format="mixed")
    return df


def _days(a: str, b: str) -> float:
    import datetime as dt

    def parse(x: str) -> dt.datetime:
        return dt.datetime.fromisoformat(x[:19]) if "T" in x else dt.datetime.fromisoformat(x[:10])

    return max((parse(b) - parse(a)).total_seconds() / 86400, 0.0)
