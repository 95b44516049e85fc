"""The master's sheets sync owns, as frames for the master writer: the consolidated tables (merged rows
decoded back to the reader's dtypes, with the sync columns), Stages, Issues, Conflicts and the Sync Log.

Separate because it is the way back from the state's JSON to typed columns, and the layout of what the
master shows; the run only decides when to write it.
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd

from . import schema
from .errors import SyncError
from .issues import Issue
from .sync_merge import Conflict
from .sync_rows import _kind

SOURCE_FILE, SOURCE_ROW, SYNCED_AT, SYNC_STATUS = "Source File", "Source Row", "Synced At", "Sync Status"
SYNC_COLUMNS = (SOURCE_FILE, SOURCE_ROW, SYNCED_AT, SYNC_STATUS)
ISSUE_COLUMNS = ("Source", "Sheet", "Row", "Column", "Value", "Severity", "Message")
CONFLICT_COLUMNS = ("Table", "Key", "Chosen", "Reason", SOURCE_FILE, SOURCE_ROW)
LOG_COLUMNS = ("Time", "Sources", "Rows Read", "Added", "Updated", "Unchanged", "Removed", "Conflicts", "Issues",
               "Duration (s)")


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
