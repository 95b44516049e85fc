"""Merging one table: the versions of each key in the sources now (Cands), choosing one when a key is in more
than one row (newer Last Updated wins, else a Conflict), then three ways against the rows the last sync wrote
(Base) and the master as it is now (edits there kept until the source row changes).

Separate because it is the sync's rules, pure computation on arrays: no files, no state store writes.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from . import schema, state as state_mod
from .issues import WARNING, Issue
from .sync_rows import F_ERRORS, LAST_UPDATED, TABLES, TableRows, _dumps, _shared, row_hash

# A master row's Sync Status
OK, HAS_ERRORS, CONFLICT, REMOVED, MASTER_ONLY = "ok", "has errors", "conflict", "removed from source", "master only"


@dataclass
class Conflict:
    """One key found in more than one row with different values and no newest Last Updated."""

    table: str
    key: str
    reason: str
    versions: list[dict]  # {"source", "row", "chosen", "values"} in source order then row

    def to_dict(self) -> dict:
        return {"table": self.table, "key": self.key, "reason": self.reason, "versions": self.versions}


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
