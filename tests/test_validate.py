"""Validation rules, each on a real workbook: severity, sheet row, column as written, a plain message."""
from __future__ import annotations

import datetime as dt
import re

import pytest

from salessheet import schema, validate
from salessheet.issues import ERROR, WARNING
from sheetmaker import deal, deals_rows, write_csv, write_xlsx

D = dt.date


def check(tmp_path, sheets, **kw):
    book = validate(write_xlsx(tmp_path / "v.xlsx", sheets, **kw))
    for i in book.issues:
        assert_plain(i.message)
    return book


def found(book, severity=None):
    return {(i.severity, i.sheet, i.row, i.column) for i in book.issues if severity in (None, i.severity)}


def assert_plain(msg: str):
    """A message a rep can read: no Python/pandas leftovers."""
    assert msg and msg == msg.strip()
    for junk in ("nan", "NaT", "None", "Timestamp", "np.", "datetime", "dtype", "<", "Traceback", "float64"):
        assert not re.search(rf"\b{re.escape(junk)}", msg), (junk, msg)


def test_a_clean_workbook_has_no_issues(tmp_path):
    rows = deals_rows(deal(), deal(Deal_ID="D-2", Stage="Closed Won", Closed_Date=D(2026, 2, 1)),
                      deal(Deal_ID="D-3", Stage="Closed Lost", Closed_Date=D(2026, 2, 1), Lost_Reason="Price"))
    assert check(tmp_path, {"Deals": rows}).issues == []


@pytest.mark.parametrize("column", schema.DEALS.required)
def test_required_fields(tmp_path, column):
    header = ["Opportunity ID" if c == "Deal ID" else c for c in schema.DEALS.names]
    blank = deal(Deal_ID="D-2")
    blank[column] = None
    rows = [header] + deals_rows(deal(), blank, deal(Deal_ID="D-3"))[1:]
    book = check(tmp_path, {"Deals": rows})
    written = "Opportunity ID" if column == "Deal ID" else column
    [i] = book.issues
    assert (i.severity, i.sheet, i.row, i.column, i.value) == (ERROR, "Deals", 3, written, None)
    assert column in i.message and "required" in i.message


def test_whitespace_only_is_blank(tmp_path):
    book = check(tmp_path, {"Deals": deals_rows(deal(Account="   "))})
    assert found(book) == {(ERROR, "Deals", 2, "Account")}


@pytest.mark.parametrize("column, cell", [
    ("Amount", "a lot"), ("Units", "some"), ("Probability", "likely"), ("Created Date", "last week"),
    ("Expected Close", "31/31/2026"), ("Last Updated", "yesterday"),
])
def test_types(tmp_path, column, cell):
    book = check(tmp_path, {"Deals": deals_rows(deal(), deal(Deal_ID="D-2", **{column.replace(" ", "_"): cell}))})
    [i] = [i for i in book.issues if i.column == column]
    assert (i.severity, i.row, i.value) == (ERROR, 3, cell)
    assert cell in i.message
    # An unreadable required value is reported once, as unreadable, not again as missing.
    assert len(book.issues) == 1


@pytest.mark.parametrize("table, column, good, bad", [
    ("Leads", "Status", "qualified", "Hot"), ("Costs", "Category", "MARKETING", "Travel"),
])
def test_allowed_values(tmp_path, table, column, good, bad):
    t = schema.TABLES[table]
    base = {"Lead ID": "L-1", "Created Date": D(2026, 1, 1), "Month": D(2026, 1, 1), "Amount": 10, "Status": "New",
            "Category": "Sales"}
    rows = [t.names] + [[{**base, column: v}.get(c) for c in t.names] for v in (good, bad)]
    if table == "Leads":
        rows[2][0] = "L-2"
    book = check(tmp_path, {table: rows, "Deals": deals_rows(deal())})
    [i] = book.issues
    assert (i.severity, i.sheet, i.row, i.column, i.value) == (ERROR, table, 3, column, bad)
    for choice in t.column(column).choices:
        assert choice in i.message


@pytest.mark.parametrize("stage", ["Closed Won", "won", "Closed Lost"])
def test_closed_date_required_for_closed_stages(tmp_path, stage):
    reason = "Price" if "Lost" in stage else None
    book = check(tmp_path, {"Deals": deals_rows(deal(Stage=stage, Lost_Reason=reason),
                                                deal(Deal_ID="D-2", Stage=stage, Lost_Reason=reason,
                                                     Closed_Date=D(2026, 3, 1)))})
    [i] = book.issues
    assert (i.severity, i.row, i.column) == (ERROR, 2, "Closed Date")
    assert "Closed Date" in i.message and "Closed" in i.message


def test_closed_date_required_for_a_custom_closed_stage(tmp_path):
    stages = [schema.STAGES.names, ["Open", 1, 0.5, False, False], ["Signed", 2, 1, True, True],
              ["Dropped", 3, 0, True, False]]
    book = check(tmp_path, {"Deals": deals_rows(deal(Stage="Signed"), deal(Deal_ID="D-2", Stage="Dropped")),
                            "Stages": stages})
    assert found(book) == {(ERROR, "Deals", 2, "Closed Date"), (ERROR, "Deals", 3, "Closed Date"),
                           (WARNING, "Deals", 3, "Lost Reason")}


def test_closed_date_not_before_created_date(tmp_path):
    rows = deals_rows(deal(Stage="won", Created_Date=D(2026, 3, 1), Closed_Date=D(2026, 2, 28)),
                      deal(Deal_ID="D-2", Stage="won", Created_Date=D(2026, 3, 1), Closed_Date=D(2026, 3, 1)))
    book = check(tmp_path, {"Deals": rows})
    [i] = book.issues
    assert (i.severity, i.row, i.column) == (ERROR, 2, "Closed Date")
    assert "2026-02-28" in i.message and "2026-03-01" in i.message and "before" in i.message


def test_closed_date_on_an_open_deal_is_a_warning(tmp_path):
    book = check(tmp_path, {"Deals": deals_rows(deal(Closed_Date=D(2026, 2, 1)))})
    assert found(book) == {(WARNING, "Deals", 2, "Closed Date")}


def test_lost_reason_expected_for_closed_lost(tmp_path):
    rows = deals_rows(deal(Stage="lost", Closed_Date=D(2026, 2, 1)),
                      deal(Deal_ID="D-2", Stage="Closed Lost", Closed_Date=D(2026, 2, 1), Lost_Reason="Budget"),
                      deal(Deal_ID="D-3", Stage="Closed Won", Closed_Date=D(2026, 2, 1)))
    book = check(tmp_path, {"Deals": rows})
    [i] = book.issues
    assert (i.severity, i.row, i.column) == (WARNING, 2, "Lost Reason")


@pytest.mark.parametrize("cell, ok", [(0, True), (1, True), (0.5, True), ("100%", True), (150, False),
                                      ("150%", False), (-0.2, False), ("-20%", False)])
def test_probability_in_range(tmp_path, cell, ok):
    book = check(tmp_path, {"Deals": deals_rows(deal(Probability=cell))})
    if ok:
        assert book.issues == []
    else:
        [i] = book.issues
        assert (i.severity, i.row, i.column, i.value) == (ERROR, 2, "Probability", cell)
        assert "0%" in i.message and "100%" in i.message


def test_duplicate_deal_ids_in_one_file(tmp_path):
    rows = deals_rows(deal(Deal_ID="D-1"), deal(Deal_ID="D-2"), deal(Deal_ID="D-1"), deal(Deal_ID=" D-1"),
                      deal(Deal_ID="d-2"))
    book = check(tmp_path, {"Deals": rows})
    assert found(book) == {(ERROR, "Deals", 4, "Deal ID"), (ERROR, "Deals", 5, "Deal ID")}
    for i in book.issues:
        assert "D-1" in i.message and "row 2" in i.message


def test_duplicate_ids_written_as_numbers_and_text(tmp_path):
    rows = deals_rows(deal(Deal_ID=1001), deal(Deal_ID="1001"))
    book = check(tmp_path, {"Deals": rows})
    assert found(book) == {(ERROR, "Deals", 3, "Deal ID")}


def test_same_id_in_two_files_is_not_a_duplicate(tmp_path):
    a = write_xlsx(tmp_path / "a.xlsx", {"Deals": deals_rows(deal())})
    b = write_csv(tmp_path / "b.csv", deals_rows(deal()))
    assert validate(a).issues == [] and validate(b).issues == []


def test_empty_rows_in_the_middle_one_issue_per_run(tmp_path):
    rows = deals_rows(deal(Deal_ID="D-1"), {}, deal(Deal_ID="D-2"), {}, {}, {}, deal(Deal_ID="D-3"), {}, {})
    book = check(tmp_path, {"Deals": rows})
    assert found(book) == {(WARNING, "Deals", 3, None), (WARNING, "Deals", 5, None)}
    run = next(i for i in book.issues if i.row == 5)
    assert "3 empty rows" in run.message and "5-7" in run.message
    assert book.tables["Deals"].index.tolist() == [2, 4, 8]  # trailing blank rows are not rows


def test_empty_rows_in_a_csv(tmp_path):
    path = write_csv(tmp_path / "e.csv", deals_rows(deal(), {}, {}, deal(Deal_ID="D-2")))
    book = validate(path)
    assert found(book) == {(WARNING, "e", 3, None)}


@pytest.mark.parametrize("column, cell", [("Amount", -5), ("Amount", "(500)"), ("Amount", "$-1,200.00"),
                                          ("Units", -1)])
def test_negative_amounts(tmp_path, column, cell):
    book = check(tmp_path, {"Deals": deals_rows(deal(**{column: cell}))})
    [i] = book.issues
    assert (i.severity, i.row, i.column, i.value) == (ERROR, 2, column, cell)
    assert "0 or more" in i.message


def test_negative_cost_and_quota(tmp_path):
    book = check(tmp_path, {
        "Deals": deals_rows(deal()),
        "Costs": [schema.COSTS.names, [D(2026, 1, 1), None, "Sales", -10, None]],
        "Targets": [schema.TARGETS.names, [D(2026, 1, 1), D(2025, 12, 1), "Ann", None, -1]],
    })
    assert found(book) == {(ERROR, "Costs", 2, "Amount"), (ERROR, "Targets", 2, "Quota"),
                           (ERROR, "Targets", 2, "Period End")}


def test_values_outside_the_lists_are_warnings(tmp_path):
    lists = [["Team", "Owner", "Lead Source", "Currency"], ["EMEA", "Ann", "Website", "EUR"],
             ["APAC", "Bob", None, None]]
    rows = deals_rows(deal(Owner="ann", Team="emea"), deal(Deal_ID="D-2", Owner="Zed", Lead_Source="Carrier pigeon"),
                      deal(Deal_ID="D-3", Team=None))
    leads = [schema.LEADS.names, ["L-1", D(2026, 1, 1), "Website", "Kim", "APAC", "New", None, None]]
    book = check(tmp_path, {"Deals": rows, "Leads": leads, "Lists": lists})
    assert found(book) == {(WARNING, "Deals", 3, "Owner"), (WARNING, "Deals", 3, "Lead Source"),
                           (WARNING, "Leads", 2, "Owner")}
    msg = next(i.message for i in book.issues if i.column == "Lead Source")
    assert "Lists" in msg and "Lead Source" in msg


def test_empty_lists_column_checks_nothing(tmp_path):
    book = check(tmp_path, {"Deals": deals_rows(deal(Owner="Anyone")), "Lists": [["Team", "Owner"], ["EMEA", None]]})
    assert book.issues == []


def test_columns_are_named_as_written_in_the_sheet(tmp_path):
    header = ["Opp ID", "Customer", "Sales Rep", "Deal Stage", "Deal Value", "Created On", "Close Date", "Win %"]
    rows = [header, ["D-1", "Acme", "Ann", "won", -3, "2026-01-05", None, 200],
            ["D-1", "Acme", "", "Proposal", 5, "2026-01-05", None, None]]
    book = check(tmp_path, {"Sheet1": rows})
    assert found(book) == {(ERROR, "Sheet1", 2, "Deal Value"), (ERROR, "Sheet1", 2, "Close Date"),
                           (ERROR, "Sheet1", 2, "Win %"), (ERROR, "Sheet1", 3, "Opp ID"),
                           (ERROR, "Sheet1", 3, "Sales Rep")}


def test_stages_table_rules(tmp_path):
    stages = [schema.STAGES.names, ["Open", 1, 0.5, False, False], ["Open", 2, 0.6, False, False],
              ["Won", 3, "120%", True, "maybe"], [None, 4, 0, True, False]]
    book = check(tmp_path, {"Deals": deals_rows(deal(Stage="Open")), "Stages": stages})
    assert found(book) == {(ERROR, "Stages", 3, "Stage"), (ERROR, "Stages", 4, "Probability"),
                           (ERROR, "Stages", 4, "Is Won"), (ERROR, "Stages", 5, "Stage")}


def test_issues_are_in_sheet_then_row_order(tmp_path):
    rows = deals_rows(deal(Amount=-1), deal(Deal_ID="D-2", Account=None, Amount=-1))
    book = check(tmp_path, {"Deals": rows, "Costs": [schema.COSTS.names, [D(2026, 1, 1), None, "Other", 1, None]]})
    assert [(i.sheet, i.row) for i in book.issues] == [("Deals", 2), ("Deals", 3), ("Deals", 3), ("Costs", 2)]
