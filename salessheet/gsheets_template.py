"""``salessheet new --google``: the standard workbook created as a new Google Sheet, with the same tabs,
headers, dropdowns and checks, number formats, protected headers and Dashboard as the xlsx template.

Separate because it shares nothing with syncing: one Drive create and one batchUpdate.
"""
from __future__ import annotations

from . import schema
from .gsheets import GoogleClient, default_client, quote_sheet, spreadsheet_url
from .gsheets_cells import Grid, _format_requests, dashboard_grid

def _value(v) -> dict:
    if isinstance(v, bool):
        return {"boolValue": v}
    if isinstance(v, (int, float)):
        return {"numberValue": v}
    if isinstance(v, str) and v.startswith("="):
        return {"formulaValue": v}
    return {"stringValue": str(v)}


def _update_cells(sid: int, rows: list[list]) -> dict:
    """One updateCells writing `rows` from A1 (text as text; only "=..." strings are formulas)."""
    return {"updateCells": {
        "start": {"sheetId": sid, "rowIndex": 0, "columnIndex": 0},
        "rows": [{"values": [{"userEnteredValue": _value(v)} if v not in ("", None) else {} for v in r]}
                 for r in rows],
        "fields": "userEnteredValue"}}


def _validation_rule(table: schema.Table, col: schema.Column, j: int) -> dict | None:
    """The Google form of the template's data validation for one column (see template._validation)."""
    from . import template
    from .reader import column_letter

    if col.dropdown:
        src = schema.STAGES if col.dropdown == "Stage" else schema.LISTS
        L = column_letter(src.names.index(col.dropdown))
        cond = {"type": "ONE_OF_RANGE", "values": [{"userEnteredValue": f"={quote_sheet(src.name)}!${L}$2:${L}"}]}
    elif col.choices:
        cond = {"type": "ONE_OF_LIST", "values": [{"userEnteredValue": c} for c in col.choices]}
    elif col.kind in ("date", "datetime"):
        cond = {"type": "DATE_IS_VALID"}
    elif col.kind in ("money", "number"):
        cond = {"type": "NUMBER_GREATER_THAN_EQ", "values": [{"userEnteredValue": "0"}]}
    elif col.kind == "percent":
        cond = {"type": "NUMBER_BETWEEN", "values": [{"userEnteredValue": "0"}, {"userEnteredValue": "1"}]}
    elif col.kind == "int":
        L = column_letter(j)
        cond = {"type": "CUSTOM_FORMULA", "values": [{"userEnteredValue": f"=AND(ISNUMBER({L}2),{L}2>=0,INT({L}2)={L}2)"}]}
    elif col.name == table.key:
        L = column_letter(j)
        cond = {"type": "CUSTOM_FORMULA", "values": [{"userEnteredValue": f"=COUNTIF(${L}$2:${L},{L}2)<=1"}]}
    else:
        return None
    rule = {"condition": cond, "strict": True, "showCustomUi": cond["type"].startswith("ONE_OF")}
    help_text = template.column_help(table, col)
    if help_text:
        rule["inputMessage"] = help_text[:255]
    return rule


def _howto_rows(team: str | None) -> list[list]:
    stages = schema.DEFAULT_STAGES
    won = ", ".join(s.name for s in stages if s.is_won)
    lost = ", ".join(s.name for s in stages if s.is_closed and not s.is_won)
    rows = [[f"How to use this sales sheet{f' ({team})' if team else ''}"],
            ["Keep your deals here. Your manager combines everyone's sheets into one report: type in the tabs and "
             "keep the layout as it is."], [""]]
    rows += [[f"{name} tab: {schema.TABLES[name].about} Type in the first empty row."]
             for name in ("Deals", "Leads", "Costs", "Targets")]
    rows += [["Stages tab: the steps a deal goes through. Lists tab: the teams, reps and lead sources the dropdowns "
              "offer; add one there and it appears in the menus."],
             [f"Move the Stage along as the deal progresses; when it ends set it to {won} or {lost} and fill in "
              "Closed Date."],
             ["Don't rename, move or delete the header row or the tabs: sync and the Dashboard find your data by "
              "those names. Extra columns are fine at the right-hand end."],
             ["The Dashboard tab works out revenue, win rate, pipeline and more by itself."]]
    return rows


def template_requests(team: str | None = None, remove: list[int] = ()) -> list[dict]:
    """Every request that turns a new spreadsheet into the standard workbook (one batchUpdate)."""
    from . import template
    from .reader import column_letter

    order = template.SHEET_ORDER
    first = max([100, *remove]) + 1  # ids of our own, clear of the tabs being removed
    ids = {name: first + i for i, name in enumerate(order)}
    lists = template._default_lists(team, None, None)
    content = {
        "Stages": [schema.STAGES.names] + [[s.name, s.order, s.probability, s.is_closed, s.is_won]
                                           for s in schema.DEFAULT_STAGES],
        "Lists": [schema.LISTS.names] + [[r.get(c) or "" for c in schema.LISTS.names] for r in lists],
    }
    for name in template.DATA_TABLES:
        content[name] = [schema.TABLES[name].names]
    columns = {n: schema.TABLES[n].names for n in schema.TABLES}
    reqs: list[dict] = []
    for i, name in enumerate(order):
        table = schema.TABLES.get(name)
        n_rows = (template.VALIDATION_ROWS + 1 if name in template.DATA_TABLES
                  else 100 if table is not None else 40)
        n_cols = len(table.names) + 4 if table is not None else 6
        grid = {"rowCount": n_rows, "columnCount": n_cols}
        if table is not None:
            grid["frozenRowCount"] = 1
        reqs.append({"addSheet": {"properties": {"sheetId": ids[name], "title": name, "index": i,
                                                 "sheetType": "GRID", "gridProperties": grid}}})
    reqs += [{"deleteSheet": {"sheetId": sid}} for sid in remove]
    for name in order:
        sid, table = ids[name], schema.TABLES.get(name)
        if table is None:
            g = dashboard_grid(columns) if name == template.DASHBOARD_SHEET else Grid(_howto_rows(team), [None])
            reqs.append(_update_cells(sid, g.rows))
            reqs += _format_requests(sid, g, len(g.rows)) if g.formulas else []
            widths = (28, 18, 70) if g.formulas else (120,)
            reqs += [_width(sid, j, w) for j, w in enumerate(widths)]
            reqs.append({"addProtectedRange": {"protectedRange": {
                "range": {"sheetId": sid}, "warningOnly": True,
                "description": f"{name}: written by salessheet"}}})
            continue
        reqs.append(_update_cells(sid, content[name]))
        last = template.VALIDATION_ROWS + 1 if name in template.DATA_TABLES else 100
        g = Grid(content[name], [c.kind for c in table.columns])
        reqs += _format_requests(sid, g, last)
        for j, col in enumerate(table.columns):
            reqs.append(_width(sid, j, col.width))
            rule = _validation_rule(table, col, j)
            if rule is not None:
                reqs.append({"setDataValidation": {"range": {
                    "sheetId": sid, "startRowIndex": 1, "endRowIndex": last, "startColumnIndex": j,
                    "endColumnIndex": j + 1}, "rule": rule}})
        reqs.append({"addProtectedRange": {"protectedRange": {
            "range": {"sheetId": sid, "startRowIndex": 0, "endRowIndex": 1, "startColumnIndex": 0,
                      "endColumnIndex": len(table.names)},
            "warningOnly": True,
            "description": f"{name} header: salessheet finds the columns by these names "
                           f"({column_letter(0)}1:{column_letter(len(table.names) - 1)}1)"}}})
    return reqs


def _width(sid: int, j: int, width: float) -> dict:
    return {"updateDimensionProperties": {
        "range": {"sheetId": sid, "dimension": "COLUMNS", "startIndex": j, "endIndex": j + 1},
        "properties": {"pixelSize": int(width * 7 + 12)}, "fields": "pixelSize"}}


def create_template(title: str | None = None, share=(), team: str | None = None,
                    client: GoogleClient | None = None) -> tuple[str, str]:
    """Create the standard workbook as a new Google Sheet; return (key, URL).

    Requests: one Drive create, one metadata read (the tab Google starts with, deleted), one batchUpdate
    with everything (tabs, headers, Stages and Lists, Dashboard formulas, frozen and warning-protected
    header rows, dropdowns and checks, number formats, widths), and one Drive permission per --share."""
    client = client or default_client()
    title = title or f"Sales sheet{f' - {team}' if team else ''}"
    key = client.create(title)
    meta = client.metadata(key)
    old = [s["properties"]["sheetId"] for s in meta.get("sheets", []) if "properties" in s]
    client.batch_update(key, template_requests(team, remove=old))
    for email in share:
        client.share(key, email, "writer")
    return key, spreadsheet_url(key)
