"""Splice new cached values into a worksheet part's XML text, leaving every other byte as it was.

SheetXML finds each row and cell with its offsets in the text; Edits collects new cell elements (a value,
the formula kept, a dynamic array's new ref) and applies them in one pass, adding missing cells and rows
and growing <dimension>. Separate from recalc because it is worksheet XML surgery only: it knows where a
cell's <f>, <v> and attributes are, not what a formula means.
"""
from __future__ import annotations

import datetime as dt
import html
import math
import re
from dataclasses import dataclass, field

from . import udf
from .formula import cell_name, parse_cell, serial


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


def parse_attrs(text: str) -> dict[str, str]:
    return {k: v[1:-1] for k, v in _ATTR.findall(text)}


class SheetXML:
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
                a = parse_attrs(mm.group(3))
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
                a = parse_attrs(mm.group(1) if mm.group(1) is not None else mm.group(2))
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
        return parse_attrs(m.group(1)), (html.unescape(m.group(2)) if m.group(2) is not None else None), m.group(0)


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
        return None, repr(serial(v))
    return "str", _esc(str(v))


class Edits:
    """Non-overlapping splices into one sheet's XML text."""

    def __init__(self, sx: SheetXML):
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
