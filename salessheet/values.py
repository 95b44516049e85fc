"""Cell value parsing: turn what people type into typed columns, and say what could not be read.

Each parser takes one column as a list of raw cell values (as calamine, csv or a spreadsheet host gives
them: str, float, int, bool, date/datetime, None or "" for blank) and returns the typed values plus a
list of problems ``(position, severity, message)``. The common cases (numbers that are already
numbers, real dates) take a fast path; only the text that needs interpreting is looked at one by one.
"""
from __future__ import annotations

import datetime as dt
import re

import numpy as np
import pandas as pd

from . import schema
from .issues import ERROR, WARNING

EXCEL_EPOCH = np.datetime64("1899-12-30", "D")
# A number in a date column is read as an Excel serial only when it lands in 1950..2199: outside that
# it is something else typed in the wrong place (2026 is a year, 1.5 a quantity), not a sales date.
SERIAL_MIN, SERIAL_MAX = 18264.0, 109574.0

Problems = list  # [(position, severity, message)]


def is_blank(v) -> bool:
    if v is None:
        return True
    if isinstance(v, str):
        return not v.strip()
    if isinstance(v, float):
        return v != v
    return v is pd.NaT or v is pd.NA


BLANK_ROW: list = []  # shared stand-in for empty rows, so a sheet of a million empty rows stays small


def trim_row(row: list) -> list:
    """The row itself, or BLANK_ROW when no cell holds anything."""
    for v in row:
        if v != "" and v is not None and not (type(v) is str and not v.strip()) and v == v:
            return row
    return BLANK_ROW


# -- text ---------------------------------------------------------------------------------------

def _as_text(v) -> str | None:
    if is_blank(v):
        return None
    if isinstance(v, str):
        return v.strip()
    if isinstance(v, bool):
        return "TRUE" if v else "FALSE"
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e15:
        return str(int(v))  # 1001.0 from a number cell is the ID "1001"
    if isinstance(v, dt.datetime):
        return v.isoformat(sep=" ") if (v.hour, v.minute, v.second) != (0, 0, 0) else v.date().isoformat()
    if isinstance(v, dt.date):
        return v.isoformat()
    return str(v).strip()


def parse_text(values: list) -> tuple[np.ndarray, Problems]:
    if set(map(type, values)) <= {str}:  # the common case: skip the per-cell type dispatch
        return np.array([v.strip() or None for v in values], dtype=object), []
    return np.array([_as_text(v) for v in values], dtype=object), []


def parse_choice(values: list, choices: tuple[str, ...], column: str) -> tuple[np.ndarray, Problems]:
    """Case/space-insensitive match to the allowed values; anything else is kept as written and reported."""
    lookup = {schema.normalize(c): c for c in choices}
    out = np.empty(len(values), dtype=object)
    problems: Problems = []
    allowed = ", ".join(choices)
    for i, v in enumerate(values):
        t = _as_text(v)
        if t is None:
            out[i] = None
            continue
        hit = lookup.get(schema.normalize(t))
        out[i] = hit if hit is not None else t
        if hit is None:
            problems.append((i, ERROR, f"{t!r} is not an allowed {column}; use one of: {allowed}"))
    return out, problems


def stage_lookup(stage_names, won: str | None = None, lost: str | None = None) -> dict[str, str]:
    """normalized word -> canonical stage, from a book's Stages plus the won/lost words people type.

    ``won``/``lost`` name the book's closing stages when a team renamed them ("Signed", "Dead");
    by default they are the stages named Closed Won / Closed Lost.
    """
    names = [s for s in stage_names if isinstance(s, str) and s]
    lookup = {schema.normalize(s): s for s in names}
    won = won or next((s for s in names if schema.normalize(s) == schema.normalize(schema.WON_STAGE)), None)
    lost = lost or next((s for s in names if schema.normalize(s) == schema.normalize(schema.LOST_STAGE)), None)
    for word, target in schema.STAGE_ALIASES.items():
        canonical = won if target == schema.WON_STAGE else lost
        if canonical is not None:
            lookup.setdefault(word, canonical)
    return lookup


def parse_stage(values: list, lookup: dict[str, str]) -> tuple[np.ndarray, Problems]:
    texts = parse_text(values)[0].tolist()
    known = {t: lookup.get(schema.normalize(t)) for t in set(texts) if t is not None}
    unknown = {t for t, hit in known.items() if hit is None}
    as_read = {t: hit or t for t, hit in known.items()}
    as_read[None] = None
    out = np.array(list(map(as_read.__getitem__, texts)), dtype=object)  # one dict lookup per cell, in C
    problems: Problems = []
    stages = ", ".join(dict.fromkeys(lookup.values()))
    if unknown:
        for i, t in enumerate(texts):
            if t in unknown:
                problems.append((i, WARNING, f"unknown stage {t!r}: kept as written and counted as open; "
                                             f"add it to the Stages sheet or use one of: {stages}"))
    return out, problems


# -- numbers ------------------------------------------------------------------------------------

_CURRENCY = re.compile(r"(?i)(?:us\$|r\$|[$€£¥₹]|(?<![a-z])(?:usd|eur|gbp|chf|jpy|cad|aud|sek|nok|dkk|inr)(?![a-z]))")
_SPACES = re.compile(r"[\s\u00a0\u202f']")
_NUMBER = re.compile(r"^(?:\d+(?:\.\d*)?|\.\d+)(?:e[+-]?\d+)?$", re.I)
# Grouped thousands; a leading 0 ("0,125") is a decimal, never a group.
_THOUSANDS_COMMA = re.compile(r"^[1-9]\d{0,2}(?:,\d{3})+(?:\.\d+)?$")
_THOUSANDS_DOT = re.compile(r"^[1-9]\d{0,2}(?:\.\d{3}){2,}(?:,\d+)?$|^[1-9]\d{0,2}\.\d{3},\d+$")
_ONE_DOT_GROUP = re.compile(r"^[1-9]\d{0,2}\.\d{3}$")
_GROUPED_EU = re.compile(r"^\d{1,3}(?:\.\d{3})+,\d*$")
_GROUPED_US = re.compile(r"^\d{1,3}(?:,\d{3})+\.\d*$")


def parse_number_text(text: str, money: bool = False) -> float | None:
    """"$1,200.50", "1 200,50 EUR", "(500)", "-3.5", "1.234.567" -> float; None if it is not a number.

    With ``money``, "1.200" is 1200 like "1,200": amounts are not written with three decimals.
    """
    s = _SPACES.sub("", _CURRENCY.sub("", text))
    negative = False
    if s.startswith("(") and s.endswith(")"):
        negative, s = True, s[1:-1]
    if s.endswith("-") and s[:-1].replace(".", "").replace(",", "").isdigit():
        negative, s = not negative, s[:-1]  # "500-" accounting style
    if s[:1] in ("-", "+"):
        negative = negative != (s[0] == "-")
        s = s[1:]
    if not s:
        return None
    if "," in s and "." in s:  # both: the last one is the decimal mark, the other must group by three
        if _GROUPED_EU.match(s):  # 1.200,50
            s = s.replace(".", "").replace(",", ".")
        elif _GROUPED_US.match(s):  # 1,200.50
            s = s.replace(",", "")
        else:
            return None
    elif "," in s:
        s = s.replace(",", "") if _THOUSANDS_COMMA.match(s) else s.replace(",", ".")
    elif _THOUSANDS_DOT.match(s) or (money and _ONE_DOT_GROUP.match(s)):
        s = s.replace(".", "")
    if not _NUMBER.match(s):
        return None
    x = float(s)
    return -x if negative else x


_NUMERIC = {float, int}
_BLANKS = {str, type(None)}


def _blank_text_only(values: list, kinds: set) -> bool:
    """True when every str among the values is "" (an empty cell): a set of distinct values, not a loop."""
    return str not in kinds or all(v == "" for v in set(values) if type(v) is str)


def _numbers_and_rest(values: list) -> tuple[np.ndarray, list[int]]:
    """Plain numbers in one vectorised step; positions of everything else that is not blank."""
    kinds = set(map(type, values))
    if kinds <= _NUMERIC:  # the common case: a column of number cells
        return np.array(values, dtype=float), []
    if kinds <= _NUMERIC | _BLANKS and _blank_text_only(values, kinds):  # numbers and empty cells
        grid = np.array(values, dtype=object)
        grid[grid == ""] = None
        return grid.astype(float), []
    out = np.array([v if type(v) in _NUMERIC else np.nan for v in values], dtype=float)
    rest = [i for i, v in enumerate(values) if type(v) not in _NUMERIC and v != "" and v is not None]
    return out, rest


def parse_number(values: list, column: str, kind: str = "number") -> tuple[np.ndarray, Problems]:
    out, rest = _numbers_and_rest(values)
    problems: Problems = []
    for i in rest:
        v = values[i]
        if is_blank(v):
            continue
        if type(v) is bool:
            problems.append((i, ERROR, f"{column} should be a number, not {v}"))
        elif isinstance(v, str):
            x = parse_number_text(v, money=kind == "money")
            if x is None:
                problems.append((i, ERROR, f"{column} should be a number; {v!r} is not one"))
            else:
                out[i] = x
        elif isinstance(v, (int, float, np.number)):
            out[i] = float(v)
        else:
            problems.append((i, ERROR, f"{column} should be a number; {_as_text(v)!r} is not one"))
    if kind == "int":
        frac = ~np.isnan(out) & (out != np.floor(np.nan_to_num(out)))
        for i in np.flatnonzero(frac):
            problems.append((int(i), ERROR, f"{column} should be a whole number, not {values[i]}"))
    return out, problems


def parse_percent(values: list, column: str) -> tuple[np.ndarray, Problems]:
    """25%, "25%", 0.25 and 25 all mean a quarter: numbers above 1 are read as percent points."""
    out, rest = _numbers_and_rest(values)
    big = out > 1
    out[big] = out[big] / 100
    problems: Problems = []
    for i in rest:
        v = values[i]
        if is_blank(v):
            continue
        if isinstance(v, str):
            s = v.strip()
            pct = s.endswith("%")
            x = parse_number_text(s.rstrip("%").strip())
            if x is None:
                problems.append((i, ERROR, f"{column} should be a percentage like 25% or 0.25; {v!r} is not one"))
                continue
            if pct:
                out[i] = x / 100
                continue
        elif isinstance(v, (int, float, np.number)) and not isinstance(v, bool):
            x = float(v)
        else:
            problems.append((i, ERROR, f"{column} should be a percentage like 25% or 0.25; {_as_text(v)!r} is not one"))
            continue
        out[i] = x / 100 if x > 1 else x
    return out, problems


_TRUE = {"true", "yes", "y", "x", "1", "✓", "✔", "closed", "won", "wahr", "oui", "si", "ja"}
_FALSE = {"false", "no", "n", "0", "", "open", "falsch", "non", "nein"}


def parse_bool(values: list, column: str) -> tuple[pd.arrays.BooleanArray, Problems]:
    out: list = []
    problems: Problems = []
    for i, v in enumerate(values):
        if v is None or (isinstance(v, float) and v != v):
            out.append(None)
        elif isinstance(v, bool):
            out.append(v)
        elif isinstance(v, (int, float)) and v in (0, 1):
            out.append(bool(v))
        elif isinstance(v, str) and v.strip().lower() in _TRUE:
            out.append(True)
        elif isinstance(v, str) and v.strip().lower() in _FALSE:
            out.append(None if not v.strip() else False)
        else:
            out.append(None)
            problems.append((i, ERROR, f"{column} should be Yes or No; {_as_text(v)!r} is neither"))
    return pd.array(out, dtype="boolean"), problems


# -- dates --------------------------------------------------------------------------------------

_DMY = re.compile(r"^(\d{1,2})[/.\-](\d{1,2})[/.\-](\d{2}|\d{4})"
                  r"(?:,?[ T](\d{1,2}):(\d{2})(?::(\d{2}))?\s*([ap]\.?m\.?)?)?$", re.I)
_MONTH_NAME = re.compile(r"(?i)jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec")
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December")
_ISO = re.compile(r"^\d{4}-\d{1,2}-\d{1,2}(?:[ T]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?(?:Z|[+-]\d{2}:?\d{2})?$")
_YMD_SLASH = re.compile(r"^(\d{4})[/.](\d{1,2})[/.](\d{1,2})$")


def serial_to_datetime(x: float) -> dt.datetime:
    return dt.datetime(1899, 12, 30) + dt.timedelta(days=float(x))


def _year(y: str) -> int:
    n = int(y)
    return n if len(y) == 4 else (2000 + n if n < 70 else 1900 + n)


def _mk(y, m, d, hh=None, mm=None, ss=None, ampm=None) -> dt.datetime | None:
    h = int(hh or 0)
    if ampm:
        if not 1 <= h <= 12:
            return None
        h = h % 12 + (12 if ampm[0] in "pP" else 0)
    try:
        return dt.datetime(y, m, d, h, int(mm or 0), int(ss or 0))
    except ValueError:
        return None


def _text_date(s: str) -> dt.datetime | None:
    """Dates written with a month name ("13 Feb 2026", "Feb 13, 2026"): the name settles day vs month.

    Day, month and year must all be there; dateutil would fill a missing one from its default.
    """
    from dateutil import parser  # pandas depends on python-dateutil

    if not _MONTH_NAME.search(s) or len(s) > 40:
        return None
    try:
        a = parser.parse(s, default=dt.datetime(1904, 1, 1))
        b = parser.parse(s, default=dt.datetime(1908, 2, 2))
    except (ValueError, OverflowError):
        return None
    return a if a == b else None


_DATELIKE = {dt.date, dt.datetime, pd.Timestamp}


def s_(v) -> str:
    return v.strip() if isinstance(v, str) else str(v)


def _dates_and_rest(values: list) -> tuple[np.ndarray, list[int]]:
    """Real date cells in one vectorised step; positions of everything else that is not blank."""
    kinds = set(map(type, values))
    # Dates and empty cells only (the common case) go to pandas as they are: it reads "" as NaT.
    simple = kinds <= _DATELIKE | _BLANKS and _blank_text_only(values, kinds)
    objs = values if simple else [v if type(v) in _DATELIKE else None for v in values]
    try:
        idx = pd.DatetimeIndex(objs)  # several times faster than to_datetime on a Series of objects
        if idx.tz is not None:
            raise TypeError
    except (TypeError, ValueError):  # time-zone aware or out-of-range cells (some hosts): one by one
        simple, objs = False, [None] * len(values)
        idx = pd.DatetimeIndex(objs)
    out = idx.to_numpy().astype("datetime64[us]")
    if simple:
        return out, []
    return out, [i for i, v in enumerate(values) if objs[i] is None and v != "" and v is not None]


def parse_dates(values: list, column: str, dayfirst: bool | None = None,
                keep_time: bool = False) -> tuple[np.ndarray, Problems]:
    """Dates from date cells, Excel serials, ISO text and d/m/y or m/d/y text.

    The day/month order of a column's slash dates is inferred from its unambiguous values (13/02 can
    only be day-first); ``dayfirst`` overrides the inference. What stays ambiguous is reported and left
    blank, never guessed.
    """
    out, rest = _dates_and_rest(values)
    problems: Problems = []
    slashed: list[tuple[int, tuple]] = []  # (position, regex groups) decided after inference
    iso_pos: list[int] = []
    for i in rest:
        v = values[i]
        t = type(v)
        if t is float or t is int:
            if v == 0 or v != v:  # hosts send 0 for an empty cell
                continue
            if SERIAL_MIN <= v <= SERIAL_MAX:
                out[i] = EXCEL_EPOCH + np.timedelta64(round(v * 86400_000_000), "us")
            else:
                problems.append((i, ERROR, f"{column}: {_as_text(v)} is a number, not a date; write the date "
                                           f"as YYYY-MM-DD"))
        elif is_blank(v):
            continue
        elif isinstance(v, str):
            s = v.strip()
            if _ISO.match(s):
                iso_pos.append(i)
            elif m := _DMY.match(s):
                slashed.append((i, m.groups()))
            elif m := _YMD_SLASH.match(s):
                d = _mk(int(m[1]), int(m[2]), int(m[3]))
                if d is None:
                    problems.append((i, ERROR, f"{column}: {s!r} is not a valid date"))
                else:
                    out[i] = np.datetime64(d, "us")
            elif _NUMBER.match(s):
                x = float(s)
                if SERIAL_MIN <= x <= SERIAL_MAX:
                    out[i] = EXCEL_EPOCH + np.timedelta64(round(x * 86400_000_000), "us")
                else:
                    problems.append((i, ERROR, f"{column}: {s!r} is a number, not a date; write the date "
                                               f"as YYYY-MM-DD"))
            elif (d := _text_date(s)) is not None:
                out[i] = np.datetime64(d, "us")
            else:
                problems.append((i, ERROR, f"{column}: {s!r} is not a date; write it as YYYY-MM-DD"))
        elif isinstance(v, dt.datetime):  # keeps the wall time of a time-zone aware cell
            out[i] = np.datetime64(v.replace(tzinfo=None), "us")
        elif isinstance(v, (dt.date, np.datetime64)):
            out[i] = np.datetime64(v, "us")
        else:
            problems.append((i, ERROR, f"{column}: {_as_text(v)!r} is not a date"))

    if iso_pos:
        parsed = pd.to_datetime(pd.Series([values[i].strip() for i in iso_pos]), format="ISO8601",
                                errors="coerce", utc=True).dt.tz_localize(None)
        for i, ts in zip(iso_pos, parsed):
            if ts is pd.NaT:
                problems.append((i, ERROR, f"{column}: {s_(values[i])!r} is not a valid date"))
            else:
                out[i] = np.datetime64(ts.to_datetime64(), "us")

    if slashed:
        order = dayfirst
        if order is None:
            day_first_evidence = any(int(g[0]) > 12 >= int(g[1]) for _, g in slashed)
            month_first_evidence = any(int(g[1]) > 12 >= int(g[0]) for _, g in slashed)
            if day_first_evidence != month_first_evidence:
                order = day_first_evidence
        for i, g in slashed:
            a, b, y = int(g[0]), int(g[1]), _year(g[2])
            if order is None and a != b and a <= 12 and b <= 12:
                problems.append((i, ERROR, f"{column}: {s_(values[i])!r} could be {a} {_MONTHS[b - 1]} or "
                                           f"{_MONTHS[a - 1]} {b} (day/month order unknown); write it as "
                                           f"YYYY-MM-DD, or read the file with --dayfirst or --monthfirst"))
                continue
            d = _mk(y, a, b, *g[3:]) if order is False or (order is None and b > 12) else _mk(y, b, a, *g[3:])
            if d is None:
                problems.append((i, ERROR, f"{column}: {s_(values[i])!r} is not a valid date"))
            else:
                out[i] = np.datetime64(d, "us")

    if not keep_time:
        out = out.astype("datetime64[D]").astype("datetime64[us]")
    return out, problems
