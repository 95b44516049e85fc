"""Sync: merge team workbooks into one master workbook, with a state store that remembers every row.

How a sync runs (``sync()``):
1. Lock the state store (one sync at a time), check the master is not open elsewhere.
2. Hash every source. A source whose content hash matches its last good read is not read again: its
   rows come from the state store. The others are read (in two worker processes when there are many)
   and every row becomes canonical JSON (standard columns in standard order, extra columns sorted, blanks
   left out) with a content hash.
3. Per table (Deals, Leads, Costs, Targets) and key, choose one version among the sources (newer Last
   Updated wins; a tie or a missing timestamp is a conflict: first by source order then row, and every
   version goes to the Conflicts sheet), then merge three ways: the version synced last time (state),
   the source now, and the master now (edits made in the master are kept until the source row changes).
4. If anything changed, write the master (only the sheets sync owns; everything else is copied as is)
   and record the run; else leave the master file alone and only record the run.
Here: the run (lock, state, reading in workers, two-phase commit). Step 2's reading and encoding is in
sync_rows, step 3's rules in sync_merge, the master's sheets in sync_sheets (sync_cache keeps them typed
between runs), a Google master's steps in gsheets_master.

Crash safety. One SQLite transaction stores the rows read and the master's new rows, then the new master
is written to a temp file beside the old one and its hash recorded as ``master_hash`` (the old file's as
``master_prev_hash``) with the run marked "committed"; COMMIT; then the temp file replaces the master
(os.replace; the old one stays as ``<master>.bak``) and the run is marked "done". Killed at any point:
- before COMMIT: SQLite rolls the transaction back: old state, old master (a stray temp file, removed by
  the next sync);
- after COMMIT, before the rename: new state, old master. The next sync finds the master's hash equal to
  ``master_prev_hash`` with a run still "committed", so it knows the rename never happened, and writes the
  master again from the state;
- after the rename: both new; the next sync finds the expected hash and marks the run done.
A master whose hash is neither (or the previous one with no run pending: a backup put back) was edited by a
person: sync reads it and keeps those edits where the sources have not changed.
Test hooks: ``SALESSHEET_TEST_CRASH_AT=<point>`` SIGKILLs the process at a named point (see CRASH_POINTS),
``SALESSHEET_TEST_SLEEP_AT=<point>:<seconds>`` pauses there.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import signal
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from . import schema, state as state_mod
from .errors import Error, LockedError, ReadError, SyncError, ValidationError
from .issues import WARNING, Issue
from .sources_config import FileSource, expand
from .sync_cache import FrameCache
from .sync_merge import REMOVED, Base, Cands, Conflict, _columns, merge_table
from .sync_rows import F_GENERATED, IDENTITY, TABLES, SourceRead, TableRows, encode_table, read_source
from .sync_sheets import SYNC_COLUMNS, conflicts_frame, issues_frame, log_frame, stages_frame, table_frame

RESULT_KEYS = ("sources", "rows_read", "added", "updated", "unchanged", "removed", "conflicts", "issues", "master",
               "duration_s")
CRASH_POINTS = ("mid-read", "after-read", "mid-state-write", "after-master-temp", "after-state-commit",
                "after-master-replace", "after-finalize")
PARALLEL_MIN = 4  # sources worth starting worker processes for


# --- results ------------------------------------------------------------------------------------

@dataclass
class SyncResult:
    master: Path
    sources: int = 0
    rows_read: int = 0
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    conflicts: list[Conflict] = field(default_factory=list)
    issues: list[Issue] = field(default_factory=list)
    duration_s: float = 0.0
    dry_run: bool = False
    wrote_master: bool = False
    skipped_sources: int = 0  # unchanged since the last sync, not read again
    notes: list[str] = field(default_factory=list)
    phases: dict[str, float] = field(default_factory=dict)
    state: Path | None = None

    def to_dict(self) -> dict:
        """Exactly the documented JSON keys; counts are integers."""
        return {"sources": self.sources, "rows_read": self.rows_read, "added": self.added, "updated": self.updated,
                "unchanged": self.unchanged, "removed": self.removed, "conflicts": len(self.conflicts),
                "issues": len(self.issues), "master": str(self.master), "duration_s": round(self.duration_s, 3)}


# --- test hooks ---------------------------------------------------------------------------------

def _point(name: str) -> None:
    if os.environ.get("SALESSHEET_TEST_CRASH_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)
    pause = os.environ.get("SALESSHEET_TEST_SLEEP_AT", "")
    if pause.startswith(name + ":"):
        time.sleep(float(pause.split(":", 1)[1]))



# --- reading many sources -----------------------------------------------------------------------

def _worker_init(lock_fd: int | None) -> None:
    if lock_fd is not None:  # the sync lock belongs to the parent only
        try:
            os.close(lock_fd)
        except OSError:
            pass
    parent = os.getppid()

    def watch():  # a worker whose parent was killed must not live on
        while True:
            time.sleep(0.5)
            if os.getppid() != parent:
                os._exit(1)

    import threading

    threading.Thread(target=watch, daemon=True).start()


def _read_many(sources: list, progress, workers: int) -> list[SourceRead]:
    results: list[SourceRead | None] = [None] * len(sources)
    if workers > 1 and len(sources) >= PARALLEL_MIN and all(getattr(s, "parallel_safe", False) for s in sources):
        import multiprocessing as mp

        import importlib

        importlib.import_module(".reader", __package__)  # imported once here, not once per worker

        ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else None
        with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init,
                                 initargs=(state_mod.held_lock_fd(),)) as ex:
            futs = {ex.submit(read_source, s): i for i, s in enumerate(sources)}
            for done, f in enumerate(as_completed(futs), 1):
                i = futs[f]
                results[i] = f.result()
                _point("mid-read")
                if progress:
                    progress(done, len(sources), sources[i].name)
    else:
        for i, s in enumerate(sources):
            results[i] = read_source(s)
            _point("mid-read")
            if progress:
                progress(i + 1, len(sources), s.name)
    return results  # type: ignore[return-value]


# --- the run ------------------------------------------------------------------------------------

def resolve_sources(specs, exclude=(), special=None) -> tuple[list, list[str]]:
    """Source objects (passed through) and paths/folders/globs (expanded), each once, `exclude`d paths left out.

    special(spec, warnings): another kind of source (Google) turns its specs into sources itself; None
    means "not mine"."""
    out, warnings, seen = [], [], set()
    for spec in specs:
        if hasattr(spec, "read") and hasattr(spec, "content_hash"):
            found = [spec]
        elif special is not None and (got := special(spec, warnings)) is not None:
            found = got
        else:
            found, w = expand([spec], exclude=exclude)
            warnings += w
        for s in found:
            if s.id not in seen:
                seen.add(s.id)
                out.append(s)
    return out, warnings


def file_hash(path: Path) -> str | None:
    return FileSource(Path(path)).content_hash()


def sync(sources, into, state=None, dry_run: bool = False, prune: bool = False, assign_ids: bool = False,
         progress: Callable[[int, int, str], None] | None = None, wait: float = 30.0,
         workers: int | None = None) -> SyncResult:
    """Merge `sources` (paths, folders, globs or source objects) into the master workbook `into`.

    state: the state store (default ``<master>.salessheet.db``). dry_run: compute and report, write nothing.
    prune: delete rows removed from their source instead of marking them. assign_ids: write generated IDs
    back into sources that lack them. progress(done, total, name) is called as sources are read.
    wait: seconds to wait for another sync on the same state to finish before LockedError.
    workers: processes reading sources (default: up to 2 when there are many sources).
    """
    t0 = time.perf_counter()
    from .gsheets import google_key

    if google_key(into):  # a Google Sheets master (gsheet:KEY or a URL): same run, its master steps via the API
        from .gsheets_master import sync_google

        return sync_google(sources, into, state=state, dry_run=dry_run, prune=prune, assign_ids=assign_ids,
                           progress=progress, wait=wait, workers=workers)
    master = Path(into).expanduser().resolve()
    if master.suffix.lower() not in (".xlsx", ".xlsm"):
        raise ValidationError(f"{master}: the master must be an .xlsx workbook")
    state_path = Path(state).expanduser().resolve() if state else state_mod.default_path(master)
    srcs, warnings = resolve_sources(list(sources), [master, master.with_name(master.name + ".bak"), state_path])
    if not srcs:
        raise SyncError("no sources to sync: " + ("; ".join(warnings) if warnings else "give files, folders or globs"))
    workers = workers if workers is not None else min(2, os.cpu_count() or 1)
    if not dry_run and not master.parent.is_dir():
        raise SyncError(f"{master.parent}: no such folder for the master")

    def check() -> None:
        from .xlsxpkg import check_unlocked

        check_unlocked(master)

    return run_locked(_Run, srcs, warnings, master, state_path, dry_run=dry_run, prune=prune, assign_ids=assign_ids,
                      progress=progress, workers=workers, t0=t0, wait=wait, check=check)


def run_locked(run_cls, srcs, warnings, master, state_path: Path, *, dry_run: bool, prune: bool, assign_ids: bool,
               progress, workers: int, t0: float, wait: float, check: Callable[[], None] | None = None) -> SyncResult:
    """A run (run_cls: _Run, or a subclass for another kind of master) with the state store open under its lock.

    A dry run holds the lock only if a sync ever made one, so that it reads the state whole, and opens the
    state read-only without touching it. A real run calls check() once it holds the lock (can the master be
    replaced?), then opens the state to write."""
    if dry_run:
        with state_mod.lock(state_path, wait, create=False), \
                state_mod.State.open(state_path, readonly=True, untouched=True) as st:
            return run_cls(srcs, warnings, master, state_path, st, True, prune, False, progress, workers, t0).run()
    with state_mod.lock(state_path, wait):
        if check is not None:
            check()
        with state_mod.State.open(state_path) as st:
            return run_cls(srcs, warnings, master, state_path, st, False, prune, assign_ids, progress, workers,
                           t0).run()


class _Run:
    def __init__(self, srcs, warnings, master, state_path, st, dry, prune, assign_ids, progress, workers, t0):
        self.srcs, self.master, self.state_path, self.st = srcs, master, state_path, st
        self.dry, self.prune, self.assign_ids, self.progress, self.workers, self.t0 = (
            dry, prune, assign_ids, progress, workers, t0)
        self.now = dt.datetime.now().replace(microsecond=0).isoformat()
        self.result = SyncResult(master=master, sources=len(srcs), dry_run=dry, state=state_path)
        self.sync_issues = [Issue(w.split(":")[0], None, None, None, None, WARNING, w) for w in warnings]
        self.phase_t = time.perf_counter()

    def _phase(self, name: str) -> None:
        t = time.perf_counter()
        self.result.phases[name] = self.result.phases.get(name, 0.0) + t - self.phase_t
        self.phase_t = t

    # -- the steps -----------------------------------------------------------------------------

    def run(self) -> SyncResult:
        st, r = self.st, self.result
        if not self.dry:
            self._remove_stale_temps()
        self.run_id = st.next_run_id()
        mh = self._master_hash()
        self.master_before = mh
        mstate = self._master_state(mh)
        records = st.sources()
        hashes = [s.content_hash() for s in self.srcs]
        self._phase("hash")
        skip = [bool(rec and rec.ok and h is not None and rec.content_hash == h)
                for rec, h in zip((records.get(s.id) for s in self.srcs), hashes)]
        if self.assign_ids and not self.dry:  # sources with rows still lacking an ID are read to write them
            pending = {r[0] for r in st.conn.execute("SELECT DISTINCT sid FROM current WHERE flags & ? != 0",
                                                     (F_GENERATED,))}
            skip = [k and not (records[s.id].sid in pending) for k, s in zip(skip, self.srcs)]
        ids = [s.id for s in self.srcs]
        if (all(skip) and mstate == "clean" and st.meta("source_ids") == ids
                and not (self.prune and st.master_status_counts().get(REMOVED))
                and not (self.assign_ids and self._generated_rows())):
            return self._nothing_changed()

        # Every source gets a state id now (new ones numbered after the existing), written at commit.
        next_sid = max([rec.sid for rec in records.values()] + [0]) + 1
        self.sid, self.new_sources = {}, []
        for s in self.srcs:
            rec = records.get(s.id)
            if rec is None:
                rec = state_mod.SourceRecord(next_sid, s.id, s.name, s.kind, None, False, None, {})
                next_sid += 1
                self.new_sources.append(rec)
            self.sid[s.id] = rec.sid
        self.names = {**st.source_names(), **{self.sid[s.id]: s.name for s in self.srcs}}

        to_read = [i for i, k in enumerate(skip) if not k]
        fresh = dict(zip(to_read, _read_many([self.srcs[i] for i in to_read], self.progress, self.workers)))
        self.fresh, self.hashes = fresh, hashes
        _point("after-read")
        if self.assign_ids and not self.dry:
            self._assign_ids()
        r.skipped_sources = len(self.srcs) - len(to_read)
        r.rows_read = sum(len(rows) for sr in fresh.values() if sr.ok for rows in sr.rows.values())
        self._phase("read")

        infos, cands = [], {t: Cands() for t in TABLES}
        unreadable = set()
        for i, s in enumerate(self.srcs):
            sid = self.sid[s.id]
            sr = fresh.get(i)
            if sr is not None and sr.ok:
                infos.append(sr.info)
                for t, rows in sr.rows.items():
                    cands[t].add(i, sid, s.name, rows, fresh=True)
                continue
            if sr is not None:  # unreadable now: its last good rows stand in for it
                infos.append(sr.info)
                unreadable.add(sid)
            else:
                infos.append(records[s.id].info)
            for t, rows in st.current_rows(sid).items():
                if t in cands:
                    row, key, h, upd, flags = _columns(rows, 5)
                    cands[t].add(i, sid, s.name, TableRows(np.array(row, dtype=np.int64), key,
                                                           np.array(h, dtype=np.int64), upd,
                                                           np.array(flags, dtype=np.int64), None), fresh=False)
        self.infos = infos
        cands = {t: c.build() for t, c in cands.items()}
        base = {t: Base(rows, lambda key, t=t: self.st.master_vals(t, key)) for t, rows in st.master_rows().items()}
        ours = None
        if mstate == "edited":
            ours = self._read_master()
        source_cols = set(st.meta("source_columns", [])) | {c for inf in infos for cs in inf.get("extras", {}).values()
                                                              for c in cs}
        self.source_cols = source_cols
        order = {self.sid[s.id]: i for i, s in enumerate(self.srcs)}
        self.merges = {}
        for t in TABLES:
            m = merge_table(t, cands[t], base.get(t) or Base([]), None if ours is None else ours.get(t, {}), unreadable,
                            self.prune, self.now, order, source_cols,
                            lambda key, sid, h, t=t: self._load(t, key, sid, h),
                            {i: inf.get("sheets", {}).get(t, t) for i, inf in enumerate(infos)})
            self.merges[t] = m
            r.added += m.added
            r.updated += m.updated
            r.unchanged += m.unchanged
            r.removed += m.removed
        del cands, base
        stages, stage_issues = self._stages()
        self.stages = stages
        r.issues = ([Issue(**d) for inf in infos for d in inf.get("issues", [])] + self.sync_issues + stage_issues
                    + [i for m in self.merges.values() for i in m.issues])
        r.conflicts = [self._resolved(c) for m in self.merges.values() for c in m.conflicts]
        digest = _digest([i.to_dict() for i in r.issues], [c.to_dict() for c in r.conflicts], stages)
        moved = sum(m.moved for m in self.merges.values())
        dirty = bool(r.added or r.updated or r.removed or moved or mstate in ("stale", "missing", "new")
                     or digest != st.meta("outputs_digest") or any(m.deletes for m in self.merges.values()))
        self._phase("merge")
        if mstate in ("stale", "missing"):
            r.notes.append("the master was not what the last sync wrote (an interrupted sync or a deleted "
                           "master): it is written again from the state store")
        if mstate == "edited" and mh is not None and st.meta("master_hash") is not None:
            r.notes.append("the master was edited since the last sync: edits to rows whose source has not changed "
                           "are kept")
        if not self.dry:
            self._commit(dirty, digest, mh)
        r.wrote_master = dirty and not self.dry
        self._phase("write")
        r.duration_s = time.perf_counter() - self.t0
        return r

    def _master_hash(self) -> str | None:
        """The master's content hash (None: no master). A Google master (gsheets_master.GoogleRun) hashes its tabs."""
        return file_hash(self.master) if self.master.exists() else None

    def _master_book(self):
        """The master as a Book, to keep edits made in it (a Google master is read through the API)."""
        from .reader import read_workbook

        return read_workbook(self.master)

    def _master_state(self, mh: str | None) -> str:
        """clean: what the last sync wrote; stale: the last sync committed but never renamed its master into
        place (killed); missing: deleted; edited: changed by a person (or a backup restored); new: no master."""
        expected, prev = self.st.meta("master_hash"), self.st.meta("master_prev_hash")
        if expected is None:
            self.mstate = "new" if mh is None else "edited"
        elif mh == expected:
            self.mstate = "clean"
        elif mh is None:
            self.mstate = "missing"
        elif mh == prev and self.st.conn.execute("SELECT 1 FROM runs WHERE status = 'committed'").fetchone():
            self.mstate = "stale"
        else:
            self.mstate = "edited"
        return self.mstate

    def _generated_rows(self) -> int:
        return self.st.conn.execute("SELECT count(*) FROM current WHERE flags & ? != 0", (F_GENERATED,)).fetchone()[0]

    def _nothing_changed(self) -> SyncResult:
        st, r = self.st, self.result
        r.skipped_sources = len(self.srcs)
        r.unchanged = st.conn.execute("SELECT count(*) FROM master_rows WHERE src_hash IS NOT NULL AND status != ?",
                                      (REMOVED,)).fetchone()[0]
        r.issues = [Issue(**d) for d in st.meta("issues", [])]
        r.conflicts = [Conflict(**d) for d in st.meta("conflicts", [])]
        r.duration_s = time.perf_counter() - self.t0
        if not self.dry:
            with st.transaction():
                self._finish_previous()
                st.add_run(self.run_id, self.now, "no-change", str(self.master), len(self.srcs),
                           r.to_dict(), r.duration_s, False, self.master_before, self.master_before, self._options())
        return r

    def _options(self) -> dict:
        return {"prune": self.prune, "assign_ids": self.assign_ids, "sources": [s.id for s in self.srcs]}

    def _finish_previous(self) -> None:
        """A run committed whose master rename happened (or was redone now) is done."""
        self.st.conn.execute("UPDATE runs SET status = 'done' WHERE status = 'committed'")

    def _load(self, table: str, key: str, sid: int, h: str) -> str:
        got = self.st.version_values([(table, key, sid, h)])
        return next(iter(got.values()), "{}")

    def _stages(self) -> tuple[list | None, list[Issue]]:
        chosen, who, issues = None, None, []
        for s, inf in zip(self.srcs, self.infos):
            if inf.get("error"):
                continue
            st = inf.get("stages")
            if chosen is None:
                chosen, who = st, s.name
            elif _norm_stages(st) != _norm_stages(chosen):
                issues.append(Issue(s.name, "Stages", None, None, None, WARNING,
                                    f"its Stages differ from {who}'s; the master uses {who}'s Stages"))
        return chosen, issues

    def _resolved(self, c: Conflict) -> Conflict:
        versions = []
        for v in c.versions:
            cand = v.pop("cand")
            if cand.vals is None:
                cand.vals = self._load(c.table, cand.key, cand.sid, cand.hash)
            versions.append({**v, "values": json.loads(cand.vals)})
        return Conflict(c.table, c.key, c.reason, versions)

    def _read_master(self) -> dict[str, dict[str, tuple[str, str]]]:
        """key -> (values, hash) per table of the master as it is now (edited by someone since the last sync)."""
        try:
            book = self._master_book()
        except ReadError as e:
            raise SyncError(f"the master cannot be read ({e}); restore {self.master.name}.bak or move it away") \
                from None
        out = {}
        for t in TABLES:
            if t not in book.tables:
                continue
            df = book.tables[t]
            df = df.drop(columns=[c for c in SYNC_COLUMNS if c in df.columns])
            rows, _, _, _ = encode_table(t, df, book, self.master.name)
            found: dict[str, tuple[str, int]] = {}
            for row, key, h, vals in zip(rows.row.tolist(), rows.key, rows.hash.tolist(), rows.json):
                if key in found:
                    self.sync_issues.append(Issue(self.master.name, book.sheets.get(t), row, None, key, WARNING,
                                                  f"{key} appears twice in the master; the first row is kept"))
                    continue
                found[key] = (vals, h)
            out[t] = found
        return out

    def _assign_ids(self) -> None:
        """Write generated IDs into the sources' empty ID cells (opt-in), so the rows keep them for good."""
        for i, sr in self.fresh.items():
            if not sr.ok:
                continue
            src = self.srcs[i]
            updates = []
            for t, rows in sr.rows.items():
                at = np.flatnonzero(rows.flags & F_GENERATED).tolist()
                gen = {int(rows.row[i]): rows.key[i] for i in at}
                if gen and t in IDENTITY:
                    updates.append((t, sr.info["sheets"][t], schema.TABLES[t].key, gen))
            if not updates:
                continue
            writer = getattr(src, "write_ids", None)
            try:
                if writer is None:
                    raise Error(f"{src.name}: IDs cannot be written into this kind of source")
                writer(updates)
            except Error as e:
                self.sync_issues.append(Issue(src.name, None, None, None, None, WARNING,
                                              f"generated IDs were not written into the source: {e}"))
                continue
            self.hashes[i] = src.content_hash()
            done = {(sheet, row) for t, sheet, _c, gen in updates for row in gen}
            sr.info["issues"] = [d for d in sr.info["issues"]
                                 if not ((d["sheet"], d["row"]) in done and d["message"].startswith("no "))]
            for rows in sr.rows.values():
                rows.flags = rows.flags & ~F_GENERATED
            self.result.notes.append(f"wrote {len(done)} generated ID(s) into {src.name}")

    # -- writing -------------------------------------------------------------------------------

    def _commit(self, dirty: bool, digest: str, mh: str | None) -> None:
        """One transaction: the rows read, the master's rows, then (if dirty) the new master written to a temp
        file whose hash is recorded, then COMMIT; only then is the temp file renamed over the master."""
        st, r = self.st, self.result
        tmp, new_hash = None, mh
        st.conn.execute("BEGIN IMMEDIATE")
        try:
            for rec in self.new_sources:
                st.conn.execute("INSERT INTO sources (sid, id, name, kind) VALUES (?, ?, ?, ?)",
                                (rec.sid, rec.id, rec.name, rec.kind))
            for i, sr in self.fresh.items():
                s = self.srcs[i]
                st.conn.execute("UPDATE sources SET name = ?, kind = ? WHERE sid = ?", (s.name, s.kind,
                                                                                    self.sid[s.id]))
                st.record_read(self.sid[s.id], self.run_id, self.hashes[i], sr.ok, sr.info,
                               sr.rows if sr.ok else None)
                for rows in sr.rows.values():
                    rows.json = None  # stored: the master takes these rows from their columns
            for t, m in self.merges.items():
                c = m.cols
                up = np.flatnonzero(c["upsert"])
                st.put_master_rows(t, zip(c["key"][up].tolist(), _none_if_neg(c["sid"][up]),
                                          c["src_hash"][up].tolist(), c["mhash"][up].tolist(),
                                          _none_if_neg(c["row"][up]), c["synced_at"][up].tolist(),
                                          c["status"][up].tolist(), c["store"][up].tolist()))
                st.delete_master_rows(t, m.deletes)
                c["vals"][c["ref_src"] >= 0] = None
            _point("mid-state-write")
            if dirty:
                tmp, new_hash = self._write_temp()
            r.duration_s = time.perf_counter() - self.t0
            st.set_meta("source_ids", [s.id for s in self.srcs])
            st.set_meta("issues", [i.to_dict() for i in r.issues])
            st.set_meta("conflicts", [c.to_dict() for c in r.conflicts])
            st.set_meta("outputs_digest", digest)
            st.set_meta("source_columns", sorted(self.source_cols))
            if dirty:
                st.set_meta("master_prev_hash", mh)
            st.set_meta("master_hash", new_hash)
            # A run committed earlier either got its master renamed in place (done) or was cut short and
            # its master is being written now (finished by this run).
            st.conn.execute("UPDATE runs SET status = ? WHERE status = 'committed'",
                            ("interrupted, finished by the next sync" if self.mstate in ("stale", "missing")
                             else "done",))
            st.add_run(self.run_id, self.now, "committed" if dirty else "no-change", str(self.master),
                       len(self.srcs), r.to_dict(), r.duration_s, dirty, mh, new_hash, self._options())
            st.conn.execute("COMMIT")
        except BaseException:
            st.conn.execute("ROLLBACK")
            if tmp is not None:
                tmp.unlink(missing_ok=True)
            raise
        _point("after-state-commit")
        if dirty:
            self._replace(tmp)
            _point("after-master-replace")
            with st.transaction():
                st.set_run_status(self.run_id, "done")
            _point("after-finalize")

    def _write_temp(self) -> tuple[Path, str]:
        """The new master, written beside the old one; (its path, its hash)."""
        from .master import write_master
        from .xlsxpkg import check_unlocked

        tmp = self.master.with_name(f".{self.master.name}.salessheet-{os.getpid()}.tmp")
        try:
            self._phase("state")  # the rows stored so far
            frames = self.frames()
            self._phase("sheets")  # the master's tables built; then "write": the file written and renamed
            write_master(self.master, frames, out=tmp)
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            new_hash = file_hash(tmp)
            FrameCache.save(self.state_path, frames, self.frame_keys, new_hash)  # valid once the master has it
            del frames
            _point("after-master-temp")
            check_unlocked(self.master)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return tmp, new_hash

    def _replace(self, tmp: Path) -> None:
        """Keep the current master as <master>.bak, then move the new one in (a rename: atomic)."""
        import shutil

        from .xlsxpkg import _fsync_dir

        master = self.master
        try:
            if master.exists():
                bak_tmp = master.with_name(f".{master.name}.salessheet-bak-{os.getpid()}.tmp")
                bak_tmp.unlink(missing_ok=True)
                try:
                    os.link(master, bak_tmp)  # the old file lives on as the backup, no copy needed
                except OSError:
                    shutil.copy2(master, bak_tmp)
                os.replace(bak_tmp, master.with_name(master.name + ".bak"))
            os.replace(tmp, master)
        except PermissionError as e:
            tmp.unlink(missing_ok=True)
            raise LockedError(master, f"could not be replaced ({e.strerror}); it may be open in another program. "
                                      "Close it and run sync again: it will finish writing the master") from None
        _fsync_dir(master.parent)

    def _remove_stale_temps(self) -> None:
        """Temp files of a sync that was killed (we hold the lock, so no other sync is writing them)."""
        for p in self.master.parent.glob(f".{glob_escape(self.master.name)}.salessheet-*.tmp"):
            p.unlink(missing_ok=True)

    # -- the master's sheets -------------------------------------------------------------------

    def frames(self) -> dict[str, pd.DataFrame]:
        """Every sheet sync owns, as frames for the master writer."""
        r = self.result
        out = {}
        cache = FrameCache.load(self.state_path, self.master_before) if self.mstate == "clean" else {}
        self.frame_keys = {}
        for t, m in self.merges.items():
            order = list(dict.fromkeys(c for inf in self.infos for c in inf.get("extras", {}).get(t, [])))
            fresh = {i: sr.cols.get(t, {}) for i, sr in self.fresh.items() if sr.ok}
            out[t], self.frame_keys[t] = table_frame(t, m.cols, self.names, order, fresh,
                                                     lambda t=t: self.st.iter_master_vals(t), cache.get(t))
        del cache
        out["Stages"] = stages_frame(self.stages)
        out["Issues"] = issues_frame(r.issues)
        out["Conflicts"] = conflicts_frame(r.conflicts)
        this = {"started": self.now, "sources": len(self.srcs), "counts": r.to_dict(),
                "duration": time.perf_counter() - self.t0}
        out["Sync Log"] = log_frame(self.st.runs(wrote_master_only=True) + [this])
        return out


def _none_if_neg(a: np.ndarray) -> list:
    return [None if x < 0 else x for x in a.tolist()]


def glob_escape(name: str) -> str:
    import glob

    return glob.escape(name)


def _digest(*parts) -> str:
    return hashlib.blake2b(json.dumps(parts, default=str, sort_keys=True).encode(), digest_size=16).hexdigest()


def _norm_stages(st) -> list | None:
    if st is None:
        st = [[s.name, s.order, s.probability, s.is_closed, s.is_won] for s in schema.DEFAULT_STAGES]
    return [[schema.normalize(s), o, None if p is None else round(p, 6), c, w] for s, o, p, c, w in st]
