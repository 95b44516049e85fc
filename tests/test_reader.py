"""Reading team sheets: finding tables, matching headers and aliases, row numbers, csv, host rows."""
from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from salessheet import Book, read_workbook, schema
from salessheet.issues import ERROR, WARNING
from sheetmaker import deal, deals_rows, sample_value, write_csv, write_xlsx

D = dt.date
MIN_DEAL = ["Deal ID", "Account", "Owner", "Stage", "Amount", "Created Date"]


def expected_clean(col: schema.Column, v):
    """What the reader should make of sample_value(col, i)."""
    if col.kind in ("date", "datetime"):
        return pd.Timestamp(v)
    if col.kind in ("money", "number", "int"):
        return float(v)
    return v


# -- finding the tables ------------------------------------------------------------------------

def test_excel_table_name_wins_over_sheet_name(tmp_path):
    path = write_xlsx(tmp_path / "t.xlsx", {
        "Deals": [MIN_DEAL, ["OLD-1", "Old", "Ann", "Proposal", 1, "2025-01-01"]],
        "Data": [["Q3 pipeline"], [], [], MIN_DEAL, ["D-1", "Acme", "Ann", "won", 10, "2026-01-02"],
                 ["D-2", "Beta", "Bob", "Proposal", 20, "2026-01-03"]],
    }, at={"Data": (1, 2)})
    # Put an Excel table named tblDeals over the header and two rows of the Data sheet (C5:H7).
    import openpyxl
    from openpyxl.worksheet.table import Table

    wb = openpyxl.load_workbook(path)
    wb["Data"].add_table(Table(displayName="tblDeals", ref="C5:H7"))
    wb.save(path)

    book = read_workbook(path)
    assert book.sheets["Deals"] == "Data"
    df = book.tables["Deals"]
    assert df["Deal ID"].tolist() == ["D-1", "D-2"]
    assert df.index.tolist() == [6, 7]  # the sheet's own row numbers
    assert df["Stage"].tolist() == ["Closed Won", "Proposal"]
    # The plain "Deals" sheet is not silently mixed in or dropped: it is reported.
    [note] = [i for i in book.issues if i.sheet == "Deals"]
    assert note.severity == WARNING and "Data" in note.message


def test_excel_table_from_xlsxwriter(tmp_path):
    rows = deals_rows(deal(), deal(Deal_ID="D-2"))
    path = write_xlsx(tmp_path / "t.xlsx", {"Report": rows}, at={"Report": (3, 1)}, tables={"Report": "Deals"})
    book = read_workbook(path)
    assert book.sheets["Deals"] == "Report"
    assert book.tables["Deals"].index.tolist() == [5, 6]
    assert book.issues == []


@pytest.mark.parametrize("sheet", ["Deals", "deals", "Opportunities", "PIPELINE", "Deal List", "tblDeals"])
def test_table_found_by_sheet_name(tmp_path, sheet):
    path = write_xlsx(tmp_path / "t.xlsx", {"Notes": [["hello"]], sheet: deals_rows(deal())})
    book = read_workbook(path)
    assert book.sheets == {"Deals": sheet}
    assert book.tables["Deals"]["Account"].tolist() == ["Acme"]


@pytest.mark.parametrize("header_row", [0, 3, 19])
def test_header_detected_below_titles_and_blank_rows(tmp_path, header_row):
    rows = [["Team West - pipeline"], ["exported 2026-02-01"]][:header_row] + [[]] * max(0, header_row - 2)
    rows += [["Opportunity ID", "Customer", "Sales Rep", "Deal Stage", "Deal Value", "Created On", "Region"],
             ["D-1", "Acme", "Ann", "lost", "$1,200.50", "2026-01-05", "West"]]
    book = read_workbook(write_xlsx(tmp_path / "t.xlsx", {"Sheet1": rows}, at={"Sheet1": (0, 1)}))
    df = book.tables["Deals"]
    assert df.index.tolist() == [header_row + 2]
    assert df.loc[header_row + 2, ["Deal ID", "Account", "Owner", "Stage", "Amount", "Region"]].tolist() == \
        ["D-1", "Acme", "Ann", "Closed Lost", 1200.5, "West"]
    # The empty column A left of the table is not a column.
    assert list(df.columns) == schema.DEALS.names + ["Region"]


def test_header_below_row_20_is_not_looked_for(tmp_path):
    rows = [["title"]] + [[]] * 20 + [MIN_DEAL, ["D-1", "Acme", "Ann", "Proposal", 1, "2026-01-01"]]
    book = read_workbook(write_xlsx(tmp_path / "t.xlsx", {"Sheet1": rows}))
    assert "Deals" not in book.tables
    assert book.issues[0].severity == ERROR and "no Deals table" in book.issues[0].message


def test_each_sheet_goes_to_the_table_it_fits(tmp_path):
    leads = [["Lead ID", "Created", "Lead Source", "Rep", "Lead Status", "Deal ID"],
             ["L-1", "2026-01-02", "Website", "Ann", "working", None]]
    costs = [["Month", "Category", "Amount", "Note"], [D(2026, 1, 1), "marketing", "€1.200,00", "ads"]]
    deals = [["ID", "Company", "Owner", "Status", "Value", "Created", "Team", "Source"],
             ["D-1", "Acme", "Ann", "won", 5, "2026-01-02", "West", "Website"]]
    book = read_workbook(write_xlsx(tmp_path / "t.xlsx", {"Sheet1": leads, "Sheet2": costs, "Sheet3": deals}))
    assert book.sheets == {"Deals": "Sheet3", "Leads": "Sheet1", "Costs": "Sheet2"}
    assert book.tables["Leads"]["Status"].tolist() == ["Working"]
    assert book.tables["Costs"]["Amount"].tolist() == [1200.0]
    assert book.tables["Deals"]["Stage"].tolist() == ["Closed Won"]


def test_two_matching_columns_do_not_make_a_table(tmp_path):
    # "Amount" and "Note" alone are not a Costs table (its Month and Category are missing).
    rows = [["Amount", "Note", "Colour"], [5, "x", "red"]]
    book = read_workbook(write_xlsx(tmp_path / "t.xlsx", {"Sheet1": rows}))
    assert book.tables == {}


# -- headers and aliases -----------------------------------------------------------------------

ALIASES = [pytest.param(t.name, c.name, a, id=f"{t.name}.{c.name}<-{a}")
           for t in schema.TABLES.values() for c in t.columns for a in c.aliases]


def test_no_header_key_is_empty_or_shared():
    # Every name and alias must give its own non-empty key, or a header silently lands in the wrong column.
    for t in schema.TABLES.values():
        keys: dict[str, str] = {}
        for c in t.columns:
            for a in (c.name,) + c.aliases:
                k = schema.normalize(a)
                assert k, (t.name, a)
                assert keys.setdefault(k, c.name) == c.name, (t.name, a, keys[k])


@pytest.mark.parametrize("table, column, alias", ALIASES)
def test_every_alias_maps_to_its_column(tmp_path, table, column, alias):
    t = schema.TABLES[table]
    header = [alias if c.name == column else c.name for c in t.columns]
    rows = [header] + [[sample_value(c, i) for c in t.columns] for i in range(2)]
    book = read_workbook(write_xlsx(tmp_path / "a.xlsx", {table: rows}))
    df = book.tables[table]
    col = t.column(column)
    assert df[column].tolist() == [expected_clean(col, sample_value(col, i)) for i in range(2)]
    assert list(df.columns) == t.names  # nothing became an extra column
    assert book.headers[table][column] == alias
    assert [i for i in book.issues if i.severity == ERROR and i.sheet == table] == []


@pytest.mark.parametrize("written", ["deal id", "DEAL_ID", " Deal-ID ", "Deal  Id", "deal.id", "Deal ID (text)"])
def test_header_case_space_punctuation_do_not_matter(tmp_path, written):
    rows = [[written, "ACCOUNT", "owner:", "Stage ", "Amount (USD)", "created_date", "Probability (%)"],
            ["D-9", "Acme", "Ann", "Proposal", "1,000", "2026-01-05", "40%"]]
    book = read_workbook(write_xlsx(tmp_path / "h.xlsx", {"Deals": rows}))
    r = book.tables["Deals"].iloc[0]
    assert (r["Deal ID"], r["Account"], r["Owner"], r["Amount"], r["Probability"]) == ("D-9", "Acme", "Ann", 1000.0, 0.4)
    assert r["Created Date"] == pd.Timestamp(2026, 1, 5)
    assert book.issues == []


def test_unknown_columns_are_kept_with_their_values(tmp_path):
    rows = [MIN_DEAL + ["Region", "Notes", None, "Notes"],
            ["D-1", "Acme", "Ann", "Proposal", 1, "2026-01-01", "West", "call back", "stray", "second"],
            ["D-2", "Beta", "Bob", "Proposal", 2, "2026-01-02", None, 42, None, None]]
    book = read_workbook(write_xlsx(tmp_path / "u.xlsx", {"Deals": rows}))
    df = book.tables["Deals"]
    assert list(df.columns) == schema.DEALS.names + ["Region", "Notes", "Column I", "Notes (2)"]
    assert df["Region"].tolist() == ["West", None]
    assert df["Notes"].tolist() == ["call back", 42]
    assert df["Column I"].tolist() == ["stray", None]
    assert df["Notes (2)"].tolist() == ["second", None]
    assert book.raw["Deals"]["Notes"].tolist() == ["call back", 42]


def test_two_columns_for_one_standard_column(tmp_path):
    rows = [["Deal ID", "Account", "Sales Rep", "Owner", "Stage", "Amount", "Created Date"],
            ["D-1", "Acme", "Rep A", "Ann", "Proposal", 1, "2026-01-01"]]
    book = read_workbook(write_xlsx(tmp_path / "o.xlsx", {"Deals": rows}))
    df = book.tables["Deals"]
    assert df["Owner"].tolist() == ["Ann"]  # the exact name wins over the alias
    assert df["Sales Rep"].tolist() == ["Rep A"]  # and the other is kept, not dropped
    [w] = book.issues
    assert (w.severity, w.row, w.column) == (WARNING, 1, "Sales Rep")


def test_missing_required_column_is_one_error_at_the_header(tmp_path):
    rows = [["Deal ID", "Account", "Stage", "Amount", "Created Date"],
            ["D-1", "Acme", "Proposal", 1, "2026-01-01"], ["D-2", "Acme", "Proposal", 1, "2026-01-01"]]
    book = read_workbook(write_xlsx(tmp_path / "m.xlsx", {"Deals": rows}, at={"Deals": (2, 0)}))
    [e] = book.issues
    assert (e.severity, e.sheet, e.row, e.column) == (ERROR, "Deals", 3, "Owner")
    assert book.tables["Deals"]["Owner"].isna().all()


# -- row numbers -------------------------------------------------------------------------------

def test_issue_rows_are_the_sheet_rows(tmp_path):
    rows = [["Pipeline"], [], ["Opportunity ID", "Customer", "Rep", "Deal Stage", "Deal Value", "Created On"],
            ["D-1", "Acme", "Ann", "Proposal", 100, "2026-01-05"],
            [],
            ["D-2", "Acme", "Ann", "Proposal", "lots", "2026-01-05"],
            ["D-3", "Acme", "Ann", "Proposal", 5, "sometime"]]
    book = read_workbook(write_xlsx(tmp_path / "r.xlsx", {"Sheet1": rows}))
    assert book.tables["Deals"].index.tolist() == [4, 6, 7]
    got = {(i.row, i.column, i.severity) for i in book.issues}
    assert got == {(5, None, WARNING), (6, "Deal Value", ERROR), (7, "Created On", ERROR)}
    bad = next(i for i in book.issues if i.row == 6)
    assert bad.value == "lots" and bad.sheet == "Sheet1" and bad.source == str(tmp_path / "r.xlsx")


# -- csv ---------------------------------------------------------------------------------------

CSV_ROWS = [MIN_DEAL + ["Notes"], ["D-1", "Café Müller", "Zoë", "won", "1200.50", "2026-01-05", "déjà vu"],
            ["D-2", "Beta", "Bob", "Proposal", "300", "2026-01-06", ""]]


@pytest.mark.parametrize("delimiter, encoding", [(",", "utf-8"), (";", "utf-8"), ("\t", "utf-8"),
                                                 (",", "utf-8-sig"), (";", "cp1252")])
def test_csv(tmp_path, delimiter, encoding):
    path = write_csv(tmp_path / "deals.csv", CSV_ROWS, delimiter=delimiter, encoding=encoding)
    book = read_workbook(path)
    df = book.tables["Deals"]
    assert df["Deal ID"].tolist() == ["D-1", "D-2"]  # a BOM does not hide the first header
    assert df["Account"].tolist() == ["Café Müller", "Beta"]
    assert df["Owner"].tolist() == ["Zoë", "Bob"]
    assert df["Amount"].tolist() == [1200.5, 300.0]
    assert df["Notes"].tolist() == ["déjà vu", None]
    assert df.index.tolist() == [2, 3]
    assert book.issues == []


def test_cp1252_csv_with_euro_amounts(tmp_path):
    path = write_csv(tmp_path / "eu.csv", [MIN_DEAL, ["D-1", "Ü", "Ann", "Proposal", "€1.200,50", "13.01.2026"]],
                     delimiter=";", encoding="cp1252")
    df = read_workbook(path).tables["Deals"]
    assert df["Amount"].tolist() == [1200.5] and df["Account"].tolist() == ["Ü"]
    assert df["Created Date"].tolist() == [pd.Timestamp(2026, 1, 13)]


def test_csv_row_longer_than_the_header_keeps_the_extra_cells(tmp_path):
    path = write_csv(tmp_path / "x.csv", [MIN_DEAL, ["D-1", "A", "Ann", "Proposal", "1", "2026-01-05", "surplus"]])
    df = read_workbook(path).tables["Deals"]
    assert df["Column G"].tolist() == ["surplus"]


# -- the other tables --------------------------------------------------------------------------

def full_workbook(tmp_path, stages=None):
    sheets = {
        "Deals": deals_rows(deal(), deal(Deal_ID="D-2", Stage="verbal commit")),
        "Leads": [schema.LEADS.names, ["L-1", D(2026, 1, 2), "Website", "Ann", "EMEA", "converted", D(2026, 1, 9), "D-1"],
                  ["L-2", "2026-01-03", "Event", "Bob", "EMEA", "NEW", None, None]],
        "Costs": [schema.COSTS.names, [D(2026, 1, 1), "EMEA", "Sales", 5000, "salaries"],
                  ["2026-02-01", None, "marketing", "$1,500", None]],
        "Targets": [schema.TARGETS.names, [D(2026, 1, 1), D(2026, 3, 31), "Ann", "EMEA", 50000],
                    [D(2026, 1, 1), D(2026, 3, 31), None, "EMEA", "120k"]],
        "Stages": stages or [schema.STAGES.names] + [[s.name, s.order, s.probability, s.is_closed, s.is_won]
                                                      for s in schema.DEFAULT_STAGES],
    }
    return write_xlsx(tmp_path / "full.xlsx", sheets)


def test_leads_costs_targets_stages_are_read(tmp_path):
    book = read_workbook(full_workbook(tmp_path))
    assert list(book.tables) == ["Deals", "Leads", "Costs", "Targets", "Stages"]
    leads = book.tables["Leads"]
    assert leads["Status"].tolist() == ["Converted", "New"]
    assert leads["Created Date"].tolist() == [pd.Timestamp(2026, 1, 2), pd.Timestamp(2026, 1, 3)]
    assert leads["Converted Date"].iloc[0] == pd.Timestamp(2026, 1, 9) and pd.isna(leads["Converted Date"].iloc[1])
    costs = book.tables["Costs"]
    assert costs["Category"].tolist() == ["Sales", "Marketing"]
    assert costs["Amount"].tolist() == [5000.0, 1500.0]
    assert costs["Month"].tolist() == [pd.Timestamp(2026, 1, 1), pd.Timestamp(2026, 2, 1)]
    targets = book.tables["Targets"]
    assert targets["Quota"].iloc[0] == 50000.0 and np.isnan(targets["Quota"].iloc[1])
    [bad] = [i for i in book.issues if i.sheet == "Targets"]
    assert (bad.row, bad.column, bad.value, bad.severity) == (3, "Quota", "120k", ERROR)
    stages = book.tables["Stages"]
    assert stages["Stage"].tolist() == [s.name for s in schema.DEFAULT_STAGES]
    assert str(stages["Is Won"].dtype) == "boolean" and stages["Is Won"].tolist() == [s.is_won for s in schema.DEFAULT_STAGES]
    assert str(leads["Created Date"].dtype).startswith("datetime64") and costs["Amount"].dtype == float
    # "verbal commit" is no stage of this book: kept and reported
    [w] = [i for i in book.issues if i.column == "Stage"]
    assert (w.sheet, w.row, w.severity) == ("Deals", 3, WARNING)


def test_custom_stage_in_the_stages_sheet_is_recognised(tmp_path):
    stages = [["Stage", "Order", "Probability", "Is Closed", "Is Won"],
              ["Prospecting", 1, "10%", "no", "no"], ["Verbal Commit", 2, "90%", "No", "No"],
              ["Signed", 3, 1, "Yes", "Yes"], ["Dead", 4, 0, "yes", "no"]]
    book = read_workbook(full_workbook(tmp_path, stages))
    deals = book.tables["Deals"]
    assert deals["Stage"].tolist() == ["Proposal", "Verbal Commit"]
    # Proposal is not a stage of this book any more; the custom one is.
    assert [(i.row, i.value) for i in book.issues if i.column == "Stage"] == [(2, "Proposal")]
    assert book.stages["Probability"].tolist() == [0.1, 0.9, 1.0, 0.0]


def test_won_and_lost_words_follow_renamed_closing_stages(tmp_path):
    stages = [["Stage", "Order", "Probability", "Is Closed", "Is Won"],
              ["Proposal", 1, 0.5, False, False], ["Signed", 2, 1, True, True], ["Dead", 3, 0, True, False]]
    path = write_xlsx(tmp_path / "s.xlsx", {
        "Deals": deals_rows(deal(Stage="won", Closed_Date=D(2026, 2, 1)),
                            deal(Deal_ID="D-2", Stage="LOST", Closed_Date=D(2026, 2, 1), Lost_Reason="price")),
        "Stages": stages})
    book = read_workbook(path)
    assert book.tables["Deals"]["Stage"].tolist() == ["Signed", "Dead"]
    assert book.issues == []


# -- rows from a spreadsheet host --------------------------------------------------------------

def serial(d: dt.date) -> float:
    return float((d - dt.date(1899, 12, 30)).days)


def test_book_from_host_rows():
    header = ["Deal ID", "Account", "Owner", "Stage", "Amount", "Created Date", "Closed Date", "Lost Reason"]
    rows = [header,
            ["D-1", "Acme", "Ann", "Closed Won", 1000.0, serial(D(2026, 1, 5)), serial(D(2026, 2, 1)), None],
            ["D-2", "Beta", "Bob", "Proposal", 0.0, serial(D(2026, 1, 6)), 0, ""],
            [None] * 8, [None] * 8]  # hosts pass the whole range, empty rows included
    book = Book.from_rows({"Deals": rows})
    df = book.tables["Deals"]
    assert df.index.tolist() == [2, 3]
    assert df["Created Date"].tolist() == [pd.Timestamp(2026, 1, 5), pd.Timestamp(2026, 1, 6)]
    assert df["Closed Date"].iloc[0] == pd.Timestamp(2026, 2, 1) and pd.isna(df["Closed Date"].iloc[1])
    assert df["Amount"].tolist() == [1000.0, 0.0]
    assert df["Lost Reason"].tolist() == [None, None]
    assert book.issues == []


def test_book_from_rows_finds_the_header_under_a_title_and_knows_table_aliases():
    book = Book.from_rows({"Opportunities": [["Q1"], MIN_DEAL, ["D-1", "A", "Ann", "won", 5, D(2026, 1, 1)]],
                           "Targets": [schema.TARGETS.names, [D(2026, 1, 1), D(2026, 3, 31), None, "X", 100]]})
    assert book.tables["Deals"].index.tolist() == [3]
    assert book.tables["Deals"]["Stage"].tolist() == ["Closed Won"]
    assert book.tables["Targets"]["Quota"].tolist() == [100.0]
    with pytest.raises(KeyError, match="Widgets"):
        Book.from_rows({"Widgets": [["a"]]})
