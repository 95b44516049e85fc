"""Headless recalculation: compute every salessheet function call in a workbook's cells and store the results
as the cells' cached values, so the file shows current numbers in any viewer that does not recalculate.

Only the worksheet parts holding salessheet formulas are rewritten, by splicing new ``<v>`` values into the
XML text; every other part (tables, styles, validation, other sheets, calcChain) is copied unchanged. Formulas
stay as they are: the file still recalculates in Excel or LibreOffice when the functions are installed there.

What is evaluated: a formula made of salessheet calls (WINRATE, KPITABLE...), numbers, strings, TRUE/FALSE,
DATE(y,m,d), cell and range references (``B2``, ``'My Sheet'!A1:P200``, ``Deals!A:P``), table references
(``Deals[#All]``, ``Deals``, ``Deals[Stage]``, ``Deals[[#All],[Stage]]``), omitted arguments and + - * / ^ %.
Anything else (SUM, IF, defined names, comparisons...) leaves the cell untouched and is reported as skipped.
Function names may carry the prefixes Excel writes for functions it does not know (``_xludf.``, ``_xll.``).
"""
from __future__ import annotations

import datetime as dt
import html
import math
import re
import shutil
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from . import udf
from .errors import Error, ReadError
from .reader import no_gc
from .xlsxpkg import atomic_write, check_unlocked, rewrite, sheet_parts

SUFFIXES = (".xlsx", ".xlsm")
NAMES = tuple(udf.FUNCTIONS) + ("KPITABLE",)
_PREFIXES = ("_XLUDF.", "_XLL.", "_XLFN.", "_XLWS.")
_EPOCH = dt.datetime(1899, 12, 30)  # Excel serial 0 (1900 date system; serials from 1900-03-01 on)
_CALL = re.compile(rb"(?i)(?<![\w])(?:_xludf\.|_xll\.)?(?:" + b"|".join(n.encode() for n in NAMES) + rb")\s*\(")


# --- results ------------------------------------------------------------------------------------


@dataclass
class RecalcCell:
    """A formula cell that got a new cached value. ``value``: float, a 2-D list for KPITABLE arrays,
    or None when ``error`` holds the spreadsheet error written ("#DIV/0!") and ``message`` says why."""

    sheet: str
    cell: str  # "B4", or "E20:Q26" for an array formula
    formula: str
    value: object = None
    error: str | None = None
    message: str | None = None

    def to_dict(self) -> dict:
        return {"sheet": self.sheet, "cell": self.cell, "formula": self.formula, "value": self.value,
                "error": self.error, "message": self.message}


@dataclass
class SkippedCell:
    """A formula with a salessheet call that recalc left untouched, and why."""

    sheet: str
    cell: str
    formula: str
    reason: str

    def to_dict(self) -> dict:
        return {"sheet": self.sheet, "cell": self.cell, "formula": self.formula, "reason": self.reason}


@dataclass
class RecalcResult:
    path: Path
    out: Path
    cells: list[RecalcCell] = field(default_factory=list)
    skipped: list[SkippedCell] = field(default_factory=list)
    parts: list[str] = field(default_factory=list)  # zip members rewritten
    written: bool = False  # False when no cached value changed and out is the input file

    def to_dict(self) -> dict:
        return {"path": str(self.path), "out": str(self.out), "written": self.written, "parts": self.parts,
                "recalculated": len(self.cells), "cells": [c.to_dict() for c in self.cells],
                "skipped": [s.to_dict() for s in self.skipped]}


class _Unsupported(Exception):
    """The formula uses something recalc does not evaluate; the cell is left alone."""


# --- A1 references ------------------------------------------------------------------------------


def col_index(letters: str) -> int:
    n = 0
    for ch in letters.upper():
        n = n * 26 + ord(ch) - 64
    return n


def col_letters(n: int) -> str:
    s = ""
    while n:
        n, r = divmod(n - 1, 26)
        s = chr(65 + r) + s
    return s


_A1 = re.compile(r"(\$?)([A-Za-z]{1,3})(\$?)(\d+)$")


def parse_cell(ref: str) -> tuple[int, int]:
    """"B4" -> (row 4, column 2), both 1-based."""
    m = _A1.match(ref)
    if not m:
        raise ValueError(f"not a cell reference: {ref!r}")
    return int(m.group(4)), col_index(m.group(2))


def cell_name(row: int, col: int) -> str:
    return f"{col_letters(col)}{row}"


# --- formula tokens and parser ------------------------------------------------------------------

_TOKEN = re.compile(r"""
 (?P<ws>\s+)
|(?P<str>"(?:[^"]|"")*")
|(?P<err>\#(?:NULL!|DIV/0!|VALUE!|REF!|NAME\?|NUM!|N/A|GETTING_DATA|SPILL!|CALC!))
|(?P<sheet>(?:'(?:[^']|'')+'|\[\d+\][\w.]*|[^\W\d][\w.]*)!)
|(?P<func>[^\W\d][\w.]*(?=\())
|(?P<range>(?:\$?[A-Za-z]{1,3}\$?\d+(?::\$?[A-Za-z]{1,3}\$?\d+)?|\$?[A-Za-z]{1,3}:\$?[A-Za-z]{1,3}|\$?\d+:\$?\d+)
   (?![\w.(\[]))
|(?P<table>[^\W\d][\w.]*(?=\[))
|(?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
|(?P<name>[^\W\d][\w.]*)
|(?P<op><=|>=|<>|[-+*/^%&=<>(),:;{}@])
""", re.X)


def tokenize(text: str) -> list[tuple[str, str, int, int]]:
    """(kind, text, start, end) tokens; a table token's text includes its [...] specifier."""
    out, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise _Unsupported(f"cannot read the formula at {text[pos:pos + 12]!r}")
        kind, end = m.lastgroup, m.end()
        if kind == "table":
            end = _bracket_end(text, end)
        if kind != "ws":
            out.append((kind, text[pos:end], pos, end))
        pos = end
    return out


def _bracket_end(text: str, i: int) -> int:
    """Index after the ] closing the [ at text[i]; ' escapes the next character inside brackets."""
    depth = 0
    while i < len(text):
        ch = text[i]
        if ch == "'":
            i += 2
            continue
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    raise _Unsupported("unbalanced [ ] in a table reference")


def shift_formula(text: str, drow: int, dcol: int) -> str:
    """A shared formula as seen from a cell (drow, dcol) away from its master: relative references move."""
    if not drow and not dcol:
        return text
    parts, last = [], 0
    for kind, tok, start, end in tokenize(text):
        if kind == "range":
            parts.append(text[last:start])
            parts.append(":".join(_shift_ref(p, drow, dcol) for p in tok.split(":")))
            last = end
    parts.append(text[last:])
    return "".join(parts)


def _shift_ref(ref: str, drow: int, dcol: int) -> str:
    m = re.fullmatch(r"(\$?)([A-Za-z]{0,3})(\$?)(\d*)", ref)
    cabs, col, rabs, row = m.groups()
    if col and not cabs:
        c = col_index(col) + dcol
        if c < 1:
            raise _Unsupported("a shared formula moves a reference off the sheet (#REF!)")
        col = col_letters(c)
    if row and not rabs:
        r = int(row) + drow
        if r < 1:
            raise _Unsupported("a shared formula moves a reference off the sheet (#REF!)")
        row = str(r)
    return f"{cabs}{col}{rabs}{row}"


class _Parser:
    """Recursive descent over Excel's operator precedence: + - < * / < ^ < unary minus < %."""

    def __init__(self, text: str):
        self.toks = tokenize(text)
        self.i = 0

    def parse(self):
        node = self.expr()
        if self.i != len(self.toks):
            raise _Unsupported(f"recalc does not evaluate {self.toks[self.i][1]!r} here")
        return node

    def peek(self, offset: int = 0):
        j = self.i + offset
        return self.toks[j] if j < len(self.toks) else (None, None, 0, 0)

    def take(self):
        tok = self.peek()
        self.i += 1
        return tok

    def op(self, *ops) -> str | None:
        kind, text, _, _ = self.peek()
        if kind == "op" and text in ops:
            self.i += 1
            return text
        return None

    def expr(self):
        node = self.term()
        while (o := self.op("+", "-")) is not None:
            node = ("bin", o, node, self.term())
        return node

    def term(self):
        node = self.power()
        while (o := self.op("*", "/")) is not None:
            node = ("bin", o, node, self.power())
        return node

    def power(self):
        node = self.unary()
        while self.op("^") is not None:
            node = ("bin", "^", node, self.unary())
        return node

    def unary(self):
        if (o := self.op("-", "+")) is not None:
            inner = self.unary()
            return ("neg", inner) if o == "-" else inner
        node = self.primary()
        while self.op("%") is not None:
            node = ("pct", node)
        return node

    def primary(self):
        kind, text, _, _ = self.take()
        if kind == "num":
            return ("num", float(text))
        if kind == "str":
            return ("str", text[1:-1].replace('""', '"'))
        if kind == "err":
            return ("err", text)
        if kind == "op" and text == "(":
            node = self.expr()
            if self.op(")") is None:
                raise _Unsupported("missing )")
            return node
        if kind == "sheet":
            sheet = text[:-1]
            if sheet.startswith("["):
                if self.peek()[0] == "func":  # an add-in's function: [1]!WINRATE(...)
                    return self.call(self.take()[1])
                raise _Unsupported("references to other workbooks are not evaluated")
            if sheet.startswith("'"):
                sheet = sheet[1:-1].replace("''", "'")
            k2, t2, _, _ = self.take()
            if k2 == "func":  # 'C:\addins\x.xlam'!WINRATE( or Book!WINRATE(
                self.i -= 1
                return self.call(self.take()[1])
            if k2 != "range":
                raise _Unsupported(f"recalc does not evaluate {text}{t2 or ''}")
            return ("ref", sheet, t2)
        if kind == "range":
            return ("ref", None, text)
        if kind == "table":
            return ("table", text)
        if kind == "func":
            return self.call(text)
        if kind == "name":
            up = text.upper()
            if up in ("TRUE", "FALSE"):
                return ("bool", up == "TRUE")
            return ("name", text)
        raise _Unsupported(f"recalc does not evaluate {text!r}" if text else "the formula ends too early")

    def call(self, name: str):
        self.take()  # (
        args = []
        if self.op(")") is not None:
            return ("call", name, args)
        while True:
            kind, text, _, _ = self.peek()
            if kind == "op" and text in (",", ")"):
                args.append(("missing",))
            else:
                args.append(self.expr())
            if self.op(",") is not None:
                continue
            if self.op(")") is not None:
                return ("call", name, args)
            raise _Unsupported(f"recalc does not evaluate {self.peek()[1]!r} in {name}()")


def parse_formula(text: str):
    return _Parser(text).parse()


def function_name(name: str) -> str:
    up = name.upper()
    for p in _PREFIXES:
        if up.startswith(p):
            return up[len(p):]
    return up


def _has_call(node) -> bool:
    if node[0] == "call":
        return function_name(node[1]) in NAMES or any(_has_call(a) for a in node[2])
    return any(isinstance(x, tuple) and _has_call(x) for x in node[1:])


# --- the workbook's values ----------------------------------------------------------------------


class _OwnTable:
    """A table argument that is exactly one of the workbook's standard tables: the engine uses the Book's."""


OWN = _OwnTable()


class _Workbook:
    """Cell values (python-calamine, cached values of formulas), the standard Excel tables, and the Book that
    read_workbook would make, built from the same read so the file is parsed once."""

    def __init__(self, path: Path):
        from . import sources
        from .reader import locate_tables

        self.path = path
        self.sheets, self.tables = sources.load(path)
        self._by_name = {s.name.casefold(): s for s in self.sheets}
        self._tables = {name.casefold(): t for name, t in self.tables.items()}
        self.regions = locate_tables(self.sheets, self.tables)
        self._book = None

    def book(self):
        if self._book is None:
            from .reader import build_book

            with no_gc():
                self._book = build_book(str(self.path), self.regions)
        return self._book

    def sheet_rows(self, sheet: str) -> list[list]:
        s = self._by_name.get(sheet.casefold())
        if s is None:
            raise _Unsupported(f"there is no sheet {sheet!r}")
        return s.rows

    def value(self, sheet: str, row: int, col: int):
        rows = self.sheet_rows(sheet)
        if row - 1 >= len(rows):
            return None
        r = rows[row - 1]
        v = r[col - 1] if col - 1 < len(r) else None
        return None if v == "" else v

    def area(self, sheet: str, r1: int, c1: int, r2: int | None, c2: int | None) -> list[list]:
        rows = self.sheet_rows(sheet)
        if r2 is None:  # whole columns: down to the last used row
            r2 = max(len(rows), r1)
        if c2 is None:  # whole rows: across the widest used row
            c2 = max([len(r) for r in rows[r1 - 1:r2]] + [c1])
        out = []
        for r in range(r1 - 1, r2):
            src = rows[r] if r < len(rows) else ()
            out.append([(None if (v := src[c]) == "" else v) if c < len(src) else None for c in range(c1 - 1, c2)])
        return out

    def has_table(self, name: str) -> bool:
        return name.casefold() in self._tables

    def table(self, spec: str):
        """Rows of a structured reference ``Name[...]``; OWN for a whole standard table the Book was read from."""
        name, _, inner = spec.partition("[")
        t = self._tables.get(name.casefold())
        if t is None:
            raise _Unsupported(f"table {name!r} is not one of the workbook's standard tables")
        header = [str(h) for h in t.rows[0]]
        specials, cols = _table_spec(inner[:-1] if inner else "")
        if "#this row" in specials or "#totals" in specials:
            raise _Unsupported("[#This Row] and [#Totals] are not evaluated")
        if cols is None:
            c1, c2 = 0, len(header) - 1
        else:
            low = [h.casefold() for h in header]
            try:
                c1, c2 = sorted(low.index(c.casefold()) for c in cols)
            except ValueError:
                raise _Unsupported(f"table {t.name} has no column {cols[0]!r}" +
                                   (f" or {cols[1]!r}" if cols[1] != cols[0] else "")) from None
        whole = cols is None or (c1 == 0 and c2 == len(header) - 1)
        data = "#all" in specials or "#data" in specials or not specials
        head = "#all" in specials or "#headers" in specials
        if whole and data:
            region = next((r for r in self.regions.values() if r.rows is t.rows), None)
            if region is not None:
                return OWN
            # The engine finds a table by its header row: a whole table always comes with it.
            head = True
        width = len(header)
        out = [header[c1:c2 + 1]] if head else []
        if data:
            for r in t.rows[1:]:
                if len(r) != width:
                    r = (list(r) + [None] * width)[:width]
                out.append(r[c1:c2 + 1] if (c1, c2) != (0, width - 1) else r)
        return out


def _table_spec(inner: str) -> tuple[set[str], tuple[str, str] | None]:
    """Specials ({"#all"}) and the column span of the text inside Table[...]."""
    def unescape(s: str) -> str:
        return re.sub(r"'(.)", r"\1", s).strip()

    if not inner.strip():
        return set(), None
    if not inner.lstrip().startswith("["):
        item = unescape(inner)
        if item.startswith("@"):
            return {"#this row"}, None
        return ({item.casefold()}, None) if item.startswith("#") else (set(), (item, item))
    specials, cols = set(), None
    for item in _split_items(inner):
        span = [unescape(x.strip()[1:-1]) for x in _split_top(item, ":")]
        if span[0].startswith("#"):
            specials.add(span[0].casefold())
        else:
            cols = (span[0], span[-1])
    return specials, cols


def _split_top(text: str, sep: str) -> list[str]:
    """Split on sep outside brackets (honouring ' escapes)."""
    out, depth, cur, i = [], 0, [], 0
    while i < len(text):
        ch = text[i]
        if ch == "'" and i + 1 < len(text):
            cur.append(text[i:i + 2])
            i += 2
            continue
        depth += (ch == "[") - (ch == "]")
        if ch == sep and depth == 0:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    out.append("".join(cur))
    return out


def _split_items(inner: str) -> list[str]:
    return [s.strip() for s in _split_top(inner, ",") if s.strip()]


def _ref_area(text: str):
    """'B2' -> (2, 2, 2, 2, True); 'A:P' -> (1, 1, None, 16, False); '3:5' -> (3, 1, 5, None, False)."""
    a, _, b = text.replace("$", "").partition(":")
    b = b or a
    if a.isdigit():
        return int(a), 1, int(b), None, False
    if a.isalpha():
        return 1, col_index(a), None, col_index(b), False
    (r1, c1), (r2, c2) = parse_cell(a), parse_cell(b)
    r1, r2 = sorted((r1, r2))
    c1, c2 = sorted((c1, c2))
    return r1, c1, r2, c2, text.find(":") < 0


# --- evaluation ---------------------------------------------------------------------------------


@dataclass
class _Target:
    sheet: str
    row: int
    col: int
    formula: str  # as the user reads it (no "="), shared formulas already moved to this cell
    node: tuple
    array: tuple[int, int, int, int] | None = None  # r1, c1, r2, c2 of an array formula
    dynamic: bool = False  # a spilling (dynamic array) formula: its range follows the result


class _Evaluator:
    def __init__(self, wb: _Workbook, targets: dict[tuple[str, int, int], _Target]):
        self.wb = wb
        self.targets = targets
        self.cache = udf.BookCache()
        self.results: dict[tuple[str, int, int], object] = {}
        self.busy: set[tuple[str, int, int]] = set()
        self.array_cells: dict[tuple[str, int, int], tuple[_Target, int, int]] = {}
        for t in targets.values():
            if t.array and not t.dynamic:
                r1, c1, r2, c2 = t.array
                for r in range(r1, r2 + 1):
                    for c in range(c1, c2 + 1):
                        self.array_cells[(t.sheet.casefold(), r, c)] = (t, r - r1, c - c1)
        self._areas: dict[tuple, list[list]] = {}
        self.calls: dict[tuple, object] = {}

    def result(self, t: _Target):
        """The target's value: float, str, UDFError, or a 2-D list (KPITABLE). Raises _Unsupported."""
        key = (t.sheet.casefold(), t.row, t.col)
        if key in self.results:
            r = self.results[key]
            if isinstance(r, _Unsupported):
                raise r
            return r
        if key in self.busy:
            raise _Unsupported("circular reference")
        self.busy.add(key)
        try:
            node = t.node
            if node[0] == "call" and function_name(node[1]) == "KPITABLE":
                r = self.call(node, t.sheet)
            else:
                r = self.scalar(node, t.sheet)
        except _Unsupported as e:
            self.results[key] = e
            raise
        finally:
            self.busy.discard(key)
        self.results[key] = r
        return r

    def cell(self, sheet: str, row: int, col: int):
        key = (sheet.casefold(), row, col)
        t = self.targets.get(key)
        if t is not None and not t.array:
            return self.result(t)
        hit = self.array_cells.get(key)
        if hit is not None:
            t, i, j = hit
            arr = self.result(t)
            if not isinstance(arr, list):
                return arr if i == j == 0 else udf.UDFError("#N/A", "outside the array")
            return arr[i][j] if i < len(arr) and j < len(arr[i]) else udf.UDFError("#N/A", "outside the array")
        if t is not None:  # a dynamic array's anchor: its first value
            arr = self.result(t)
            return arr[0][0] if isinstance(arr, list) else arr
        return self.wb.value(sheet, row, col)

    def arg(self, node, sheet: str):
        """An argument as a host passes it: scalar, 2-D list (header first), None for omitted."""
        kind = node[0]
        if kind == "missing":
            return None
        if kind == "ref":
            r1, c1, r2, c2, single = _ref_area(node[2])
            s = node[1] or sheet
            if single:
                return self.cell(s, r1, c1)
            key = (s.casefold(), r1, c1, r2, c2)
            if key not in self._areas:  # the same list object for every call: the engine's cache hits by identity
                self._check_area(s, r1, c1, r2, c2)
                self._areas[key] = self.wb.area(s, r1, c1, r2, c2)
            return self._areas[key]
        if kind == "table" or (kind == "name" and self.wb.has_table(node[1])):  # Deals alone: the table's data
            key = ("table", node[1].casefold())
            if key not in self._areas:
                self._areas[key] = self.wb.table(node[1])
            return self._areas[key]
        return self.scalar(node, sheet)

    def _check_area(self, sheet, r1, c1, r2, c2):
        for (s, r, c), t in self.targets.items():
            if s == sheet.casefold() and r1 <= r <= (r2 or r) and c1 <= c <= (c2 or c):
                raise _Unsupported(f"its range contains the salessheet formula in {cell_name(r, c)}")

    def call(self, node, sheet: str):
        name = function_name(node[1])
        if name == "DATE":
            y, m, d = (self.number(a, sheet) for a in node[2]) if len(node[2]) == 3 else (None,) * 3
            if y is None:
                raise _Unsupported("DATE needs three arguments")
            return _date_serial(y, m, d)
        if name not in NAMES:
            raise _Unsupported(f"{name}() is not a salessheet function; recalc leaves such formulas alone")
        args = []
        for a in node[2]:
            v = self.arg(a, sheet)
            if isinstance(v, udf.UDFError):
                return v
            args.append(None if v is OWN else v)
        # The same call twice on a dashboard is computed once (ranges are shared objects: key by identity).
        key = (name, tuple(("range", id(v)) if isinstance(v, list) else (type(v).__name__, v) for v in args))
        if key not in self.calls:
            self.calls[key] = udf.evaluate(name, args, workbook=self.wb.book, cache=self.cache)
        return self.calls[key]

    def scalar(self, node, sheet: str):
        kind = node[0]
        if kind in ("num", "str", "bool"):
            return node[1]
        if kind == "err":
            return udf.UDFError(node[1], "error value in the formula")
        if kind == "missing":
            return None
        if kind == "ref":
            r1, c1, _, _, single = _ref_area(node[2])
            if not single:
                raise _Unsupported("a range used as a single value")
            return self.cell(node[1] or sheet, r1, c1)
        if kind == "call":
            v = self.call(node, sheet)
            if isinstance(v, list):
                raise _Unsupported("KPITABLE inside a larger formula")
            return v
        if kind in ("neg", "pct"):
            x = self.number(node[1], sheet)
            if isinstance(x, udf.UDFError):
                return x
            return -x if kind == "neg" else x / 100
        if kind == "bin":
            a = self.number(node[2], sheet)
            if isinstance(a, udf.UDFError):
                return a
            b = self.number(node[3], sheet)
            if isinstance(b, udf.UDFError):
                return b
            return _arith(node[1], a, b)
        if kind == "table":
            raise _Unsupported("a table used as a single value")
        raise _Unsupported(f"defined name {node[1]!r} is not evaluated")

    def number(self, node, sheet: str):
        v = self.scalar(node, sheet)
        if isinstance(v, udf.UDFError):
            return v
        if v is None:
            return 0.0
        if isinstance(v, bool):
            return float(v)
        if isinstance(v, (int, float)):
            return float(v)
        if isinstance(v, dt.date):
            return _serial(v)
        if isinstance(v, str):
            try:
                return float(v.strip())
            except ValueError:
                return udf.UDFError("#VALUE!", f"{v!r} is not a number")
        raise _Unsupported(f"a {type(v).__name__} value in arithmetic")


def _arith(op: str, a: float, b: float):
    if op == "/" and b == 0:
        return udf.UDFError("#DIV/0!", "division by zero")
    try:
        r = a + b if op == "+" else a - b if op == "-" else a * b if op == "*" else a / b if op == "/" else a ** b
    except (OverflowError, ZeroDivisionError, ValueError):
        return udf.UDFError("#NUM!", "number out of range")
    if isinstance(r, complex) or not math.isfinite(r):
        return udf.UDFError("#NUM!", "number out of range")
    return float(r)


def _serial(d: dt.date) -> float:
    if not isinstance(d, dt.datetime):
        d = dt.datetime(d.year, d.month, d.day)
    return (d.replace(tzinfo=None) - _EPOCH).total_seconds() / 86400


def _date_serial(y, m, d):
    """DATE(y, m, d) as Excel computes it: months and days roll over, years 0-1899 mean 1900-3799."""
    for v in (y, m, d):
        if isinstance(v, udf.UDFError):
            return v
    y, m, d = int(y), int(m), int(d)
    if 0 <= y < 1900:
        y += 1900
    y, m = y + (m - 1) // 12, (m - 1) % 12 + 1
    try:
        day = dt.date(y, m, 1) + dt.timedelta(days=d - 1)
    except (ValueError, OverflowError):
        return udf.UDFError("#NUM!", "DATE out of range")
    return _serial(day)


# --- worksheet XML ------------------------------------------------------------------------------


@dataclass
class _Cell:
    row: int
    col: int
    start: int
    end: int
    attrs: str
    inner: str | None  # None for <c .../>


@dataclass
class _Row:
    num: int
    start: int
    tag_end: int
    close: int | None  # start of </row>; None for <row .../>
    end: int
    cells: list[_Cell] = field(default_factory=list)


_ATTR = re.compile(r"""([\w:.-]+)\s*=\s*("[^"]*"|'[^']*')""")


def _attrs(text: str) -> dict[str, str]:
    return {k: v[1:-1] for k, v in _ATTR.findall(text)}


class _SheetXML:
    """The rows and cells of one worksheet part, with their offsets in the text, for splicing edits."""

    def __init__(self, xml: str):
        self.xml = xml
        m = re.search(r"<(\w+:)?worksheet\b", xml)
        self.prefix = (m.group(1) or "") if m else ""  # a generator may write <x:c> for the main namespace
        self.p = p = re.escape(self.prefix)
        self.rows: dict[int, _Row] = {}
        self.cells: dict[tuple[int, int], _Cell] = {}
        sd = re.search(rf"<{p}sheetData\b[^>]*?(/?)>", xml)
        if sd is None or sd.group(1):
            self.data_end = sd.end() if sd else -1
            return
        self.data_end = xml.index(f"</{self.prefix}sheetData>", sd.end())
        pat = re.compile(rf"<{p}row\b([^>]*?)/>|<{p}row\b([^>]*)>|</{p}row>|<{p}c\b([^>]*?)(?:/>|>(.*?)</{p}c>)", re.S)
        row, rnum, cnum = None, 0, 0
        for mm in pat.finditer(xml, sd.end(), self.data_end):
            tag = mm.group(0)
            if mm.group(3) is not None:  # a cell
                a = _attrs(mm.group(3))
                if "r" in a:
                    r, c = parse_cell(a["r"])
                else:
                    r, c = rnum, cnum + 1
                cnum = c
                cell = _Cell(r, c, mm.start(), mm.end(), mm.group(3), mm.group(4))
                self.cells[(r, c)] = cell
                if row is not None:
                    row.cells.append(cell)
            elif tag.startswith("</"):
                if row is not None:
                    row.close, row.end = mm.start(), mm.end()
                row = None
            else:
                a = _attrs(mm.group(1) if mm.group(1) is not None else mm.group(2))
                rnum = int(a["r"]) if "r" in a else rnum + 1
                cnum = 0
                selfclosing = mm.group(1) is not None
                r = _Row(rnum, mm.start(), mm.end(), None, mm.end())
                self.rows[rnum] = r
                row = None if selfclosing else r

    def formula(self, cell: _Cell) -> tuple[dict[str, str], str | None, str] | None:
        """(attributes, text or None, raw element) of the cell's <f>, or None."""
        if not cell.inner:
            return None
        m = re.search(rf"<{self.p}f\b([^>]*?)(?:/>|>([^<]*)</{self.p}f>)", cell.inner)
        if m is None:
            return None
        return _attrs(m.group(1)), (html.unescape(m.group(2)) if m.group(2) is not None else None), m.group(0)


# The value's type and its rich-value metadata (Excel's vm, e.g. for #SPILL!) describe the old value.
_VALUE_ATTRS = re.compile(r"""\s+(?:t|vm)\s*=\s*("[^"]*"|'[^']*')""")


def _esc(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _value_xml(v) -> tuple[str | None, str]:
    """(t attribute, <v> text) for a value."""
    if isinstance(v, udf.UDFError):
        return "e", v.code
    if isinstance(v, bool):
        return "b", "1" if v else "0"
    if isinstance(v, (int, float)):
        f = float(v)
        if not math.isfinite(f):
            return "e", "#NUM!"
        s = repr(f)
        return None, s[:-2] if s.endswith(".0") else s
    if v is None:
        return "str", ""
    if isinstance(v, dt.date):
        return None, repr(_serial(v))
    return "str", _esc(str(v))


class _Edits:
    """Non-overlapping splices into one sheet's XML text."""

    def __init__(self, sx: _SheetXML):
        self.sx = sx
        self.replace: dict[tuple[int, int], str] = {}  # cell -> new element
        self.insert: dict[tuple[int, int], str] = {}  # missing cell -> new element
        self.clear: set[tuple[int, int]] = set()
        self.array_refs: dict[tuple[int, int], str] = {}  # anchor -> new ref of a dynamic array

    def set(self, row: int, col: int, value, keep_formula: bool) -> None:
        t, v = _value_xml(value)
        cell = self.sx.cells.get((row, col))
        if cell is None:
            tattr = f' t="{t}"' if t else ""
            c, vt = self._tag(), self._tag("v")
            self.insert[(row, col)] = f'<{c} r="{cell_name(row, col)}"{tattr}><{vt}>{v}</{vt}></{c}>'
            return
        self.replace[(row, col)] = self._cell_xml(cell, t, v, keep_formula)

    def erase(self, row: int, col: int) -> None:
        cell = self.sx.cells.get((row, col))
        if cell is not None:
            attrs = _VALUE_ATTRS.sub("", cell.attrs).rstrip()
            self.replace[(row, col)] = f"<{self._tag()}{attrs}/>"

    def _tag(self, name: str = "c") -> str:
        return self.sx.prefix + name

    def _cell_xml(self, cell: _Cell, t: str | None, v: str, keep_formula: bool) -> str:
        attrs = _VALUE_ATTRS.sub("", cell.attrs).rstrip()
        if t:
            attrs += f' t="{t}"'
        inner = cell.inner or ""
        p = self.sx.p
        f = re.search(rf"<{p}f\b[^>]*?(?:/>|>[^<]*</{p}f>)", inner) if keep_formula else None
        ext = re.search(rf"<{p}extLst\b.*</{p}extLst>", inner, re.S)
        fx = f.group(0) if f else ""
        new_ref = self.array_refs.get((cell.row, cell.col))
        if fx and new_ref:
            fx = re.sub(r'''(\sref\s*=\s*)("[^"]*"|'[^']*')''', lambda m: f'{m.group(1)}"{new_ref}"', fx, count=1)
        vt = self._tag("v")
        return f"<{self._tag()}{attrs}>{fx}<{vt}>{v}</{vt}>{ext.group(0) if ext else ''}</{self._tag()}>"

    def apply(self) -> str:
        sx, xml = self.sx, self.sx.xml
        splices: list[tuple[int, int, tuple, str]] = []
        for key, text in self.replace.items():
            c = sx.cells[key]
            splices.append((c.start, c.end, (1,), text))
        new_rows: dict[int, list[tuple[int, str]]] = {}
        grown: set[int] = set()
        for (r, c), text in self.insert.items():
            row = sx.rows.get(r)
            if row is None or row.close is None:
                new_rows.setdefault(r, []).append((c, text))
                continue
            after = next((x for x in row.cells if x.col > c), None)
            splices.append((after.start if after else row.close, after.start if after else row.close, (0, c), text))
            tag = xml[row.start:row.tag_end]
            if " spans=" in tag and r not in grown:  # spans is an optional hint: drop it rather than leave it stale
                grown.add(r)
                splices.append((row.start, row.tag_end, (1,), re.sub(r"""\s+spans\s*=\s*("[^"]*"|'[^']*')""", "", tag)))
        rt = self._tag("row")
        for r, cells in new_rows.items():
            body = "".join(text for _, text in sorted(cells))
            row = sx.rows.get(r)
            if row is not None:  # <row r="5" .../>: open it up
                tag = re.sub(r"\s*/>$", ">", xml[row.start:row.end])
                splices.append((row.start, row.end, (1,), f"{tag}{body}</{rt}>"))
                continue
            following = [x for x in sx.rows.values() if x.num > r]
            pos = min(x.start for x in following) if following else sx.data_end
            splices.append((pos, pos, (0, r), f'<{rt} r="{r}">{body}</{rt}>'))
        splices.sort(key=lambda s: (s[0], s[2]))
        out, cursor = [], 0
        for start, end, _, text in splices:
            out.append(xml[cursor:start])
            out.append(text)
            cursor = end
        out.append(xml[cursor:])
        new = "".join(out)
        if self.insert:
            new = _grow_dimension(new, self.insert.keys(), self.sx.p)
        return new


def _grow_dimension(xml: str, cells, p: str) -> str:
    m = re.search(rf'<{p}dimension\b[^>]*?\sref\s*=\s*"([^"]*)"', xml)
    if m is None:
        return xml
    ref = m.group(1)
    a, _, b = ref.partition(":")
    try:
        (r1, c1), (r2, c2) = parse_cell(a), parse_cell(b or a)
    except ValueError:
        return xml
    rows = [r for r, _ in cells] + [r1, r2]
    cols = [c for _, c in cells] + [c1, c2]
    new = f"{cell_name(min(rows), min(cols))}:{cell_name(max(rows), max(cols))}"
    return xml[:m.start(1)] + new + xml[m.end(1):]


# --- recalc -------------------------------------------------------------------------------------


def recalc(path, out=None) -> RecalcResult:
    """Recalculate every salessheet formula in the workbook at ``path``; write to ``out`` (default: in place).

    The file is replaced atomically and only when a cached value changed (or ``out`` is another file).
    """
    path = Path(path)
    dst = Path(out) if out is not None else path
    result = RecalcResult(path=path, out=dst)
    if path.suffix.lower() not in SUFFIXES:
        raise Error(f"{path}: recalc works on .xlsx and .xlsm files")
    if not path.exists():
        raise ReadError(path, "no such file")
    try:
        with zipfile.ZipFile(path) as z:
            parts = sheet_parts(z)
            candidates = {}
            for sheet, part in parts.items():
                if part in z.NameToInfo:
                    data = z.read(part)
                    if _mentions_call(data):
                        candidates[sheet] = (part, data)
    except (zipfile.BadZipFile, KeyError, OSError) as e:
        raise ReadError(path, f"cannot be read as an xlsx workbook ({e})") from None

    changed: dict[str, bytes] = {}
    if candidates:
        wb = _Workbook(path)
        sheets = {s: (part, _SheetXML(data.decode("utf-8"))) for s, (part, data) in candidates.items()}
        targets: dict[tuple[str, int, int], _Target] = {}
        for sheet, (_, sx) in sheets.items():
            _find_targets(sheet, sx, targets, result)
        ev = _Evaluator(wb, targets)
        edits = {s: _Edits(sx) for s, (_, sx) in sheets.items()}
        for t in targets.values():
            _write_target(t, ev, edits[t.sheet], result)
        for sheet, (part, sx) in sheets.items():
            new = edits[sheet].apply().encode("utf-8")
            if new != candidates[sheet][1]:
                changed[part] = new
    result.parts = sorted(changed)
    if not changed and dst.resolve() == path.resolve():
        return result
    check_unlocked(dst)
    with atomic_write(dst, backup=False) as tmp:
        if changed:
            rewrite(path, tmp, replace=changed)
        else:
            shutil.copyfile(path, tmp)
    result.written = True
    return result


_F_ELEM = re.compile(rb"<(?:\w+:)?f\b[^>]*>([^<]*)</(?:\w+:)?f>")


def _mentions_call(xml: bytes) -> bool:
    """Whether any <f> element of a worksheet calls a salessheet function (fast on big data sheets)."""
    start = 0
    if not re.match(rb"(?:<\?[^>]*\?>)?\s*<\w+:worksheet\b", xml[:1024]):  # no namespace prefix: <f ...>
        start = xml.find(b"<f")
        while start >= 0 and xml[start + 2:start + 3] not in (b" ", b">"):  # <formula1> and the like
            start = xml.find(b"<f", start + 2)
        if start < 0:
            return False
    return any(_CALL.search(m.group(1)) for m in _F_ELEM.finditer(xml, start))


def _find_targets(sheet: str, sx: _SheetXML, targets: dict, result: RecalcResult) -> None:
    shared: dict[str, tuple[int, int, str]] = {}  # si -> master (row, col, text)
    found = []
    for cell in sx.cells.values():
        f = sx.formula(cell)
        if f is None:
            continue
        attrs, text, _ = f
        if attrs.get("t") == "shared" and text and "si" in attrs:
            shared[attrs["si"]] = (cell.row, cell.col, text)
        found.append((cell, attrs, text))
    for cell, attrs, text in found:
        ref = cell_name(cell.row, cell.col)
        try:
            if text is None and attrs.get("t") == "shared" and attrs.get("si") in shared:
                r0, c0, master = shared[attrs["si"]]
                text = shift_formula(master, cell.row - r0, cell.col - c0)
            if not text or not _CALL.search(text.encode("utf-8")):
                continue
            if attrs.get("t") not in (None, "normal", "shared", "array"):
                raise _Unsupported(f"{attrs.get('t')} formulas are not evaluated")
            node = parse_formula(text)
        except _Unsupported as e:
            if text and _CALL.search(text.encode("utf-8")):
                result.skipped.append(SkippedCell(sheet, ref, "=" + text, str(e)))
            continue
        if not _has_call(node):
            continue
        t = _Target(sheet, cell.row, cell.col, text, node)
        if attrs.get("t") == "array":
            r1, c1, r2, c2, _ = _ref_area(attrs.get("ref") or ref)
            t.array = (r1, c1, r2, c2)
            t.dynamic = "cm" in _attrs(cell.attrs)
        targets[(sheet.casefold(), cell.row, cell.col)] = t


def _write_target(t: _Target, ev: _Evaluator, ed: _Edits, result: RecalcResult) -> None:
    ref = cell_name(t.row, t.col)
    try:
        value = ev.result(t)
    except _Unsupported as e:
        result.skipped.append(SkippedCell(t.sheet, ref, "=" + t.formula, str(e)))
        return
    if not isinstance(value, list):
        if t.array:  # a scalar in an array range fills it, as Excel shows it
            value = [[value]]
        else:
            ed.set(t.row, t.col, value, keep_formula=True)
            err = value if isinstance(value, udf.UDFError) else None
            result.cells.append(RecalcCell(t.sheet, ref, "=" + t.formula, None if err else value,
                                           err.code if err else None, err.message if err else None))
            return
    if not t.array:  # an array result in a plain cell shows its top-left value
        ed.set(t.row, t.col, value[0][0] if value and value[0] else None, keep_formula=True)
        result.cells.append(RecalcCell(t.sheet, ref, "=" + t.formula, value))
        return
    r1, c1, r2, c2 = t.array
    if t.dynamic:
        h, w = max(len(value), 1), max(max((len(r) for r in value), default=1), 1)
        nr2, nc2 = t.row + h - 1, t.col + w - 1
        for r in range(t.row, nr2 + 1):
            for c in range(t.col, nc2 + 1):
                inside_old = r1 <= r <= r2 and c1 <= c <= c2
                cell = ed.sx.cells.get((r, c))
                if not inside_old and cell is not None and cell.inner and ("<" in cell.inner):
                    why = f"its result would spill over {cell_name(r, c)}, which is not empty"
                    result.skipped.append(SkippedCell(t.sheet, ref, "=" + t.formula, why))
                    return
        for r in range(r1, r2 + 1):
            for c in range(c1, c2 + 1):
                if not (r <= nr2 and c <= nc2) and (r, c) != (t.row, t.col):
                    ed.erase(r, c)
        r1, c1, r2, c2 = t.row, t.col, nr2, nc2
        ed.array_refs[(t.row, t.col)] = f"{cell_name(r1, c1)}:{cell_name(r2, c2)}" if (r2, c2) != (r1, c1) else ref
    na = udf.UDFError("#N/A", "outside the result")
    for r in range(r1, r2 + 1):
        for c in range(c1, c2 + 1):
            i, j = r - r1, c - c1
            v = value[i][j] if i < len(value) and j < len(value[i]) else na
            ed.set(r, c, v, keep_formula=(r, c) == (t.row, t.col))
    span = f"{cell_name(r1, c1)}:{cell_name(r2, c2)}"
    result.cells.append(RecalcCell(t.sheet, span, "=" + t.formula, value))
