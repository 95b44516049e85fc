"""Value parsing: every format the issue lists, on its own and through a real xlsx file."""
from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from salessheet import read_workbook, schema, values
from salessheet.issues import ERROR, WARNING
from sheetmaker import deal, deals_rows, write_csv, write_xlsx


def serial(d: dt.date) -> int:
    """Excel's day number for a date, from its definition (days since 1899-12-30)."""
    return (d - dt.date(1899, 12, 30)).days


def day(v) -> dt.date | None:
    return None if np.isnat(v) else v.astype("datetime64[D]").item()


def dates(vals, **kw):
    out, problems = values.parse_dates(list(vals), "Created Date", **kw)
    return [day(v) for v in out], problems


FEB13 = dt.date(2026, 2, 13)


# -- dates -------------------------------------------------------------------------------------

@pytest.mark.parametrize("cell", [
    "2026-02-13", "2026-02-13T10:30:00", "2026-02-13 10:30", "2026-2-13", "13 Feb 2026", "Feb 13, 2026",
    "February 13, 2026", "13-Feb-2026", "Friday, 13 February 2026", "2026/02/13", "2026.02.13",
    "13/02/2026", "13.02.2026", "13-02-2026", "02/13/2026", "13/02/26",
    serial(FEB13), float(serial(FEB13)), str(serial(FEB13)), f"{serial(FEB13)}.75",
    dt.datetime(2026, 2, 13, 17, 45), dt.date(2026, 2, 13), np.datetime64("2026-02-13"),
])
def test_date_formats(cell):
    got, problems = dates([cell])
    assert problems == []
    assert got == [FEB13]


def test_date_column_drops_time_datetime_column_keeps_it():
    cells = [dt.datetime(2026, 2, 13, 17, 45), "2026-02-13 17:45", serial(FEB13) + 0.75]
    d, _ = values.parse_dates(cells, "Created Date")
    t, problems = values.parse_dates(cells, "Last Updated", keep_time=True)
    assert problems == []
    assert all(x == np.datetime64("2026-02-13T00:00") for x in d)
    assert t[0] == t[1] == np.datetime64("2026-02-13T17:45")
    assert t[2] == np.datetime64("2026-02-13T18:00")


def test_host_date_objects_keep_their_wall_time():
    cells = [pd.Timestamp("2026-02-13 10:00", tz="Europe/Paris"), dt.datetime(2026, 2, 13, 10, tzinfo=dt.timezone.utc),
             np.datetime64("2026-02-13T10:00"), pd.Timestamp("2026-02-13 10:00")]
    out, problems = values.parse_dates(cells, "Last Updated", keep_time=True)
    assert problems == [] and all(v == np.datetime64("2026-02-13T10:00") for v in out)


@pytest.mark.parametrize("dayfirst, expected", [(True, dt.date(2026, 4, 3)), (False, dt.date(2026, 3, 4))])
def test_dayfirst_option_decides_ambiguous_dates(dayfirst, expected):
    got, problems = dates(["03/04/2026", "03.04.2026"], dayfirst=dayfirst)
    assert problems == [] and got == [expected, expected]


def test_dayfirst_option_rejects_dates_that_contradict_it():
    got, problems = dates(["02/13/2026"], dayfirst=True)
    assert got == [None]
    assert [(p[0], p[1]) for p in problems] == [(0, ERROR)]
    assert "02/13/2026" in problems[0][2]


@pytest.mark.parametrize("evidence, expected", [
    ("13/02/2026", dt.date(2026, 4, 3)),  # a day > 12 first: the column is day/month
    ("02/13/2026", dt.date(2026, 3, 4)),  # a day > 12 second: the column is month/day
])
def test_day_month_order_inferred_per_column(evidence, expected):
    got, problems = dates(["03/04/2026", evidence, "", "03/04/2026"])
    assert problems == []
    assert got[0] == got[3] == expected
    assert got[1] == FEB13 and got[2] is None


def test_inference_is_per_column_not_per_file(tmp_path):
    rows = deals_rows(deal(Created_Date="03/04/2026", Expected_Close="13/05/2026"),
                      deal(Deal_ID="D-2", Created_Date="02/13/2026", Expected_Close="03/06/2026"))
    book = read_workbook(write_xlsx(tmp_path / "t.xlsx", {"Deals": rows}))
    df = book.tables["Deals"]
    assert df["Created Date"].dt.date.tolist() == [dt.date(2026, 3, 4), FEB13]
    assert df["Expected Close"].dt.date.tolist() == [dt.date(2026, 5, 13), dt.date(2026, 6, 3)]
    assert book.issues == []


def test_ambiguous_dates_are_reported_and_left_blank():
    got, problems = dates(["03/04/2026", "2026-01-02", "05/06/26", "07/07/2026"])
    # 07/07 reads the same either way, so it is not ambiguous.
    assert got == [None, dt.date(2026, 1, 2), None, dt.date(2026, 7, 7)]
    assert [(p[0], p[1]) for p in problems] == [(0, ERROR), (2, ERROR)]
    for _, _, msg in problems:
        assert "day" in msg and "month" in msg and "YYYY-MM-DD" in msg and "dayfirst" in msg


@pytest.mark.parametrize("cell", ["soon", "TBD", "31/02/2026", "2026-02-30", "2026-13-01", "Feb", "Feb 2026x",
                                  "13 Foo 2026", "2026", "1.5", -5.0, 99999999.0, True])
def test_not_a_date_is_an_error_and_blank(cell):
    got, problems = dates([cell], dayfirst=True)
    assert got == [None]
    assert len(problems) == 1 and problems[0][:2] == (0, ERROR)
    assert "date" in problems[0][2]


def test_blank_date_cells_are_blank_not_errors():
    got, problems = dates([None, "", "   ", float("nan"), 0, 0.0])
    assert got == [None] * 6 and problems == []


@settings(max_examples=60, deadline=None)
@given(st.lists(st.dates(dt.date(1990, 1, 1), dt.date(2090, 12, 31)), min_size=1, max_size=30),
       st.integers(13, 28), st.sampled_from(["iso", "dmy", "mdy"]), st.sampled_from("/.-"))
def test_dates_round_trip(ds, big_day, style, sep):
    # A column written d/m/y (or m/d/y) with a day > 12 somewhere reads back exactly, without a hint.
    anchor = dt.date(2026, 2, big_day)
    ds = ds + [anchor]
    fmt = {"iso": "%Y-%m-%d", "dmy": f"%d{sep}%m{sep}%Y", "mdy": f"%m{sep}%d{sep}%Y"}[style]
    got, problems = dates([d.strftime(fmt) for d in ds])
    assert problems == []
    assert got == ds


@settings(max_examples=30, deadline=None)
@given(st.datetimes(dt.datetime(1990, 1, 1), dt.datetime(2090, 1, 1)))
def test_serial_numbers_round_trip(when):
    when = when.replace(microsecond=0)
    x = (when - dt.datetime(1899, 12, 30)).total_seconds() / 86400
    out, problems = values.parse_dates([x, str(x)], "Last Updated", keep_time=True)
    assert problems == []
    for v in out:
        assert abs(v.astype("datetime64[ms]").item() - when) < dt.timedelta(milliseconds=2)


def test_date_cells_through_a_real_workbook(tmp_path):
    cells = [dt.date(2026, 2, 13), serial(FEB13), str(serial(FEB13)), "2026-02-13", "13 Feb 2026",
             "Feb 13, 2026", "2026/02/13", "13/02/2026", dt.datetime(2026, 2, 13, 9, 30)]
    rows = deals_rows(*(deal(Deal_ID=f"D-{i}", Created_Date=c) for i, c in enumerate(cells)))
    book = read_workbook(write_xlsx(tmp_path / "d.xlsx", {"Deals": rows}))
    assert book.issues == []
    assert book.tables["Deals"]["Created Date"].dt.date.tolist() == [FEB13] * len(cells)


# -- amounts -----------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("$1,200.50", 1200.5), ("1 200,50 EUR", 1200.5), ("(500)", -500.0), ("1.234.567", 1234567.0),
    ("€1.200,50", 1200.5), ("1.200,50 €", 1200.5), ("EUR 1.200,50", 1200.5), ("1,234,567.89", 1234567.89),
    ("USD 99", 99.0), ("£5", 5.0), ("-3.5", -3.5), ("1200", 1200.0), ("$(5.25)", -5.25), ("($5.25)", -5.25),
    ("-$5", -5.0), ("1'234.50", 1234.5), ("12,5", 12.5), ("1\u00a0200,50 €", 1200.5), ("1\u202f200", 1200.0),
    ("500-", -500.0), ("  42  ", 42.0), ("1e3", 1000.0), ("+7", 7.0), (".5", 0.5), ("0,125", 0.125),
    ("EUR1.200,50", 1200.5), ("USD1,200", 1200.0), ("US$ 5", 5.0), ("R$ 1.000,00", 1000.0), ("1200usd", 1200.0),
    # a single group of three digits is thousands in a money column, whichever separator
    ("1.200", 1200.0), ("1,200", 1200.0), ("€ 12.500", 12500.0),
])
def test_amount_text(text, expected):
    out, problems = values.parse_number([text], "Amount", kind="money")
    assert problems == []
    assert out[0] == pytest.approx(expected)


@pytest.mark.parametrize("text", ["abc", "1.2.3", "$", "12-3", "N/A", "1,2,3.4.5", "--5", "()", "5 apples",
                                  "5 EUROS", "1.2.3,4"])
def test_amount_text_that_is_not_a_number(text):
    out, problems = values.parse_number([text], "Amount", kind="money")
    assert np.isnan(out[0])
    assert [(p[0], p[1]) for p in problems] == [(0, ERROR)]
    assert "Amount" in problems[0][2] and text in problems[0][2]


def test_number_cells_and_blanks():
    out, problems = values.parse_number([1200, 3.5, None, "", "  ", float("nan"), True], "Units")
    assert out[:2].tolist() == [1200.0, 3.5] and np.isnan(out[2:]).all()
    assert [(p[0], p[1]) for p in problems] == [(6, ERROR)]


def test_whole_numbers_only_for_int_columns():
    out, problems = values.parse_number([3, "4", 2.5], "Order", kind="int")
    assert out.tolist() == [3, 4, 2.5]
    assert [(p[0], p[1]) for p in problems] == [(2, ERROR)]


amounts = st.decimals(min_value=0, max_value=10**9, places=2, allow_nan=False, allow_infinity=False)


def european(x, sep=".") -> str:
    return f"{x:,.2f}".replace(",", "#").replace(".", ",").replace("#", sep)


@settings(max_examples=200, deadline=None)
@given(amounts, st.sampled_from(["${:,.2f}", "{:,.2f}", "USD {:,.2f}", "({:,.2f})", "$ {:,.2f}", "-${:,.2f}",
                                 "eu", "eu-space", "eu-sym", "eu-neg"]))
def test_amounts_round_trip(x, style):
    if style.startswith("eu"):
        text = european(x, " " if style == "eu-space" else ".")
        text = {"eu-sym": f"€{text}", "eu-neg": f"-{text} EUR"}.get(style, text)
    else:
        text = style.format(x)
    negative = "(" in text or "-" in text
    out, problems = values.parse_number([text], "Amount", kind="money")
    assert problems == []
    assert out[0] == pytest.approx(float(-x if negative else x), abs=1e-9)


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 10**12), st.sampled_from([",", ".", " ", "'"]))
def test_whole_amounts_with_any_thousands_separator(n, sep):
    text = f"{n:,}".replace(",", sep)
    out, problems = values.parse_number([text], "Amount", kind="money")
    assert problems == [] and out[0] == n


# -- percentages -------------------------------------------------------------------------------

@pytest.mark.parametrize("cell, expected", [
    (0.25, 0.25), (25, 0.25), (25.0, 0.25), ("25%", 0.25), ("25 %", 0.25), ("25", 0.25), ("0.25", 0.25),
    ("12.5%", 0.125), ("0,5", 0.5), ("100%", 1.0), (1, 1.0), (0, 0.0), ("0%", 0.0), ("1%", 0.01), (100, 1.0),
    ("0.5%", 0.005),
])
def test_percentages(cell, expected):
    out, problems = values.parse_percent([cell], "Probability")
    assert problems == []
    assert out[0] == pytest.approx(expected)


@pytest.mark.parametrize("cell", ["high", "25%%x", True])
def test_not_a_percentage(cell):
    out, problems = values.parse_percent([cell], "Probability")
    assert np.isnan(out[0]) and [(p[0], p[1]) for p in problems] == [(0, ERROR)]


def test_percent_cell_through_a_real_workbook(tmp_path):
    # An xlsx cell formatted 0% holds 0.25; reps also type 25 or "25%".
    import xlsxwriter

    path = tmp_path / "p.xlsx"
    wb = xlsxwriter.Workbook(str(path))
    ws = wb.add_worksheet("Deals")
    ws.write_row(0, 0, ["Deal ID", "Account", "Owner", "Stage", "Amount", "Created Date", "Probability"])
    pct = wb.add_format({"num_format": "0%"})
    for r, p in enumerate([0.25, 25, "25%", "0.25"], start=1):
        ws.write_row(r, 0, [f"D-{r}", "Acme", "Ann", "Proposal", 10, "2026-01-01"])
        ws.write(r, 6, p, pct)
    wb.close()
    book = read_workbook(path)
    assert book.tables["Deals"]["Probability"].tolist() == [0.25] * 4
    assert book.issues == []


# -- stages and choices ------------------------------------------------------------------------

DEFAULT_LOOKUP = values.stage_lookup(s.name for s in schema.DEFAULT_STAGES)


@pytest.mark.parametrize("cell, expected", [
    ("won", "Closed Won"), ("WON", "Closed Won"), (" Won ", "Closed Won"), ("win", "Closed Won"),
    ("closed won", "Closed Won"), ("Closed-Won", "Closed Won"), ("CLOSEDWON", "Closed Won"),
    ("lost", "Closed Lost"), ("LOST", "Closed Lost"), ("Closed lost", "Closed Lost"), ("loss", "Closed Lost"),
    ("proposal", "Proposal"), ("NEGOTIATION", "Negotiation"), ("Prospecting", "Prospecting"),
])
def test_stage_aliases(cell, expected):
    out, problems = values.parse_stage([cell], DEFAULT_LOOKUP)
    assert problems == [] and out.tolist() == [expected]


def test_unknown_stage_is_kept_and_reported():
    out, problems = values.parse_stage(["Verbal Commit", "won", None, "Verbal Commit"], DEFAULT_LOOKUP)
    assert out.tolist() == ["Verbal Commit", "Closed Won", None, "Verbal Commit"]
    assert [(p[0], p[1]) for p in problems] == [(0, WARNING), (3, WARNING)]
    assert "Verbal Commit" in problems[0][2] and "Stages" in problems[0][2]


def test_unknown_stage_counts_as_open(tmp_path):
    rows = deals_rows(deal(Stage="Verbal Commit"))
    book = read_workbook(write_xlsx(tmp_path / "s.xlsx", {"Deals": rows}))
    assert book.tables["Deals"]["Stage"].tolist() == ["Verbal Commit"]
    closed = set(book.stages.loc[book.stages["Is Closed"].astype(bool), "Stage"])
    assert "Verbal Commit" not in closed
    assert [(i.severity, i.row, i.column) for i in book.issues] == [(WARNING, 2, "Stage")]


@pytest.mark.parametrize("cell, expected", [("new", "New"), ("WORKING", "Working"), (" qualified ", "Qualified")])
def test_choice_matching_ignores_case_and_space(cell, expected):
    out, problems = values.parse_choice([cell], schema.LEAD_STATUSES, "Status")
    assert problems == [] and out.tolist() == [expected]


def test_choice_outside_the_list_is_kept_and_an_error():
    out, problems = values.parse_choice(["Maybe"], schema.COST_CATEGORIES, "Category")
    assert out.tolist() == ["Maybe"]
    assert problems[0][:2] == (0, ERROR) and "Sales" in problems[0][2] and "Marketing" in problems[0][2]


@pytest.mark.parametrize("cell, expected", [
    (True, True), (False, False), ("Yes", True), ("no", False), ("TRUE", True), ("x", True), (1, True), (0, False),
    (None, None),
])
def test_booleans(cell, expected):
    out, problems = values.parse_bool([cell], "Is Closed")
    assert problems == []
    assert pd.isna(out[0]) if expected is None else out[0] == expected


def test_text_ids_from_number_cells():
    out, _ = values.parse_text([1001.0, "  D-7 ", 3.5, None, "", True])
    assert out.tolist() == ["1001", "D-7", "3.5", None, None, "TRUE"]


def test_csv_with_european_amounts_and_dayfirst_dates(tmp_path):
    path = write_csv(tmp_path / "eu.csv", [
        ["Deal ID", "Account", "Owner", "Stage", "Amount", "Created Date"],
        ["D-1", "Acme", "Ann", "gewonnen", "1.200,50 €", "03.04.2026"],
        ["D-2", "Beta", "Bob", "lost", "€ 900,00", "13.04.2026"],
    ], delimiter=";")
    book = read_workbook(path)
    df = book.tables["Deals"]
    assert df["Amount"].tolist() == [1200.5, 900.0]
    assert df["Created Date"].dt.date.tolist() == [dt.date(2026, 4, 3), dt.date(2026, 4, 13)]
    assert df["Stage"].tolist() == ["gewonnen", "Closed Lost"]
    assert [(i.row, i.column, i.severity) for i in book.issues if i.column == "Stage"] == [(2, "Stage", WARNING)]
