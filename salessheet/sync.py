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
import math
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
from .issues import ERROR, WARNING, Issue
from .sources_config import FileSource, expand

TABLES = (schema.DEALS.name, schema.LEADS.name, schema.COSTS.name, schema.TARGETS.name)  # consolidated
SOURCE_FILE, SOURCE_ROW, SYNCED_AT, SYNC_STATUS = "Source File", "Source Row", "Synced At", "Sync Status"
SYNC_COLUMNS = (SOURCE_FILE, SOURCE_ROW, SYNCED_AT, SYNC_STATUS)
OK, HAS_ERRORS, CONFLICT, REMOVED, MASTER_ONLY = "ok", "has errors", "conflict", "removed from source", "master only"
ISSUE_COLUMNS = ("Source", "Sheet", "Row", "Column", "Value", "Severity", "Message")
CONFLICT_COLUMNS = ("Table", "Key", "Chosen", "Reason", SOURCE_FILE, SOURCE_ROW)
LOG_COLUMNS = ("Time", "Sources", "Rows Read", "Added", "Updated", "Unchanged", "Removed", "Conflicts", "Issues",
               "Duration (s)")
RESULT_KEYS = ("sources", "rows_read", "added", "updated", "unchanged", "removed", "conflicts", "issues", "master",
               "duration_s")


def _standard_columns(spec: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
    """Column names sync's rules use, checked against the standard (a KeyError here if it renames them)."""
    return {t: tuple(schema.TABLES[t].column(c).name for c in cols) for t, cols in spec.items()}


# Columns a row without an ID is identified by (with its source's file name), and the composite keys of
# the tables without an ID column.
IDENTITY = _standard_columns({"Deals": ("Account", "Deal Name", "Created Date"),
                              "Leads": ("Created Date", "Owner", "Source", "Team")})
KEY_PARTS = _standard_columns({"Costs": ("Month", "Team", "Category"),
                               "Targets": ("Period Start", "Period End", "Owner", "Team")})
LAST_UPDATED = schema.DEALS.column("Last Updated").name
MONTH = KEY_PARTS["Costs"][0]
F_ERRORS, F_GENERATED = 1, 2
CRASH_POINTS = ("mid-read", "after-read", "mid-state-write", "after-master-temp", "after-state-commit",
                "after-master-replace", "after-finalize")
PARALLEL_MIN = 4  # sources worth starting worker processes for


# --- results ------------------------------------------------------------------------------------

@dataclass
class Conflict:
    """One key found in more than one row with different values and no newest Last Updated."""

    table: str
    key: str
    reason: str
    versions: list[dict]  # {"source", "row", "chosen", "values"} in source order then row

    def to_dict(self) -> dict:
        return {"table": self.table, "key": self.key, "reason": self.reason, "versions": self.versions}


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


# --- encoding rows ------------------------------------------------------------------------------

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), check_circular=False).encode


def row_hash(vals_json: str) -> int:
    """The content hash of a row's values (64 bits, signed: it is an SQLite INTEGER and a numpy int64)."""
    return int.from_bytes(hashlib.blake2b(vals_json.encode(), digest_size=8).digest(), "little", signed=True)


def _kind(table: schema.Table, col: str) -> str | None:
    return table.column(col).kind if col in table.names else None


def _plain_extra(v):
    """An extra column's cell as a JSON value; dates are tagged so they come back as dates."""
    if v is None or v is pd.NaT or v is pd.NA:
        return None
    if isinstance(v, str):
        return v if v.strip() else None
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, float, np.number)):
        x = float(v)
        return x if math.isfinite(x) else (None if x != x else str(v))
    if isinstance(v, (dt.datetime, dt.date)):  # Timestamp too
        if isinstance(v, dt.datetime) and (v.hour, v.minute, v.second, v.microsecond) != (0, 0, 0, 0):
            return {"d": v.replace(microsecond=0, tzinfo=None).isoformat()}
        return {"d": dt.date(v.year, v.month, v.day).isoformat()}
    if isinstance(v, dt.time):
        return {"t": v.isoformat()}
    return str(v)


def _column_values(s: pd.Series, kind: str | None) -> tuple[list, np.ndarray | None]:
    """A clean column as JSON-ready values (None for blank), and as the typed array the master gets
    (float64 or datetime64; None for text columns, whose values are the JSON-ready ones)."""
    if kind in ("date", "datetime"):
        arr = s.to_numpy(dtype="datetime64[us]")
        if kind == "date":
            arr = arr.astype("datetime64[D]")
            txt = np.datetime_as_string(arr, unit="D")
        else:  # round to the second: a value read back from a written cell must encode the same
            nat = np.isnat(arr)
            arr = ((arr.astype("datetime64[ms]").astype(np.int64) + 500) // 1000).astype("datetime64[s]")
            arr[nat] = np.datetime64("NaT")  # NaT's integer must not round into a date (1969-12-31)
            txt = np.datetime_as_string(arr, unit="s")
        return [None if t == "NaT" else t for t in txt.tolist()], arr.astype("datetime64[us]")
    if kind in ("money", "number", "percent", "int"):
        arr = s.to_numpy(dtype=float)
        arr = np.where(np.isfinite(arr), arr, np.nan)
        return [None if x != x else x for x in arr.tolist()], arr
    if kind == "bool":
        return [None if x is pd.NA or x is None else bool(x) for x in s.tolist()], None
    vals = s.tolist()
    if kind is not None or set(map(type, vals)) <= {str, type(None)}:
        vals = [v if v is None or v.strip() else None for v in vals] if kind is None else vals
        return _shared(vals), None
    return [_plain_extra(v) for v in vals], None


def _shared(vals: list) -> list:
    """Equal strings as one object (a Stage column holds a handful of values): less memory, and pickled once."""
    seen: dict = {}
    return [seen.setdefault(v, v) for v in vals]


def _key_of(name: str, lists: dict[str, list], i: int) -> str | None:
    if schema.TABLES[name].key:
        return lists[schema.TABLES[name].key][i]
    parts = []
    for c in KEY_PARTS[name]:
        v = lists[c][i]
        v = v[:7] if c == MONTH and isinstance(v, str) else v  # any day of the month is the month
        parts.append("" if v is None else str(v) if not isinstance(v, float) else f"{v:g}")
    return " | ".join(parts)


def generated_id(name: str, source_name: str, parts: list) -> str:
    """A stable ID for a row without one: a hash of its source's file name and identifying values."""
    text = _dumps([name, source_name, *parts])
    return "AUTO-" + hashlib.blake2b(text.encode(), digest_size=5).hexdigest().upper()


def encode_table(name: str, df: pd.DataFrame, book, source_name: str):
    """Rows of one clean table (TableRows), its extra columns in sheet order, issues about identities, and the
    values by column for the master (typed arrays, or JSON-ready lists for text and for columns holding cells
    the reader could not type, which keep the value as written)."""
    table = schema.TABLES[name]
    extras = [c for c in df.columns if c not in table.names]
    cols = table.names + sorted(extras)
    lists, typed = {}, {}
    for c in cols:
        lists[c], typed[c] = _column_values(df[c], _kind(table, c))
    rows = df.index.tolist()
    n = len(rows)
    flags = [0] * n
    updated = lists[LAST_UPDATED][:] if name == schema.DEALS.name else None
    sheet = book.sheets.get(name)
    by_label = {w: c for c, w in book.headers.get(name, {}).items()}
    pos = None
    for iss in book.issues:
        if iss.severity != ERROR or iss.sheet != sheet or iss.row is None:
            continue
        if pos is None:
            pos = {r: i for i, r in enumerate(rows)}
        i = pos.get(iss.row)
        if i is None:
            continue
        flags[i] |= F_ERRORS
        col = by_label.get(iss.column, iss.column)
        if col in lists and lists[col][i] is None and iss.value is not None and iss.value != "":
            lists[col][i] = _plain_extra(iss.value)  # keep what the rep typed, never drop it
            if isinstance(lists[col][i], dict):
                lists[col][i] = str(iss.value)
            typed[col] = None  # the column now mixes typed values and text: the master gets the values
    issues: list[Issue] = []
    keys: list[str] = []
    used: dict[str, int] = {}
    for i in range(n):
        key = _key_of(name, lists, i)
        if key is None:
            key = generated_id(name, source_name, [lists[c][i] for c in IDENTITY[name]])
            k = used.get(key, 0) + 1
            used[key] = k
            key = key if k == 1 else f"{key}-{k}"
            lists[table.key][i] = key
            flags[i] |= F_GENERATED
            issues.append(Issue(source_name, sheet, rows[i], table.key, None, WARNING,
                                f"no {table.key}: identified as {key} from {', '.join(IDENTITY[name])}; "
                                f"run sync with --assign-ids to write it into the sheet"))
        keys.append(key)
    # JSON text of each row, built from per-column fragments ('"Amount":1200.0'); same text as json.dumps.
    frags = [_fragments(c, lists[c]) for c in cols]
    texts = ["{" + ",".join(filter(None, parts)) + "}" for parts in zip(*frags)]
    b2 = hashlib.blake2b  # row_hash() for every row at once
    hashes = np.frombuffer(b"".join([b2(t.encode(), digest_size=8).digest() for t in texts]), dtype="<i8")
    out = TableRows(np.array(rows, dtype=np.int64), keys, hashes.astype(np.int64), updated,
                    np.array(flags, dtype=np.int64), texts)
    master_cols = {c: typed[c] if typed[c] is not None else lists[c] for c in cols}
    return out, extras, issues, master_cols


_enc_str = json.encoder.encode_basestring  # the C encoder json.dumps(ensure_ascii=False) uses


def _fragments(col: str, vals: list) -> list[str | None]:
    p = _enc_str(col) + ":"
    types = set(map(type, vals))
    if types <= {str, type(None)}:  # each distinct text encoded once (stages, owners, dates repeat)
        frag = {v: p + _enc_str(v) for v in set(vals) if v is not None}
        return list(map(frag.get, vals))
    if types <= {float, type(None)}:
        return [None if v is None else p + float.__repr__(v) for v in vals]
    return [None if v is None else p + _dumps(v) for v in vals]


def _stages_of(book) -> list[list] | None:
    st = book.tables.get(schema.STAGES.name)
    name = schema.STAGES.key
    if st is None or st[name].notna().sum() == 0:
        return None
    st = st[st[name].notna()]
    return [[s, _num(o), _num(p), _b(c), _b(w)] for s, o, p, c, w in zip(*(st[c] for c in schema.STAGES.names))]


def _num(x):
    return None if x is None or x != x else float(x)


def _b(x):
    return None if x is pd.NA or x is None else bool(x)


@dataclass
class TableRows:
    """The rows of one table of one source, as columns: sheet row, key, content hash, Last Updated (Deals),
    flags (F_ERRORS, F_GENERATED) and the values as JSON (None when they come from the state store)."""

    row: np.ndarray
    key: list
    hash: np.ndarray
    updated: list | None
    flags: np.ndarray
    json: list | None

    def __len__(self) -> int:
        return len(self.key)


@dataclass
class SourceRead:
    """What reading one source gave: rows per table, and what else the state keeps about it."""

    ok: bool
    rows: dict[str, TableRows]
    info: dict  # {"issues": [issue dicts], "stages": [...]|None, "extras": {table: [...]}, "error": str|None}
    seconds: float = 0.0
    cols: dict[str, dict[str, list]] = field(default_factory=dict)  # table -> column -> values, row order


def read_source(source) -> SourceRead:
    """Read and encode one source; a source that cannot be read gives ok=False and one issue."""
    t0 = time.perf_counter()
    try:
        book = source.read()
    except ReadError as e:
        msg = f"cannot be read, so its rows from the last sync are kept as they were: {e}"
        iss = Issue(source.name, None, None, None, None, ERROR, msg)
        return SourceRead(False, {}, {"issues": [iss.to_dict()], "stages": None, "extras": {}, "error": str(e)},
                          time.perf_counter() - t0)
    rows, extras, issues, cols = {}, {}, [], {}
    for name in TABLES:
        if name in book.tables:
            rows[name], extras[name], more, cols[name] = encode_table(name, book.tables[name], book, source.name)
            issues.extend(more)
    reader_issues = [_issue_dict(i, source.name) for i in book.issues]
    info = {"issues": reader_issues + [i.to_dict() for i in issues], "stages": _stages_of(book),
            "extras": extras, "sheets": dict(book.sheets), "error": None}
    return SourceRead(True, rows, info, time.perf_counter() - t0, cols)


def _issue_dict(i: Issue, source_name: str) -> dict:
    d = i.to_dict()
    d["source"] = source_name  # the file name, not the full path the reader used
    if d["value"] is not None and not isinstance(d["value"], (str, int, float, bool)):
        d["value"] = str(d["value"])
    return d


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


# --- merging ------------------------------------------------------------------------------------
# Columnar: a table's candidates and the master's rows are numpy arrays, so the rows that are simply new or
# simply unchanged (nearly all of them) are merged in a few vector operations; every other row (changed in
# its source, gone from it, edited in the master, a duplicate) goes through the row-by-row rules below.

def _columns(rows: list[tuple], width: int) -> list[list]:
    """Rows -> columns (zip(*rows) is quadratic-ish in cache misses for long lists)."""
    from operator import itemgetter

    return [list(map(itemgetter(i), rows)) for i in range(width)]


class Cand:
    """One row of one source this run (values loaded lazily for rows that came from the state)."""

    __slots__ = ("src", "sid", "row", "key", "hash", "updated", "flags", "vals", "name", "pos", "idx")

    def __init__(self, src, sid, row, key, h, updated, flags, vals, name, pos=-1, idx=-1):
        self.src, self.sid, self.row, self.key, self.hash = src, sid, row, key, h
        self.updated, self.flags, self.vals, self.name = updated, flags, vals, name
        self.pos = pos  # index in the source's freshly read column values; -1: from the state store
        self.idx = idx  # index among the table's candidates


class Cands:
    """Every row of one table in the sources now, as columns, in source order then row order."""

    def __init__(self):
        self._l: dict[str, list] = {f: [] for f in ("key", "src", "sid", "row", "hash", "updated", "flags", "vals",
                                                      "pos")}
        self.names: dict[int, str] = {}

    def add(self, src: int, sid: int, name: str, rows: TableRows, fresh: bool) -> None:
        """The rows of one source, read now (fresh: values and column positions known) or kept in the state."""
        self.names[src] = name
        n, lists = len(rows), self._l
        if not n:
            return
        lists["key"].extend(rows.key)
        lists["updated"].extend(rows.updated if rows.updated is not None else [None] * n)
        lists["vals"].extend(rows.json if fresh and rows.json is not None else [None] * n)
        for f, a in (("row", rows.row), ("hash", rows.hash), ("flags", rows.flags),
                     ("pos", np.arange(n) if fresh else np.full(n, -1)), ("src", np.full(n, src)),
                     ("sid", np.full(n, sid))):
            lists[f].append(np.asarray(a, dtype=np.int64))

    def build(self) -> "Cands":
        lists = self._l
        for f in ("key", "updated", "vals"):
            a = np.empty(len(lists[f]), dtype=object)
            a[:] = lists[f]
            setattr(self, f, a)
        for f in ("src", "sid", "row", "flags", "pos", "hash"):
            setattr(self, f, np.concatenate(lists[f]) if lists[f] else np.empty(0, dtype=np.int64))
        del self._l
        return self

    def __len__(self) -> int:
        return len(self.key)

    def cand(self, i: int) -> Cand:
        return Cand(int(self.src[i]), int(self.sid[i]), int(self.row[i]), self.key[i], int(self.hash[i]),
                    self.updated[i], int(self.flags[i]), self.vals[i], self.names[int(self.src[i])],
                    int(self.pos[i]), i)


KEEP = "\x00keep"  # as a master row's stored values: keep the ones the state has (not loaded into memory)


class Base:
    """The rows the last sync wrote into one master table (from the state), as columns, without their values
    (loaded one by one when a rule needs them; the master's frames stream them). Index -1 is a sentinel row
    (no source) so that "not in the master" (-1) reads as such."""

    def __init__(self, rows: list[tuple], load_vals=None):  # (key, sid, src_hash, mhash, row, synced_at, status)
        self.n = len(rows)
        self.load_vals = load_vals  # key -> the values the master row has
        cols = _columns(rows, 7)
        cols[5], cols[6] = _shared(cols[5]), _shared(cols[6])  # a few distinct times and statuses
        for f, c in zip(("key", "synced_at", "status"), (cols[0], cols[5], cols[6])):
            a = np.empty(self.n + 1, dtype=object)
            a[:self.n] = c
            setattr(self, f, a)
        self.sid = np.array([-1 if x is None else x for x in cols[1]] + [-2], dtype=np.int64)
        self.row = np.array([-1 if x is None else x for x in cols[4]] + [-2], dtype=np.int64)
        self.has_src = np.array([x is not None for x in cols[2]] + [False], dtype=bool)
        self.src_hash = np.array([0 if x is None else x for x in cols[2]] + [0], dtype=np.int64)
        self.mhash = np.array(list(cols[3]) + [0], dtype=np.int64)

    def get(self, p: int, with_vals: bool = True) -> state_mod.MasterRow | None:
        if p < 0:
            return None
        sid, row = int(self.sid[p]), int(self.row[p])
        vals = self.load_vals(self.key[p]) if with_vals and self.load_vals else None
        return state_mod.MasterRow(self.key[p], None if sid < 0 else sid,
                                   int(self.src_hash[p]) if self.has_src[p] else None, int(self.mhash[p]),
                                   None if row < 0 else row, self.synced_at[p], self.status[p], vals)


OUT_FIELDS = ("key", "sid", "src_hash", "mhash", "row", "synced_at", "status", "vals", "store", "rank_src",
              "rank_row", "ref_src", "ref_pos", "upsert")
_INT_FIELDS = {"sid", "row", "rank_src", "rank_row", "ref_src", "ref_pos"}


@dataclass
class TableMerge:
    """The merged master table as columns (OUT_FIELDS; -1 for no sid/row/ref). ref_src/ref_pos: the row's values
    are exactly a freshly read row (the frame takes them from its columns); vals None otherwise: they are the
    ones the state has for the row; store: values the state must keep (None when they are the source
    version's, KEEP: the ones it has); upsert: the state's master row must be written."""

    cols: dict[str, np.ndarray] = field(default_factory=dict)
    deletes: list[str] = field(default_factory=list)
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    moved: int = 0
    conflicts: list[Conflict] = field(default_factory=list)
    issues: list[Issue] = field(default_factory=list)

    def __post_init__(self):
        self._segments: list[dict] = []
        self._rows: list[tuple] = []

    def add(self, **cols) -> None:
        self._segments.append(cols)

    def add_row(self, *row) -> None:
        self._rows.append(row)

    def finish(self) -> "TableMerge":
        segs = list(self._segments)
        if self._rows:
            segs.append(dict(zip(OUT_FIELDS, _columns(self._rows, len(OUT_FIELDS)))))
        out = {}
        for f in OUT_FIELDS:
            parts = []
            for seg in segs:
                n = len(seg["key"])
                v = seg[f]
                if f in _INT_FIELDS:
                    parts.append(np.broadcast_to(np.asarray([-1 if x is None else x for x in v] if isinstance(v, list)
                                                            else v, dtype=np.int64), (n,)))
                elif f == "upsert":
                    parts.append(np.broadcast_to(np.asarray(v, dtype=bool), (n,)))
                else:
                    a = np.empty(n, dtype=object)
                    a[:] = v
                    parts.append(a)
            out[f] = np.concatenate(parts) if parts else np.empty(0, dtype=bool if f == "upsert" else
                                                                  np.int64 if f in _INT_FIELDS else object)
        self.cols = out
        del self._segments, self._rows
        return self

    def __len__(self) -> int:
        return len(self.cols["key"])


def choose(cands: list[Cand], sheet_of=lambda c: None) -> tuple[Cand, str | None, list[Issue]]:
    """The version of a key to use: (winner, conflict reason or None, warnings)."""
    first = cands[0]
    issues = []
    if len({c.hash for c in cands}) == 1:
        for c in cands[1:]:
            issues.append(Issue(c.name, sheet_of(c), c.row, None, c.key, WARNING,
                                f"{c.key} appears again here with the same values as in {first.name} row "
                                f"{first.row}; counted once"))
        return first, None, issues
    stamps = [c.updated for c in cands]
    if all(stamps):
        newest = max(stamps)
        top = [c for c in cands if c.updated == newest]
        if len({c.hash for c in top}) == 1:
            win = top[0]
            for c in cands:
                if c.updated != newest:
                    issues.append(Issue(c.name, sheet_of(c), c.row, LAST_UPDATED, c.updated, WARNING,
                                        f"{c.key} is also in {win.name} row {win.row} with a newer Last Updated; "
                                        f"that version is used"))
            return win, None, issues
        return top[0], f"same Last Updated ({newest}) with different values", issues
    return first, "not every version has a Last Updated to tell which is newer", issues


BIG = 1 << 30


def merge_table(name: str, C: Cands, base: Base, ours: dict | None, unreadable: set, prune: bool, now: str,
                order: dict[int, int], source_cols: set, load, sheets: dict[int, str] | None = None) -> TableMerge:
    """Three-way merge of one table.

    C: the versions in the sources now; base: what the last sync wrote into the master; ours: key ->
    (values, hash) read from a master edited since, or None when the master is exactly what was written.
    order: sid -> source index. load(key, sid, hash) gives the values of a version kept in the state store.
    sheets: source index -> the sheet this table was read from (for issue locations).
    """
    out = TableMerge()
    sheets = sheets or {}

    def sheet_of(c: Cand) -> str | None:
        return sheets.get(c.src)

    n = len(C)
    # One hashing of every key (sources' and master's) into integer codes; the rest is integer arithmetic.
    codes, uniques = pd.factorize(np.concatenate([C.key, base.key[:-1]]))
    ccodes, bcodes = codes[:n], codes[n:]
    win = np.ones(n, dtype=bool)
    conflicted: set[str] = set()
    if n:
        dup = np.bincount(ccodes, minlength=len(uniques))[ccodes] > 1
        if dup.any():
            groups: dict[str, list[int]] = {}
            for i in np.flatnonzero(dup).tolist():
                groups.setdefault(C.key[i], []).append(i)
            win[dup] = False
            for key, idxs in groups.items():
                cs = [C.cand(i) for i in idxs]
                w, reason, issues = choose(cs, sheet_of)
                win[w.idx] = True
                out.issues.extend(issues)
                if reason:
                    conflicted.add(key)
                    out.conflicts.append(Conflict(name, key, reason, [
                        {"source": c.name, "row": c.row, "chosen": c is w, "cand": c} for c in cs]))
    W = np.flatnonzero(win)
    wkey = C.key[W]
    status = np.where(C.flags[W] & F_ERRORS, HAS_ERRORS, OK).astype(object)
    if conflicted:
        status[[k in conflicted for k in wkey.tolist()]] = CONFLICT
    where_in_base = np.full(len(uniques), -1, dtype=np.int64)
    where_in_base[bcodes] = np.arange(base.n)
    bpos = where_in_base[ccodes[W]]
    if ours is None:
        new = bpos < 0
        same = ~new & base.has_src[bpos] & (C.hash[W] == base.src_hash[bpos])
        special = ~(new | same)
    else:  # an edited master: every row by the rules
        new = same = np.zeros(len(W), dtype=bool)
        special = np.ones(len(W), dtype=bool)

    idx = W[new]  # new rows
    if len(idx):
        vals = C.vals[idx]
        for j in np.flatnonzero(vals == None).tolist():  # noqa: E711 (from the state: not read this run)
            vals[j] = load(C.key[idx[j]], int(C.sid[idx[j]]), int(C.hash[idx[j]]))
        fresh = C.pos[idx] >= 0
        out.add(key=C.key[idx], sid=C.sid[idx], src_hash=C.hash[idx], mhash=C.hash[idx], row=C.row[idx],
                synced_at=now, status=status[new], vals=vals, store=None, rank_src=C.src[idx], rank_row=C.row[idx],
                ref_src=np.where(fresh, C.src[idx], -1), ref_pos=C.pos[idx], upsert=True)
        out.added += len(idx)

    idx, bp = W[same], bpos[same]  # same version as last time: the master's row (and any edit there) stays
    if len(idx):
        changed = (base.status[bp] != status[same]) | (base.sid[bp] != C.sid[idx])
        mh = base.mhash[bp]
        exact = mh == C.hash[idx]
        moved = C.row[idx] != base.row[bp]
        synced = base.synced_at[bp].copy()
        synced[changed] = now
        out.add(key=C.key[idx], sid=C.sid[idx], src_hash=C.hash[idx], mhash=mh, row=C.row[idx], synced_at=synced,
                status=status[same], vals=None, store=np.where(exact, None, KEEP),
                rank_src=C.src[idx], rank_row=C.row[idx], ref_src=np.where(exact & (C.pos[idx] >= 0), C.src[idx], -1),
                ref_pos=C.pos[idx], upsert=changed | moved)
        out.updated += int(changed.sum())
        out.unchanged += int((~changed).sum())
        out.moved += int((moved & ~changed).sum())

    for j in np.flatnonzero(special).tolist():
        c = C.cand(int(W[j]))
        b = base.get(int(bpos[j]))
        o = ours.get(c.key) if ours is not None else ((b.vals, b.mhash) if b is not None else None)
        if c.vals is None:
            c.vals = load(c.key, c.sid, c.hash)
        _merge_winner(out, name, c, b, o, status[j], now, source_cols, load, sheet_of)

    if base.n:  # rows of the master no source has now
        in_sources = np.zeros(len(uniques), dtype=bool)
        in_sources[ccodes[W]] = True
        for p in np.flatnonzero(~in_sources[bcodes]).tolist():
            b = base.get(p, with_vals=False)
            o = ours.get(b.key) if ours is not None else (None, b.mhash)  # None: the values stay in the state
            _merge_orphan(out, b, o, unreadable, prune, now, order)
    if ours is not None:  # rows typed into the master by hand: kept, never counted
        known = set(wkey.tolist()) | set(base.key[:-1].tolist())
        for key, (vals, mh) in ours.items():
            if key not in known:
                out.add_row(key, None, None, mh, None, now, MASTER_ONLY, vals, vals, BIG + 1, len(out._rows), -1, -1,
                            True)
    return out.finish()


def _merge_winner(out: TableMerge, name, c: Cand, b, o, status, now, source_cols, load, sheet_of) -> None:
    """A row in a source now whose version differs from the master's (or whose master row was edited)."""
    from_source = b is not None and b.src_hash is not None
    ref_src = c.src if c.pos >= 0 else -1
    if from_source and c.hash == b.src_hash and o is not None:
        changed = b.status != status or b.sid != c.sid
        if changed:
            out.updated += 1
        else:
            out.unchanged += 1
            out.moved += c.row != b.row
        exact = o[1] == c.hash
        out.add_row(c.key, c.sid, c.hash, o[1], c.row, now if changed else b.synced_at, status, o[0],
                    None if exact else o[0], c.src, c.row, ref_src if exact else -1, c.pos,
                    changed or c.row != b.row or o[1] != b.mhash)
        return
    vals, store = _with_master_columns(name, c, o, source_cols)
    if not from_source or o is None:  # new, replacing a row typed into the master, or restored
        out.added += 1
    else:
        if o[1] != b.src_hash and _edited(o[0], load(c.key, b.sid, b.src_hash), source_cols):
            out.issues.append(Issue(c.name, sheet_of(c), c.row, None, c.key, WARNING,
                                    f"{c.key} was edited in the master and has changed in its source "
                                    f"since: the source's version replaces the master's edit"))
        out.updated += 1
    mh = c.hash if store is None else row_hash(vals)
    out.add_row(c.key, c.sid, c.hash, mh, c.row, now, status, vals, store, c.src, c.row,
                -1 if store else ref_src, c.pos, True)


def _merge_orphan(out: TableMerge, b, o, unreadable, prune, now, order) -> None:
    """A master row whose key no source has now."""
    if o is None:  # deleted in the master too
        out.removed += b.status != REMOVED and b.src_hash is not None
        out.deletes.append(b.key)
        return
    keep = b.src_hash is None or b.sid in unreadable
    if not keep and prune:
        out.removed += 1
        out.deletes.append(b.key)
        return
    status = b.status
    if not keep and b.status != REMOVED:
        out.removed += 1
        status = REMOVED
    elif keep and b.src_hash is not None:
        out.unchanged += 1
    rank = (BIG + 1, len(out._rows)) if b.src_hash is None else (order.get(b.sid, BIG), b.row or 0)
    store = None if o[1] == b.src_hash else KEEP if o[0] is None else o[0]
    out.add_row(b.key, b.sid, b.src_hash, o[1], b.row, now if status != b.status else b.synced_at, status, o[0],
                store, rank[0], rank[1], -1, -1, status != b.status or o[1] != b.mhash)


def _edited(master_vals: str, source_vals: str, source_cols: set) -> bool:
    """Whether a master row differs from the source version it was synced from (the master's own columns aside)."""
    mine = {k: v for k, v in json.loads(master_vals).items() if k in source_cols or _standard(k)}
    return mine != json.loads(source_vals or "{}")


def _with_master_columns(table: str, c: Cand, o, source_cols: set) -> tuple[str, str | None]:
    """The source's values plus the master's own columns (ones no source has ever had) from `o`."""
    if o is None or '"' not in o[0][2:]:
        return c.vals, None
    mine = {k: v for k, v in json.loads(o[0]).items() if k not in source_cols and not _standard(k)}
    if not mine:
        return c.vals, None
    merged = _dumps(_canonical({**json.loads(c.vals), **mine}, table))
    return merged, merged


_ALL_STANDARD = {c for t in TABLES for c in schema.TABLES[t].names}


def _standard(col: str) -> bool:
    return col in _ALL_STANDARD


def _canonical(d: dict, table: str) -> dict:
    names = schema.TABLES[table].names
    out = {c: d[c] for c in names if c in d}
    for k in sorted(k for k in d if k not in out):
        out[k] = d[k]
    return out


# --- the run ------------------------------------------------------------------------------------

def resolve_sources(specs, master: Path, state_path: Path) -> tuple[list, list[str]]:
    """Source objects (passed through) and paths/folders/globs (expanded), each once, master excluded."""
    exclude = [master, master.with_name(master.name + ".bak"), state_path]
    out, warnings, seen = [], [], set()
    for spec in specs:
        if hasattr(spec, "read") and hasattr(spec, "content_hash"):
            found = [spec]
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
        from .gsheets import sync_google

        return sync_google(sources, into, state=state, dry_run=dry_run, prune=prune, assign_ids=assign_ids,
                           progress=progress, wait=wait, workers=workers)
    master = Path(into).expanduser().resolve()
    if master.suffix.lower() not in (".xlsx", ".xlsm"):
        raise ValidationError(f"{master}: the master must be an .xlsx workbook")
    state_path = Path(state).expanduser().resolve() if state else state_mod.default_path(master)
    srcs, warnings = resolve_sources(list(sources), master, state_path)
    if not srcs:
        raise SyncError("no sources to sync: " + ("; ".join(warnings) if warnings else "give files, folders or globs"))
    workers = workers if workers is not None else min(2, os.cpu_count() or 1)
    if dry_run:  # under the lock (if a sync ever made one) so that the state is read whole
        with state_mod.lock(state_path, wait, create=False), \
                state_mod.State.open(state_path, readonly=True, untouched=True) as st:
            return _Run(srcs, warnings, master, state_path, st, True, prune, False, progress, workers, t0).run()
    if not master.parent.is_dir():
        raise SyncError(f"{master.parent}: no such folder for the master")
    with state_mod.lock(state_path, wait):
        from .xlsxpkg import check_unlocked

        check_unlocked(master)
        with state_mod.State.open(state_path) as st:
            return _Run(srcs, warnings, master, state_path, st, False, prune, assign_ids, progress, workers,
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
        """The master's content hash (None: no master). A Google master (gsheets.GoogleRun) hashes its tabs."""
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


# --- the frames cache ---------------------------------------------------------------------------

class FrameCache:
    """One table as the last sync wrote it, typed, from ``<state>.frames.npz``: rows that have not changed
    since come from here instead of being decoded again from the state's JSON (seconds for 400,000 rows).

    The file is a plain .npz (no pickle): per table its keys and columns; datetime and float columns as
    arrays, text columns as codes into their distinct values. It is tagged with the hash of the master it
    belongs to and only used when the master still has that hash; a table holding cells kept as written
    (mixed types) is not cached. Losing or spoiling the file only costs time."""

    def __init__(self, keys: np.ndarray, columns: dict[str, tuple]):
        self.index = pd.Index(keys)
        self.columns = columns  # name -> ("t", array) | ("s", codes, distinct values) | ("v", values)

    @staticmethod
    def path(state_path: Path) -> Path:
        return Path(str(state_path) + ".frames.npz")

    @classmethod
    def save(cls, state_path: Path, frames: dict[str, pd.DataFrame], keys: dict[str, np.ndarray], tag: str) -> None:
        arrays, manifest = {}, {"tag": tag, "tables": {}}

        def put(a: np.ndarray) -> str:
            name = f"a{len(arrays)}"
            arrays[name] = a
            return name

        def blob(strings: list) -> tuple[str, str]:
            offsets = np.cumsum([0] + list(map(len, strings)), dtype=np.int64)
            return put(np.frombuffer("".join(strings).encode(), dtype=np.uint8)), put(offsets)

        def text(a: np.ndarray) -> list:
            sample = a[:2000].tolist()
            if len(set(sample)) <= len(sample) // 2:  # few distinct values: codes into them (shared on load)
                codes, uniques = pd.factorize(a, use_na_sentinel=True)
                return ["s", put(codes.astype(np.int32)), *blob([str(u) for u in uniques])]
            vals = a.tolist()  # mostly distinct (IDs, names): the texts themselves, a mask for the blanks
            missing = np.array([v is None or v != v for v in vals], dtype=bool)
            return ["b", put(missing), *blob(["" if m else v for v, m in zip(vals, missing.tolist())])]

        for t in TABLES:
            df = frames.get(t)
            if df is None or keys.get(t) is None:
                continue
            entry = {}
            for c in df.columns:
                if c in SYNC_COLUMNS:
                    continue
                a = df[c].to_numpy()
                if a.dtype.kind in "fM":
                    entry[c] = ["t", put(a)]
                elif a.dtype == object and set(map(type, a[pd.notna(a)].tolist())) <= {str}:
                    entry[c] = text(a)
                else:
                    break  # a column mixing types: this table is decoded from the state next time
            else:
                manifest["tables"][t] = {"keys": text(np.asarray(keys[t], dtype=object)),
                                         "columns": entry}
        arrays["manifest"] = np.frombuffer(json.dumps(manifest).encode(), dtype=np.uint8)
        path = cls.path(state_path)
        tmp = path.with_name(path.name + f".{os.getpid()}.tmp.npz")
        try:
            np.savez(tmp, **arrays)
            os.replace(tmp, path)
        except OSError:
            tmp.unlink(missing_ok=True)  # no cache: only slower

    @classmethod
    def load(cls, state_path: Path, tag: str | None) -> dict[str, "FrameCache"]:
        path = cls.path(state_path)
        if tag is None or not path.exists():
            return {}
        try:
            with np.load(path, allow_pickle=False) as z:
                manifest = json.loads(z["manifest"].tobytes().decode())
                if manifest.get("tag") != tag:
                    return {}

                def strings(blob: str, offs: str) -> np.ndarray:
                    joined, offsets = z[blob].tobytes().decode(), z[offs].tolist()
                    out = np.empty(len(offsets) - 1, dtype=object)
                    out[:] = [joined[a:b] for a, b in zip(offsets[:-1], offsets[1:])]
                    return out

                def get(spec):
                    if spec[0] == "t":
                        return ("t", z[spec[1]])
                    if spec[0] == "s":
                        return ("s", z[spec[1]], strings(spec[2], spec[3]))
                    values = strings(spec[2], spec[3])
                    values[z[spec[1]]] = None
                    return ("v", values)

                def column(spec) -> np.ndarray:
                    got = get(spec)
                    return got[2][got[1]] if got[0] == "s" else got[1]

                return {t: cls(column(entry["keys"]), {c: get(spec) for c, spec in entry["columns"].items()})
                        for t, entry in manifest["tables"].items()}
        except Exception:  # a damaged or foreign file: decode from the state instead
            return {}

    def fill(self, keys: np.ndarray, want: np.ndarray, typed: dict, obj, rest: np.ndarray) -> np.ndarray:
        """Fill the rows at `want` (positions) that the cache has; return `rest` without them."""
        pos = self.index.get_indexer(keys[want]) if len(want) else np.empty(0, dtype=np.int64)
        hit = pos >= 0
        at, p = want[hit], pos[hit]
        if not len(at):
            return rest
        for c, entry in self.columns.items():
            if entry[0] == "t":
                a = entry[1][p]
                if not (np.isnat(a) if a.dtype.kind == "M" else np.isnan(a)).all():
                    typed.setdefault(c, []).append((at, a))
            elif entry[0] == "v":
                vals = entry[1][p]
                if (vals != None).any():  # noqa: E711
                    obj(c)[at] = vals
            else:
                codes = entry[1][p]
                if (codes >= 0).any():
                    vals = entry[2][np.maximum(codes, 0)]
                    vals[codes < 0] = None
                    obj(c)[at] = vals
        return np.setdiff1d(rest, at, assume_unique=True)


# --- frames -------------------------------------------------------------------------------------

def _decode_column(arr: np.ndarray, kind: str | None):
    """JSON-ready values of one column (an object array, None for blank) back to the clean dtype.
    Cells kept as written (values the reader could not type) stay as they are, in an object column."""
    n = len(arr)
    types = set(map(type, arr.tolist()))
    if kind in ("date", "datetime"):
        is_str = np.fromiter((type(v) is str for v in arr), dtype=bool, count=n)
        parsed = pd.to_datetime(pd.Series(arr[is_str], dtype=object), format="ISO8601", errors="coerce"
                                ).to_numpy(dtype="datetime64[us]")
        ok = ~np.isnat(parsed)
        if ok.all() and types <= {str, type(None)}:
            out = np.full(n, np.datetime64("NaT"), dtype="datetime64[us]")
            out[is_str] = parsed
            return out
        out = arr.copy()  # some cells are not dates: keep them beside the dates that are
        where = np.flatnonzero(is_str)[ok]
        out[where] = [pd.Timestamp(x) for x in parsed[ok]]
        return out
    if kind in ("money", "number", "percent", "int") and types <= {float, int, type(None)}:
        return arr.astype(float)  # None -> NaN
    if kind == "bool" and types <= {bool, type(None)}:
        return pd.array(arr.tolist(), dtype="boolean")
    if dict in types:  # tagged dates in extra columns
        arr = arr.copy()
        for i in np.flatnonzero(np.fromiter((type(v) is dict for v in arr), dtype=bool, count=n)):
            v = arr[i]
            arr[i] = pd.Timestamp(v["d"]) if "d" in v else str(next(iter(v.values()), ""))
        if types <= {dict, type(None)} and all(v is None or isinstance(v, pd.Timestamp) for v in arr.tolist()):
            return pd.to_datetime(pd.Series(arr, dtype=object)).to_numpy(dtype="datetime64[us]")
    return arr


def _json_ready(a: np.ndarray, kind: str | None) -> np.ndarray:
    """A typed column (datetime64 or float64) as JSON-ready objects, to sit beside decoded values."""
    if a.dtype.kind == "M":
        out = np.datetime_as_string(a, unit="D" if kind == "date" else "s").astype(object)
        if kind is None:  # an extra column: dates are tagged, as _plain_extra makes them
            out = np.array([{"d": x} for x in out.tolist()] + [None], dtype=object)[:-1]
        out[np.isnat(a)] = None
        return out
    out = a.astype(object)
    out[np.isnan(a)] = None
    return out


def _objects(values: list) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def _decode_value(v, kind: str | None):
    if isinstance(v, dict):
        return pd.Timestamp(v["d"]) if "d" in v else str(next(iter(v.values()), ""))
    if kind in ("date", "datetime") and isinstance(v, str):
        ts = pd.to_datetime(v, format="ISO8601", errors="coerce")
        return v if ts is pd.NaT else ts
    return v


DECODE_CHUNK = 50_000  # rows decoded from JSON at a time (their dicts are the bulk of the memory)
_TYPED_KINDS = ("date", "datetime", "money", "number", "percent", "int")


def _dicts_to_array(dicts: list[dict], keys: list[str]) -> np.ndarray:
    """A 2-D object array of dicts' values (None where a dict lacks a key)."""
    try:
        from pandas._libs.lib import dicts_to_array  # what DataFrame.from_records uses, without the inference

        grid = dicts_to_array(dicts, keys)
    except ImportError:
        grid = pd.DataFrame.from_records(dicts, columns=keys).to_numpy(dtype=object)
    grid[pd.isna(grid)] = None
    return grid


def _share(a: np.ndarray) -> np.ndarray:
    """Equal strings as one object: a Stage column of 400,000 rows holds a handful of distinct values."""
    try:
        codes, uniques = pd.factorize(a, use_na_sentinel=True)
    except TypeError:  # tagged dates (dicts) in an extra column
        return a
    if len(uniques) > len(a) // 2:
        return a
    out = np.asarray(uniques, dtype=object)[codes]
    out[codes < 0] = None
    return out


def _json_chunks(cols: dict, at: np.ndarray, stored):
    """(positions, JSON texts) in chunks for the rows at `at`: their own values, else the state's."""
    vals = cols["vals"]
    own = at[vals[at] != None]  # noqa: E711
    for start in range(0, len(own), DECODE_CHUNK):
        part = own[start:start + DECODE_CHUNK]
        yield part, vals[part].tolist()
    want = at[vals[at] == None]  # noqa: E711
    if not len(want):
        return
    if stored is None:
        raise SyncError("internal: rows without values and no state to read them from")
    where = dict(zip(cols["key"][want].tolist(), want.tolist()))
    pos, texts = [], []
    for key, text in stored():
        p = where.pop(key, None)
        if p is None:
            continue
        pos.append(p)
        texts.append(text)
        if len(pos) == DECODE_CHUNK:
            yield np.array(pos, dtype=np.int64), texts
            pos, texts = [], []
    if pos:
        yield np.array(pos, dtype=np.int64), texts
    if where:
        raise SyncError(f"the state store has no values for {len(where)} master row(s) (e.g. {next(iter(where))}); "
                        "move the state store away to rebuild it")


def table_frame(name: str, cols: dict[str, np.ndarray], names: dict, extras_order: list[str],
                fresh: dict[int, dict[str, object]] | None = None, stored=None,
                cached=None) -> tuple[pd.DataFrame, np.ndarray]:
    """A master table from merged rows (TableMerge.cols): standard columns, extras, then the sync columns, rows
    in source order then row order (rows typed into the master last).

    Values of rows read in this run are taken column-wise from the sources' values (`fresh`: source index ->
    column -> typed array or JSON-ready list). Rows without values of their own (unchanged since the last
    sync) come from `cached` (the tables as written last time, see FrameCache) when it has them; the rest
    are decoded from their JSON, in chunks: their own, or the state's, streamed by stored() as (key, values).
    Returns the frame and its rows' keys."""
    table = schema.TABLES[name]
    fresh = fresh or {}
    order = np.lexsort((cols["rank_row"], cols["rank_src"]))
    cols = {k: v[order] for k, v in cols.items()}
    n = len(order)
    ref = cols["ref_src"]
    by_ref = np.isin(ref, list(fresh)) if fresh else np.zeros(n, dtype=bool)
    objs: dict[str, np.ndarray] = {}  # column -> JSON-ready values (object), made when first seen
    typed: dict[str, list] = {}  # column -> [(positions, typed array)]

    def obj(c: str) -> np.ndarray:
        a = objs.get(c)
        if a is None:
            a = objs[c] = np.full(n, None, dtype=object)
        return a

    for src in np.unique(ref[by_ref]).tolist():
        at = np.flatnonzero(ref == src)
        pos = cols["ref_pos"][at]
        for c, values in fresh[src].items():
            if isinstance(values, np.ndarray):
                typed.setdefault(c, []).append((at, values[pos]))
            else:
                obj(c)[at] = _objects(values)[pos]
    rest = np.flatnonzero(~by_ref)
    if cached is not None and len(rest):
        rest = cached.fill(cols["key"], rest[cols["vals"][rest] == None], typed, obj, rest)  # noqa: E711
    for at, texts in _json_chunks(cols, rest, stored):
        dicts = [json.loads(v) for v in texts]
        keys: set = set()
        for d in dicts:
            keys.update(d)
        keys = sorted(keys)
        grid = _dicts_to_array(dicts, keys)
        del dicts
        for j, k in enumerate(keys):
            kind = _kind(table, k)
            obj(k)[at] = grid[:, j] if kind in _TYPED_KINDS else _share(grid[:, j])
        del grid
    present = dict.fromkeys([*objs, *typed])
    extras = [c for c in present if c not in table.names]
    rank = {c: i for i, c in enumerate(extras_order)}
    extras.sort(key=lambda c: (rank.get(c, len(rank)), c))
    data = {}
    for c in table.names + extras:
        kind, segs = _kind(table, c), typed.get(c, [])
        if c not in objs and segs and sum(len(a) for _, a in segs) == n and len({a.dtype for _, a in segs}) == 1:
            out = np.empty(n, dtype=segs[0][1].dtype)
            for at, a in segs:
                out[at] = a
            data[c] = out
            continue
        col = obj(c)
        for at, a in segs:
            col[at] = _json_ready(a, kind)
        data[c] = _decode_column(col, kind)
        objs.pop(c)
    data[SOURCE_FILE] = np.array([names.get(x) for x in cols["sid"].tolist()], dtype=object)
    data[SOURCE_ROW] = np.where(cols["row"] >= 0, cols["row"], np.nan).astype(float)
    data[SYNCED_AT] = pd.to_datetime(pd.Series(cols["synced_at"], dtype=object), format="ISO8601").to_numpy(
        dtype="datetime64[us]")
    data[SYNC_STATUS] = cols["status"]
    return _frame(data, n), cols["key"]


def _frame(data: dict, n: int) -> pd.DataFrame:
    """Object arrays stay object columns (None for blank), as the reader makes them: pandas 3 would turn
    text into its str dtype, NaN for blank, and spend time checking every value to do so."""
    index = pd.RangeIndex(n)
    return pd.DataFrame({c: pd.Series(v, index=index, dtype=object) if getattr(v, "dtype", None) == object
                         else pd.Series(v, index=index) for c, v in data.items()}, index=index)


def stages_frame(stages: list | None) -> pd.DataFrame:
    from .book import default_stages

    if not stages:
        return default_stages().reset_index(drop=True)
    cols = schema.STAGES.names
    return pd.DataFrame({
        cols[0]: np.array([s[0] for s in stages], dtype=object),
        cols[1]: np.array([np.nan if s[1] is None else s[1] for s in stages], dtype=float),
        cols[2]: np.array([np.nan if s[2] is None else s[2] for s in stages], dtype=float),
        cols[3]: pd.array([s[3] for s in stages], dtype="boolean"),
        cols[4]: pd.array([s[4] for s in stages], dtype="boolean"),
    })


def _text(v) -> str | None:
    return None if v is None else v if isinstance(v, str) else str(v)


def issues_frame(issues: list[Issue]) -> pd.DataFrame:
    return pd.DataFrame({
        "Source": np.array([i.source for i in issues], dtype=object),
        "Sheet": np.array([i.sheet for i in issues], dtype=object),
        "Row": np.array([np.nan if i.row is None else i.row for i in issues], dtype=float),
        "Column": np.array([i.column for i in issues], dtype=object),
        "Value": np.array([_text(i.value) for i in issues], dtype=object),  # text, never a formula
        "Severity": np.array([i.severity for i in issues], dtype=object),
        "Message": np.array([i.message for i in issues], dtype=object),
    }, columns=list(ISSUE_COLUMNS))


def conflicts_frame(conflicts: list[Conflict]) -> pd.DataFrame:
    recs = []
    for c in conflicts:
        table = schema.TABLES[c.table]
        for v in c.versions:
            rec = {"Table": c.table, "Key": c.key, "Chosen": "yes" if v["chosen"] else "no", "Reason": c.reason,
                   SOURCE_FILE: v["source"], SOURCE_ROW: float(v["row"])}
            for k, x in v["values"].items():
                rec[k] = _decode_value(x, _kind(table, k) if k in table.names else None)
            recs.append(rec)
    cols = list(CONFLICT_COLUMNS) + list(dict.fromkeys(k for r in recs for k in r if k not in CONFLICT_COLUMNS))
    return pd.DataFrame({c: np.array([r.get(c) for r in recs], dtype=object) for c in cols}, columns=cols)


def log_frame(runs: list[dict]) -> pd.DataFrame:
    keys = ("sources", "rows_read", "added", "updated", "unchanged", "removed", "conflicts", "issues")
    data = {"Time": pd.to_datetime(pd.Series([r["started"] for r in runs], dtype=object), format="ISO8601"
                                   ).to_numpy(dtype="datetime64[us]")}
    for col, k in zip(LOG_COLUMNS[1:-1], keys):
        data[col] = np.array([float(r["counts"].get(k, r.get(k, 0)) or 0) for r in runs], dtype=float)
    data[LOG_COLUMNS[-1]] = np.array([round(float(r.get("duration") or 0), 2) for r in runs], dtype=float)
    return pd.DataFrame(data, columns=list(LOG_COLUMNS))
