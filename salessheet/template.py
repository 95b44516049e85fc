"""The standard workbook: one Excel table per standard table, dropdowns, checks, a How-to and a Dashboard.

Written with xlsxwriter so the file opens the same in Excel and LibreOffice. Choices that make it work
in both (each checked in LibreOffice by tests/test_template.py):
- Data tables span DATA_ROWS rows even when empty: Excel grows a table when you type below it, LibreOffice
  does not, and the Dashboard's structured references (Deals[Amount]) only see rows inside the table.
- Dropdowns read defined names like ``OwnerList`` = OFFSET(first cell, COUNTA(column)-1 rows), so the
  menu lists exactly the filled entries (no tail of blanks) and grows when a rep adds one.
- Won / lost / open on the Dashboard come from the Stages table (Is Won, Is Closed) via COUNTIFS, never
  from stage names, so a team that renames or adds stages keeps a correct Dashboard.
- The output is deterministic: same inputs, same bytes (fixed created date, fixed zip timestamps).
"""
from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping
from pathlib import Path

import xlsxwriter
from xlsxwriter.utility import xl_cell_to_rowcol, xl_col_to_name

from . import schema
from .errors import ValidationError

TEMPLATE_PATH = Path(__file__).resolve().parent.parent / "templates" / "salessheet.xlsx"
CREATED = dt.datetime(2024, 1, 1)  # workbook created/modified date, fixed so output bytes are stable
DATA_ROWS = 1000  # rows a data table spans at least (blank rows to type into)
LOOKUP_ROWS = 20  # rows the Stages and Lists tables span at least (room for new stages, reps, teams)
VALIDATION_ROWS = 2000  # data rows (from row 2) that get dropdowns and checks, at least the table's rows
DATA_TABLES = ("Deals", "Leads", "Costs", "Targets")
LOOKUP_TABLES = ("Stages", "Lists")
HOWTO_SHEET, DASHBOARD_SHEET = "How to use", "Dashboard"
SHEET_ORDER = (HOWTO_SHEET, "Deals", "Leads", "Costs", "Targets", DASHBOARD_SHEET, "Stages", "Lists")
EXAMPLE_TEAMS = ("North", "South", "West")
EXAMPLE_OWNERS = ("Alex Morgan", "Sam Patel", "Jordan Lee", "Riley Chen")

# Defined name feeding each dropdown source (a Lists column, or the Stages table's Stage column).
LIST_NAMES = {"Stage": "StageList", "Team": "TeamList", "Owner": "OwnerList", "Lead Source": "LeadSourceList",
              "Currency": "CurrencyList"}

# KPI key (as in salessheet.kpi.KPIS) -> Dashboard cell holding its native formula.
DASHBOARD_CELLS = {
    "revenue": "B4", "sales_volume": "B5", "win_rate": "B6", "avg_deal_size": "B7", "sales_cycle_days": "B8",
    "conversion_rate": "B9", "cac": "B10", "pipeline": "B11", "weighted_pipeline": "B12",
}
# The same KPIs as salessheet spreadsheet functions (=WINRATE() ...), beside the native ones: they
# need the add-in (Excel), install-libreoffice (Calc), or `salessheet recalc` for their values.
FUNCTION_CELLS = {
    "revenue": "F4", "sales_volume": "F5", "win_rate": "F6", "avg_deal_size": "F7", "sales_cycle_days": "F8",
    "conversion_rate": "F9", "cac": "F10", "pipeline": "F11", "weighted_pipeline": "F12", "forecast": "F13",
    "sales_velocity": "F14", "quota_attainment": "F15",
}
# KPITABLE(,"owner") as an array formula: a header row and up to KPITABLE_ROWS - 1 owners.
KPITABLE_CELL, KPITABLE_ROWS = "H3", 21
# The counts the KPIs are built from, shown under them.
DASHBOARD_COUNT_CELLS = {"deals_won": "B15", "deals_lost": "B16", "leads": "B17", "leads_converted": "B18",
                         "new_customers": "B19", "costs": "B20"}

_NUM_FORMATS = {
    "date": "yyyy-mm-dd", "datetime": "yyyy-mm-dd hh:mm", "percent": "0%", "int": "0", "number": "General",
}
_DATE_MIN, _DATE_MAX = dt.date(1900, 1, 1), dt.date(9999, 12, 31)


def money_format(currency: str = schema.DEFAULT_CURRENCY) -> str:
    """Currency number format showing the ISO code ("USD 1,234.50"), the same in Excel and LibreOffice."""
    return f'[${currency}] #,##0.00'


# --- public API ---------------------------------------------------------------------------------


def write_template(path, team: str | None = None) -> Path:
    """The empty standard workbook (Stages and Lists pre-filled)."""
    return write_workbook(path, team=team)


def update_committed_template(path=TEMPLATE_PATH) -> Path:
    """Regenerate templates/salessheet.xlsx (run ``python -m salessheet.template``)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return write_template(path)


def write_workbook(path, tables: Mapping[str, object] | None = None, team: str | None = None,
                   owners: Iterable[str] | None = None, teams: Iterable[str] | None = None) -> Path:
    """Write the standard workbook to ``path``; return the path.

    tables: rows for Deals/Leads/Costs/Targets (and optionally Stages/Lists to replace the defaults), each
    a DataFrame or a list of dicts keyed by standard column names, values already typed (date/datetime/
    Timestamp, float, int, bool, str; None/NaN/NaT = blank). Unknown columns are kept, after the standard
    ones. team: the team this workbook belongs to (first in the Team list, and in the file's title).
    owners / teams: the Owner and Team dropdown lists (defaults: example names).
    """
    path = Path(path)
    tables = dict(tables or {})
    unknown = set(tables) - set(schema.TABLES)
    if unknown:
        raise ValidationError(f"not standard tables: {', '.join(sorted(map(str, unknown)))}; "
                              f"use {', '.join(schema.TABLE_ORDER)}")
    rows = {name: _records(tables.get(name)) for name in schema.TABLE_ORDER}
    if not rows["Stages"]:
        rows["Stages"] = [{"Stage": s.name, "Order": s.order, "Probability": s.probability,
                           "Is Closed": s.is_closed, "Is Won": s.is_won} for s in schema.DEFAULT_STAGES]
    if not rows["Lists"]:
        rows["Lists"] = _default_lists(team, owners, teams)
    currency = next((str(r["Currency"]) for r in rows["Lists"] if _filled(r.get("Currency"))), "")
    currency = currency if currency.isalpha() else schema.DEFAULT_CURRENCY  # goes into a number format

    wb = xlsxwriter.Workbook(str(path), {"strings_to_numbers": False, "strings_to_formulas": False,
                                         "strings_to_urls": False})
    try:
        wb.set_properties({"title": f"Sales sheet{f' - {team}' if team else ''}", "created": CREATED,
                           "comments": "salessheet standard workbook"})
        fmt = _Formats(wb, currency)
        sheets = {name: wb.add_worksheet(name) for name in SHEET_ORDER}
        _define_lists(wb)
        for name in schema.TABLE_ORDER:
            _write_table(sheets[name], schema.TABLES[name], rows[name], fmt)
        _write_howto(sheets[HOWTO_SHEET], fmt, team)
        _write_dashboard(sheets[DASHBOARD_SHEET], fmt)
        sheets["Deals"].activate()
    finally:
        wb.close()
    return path


# --- tables -------------------------------------------------------------------------------------


class _Formats:
    def __init__(self, wb, currency: str):
        self.wb = wb
        self.money = wb.add_format({"num_format": money_format(currency)})
        self.kind = {k: wb.add_format({"num_format": f}) for k, f in _NUM_FORMATS.items()}
        self.kind["money"] = self.money
        self.title = wb.add_format({"bold": True, "font_size": 16})
        self.h2 = wb.add_format({"bold": True, "font_size": 12, "top": 1})
        self.bold = wb.add_format({"bold": True, "text_wrap": True, "valign": "top"})
        self.wrap = wb.add_format({"text_wrap": True, "valign": "top"})
        self.head = wb.add_format({"bold": True, "bottom": 1})
        self.pct = wb.add_format({"num_format": "0.0%"})
        self.days = wb.add_format({"num_format": "0.0"})
        self.count = wb.add_format({"num_format": "0"})

    def column(self, col: schema.Column | None):
        return None if col is None else self.kind.get(col.kind)


def _records(data) -> list[dict]:
    if data is None:
        return []
    if hasattr(data, "to_dict"):  # DataFrame
        data = data.to_dict("records")
    return [{str(k): v for k, v in dict(r).items()} for r in data]


def _filled(v) -> bool:
    if v is None:
        return False
    if isinstance(v, float) and math.isnan(v):
        return False
    if v.__class__.__name__ in ("NaTType", "NAType"):
        return False
    return not (isinstance(v, str) and not v.strip())


def _default_lists(team, owners, teams) -> list[dict]:
    team_list = list(teams) if teams else ([team] if team else list(EXAMPLE_TEAMS))
    if team and team not in team_list:
        team_list.insert(0, team)
    cols = {"Team": team_list, "Owner": list(owners) if owners else list(EXAMPLE_OWNERS),
            "Lead Source": list(schema.DEFAULT_LEAD_SOURCES), "Currency": [schema.DEFAULT_CURRENCY]}
    n = max(len(v) for v in cols.values())
    return [{k: (v[i] if i < len(v) else None) for k, v in cols.items()} for i in range(n)]


def _define_lists(wb) -> None:
    """One defined name per dropdown source: exactly the filled cells of that column (see module doc)."""
    for source, name in LIST_NAMES.items():
        table = schema.STAGES if source == "Stage" else schema.LISTS
        col = xl_col_to_name(table.names.index(source))
        sheet = _quote_sheet(table.name)
        wb.define_name(name, f"=OFFSET({sheet}!${col}$2,0,0,MAX(1,COUNTA({sheet}!${col}:${col})-1),1)")


def _quote_sheet(name: str) -> str:
    return name if name.replace("_", "").isalnum() else "'" + name.replace("'", "''") + "'"


def _write_table(ws, table: schema.Table, rows: list[dict], fmt: _Formats) -> None:
    extras = [k for r in rows for k in r if k not in table.names]
    headers = table.names + list(dict.fromkeys(extras))
    lookup = table.name in LOOKUP_TABLES
    n = max(len(rows), LOOKUP_ROWS if lookup else DATA_ROWS)
    for c, h in enumerate(headers):
        col = table.column(h) if h in table.names else None
        ws.set_column(c, c, col.width if col else 14, fmt.column(col))
    for r, rec in enumerate(rows, start=1):
        for c, h in enumerate(headers):
            col = table.column(h) if h in table.names else None
            _write_value(ws, r, c, rec.get(h), fmt.column(col))
    ws.add_table(0, 0, n, len(headers) - 1, {
        "name": table.name, "style": "Table Style Light 9" if lookup else "Table Style Medium 2",
        "columns": [{"header": h} for h in headers]})
    ws.freeze_panes(1, 0)
    last = max(n, VALIDATION_ROWS)
    for c, col in enumerate(table.columns):
        rule = _validation(table, col, c, last)
        if rule:
            ws.data_validation(1, c, last, c, rule)


def _write_value(ws, r: int, c: int, v, cell_format) -> None:
    if not _filled(v):
        return
    if hasattr(v, "item") and not isinstance(v, (str, bytes)) and not hasattr(v, "to_pydatetime"):
        v = v.item()  # numpy scalar
    if hasattr(v, "to_pydatetime"):  # pandas Timestamp
        v = v.to_pydatetime()
    if isinstance(v, bool):
        ws.write_boolean(r, c, v, cell_format)
    elif isinstance(v, (int, float)):
        ws.write_number(r, c, v, cell_format)
    elif isinstance(v, dt.datetime):
        ws.write_datetime(r, c, v.replace(tzinfo=None), cell_format)
    elif isinstance(v, dt.date):
        ws.write_datetime(r, c, dt.datetime(v.year, v.month, v.day), cell_format)
    else:
        ws.write_string(r, c, str(v), cell_format)


_KIND_HELP = {
    "date": "A date, e.g. 2024-03-31.",
    "datetime": "A date and time, e.g. 2024-03-31 14:30.",
    "money": "An amount, 0 or more.",
    "number": "A number, 0 or more.",
    "percent": "A percentage from 0% to 100%.",
    "int": "A whole number, 0 or more.",
}
_KIND_ERROR = {
    "date": "Type a date, e.g. 2024-03-31.",
    "datetime": "Type a date, or a date and time, e.g. 2024-03-31 14:30.",
    "money": "Type an amount of 0 or more: digits only, no currency sign or text.",
    "number": "Type a number of 0 or more: digits only, no text.",
    "percent": "Type a percentage from 0% to 100%, e.g. 25%.",
    "int": "Type a whole number of 0 or more.",
}


def column_help(table: schema.Table, col: schema.Column) -> str:
    """What a rep reads when they click a cell of this column (the input message)."""
    if col.help:
        return col.help
    if col.name == table.key:
        return f"Each row needs its own {col.name}. Never reuse one."
    if col.choices:
        return "One of: " + ", ".join(col.choices) + "."
    return _KIND_HELP.get(col.kind, "")


def _validation(table: schema.Table, col: schema.Column, c: int, last_row: int) -> dict | None:
    """The data validation rule of one column, or None when it needs none."""
    rule: dict
    if col.dropdown:
        if col.dropdown == "Stage":
            err = "Pick a stage from the list. To add a stage, add a row on the Stages sheet."
        else:
            what = col.dropdown.lower()
            err = (f"Pick {'an' if what[0] in 'aeiou' else 'a'} {what} from the list. To add one, type it in the "
                   f"{col.dropdown} column of the Lists sheet.")
        rule = {"validate": "list", "source": "=" + LIST_NAMES[col.dropdown], "error_message": err}
    elif col.choices:
        rule = {"validate": "list", "source": list(col.choices),
                "error_message": f"Pick one of: {', '.join(col.choices)}."}
    elif col.kind in ("date", "datetime"):
        rule = {"validate": "date", "criteria": "between", "minimum": _DATE_MIN, "maximum": _DATE_MAX}
    elif col.kind in ("money", "number"):
        rule = {"validate": "decimal", "criteria": ">=", "value": 0}
    elif col.kind == "percent":
        rule = {"validate": "decimal", "criteria": "between", "minimum": 0, "maximum": 1}
    elif col.kind == "int":
        rule = {"validate": "integer", "criteria": ">=", "value": 0}
    elif col.name == table.key:  # unique per row
        letter = xl_col_to_name(c)
        rule = {"validate": "custom", "value": f"=COUNTIF(${letter}$2:${letter}${last_row + 1},{letter}2)=1",
                "error_message": f"This {col.name} is already used in another row. Each row needs its own."}
    elif column_help(table, col):
        rule = {"validate": "any"}  # no check, but the input message shows what goes here
    else:
        return None
    rule.setdefault("error_message", _KIND_ERROR.get(col.kind, ""))
    rule["input_title"] = col.name[:32]
    rule["input_message"] = column_help(table, col)[:255]
    if rule["validate"] != "any":
        rule["error_title"] = f"Check {col.name}"[:32]
        rule["error_type"] = "stop"
    else:
        rule.pop("error_message")
    return rule


# --- How to use ---------------------------------------------------------------------------------


def _write_howto(ws, fmt: _Formats, team: str | None) -> None:
    ws.set_column(0, 0, 24)
    ws.set_column(1, 1, 11)
    ws.set_column(2, 2, 90)
    ws.hide_gridlines(2)
    stages = schema.DEFAULT_STAGES
    open_names = " > ".join(s.name for s in stages if not s.is_closed)
    won = ", ".join(s.name for s in stages if s.is_won)
    lost = ", ".join(s.name for s in stages if s.is_closed and not s.is_won)
    r = 0

    def line(text, style=None):
        nonlocal r
        if style is None:  # prose: wrapped across the three columns, rows tall enough for it
            ws.merge_range(r, 0, r, 2, text, fmt.wrap)
            ws.set_row(r, 15 * math.ceil(len(text) / 115))
        else:
            ws.write(r, 0, text, style)
        r += 1

    line(f"How to use this sales sheet{f' ({team})' if team else ''}", fmt.title)
    line("This workbook is where you keep your deals. Your manager combines everyone's sheets into one "
         "report, so please type in the tables and keep the layout as it is.")
    r += 1
    line("Where to type", fmt.h2)
    for name in DATA_TABLES:
        line(f"{name} sheet: {schema.TABLES[name].about} Type in the first empty row of the table.")
    line("Stages sheet: the steps a deal goes through, each with its usual chance of winning. "
         "Lists sheet: the teams, reps and lead sources the dropdown menus offer. "
         "Add a rep, team or lead source there and it appears in the menus.")
    line("Click a cell and a note tells you what goes there. Columns with an arrow have a menu: pick from it. "
         "Type dates like 2024-03-31, amounts as plain numbers (no currency sign), percentages like 25%. "
         "If you type something the sheet cannot use, it tells you why and lets you try again.")
    line(f"Each table has room for at least {DATA_ROWS} rows. In Excel, typing just below a table makes it grow. "
         "In LibreOffice, insert rows inside the table (right-click a row number > Insert Rows Above) so the "
         "Dashboard counts them.")
    r += 1
    line("How a deal moves and closes", fmt.h2)
    line(f"Move the Stage along as the deal progresses: {open_names}. "
         f"When it ends, set the Stage to {won} (won) or {lost} (lost), and fill in Closed Date "
         "(and Lost Reason when lost).")
    line("What counts as won or lost comes from the Stages sheet: a stage with Is Closed = TRUE has ended; "
         "with Is Won = TRUE too, it is a win. Probability blank = the stage's usual chance from the Stages sheet.")
    r += 1
    line("Please don't", fmt.h2)
    line("Don't rename, move or delete the column headers, the sheets or the tables: the Dashboard and your "
         "manager's report find your data by those names. Extra columns are fine: add them at the right-hand "
         "end of a table.")
    r += 1
    line("Dashboard", fmt.h2)
    line("The Dashboard sheet works out revenue, win rate, pipeline and more from your rows. It updates by "
         "itself; there is nothing to type there.")
    for name in DATA_TABLES:
        table = schema.TABLES[name]
        r += 1
        line(f"{name}: what each column means", fmt.h2)
        ws.write_row(r, 0, ["Column", "Required", "What to type"], fmt.head)
        r += 1
        for col in table.columns:
            ws.write(r, 0, col.name, fmt.bold)
            ws.write(r, 1, "yes" if col.required else "", fmt.wrap)
            ws.write(r, 2, column_help(table, col) or "Free text.", fmt.wrap)
            r += 1




# --- Dashboard ----------------------------------------------------------------------------------


def _ref(table: str, column: str) -> str:
    """A structured reference, escaping the characters Excel requires ('#[]) with an apostrophe."""
    esc = "".join("'" + ch if ch in "'#[]" else ch for ch in column)
    return f"{table}[{esc}]"


def _is(flag: str) -> str:
    """1/0 per Deals row: its Stage is a Stages row with `flag` (Is Won / Is Closed) TRUE."""
    d_stage = _ref("Deals", "Stage")
    return (f'({d_stage}<>"")*(COUNTIFS({_ref("Stages", "Stage")},{d_stage},'
            f'{_ref("Stages", flag)},TRUE)>0)')


def dashboard_formulas() -> dict[str, tuple[str, str, str, str]]:
    """key -> (label, formula, number format kind, explanation); formulas reference count cells by address."""
    D = lambda c: _ref("Deals", c)  # noqa: E731
    won, closed = _is("Is Won"), _is("Is Closed")
    lost = f"{closed}*(1-{won})"
    cnt = DASHBOARD_COUNT_CELLS
    kp = DASHBOARD_CELLS
    cycle_rows = f'{won}*({D("Closed Date")}<>"")*({D("Created Date")}<>"")'
    stage_prob = f'SUMIFS({_ref("Stages", "Probability")},{_ref("Stages", "Stage")},{D("Stage")})'
    prob = f'{D("Probability")}+({D("Probability")}="")*{stage_prob}'
    any_lead = "+".join(f'({_ref("Leads", c)}<>"")' for c in schema.LEADS.names)
    # Distinct accounts among won deals: each won row's account position (MATCH) binned by FREQUENCY.
    acc = D("Account")
    # FREQUENCY of no numbers is an error in LibreOffice, hence the guard on the won count.
    new_customers = (f'IF({cnt["deals_won"]}=0,0,SUM(--(FREQUENCY(IF(({won})*({acc}<>""),MATCH({acc},{acc},0)),'
                     f'ROW({acc})-MIN(ROW({acc}))+1)>0)))')
    return {
        "revenue": ("Revenue", f"SUMPRODUCT({won},{D('Amount')})", "money",
                    "Sum of Amount of won deals."),
        "sales_volume": ("Sales volume", f'SUMPRODUCT({won},{D("Units")}+({D("Units")}=""))', "number",
                         "Sum of Units of won deals; a blank Units counts as 1."),
        "win_rate": ("Win rate", f'IF({cnt["deals_won"]}+{cnt["deals_lost"]}=0,"",'
                     f'{cnt["deals_won"]}/({cnt["deals_won"]}+{cnt["deals_lost"]}))', "percent",
                     "Won deals / (won + lost deals). Open deals do not count."),
        "avg_deal_size": ("Average deal size", f'IF({cnt["deals_won"]}=0,"",{kp["revenue"]}/{cnt["deals_won"]})',
                          "money", "Revenue / number of won deals."),
        "sales_cycle_days": ("Sales cycle (days)",
                             f'IF(SUMPRODUCT({cycle_rows})=0,"",SUMPRODUCT({cycle_rows},'
                             f'{D("Closed Date")}-{D("Created Date")})/SUMPRODUCT({cycle_rows}))', "days",
                             "Average days from Created Date to Closed Date over won deals with both dates."),
        "conversion_rate": ("Lead conversion rate", f'IF({cnt["leads"]}=0,"",{cnt["leads_converted"]}/{cnt["leads"]})',
                            "percent", f"Leads with Status {schema.CONVERTED_STATUS} / all leads."),
        "cac": ("Customer acquisition cost", f'IF({cnt["new_customers"]}=0,"",{cnt["costs"]}/{cnt["new_customers"]})',
                "money", "All Costs / number of different accounts with a won deal."),
        "pipeline": ("Pipeline", f"SUMPRODUCT(1-{won}-{lost},{D('Amount')})", "money",
                     "Sum of Amount of open deals (neither won nor lost)."),
        "weighted_pipeline": ("Weighted pipeline", f"SUMPRODUCT(1-{won}-{lost},{D('Amount')},{prob})", "money",
                              "Open deals' Amount x Probability; a blank Probability uses the stage's from "
                              "the Stages sheet."),
        "deals_won": ("Deals won", f"SUMPRODUCT({won})", "count", "Deals whose stage has Is Won = TRUE."),
        "deals_lost": ("Deals lost", f"SUMPRODUCT({lost})", "count",
                       "Deals whose stage has Is Closed = TRUE and Is Won = FALSE."),
        "leads": ("Leads", f"SUMPRODUCT(--({any_lead}>0))", "count", "Rows in the Leads table."),
        "leads_converted": ("Leads converted", f'COUNTIFS({_ref("Leads", "Status")},"{schema.CONVERTED_STATUS}")',
                            "count", f"Leads with Status {schema.CONVERTED_STATUS}."),
        "new_customers": ("Customers won", new_customers, "count",
                          "Different accounts with at least one won deal (array formula)."),
        "costs": ("Costs", f'SUM({_ref("Costs", "Amount")})', "money", "Sum of Amount on the Costs sheet."),
    }


def _write_dashboard(ws, fmt: _Formats) -> None:
    ws.set_column(0, 0, 28)
    ws.set_column(1, 1, 18)
    ws.set_column(2, 2, 70, fmt.wrap)
    ws.write(0, 0, "Sales dashboard", fmt.title)
    ws.write(1, 0, "Worked out from the Deals, Leads, Costs and Stages sheets, all time. Nothing to type here.")
    ws.write_row(2, 0, ["KPI", "Value", "How it is worked out"], fmt.head)
    ws.write_row(13, 0, ["Counts behind the KPIs", "", ""], fmt.head)
    styles = {"money": fmt.money, "percent": fmt.pct, "days": fmt.days, "count": fmt.count, "number": None}
    formulas = dashboard_formulas()
    for key, cell in {**DASHBOARD_CELLS, **DASHBOARD_COUNT_CELLS}.items():
        label, formula, kind, note = formulas[key]
        row, _ = xl_cell_to_rowcol(cell)
        ws.write(row, 0, label, fmt.bold)
        if key == "new_customers":
            ws.write_array_formula(cell + ":" + cell, "{=" + formula + "}", styles[kind])
        else:
            ws.write_formula(cell, "=" + formula, styles[kind])
        ws.write(row, 2, note)
    _write_function_block(ws, fmt, styles)


def _write_function_block(ws, fmt: _Formats, styles: dict) -> None:
    from .kpi import FUNCTION_NAMES

    kinds = {"win_rate": "percent", "conversion_rate": "percent", "quota_attainment": "percent",
             "sales_cycle_days": "days", "sales_volume": "number", "sales_velocity": "money"}
    ws.set_column(4, 4, 24)
    ws.set_column(5, 5, 16)
    ws.write_row(2, 4, ["With salessheet functions", "Value"], fmt.head)
    for key, cell in FUNCTION_CELLS.items():
        row, col = xl_cell_to_rowcol(cell)
        name = FUNCTION_NAMES[key]
        ws.write(row, col - 1, f"={name}()")
        ws.write_formula(cell, f"={name}()", styles[kinds.get(key, "money")])
    r0, c0 = xl_cell_to_rowcol(KPITABLE_CELL)
    ws.write(r0 - 1, c0, 'Every KPI per owner: =KPITABLE(,"owner") (array formula)', fmt.bold)
    ws.write_array_formula(r0, c0, r0 + KPITABLE_ROWS - 1, c0 + len(FUNCTION_NAMES), '{=KPITABLE(,"owner")}')


if __name__ == "__main__":
    print(update_committed_template())
