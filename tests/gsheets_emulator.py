"""A local, stateful emulator of the Google Sheets API v4 and the few Drive v3 calls gspread makes.

A real HTTP server on 127.0.0.1 (standard library only), checked against the recorded real traffic in
../shared/google-sheets-recordings/ by tests/test_gsheets_emulator.py.

Interface::

    emu = Emulator().start()        # binds 127.0.0.1:0 (a free port), serves in a daemon thread
    emu.url                         # "http://127.0.0.1:PORT"
    emu.session()                   # requests.Session sending https://sheets.googleapis.com and
                                    # https://www.googleapis.com (Drive) to emu.url:
                                    #   gspread.Client(auth=None, session=emu.session())
    key = emu.create_spreadsheet("Team A", sheets={"Deals": [["Deal ID", "Amount"], ["D-1", 1200]]})
    emu.values(key, "Deals")        # [["Deal ID", "Amount"], ["D-1", 1200]] (UNFORMATTED_VALUE, trimmed)
    emu.metadata(key)               # what spreadsheets.get answers (protectedRanges, conditionalFormats...)
    emu.cell(key, "Deals", "B2")    # {"value", "formula", "format", "validation", "note"} of one cell
    emu.requests                    # log of (method, path, query, body); path unquoted, query a dict of
                                    # lists, body parsed JSON; each entry also has .status
    emu.reads, emu.writes           # Sheets API read (GET) / write (POST, PUT) requests seen so far
    emu.fail(status=429, times=3, match="values:batchGet", retry_after=None, message=None)  # faults;
                                    # 429 carries the quota body, 500/503 Google's INTERNAL/UNAVAILABLE
    emu.delay(seconds, times=1, match=None)     # slow responses
    emu.disconnect(times=1, match=None)         # drop the connection without an answer
    emu.share(key, email, role="writer"); emu.permissions   # {key: [Drive permission dicts]}
    emu.deny(key, status=403)       # 403: unshared (Sheets 403 PERMISSION_DENIED, Drive 404);
                                    # 404: missing. share(key, emu.account) lifts a 403.
    emu.create_spreadsheet(..., value_input_option="USER_ENTERED")  # seed formulas ("=...") too;
                                    # RAW by default; date/datetime values become serials + DATE format
    emu.stop()                      # also usable as a context manager: `with Emulator() as emu:`

`match` is a substring of "METHOD /unquoted/path" (e.g. "values:batchGet", "PUT ", ":batchUpdate") or a
callable(method, path, query, body) -> bool; times=None injects forever.

Options: Emulator(read_quota=None, write_quota=None, quota_window=60.0, account=..., seed=0,
max_body=10 MiB). With a quota, Sheets reads (GET) and writes (POST/PUT) are counted per sliding
quota_window and answered 429 RESOURCE_EXHAUSTED past it (rejected requests are not counted).

Behaviour (as the real service, per the recordings unless noted):
- values.get/batchGet: valueRenderOption FORMATTED_VALUE (default) / UNFORMATTED_VALUE / FORMULA,
  dateTimeRenderOption SERIAL_NUMBER (default) / FORMATTED_STRING, majorDimension ROWS / COLUMNS.
  Dates are serial numbers from 1899-12-30. Trailing empty cells and rows are dropped, inner empty rows
  are [], inner empty cells "", and `values` is missing on an empty range. The echoed range is the
  request clipped to the grid; a range starting outside the grid is a 400 "exceeds grid limits".
- A1 ranges: 'quoted ''titles''', unquoted titles, bare titles, A1, A1:B2, A:A, 1:2, A2:C, A1:1;
  an unquoted "D3" is a cell of the first sheet, "'D3'" the sheet. Unknown -> 400 "Unable to parse range".
- values.update/batchUpdate: RAW stores JSON values as given. USER_ENTERED parses "=..." as a formula,
  "'x" as forced text, TRUE/FALSE, numbers ("1,234.5", "1e3", "-7"), "12%" and "$1,234.50" (with a
  PERCENT/CURRENCY format), dates "2026-01-05" and "1/5/2026", "2026-01-05 13:45[:00]" (with a DATE /
  DATE_TIME format, as Google does). "" clears a cell, null leaves it unchanged. Parsing is en_US only.
  Writing past the grid is a 400 (values.append grows the grid instead): "Range (...) exceeds grid
  limits" when the target starts off the grid, "Requested writing within range [...], but tried writing
  to row [N]" when the data runs off it or out of a multi-cell target range (as in public error reports).
- Formulas are stored as text (FORMULA render). FORMATTED/UNFORMATTED renders compute them when they use
  only + - * / ^ & %, parentheses, numbers, strings, TRUE/FALSE, cell and range references (any sheet)
  and SUM AVERAGE MIN MAX COUNT COUNTA ROUND ABS; errors render as "#DIV/0!", "#VALUE!", "#REF!" (cycles).
  Anything else renders as the formula text itself (NOT what Google does: it would compute it).
- FORMATTED_VALUE uses the cell's numberFormat (DATE/TIME/DATE_TIME patterns, NUMBER/CURRENCY/PERCENT
  patterns such as "#,##0.00", "0.0%", "$#,##0"), else an automatic format (up to 10 decimals).
- values.append: finds the "table" like Google (the connected block of the last non-empty cell in the
  searched range; a single-cell range searches from that cell), appends below it starting at its first
  column, answers tableRange/updates; INSERT_ROWS inserts rows, OVERWRITE (default) overwrites.
- values.clear/batchClear clear values only (formats and validation stay), as Google.
- spreadsheets.get with fields masks, ranges and includeGridData (userEnteredValue, effectiveValue,
  formattedValue, userEnteredFormat, dataValidation, note; no effectiveFormat or pixel metadata).
- spreadsheets.batchUpdate (atomic): addSheet, deleteSheet, duplicateSheet, updateSheetProperties,
  updateSpreadsheetProperties, addProtectedRange, updateProtectedRange, deleteProtectedRange,
  setDataValidation, repeatCell, updateCells, appendDimension, insertDimension, deleteDimension,
  addNamedRange, deleteNamedRange, addConditionalFormatRule, mergeCells, setBasicFilter, clearBasicFilter
  are applied; updateDimensionProperties, autoResizeDimensions, updateBorders, unmergeCells,
  addBandedRange, updateDimensionGroup are accepted and ignored. Inserting/deleting rows shifts values,
  formats and validation but not protected ranges or merges.
- Data validation is stored and returned (includeGridData), never enforced (the API does not enforce it).
- Drive v3 (errors in Drive's shape, with an `errors` list): files.create (spreadsheets), files.get/list (q: mimeType, name =/contains, parents, trashed),
  files.update (name), files.delete, files.copy, permissions.create/list/delete, comments.list/create;
  files carry createdTime/modifiedTime and a `version` that grows with every write.
- Errors are shaped like Google's; 429 carries the per-user quota message and ErrorInfo details.
"""
from __future__ import annotations

import copy
import datetime as dt
import json
import math
import random
import re
import threading
import time
from collections import deque, namedtuple
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

SHEETS_HOST = "https://sheets.googleapis.com"
DRIVE_HOST = "https://www.googleapis.com"
SHEET_MIME = "application/vnd.google-apps.spreadsheet"
MAX_BODY = 10 * 1024 * 1024
EPOCH = dt.datetime(1899, 12, 30)
PROJECT = "123456789012"
DATE_TYPES = ("DATE", "TIME", "DATE_TIME")
VRO = ("FORMATTED_VALUE", "UNFORMATTED_VALUE", "FORMULA")
DTRO = ("SERIAL_NUMBER", "FORMATTED_STRING")


def _rgb(r=None, g=None, b=None):
    return {} if r is None else {"red": r, "green": g, "blue": b}


# Copied from the recorded spreadsheets.get answers: every new spreadsheet has these properties.
DEFAULT_FORMAT = {
    "backgroundColor": _rgb(1, 1, 1), "padding": {"top": 2, "right": 3, "bottom": 2, "left": 3},
    "verticalAlignment": "BOTTOM", "wrapStrategy": "OVERFLOW_CELL",
    "textFormat": {"foregroundColor": {}, "fontFamily": "arial,sans,sans-serif", "fontSize": 10,
                   "bold": False, "italic": False, "strikethrough": False, "underline": False,
                   "foregroundColorStyle": {"rgbColor": {}}},
    "backgroundColorStyle": {"rgbColor": _rgb(1, 1, 1)},
}
SPREADSHEET_THEME = {"primaryFontFamily": "Arial", "themeColors": [
    {"colorType": t, "color": {"rgbColor": _rgb(*c)}} for t, c in [
        ("TEXT", ()), ("BACKGROUND", (1, 1, 1)), ("ACCENT1", (0.25882354, 0.52156866, 0.95686275)),
        ("ACCENT2", (0.91764706, 0.2627451, 0.20784314)), ("ACCENT3", (0.9843137, 0.7372549, 0.015686275)),
        ("ACCENT4", (0.20392157, 0.65882355, 0.3254902)), ("ACCENT5", (1, 0.42745098, 0.003921569)),
        ("ACCENT6", (0.27450982, 0.7411765, 0.7764706)), ("LINK", (0.06666667, 0.33333334, 0.8))]]}

# --------------------------------------------------------------------------------------------- errors

STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
          408: "DEADLINE_EXCEEDED", 409: "ABORTED", 413: "INVALID_ARGUMENT", 429: "RESOURCE_EXHAUSTED",
          500: "INTERNAL", 502: "UNAVAILABLE", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}
MESSAGES = {400: "Request contains an invalid argument.", 401: "Request had invalid authentication "
            "credentials. Expected OAuth 2 access token, login cookie or other valid authentication "
            "credential.", 403: "The caller does not have permission",
            404: "Requested entity was not found.", 408: "Request timed out.", 409: "Aborted.",
            500: "Internal error encountered.", 502: "Bad Gateway.",
            503: "The service is currently unavailable.", 504: "Deadline expired before operation could complete."}


class ApiError(Exception):
    """A Sheets API error answer: {"error": {"code", "message", "status"[, "details"]}}."""

    def __init__(self, code, message=None, details=None, headers=None):
        super().__init__(message)
        self.code, self.message = code, message or MESSAGES.get(code, "Error")
        self.details, self.headers = details, headers or {}

    def body(self):
        err = {"code": self.code, "message": self.message, "status": STATUS.get(self.code, "UNKNOWN")}
        if self.details:
            err["details"] = self.details
        return {"error": err}


class DriveError(ApiError):
    """Drive v3 errors carry an `errors` list instead of a status."""

    def __init__(self, code, message, reason, location=None):
        super().__init__(code, message)
        self.reason, self.location = reason, location

    def body(self):
        item = {"message": self.message, "domain": "global", "reason": self.reason}
        if self.location:
            item.update(location=self.location, locationType="parameter")
        return {"error": {"code": self.code, "message": self.message, "errors": [item]}}


def bad(message):
    return ApiError(400, message)


def quota_error(kind, limit=60, headers=None):
    """429 as Sheets answers a per-user quota overrun; kind is "Read" or "Write"."""
    msg = (f"Quota exceeded for quota metric '{kind} requests' and limit '{kind} requests per minute "
           f"per user' of service 'sheets.googleapis.com' for consumer 'project_number:{PROJECT}'.")
    details = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "RATE_LIMIT_EXCEEDED",
                "domain": "googleapis.com", "metadata": {
                    "quota_location": "global", "service": "sheets.googleapis.com",
                    "quota_metric": f"sheets.googleapis.com/{kind.lower()}_requests",
                    "quota_limit": f"{kind}RequestsPerMinutePerUser", "quota_limit_value": str(limit),
                    "consumer": f"projects/{PROJECT}"}},
               {"@type": "type.googleapis.com/google.rpc.Help", "links": [
                   {"description": "Request a higher quota limit.",
                    "url": "https://cloud.google.com/docs/quotas/help/request_increase"}]}]
    return ApiError(429, msg, details, headers)


def invalid_value(field, value, type_name="google.protobuf.ListValue"):
    msg = f"Invalid value at '{field}' (type.googleapis.com/{type_name}), {json.dumps(value)}"
    return ApiError(400, msg, [{"@type": "type.googleapis.com/google.rpc.BadRequest",
                                "fieldViolations": [{"field": field, "description": msg}]}])


# ------------------------------------------------------------------------------------------ A1 notation

def col_letters(i):
    s, i = "", i + 1
    while i:
        i, r = divmod(i - 1, 26)
        s = chr(65 + r) + s
    return s


def col_index(letters):
    n = 0
    for ch in letters.upper():
        n = n * 26 + ord(ch) - 64
    return n - 1


_PART = re.compile(r"^\$?([A-Za-z]{1,3})?\$?([0-9]+)?$")
_PLAIN_TITLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_CELLISH_TITLE = re.compile(r"^([A-Za-z]{1,3}[0-9]+|[Rr][0-9]*[Cc][0-9]*)$")


def quote_title(title):
    if _PLAIN_TITLE.match(title) and not _CELLISH_TITLE.match(title):
        return title
    return "'" + title.replace("'", "''") + "'"


def _part(text):
    m = _PART.match(text)
    if not m or not text or not (m.group(1) or m.group(2)):
        return None
    row = int(m.group(2)) - 1 if m.group(2) else None
    if row is not None and row < 0:
        return None
    return row, (col_index(m.group(1)) if m.group(1) else None)


def parse_cells(text):
    """A1 cells part -> (r0, c0, r1, c1, single); r1/c1 None when unbounded. None if not A1."""
    a, colon, b = text.partition(":")
    pa = _part(a)
    if pa is None:
        return None
    if not colon:
        if None in pa:
            return None
        return pa[0], pa[1], pa[0] + 1, pa[1] + 1, True
    pb = _part(b)
    if pb is None:
        return None
    r0, c0 = pa[0] or 0, pa[1] or 0
    r1 = pb[0] + 1 if pb[0] is not None else None
    c1 = pb[1] + 1 if pb[1] is not None else None
    if r1 is not None and r1 <= r0:
        r0, r1 = r1 - 1, r0 + 1
    if c1 is not None and c1 <= c0:
        c0, c1 = c1 - 1, c0 + 1
    return r0, c0, r1, c1, False


def a1(sheet, r0, c0, r1, c1):
    q = quote_title(sheet.title)
    start = f"{col_letters(c0)}{r0 + 1}"
    if r1 - r0 <= 1 and c1 - c0 <= 1:
        return f"{q}!{start}"
    return f"{q}!{start}:{col_letters(c1 - 1)}{r1}"


class Rng:
    """A resolved range: sheet plus 0-based half-open bounds (r1/c1 None = to the grid's end)."""

    def __init__(self, sheet, r0=0, c0=0, r1=None, c1=None, single=False, text=""):
        self.sheet, self.r0, self.c0, self.r1, self.c1 = sheet, r0, c0, r1, c1
        self.single, self.text = single, text

    def clamp(self):
        """Bounds clipped to the grid; a range starting outside the grid is an error."""
        rows, cols = self.sheet.rows, self.sheet.cols
        if self.r0 >= rows or self.c0 >= cols:
            raise self.exceeds(self.r0, self.c0, self.r1, self.c1)
        return (self.r0, self.c0, min(self.r1 if self.r1 is not None else rows, rows),
                min(self.c1 if self.c1 is not None else cols, cols))

    def exceeds(self, r0, c0, r1, c1):
        q = quote_title(self.sheet.title)
        start = f"{col_letters(c0)}{r0 + 1}"
        end = "" if (r1 is not None and c1 is not None and r1 - r0 <= 1 and c1 - c0 <= 1) else \
            ":" + (col_letters(c1 - 1) if c1 is not None else "") + (str(r1) if r1 is not None else "")
        return bad(f"Range ({q}!{start}{end}) exceeds grid limits. "
                   f"Max rows: {self.sheet.rows}, max columns: {self.sheet.cols}")


def resolve(ss, text):
    """Parse an A1 range against a spreadsheet; 400 "Unable to parse range" like Google."""
    fail = bad(f"Unable to parse range: {text}")
    s = text.strip()
    if s.startswith("'"):
        i, title = 1, []
        while True:
            j = s.find("'", i)
            if j < 0:
                raise fail
            title.append(s[i:j])
            if s[j + 1:j + 2] == "'":
                title.append("'")
                i = j + 2
                continue
            rest = s[j + 1:]
            break
        title = "".join(title)
        if rest and not rest.startswith("!"):
            raise fail
        cells = rest[1:]
    elif "!" in s:
        title, _, cells = s.rpartition("!")
    else:
        parsed = parse_cells(s)
        if parsed and ss.sheets:
            return Rng(ss.sheets[0], *parsed, text=text)
        sheet = ss.find_sheet(s)
        if sheet:
            return Rng(sheet, text=text)
        named = ss.named_ranges.get(s)
        if named:
            sheet = ss.sheet_by_id(named["range"].get("sheetId", 0))
            if sheet:
                gr = named["range"]
                return Rng(sheet, gr.get("startRowIndex", 0), gr.get("startColumnIndex", 0),
                           gr.get("endRowIndex"), gr.get("endColumnIndex"), text=text)
        raise fail
    sheet = ss.find_sheet(title)
    if sheet is None:
        raise fail
    if not cells:
        return Rng(sheet, text=text)
    parsed = parse_cells(cells)
    if parsed is None:
        raise fail
    return Rng(sheet, *parsed, text=text)


# ------------------------------------------------------------------------------------- values & formats

SKIP = object()  # a null input value: leave the cell as it is


def to_json_number(x):
    if isinstance(x, bool) or isinstance(x, int):
        return x
    if math.isfinite(x) and x == int(x) and abs(x) < 1e15:
        return int(x)
    return x


_NUM = re.compile(r"^[+-]?(\d{1,3}(,\d{3})+|\d+)?(\.\d+)?([eE][+-]?\d+)?$")
_ISO_DATE = re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})(?:[ ](\d{1,2}):(\d{2})(?::(\d{2}))?)?$")
_US_DATE = re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{4})$")


def _number(text):
    if not _NUM.match(text) or not re.search(r"\d", text.split("e")[0].split("E")[0]):
        return None
    return float(text.replace(",", ""))


def serial(d):
    """date or datetime -> Sheets serial number (days since 1899-12-30)."""
    if not isinstance(d, dt.datetime):
        d = dt.datetime(d.year, d.month, d.day)
    delta = d - EPOCH
    return delta.days + delta.seconds / 86400 + delta.microseconds / 86400e6


def parse_user_entered(text):
    """USER_ENTERED string -> (cell, automatic numberFormat or None); cell None clears."""
    if text == "":
        return None, None
    if text.startswith("="):
        return ("f", text), None
    if text.startswith("'"):
        return ("s", text[1:]), None
    t = text.strip()
    if t.upper() in ("TRUE", "FALSE"):
        return ("b", t.upper() == "TRUE"), None
    n = _number(t)
    if n is not None:
        fmt = {"type": "NUMBER", "pattern": "#,##0.00" if "." in t else "#,##0"} if "," in t else None
        return ("n", n), fmt
    if t.endswith("%") and _number(t[:-1].strip()) is not None:
        p = "0.00%" if "." in t else "0%"
        return ("n", _number(t[:-1].strip()) / 100), {"type": "PERCENT", "pattern": p}
    m = re.match(r"^(-?)\$(.+)$", t)
    if m and _number(m.group(2)) is not None:
        value = _number(m.group(2)) * (-1 if m.group(1) else 1)
        return ("n", value), {"type": "CURRENCY", "pattern": '"$"#,##0.00'}
    try:
        m = _ISO_DATE.match(t)
        if m:
            y, mo, d, hh, mm, ss = (int(g) if g else 0 for g in m.groups())
            value = serial(dt.datetime(y, mo, d, hh, mm, ss))
            if m.group(4):
                return ("n", value), {"type": "DATE_TIME", "pattern": "yyyy-mm-dd H:mm:ss"}
            return ("n", value), {"type": "DATE", "pattern": "yyyy-mm-dd"}
        m = _US_DATE.match(t)
        if m:
            value = serial(dt.date(int(m.group(3)), int(m.group(1)), int(m.group(2))))
            return ("n", value), {"type": "DATE", "pattern": "M/d/yyyy"}
    except ValueError:
        pass  # not a real date (2026-02-30): stays text
    return ("s", text), None


def input_value(v, user_entered):
    if v is None:
        return SKIP, None
    if isinstance(v, bool):
        return ("b", v), None
    if isinstance(v, (int, float)):
        return ("n", v), None
    if isinstance(v, str):
        if not user_entered:
            return (("s", v) if v != "" else None), None
        return parse_user_entered(v)
    raise TypeError(v)


def general(x):
    """Sheets' automatic number format."""
    if x == 0:
        return "0"
    ax = abs(x)
    if ax >= 1e15 or ax < 1e-9:
        mant, exp = f"{x:.5E}".split("E")
        mant = mant.rstrip("0").rstrip(".")
        return f"{mant}E{'+' if int(exp) >= 0 else '-'}{abs(int(exp)):02d}"
    decimals = min(10, max(0, 15 - len(str(int(ax)))))
    s = f"{x:.{decimals}f}"
    if "." in s:
        s = s.rstrip("0").rstrip(".")
    return "0" if s in ("-0", "") else s


_DT_TOKEN = re.compile(r'"[^"]*"|\\.|yyyy|yy|mmmmm|mmmm|mmm|mm|m|dddd|ddd|dd|d|hh|h|ss|s|am/pm|a/p|\.0+|.',
                       re.I)
_MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September",
           "October", "November", "December"]
_DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


def format_datetime(x, pattern):
    d = EPOCH + dt.timedelta(days=x)
    d = (d + dt.timedelta(microseconds=500)).replace(microsecond=(d.microsecond // 1000) * 1000)
    toks = _DT_TOKEN.findall(pattern)
    ampm = any(t.lower() in ("am/pm", "a/p") for t in toks)
    kinds = [t.lower()[0] if t.lower() in ("h", "hh", "s", "ss") else None for t in toks]
    out = []
    for i, t in enumerate(toks):
        lo = t.lower()
        if t.startswith('"'):
            out.append(t[1:-1])
        elif t.startswith("\\"):
            out.append(t[1:])
        elif lo == "yyyy":
            out.append(f"{d.year:04d}")
        elif lo == "yy":
            out.append(f"{d.year % 100:02d}")
        elif lo in ("m", "mm"):
            prev = next((k for k in reversed(kinds[:i]) if k), None)
            nxt = next((k for k in kinds[i + 1:] if k), None)
            minute = prev == "h" or nxt == "s"
            v = d.minute if minute else d.month
            out.append(f"{v:02d}" if lo == "mm" else str(v))
        elif lo == "mmm":
            out.append(_MONTHS[d.month - 1][:3])
        elif lo == "mmmm":
            out.append(_MONTHS[d.month - 1])
        elif lo == "mmmmm":
            out.append(_MONTHS[d.month - 1][0])
        elif lo in ("d", "dd"):
            out.append(f"{d.day:02d}" if lo == "dd" else str(d.day))
        elif lo == "ddd":
            out.append(_DAYS[d.weekday()][:3])
        elif lo == "dddd":
            out.append(_DAYS[d.weekday()])
        elif lo in ("h", "hh"):
            h = (d.hour % 12 or 12) if ampm else d.hour
            out.append(f"{h:02d}" if lo == "hh" else str(h))
        elif lo in ("s", "ss"):
            out.append(f"{d.second:02d}" if lo == "ss" else str(d.second))
        elif lo == "am/pm":
            out.append("AM" if d.hour < 12 else "PM")
        elif lo == "a/p":
            out.append("A" if d.hour < 12 else "P")
        elif lo.startswith(".0"):
            out.append("." + f"{d.microsecond // 1000:03d}"[:len(lo) - 1])
        else:
            out.append(t)
    return "".join(out)


def format_pattern_number(x, pattern):
    """Common NUMBER/CURRENCY/PERCENT patterns: literals, [$X], grouping, decimals, %, ; sections."""
    sections = re.split(r';(?=(?:[^"]*"[^"]*")*[^"]*$)', pattern)
    negative_section = x < 0 and len(sections) > 1
    pat = sections[1] if negative_section else sections[0]
    toks, i = [], 0  # (is_digit_placeholder, text)
    while i < len(pat):
        ch = pat[i]
        if ch == '"':
            j = pat.find('"', i + 1)
            j = len(pat) if j < 0 else j
            toks.append((False, pat[i + 1:j]))
            i = j + 1
        elif ch == "[":
            j = pat.find("]", i)
            j = len(pat) if j < 0 else j
            if pat[i + 1:i + 2] == "$":
                toks.append((False, pat[i + 2:j].split("-")[0]))
            i = j + 1
        elif ch == "\\" or ch == "_":
            toks.append((False, pat[i + 1:i + 2] if ch == "\\" else " "))
            i += 2
        elif ch == "*":
            i += 2
        elif ch in "0#?,.":
            toks.append((True, ch))
            i += 1
        elif ch in "Ee" and any(t[0] for t in toks):
            return general(x)
        else:
            toks.append((False, ch))
            i += 1
    first = next((k for k, t in enumerate(toks) if t[0]), None)
    if first is None:
        return "".join(t for _, t in toks)
    last = first
    while last + 1 < len(toks) and toks[last + 1][0]:
        last += 1
    pre = "".join(t for _, t in toks[:first])
    core = "".join(t for _, t in toks[first:last + 1])
    post = "".join(t for d, t in toks[last + 1:] if not d)
    value = abs(x) * (100 if "%" in pre + post else 1)
    int_part, _, dec_part = core.partition(".")
    max_dec, min_dec = len(dec_part.replace(",", "")), dec_part.count("0")
    s = f"{value:{',' if ',' in int_part else ''}.{max_dec}f}"
    if max_dec > min_dec:
        whole, _, frac = s.partition(".")
        frac = frac.rstrip("0")
        frac += "0" * max(0, min_dec - len(frac))
        s = whole + ("." + frac if frac else "")
    if "0" not in int_part and s.startswith("0"):
        s = s[1:]
    sign = "-" if x < 0 and not negative_section and any(ch in "123456789" for ch in s) else ""
    return sign + pre + s + post


DEFAULT_PATTERNS = {"DATE": "M/d/yyyy", "TIME": "h:mm:ss am/pm", "DATE_TIME": "M/d/yyyy H:mm:ss",
                    "NUMBER": "#,##0.00", "CURRENCY": '"$"#,##0.00', "PERCENT": "0.00%",
                    "SCIENTIFIC": "0.00E+00"}


def format_number(x, fmt):
    if not fmt or fmt.get("type") in (None, "TEXT", "NUMBER_FORMAT_TYPE_UNSPECIFIED"):
        return general(x)
    pattern = fmt.get("pattern") or DEFAULT_PATTERNS.get(fmt["type"], "")
    if fmt["type"] in DATE_TYPES:
        try:
            return format_datetime(x, pattern)
        except (OverflowError, ValueError):
            return general(x)
    return format_pattern_number(x, pattern) if pattern else general(x)


# ------------------------------------------------------------------------------------------- formulas

class Unevaluable(Exception):
    """The formula uses something this emulator does not compute: render its text."""


class FormulaErr(Exception):
    def __init__(self, code):
        super().__init__(code)
        self.code = code


_SHEET_REF = r"(?:'(?:[^']|'')+'|[A-Za-z_][A-Za-z0-9_]*)!"
_CELL_REF = r"\$?[A-Za-z]{1,3}\$?\d+"
_COLROW = r"(?:\$?[A-Za-z]{1,3}(?:\$?\d+)?|\$?\d+)"
_FTOKEN = re.compile(rf"""\s*(?:
    (?P<func>[A-Za-z][A-Za-z0-9_.]*)\s*\(|
    (?P<ref>(?:{_SHEET_REF})?(?:{_CELL_REF}(?::{_COLROW})?|{_COLROW}:{_COLROW}))|
    (?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)|
    (?P<str>"(?:[^"]|"")*")|
    (?P<name>[A-Za-z_][A-Za-z0-9_]*)|
    (?P<op><=|>=|<>|[-+*/^&(),=<>%:]))""", re.X)


class Formula:
    """Recursive-descent evaluation of the small formula subset described in the module docstring."""

    FUNCS = ("SUM", "AVERAGE", "MIN", "MAX", "COUNT", "COUNTA", "ROUND", "ABS")

    def __init__(self, ss, sheet, text, visiting):
        self.ss, self.sheet, self.visiting = ss, sheet, visiting
        self.toks, pos, body = [], 0, text[1:]
        while pos < len(body):
            if body[pos:].strip() == "":
                break
            m = _FTOKEN.match(body, pos)
            if not m or m.end() == pos:
                raise Unevaluable(text)
            kind = m.lastgroup
            self.toks.append((kind, m.group(kind)))
            pos = m.end()
        self.i = 0

    def run(self):
        v = self.concat()
        if self.i != len(self.toks):
            raise Unevaluable()
        if isinstance(v, list):
            if len(v) != 1:
                raise Unevaluable()
            v = v[0]
        return 0.0 if v is None else v

    def peek(self):
        return self.toks[self.i] if self.i < len(self.toks) else (None, None)

    def take(self, op):
        if self.peek() == ("op", op):
            self.i += 1
            return True
        return False

    def concat(self):
        v = self.additive()
        while self.take("&"):
            v = self.text(v) + self.text(self.additive())
        return v

    def additive(self):
        v = self.term()
        while self.peek()[0] == "op" and self.peek()[1] in "+-":
            op = self.toks[self.i][1]
            self.i += 1
            r = self.num(self.term())
            v = self.num(v) + r if op == "+" else self.num(v) - r
        return v

    def term(self):
        v = self.power()
        while self.peek()[0] == "op" and self.peek()[1] in "*/":
            op = self.toks[self.i][1]
            self.i += 1
            r = self.num(self.power())
            if op == "*":
                v = self.num(v) * r
            elif r == 0:
                raise FormulaErr("#DIV/0!")
            else:
                v = self.num(v) / r
        return v

    def power(self):
        v = self.unary()
        while self.take("^"):
            try:
                v = float(self.num(v) ** self.num(self.unary()))
            except (OverflowError, ZeroDivisionError, TypeError):
                raise FormulaErr("#NUM!")
        return v

    def unary(self):
        if self.take("-"):
            return -self.num(self.unary())
        if self.take("+"):
            return self.num(self.unary())
        v = self.primary()
        while self.take("%"):
            v = self.num(v) / 100
        return v

    def primary(self):
        kind, tok = self.peek()
        self.i += 1
        if kind == "num":
            return float(tok)
        if kind == "str":
            return tok[1:-1].replace('""', '"')
        if kind == "name" and tok.upper() in ("TRUE", "FALSE"):
            return tok.upper() == "TRUE"
        if kind == "ref":
            return self.ref(tok)
        if kind == "func":
            return self.call(tok.upper())
        if (kind, tok) == ("op", "("):
            v = self.concat()
            if not self.take(")"):
                raise Unevaluable()
            return v
        raise Unevaluable()

    def call(self, name):
        if name not in self.FUNCS:
            raise Unevaluable()
        args = []
        if not self.take(")"):
            while True:
                args.append(self.concat())
                if self.take(")"):
                    break
                if not self.take(","):
                    raise Unevaluable()
        if name in ("ROUND", "ABS"):
            x = self.num(args[0] if args else None)
            if name == "ABS":
                return abs(x)
            digits = int(self.num(args[1])) if len(args) > 1 else 0
            q = 10 ** digits
            return math.floor(abs(x) * q + 0.5) / q * (1 if x >= 0 else -1)
        if name == "COUNTA":
            return float(sum(1 for a in args for v in (a if isinstance(a, list) else [a])
                             if v is not None and v != ""))
        nums = []
        for a in args:
            if isinstance(a, list):  # ranges: text, booleans and blanks are ignored
                nums += [v for v in a if isinstance(v, float)]
            elif name == "COUNT":
                nums += [a] if isinstance(a, float) else []
            else:
                nums.append(self.num(a))
        if name == "SUM":
            return float(sum(nums))
        if name == "COUNT":
            return float(len(nums))
        if name == "AVERAGE":
            if not nums:
                raise FormulaErr("#DIV/0!")
            return sum(nums) / len(nums)
        return float((min if name == "MIN" else max)(nums)) if nums else 0.0

    def ref(self, tok):
        sheet = self.sheet
        if "!" in tok:
            title, _, tok = tok.rpartition("!")
            if title.startswith("'"):
                title = title[1:-1].replace("''", "'")
            sheet = self.ss.find_sheet(title)
            if sheet is None:
                raise FormulaErr("#REF!")
        parsed = parse_cells(tok.replace("$", ""))
        if parsed is None:
            raise Unevaluable()
        r0, c0, r1, c1, single = parsed
        r1 = min(sheet.rows if r1 is None else r1, sheet.rows)
        c1 = min(sheet.cols if c1 is None else c1, sheet.cols)
        values = [self.cell(sheet, r, c) for r in range(r0, r1) for c in range(c0, c1)]
        return values[0] if single else values

    def cell(self, sheet, r, c):
        cell = sheet.cells.get((r, c))
        if cell is None:
            return None
        kind, v = cell
        if kind == "n":
            return float(v)
        if kind == "f":
            key = (sheet.id, r, c)
            if key in self.visiting:
                raise FormulaErr("#REF!")
            return evaluate(self.ss, sheet, v, self.visiting | {key})
        return v

    def num(self, v):
        if isinstance(v, list):
            if len(v) != 1:
                raise FormulaErr("#VALUE!")
            v = v[0]
        if v is None:
            return 0.0
        if isinstance(v, bool):
            return float(v)
        if isinstance(v, float):
            return v
        n = _number(v.strip())
        if n is None:
            raise FormulaErr("#VALUE!")
        return n

    def text(self, v):
        if isinstance(v, list):
            v = v[0] if len(v) == 1 else None
        if v is None:
            return ""
        if isinstance(v, bool):
            return "TRUE" if v else "FALSE"
        return general(v) if isinstance(v, float) else v


def evaluate(ss, sheet, text, visiting=frozenset()):
    """A formula's value (float, str, bool); FormulaErr codes render as text; Unevaluable escapes."""
    return Formula(ss, sheet, text, visiting).run()


# ----------------------------------------------------------------------------------------------- model

class Sheet:
    def __init__(self, sheet_id, title, index=0, rows=1000, cols=26):
        self.props = {"sheetId": sheet_id, "title": title, "index": index, "sheetType": "GRID",
                      "gridProperties": {"rowCount": rows, "columnCount": cols}}
        self.cells = {}      # (row, col) -> (kind, value): "s" text, "n" number, "b" bool, "f" formula
        self.meta = {}       # (row, col) -> {"userEnteredFormat", "dataValidation", "note", ...}
        self.protected = []  # ProtectedRange dicts as stored
        self.extra = {}      # conditionalFormats, merges, basicFilter: returned in metadata as given

    id = property(lambda self: self.props["sheetId"])
    title = property(lambda self: self.props["title"])
    rows = property(lambda self: self.props["gridProperties"].get("rowCount", 0))
    cols = property(lambda self: self.props["gridProperties"].get("columnCount", 0))

    def number_format(self, r, c):
        return self.meta.get((r, c), {}).get("userEnteredFormat", {}).get("numberFormat")

    def truncate(self):
        for store in (self.cells, self.meta):
            for key in [k for k in store if k[0] >= self.rows or k[1] >= self.cols]:
                del store[key]

    def shift(self, axis, start, count):
        """Insert (count > 0) or delete (count < 0) rows (axis 0) or columns (axis 1) at start."""
        for store in (self.cells, self.meta):
            moved = {}
            for key, v in store.items():
                i = key[axis]
                if count < 0 and start <= i < start - count:
                    continue
                if i >= start:
                    i += count
                moved[(i, key[1]) if axis == 0 else (key[0], i)] = v
            store.clear()
            store.update(moved)
        gp = self.props["gridProperties"]
        gp["rowCount" if axis == 0 else "columnCount"] += count


class Spreadsheet:
    def __init__(self, key, title, account, now):
        self.id = key
        self.props = {"title": title, "locale": "en_US", "autoRecalc": "ON_CHANGE", "timeZone": "Etc/GMT",
                      "defaultFormat": copy.deepcopy(DEFAULT_FORMAT),
                      "spreadsheetTheme": copy.deepcopy(SPREADSHEET_THEME)}
        self.sheets, self.named_ranges = [], {}
        self.created = self.modified = now
        self.version = 1  # Drive's file version: grows with every change
        self.parents, self.trashed, self.denied, self.comments = [], False, None, []
        self.permissions = [{"kind": "drive#permission", "id": "0" + key[-19:], "type": "user",
                             "emailAddress": account, "role": "owner"}]

    @property
    def title(self):
        return self.props["title"]

    def find_sheet(self, title):
        for s in self.sheets:
            if s.title == title:
                return s
        low = title.lower()
        return next((s for s in self.sheets if s.title.lower() == low), None)

    def sheet_by_id(self, sheet_id):
        return next((s for s in self.sheets if s.id == sheet_id), None)

    def reindex(self):
        for i, s in enumerate(self.sheets):
            s.props["index"] = i


def clean_props(props):
    """Proto3 JSON: zero counts and false flags are not sent."""
    out = copy.deepcopy(props)
    gp = out.get("gridProperties", {})
    for k in ("frozenRowCount", "frozenColumnCount"):
        if not gp.get(k):
            gp.pop(k, None)
    for k in ("hideGridlines", "rowGroupControlAfter", "columnGroupControlAfter"):
        if gp.get(k) is False:
            gp.pop(k)
    for k in ("hidden", "rightToLeft"):
        if out.get(k) is False:
            out.pop(k)
    return out


def clean_grid_range(gr):
    out = {k: v for k, v in gr.items() if v is not None}
    if out.get("sheetId", 0) == 0:
        out.pop("sheetId", None)
    return out


# -------------------------------------------------------------------------------------- field masks

def parse_mask(text):
    """'a.b,c(d,e/f)' -> [("a","b"), ("c","d"), ("c","e","f")]."""
    paths, text = [], text.replace(" ", "").replace("/", ".")

    def walk(i, prefix):
        cur = ""
        while i < len(text):
            ch = text[i]
            if ch == ",":
                if cur:
                    paths.append(prefix + tuple(cur.split(".")))
                cur, i = "", i + 1
            elif ch == "(":
                i, cur = walk(i + 1, prefix + tuple(cur.split("."))), ""
            elif ch == ")":
                if cur:
                    paths.append(prefix + tuple(cur.split(".")))
                return i + 1
            else:
                cur, i = cur + ch, i + 1
        if cur:
            paths.append(prefix + tuple(cur.split(".")))
        return i

    walk(0, ())
    return paths


def mask_tree(paths):
    tree = {}
    for p in paths:
        node = tree
        for k in p[:-1]:
            node = node.setdefault(k, {})
            if node is True:
                break
        else:
            node[p[-1]] = True
    return tree


def filter_fields(obj, tree):
    if tree is True or "*" in tree:
        return obj
    if isinstance(obj, list):
        return [filter_fields(x, tree) for x in obj]
    if isinstance(obj, dict):
        return {k: filter_fields(obj[k], sub) for k, sub in tree.items() if k in obj}
    return obj


def apply_mask(dst, src, fields, skip=()):
    """Copy the masked fields of src into dst (a field missing in src is removed), as Google does."""
    paths = parse_mask(fields or "") if isinstance(fields, (str, type(None))) else fields
    if not paths:
        raise bad("At least one field must be specified in 'fields'.")
    for p in paths:
        if p == ("*",):
            for k in list(dst):
                if k not in skip:
                    dst.pop(k)
            dst.update({k: copy.deepcopy(v) for k, v in src.items() if k not in skip})
            continue
        if p[0] in skip:
            continue
        s, d = src, dst
        for k in p[:-1]:
            s = s.get(k, {}) if isinstance(s, dict) else {}
            d = d.setdefault(k, {})
        if isinstance(s, dict) and p[-1] in s:
            d[p[-1]] = copy.deepcopy(s[p[-1]])
        else:
            d.pop(p[-1], None)


# ------------------------------------------------------------------------------------------ the server

class LoggedRequest(namedtuple("LoggedRequest", "method path query body")):
    """One request seen: (method, unquoted path, query dict of lists, parsed JSON body).

    .status is the answer's HTTP status (0: connection dropped), set once answered."""

    status = None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ESF"
    disable_nagle_algorithm = True  # headers and body go out in two writes: avoid 40 ms stalls

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.server.emulator._serve(self)

    do_POST = do_PUT = do_DELETE = do_PATCH = do_GET


class _Rule:
    def __init__(self, times, match, **kw):
        self.times, self.match, self.kw = times, match, kw

    def hits(self, method, path, query, body):
        if self.times is not None and self.times <= 0:
            return False
        if self.match is None:
            return True
        if callable(self.match):
            return bool(self.match(method, path, query, body))
        return self.match in f"{method} {path}"


class Emulator:
    """See the module docstring."""

    def __init__(self, read_quota=None, write_quota=None, quota_window=60.0,
                 account="salessheet-test@salessheet-test.iam.gserviceaccount.com", seed=0,
                 max_body=MAX_BODY):
        self.read_quota, self.write_quota, self.quota_window = read_quota, write_quota, quota_window
        self.account, self.max_body = account, max_body
        self._rng = random.Random(seed)
        self._lock = threading.RLock()
        self._files = {}  # key -> Spreadsheet, in creation order
        self._log, self._faults, self._delays, self._drops = [], [], [], []
        self._quota_seen = {"Read": deque(), "Write": deque()}
        self._server = self._thread = None
        self.url = None

    # ------------------------------------------------------------------------------ life cycle

    def start(self):
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.emulator = self
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name="gsheets-emulator",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self):
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(5)
            self._server = None

    def __enter__(self):
        return self if self._server else self.start()

    def __exit__(self, *exc):
        self.stop()

    def session(self):
        """A requests.Session whose googleapis traffic goes to this emulator."""
        import requests
        from requests.adapters import HTTPAdapter

        base = self.url

        class Rewrite(HTTPAdapter):
            def send(self, request, **kw):
                parts = urlsplit(request.url)
                request.url = base + parts.path + ("?" + parts.query if parts.query else "")
                return super().send(request, **kw)

        s = requests.Session()
        adapter = Rewrite()
        s.mount(SHEETS_HOST, adapter)
        s.mount(DRIVE_HOST, adapter)
        return s

    # ----------------------------------------------------------------------- test-side controls

    def fail(self, status=429, times=1, match=None, retry_after=None, message=None):
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        with self._lock:
            self._faults.append(_Rule(times, match, status=status, headers=headers, message=message))

    def delay(self, seconds, times=1, match=None):
        with self._lock:
            self._delays.append(_Rule(times, match, seconds=seconds))

    def disconnect(self, times=1, match=None):
        with self._lock:
            self._drops.append(_Rule(times, match))

    def clear_faults(self):
        with self._lock:
            self._faults.clear(), self._delays.clear(), self._drops.clear()

    def deny(self, key, status=403):
        with self._lock:
            self._get_file(key).denied = status

    def allow(self, key):
        with self._lock:
            self._get_file(key).denied = None

    def share(self, key, email, role="writer"):
        with self._lock:
            ss = self._get_file(key)
            ss.permissions.append(self._permission("user", role, email))
            if email == self.account and ss.denied == 403:
                ss.denied = None

    @property
    def permissions(self):
        with self._lock:
            return {k: copy.deepcopy(ss.permissions) for k, ss in self._files.items()}

    @property
    def requests(self):
        with self._lock:
            return list(self._log)

    def reset_requests(self):
        with self._lock:
            self._log.clear()

    @property
    def reads(self):
        return sum(1 for r in self.requests if r.path.startswith("/v4/") and r.method == "GET")

    @property
    def writes(self):
        return sum(1 for r in self.requests if r.path.startswith("/v4/") and r.method in ("POST", "PUT"))

    def create_spreadsheet(self, title, sheets=None, key=None, rows=None, cols=None,
                           value_input_option="RAW"):
        """Seed a spreadsheet; sheets maps titles to rows of Python values (dates become serials)."""
        with self._lock:
            ss = self._new_spreadsheet(title, key)
            for i, (name, data) in enumerate((sheets or {"Sheet1": []}).items()):
                data = [list(r) for r in data]
                width = max((len(r) for r in data), default=0)
                sheet = Sheet(0 if i == 0 else self._sheet_id(ss), name, i,
                              rows or max(1000, len(data)), cols or max(26, width))
                ss.sheets.append(sheet)
                for r, row in enumerate(data):
                    for c, v in enumerate(row):
                        self._seed(sheet, r, c, v, value_input_option == "USER_ENTERED")
            return ss.id

    def values(self, key, title, render="UNFORMATTED_VALUE", datetime="SERIAL_NUMBER"):
        with self._lock:
            ss = self._get_file(key)
            sheet = ss.find_sheet(title)
            if sheet is None:
                raise KeyError(title)
            return self._grid_values(ss, sheet, 0, 0, sheet.rows, sheet.cols, render, datetime, "ROWS")

    def metadata(self, key, include_grid_data=False):
        with self._lock:
            ss = self._get_file(key)
            return self._metadata(ss, ss.sheets, include_grid_data, None)

    def cell(self, key, title, ref):
        with self._lock:
            ss = self._get_file(key)
            sheet = ss.find_sheet(title)
            r, c = parse_cells(ref)[:2]
            kind, v = sheet.cells.get((r, c), (None, None))
            meta = sheet.meta.get((r, c), {})
            return {"value": None if kind is None else self._render(ss, sheet, r, c, "UNFORMATTED_VALUE",
                                                                      "SERIAL_NUMBER"),
                    "formula": v if kind == "f" else None,
                    "format": meta.get("userEnteredFormat", {}).get("numberFormat"),
                    "validation": meta.get("dataValidation"), "note": meta.get("note")}

    def spreadsheet_keys(self):
        with self._lock:
            return list(self._files)

    # --------------------------------------------------------------------------------- plumbing

    def _serve(self, h):
        split = urlsplit(h.path)
        query = parse_qs(split.query, keep_blank_values=True)
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        path = unquote(split.path)
        body, body_error = None, None
        if raw and length <= self.max_body:
            try:
                body = json.loads(raw)
            except ValueError:
                body_error = bad("Invalid JSON payload received. Unexpected token.")
        entry = LoggedRequest(h.command, path, query, body)
        with self._lock:
            self._log.append(entry)
        if length > self.max_body:
            err = bad(f"Request payload size exceeds the limit: {self.max_body} bytes.")
            return self._send(h, entry, err.code, err.body(), close=True)
        rule = self._take(self._delays, h.command, path, query, body)
        if rule:
            time.sleep(rule.kw["seconds"])
        if self._take(self._drops, h.command, path, query, body):
            entry.status = 0
            h.close_connection = True
            return
        rule = self._take(self._faults, h.command, path, query, body)
        if rule:
            err = self._fault(rule, h.command, path)
            return self._send(h, entry, err.code, err.body(), err.headers)
        err = body_error or self._quota(h.command, path)
        if err:
            return self._send(h, entry, err.code, err.body(), err.headers)
        try:
            with self._lock:
                status, payload = self._route(h.command, split.path, query, body)
        except ApiError as e:
            status, payload = e.code, e.body()
        except Exception as e:  # an emulator bug: answer like a server error, say what broke
            status, payload = 500, ApiError(500, f"emulator bug: {type(e).__name__}: {e}").body()
        self._send(h, entry, status, payload)

    def _send(self, h, entry, status, payload, headers=None, close=False):
        entry.status = status
        data = b"" if status == 204 else json.dumps(payload, ensure_ascii=False).encode("utf-8")
        h.send_response(status)
        if status != 204:
            h.send_header("Content-Type", "application/json; charset=UTF-8")
        h.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        if close:
            h.send_header("Connection", "close")
            h.close_connection = True
        try:
            h.end_headers()
            h.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout): fine
            h.close_connection = True

    def _take(self, rules, method, path, query, body):
        with self._lock:
            for rule in rules:
                if rule.hits(method, path, query, body):
                    if rule.times is not None:
                        rule.times -= 1
                    return rule
        return None

    def _fault(self, rule, method, path):
        status, headers = rule.kw["status"], rule.kw["headers"]
        if status == 429 and not rule.kw["message"]:
            return quota_error("Read" if method == "GET" else "Write", headers=headers)
        if path.startswith("/drive/") and status in (403, 404) and not rule.kw["message"]:
            return DriveError(status, "The user does not have sufficient permissions for this file."
                              if status == 403 else "File not found: .", "notFound" if status == 404
                              else "insufficientFilePermissions")
        return ApiError(status, rule.kw["message"], headers=headers)

    def _quota(self, method, path):
        if not path.startswith("/v4/"):
            return None
        kind = "Read" if method == "GET" else "Write"
        limit = self.read_quota if kind == "Read" else self.write_quota
        if limit is None:
            return None
        now = time.monotonic()
        with self._lock:
            seen = self._quota_seen[kind]
            while seen and seen[0] <= now - self.quota_window:
                seen.popleft()
            if len(seen) >= limit:
                return quota_error(kind, limit)
            seen.append(now)
        return None

    def _now(self):
        return dt.datetime.now(dt.timezone.utc)

    def _touch(self, ss):
        ss.modified, ss.version = self._now(), ss.version + 1

    def _key(self):
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        while True:
            key = "1" + "".join(self._rng.choice(alphabet) for _ in range(43))
            if key not in self._files:
                return key

    def _sheet_id(self, ss):
        used = {s.id for s in ss.sheets}
        while True:
            i = self._rng.randint(1, 2 ** 31 - 1)
            if i not in used:
                return i

    def _permission(self, ptype, role, email=None, domain=None):
        perm = {"kind": "drive#permission", "id": str(self._rng.randint(10 ** 19, 10 ** 20 - 1)),
                "type": ptype, "role": role}
        if email:
            perm["emailAddress"] = email
        if domain:
            perm["domain"] = domain
        return perm

    def _new_spreadsheet(self, title, key=None):
        ss = Spreadsheet(key or self._key(), title, self.account, self._now())
        self._files[ss.id] = ss
        return ss

    def _seed(self, sheet, r, c, v, user_entered):
        fmt = None
        if isinstance(v, (dt.date, dt.datetime)):
            cell = ("n", serial(v))
            fmt = {"type": "DATE_TIME", "pattern": "yyyy-mm-dd H:mm:ss"} if isinstance(v, dt.datetime) \
                else {"type": "DATE", "pattern": "yyyy-mm-dd"}
        else:
            cell, fmt = input_value(v, user_entered)
        if cell is None or cell is SKIP:
            return
        sheet.cells[(r, c)] = cell
        if fmt:
            sheet.meta.setdefault((r, c), {}).setdefault("userEnteredFormat", {})["numberFormat"] = fmt

    def _get_file(self, key):
        ss = self._files.get(key)
        if ss is None:
            raise KeyError(key)
        return ss

    def _sheets_file(self, key):
        ss = self._files.get(key)
        if ss is None or ss.denied == 404 or ss.trashed:
            raise ApiError(404)
        if ss.denied:
            raise ApiError(ss.denied)
        return ss

    def _drive_file(self, key):
        ss = self._files.get(key)
        if ss is None or ss.denied:  # Drive hides files the account cannot see
            raise DriveError(404, f"File not found: {key}.", "notFound", "fileId")
        return ss

    # ------------------------------------------------------------------------------------ routing

    def _route(self, method, raw_path, query, body):
        q = {k: v[-1] for k, v in query.items()}
        parts = raw_path.strip("/").split("/")
        if parts[:2] == ["v4", "spreadsheets"]:
            return 200, self._sheets_route(method, parts[2:], q, query, body)
        if parts[:3] == ["drive", "v3", "files"]:
            return self._drive_route(method, [unquote(p) for p in parts[3:]], q, body)
        raise ApiError(404, f"Method not found: {method} {unquote(raw_path)}")

    def _sheets_route(self, method, parts, q, query, body):
        if not parts:
            if method == "POST":
                return self._create(body or {})
            raise ApiError(404, "Method not found.")
        head = unquote(parts[0])
        key, _, verb = head.partition(":")
        ss = self._sheets_file(key)
        if len(parts) == 1:
            if verb == "batchUpdate" and method == "POST":
                return self._batch_update(ss, body or {})
            if not verb and method == "GET":
                ranges = query.get("ranges") or None
                grid = q.get("includeGridData", "false").lower() == "true"
                sheets = ss.sheets if not ranges else self._sheets_for(ss, ranges)
                return filter_fields(self._metadata(ss, sheets, grid, ranges),
                                     mask_tree(parse_mask(q["fields"]))) if q.get("fields") \
                    else self._metadata(ss, sheets, grid, ranges)
        elif parts[1].startswith("values"):
            tail = "/".join(parts[1:])
            if tail in ("values:batchGet", "values:batchUpdate", "values:batchClear"):
                op = tail.split(":")[1]
                if op == "batchGet" and method == "GET":
                    return self._batch_get(ss, query, q)
                if op == "batchUpdate" and method == "POST":
                    return self._values_batch_update(ss, body or {})
                if op == "batchClear" and method == "POST":
                    return self._batch_clear(ss, body or {})
            elif tail.startswith("values/"):
                raw_range = tail[len("values/"):]
                verb = ""
                for v in ("append", "clear"):
                    if raw_range.endswith(":" + v):
                        raw_range, verb = raw_range[:-len(v) - 1], v
                text = unquote(raw_range)
                if verb == "" and method == "GET":
                    return self._values_get(ss, text, q)
                if verb == "" and method == "PUT":
                    return self._values_update(ss, text, q, body or {})
                if verb == "append" and method == "POST":
                    return self._append(ss, text, q, body or {})
                if verb == "clear" and method == "POST":
                    return self._clear(ss, text)
        elif parts[1] == "sheets" and len(parts) == 3 and method == "POST":
            sid, _, verb = unquote(parts[2]).partition(":")
            if verb == "copyTo":
                return self._copy_to(ss, int(sid), (body or {}).get("destinationSpreadsheetId"))
        raise ApiError(404, "Method not found.")

    # ----------------------------------------------------------------------------- spreadsheets

    def _create(self, body):
        props = body.get("properties", {})
        ss = self._new_spreadsheet(props.get("title", "Untitled spreadsheet"))
        for k in ("locale", "timeZone", "autoRecalc"):
            if k in props:
                ss.props[k] = props[k]
        for i, spec in enumerate(body.get("sheets") or [{}]):
            p = spec.get("properties", {})
            gp = p.get("gridProperties", {})
            sheet = Sheet(p.get("sheetId", 0 if i == 0 else self._sheet_id(ss)), p.get("title", f"Sheet{i + 1}"),
                          i, gp.get("rowCount", 1000), gp.get("columnCount", 26))
            sheet.props["gridProperties"].update(gp)
            sheet.props.update({k: v for k, v in p.items() if k not in ("sheetId", "title", "index",
                                                                          "gridProperties")})
            ss.sheets.append(sheet)
            for block in spec.get("data", []):
                self._put_cells(ss, sheet, block.get("startRow", 0), block.get("startColumn", 0),
                                [r.get("values", []) for r in block.get("rowData", [])], "*")
        return self._metadata(ss, ss.sheets, False, None)

    def _sheets_for(self, ss, ranges):
        out = []
        for text in ranges:
            sheet = resolve(ss, text).sheet
            if sheet not in out:
                out.append(sheet)
        return [s for s in ss.sheets if s in out]

    def _metadata(self, ss, sheets, grid, ranges):
        out = {"spreadsheetId": ss.id, "properties": copy.deepcopy(ss.props), "sheets": []}
        for sheet in sheets:
            entry = {"properties": clean_props(sheet.props)}
            if grid:
                rngs = [r for r in (resolve(ss, t) for t in ranges or []) if r.sheet is sheet] or [Rng(sheet)]
                entry["data"] = [self._grid_data(ss, r) for r in rngs]
            for k in ("merges", "conditionalFormats", "basicFilter"):
                if sheet.extra.get(k):
                    entry[k] = copy.deepcopy(sheet.extra[k])
            if sheet.protected:
                entry["protectedRanges"] = copy.deepcopy(sheet.protected)
            out["sheets"].append(entry)
        if ss.named_ranges:
            out["namedRanges"] = copy.deepcopy(list(ss.named_ranges.values()))
        out["spreadsheetUrl"] = f"https://docs.google.com/spreadsheets/d/{ss.id}/edit"
        return out

    def _grid_data(self, ss, rng):
        r0, c0, r1, c1 = rng.clamp()
        rows = {}
        for (r, c) in set(rng.sheet.cells) | set(rng.sheet.meta):
            if r0 <= r < r1 and c0 <= c < c1:
                rows.setdefault(r, []).append(c)
        data = {}
        if r0:
            data["startRow"] = r0
        if c0:
            data["startColumn"] = c0
        row_data = []
        for r in range(r0, max(rows, default=r0 - 1) + 1):
            cols = sorted(rows.get(r, []))
            values = [self._cell_data(ss, rng.sheet, r, c) for c in range(c0, cols[-1] + 1)] if cols else []
            row_data.append({"values": values} if values else {})
        if row_data:
            data["rowData"] = row_data
        return data

    def _cell_data(self, ss, sheet, r, c):
        out = {}
        cell = sheet.cells.get((r, c))
        if cell:
            kind, v = cell
            key = {"s": "stringValue", "n": "numberValue", "b": "boolValue", "f": "formulaValue"}[kind]
            out["userEnteredValue"] = {key: to_json_number(v) if kind == "n" else v}
            eff = self._render(ss, sheet, r, c, "UNFORMATTED_VALUE", "SERIAL_NUMBER")
            if isinstance(eff, bool):
                out["effectiveValue"] = {"boolValue": eff}
            elif isinstance(eff, (int, float)):
                out["effectiveValue"] = {"numberValue": eff}
            elif isinstance(eff, str) and eff.startswith("#") and kind == "f":
                out["effectiveValue"] = {"errorValue": {"type": "ERROR", "message": eff}}
            else:
                out["effectiveValue"] = {"stringValue": eff}
            out["formattedValue"] = self._render(ss, sheet, r, c, "FORMATTED_VALUE", "SERIAL_NUMBER")
        out.update(copy.deepcopy(sheet.meta.get((r, c), {})))
        return out

    # -------------------------------------------------------------------------- batchUpdate

    REPLY_KINDS = ("copyPaste", "addSheet", "deleteSheet", "duplicateSheet", "updateSheetProperties",
                   "updateSpreadsheetProperties", "addProtectedRange", "updateProtectedRange",
                   "deleteProtectedRange", "setDataValidation", "repeatCell", "updateCells",
                   "appendDimension", "insertDimension", "deleteDimension", "addNamedRange",
                   "deleteNamedRange", "addConditionalFormatRule", "mergeCells", "setBasicFilter",
                   "clearBasicFilter")
    IGNORED_KINDS = ("updateDimensionProperties", "autoResizeDimensions", "updateBorders", "unmergeCells",
                     "addBandedRange", "updateDimensionGroup", "addDimensionGroup", "sortRange")

    def _batch_update(self, ss, body):
        requests = body.get("requests")
        if not requests:
            raise bad("Must specify at least one request.")
        work = copy.deepcopy(ss)  # all or nothing, as the real service
        replies = []
        for i, req in enumerate(requests):
            if not isinstance(req, dict) or not req:
                raise bad(f"Invalid requests[{i}]: No request set.")
            kind, args = next(iter(req.items()))
            if kind in self.IGNORED_KINDS:
                replies.append({})
                continue
            if kind not in self.REPLY_KINDS:
                raise bad(f"Invalid JSON payload received. Unknown name \"{kind}\" at 'requests[{i}]': "
                          "Cannot find field.")
            try:
                replies.append(getattr(self, "_bu_" + kind)(work, args or {}) or {})
            except ApiError as e:
                raise bad(f"Invalid requests[{i}].{kind}: {e.message}")
        ss.__dict__.update(work.__dict__)
        self._touch(ss)
        out = {"spreadsheetId": ss.id, "replies": replies}
        if body.get("includeSpreadsheetInResponse"):
            out["updatedSpreadsheet"] = self._metadata(ss, ss.sheets, False, None)
        return out

    def _grid_sheet(self, ss, sheet_id):
        sheet = ss.sheet_by_id(sheet_id or 0)
        if sheet is None:
            raise bad(f"No grid with id: {sheet_id or 0}")
        return sheet

    def _grid_bounds(self, ss, gr):
        sheet = self._grid_sheet(ss, gr.get("sheetId"))
        r0, c0 = gr.get("startRowIndex") or 0, gr.get("startColumnIndex") or 0
        r1, c1 = gr.get("endRowIndex"), gr.get("endColumnIndex")
        if r0 >= sheet.rows or c0 >= sheet.cols or (r1 or 0) > sheet.rows or (c1 or 0) > sheet.cols:
            raise Rng(sheet).exceeds(r0, c0, r1, c1)
        return sheet, r0, c0, sheet.rows if r1 is None else r1, sheet.cols if c1 is None else c1

    def _check_title(self, ss, title, sheet=None):
        other = ss.find_sheet(title)
        if other is not None and other is not sheet and other.title.lower() == title.lower():
            raise bad(f'A sheet with the name "{title}" already exists. Please enter another name.')

    def _bu_addSheet(self, ss, args):
        props = copy.deepcopy(args.get("properties", {}))
        title = props.get("title")
        if not title:
            n = len(ss.sheets) + 1
            while ss.find_sheet(f"Sheet{n}"):
                n += 1
            title = f"Sheet{n}"
        self._check_title(ss, title)
        sheet_id = props.get("sheetId")
        if sheet_id is None:
            sheet_id = self._sheet_id(ss)
        elif ss.sheet_by_id(sheet_id):
            raise bad(f"Sheet with id {sheet_id} already exists.")
        gp = props.pop("gridProperties", {})
        sheet = Sheet(sheet_id, title, 0, gp.get("rowCount", 1000), gp.get("columnCount", 26))
        sheet.props["gridProperties"].update(gp)
        sheet.props.update({k: v for k, v in props.items() if k not in ("sheetId", "title", "index")})
        ss.sheets.insert(min(props.get("index", len(ss.sheets)), len(ss.sheets)), sheet)
        ss.reindex()
        return {"addSheet": {"properties": clean_props(sheet.props)}}

    def _bu_deleteSheet(self, ss, args):
        sheet = self._grid_sheet(ss, args.get("sheetId"))
        if len(ss.sheets) == 1:
            raise bad("You can't remove all the sheets in a document.")
        ss.sheets.remove(sheet)
        ss.reindex()

    def _bu_duplicateSheet(self, ss, args):
        src = self._grid_sheet(ss, args.get("sourceSheetId"))
        sheet = copy.deepcopy(src)
        title = args.get("newSheetName") or f"Copy of {src.title}"
        self._check_title(ss, title)
        sheet.props["title"] = title
        sheet.props["sheetId"] = args.get("newSheetId") or self._sheet_id(ss)
        for pr in sheet.protected:
            pr["protectedRangeId"] = self._rng.randint(1, 2 ** 31 - 1)
            pr["range"]["sheetId"] = sheet.id
        ss.sheets.insert(min(args.get("insertSheetIndex", len(ss.sheets)), len(ss.sheets)), sheet)
        ss.reindex()
        return {"duplicateSheet": {"properties": clean_props(sheet.props)}}

    def _bu_updateSheetProperties(self, ss, args):
        props = args.get("properties", {})
        sheet = self._grid_sheet(ss, props.get("sheetId"))
        new = copy.deepcopy(sheet.props)
        apply_mask(new, props, args.get("fields"), skip=("sheetId",))
        new.setdefault("sheetType", "GRID")
        new.setdefault("gridProperties", {}).setdefault("rowCount", 0)
        new["gridProperties"].setdefault("columnCount", 0)
        if new.get("title") != sheet.title:
            if not new.get("title"):
                raise bad("The sheet name cannot be empty.")
            self._check_title(ss, new["title"], sheet)
        index = new.get("index", sheet.props["index"])
        sheet.props = new
        sheet.truncate()
        ss.sheets.remove(sheet)
        ss.sheets.insert(min(index, len(ss.sheets)), sheet)
        ss.reindex()

    def _bu_updateSpreadsheetProperties(self, ss, args):
        apply_mask(ss.props, args.get("properties", {}), args.get("fields"))

    def _protected(self, ss, pid):
        for sheet in ss.sheets:
            for pr in sheet.protected:
                if pr["protectedRangeId"] == pid:
                    return sheet, pr
        raise bad(f"No protected range with id: {pid}")

    def _bu_addProtectedRange(self, ss, args):
        given = {k: v for k, v in copy.deepcopy(args.get("protectedRange", {})).items() if v is not None}
        gr = given.get("range", {})
        sheet = self._grid_sheet(ss, gr.get("sheetId"))
        pid = given.get("protectedRangeId") or self._rng.randint(1, 2 ** 31 - 1)
        reply = {"protectedRangeId": pid, "range": clean_grid_range(gr)}
        for k in ("description", "unprotectedRanges"):
            if given.get(k):
                reply[k] = given[k]
        if given.get("warningOnly"):
            reply["warningOnly"] = True
        reply["requestingUserCanEdit"] = True
        stored = copy.deepcopy(reply)
        if "editors" in given:
            reply["editors"] = {k: v for k, v in given["editors"].items() if v}
        if not given.get("warningOnly"):  # the owner always stays an editor, as Google does
            editors = {k: list(v) if isinstance(v, list) else v
                       for k, v in given.get("editors", {}).items() if v}
            if self.account not in editors.setdefault("users", []):
                editors["users"].append(self.account)
            stored["editors"] = editors
        sheet.protected.append(stored)
        return {"addProtectedRange": {"protectedRange": reply}}

    def _bu_updateProtectedRange(self, ss, args):
        given = args.get("protectedRange", {})
        sheet, pr = self._protected(ss, given.get("protectedRangeId"))
        apply_mask(pr, given, args.get("fields"), skip=("protectedRangeId",))
        if "range" in pr:
            pr["range"] = clean_grid_range(pr["range"])

    def _bu_deleteProtectedRange(self, ss, args):
        sheet, pr = self._protected(ss, args.get("protectedRangeId"))
        sheet.protected.remove(pr)

    def _bu_setDataValidation(self, ss, args):
        sheet, r0, c0, r1, c1 = self._grid_bounds(ss, args.get("range", {}))
        rule = args.get("rule")
        for r in range(r0, r1):
            for c in range(c0, c1):
                meta = sheet.meta.setdefault((r, c), {})
                if rule:
                    meta["dataValidation"] = copy.deepcopy(rule)
                else:
                    meta.pop("dataValidation", None)
                    if not meta:
                        del sheet.meta[(r, c)]

    def _bu_repeatCell(self, ss, args):
        sheet, r0, c0, r1, c1 = self._grid_bounds(ss, args.get("range", {}))
        cell = args.get("cell", {})
        self._put_cells(ss, sheet, r0, c0, [[cell] * (c1 - c0)] * (r1 - r0), args.get("fields"))

    def _bu_updateCells(self, ss, args):
        rows = [r.get("values", []) for r in args.get("rows", [])]
        if "range" in args:
            sheet, r0, c0, r1, c1 = self._grid_bounds(ss, args["range"])
            rows = [(list(row) + [{}] * (c1 - c0))[:c1 - c0] for row in (rows + [[]] * (r1 - r0))[:r1 - r0]]
        else:
            start = args.get("start", {})
            sheet = self._grid_sheet(ss, start.get("sheetId"))
            r0, c0 = start.get("rowIndex", 0), start.get("columnIndex", 0)
            width = max((len(r) for r in rows), default=0)
            if r0 + len(rows) > sheet.rows or c0 + width > sheet.cols:
                raise Rng(sheet).exceeds(r0, c0, r0 + len(rows), c0 + width)
        self._put_cells(ss, sheet, r0, c0, rows, args.get("fields"))

    def _put_cells(self, ss, sheet, r0, c0, rows, fields):
        """Apply CellData rows under a field mask (userEnteredValue sets values; the rest is meta)."""
        paths = parse_mask(fields or "")
        if not paths:
            raise bad("At least one field must be specified in 'fields'.")
        every = ("*",) in paths
        value_masked = every or any(p[0] == "userEnteredValue" for p in paths)
        meta_fields = [p for p in paths if p[0] not in
                       ("userEnteredValue", "effectiveValue", "formattedValue", "effectiveFormat")]
        for i, row in enumerate(rows):
            for j, data in enumerate(row):
                key = (r0 + i, c0 + j)
                if value_masked:
                    uev = (data or {}).get("userEnteredValue")
                    if not uev:
                        sheet.cells.pop(key, None)
                    else:
                        kind, v = next(iter(uev.items()))
                        sheet.cells[key] = {"stringValue": ("s", v), "numberValue": ("n", v),
                                            "boolValue": ("b", v), "formulaValue": ("f", v)}[kind]
                if meta_fields:
                    meta = sheet.meta.setdefault(key, {})
                    src = {k: v for k, v in (data or {}).items()
                           if k not in ("userEnteredValue", "effectiveValue", "formattedValue")}
                    apply_mask(meta, src, meta_fields, skip=("userEnteredValue",))
                    if not meta:
                        del sheet.meta[key]

    def _dimension(self, ss, rng):
        sheet = self._grid_sheet(ss, rng.get("sheetId"))
        axis = 0 if rng.get("dimension") == "ROWS" else 1
        if rng.get("dimension") not in ("ROWS", "COLUMNS"):
            raise bad("dimension must be ROWS or COLUMNS")
        return sheet, axis

    def _bu_copyPaste(self, ss, args):
        """PASTE_NORMAL onto the same cells of another sheet: values and formats; empty source cells clear
        the target (what a master swap needs; other paste types and offsets are refused, not faked)."""
        src, r0, c0, r1, c1 = self._grid_bounds(ss, args.get("source", {}))
        dest = args.get("destination", {})
        dst = self._grid_sheet(ss, dest.get("sheetId"))
        if (args.get("pasteType", "PASTE_NORMAL") != "PASTE_NORMAL"
                or (dest.get("startRowIndex") or 0, dest.get("startColumnIndex") or 0) != (r0, c0)):
            raise bad("this emulator pastes PASTE_NORMAL onto the same cells only")
        if r1 > dst.rows or c1 > dst.cols:
            raise Rng(dst).exceeds(r0, c0, r1, c1)
        for r in range(r0, r1):
            for c in range(c0, c1):
                for store in ("cells", "meta"):
                    s, d = getattr(src, store), getattr(dst, store)
                    if (r, c) in s:
                        d[(r, c)] = copy.deepcopy(s[(r, c)])
                    else:
                        d.pop((r, c), None)

    def _bu_appendDimension(self, ss, args):
        sheet, axis = self._dimension(ss, args)
        sheet.shift(axis, sheet.rows if axis == 0 else sheet.cols, int(args.get("length", 0)))

    def _bu_insertDimension(self, ss, args):
        rng = args.get("range", {})
        sheet, axis = self._dimension(ss, rng)
        start, end = rng.get("startIndex", 0), rng.get("endIndex", 0)
        if start > (sheet.rows if axis == 0 else sheet.cols) or end <= start:
            raise bad("Invalid range for insertDimension")
        sheet.shift(axis, start, end - start)

    def _bu_deleteDimension(self, ss, args):
        rng = args.get("range", {})
        sheet, axis = self._dimension(ss, rng)
        size = sheet.rows if axis == 0 else sheet.cols
        start, end = rng.get("startIndex", 0), min(rng.get("endIndex", size), size)
        if end - start >= size:
            raise bad("You can't delete all the rows on the sheet." if axis == 0
                      else "You can't delete all the columns on the sheet.")
        sheet.shift(axis, start, -(end - start))

    def _bu_addNamedRange(self, ss, args):
        nr = copy.deepcopy(args.get("namedRange", {}))
        if nr.get("name") in ss.named_ranges:
            raise bad(f"A named range with the name \"{nr['name']}\" already exists.")
        self._grid_sheet(ss, nr.get("range", {}).get("sheetId"))
        nr.setdefault("namedRangeId", f"{self._rng.getrandbits(40):x}")
        nr["range"] = clean_grid_range(nr.get("range", {}))
        ss.named_ranges[nr["name"]] = nr
        return {"addNamedRange": {"namedRange": nr}}

    def _bu_deleteNamedRange(self, ss, args):
        for name, nr in list(ss.named_ranges.items()):
            if nr["namedRangeId"] == args.get("namedRangeId"):
                del ss.named_ranges[name]
                return
        raise bad(f"No named range with id: {args.get('namedRangeId')}")

    def _bu_addConditionalFormatRule(self, ss, args):
        rule = copy.deepcopy(args.get("rule", {}))
        ranges = rule.get("ranges") or [{}]
        sheet = self._grid_sheet(ss, ranges[0].get("sheetId"))
        rule["ranges"] = [clean_grid_range(r) for r in ranges]
        rules = sheet.extra.setdefault("conditionalFormats", [])
        rules.insert(min(args.get("index", len(rules)), len(rules)), rule)

    def _bu_mergeCells(self, ss, args):
        sheet = self._grid_bounds(ss, args.get("range", {}))[0]
        sheet.extra.setdefault("merges", []).append(copy.deepcopy(args.get("range", {})))

    def _bu_setBasicFilter(self, ss, args):
        flt = copy.deepcopy(args.get("filter", {}))
        sheet = self._grid_sheet(ss, flt.get("range", {}).get("sheetId"))
        flt["range"] = clean_grid_range(flt.get("range", {}))
        sheet.extra["basicFilter"] = flt

    def _bu_clearBasicFilter(self, ss, args):
        self._grid_sheet(ss, args.get("sheetId")).extra.pop("basicFilter", None)

    def _copy_to(self, ss, sheet_id, dest_key):
        src = ss.sheet_by_id(sheet_id)
        if src is None:
            raise ApiError(404)
        dest = self._sheets_file(dest_key)
        sheet = copy.deepcopy(src)
        sheet.props["sheetId"] = self._sheet_id(dest)
        sheet.protected = []
        title, n = f"Copy of {src.title}", 2
        while dest.find_sheet(title):
            title, n = f"Copy of {src.title} {n}", n + 1
        sheet.props["title"] = title
        dest.sheets.append(sheet)
        dest.reindex()
        return clean_props(sheet.props)

    # ------------------------------------------------------------------------------------- values

    def _render(self, ss, sheet, r, c, vro, dtro):
        kind, v = sheet.cells[(r, c)]
        if kind == "f":
            if vro == "FORMULA":
                return v
            try:
                v = evaluate(ss, sheet, v)
            except Unevaluable:
                return v
            except FormulaErr as e:
                return e.code
            except RecursionError:
                return "#REF!"
            if isinstance(v, str):
                return v
            kind = "b" if isinstance(v, bool) else "n"
        if kind == "s":
            return v
        if kind == "b":
            return ("TRUE" if v else "FALSE") if vro == "FORMATTED_VALUE" else v
        fmt = sheet.number_format(r, c)
        if vro == "FORMATTED_VALUE" or (dtro == "FORMATTED_STRING" and fmt and fmt.get("type") in DATE_TYPES):
            return format_number(v, fmt)
        return to_json_number(v)

    def _grid_values(self, ss, sheet, r0, c0, r1, c1, vro, dtro, major):
        found = {}
        for (r, c) in sheet.cells:
            if r0 <= r < r1 and c0 <= c < c1:
                found[(r, c)] = self._render(ss, sheet, r, c, vro, dtro)
        if major == "COLUMNS":
            lines = {}
            for (r, c), v in found.items():
                lines.setdefault(c - c0, {})[r - r0] = v
        else:
            lines = {}
            for (r, c), v in found.items():
                lines.setdefault(r - r0, {})[c - c0] = v
        out = []
        for i in range(max(lines, default=-1) + 1):
            line = lines.get(i, {})
            out.append([line.get(j, "") for j in range(max(line, default=-1) + 1)])
        return out

    def _render_options(self, q, vro_key="valueRenderOption", dtro_key="dateTimeRenderOption"):
        vro = q.get(vro_key) or "FORMATTED_VALUE"
        dtro = q.get(dtro_key) or "SERIAL_NUMBER"
        major = q.get("majorDimension") or "ROWS"
        if vro not in VRO:
            raise invalid_value("value_render_option", vro, "google.apps.sheets.v4.ValueRenderOption")
        if dtro not in DTRO:
            raise invalid_value("date_time_render_option", dtro, "google.apps.sheets.v4.DateTimeRenderOption")
        if major not in ("ROWS", "COLUMNS"):
            raise invalid_value("major_dimension", major, "google.apps.sheets.v4.Dimension")
        return vro, dtro, major

    def _value_range(self, ss, rng, vro, dtro, major):
        r0, c0, r1, c1 = rng.clamp()
        out = {"range": a1(rng.sheet, r0, c0, r1, c1), "majorDimension": major}
        values = self._grid_values(ss, rng.sheet, r0, c0, r1, c1, vro, dtro, major)
        if values:
            out["values"] = values
        return out

    def _values_get(self, ss, text, q):
        return self._value_range(ss, resolve(ss, text), *self._render_options(q))

    def _batch_get(self, ss, query, q):
        opts = self._render_options(q)
        rngs = [resolve(ss, t) for t in query.get("ranges", [])]
        out = {"spreadsheetId": ss.id}
        if rngs:
            out["valueRanges"] = [self._value_range(ss, r, *opts) for r in rngs]
        return out

    def _input_option(self, value):
        if not value:
            raise bad("Invalid valueInputOption: INPUT_VALUE_OPTION_UNSPECIFIED")
        if value not in ("RAW", "USER_ENTERED"):
            raise invalid_value("value_input_option", value, "google.apps.sheets.v4.ValueInputOption")
        return value == "USER_ENTERED"

    def _rows(self, body, field):
        values = body.get("values", [])
        if not isinstance(values, list):
            raise invalid_value(f"{field}.values", values)
        for i, row in enumerate(values):
            if not isinstance(row, list):
                raise invalid_value(f"{field}.values[{i}]", row)
            for j, v in enumerate(row):
                if v is not None and not isinstance(v, (str, int, float, bool)):
                    raise invalid_value(f"{field}.values[{i}].values[{j}]", v, "google.protobuf.Value")
        if (body.get("majorDimension") or "ROWS") == "COLUMNS":
            height = max((len(col) for col in values), default=0)
            values = [[col[i] if i < len(col) else None for col in values] for i in range(height)]
        elif (body.get("majorDimension") or "ROWS") != "ROWS":
            raise invalid_value(f"{field}.major_dimension", body["majorDimension"],
                                "google.apps.sheets.v4.Dimension")
        return values

    def _plan(self, ss, rng, rows, user_entered, r0=None, c0=None):
        """Validate a write of rows at rng (or r0/c0); returns (cells to set, summary)."""
        sheet = rng.sheet
        r0 = rng.r0 if r0 is None else r0
        c0 = rng.c0 if c0 is None else c0
        n, m = len(rows), max((len(r) for r in rows), default=0)
        if not rng.single and rng.r1 is not None and r0 + n > rng.r1:
            raise bad(f"Requested writing within range [{rng.text}], but tried writing to row [{rng.r1 + 1}]")
        if not rng.single and rng.c1 is not None and c0 + m > rng.c1:
            raise bad(f"Requested writing within range [{rng.text}], but tried writing to column "
                      f"[{col_letters(rng.c1)}]")
        if n and m and (r0 >= sheet.rows or c0 >= sheet.cols):  # the anchor itself is off the grid
            raise rng.exceeds(r0, c0, rng.r1, rng.c1)
        if n and r0 + n > sheet.rows:  # the data runs off the grid: Google names the first row past it
            raise bad(f"Requested writing within range [{rng.text}], but tried writing to row [{sheet.rows + 1}]")
        if m and c0 + m > sheet.cols:
            raise bad(f"Requested writing within range [{rng.text}], but tried writing to column "
                      f"[{col_letters(sheet.cols)}]")
        writes, count = [], 0
        for i, row in enumerate(rows):
            for j, v in enumerate(row):
                cell, fmt = input_value(v, user_entered)
                if cell is not SKIP:
                    writes.append((sheet, r0 + i, c0 + j, cell, fmt))
                    count += 1
        summary = {"spreadsheetId": ss.id}
        if n and m:
            summary.update(updatedRange=a1(sheet, r0, c0, r0 + n, c0 + m), updatedRows=n,
                           updatedColumns=m, updatedCells=count)
        return writes, summary, (sheet, r0, c0, r0 + n, c0 + m)

    def _apply(self, ss, writes):
        for sheet, r, c, cell, fmt in writes:
            if cell is None:
                sheet.cells.pop((r, c), None)
                continue
            sheet.cells[(r, c)] = cell
            if fmt and not sheet.number_format(r, c):
                sheet.meta.setdefault((r, c), {}).setdefault("userEnteredFormat", {})["numberFormat"] = fmt
        self._touch(ss)

    def _with_data(self, ss, summary, extent, include, q):
        if include and "updatedRange" in summary:
            vro, dtro, _ = self._render_options(q, "responseValueRenderOption", "responseDateTimeRenderOption")
            sheet, r0, c0, r1, c1 = extent
            summary["updatedData"] = self._value_range(ss, Rng(sheet, r0, c0, r1, c1), vro, dtro, "ROWS")
        return summary

    def _values_update(self, ss, text, q, body):
        user_entered = self._input_option(q.get("valueInputOption"))
        rng = resolve(ss, text)
        writes, summary, extent = self._plan(ss, rng, self._rows(body, "data"), user_entered)
        self._apply(ss, writes)
        return self._with_data(ss, summary, extent, _true(q.get("includeValuesInResponse")), q)

    def _values_batch_update(self, ss, body):
        user_entered = self._input_option(body.get("valueInputOption"))
        plans = []
        for i, item in enumerate(body.get("data") or []):
            rows = self._rows(item, f"data[{i}]")
            plans.append(self._plan(ss, resolve(ss, item.get("range", "")), rows, user_entered))
        for writes, _, _ in plans:
            self._apply(ss, writes)
        out = {"spreadsheetId": ss.id}
        responses = [p[1] for p in plans]
        if any("updatedRange" in r for r in responses):
            rows, cols, sheets = set(), set(), set()
            for _, summary, (sheet, r0, c0, r1, c1) in plans:
                if "updatedRange" in summary:
                    rows |= {(sheet.id, r) for r in range(r0, r1)}
                    cols |= {(sheet.id, c) for c in range(c0, c1)}
                    sheets.add(sheet.id)
            out.update(totalUpdatedRows=len(rows), totalUpdatedColumns=len(cols),
                       totalUpdatedCells=sum(r.get("updatedCells", 0) for r in responses),
                       totalUpdatedSheets=len(sheets))
        if plans:
            q = {k: body[k] for k in ("responseValueRenderOption", "responseDateTimeRenderOption") if k in body}
            out["responses"] = [self._with_data(ss, s, e, body.get("includeValuesInResponse"), q)
                                for _, s, e in plans]
        return out

    def _table(self, sheet, r0, c0, r1, c1):
        """Bounding box of the connected block holding the last non-empty cell in the area."""
        filled = {k for k in sheet.cells if r0 <= k[0] < r1 and c0 <= k[1] < c1}
        if not filled:
            return None
        todo, block = [max(filled)], set()
        while todo:
            k = todo.pop()
            if k in block or k not in filled:
                continue
            block.add(k)
            r, c = k
            todo += [(r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1)]
        rows, cols = [k[0] for k in block], [k[1] for k in block]
        return min(rows), min(cols), max(rows) + 1, max(cols) + 1

    def _append(self, ss, text, q, body):
        user_entered = self._input_option(q.get("valueInputOption"))
        option = q.get("insertDataOption") or "OVERWRITE"
        if option not in ("OVERWRITE", "INSERT_ROWS"):
            raise invalid_value("insert_data_option", option, "google.apps.sheets.v4.InsertDataOption")
        rng = resolve(ss, text)
        rows = self._rows(body, "data")
        sheet = rng.sheet
        if rng.single:  # a single cell: the table that holds it, searched over the whole sheet
            table = self._table(sheet, 0, 0, sheet.rows, sheet.cols) if (rng.r0, rng.c0) in sheet.cells else None
            if table and not (table[0] <= rng.r0 < table[2] and table[1] <= rng.c0 < table[3]):
                table = None
        else:
            table = self._table(sheet, *rng.clamp())
        r0, c0 = (table[2], table[1]) if table else (rng.r0, rng.c0)
        n, m = len(rows), max((len(r) for r in rows), default=0)
        gp = sheet.props["gridProperties"]
        if option == "INSERT_ROWS" and n:
            sheet.shift(0, min(r0, sheet.rows), n)
        gp["rowCount"] = max(gp["rowCount"], r0 + n)
        gp["columnCount"] = max(gp["columnCount"], c0 + m)
        writes, summary, extent = self._plan(ss, Rng(sheet, r0, c0, single=True), rows, user_entered)
        self._apply(ss, writes)
        out = {"spreadsheetId": ss.id}
        if table:
            out["tableRange"] = a1(sheet, *table)
        out["updates"] = self._with_data(ss, summary, extent, _true(q.get("includeValuesInResponse")), q)
        return out

    def _clear_range(self, rng):
        r0, c0, r1, c1 = rng.clamp()
        for key in [k for k in rng.sheet.cells if r0 <= k[0] < r1 and c0 <= k[1] < c1]:
            del rng.sheet.cells[key]
        return a1(rng.sheet, r0, c0, r1, c1)

    def _clear(self, ss, text):
        cleared = self._clear_range(resolve(ss, text))
        self._touch(ss)
        return {"spreadsheetId": ss.id, "clearedRange": cleared}

    def _batch_clear(self, ss, body):
        rngs = [resolve(ss, t) for t in body.get("ranges") or []]
        for i, rng in enumerate(rngs):
            try:
                rng.clamp()
            except ApiError as e:
                raise bad(f"Invalid range[{i}]: {e.message}")
        cleared = [self._clear_range(r) for r in rngs]
        self._touch(ss)
        out = {"spreadsheetId": ss.id}
        if cleared:
            out["clearedRanges"] = cleared
        return out

    # -------------------------------------------------------------------------------------- drive

    def _drive_route(self, method, parts, q, body):
        if not parts:
            if method == "GET":
                return 200, self._drive_list(q)
            if method == "POST":
                return 200, self._drive_create(body or {}, q)
        elif len(parts) == 1:
            if method == "GET":
                return 200, self._file_json(self._drive_file(parts[0]), q.get("fields"))
            if method == "DELETE":
                ss = self._drive_file(parts[0])
                del self._files[ss.id]
                return 204, None
            if method == "PATCH":
                ss = self._drive_file(parts[0])
                if "name" in (body or {}):
                    ss.props["title"] = body["name"]
                self._touch(ss)
                return 200, self._file_json(ss, q.get("fields"))
        elif parts[1] == "comments" and len(parts) == 2:
            ss = self._drive_file(parts[0])
            if method == "GET":
                return 200, {"comments": copy.deepcopy(ss.comments)}
            if method == "POST":
                ss.comments.append(dict(body or {}, id=f"AAAA{len(ss.comments)}"))
                return 200, {"id": ss.comments[-1]["id"]}
        elif parts[1] == "copy" and method == "POST":
            return 200, self._drive_copy(self._drive_file(parts[0]), body or {}, q)
        elif parts[1] == "permissions":
            ss = self._drive_file(parts[0])
            if len(parts) == 2 and method == "POST":
                return 200, self._permission_create(ss, body or {})
            if len(parts) == 2 and method == "GET":
                return 200, {"kind": "drive#permissionList", "permissions": copy.deepcopy(ss.permissions)}
            if len(parts) == 3 and method == "DELETE":
                before = len(ss.permissions)
                ss.permissions = [p for p in ss.permissions if p["id"] != parts[2]]
                if len(ss.permissions) == before:
                    raise DriveError(404, f"Permission not found: {parts[2]}.", "notFound", "permissionId")
                return 204, None
        raise DriveError(404, "Not Found", "notFound")

    def _file_json(self, ss, fields=None):
        stamp = lambda t: t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"  # noqa: E731
        full = {"kind": "drive#file", "id": ss.id, "name": ss.title, "mimeType": SHEET_MIME,
                "createdTime": stamp(ss.created), "modifiedTime": stamp(ss.modified), "version": str(ss.version),
                "trashed": ss.trashed,
                "parents": list(ss.parents), "webViewLink": f"https://docs.google.com/spreadsheets/d/{ss.id}/"
                "edit?usp=drivesdk", "owners": [{"kind": "drive#user", "emailAddress": self.account}]}
        if not fields:
            return {k: full[k] for k in ("kind", "id", "name", "mimeType")}
        return filter_fields(full, mask_tree(parse_mask(fields)))

    def _drive_create(self, body, q):
        if body.get("mimeType") != SHEET_MIME:
            raise DriveError(400, "Only Google Sheets files can be created in this emulator.", "invalid")
        ss = self._new_spreadsheet(body.get("name") or "Untitled spreadsheet")
        ss.parents = list(body.get("parents") or [])
        ss.sheets.append(Sheet(0, "Sheet1"))
        return self._file_json(ss, q.get("fields"))

    def _drive_copy(self, src, body, q):
        name = body.get("name") or f"Copy of {src.title}"
        ss = self._new_spreadsheet(name)
        ss.props = dict(copy.deepcopy(src.props), title=name)
        ss.sheets, ss.named_ranges = copy.deepcopy(src.sheets), copy.deepcopy(src.named_ranges)
        ss.parents = list(body.get("parents") or src.parents)
        return self._file_json(ss, q.get("fields"))

    def _permission_create(self, ss, body):
        ptype, role = body.get("type"), body.get("role")
        if ptype not in ("user", "group", "domain", "anyone"):
            raise DriveError(400, "The permission type field is required.", "required", "permission.type")
        if not role:
            raise DriveError(400, "The permission role field is required.", "required", "permission.role")
        perm = self._permission(ptype, role, body.get("emailAddress"), body.get("domain"))
        ss.permissions.append(perm)
        if body.get("emailAddress") == self.account and ss.denied == 403:
            ss.denied = None
        return {k: perm[k] for k in ("kind", "id", "type", "role")}

    def _drive_list(self, q):
        clauses = _drive_query(q.get("q", ""))
        files = [ss for ss in self._files.values() if not ss.denied and all(c(ss) for c in clauses)]
        if not any(c.trashed_clause for c in clauses):
            files = [ss for ss in files if not ss.trashed]
        size = int(q.get("pageSize") or 100)
        start = int(q.get("pageToken") or 0)
        page = files[start:start + size]
        full = {"kind": "drive#fileList", "incompleteSearch": False,
                "files": [self._file_json(ss, "*") for ss in page]}
        if start + size < len(files):
            full["nextPageToken"] = str(start + size)
        if not q.get("fields"):
            full["files"] = [{k: f[k] for k in ("kind", "id", "name", "mimeType")} for f in full["files"]]
            return full
        return filter_fields(full, mask_tree(parse_mask(q["fields"])))


def _true(value):
    return str(value).lower() == "true"


_Q_CLAUSE = re.compile(
    r"""^\s*(?:(?P<field>mimeType|name|trashed)\s*(?P<op>!=|=|contains)\s*(?P<value>'(?:\\.|[^'])*'|"(?:\\.|[^"])*"|true|false)
    |(?P<lhs>'(?:\\.|[^'])*'|"(?:\\.|[^"])*")\s+in\s+parents
    |parents\s+in\s+(?P<rhs>'(?:\\.|[^'])*'|"(?:\\.|[^"])*"))\s*$""", re.X | re.I)


def _drive_query(text):
    """The files.list q subset gspread uses, as predicates; anything else is Drive's 400."""
    clauses = []
    for part in re.split(r"""\s+and\s+(?=(?:[^'"]|'(?:\\.|[^'])*'|"(?:\\.|[^"])*")*$)""", text.strip()) if text.strip() else []:
        m = _Q_CLAUSE.match(part)
        if not m:
            raise DriveError(400, "Invalid Value", "invalid", "q")
        unq = lambda s: re.sub(r"\\(.)", r"\1", s[1:-1])  # noqa: E731
        if m.group("field"):
            field, op, raw = m.group("field").lower(), m.group("op").lower(), m.group("value")
            if field == "trashed":
                want = raw.lower() == "true"
                pred = (lambda ss, w=want, o=op: (ss.trashed == w) == (o == "="))
                pred.trashed_clause = True
                clauses.append(pred)
                continue
            value = unq(raw)
            get = (lambda ss: SHEET_MIME) if field == "mimetype" else (lambda ss: ss.title)
            if op == "contains":
                pred = lambda ss, g=get, v=value: v.lower() in g(ss).lower()  # noqa: E731
            elif op == "=":
                pred = lambda ss, g=get, v=value: g(ss) == v  # noqa: E731
            else:
                pred = lambda ss, g=get, v=value: g(ss) != v  # noqa: E731
        else:
            folder = unq(m.group("lhs") or m.group("rhs"))
            pred = lambda ss, f=folder: f in ss.parents  # noqa: E731
        pred.trashed_clause = False
        clauses.append(pred)
    return clauses
