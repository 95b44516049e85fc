"""What salessheet writes into Google tabs, as cells: frames as rows of RAW values (dates as serial numbers,
text never a formula) with each column's number format, and the Dashboard's KPI formulas in Google's form.

Separate because both a sync master (gsheets_master) and a new workbook (gsheets_template) write these.
"""
from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass, field

from . import schema
from .gsheets import quote_sheet

EPOCH = dt.datetime(1899, 12, 30)  # day 0 of SERIAL_NUMBER dates

_FORMATS = {
    "date": {"type": "DATE", "pattern": "yyyy-mm-dd"},
    "datetime": {"type": "DATE_TIME", "pattern": "yyyy-mm-dd hh:mm"},
    "money": {"type": "NUMBER", "pattern": "#,##0.00"},
    "percent": {"type": "PERCENT", "pattern": "0%"},
    "int": {"type": "NUMBER", "pattern": "0"},
    "percent1": {"type": "PERCENT", "pattern": "0.0%"},
    "days": {"type": "NUMBER", "pattern": "0.0"},
}
# Columns sync adds and the sheets it owns beside the standard tables: their kinds, for number formats.
_EXTRA_KINDS = {"Source Row": "int", "Synced At": "datetime", "Row": "int", "Time": "datetime"}


def _kind_of(table: str, column: str) -> str | None:
    t = schema.TABLES.get(table)
    if t is not None and column in t.names:
        return t.column(column).kind
    return _EXTRA_KINDS.get(column)


def serial(v) -> float:
    """A date/datetime as a SERIAL_NUMBER (days since 1899-12-30)."""
    if isinstance(v, dt.datetime):
        return (v.replace(tzinfo=None) - EPOCH) / dt.timedelta(days=1)
    return float((dt.date(v.year, v.month, v.day) - EPOCH.date()).days)


def _cell(v):
    """One value as written RAW: text stays text (never a formula), blanks are ""."""
    import numpy as np
    import pandas as pd

    if v is None or v is pd.NA or v is pd.NaT:
        return ""
    if isinstance(v, str):
        return v
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, float, np.number)):
        x = float(v)
        return "" if x != x else x if math.isfinite(x) else str(v)
    if isinstance(v, (dt.datetime, dt.date)):  # Timestamp too
        return serial(v)
    if isinstance(v, dt.time):
        return (v.hour * 3600 + v.minute * 60 + v.second) / 86400
    return str(v)


def column_cells(s, kind: str | None) -> tuple[list, str | None]:
    """A frame column as cells, and the kind its number format follows."""
    import numpy as np

    if s.dtype.kind == "M":
        arr = s.to_numpy(dtype="datetime64[us]")
        nat = np.isnat(arr)
        days = (arr - np.datetime64("1899-12-30T00:00:00", "us")) / np.timedelta64(1, "D")
        out = days.astype(object)
        out[nat] = ""
        if kind not in ("date", "datetime"):
            whole = (arr[~nat].astype("datetime64[D]") == arr[~nat]).all()
            kind = "date" if whole else "datetime"
        return out.tolist(), kind
    if s.dtype.kind == "f":
        arr = s.to_numpy()
        out = arr.astype(object)
        out[np.isnan(arr)] = ""
        bad = ~np.isfinite(arr) & ~np.isnan(arr)
        out[bad] = [str(x) for x in arr[bad]]
        return out.tolist(), kind if kind in _FORMATS else None
    vals = [_cell(v) for v in s.tolist()]
    if kind is None:
        filled = [v for v in s.tolist() if _cell(v) != ""]
        if filled and all(isinstance(v, (dt.date, dt.datetime)) for v in filled):
            kind = "date" if all(not isinstance(v, dt.datetime) or v == v.replace(hour=0, minute=0, second=0,
                                                                                    microsecond=0) for v in filled) \
                else "datetime"
    return vals, kind if kind in _FORMATS else None


@dataclass
class Grid:
    """A tab's content: rows (header first) and each column's number format kind."""

    rows: list[list]
    kinds: list[str | None]
    formulas: bool = False  # written USER_ENTERED (the Dashboard), else RAW
    cell_kinds: dict = field(default_factory=dict)  # (row, column) -> kind, for single cells

    @property
    def width(self) -> int:
        return max((len(r) for r in self.rows), default=1) or 1


def frame_grid(table: str, df) -> Grid:
    headers = [str(c) for c in df.columns]
    cols, kinds = [], []
    for c in df.columns:
        vals, kind = column_cells(df[c], _kind_of(table, str(c)))
        cols.append(vals)
        kinds.append(kind)
    rows = [headers] + ([list(r) for r in zip(*cols)] if len(df) else [])
    return Grid(rows, kinds)



def _format_requests(sid: int, g: Grid, n_rows: int) -> list[dict]:
    """Bold header, and each typed column's number format over its data rows."""
    out = [{"repeatCell": {"range": {"sheetId": sid, "startRowIndex": 0, "endRowIndex": 1},
                           "cell": {"userEnteredFormat": {"textFormat": {"bold": True}}},
                           "fields": "userEnteredFormat.textFormat.bold"}}]
    for (r, c), kind in g.cell_kinds.items():
        if kind in _FORMATS:
            out.append({"repeatCell": {"range": {"sheetId": sid, "startRowIndex": r, "endRowIndex": r + 1,
                                                 "startColumnIndex": c, "endColumnIndex": c + 1},
                                       "cell": {"userEnteredFormat": {"numberFormat": _FORMATS[kind]}},
                                       "fields": "userEnteredFormat.numberFormat"}})
    for j, kind in enumerate(g.kinds):
        if kind in _FORMATS:
            out.append({"repeatCell": {"range": {"sheetId": sid, "startRowIndex": 1, "endRowIndex": n_rows,
                                                 "startColumnIndex": j, "endColumnIndex": j + 1},
                                       "cell": {"userEnteredFormat": {"numberFormat": _FORMATS[kind]}},
                                       "fields": "userEnteredFormat.numberFormat"}})
    return out


# --- the Dashboard ------------------------------------------------------------------------------

_REF = re.compile(r"([A-Za-z_][\w.]*)\[((?:'.|[^\]'])*)\]")


def google_formula(formula: str, columns: dict[str, list[str]]) -> str | None:
    """A template Dashboard formula with its structured references (Deals[Amount]) as open-ended ranges
    ('Deals'!$I$2:$I), which Google Sheets has; None when a referenced column is missing."""
    from .reader import column_letter

    missing = []

    def sub(m):
        table, col = m.group(1), re.sub(r"'(.)", r"\1", m.group(2))
        cols = columns.get(table, [])
        if col not in cols:
            missing.append(f"{table}[{col}]")
            return "0"
        L = column_letter(cols.index(col))
        return f"{quote_sheet(table)}!${L}$2:${L}"

    out = _REF.sub(sub, formula)
    return None if missing else out


def dashboard_grid(columns: dict[str, list[str]]) -> Grid:
    """The template's KPI block (labels, native formulas, explanations) for a Google sheet whose tables have
    these columns. Array formulas are wrapped in ARRAYFORMULA, Google's way to say so."""
    from . import template

    where = {**template.DASHBOARD_CELLS, **template.DASHBOARD_COUNT_CELLS}
    formulas = template.dashboard_formulas()
    last = max(int(a[1:]) for a in where.values())
    rows = [["", "", ""] for _ in range(last)]
    rows[0][0] = "Sales dashboard"
    rows[1][0] = ("Worked out from the Deals, Leads, Costs and Stages tabs, all time. Nothing to type here.")
    rows[2] = ["KPI", "Value", "How it is worked out"]
    first_count = min(int(a[1:]) for a in template.DASHBOARD_COUNT_CELLS.values())
    rows[first_count - 2] = ["Counts behind the KPIs", "", ""]
    cell_kinds = {}
    for key, addr in where.items():
        label, formula, kind, note = formulas[key]
        r = int(addr[1:]) - 1
        f = google_formula(formula, columns)
        if f is None:
            rows[r] = [label, "n/a", note + " (a column it needs is missing)"]
            continue
        f = f"=ARRAYFORMULA({f})" if key == "new_customers" else "=" + f
        rows[r] = [label, f, note]
        cell_kinds[(r, 1)] = {"money": "money", "percent": "percent1", "count": "int", "days": "days"}.get(kind)
    return Grid(rows, [None, None, None], formulas=True, cell_kinds=cell_kinds)
