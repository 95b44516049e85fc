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

Formula text is read by formula.py, evaluated by evaluator.py, and the values spliced into the sheet XML by
sheetsplice.py; this module finds the cells, drives those steps and writes the file.
"""
from __future__ import annotations

import re
import shutil
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from . import udf
from .errors import Error, ReadError
from .evaluator import NAMES, Evaluator, Target, Workbook
from .formula import Unsupported, cell_name, function_name, parse_formula, ref_area, shift_formula
from .sheetsplice import Edits, SheetXML, parse_attrs
from .xlsxpkg import atomic_write, check_unlocked, rewrite, sheet_parts

SUFFIXES = (".xlsx", ".xlsm")
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
        wb = Workbook(path)
        sheets = {s: (part, SheetXML(data.decode("utf-8"))) for s, (part, data) in candidates.items()}
        targets: dict[tuple[str, int, int], Target] = {}
        for sheet, (_, sx) in sheets.items():
            _find_targets(sheet, sx, targets, result)
        ev = Evaluator(wb, targets)
        edits = {s: Edits(sx) for s, (_, sx) in sheets.items()}
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


def _has_call(node) -> bool:
    if node[0] == "call":
        return function_name(node[1]) in NAMES or any(_has_call(a) for a in node[2])
    return any(isinstance(x, tuple) and _has_call(x) for x in node[1:])


def _find_targets(sheet: str, sx: SheetXML, targets: dict, result: RecalcResult) -> None:
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
                raise Unsupported(f"{attrs.get('t')} formulas are not evaluated")
            node = parse_formula(text)
        except Unsupported as e:
            if text and _CALL.search(text.encode("utf-8")):
                result.skipped.append(SkippedCell(sheet, ref, "=" + text, str(e)))
            continue
        if not _has_call(node):
            continue
        t = Target(sheet, cell.row, cell.col, text, node)
        if attrs.get("t") == "array":
            r1, c1, r2, c2, _ = ref_area(attrs.get("ref") or ref)
            t.array = (r1, c1, r2, c2)
            t.dynamic = "cm" in parse_attrs(cell.attrs)
        targets[(sheet.casefold(), cell.row, cell.col)] = t


def _write_target(t: Target, ev: Evaluator, ed: Edits, result: RecalcResult) -> None:
    ref = cell_name(t.row, t.col)
    try:
        value = ev.result(t)
    except Unsupported as e:
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
