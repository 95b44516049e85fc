"""salessheet's spreadsheet functions in LibreOffice Calc: the Python half.

LibreOffice runs this file with its own Python (Debian: the system python3). The Basic module
SalesSheet calls `call` for every salessheet function typed in a cell. This file only translates:
Calc values in, engine result out. `salessheet.libreoffice.install_libreoffice` copies it into the
profile's Scripts/python/ and fills in the three settings below.
"""
import datetime as dt
import importlib
import math
import struct
import sys

import unohelper
from com.sun.star.document import XDocumentEventListener

SYS_PATH = []  # where salessheet and its dependencies (pandas, numpy) are installed
PYTHON = None  # (major, minor) of the Python those packages were installed for
ENGINE = "salessheet.udf:evaluate"  # "module:function" called as f(name, args, workbook=callable)

# Calc shows a NaN whose low 32 bits hold one of its internal error codes as that error.
ERRORS = {"#NULL!": 521, "#DIV/0!": 532, "#VALUE!": 519, "#REF!": 524, "#NAME?": 525, "#NUM!": 503, "#N/A": 32767}
EPOCH = dt.datetime(1899, 12, 30)
_engine = None


def calc_error(text):
    """The Calc error value for an Excel error literal such as "#N/A"."""
    return struct.unpack("<d", struct.pack("<Q", 0x7FF8000000000000 | ERRORS[text]))[0]


def _load_engine():
    global _engine
    if _engine is None:
        if PYTHON and tuple(PYTHON) != tuple(sys.version_info[:2]):
            # compiled packages (numpy, pandas) only load in the Python minor version they were built for
            raise RuntimeError("LibreOffice runs Python %d.%d but salessheet was installed for Python %d.%d"
                               % (sys.version_info[0], sys.version_info[1], PYTHON[0], PYTHON[1]))
        for p in reversed(SYS_PATH):
            if p not in sys.path:
                sys.path.insert(0, p)
        module, _, func = ENGINE.partition(":")
        _engine = getattr(importlib.import_module(module), func)
    return _engine


def from_calc(v):
    """One argument as the engine takes it: ranges become lists of rows, blanks None, numbers float."""
    if isinstance(v, tuple):
        return [from_calc(x) if isinstance(x, tuple) else _cell(x) for x in v]
    return _cell(v)


def _cell(v):
    if v is None or v == "":
        return None
    if isinstance(v, int) and not isinstance(v, bool):
        return float(v)
    return v


def to_calc(v):
    """An engine result as Calc shows it: a number, a text, an error value, or a rectangle of them."""
    if isinstance(v, (list, tuple)):
        rows = [list(r) for r in v] if v and all(isinstance(r, (list, tuple)) for r in v) else [list(v)]  # 1-D: a row
        width = max((len(r) for r in rows), default=0)
        if not width:
            return ""
        return tuple(tuple(_scalar(x) for x in r) + ("",) * (width - len(r)) for r in rows)
    return _scalar(v)


def _scalar(v):
    if v is None:
        return ""
    if hasattr(v, "item") and not isinstance(v, (str, bytes)):  # numpy scalars
        v = v.item()
    if isinstance(v, bool):
        return 1.0 if v else 0.0  # Calc shows a Basic Boolean as the text TRUE
    if isinstance(v, (int, float)):
        if math.isnan(v):
            return calc_error("#N/A")
        return calc_error("#NUM!") if math.isinf(v) else float(v)
    if isinstance(v, str):
        return calc_error(v) if v in ERRORS else v
    if getattr(v, "code", None) in ERRORS:  # salessheet.udf.UDFError: Calc shows the code, not the message
        return calc_error(v.code)
    if isinstance(v, dt.datetime):
        return (v.replace(tzinfo=None) - EPOCH).total_seconds() / 86400.0
    if isinstance(v, dt.date):
        return float((v - EPOCH.date()).days)
    if type(v).__name__ in ("NAType", "NaTType"):
        return ""
    return str(v)


def _spreadsheet(doc):
    return doc is not None and hasattr(doc, "supportsService") \
        and doc.supportsService("com.sun.star.sheet.SpreadsheetDocument")


class NoDocument(BaseException):
    """The calling document cannot be told: the call ends with this message. A BaseException so that
    an engine's `except Exception` does not swallow it."""
    message = "cannot tell which workbook this formula is in: pass the table, e.g. Deals[[#All]]"


class Loading(NoDocument):
    """The calling document is still loading: no UNO call can reach it yet."""
    message = "waiting for the workbook to open (Ctrl+Shift+F9 recalculates)"


class _RecalcWhenOpened(unohelper.Base, XDocumentEventListener):
    """Recalculates a spreadsheet once it has opened, if a call during its load had to be put off."""

    def documentEventOccured(self, event):
        global _pending, _opened
        # OnLoad never comes for documents loaded hidden; OnLoadFinished comes for all, after the import
        if _pending and event.EventName == "OnLoadFinished" and _spreadsheet(event.Source):
            _pending, _opened = False, event.Source
            try:
                event.Source.calculateAll()
            finally:
                _opened = None

    def disposing(self, source):
        pass


_pending = False  # a call was put off because its document was loading
_opened = None  # the document being recalculated by _RecalcWhenOpened
_listener = None


def _put_off():
    global _pending, _listener
    _pending = True
    if _listener is None:
        _listener = _RecalcWhenOpened()
        ctx = XSCRIPTCONTEXT.getComponentContext()
        events = ctx.getValueByName("/singletons/com.sun.star.frame.theGlobalEventBroadcaster")
        events.addDocumentEventListener(_listener)
    raise Loading()


def calling_document(doc):
    """The document the formula is in.

    While a document loads (and recalculates on load) it is in no UNO list and ThisComponent is still
    the previously active document, so a call then is put off until the document has opened. After
    that: Basic's ThisComponent, else the current component (ThisComponent is None for documents
    loaded hidden), else the only open spreadsheet."""
    if _opened is not None:
        return _opened
    ctx = globals().get("XSCRIPTCONTEXT")
    if ctx is None:
        return doc if _spreadsheet(doc) else None
    frames = ctx.getDesktop().getFrames()
    if any(frames.getByIndex(i).getController() is None for i in range(frames.getCount())):
        _put_off()
    if _spreadsheet(doc):
        return doc
    doc = ctx.getDocument()
    if _spreadsheet(doc):
        return doc
    found = []
    components = ctx.getDesktop().Components.createEnumeration()
    while components.hasMoreElements():
        c = components.nextElement()
        if _spreadsheet(c):
            found.append(c)
    return found[0] if len(found) == 1 else None


def document_tables(doc):
    """The standard tables of a document, header row first: its database ranges (xlsx tables arrive
    as those) named like a table, then sheets named like one."""
    from salessheet import schema

    tables = {}
    ranges = doc.DatabaseRanges
    for name in ranges.ElementNames:
        canon = schema.table_for_sheet_name(name)
        if canon and canon not in tables:
            tables[canon] = from_calc(ranges.getByName(name).ReferredCells.DataArray)
    for sheet in doc.Sheets:
        canon = schema.table_for_sheet_name(sheet.Name)
        if canon and canon not in tables:
            cursor = sheet.createCursor()
            cursor.gotoEndOfUsedArea(False)
            end = cursor.RangeAddress
            tables[canon] = from_calc(sheet.getCellRangeByPosition(0, 0, end.EndColumn, end.EndRow).DataArray)
    return tables


def call(name, args, given, doc=None):
    """Entry point for the Basic module: `given` is how many of `args` the formula wrote."""

    def workbook():  # the engine asks only when no range was given
        found = calling_document(doc)
        if found is None:
            raise NoDocument()
        return document_tables(found)

    try:
        engine = _load_engine()
        values = [from_calc(a) for a in tuple(args)[:int(given)]]
        return to_calc(engine(name, values, workbook=workbook))
    except NoDocument as e:
        return "salessheet: " + e.message
    except Exception as e:  # an exception would reach the cell as a blank: say what went wrong instead
        errors = sys.modules.get("salessheet.errors")
        if errors is not None and isinstance(e, errors.Error):  # the user's mistake: its message is for them
            return "salessheet: %s" % e
        return "salessheet: %s: %s" % (type(e).__name__, e)


g_exportedScripts = (call,)
