"""Worksheet XML for a DataFrame, and the table part over it: what the master's owned sheets hold.

Sheet XML is built per column with numpy/pandas (each distinct value formatted once, rows assembled by one
join per chunk of rows) and deflated in a second thread while the next chunk is built: a 400,000-row
Deals sheet takes a few seconds (bench/master_write_bench.py).

Cell rules: text is always an inline string, never a formula (a team sheet cannot plant one in the
master); blanks (None, NaN, NaT, "") are no cell at all; dates are Excel serial numbers with a date
format; numbers, booleans and the standard money/percent formats by column.

Separate from master, which decides which parts of the package change: this module only turns frames into
cells, number formats, widths and XML text, and knows nothing of the rest of the package.
"""
from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Iterator
from xml.sax.saxutils import escape, quoteattr

import numpy as np
import pandas as pd

from . import schema, template, xlsxpkg
from .reader import column_letter
from .xlsxpkg import NS

MAX_TEXT = 32_767  # Excel's limit on a cell's text
CHUNK_ROWS = 2_000  # rows per XML chunk handed to the deflate thread (small chunks stay in CPU cache)

_MAIN, _REL = NS["m"], NS["r"]


def table_name(sheet: str) -> str:
    """The Excel table an owned sheet holds: its name without spaces ("Sync Log" -> "SyncLog")."""
    return sheet.replace(" ", "")


class Sheet:
    """One owned sheet to write: where it goes, and what it holds (a frame, or the Dashboard)."""

    def __init__(self, name: str, frame: pd.DataFrame | None, part: str):
        self.name, self.frame, self.part = name, frame, part
        self.table_part: str | None = None
        self.table_id = 0
        self.rels: list[tuple[str, str, str, str | None]] = []  # (Id, Type, Target, TargetMode)
        self.drawing_rid: str | None = None
        self.table_rid: str | None = None
        self.selected = False
        self.sheet_pr = ""  # the old sheet's <sheetPr> (tab colour, VBA code name), kept
        self.headers: list[str] = []
        self.cells: list[_Cells] = []
        self.xml = b""


# Our cell formats (see xlsxpkg.CellStyles).
STYLE_SPECS = {
    "date": ("yyyy-mm-dd", None, False, False),
    "datetime": ("yyyy-mm-dd hh:mm", None, False, False),
    "time": ("hh:mm", None, False, False),
    "money": (template.money_format(), None, False, False),
    "percent": (9, None, False, False),  # 0%
    "int": (1, None, False, False),  # 0
    "pct1": ("0.0%", None, False, False),
    "days": ("0.0", None, False, False),
    "title": (0, "title", False, False),
    "label": (0, "bold", False, True),
    "wrap": (0, None, False, True),
    "head": (0, "bold", True, False),
}


# --- cells: one column at a time, each distinct value formatted once ------------------------------

_EPOCH = pd.Timestamp("1899-12-30")
_DAY = pd.Timedelta(days=1)
_KIND = {}  # column name -> kind, from every standard table (Amount: money, Probability: percent, ...)
_WIDTH = {}
for _t in schema.TABLES.values():
    for _c in _t.columns:
        _KIND.setdefault(_c.name, _c.kind)
        _WIDTH.setdefault(_c.name, _c.width)
_NUM_STYLE = {"money": "money", "percent": "percent", "int": "int"}
# Text that cannot go into <t> as it is: markup, characters XML forbids, Excel's own _xHHHH_ escapes, and
# leading/trailing whitespace (needs xml:space). Checked on all distinct values of a column at once,
# joined by "\n", so a column of plain text costs a few regex scans; each pattern has a literal or a
# single class up front (fast to scan for) and each hit is one character, so no hit hides the next.
_NEEDS_CARE = [re.compile(p) for p in (r"[&<>\r\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]",
                                         r"_x[0-9A-Fa-f]{4}_", r"\n(?=\s)", r"\s(?=\n)")]
# XML parsers turn a raw CR into LF, so CR is escaped too (as Excel does).
_XESC = re.compile(r"_(?=x[0-9A-Fa-f]{4}_)|[\r\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_TEXT_HEAD, _TEXT_TAIL = '" t="inlineStr"><is><t>', "</t></is></c>"


class _Cells:
    """A column as cell XML: codes (one per row, -1 = no cell) into tails ('" s="3"><v>45000</v></c>')."""

    def __init__(self, codes: np.ndarray, tails, style: str | None = None, width: float = 0.0):
        arr = np.empty(len(tails) + 1, dtype=object)  # codes of -1 pick the trailing ""
        arr[:-1] = tails
        arr[-1] = ""
        tails = arr
        empty = np.flatnonzero(tails[:-1] == "")
        if empty.size:
            codes = np.where(np.isin(codes, empty), -1, codes)
        self.codes, self.tails, self.style, self.width = codes, tails, style, width


def text_xml(x: str) -> str:
    """The <t> content of one text cell (and the tail that closes the cell)."""
    if not x:
        return ""
    x = x[:MAX_TEXT]
    x = re.sub(r"[\ud800-\udfff]", "\ufffd", x)  # lone surrogates cannot be encoded
    x = _XESC.sub(lambda m: "_x005F_" if m.group() == "_" else "_x%04X_" % ord(m.group()), x)
    x = escape(x)
    if x[0].isspace() or x[-1].isspace():
        return '" t="inlineStr"><is><t xml:space="preserve">' + x + _TEXT_TAIL
    return _TEXT_HEAD + x + _TEXT_TAIL


def _text_cells(values) -> _Cells:
    codes, uniq = pd.factorize(values, use_na_sentinel=True)
    u = uniq.tolist()  # all str: the caller checked
    if not u:
        return _Cells(codes, [])
    tails = _TEXT_HEAD + np.array(u, dtype=object) + _TEXT_TAIL
    # One scan of all distinct values; only those it flags get the careful (slow) treatment.
    joined = "\n".join(u)
    hits = [m.start() for rx in _NEEDS_CARE for m in rx.finditer(joined)]
    if joined[:1].isspace() or joined[-1:].isspace():
        hits += [0, len(joined) - 1]
    lens = np.fromiter(map(len, u), dtype=np.int64, count=len(u))
    long = np.flatnonzero(lens > MAX_TEXT).tolist()
    if hits or long:
        starts = np.concatenate(([0], np.cumsum(lens[:-1] + 1)))
        # A hit on a separator ("\n" then a space) is about the value after it: redo both neighbours.
        idx = np.searchsorted(starts, hits, side="right") - 1
        for i in set(idx.tolist()) | set((idx + 1).tolist()) | set(long):
            if 0 <= i < len(u):
                tails[i] = text_xml(u[i])
    tails[lens == 0] = ""  # "" is a blank cell
    return _Cells(codes, tails, None, _text_width(u))


def _text_width(u: list[str]) -> float:
    lens = sorted(len(x) for x in u[:2000])
    return float(lens[int(len(lens) * 0.9)] if lens else 0)


def num(x: float) -> str:
    if x != x or x in (math.inf, -math.inf):
        return ""
    r = repr(float(x))
    return r[:-2] if r.endswith(".0") else r


def _nums(a) -> np.ndarray:
    """num of every value, vectorised: whole numbers via int (no ".0"), the rest by repr (shortest exact)."""
    a = np.asarray(a, dtype=float)
    out = np.full(len(a), "", dtype=object)
    fin = np.isfinite(a)
    whole = fin & (a == np.round(a)) & (np.abs(a) < 2.0**53)
    out[whole] = list(map(str, a[whole].astype(np.int64).tolist()))
    rest = fin & ~whole
    out[rest] = list(map(repr, a[rest].tolist()))
    return out


def _value_tails(attr: str, a) -> np.ndarray:
    v = _nums(a)
    tails = attr + v + "</v></c>"
    tails[v == ""] = ""
    return tails


def _number_cells(values: pd.Series, style: str | None, styles) -> _Cells:
    codes, uniq = pd.factorize(values, use_na_sentinel=True)
    attr = f'" s="{styles(style)}"><v>' if style else '"><v>'
    return _Cells(codes, _value_tails(attr, np.asarray(uniq, dtype=float)), style, 12)


def _bool_cells(values: pd.Series) -> _Cells:
    codes, uniq = pd.factorize(values.astype("boolean"), use_na_sentinel=True)
    return _Cells(codes, ['" t="b"><v>1</v></c>' if bool(x) else '" t="b"><v>0</v></c>' for x in uniq.tolist()],
                  None, 8)


def _serial(ts: pd.Timestamp) -> float | None:
    """Excel's day number (1900 date system, counting its phantom 1900-02-29), None outside 1900-9999."""
    days = (ts - _EPOCH) / _DAY
    if days < 61:
        days -= 1
    return days if 1 <= days < 2958466 else None


def _iso(ts: pd.Timestamp) -> str:
    return ts.date().isoformat() if ts == ts.normalize() else ts.isoformat(sep=" ")


def _date_cells(values: pd.Series, styles) -> _Cells:
    if getattr(values.dt, "tz", None) is not None:
        values = values.dt.tz_localize(None)  # the wall-clock time, as the sheet showed it
    codes, uniq = pd.factorize(values, use_na_sentinel=True)
    uniq = pd.DatetimeIndex(uniq)
    timed = bool((uniq != uniq.normalize()).any())
    style = "datetime" if timed else "date"
    days = ((uniq - _EPOCH) / _DAY).to_numpy(dtype=float)
    tails = _value_tails(f'" s="{styles(style)}"><v>', days)
    # Before 1900-03-01 Excel counts a phantom 1900-02-29; before 1900 and after 9999 it has no day numbers.
    for i in np.flatnonzero((days < 61) | (days >= 2958466)).tolist():
        ts = uniq[i]
        s = _serial(ts)
        tails[i] = f'" s="{styles(style)}"><v>{num(s)}</v></c>' if s is not None else text_xml(_iso(ts))
    return _Cells(codes, tails, style, 17 if timed else 12)


def _any_cell(v, styles) -> str:
    """Tail of one cell of any Python value (columns of mixed types)."""
    if v is None or v is pd.NA or v is pd.NaT or (isinstance(v, np.datetime64) and np.isnat(v)):
        return ""
    if isinstance(v, (bool, np.bool_)):
        return '" t="b"><v>1</v></c>' if v else '" t="b"><v>0</v></c>'
    if isinstance(v, (int, float, np.integer, np.floating)):
        n = num(float(v))
        return f'"><v>{n}</v></c>' if n else ""
    if isinstance(v, (dt.datetime, dt.date, np.datetime64)):
        ts = pd.Timestamp(v)
        if ts.tzinfo is not None:
            ts = ts.tz_localize(None)
        s = _serial(ts)
        if s is None:
            return text_xml(_iso(ts))
        return f'" s="{styles("date" if ts == ts.normalize() else "datetime")}"><v>{num(s)}</v></c>'
    if isinstance(v, dt.time):
        frac = (v.hour * 3600 + v.minute * 60 + v.second + v.microsecond / 1e6) / 86400
        return f'" s="{styles("time")}"><v>{num(frac)}</v></c>'
    return text_xml(v if isinstance(v, str) else str(v))


def column_cells(name: str, values: pd.Series, styles) -> _Cells:
    """The cells of one column, typed by its dtype (object columns: by what they hold)."""
    kind = _KIND.get(name)
    dtype = values.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        values = values.astype(object)
        dtype = values.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return _bool_cells(values)
    if pd.api.types.is_numeric_dtype(dtype):
        return _number_cells(values, _NUM_STYLE.get(kind), styles)
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return _date_cells(values, styles)
    if dtype != object and pd.api.types.is_string_dtype(dtype):
        return _text_cells(values)
    inferred = pd.api.types.infer_dtype(values, skipna=True)
    if inferred in ("string", "empty"):
        return _text_cells(values)
    if inferred in ("floating", "integer", "mixed-integer-float", "decimal"):
        return _number_cells(pd.to_numeric(values), _NUM_STYLE.get(kind), styles)
    if inferred == "boolean":
        return _bool_cells(values)
    if inferred in ("datetime", "datetime64", "date"):
        try:
            return _date_cells(pd.to_datetime(values), styles)
        except (ValueError, TypeError, OverflowError):
            pass
    out = [_any_cell(v, styles) for v in values.tolist()]
    codes = np.arange(len(out), dtype=np.intp)
    return _Cells(codes, out, None, _text_width([x for x in map(str, values.tolist()[:2000])]))


# --- sheets -------------------------------------------------------------------------------------


def frame_headers(frame: pd.DataFrame) -> list[str]:
    """Header texts: unique (case-insensitively, as Excel tables need), never blank."""
    out, seen = [], set()
    for i, c in enumerate(frame.columns):
        blank = c is None or (isinstance(c, float) and math.isnan(c))
        h = re.sub(r"[\x00-\x1f]", " ", "" if blank else str(c)).strip() or f"Column{i + 1}"
        base, n = h, 2
        while h.casefold() in seen:
            h, n = f"{base} {n}", n + 1
        seen.add(h.casefold())
        out.append(h[:255])
    return out


def sheet_view(sheet: Sheet, frozen: bool) -> str:
    sel = ' tabSelected="1"' if sheet.selected else ""
    if not frozen:
        return f'<sheetViews><sheetView{sel} workbookViewId="0"/></sheetViews>'
    return (f'<sheetViews><sheetView{sel} workbookViewId="0"><pane ySplit="1" topLeftCell="A2" activePane="bottomLeft" '
            'state="frozen"/><selection pane="bottomLeft" activeCell="A2" sqref="A2"/></sheetView></sheetViews>')


def sheet_end(sheet: Sheet) -> str:
    end = '<pageMargins left="0.7" right="0.7" top="0.75" bottom="0.75" header="0.3" footer="0.3"/>'
    if sheet.drawing_rid:
        end += f'<drawing r:id="{sheet.drawing_rid}"/>'
    if sheet.table_rid:
        end += f'<tableParts count="1"><tablePart r:id="{sheet.table_rid}"/></tableParts>'
    return end + "</worksheet>"


def write_sheet(zout: xlsxpkg.ZipWriter, sheet: Sheet, styles) -> None:
    if sheet.frame is None:
        zout.write(sheet.part, sheet.xml)
    else:
        zout.write_chunks(sheet.part, _frame_sheet(sheet, styles))


def _frame_sheet(sheet: Sheet, styles) -> Iterator[bytes]:
    """The worksheet XML of a frame, in chunks of CHUNK_ROWS rows."""
    n, k = sheet.frame.shape
    headers, cols = sheet.headers, sheet.cells
    letters = [column_letter(j) for j in range(k)]
    last = max(n, 1) + 1 if k else 1
    widths = "".join(
        f'<col min="{j + 1}" max="{j + 1}" width="{_col_width(h, c)}" customWidth="1"'
        + (f' style="{styles(c.style)}"' if c.style else "") + "/>" for j, (h, c) in enumerate(zip(headers, cols)))
    head = (f'{xlsxpkg.XML_HEAD}<worksheet xmlns="{_MAIN}" xmlns:r="{_REL}">{sheet.sheet_pr}'
            f'<dimension ref="A1{":" + letters[-1] + str(last) if k else ""}"/>{sheet_view(sheet, k > 0)}'
            f'<sheetFormatPr defaultRowHeight="15"/>' + (f"<cols>{widths}</cols>" if k else "") + "<sheetData>")
    if k:
        head += '<row r="1">' + "".join(f'<c r="{x}1{text_xml(h)}' for x, h in zip(letters, headers)) + "</row>"
    yield head.encode("utf-8")
    pres = [f'<c r="{x}' for x in letters]
    for a in range(0, n if k else 0, CHUNK_ROWS):
        b = min(n, a + CHUNK_ROWS)
        nums = [str(i) for i in range(a + 2, b + 2)]
        rn = np.array(nums, dtype=object)
        arr = np.empty((b - a, 3 * k + 2), dtype=object)
        arr[:, 0] = np.array([f'<row r="{i}">' for i in nums], dtype=object)
        for j, c in enumerate(cols):
            codes = c.codes[a:b]
            arr[:, 1 + 3 * j] = pres[j]
            arr[:, 2 + 3 * j] = rn
            arr[:, 3 + 3 * j] = c.tails[codes]
            blank = codes < 0
            if blank.any():
                arr[blank, 1 + 3 * j] = ""
                arr[blank, 2 + 3 * j] = ""
        arr[:, -1] = "</row>"
        yield "".join(arr.ravel().tolist()).encode("utf-8")
    yield ("</sheetData>" + sheet_end(sheet)).encode("utf-8")


def _col_width(header: str, c: _Cells) -> str:
    w = _WIDTH.get(header) or min(60.0, max(len(header) + 2.0, c.width + 2.0, 8.0))
    return num(w + 0.7109375)  # Excel adds 5 pixels of padding to the character count


def table_xml(sheet: Sheet) -> bytes:
    headers = sheet.headers
    k, n = len(headers), len(sheet.frame)
    ref = f"A1:{column_letter(k - 1)}{max(n, 1) + 1}"  # a table needs one data row, even a blank one
    name = table_name(sheet.name)
    cols = "".join(f'<tableColumn id="{i + 1}" name={quoteattr(h)}/>' for i, h in enumerate(headers))
    return (f'{xlsxpkg.XML_HEAD}<table xmlns="{_MAIN}" id="{sheet.table_id}" name="{name}" displayName="{name}" '
            f'ref="{ref}" '
            f'totalsRowShown="0"><autoFilter ref="{ref}"/><tableColumns count="{k}">{cols}</tableColumns>'
            '<tableStyleInfo name="TableStyleMedium2" showFirstColumn="0" showLastColumn="0" showRowStripes="1" '
            'showColumnStripes="0"/></table>').encode("utf-8")
