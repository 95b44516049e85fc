"""Spreadsheet functions (=WINRATE() and friends): the one core every host adapter calls.

Signature convention, the same for every function, positional only (hosts reject keywords):

    =NAME([data], [owner], [team], [start], [end], [table], [table], ...)

- ``data``: a range with its header row (Deals for most functions, Leads for CONVERSIONRATE), e.g.
  ``Deals[[#All]]`` (Excel also takes ``Deals[#All]``; LibreOffice needs the double brackets). Blank:
  the calling workbook's own tables, when the host can provide them.
- ``owner``, ``team``: text filters; blank means all.
- ``start``, ``end``: inclusive dates (date cells, serial numbers or text); blank means all time.
- further ranges: more tables the KPI needs (Stages, Leads, Costs, Targets), recognised by their headers.

Hosts send ranges as 2-D lists with the header first, blanks as None, "" or 0, dates as datetimes or
float serials: all are accepted. An undefined result (no closed deals, no leads...) becomes an error
value, never 0. Parsing a big table costs far more than computing a KPI, and a dashboard calls many
functions over the same table in one recalculation, so parsed Books are cached by the content of the
ranges they came from.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import io
import pickle
from collections import OrderedDict
from dataclasses import dataclass

from . import kpi, schema
from .book import Book
from .errors import Error, MissingTableError, ValidationError

FUNCTIONS: dict[str, str] = {name: key for key, name in kpi.FUNCTION_NAMES.items()}  # WINRATE -> win_rate
ALL_FUNCTIONS: tuple[str, ...] = (*FUNCTIONS, "KPITABLE")  # every name a host registers
ARGS = ("data", "owner", "team", "start", "end")
MAIN_TABLE = {"conversion_rate": "Leads"}  # what `data` holds when it is not Deals


@dataclass(frozen=True)
class UDFError:
    """An error value for the host to show: code is the spreadsheet error ("#N/A", "#DIV/0!", "#VALUE!")."""

    code: str
    message: str

    def __str__(self) -> str:
        return f"{self.code} {self.message}"


# --- argument normalisation ---------------------------------------------------------------------


def is_blank(v) -> bool:
    """Hosts send an omitted argument or an empty cell as None, "", 0 or an empty range."""
    if v is None or v == "" or (isinstance(v, (int, float)) and not isinstance(v, bool) and v == 0):
        return True
    if isinstance(v, (list, tuple)):  # walk, never copy: ranges can be 100,000 rows
        return all(is_blank(x) for x in v)
    return isinstance(v, float) and v != v


def _rows(v) -> list[list]:
    """A range as a list of rows, whatever nesting the host used (a single cell, a row, a 2-D block)."""
    if not isinstance(v, (list, tuple)):
        return [[v]]
    if v and not isinstance(v[0], (list, tuple)):
        return [list(v)]
    return [list(r) for r in v]


def _head(v, n: int = 5) -> list[list]:
    """The first rows of a range, without copying the rest (enough to find its header)."""
    if isinstance(v, (list, tuple)) and v and isinstance(v[0], (list, tuple)):
        return [list(r) for r in v[:n]]
    return _rows(v)


def _scalar(v):
    """A single value out of a 1x1 range (some hosts wrap every argument in a 2-D array)."""
    while isinstance(v, (list, tuple)) and len(v) == 1:
        v = v[0]
    return v


def text_arg(v, what: str) -> str | None:
    v = _scalar(v)
    if is_blank(v):
        return None
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    if isinstance(v, (list, tuple)):
        raise ValidationError(f"{what} must be a single value, not a range")
    return str(v).strip() or None


def date_arg(v, what: str) -> dt.date | None:
    from .values import parse_dates

    v = _scalar(v)
    if is_blank(v):
        return None
    parsed, problems = parse_dates([v], what)
    if problems or str(parsed[0]) == "NaT":
        raise ValidationError(f"{what} {v!r} is not a date")
    return parsed[0].astype("datetime64[D]").item()


# --- tables and their cache ---------------------------------------------------------------------


def _fingerprint(rows: list[list]) -> bytes:
    """A digest of every cell, the same for equal ranges however they were built.

    pickle without its memo ("fast" mode) writes each value in full, so the bytes depend on content only
    (marshal from version 3 on, and pickle's memo, vary with object sharing and reference counts); it is
    also the quickest full walk that takes dates. sha256 is the fastest strong hash here (CPU extensions).
    """
    buf = io.BytesIO()
    p = pickle.Pickler(buf, protocol=5)
    p.fast = True
    try:
        p.dump(rows)
        data = buf.getbuffer()
    except (ValueError, RecursionError):  # a self-referencing list: fast mode refuses it
        data = pickle.dumps(rows, protocol=5)
    return hashlib.sha256(data).digest()[:16]


def identify(rows: list[list]) -> str:
    """Which standard table a range holds, from its header row."""
    from .reader import find_header

    best, best_score = None, (0, 0.0)
    for name, table in schema.TABLES.items():
        i, score = find_header(rows, table, scan=5)
        # Most matched columns first: a Deals header also matches several Leads columns.
        rank = (score, score / len(table.columns))
        if score >= 2 and rank > best_score:
            best, best_score = name, rank
    if best is None:
        raise ValidationError("a range passed to a salessheet function has no recognisable header row "
                              "(include the header: e.g. Deals[[#All]], not Deals)")
    return best


_TEXTLIKE = ("text", "id", "choice", "stage", "date", "datetime", "bool")


def _zeros_to_blank(rows: list[list], table: str) -> list[list]:
    """Some hosts send an empty cell as 0. In text and date columns 0 cannot be real data, so it is
    blank there; in number columns 0 is a real value and stays (hosts we know send None for those)."""
    from .reader import find_header

    i, _ = find_header(rows, schema.TABLES[table], scan=5)
    hm = schema.HEADER_MAPS[table]
    kinds = {c.name: c.kind for c in schema.TABLES[table].columns}
    cols = [j for j, h in enumerate(rows[i]) if isinstance(h, str)
            and kinds.get(hm.get(schema.normalize(h), ""), "") in _TEXTLIKE]
    if not cols or not any(r[j] == 0 and r[j] is not False for r in rows[i + 1:] for j in cols if j < len(r)):
        return rows
    out = rows[: i + 1]
    for r in rows[i + 1:]:
        r = list(r)
        for j in cols:
            if j < len(r) and r[j] == 0 and r[j] is not False:
                r[j] = None
        out.append(r)
    return out


class BookCache:
    """Parsed Books keyed by the content of their ranges (LRU). Identity is checked before content."""

    def __init__(self, size: int = 8):
        self.size = size
        self._books: OrderedDict[bytes, Book] = OrderedDict()
        self._merged: OrderedDict[tuple[int, int], tuple[Book, Book, Book]] = OrderedDict()
        self._by_id: OrderedDict[int, tuple[object, bytes]] = OrderedDict()
        self.hits = self.misses = 0

    def _key(self, rows) -> bytes:
        known = self._by_id.get(id(rows))
        if known is not None and known[0] is rows:  # the very same object: no need to hash it again
            return known[1]
        key = _fingerprint(rows)
        self._by_id[id(rows)] = (rows, key)
        if len(self._by_id) > 4:  # pins the ranges it remembers: keep few (a host's 100k-row range is ~100 MB)
            self._by_id.popitem(last=False)
        return key

    def book(self, ranges: list) -> Book:
        keys = tuple(self._key(r) for r in ranges)
        key = b"".join(keys)
        book = self._books.get(key)
        if book is not None:
            self.hits += 1
            self._books.move_to_end(key)
            return book
        self.misses += 1
        if len(ranges) > 1 and "Stages" not in (identify(_head(r)) for r in ranges):
            # Tables parse independently unless Stages come along (Deals' stages are read against them):
            # reuse the one-range Books, so =CAC(Deals, Costs) after =WINRATE(Deals) parses only Costs.
            parts = [self.book([r]) for r in ranges]
            book = Book(source="<range>", tables={n: t for b in parts for n, t in b.tables.items()})
        else:
            tables: dict[str, list[list]] = {}
            for r in ranges:
                rows = _rows(r)
                name = identify(rows)
                tables[name] = _zeros_to_blank(rows, name)
            book = Book.from_rows(tables, source="<range>")
        self._books[key] = book
        if len(self._books) > self.size:
            self._books.popitem(last=False)
        return book

    def merged(self, base: Book, given: Book) -> Book:
        """`given`'s tables over the workbook's, as one Book that stays the same object across calls
        (so what the KPI engine memoises on it is reused)."""
        key = (id(base), id(given))
        hit = self._merged.get(key)
        if hit is not None and hit[0] is base and hit[1] is given:
            return hit[2]
        book = Book(source=given.source, tables={**base.tables, **given.tables})
        self._merged[key] = (base, given, book)
        if len(self._merged) > self.size:
            self._merged.popitem(last=False)
        return book

    def clear(self) -> None:
        self._merged.clear()
        self._books.clear()
        self._by_id.clear()
        self.hits = self.misses = 0


CACHE = BookCache()


# --- evaluation ---------------------------------------------------------------------------------


def evaluate(name: str, args: list | tuple = (), workbook=None, cache: BookCache = CACHE):
    """Compute =NAME(args...). Returns a float, or a UDFError for the host to show; never raises.

    ``workbook``: the calling workbook's tables for the zero-argument form, as a Book or a callable
    returning one (or a dict of table name -> 2-D list). Called only when needed.
    """
    try:
        return _evaluate(name.upper(), list(args), workbook, cache)
    except MissingTableError as e:
        return UDFError("#N/A", str(e))
    except (ValidationError, KeyError, TypeError, ValueError) as e:
        return UDFError("#VALUE!", str(e).strip("'\""))
    except Error as e:
        return UDFError("#VALUE!", str(e))


def _book(ranges: list, workbook, cache: BookCache, fname: str) -> Book:
    """The Book for one call: the ranges passed, completed by the workbook's other tables if there is one."""
    given = [r for r in ranges if not is_blank(r)]
    book = cache.book(given) if given else None
    base = _workbook_book(workbook, cache)
    if book is None and base is None:
        raise ValidationError(f"{fname}() needs a data range here (this host cannot read the workbook's tables): "
                              f"e.g. ={fname}(Deals[[#All]])")
    if book is None or base is None:
        return book or base
    return cache.merged(base, book)


def _workbook_book(workbook, cache: BookCache) -> Book | None:
    if workbook is None:
        return None
    if callable(workbook):
        workbook = workbook()
    if isinstance(workbook, dict):
        return cache.book(list(workbook.values())) if workbook else None
    return workbook


def _evaluate(fname: str, args: list, workbook, cache: BookCache):
    if fname == "KPITABLE":
        return kpi_table_array(args, workbook, cache)
    key = FUNCTIONS.get(fname)
    if key is None:
        raise ValidationError(f"unknown salessheet function {fname}")
    args = args + [None] * (len(ARGS) - len(args))
    data, owner, team, start, end = args[:5]
    book = _book([data] + args[5:], workbook, cache, fname)
    value = kpi.KPIS[key](book, owner=text_arg(owner, "owner"), team=text_arg(team, "team"),
                          start=date_arg(start, "start"), end=date_arg(end, "end"))
    if value is None:
        return UDFError("#DIV/0!", f"{fname} is undefined here ({UNDEFINED_WHY.get(key, 'nothing to divide by')})")
    return float(value)


UNDEFINED_WHY = {
    "win_rate": "no deals closed in the period", "avg_deal_size": "no won deals in the period",
    "sales_cycle_days": "no won deals in the period", "conversion_rate": "no leads created in the period",
    "cac": "no new customers in the period", "sales_velocity": "no won deals or zero sales cycle",
    "quota_attainment": "no quota for this period and owner/team",
}


def kpi_table_array(args: list, workbook=None, cache: BookCache = CACHE) -> list[list]:
    """KPITABLE([data], [by], [start], [end]): the whole KPI table as one array, header row first."""
    args = list(args) + [None] * (4 - len(args))
    data, by, start, end = args[:4]
    by = text_arg(by, "by")
    book = _book([data] + list(args[4:]), workbook, cache, "KPITABLE")
    table = kpi.kpi_table(book, by=by.lower() if by else None, start=date_arg(start, "start"), end=date_arg(end, "end"))
    cols = list(kpi.KPIS)
    label = by.lower() if by else None
    out = [[label or "scope"] + cols]
    for rec in table.to_dict("records"):
        out.append([str(rec[label]) if label else "all"] + ["" if rec[c] is None else float(rec[c]) for c in cols])
    return out
