"""Build real spreadsheet files for the reader/validator tests (xlsx with xlsxwriter, csv with csv)."""
from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path

import xlsxwriter

from salessheet import schema


def write_xlsx(path: Path, sheets: dict[str, list[list]], *, at: dict[str, tuple[int, int]] | None = None,
               tables: dict[str, str] | None = None) -> Path:
    """sheets: name -> rows (header first). at: sheet -> (row0, col0) where rows[0] goes (0-based).
    tables: sheet -> Excel table name covering the sheet's rows (header row included)."""
    at, tables = at or {}, tables or {}
    wb = xlsxwriter.Workbook(str(path))
    date_f = wb.add_format({"num_format": "yyyy-mm-dd"})
    dt_f = wb.add_format({"num_format": "yyyy-mm-dd hh:mm"})
    for name, rows in sheets.items():
        ws = wb.add_worksheet(name)
        r0, c0 = at.get(name, (0, 0))
        for r, row in enumerate(rows):
            for c, v in enumerate(row):
                put(ws, r0 + r, c0 + c, v, date_f, dt_f)
        if name in tables:
            header = [str(h) for h in rows[0]]
            width = max(len(r) for r in rows)
            header += [f"Extra{j}" for j in range(len(header), width)]
            ws.add_table(r0, c0, r0 + max(len(rows) - 1, 1), c0 + width - 1,
                         {"name": tables[name], "columns": [{"header": h} for h in header]})
            for c, h in enumerate(header):  # add_table writes its own header cells
                ws.write_string(r0, c0 + c, h)
    wb.close()
    return Path(path)


def put(ws, r: int, c: int, v, date_f, dt_f) -> None:
    if v is None:
        return
    if isinstance(v, bool):
        ws.write_boolean(r, c, v)
    elif isinstance(v, dt.datetime):
        ws.write_datetime(r, c, v, dt_f if (v.hour, v.minute) != (0, 0) else date_f)
    elif isinstance(v, dt.date):
        ws.write_datetime(r, c, dt.datetime(v.year, v.month, v.day), date_f)
    elif isinstance(v, (int, float)):
        ws.write_number(r, c, v)
    else:
        ws.write_string(r, c, str(v))


def write_csv(path: Path, rows: list[list], delimiter: str = ",", encoding: str = "utf-8") -> Path:
    with open(path, "w", newline="", encoding=encoding) as f:
        csv.writer(f, delimiter=delimiter).writerows(["" if v is None else v for v in r] for r in rows)
    return Path(path)


def sample_value(col: schema.Column, i: int = 0):
    """A valid cell value for a column of the standard, varied by i."""
    k = col.kind
    if k == "id":
        return f"X-{100 + i}"
    if k in ("date", "datetime"):
        return dt.date(2026, 1, 10 + i)
    if k == "money":
        return 1000.0 + i
    if k in ("number", "int"):
        return 3 + i
    if k == "percent":
        return 0.3
    if k == "bool":
        return True
    if k == "choice":
        return col.choices[i % len(col.choices)]
    if k == "stage":
        return "Proposal"
    return f"{col.name} {i}"


def deal(**over) -> dict:
    """A valid open deal row as {column: value}; keyword names use _ for spaces."""
    row = {"Deal ID": "D-1", "Deal Name": "Big one", "Account": "Acme", "Owner": "Ann", "Team": "EMEA",
           "Lead Source": "Website", "Stage": "Proposal", "Probability": None, "Amount": 1200.0, "Units": 2,
           "Created Date": dt.date(2026, 1, 5), "Expected Close": dt.date(2026, 3, 1), "Closed Date": None,
           "Lost Reason": None, "Next Step": "Call", "Last Updated": None}
    for k, v in over.items():
        row[k.replace("_", " ")] = v
    return row


def deals_rows(*rows: dict, header: list[str] | None = None) -> list[list]:
    header = header or schema.DEALS.names
    return [list(header)] + [[r.get(h) for h in header] for r in rows]
