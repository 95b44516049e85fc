"""Reading one source and encoding its rows: every row as canonical JSON (standard columns in standard order,
extra columns sorted, blanks left out), its key (the ID, a composite key, or one generated from identifying
values) and a 64-bit content hash.

Separate from the run (sync.py) because it is what worker processes execute and what the state store keeps
(TableRows), and from merging because it knows nothing of other sources or of the master.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from . import schema
from .errors import ReadError
from .issues import ERROR, WARNING, Issue

TABLES = (schema.DEALS.name, schema.LEADS.name, schema.COSTS.name, schema.TARGETS.name)  # consolidated


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
