"""Formula evaluation against one workbook: what a reference's cells hold, the standard tables behind
structured references, arithmetic and DATE(), and salessheet calls computed by udf.evaluate with one cache
for the whole workbook.

Separate from recalc (which finds the formula cells in the package and writes their values back) and from
formula (which only reads formula text): this is the part that reads the workbook's values.
"""
from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from pathlib import Path

from . import udf
from .formula import Unsupported, cell_name, function_name, ref_area, serial, table_spec
from .reader import no_gc

NAMES = tuple(udf.FUNCTIONS) + ("KPITABLE",)


# --- the workbook's values ----------------------------------------------------------------------


class _OwnTable:
    """A table argument that is exactly one of the workbook's standard tables: the engine uses the Book's."""


OWN = _OwnTable()


class Workbook:
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
            raise Unsupported(f"there is no sheet {sheet!r}")
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
            raise Unsupported(f"table {name!r} is not one of the workbook's standard tables")
        header = [str(h) for h in t.rows[0]]
        specials, cols = table_spec(inner[:-1] if inner else "")
        if "#this row" in specials or "#totals" in specials:
            raise Unsupported("[#This Row] and [#Totals] are not evaluated")
        if cols is None:
            c1, c2 = 0, len(header) - 1
        else:
            low = [h.casefold() for h in header]
            try:
                c1, c2 = sorted(low.index(c.casefold()) for c in cols)
            except ValueError:
                raise Unsupported(f"table {t.name} has no column {cols[0]!r}" +
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


# --- evaluation ---------------------------------------------------------------------------------


@dataclass
class Target:
    sheet: str
    row: int
    col: int
    formula: str  # as the user reads it (no "="), shared formulas already moved to this cell
    node: tuple
    array: tuple[int, int, int, int] | None = None  # r1, c1, r2, c2 of an array formula
    dynamic: bool = False  # a spilling (dynamic array) formula: its range follows the result


class Evaluator:
    def __init__(self, wb: Workbook, targets: dict[tuple[str, int, int], Target]):
        self.wb = wb
        self.targets = targets
        self.cache = udf.BookCache()
        self.results: dict[tuple[str, int, int], object] = {}
        self.busy: set[tuple[str, int, int]] = set()
        self.array_cells: dict[tuple[str, int, int], tuple[Target, int, int]] = {}
        for t in targets.values():
            if t.array and not t.dynamic:
                r1, c1, r2, c2 = t.array
                for r in range(r1, r2 + 1):
                    for c in range(c1, c2 + 1):
                        self.array_cells[(t.sheet.casefold(), r, c)] = (t, r - r1, c - c1)
        self._areas: dict[tuple, list[list]] = {}
        self.calls: dict[tuple, object] = {}

    def result(self, t: Target):
        """The target's value: float, str, UDFError, or a 2-D list (KPITABLE). Raises Unsupported."""
        key = (t.sheet.casefold(), t.row, t.col)
        if key in self.results:
            r = self.results[key]
            if isinstance(r, Unsupported):
                raise r
            return r
        if key in self.busy:
            raise Unsupported("circular reference")
        self.busy.add(key)
        try:
            node = t.node
            if node[0] == "call" and function_name(node[1]) == "KPITABLE":
                r = self.call(node, t.sheet)
            else:
                r = self.scalar(node, t.sheet)
        except Unsupported as e:
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
            r1, c1, r2, c2, single = ref_area(node[2])
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
                raise Unsupported(f"its range contains the salessheet formula in {cell_name(r, c)}")

    def call(self, node, sheet: str):
        name = function_name(node[1])
        if name == "DATE":
            y, m, d = (self.number(a, sheet) for a in node[2]) if len(node[2]) == 3 else (None,) * 3
            if y is None:
                raise Unsupported("DATE needs three arguments")
            return _date_serial(y, m, d)
        if name not in NAMES:
            raise Unsupported(f"{name}() is not a salessheet function; recalc leaves such formulas alone")
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
            r1, c1, _, _, single = ref_area(node[2])
            if not single:
                raise Unsupported("a range used as a single value")
            return self.cell(node[1] or sheet, r1, c1)
        if kind == "call":
            v = self.call(node, sheet)
            if isinstance(v, list):
                raise Unsupported("KPITABLE inside a larger formula")
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
            raise Unsupported("a table used as a single value")
        raise Unsupported(f"defined name {node[1]!r} is not evaluated")

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
            return serial(v)
        if isinstance(v, str):
            try:
                return float(v.strip())
            except ValueError:
                return udf.UDFError("#VALUE!", f"{v!r} is not a number")
        raise Unsupported(f"a {type(v).__name__} value in arithmetic")


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
    return serial(day)
