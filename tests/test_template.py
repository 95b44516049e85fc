"""The standard workbook: structure (openpyxl), and what LibreOffice makes of it (headless, real soffice)."""
from __future__ import annotations

import datetime as dt
import zipfile

import openpyxl
import pytest
import xlsxwriter
from openpyxl.utils import get_column_letter

from libreoffice import inspect, sheets_as_csv
from salessheet import ValidationError, schema, template
from salessheet.template import DASHBOARD_CELLS, DASHBOARD_COUNT_CELLS, write_template, write_workbook

D = dt.datetime
ALL_DASHBOARD = {**DASHBOARD_CELLS, **DASHBOARD_COUNT_CELLS}


def cell(table: str, column: str, row: int) -> str:
    """Address of a standard column's cell, e.g. cell("Deals", "Stage", 2) -> "G2"."""
    return f"{get_column_letter(schema.TABLES[table].names.index(column) + 1)}{row}"


@pytest.fixture(scope="module")
def template_path(tmp_path_factory):
    return write_template(tmp_path_factory.mktemp("tpl") / "salessheet.xlsx")


@pytest.fixture(scope="module")
def xl(template_path):
    return openpyxl.load_workbook(template_path)


# --- structure, no LibreOffice ------------------------------------------------------------------


def test_sheet_order_and_active_sheet(xl):
    assert xl.sheetnames == ["How to use", "Deals", "Leads", "Costs", "Targets", "Dashboard", "Stages", "Lists"]
    assert xl.active.title == "Deals"


@pytest.mark.parametrize("name", schema.TABLE_ORDER)
def test_each_table_is_an_excel_table_with_frozen_header(xl, name):
    ws = xl[name]
    assert list(ws.tables) == [name]
    t = ws.tables[name]
    assert [c.name for c in t.tableColumns] == schema.TABLES[name].names
    first, last = t.ref.split(":")
    assert first == "A1"
    min_rows = template.LOOKUP_ROWS if name in ("Stages", "Lists") else template.DATA_ROWS
    assert int("".join(ch for ch in last if ch.isdigit())) == 1 + min_rows
    assert ws.freeze_panes == "A2"
    widths = {i: d.width for d in ws.column_dimensions.values() for i in range(d.min, d.max + 1)}
    for i, col in enumerate(schema.TABLES[name].columns, start=1):
        assert round(widths[i]) == col.width + 1, col.name  # xlsxwriter pads the width by ~0.7


def test_number_formats(xl):
    def fmt(table, column):
        i = schema.TABLES[table].names.index(column) + 1
        return next(d.number_format for d in xl[table].column_dimensions.values() if d.min <= i <= d.max)

    assert "#,##0.00" in fmt("Deals", "Amount") and "USD" in fmt("Deals", "Amount")
    assert fmt("Deals", "Created Date") == "yyyy-mm-dd"
    assert fmt("Deals", "Last Updated") == "yyyy-mm-dd hh:mm"
    assert fmt("Deals", "Probability") == "0%"
    assert fmt("Stages", "Probability") == "0%"
    assert fmt("Costs", "Month") == "yyyy-mm-dd"
    assert fmt("Targets", "Quota") == fmt("Deals", "Amount")


def test_validations_have_input_and_error_messages(xl):
    for name in schema.TABLE_ORDER:
        table = schema.TABLES[name]
        dvs = {str(dv.sqref): dv for dv in xl[name].data_validations.dataValidation}
        for col in table.columns:
            letter = cell(name, col.name, 1)[:-1]
            dv = dvs.get(f"{letter}2:{letter}{template.VALIDATION_ROWS + 1}")
            checked = bool(col.dropdown or col.choices or col.name == table.key) or col.kind in (
                "date", "datetime", "money", "number", "percent", "int")
            if not checked and not col.help:
                assert dv is None, (name, col.name)
                continue
            assert dv is not None, (name, col.name)
            assert dv.promptTitle == col.name and dv.prompt and dv.showInputMessage, (name, col.name)
            if col.help:
                assert dv.prompt == col.help
            if checked:
                assert dv.error and dv.errorTitle and dv.showErrorMessage and dv.errorStyle in (None, "stop")
            if col.dropdown:
                assert dv.type == "list" and dv.formula1 == template.LIST_NAMES[col.dropdown]
            if col.choices:
                assert dv.type == "list" and dv.formula1 == '"' + ",".join(col.choices) + '"'


def test_dashboard_layout(xl):
    ws = xl["Dashboard"]
    # Columns A-C: native formulas; E-F: the same KPIs as salessheet functions; H on: KPITABLE.
    from salessheet.kpi import FUNCTION_NAMES
    from salessheet.template import FUNCTION_CELLS, KPITABLE_CELL

    assert all(ws.cell(r, 4).value is None for r in range(1, ws.max_row + 1))
    for key, addr in FUNCTION_CELLS.items():
        assert ws[addr].value == f"={FUNCTION_NAMES[key]}()", key
    assert set(FUNCTION_CELLS) == set(FUNCTION_NAMES)
    kt = ws[KPITABLE_CELL].value
    assert 'KPITABLE(,"owner")' in (kt.text if hasattr(kt, "text") else kt)
    for key, addr in ALL_DASHBOARD.items():
        row = int(addr[1:])
        assert ws[f"A{row}"].value, key
        formula = ws[addr].value
        text = formula.text if hasattr(formula, "text") else formula
        assert isinstance(text, str) and text.startswith("="), (key, text)
    # won/lost come from the Stages table, never from stage names
    for key in ("revenue", "pipeline", "weighted_pipeline"):
        text = ws[DASHBOARD_CELLS[key]].value
        assert "Stages[Is Won]" in text
        assert not any(s.name in text for s in schema.DEFAULT_STAGES)


def test_howto_explains_every_column(xl):
    text = "\n".join(str(c.value) for row in xl["How to use"].iter_rows() for c in row if c.value)
    for name in template.DATA_TABLES:
        for col in schema.TABLES[name].columns:
            assert col.name in text
            if col.help:
                assert col.help in text
    assert "rename" in text and schema.WON_STAGE in text and "Is Won" in text


def test_output_is_deterministic(tmp_path):
    a, b = write_template(tmp_path / "a.xlsx", team="North"), write_template(tmp_path / "b.xlsx", team="North")
    assert a.read_bytes() == b.read_bytes()
    assert write_template(tmp_path / "c.xlsx", team="South").read_bytes() != a.read_bytes()


def test_committed_template_is_current(tmp_path):
    fresh = write_template(tmp_path / "salessheet.xlsx")
    assert template.TEMPLATE_PATH.exists(), "templates/salessheet.xlsx is missing: run python -m salessheet.template"
    with zipfile.ZipFile(template.TEMPLATE_PATH) as old, zipfile.ZipFile(fresh) as new:
        assert sorted(old.namelist()) == sorted(new.namelist()), "run python -m salessheet.template"
        stale = [n for n in new.namelist() if old.read(n) != new.read(n)]
    assert not stale, f"templates/salessheet.xlsx is out of date ({stale}): run python -m salessheet.template"


def test_write_workbook_lists_and_values(tmp_path):
    path = write_workbook(tmp_path / "w.xlsx", team="East", owners=["Ann", "Bo"],
                          tables={"Deals": [{"Deal ID": "D1", "Amount": 12.5, "Created Date": dt.date(2024, 2, 3),
                                             "Stage": "Proposal", "Units": float("nan"), "Extra": "kept"}]})
    wb = openpyxl.load_workbook(path)
    lists = [[c.value for c in r] for r in wb["Lists"].iter_rows(min_row=2, max_row=3)]
    assert lists[0][:2] == ["East", "Ann"] and lists[1][:2] == [None, "Bo"]
    ws = wb["Deals"]
    assert ws.tables["Deals"].tableColumns[-1].name == "Extra"
    assert ws[cell("Deals", "Amount", 2)].value == 12.5
    assert ws[cell("Deals", "Created Date", 2)].value == D(2024, 2, 3)
    assert ws[cell("Deals", "Created Date", 2)].number_format == "yyyy-mm-dd"
    assert ws[cell("Deals", "Units", 2)].value is None
    with pytest.raises(ValidationError):
        write_workbook(tmp_path / "x.xlsx", tables={"Nope": []})


# --- LibreOffice --------------------------------------------------------------------------------

PROBES = {  # (table, column, typed text, accepted?)
    "stage ok": ("Deals", "Stage", schema.WON_STAGE, True),
    "stage unknown": ("Deals", "Stage", "Won-ish", False),
    "owner ok": ("Deals", "Owner", template.EXAMPLE_OWNERS[0], True),
    "owner unknown": ("Deals", "Owner", "Somebody Else", False),
    "date ok": ("Deals", "Created Date", "2024-03-31", True),
    "date text": ("Deals", "Created Date", "next week", False),
    "datetime ok": ("Deals", "Last Updated", "2024-03-31 14:30", True),
    "amount ok": ("Deals", "Amount", "1200.50", True),
    "amount negative": ("Deals", "Amount", "-5", False),
    "amount text": ("Deals", "Amount", "about 5k", False),
    "probability ok": ("Deals", "Probability", "25%", True),
    "probability > 100%": ("Deals", "Probability", "150%", False),
    "status ok": ("Leads", "Status", schema.CONVERTED_STATUS, True),
    "status unknown": ("Leads", "Status", "Maybe", False),
    "category unknown": ("Costs", "Category", "Travel", False),
    "order fraction": ("Stages", "Order", "1.5", False),
}


def _probe_request(probes: dict) -> dict:
    req: dict[str, dict[str, str]] = {}
    for i, (table, column, text, _) in enumerate(probes.values()):
        req.setdefault(table, {})[cell(table, column, 30 + i)] = text
    return req


@pytest.fixture(scope="module")
def lo_template(soffice_uno, template_path):
    return inspect(template_path, cells={"Dashboard": list(ALL_DASHBOARD.values())}, probe=_probe_request(PROBES))


@pytest.fixture(scope="module")
def csv_template(soffice, template_path, tmp_path_factory):
    return sheets_as_csv(template_path, tmp_path_factory.mktemp("csv"))


def test_lo_every_sheet_converts_with_standard_headers(csv_template):
    assert list(csv_template) == list(template.SHEET_ORDER)
    for name in schema.TABLE_ORDER:
        assert csv_template[name][0] == schema.TABLES[name].names, name
    assert csv_template["How to use"][0][0].startswith("How to use")


def test_lo_stages_and_lists_rows(csv_template):
    stages = csv_template["Stages"][1:]
    assert [r[0] for r in stages] == [s.name for s in schema.DEFAULT_STAGES]
    for row, s in zip(stages, schema.DEFAULT_STAGES):
        assert row[1:] == [str(s.order), f"{round(s.probability * 100)}%", str(s.is_closed).upper(),
                           str(s.is_won).upper()]
    lists = csv_template["Lists"]
    column = {h: [r[i] for r in lists[1:] if r[i]] for i, h in enumerate(lists[0])}
    assert column["Team"] == list(template.EXAMPLE_TEAMS)
    assert column["Owner"] == list(template.EXAMPLE_OWNERS)
    assert column["Lead Source"] == list(schema.DEFAULT_LEAD_SOURCES)
    assert column["Currency"] == [schema.DEFAULT_CURRENCY]


def test_lo_tables_become_database_ranges(lo_template):
    assert lo_template["sheets"] == list(template.SHEET_ORDER)
    for name in schema.TABLE_ORDER:
        last = get_column_letter(len(schema.TABLES[name].names))
        rows = template.LOOKUP_ROWS if name in ("Stages", "Lists") else template.DATA_ROWS
        assert lo_template["database_ranges"][name] == f"{name}!A1:{last}{rows + 1}"


def test_lo_dropdowns_resolve_to_the_lists(lo_template):
    v = lo_template["validation"]
    assert v["Deals"]["Stage"]["entries"] == [s.name for s in schema.DEFAULT_STAGES]
    assert v["Deals"]["Owner"]["entries"] == list(template.EXAMPLE_OWNERS)
    assert v["Deals"]["Team"]["entries"] == list(template.EXAMPLE_TEAMS)
    assert v["Deals"]["Lead Source"]["entries"] == list(schema.DEFAULT_LEAD_SOURCES)
    assert v["Leads"]["Status"]["entries"] == list(schema.LEAD_STATUSES)
    assert v["Costs"]["Category"]["entries"] == list(schema.COST_CATEGORIES)
    for table, col in (("Deals", "Stage"), ("Leads", "Status"), ("Targets", "Owner")):
        info = v[table][col]
        assert info["type"] == "LIST" and info["show_error"] and info["error_style"] == "STOP"
        assert info["input_message"] and info["error_message"]


def test_lo_validation_types(lo_template):
    v = lo_template["validation"]
    assert v["Deals"]["Created Date"]["type"] == "DATE"
    assert v["Deals"]["Last Updated"]["type"] == "DATE"
    assert (v["Deals"]["Amount"]["type"], v["Deals"]["Amount"]["operator"]) == ("DECIMAL", "GREATER_EQUAL")
    assert (v["Deals"]["Probability"]["type"], v["Deals"]["Probability"]["formula2"]) == ("DECIMAL", "1")
    assert v["Stages"]["Order"]["type"] == "WHOLE"
    assert v["Deals"]["Deal ID"]["type"] == "CUSTOM"
    for table, cols in v.items():
        for col, info in cols.items():
            assert info["input_message"], (table, col)


@pytest.mark.parametrize("probe", list(PROBES))
def test_lo_accepts_and_rejects_typed_values(lo_template, probe):
    table, column, text, ok = PROBES[probe]
    addr = cell(table, column, 30 + list(PROBES).index(probe))
    assert lo_template["probe"][f"{table}!{addr}"]["valid"] is ok


def test_lo_dashboard_evaluates_on_empty_template(lo_template):
    for key, addr in ALL_DASHBOARD.items():
        c = lo_template["cells"][f"Dashboard!{addr}"]
        assert c["type"] == "FORMULA" and c["error"] == 0, (key, c)
        assert not c["string"].startswith(("Err:", "#")), (key, c)
    cells = {k: lo_template["cells"][f"Dashboard!{a}"] for k, a in ALL_DASHBOARD.items()}
    for key in ("revenue", "sales_volume", "pipeline", "weighted_pipeline", "deals_won", "leads", "costs"):
        assert cells[key]["value"] == 0, key
    for key in ("win_rate", "avg_deal_size", "sales_cycle_days", "conversion_rate", "cac"):
        assert cells[key]["string"] == "", key  # undefined (nothing closed yet), shown blank


# --- a workbook with data: Dashboard values against values worked out by hand -------------------

DEALS = [
    {"Deal ID": "D1", "Account": "Acme", "Owner": "Ann", "Stage": schema.WON_STAGE, "Amount": 100.0, "Units": 2.0,
     "Created Date": D(2024, 1, 1), "Closed Date": D(2024, 1, 11)},
    {"Deal ID": "D2", "Account": "Acme", "Owner": "Ann", "Stage": schema.WON_STAGE, "Amount": 50.0,
     "Created Date": D(2024, 1, 1), "Closed Date": D(2024, 1, 21)},
    {"Deal ID": "D3", "Account": "Beta", "Owner": "Bo", "Stage": "Won Big", "Amount": 25.0,
     "Created Date": D(2024, 2, 1), "Closed Date": D(2024, 2, 2)},
    {"Deal ID": "D4", "Account": "Gamma", "Owner": "Bo", "Stage": schema.LOST_STAGE, "Amount": 30.0},
    {"Deal ID": "D5", "Account": "Delta", "Owner": "Bo", "Stage": "Proposal", "Amount": 200.0, "Probability": 0.2},
    {"Deal ID": "D6", "Account": "Eps", "Owner": "Ann", "Stage": "Prospecting", "Amount": 1000.0},
    {"Deal ID": "D7", "Account": "Zeta", "Owner": "Ann", "Stage": "Negotiation", "Amount": 400.0},
]
# A team's own won stage: the Dashboard must follow Is Won, not the stage's name.
STAGES = [{"Stage": s.name, "Order": s.order, "Probability": s.probability, "Is Closed": s.is_closed,
           "Is Won": s.is_won} for s in schema.DEFAULT_STAGES] + [
    {"Stage": "Won Big", "Order": 7, "Probability": 1.0, "Is Closed": True, "Is Won": True}]
LEADS = [{"Lead ID": f"L{i}", "Status": s} for i, s in enumerate(["Converted", "New", "Working", "Converted"])]
COSTS = [{"Month": D(2024, 1, 1), "Category": "Sales", "Amount": 300.0},
         {"Month": D(2024, 2, 1), "Category": "Marketing", "Amount": 150.0}]


@pytest.fixture(scope="module")
def data_path(tmp_path_factory):
    return write_workbook(tmp_path_factory.mktemp("data") / "deals.xlsx", owners=["Ann", "Bo"], teams=["East"],
                          tables={"Deals": DEALS, "Stages": STAGES, "Leads": LEADS, "Costs": COSTS})


@pytest.fixture(scope="module")
def lo_data(soffice_uno, data_path):
    dup = {cell("Deals", "Deal ID", 20): "D1", cell("Deals", "Deal ID", 21): "D99",
           cell("Deals", "Stage", 20): "Won Big", cell("Deals", "Owner", 20): "Ann"}
    return inspect(data_path, cells={"Dashboard": list(ALL_DASHBOARD.values())}, probe={"Deals": dup})


def test_lo_dashboard_matches_hand_computed_kpis(lo_data):
    got = {k: lo_data["cells"][f"Dashboard!{a}"]["value"] for k, a in ALL_DASHBOARD.items()}
    # By hand: won = D1, D2, D3 (Won Big has Is Won); lost = D4; open = D5, D6, D7.
    assert got["revenue"] == pytest.approx(175.0)
    assert got["sales_volume"] == pytest.approx(2 + 1 + 1)
    assert got["win_rate"] == pytest.approx(3 / 4)
    assert got["avg_deal_size"] == pytest.approx(175.0 / 3)
    assert got["sales_cycle_days"] == pytest.approx((10 + 20 + 1) / 3)
    assert got["conversion_rate"] == pytest.approx(2 / 4)
    assert got["cac"] == pytest.approx(450.0 / 2)  # Acme and Beta
    assert got["pipeline"] == pytest.approx(1600.0)
    assert got["weighted_pipeline"] == pytest.approx(200 * 0.2 + 1000 * 0.10 + 400 * 0.75)


def test_lo_data_workbook_lists_and_unique_ids(lo_data):
    v = lo_data["validation"]["Deals"]
    assert v["Owner"]["entries"] == ["Ann", "Bo"]
    assert v["Team"]["entries"] == ["East"]
    assert v["Stage"]["entries"] == [s["Stage"] for s in STAGES]
    p = lo_data["probe"]
    assert p[f"Deals!{cell('Deals', 'Deal ID', 20)}"]["valid"] is False  # D1 is taken
    assert p[f"Deals!{cell('Deals', 'Deal ID', 21)}"]["valid"] is True
    assert p[f"Deals!{cell('Deals', 'Stage', 20)}"]["valid"] is True  # the team's own stage is in the menu
    assert p[f"Deals!{cell('Deals', 'Owner', 20)}"]["valid"] is True


def test_lo_dashboard_agrees_with_the_kpi_engine(lo_data, data_path):
    from salessheet import kpi, read_workbook

    book = read_workbook(data_path)
    for key, addr in DASHBOARD_CELLS.items():
        assert lo_data["cells"][f"Dashboard!{addr}"]["value"] == pytest.approx(kpi.KPIS[key](book)), key


def test_harness_recalc_switch(soffice, tmp_path):
    """sheets_as_csv(recalc=False) shows the values cached in the file, recalc=True LibreOffice's own."""
    path = tmp_path / "cached.xlsx"
    wb = xlsxwriter.Workbook(str(path))
    ws = wb.add_worksheet("Calc")
    ws.write_number("A1", 2)
    ws.write_formula("B1", "=A1*21", None, 7)  # a deliberately wrong cached value
    wb.close()
    assert sheets_as_csv(path, tmp_path, recalc=False)["Calc"] == [["2", "7"]]
    assert sheets_as_csv(path, tmp_path, recalc=True)["Calc"] == [["2", "42"]]
