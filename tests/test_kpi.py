"""Golden tests for the KPI engine: every expected value is worked out by hand in the test.

The book: three reps (Ann, Bob: East; Cat: West), Q1 2025 as the period of interest, and edge cases
(blank Units, own probability vs stage default, an unknown stage, deals just outside the period, a
repeat customer whose first won deal predates the period, an account spelt two ways, a won deal with
no Closed Date, a deal with no Team).
"""
from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from salessheet import kpi, schema
from salessheet.book import Book
from salessheet.errors import MissingTableError, ValidationError

# --- helper: Books in the reader's documented dtypes ------------------------------------------


def frame(table: str, rows: list[dict]) -> pd.DataFrame:
    """A clean table: every standard column, reader dtypes, index = sheet row (header on row 1)."""
    t = schema.TABLES[table]
    index = pd.RangeIndex(2, 2 + len(rows), name="row")
    cols = {}
    for c in t.columns:
        vals = [r.get(c.name) for r in rows]
        if c.kind in ("date", "datetime"):
            days = pd.to_datetime(pd.Series(vals, dtype=object)).to_numpy(dtype="datetime64[us]")
            cols[c.name] = pd.Series(days, index=index, dtype="datetime64[us]")
        elif c.kind in ("money", "number", "percent", "int"):
            cols[c.name] = pd.Series([np.nan if v is None else float(v) for v in vals], index=index, dtype=float)
        elif c.kind == "bool":
            cols[c.name] = pd.Series(pd.array(vals, dtype="boolean"), index=index)
        else:
            cols[c.name] = pd.Series(vals, index=index, dtype=object)
    unknown = {k for r in rows for k in r} - set(t.names)
    assert not unknown, unknown
    return pd.DataFrame(cols, index=index)


def make_book(deals=(), leads=None, costs=None, targets=None, stages=None) -> Book:
    tables = {"Deals": frame("Deals", list(deals))}
    for name, rows in (("Leads", leads), ("Costs", costs), ("Targets", targets), ("Stages", stages)):
        if rows is not None:
            tables[name] = frame(name, list(rows))
    return Book(source="t", tables=tables)


def deal(i, account, owner, team, stage, amount, created, closed=None, expected=None, prob=None, units=None):
    return {"Deal ID": f"D{i}", "Account": account, "Owner": owner, "Team": team, "Stage": stage,
            "Amount": amount, "Created Date": created, "Closed Date": closed, "Expected Close": expected,
            "Probability": prob, "Units": units}


WON, LOST = "Closed Won", "Closed Lost"
DEALS = [
    deal(1, "Acme", "Ann", "East", WON, 1000, "2024-12-01", closed="2025-01-10", units=5),
    deal(2, "Beta", "Ann", "East", WON, 2500, "2025-01-05", closed="2025-02-04"),  # blank Units -> 1
    deal(3, "Gamma", "Bob", "East", LOST, 800, "2025-01-10", closed="2025-02-15"),
    deal(4, "Acme", "Bob", "East", WON, 3000, "2024-06-01", closed="2024-11-30", units=2),  # before Q1
    deal(5, "Delta", "Cat", "West", WON, 4000, "2025-02-01", closed="2025-03-31", units=10),  # last day of Q1
    deal(6, "Eps", "Cat", "West", LOST, 1200, "2025-01-01", closed="2025-01-01"),  # first day of Q1
    deal(7, "Zeta", "Cat", "West", WON, 5000, "2025-03-01", closed="2025-04-01"),  # day after Q1
    deal(8, "Eta", "Ann", "East", "Proposal", 2000, "2025-01-15", expected="2025-03-15"),  # default 50%
    deal(9, "Theta", "Ann", "East", "Negotiation", 1000, "2025-01-20", expected="2025-02-28", prob=0.9),
    deal(10, "Iota", "Bob", "East", "Prospecting", 3000, "2025-02-01", expected="2025-05-01"),  # after Q1
    deal(11, "Kappa", "Cat", "West", "On Hold", 1500, "2025-02-10", expected="2025-03-20"),  # unknown: 0%
    deal(12, "Lambda", "Cat", "West", "On Hold", 500, "2025-02-11", expected="2025-01-31", prob=0.2),
    deal(13, "BETA ", "Bob", "East", WON, 700, "2025-03-01", closed="2025-03-10", units=3),  # Beta again
    deal(14, "Mu", "Bob", None, WON, 600, "2025-01-20", closed="2025-02-20"),  # no team
    deal(15, "Nu", "Ann", "East", WON, 400, "2025-01-01"),  # won, Closed Date blank
]
LEADS = [
    {"Lead ID": "L1", "Created Date": "2025-01-05", "Owner": "Ann", "Team": "East", "Status": "Converted"},
    {"Lead ID": "L2", "Created Date": "2025-01-20", "Owner": "Ann", "Team": "East", "Status": "Working"},
    {"Lead ID": "L3", "Created Date": "2025-02-01", "Owner": "Bob", "Team": "East", "Status": "Converted"},
    {"Lead ID": "L4", "Created Date": "2025-03-31", "Owner": "Cat", "Team": "West", "Status": "Disqualified"},
    {"Lead ID": "L5", "Created Date": "2024-12-31", "Owner": "Cat", "Team": "West", "Status": "Converted"},
    {"Lead ID": "L6", "Created Date": "2025-02-10", "Owner": "Cat", "Team": "West", "Status": "New"},
]
COSTS = [
    {"Month": "2025-01-01", "Team": "East", "Category": "Sales", "Amount": 3000},
    {"Month": "2025-01-01", "Team": "West", "Category": "Marketing", "Amount": 1500},
    {"Month": "2025-02-15", "Team": "East", "Category": "Marketing", "Amount": 1000},  # mid-month date
    {"Month": "2025-03-01", "Team": "West", "Category": "Sales", "Amount": 2000},
    {"Month": "2024-12-01", "Team": "East", "Category": "Sales", "Amount": 9999},  # before Q1
    {"Month": "2025-04-01", "Team": "West", "Category": "Sales", "Amount": 7777},  # after Q1
    {"Month": "2025-03-31", "Team": None, "Category": "Marketing", "Amount": 500},  # no team
]
TARGETS = [
    {"Period Start": "2025-02-01", "Period End": "2025-03-31", "Owner": "Ann", "Team": "East", "Quota": 3500},
    {"Period Start": "2025-01-01", "Period End": "2025-03-31", "Owner": "Bob", "Team": "East", "Quota": 4000},
    {"Period Start": "2025-01-01", "Period End": "2025-03-31", "Owner": None, "Team": "East", "Quota": 10000},
    {"Period Start": "2025-01-01", "Period End": "2025-03-31", "Owner": "Cat", "Team": "West", "Quota": 6000},
    {"Period Start": "2025-01-01", "Period End": "2025-01-31", "Owner": "Ann", "Team": "East", "Quota": 1500},
    {"Period Start": "2025-04-01", "Period End": "2025-06-30", "Owner": "Ann", "Team": "East", "Quota": 9999},
]
Q1 = {"start": "2025-01-01", "end": "2025-03-31"}


@pytest.fixture
def book():
    return make_book(DEALS, LEADS, COSTS, TARGETS)


def approx(x):
    return pytest.approx(x, rel=1e-12)


# --- Q1, no owner/team filter -----------------------------------------------------------------
# Won in Q1: D1 1000 (5 units, 40 days), D2 2500 (1, 30), D5 4000 (10, 58), D13 700 (3, 9), D14 600 (1, 31)
# Lost in Q1: D3, D6.  Open, expected in Q1: D8 2000 x .5, D9 1000 x .9, D11 1500 x 0, D12 500 x .2


def test_q1_closed_deal_kpis(book):
    assert kpi.revenue(book, **Q1) == approx(1000 + 2500 + 4000 + 700 + 600)
    assert kpi.sales_volume(book, **Q1) == approx(5 + 1 + 10 + 3 + 1)
    assert kpi.win_rate(book, **Q1) == approx(5 / 7)
    assert kpi.avg_deal_size(book, **Q1) == approx(8800 / 5)
    assert kpi.sales_cycle(book, **Q1) == approx((40 + 30 + 58 + 9 + 31) / 5)


def test_q1_pipeline_kpis(book):
    assert kpi.pipeline(book, **Q1) == approx(2000 + 1000 + 1500 + 500)
    assert kpi.weighted_pipeline(book, **Q1) == approx(2000 * 0.5 + 1000 * 0.9 + 1500 * 0 + 500 * 0.2)
    assert kpi.forecast(book, **Q1) == approx(8800 + 2000)
    assert kpi.sales_velocity(book, **Q1) == approx(4 * (8800 / 5) * (5 / 7) / (168 / 5))


def test_q1_leads_costs_targets(book):
    assert kpi.conversion_rate(book, **Q1) == approx(2 / 5)  # L1, L3 of L1-L4, L6
    # New in Q1: Beta (D2; D13 "BETA " is the same account), Delta, Mu. Acme first won in 2024 (D4).
    assert kpi.cac(book, **Q1) == approx((3000 + 1500 + 1000 + 2000 + 500) / 3)
    # No company target: East's team target (10000) replaces Ann's and Bob's; Cat's 6000 counts for West.
    assert kpi.quota_attainment(book, **Q1) == approx(8800 / (10000 + 6000))


def test_all_time(book):
    # All time: dates do not filter, so D15 (won, no Closed Date) counts, D4 and D7 too.
    assert kpi.revenue(book) == approx(8800 + 3000 + 5000 + 400)
    assert kpi.sales_volume(book) == approx(20 + 2 + 1 + 1)
    assert kpi.win_rate(book) == approx(8 / 10)
    assert kpi.avg_deal_size(book) == approx(17200 / 8)
    # D4: 2024-06-01 -> 2024-11-30 = 182 days; D7: 31 days; D15 has no Closed Date and is left out.
    assert kpi.sales_cycle(book) == approx((168 + 182 + 31) / 7)
    assert kpi.pipeline(book) == approx(5000 + 3000)
    assert kpi.weighted_pipeline(book) == approx(2000 + 3000 * 0.1)
    assert kpi.forecast(book) == approx(17200 + 2300)
    assert kpi.sales_velocity(book) == approx(5 * (17200 / 8) * (8 / 10) / (381 / 7))
    assert kpi.conversion_rate(book) == approx(3 / 6)
    # Customers ever: Acme, Beta, Delta, Zeta, Mu, Nu.
    assert kpi.cac(book) == approx((8000 + 9999 + 7777) / 6)
    # Ann's Q2 target (9999) overlaps no team target, so it adds to East 10000 and West (Cat) 6000.
    assert kpi.quota_attainment(book) == approx(17200 / (10000 + 9999 + 6000))


# --- filters ---------------------------------------------------------------------------------


def test_owner_filter(book):
    assert kpi.revenue(book, owner="Ann", **Q1) == approx(1000 + 2500)
    assert kpi.sales_volume(book, owner="Ann", **Q1) == approx(5 + 1)
    assert kpi.win_rate(book, owner="Bob", **Q1) == approx(2 / 3)  # D13, D14 won; D3 lost
    assert kpi.avg_deal_size(book, owner="Bob", **Q1) == approx((700 + 600) / 2)
    assert kpi.sales_cycle(book, owner="Cat", **Q1) == approx(58)
    assert kpi.win_rate(book, owner="Cat", **Q1) == approx(1 / 2)
    assert kpi.pipeline(book, owner="Ann", **Q1) == approx(3000)
    assert kpi.weighted_pipeline(book, owner="Cat", **Q1) == approx(0 + 100)
    assert kpi.forecast(book, owner="Cat", **Q1) == approx(4000 + 100)
    assert kpi.sales_velocity(book, owner="Ann", **Q1) == approx(2 * 1750 * 1.0 / 35)
    assert kpi.conversion_rate(book, owner="Ann", **Q1) == approx(1 / 2)
    assert kpi.conversion_rate(book, owner="Cat", **Q1) == 0.0  # 2 leads, none converted: defined
    assert kpi.quota_attainment(book, owner="Ann", **Q1) == approx(3500 / (3500 + 1500))  # Jan + Feb-Mar
    assert kpi.quota_attainment(book, owner="Bob", **Q1) == approx(1300 / 4000)
    assert kpi.quota_attainment(book, owner="Ann") == approx(3900 / (3500 + 1500 + 9999))


def test_team_filter(book):
    assert kpi.revenue(book, team="East", **Q1) == approx(1000 + 2500 + 700)  # D14 has no team
    assert kpi.win_rate(book, team="East", **Q1) == approx(3 / 4)
    assert kpi.sales_volume(book, team="West", **Q1) == approx(10)
    assert kpi.pipeline(book, team="West", **Q1) == approx(1500 + 500)
    assert kpi.conversion_rate(book, team="West", **Q1) == 0.0
    assert kpi.cac(book, team="East", **Q1) == approx((3000 + 1000) / 1)  # Beta
    assert kpi.cac(book, team="West", **Q1) == approx((1500 + 2000) / 1)  # Delta
    assert kpi.quota_attainment(book, team="East", **Q1) == approx(4200 / 10000)  # team row wins
    assert kpi.quota_attainment(book, team="West", **Q1) == approx(4000 / 6000)  # no team row: reps'


def test_owner_and_team_filter(book):
    assert kpi.revenue(book, owner="Bob", team="East", **Q1) == approx(700)  # D14 has no team
    assert kpi.revenue(book, owner="Bob", team="West", **Q1) == 0.0
    assert kpi.win_rate(book, owner="Bob", team="West", **Q1) is None


def test_date_bounds_are_inclusive_and_take_any_date_type(book):
    for start, end in (("2025-03-31", "2025-03-31"), (dt.date(2025, 3, 31), dt.datetime(2025, 3, 31, 18, 30)),
                       (pd.Timestamp("2025-03-31"), np.datetime64("2025-03-31"))):
        assert kpi.revenue(book, start=start, end=end) == approx(4000)  # D5 only
    assert kpi.revenue(book, start="2025-04-01") == approx(5000)  # open end; D15 (no date) is out
    assert kpi.revenue(book, end="2024-12-31") == approx(3000)  # open start
    assert kpi.revenue(book, start="", end="") == kpi.revenue(book)  # blank means no bound


def test_undefined_is_none_and_sums_are_zero():
    b = make_book([deal(1, "A", "Ann", "East", "Proposal", 100, "2025-01-01", expected="2025-01-05")],
                  leads=[], costs=[{"Month": "2025-01-01", "Team": "East", "Category": "Sales", "Amount": 10}],
                  targets=[{"Period Start": "2025-01-01", "Period End": "2025-01-31", "Owner": "Ann", "Quota": 0}])
    assert kpi.revenue(b) == 0.0
    assert kpi.sales_volume(b) == 0.0
    for f in (kpi.win_rate, kpi.avg_deal_size, kpi.sales_cycle, kpi.conversion_rate, kpi.cac, kpi.sales_velocity,
              kpi.quota_attainment):
        assert f(b) is None, f.__name__
    assert kpi.pipeline(b) == 100.0
    assert kpi.quota_attainment(b, owner="Bob") is None  # no target at all


def test_same_day_wins_make_velocity_undefined():
    b = make_book([deal(1, "A", "Ann", "East", WON, 100, "2025-01-01", closed="2025-01-01"),
                   deal(2, "B", "Ann", "East", "Proposal", 100, "2025-01-01", expected="2025-01-05")])
    assert kpi.sales_cycle(b) == 0.0
    assert kpi.sales_velocity(b) is None


def test_company_target_replaces_team_and_rep_targets_it_overlaps(book):
    targets = TARGETS + [{"Period Start": "2025-01-01", "Period End": "2025-03-31", "Quota": 20000}]
    b = make_book(DEALS, LEADS, COSTS, targets)
    assert kpi.quota_attainment(b, **Q1) == approx(8800 / 20000)
    assert kpi.quota_attainment(b) == approx(17200 / (20000 + 9999))  # Ann's Q2 target is not overlapped
    assert kpi.quota_attainment(b, team="East", **Q1) == approx(4200 / 10000)  # team scope ignores it


def test_stages_come_from_the_book():
    stages = [{"Stage": "Signed", "Order": 3, "Probability": 1, "Is Closed": True, "Is Won": True},
              {"Stage": "Dead", "Order": 4, "Probability": 0, "Is Closed": True, "Is Won": False},
              {"Stage": "Talking", "Order": 1, "Probability": 0.3, "Is Closed": False, "Is Won": False}]
    b = make_book([deal(1, "A", "Ann", "E", "Signed", 100, "2025-01-01", closed="2025-01-02"),
                   deal(2, "B", "Ann", "E", "Dead", 50, "2025-01-01", closed="2025-01-02"),
                   deal(3, "C", "Ann", "E", "Closed Won", 70, "2025-01-01", closed="2025-01-02"),  # not a stage here
                   deal(4, "D", "Ann", "E", "Talking", 10, "2025-01-01", expected="2025-01-02")], stages=stages)
    assert kpi.revenue(b) == 100.0
    assert kpi.win_rate(b) == approx(1 / 2)
    assert kpi.pipeline(b) == approx(70 + 10)  # the unknown "Closed Won" counts as open
    assert kpi.weighted_pipeline(b) == approx(70 * 0 + 10 * 0.3)


# --- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize("func,table", [(kpi.conversion_rate, "Leads"), (kpi.cac, "Costs"),
                                        (kpi.quota_attainment, "Targets")])
def test_missing_table_error_names_the_table(func, table):
    b = make_book(DEALS)
    with pytest.raises(MissingTableError, match=table) as e:
        func(b)
    assert e.value.table == table
    name = kpi.FUNCTION_NAMES[next(k for k, f in kpi.KPIS.items() if f is func)]
    assert name in str(e.value)


def test_missing_deals_table():
    b = Book(source="t", tables={"Leads": frame("Leads", LEADS)})
    with pytest.raises(MissingTableError, match="Deals"):
        kpi.revenue(b)
    assert kpi.conversion_rate(b) == approx(3 / 6)  # needs only Leads


def test_cac_refuses_an_owner_filter(book):
    with pytest.raises(ValidationError, match="owner"):
        kpi.cac(book, owner="Ann")


def test_bad_dates_and_grouping(book):
    with pytest.raises(ValidationError, match="not a date"):
        kpi.revenue(book, start="last tuesday-ish")
    with pytest.raises(ValidationError, match="before it starts"):
        kpi.revenue(book, start="2025-02-01", end="2025-01-01")
    with pytest.raises(ValidationError, match="group by"):
        kpi.kpi_table(book, by="rep")


# --- kpi_table ------------------------------------------------------------------------------


def test_kpi_table_by_owner_q1(book):
    t = kpi.kpi_table(book, by="owner", **Q1).set_index("owner")
    assert list(t.index) == ["Ann", "Bob", "Cat"]
    assert list(t.columns) == list(kpi.KPIS)
    assert t.loc["Ann", "revenue"] == approx(3500)
    assert t.loc["Bob", "win_rate"] == approx(2 / 3)
    assert t.loc["Cat", "weighted_pipeline"] == approx(100)
    assert t.loc["Ann", "quota_attainment"] == approx(3500 / 5000)
    assert t["cac"].isna().all() and all(v is None for v in t["cac"])  # costs are per team


def test_kpi_table_by_team_and_quarter(book):
    t = kpi.kpi_table(book, by="team", **Q1).set_index("team")
    assert list(t.index) == ["East", "West"]  # D14 and the no-team cost belong to no team
    assert t.loc["East", "cac"] == approx(4000)
    assert t.loc["West", "quota_attainment"] == approx(4000 / 6000)
    q = kpi.kpi_table(book, by="quarter").set_index("quarter")
    assert list(q.index) == ["2024-Q4", "2025-Q1", "2025-Q2"]
    assert q.loc["2024-Q4", "revenue"] == approx(3000)
    assert q.loc["2025-Q1", "revenue"] == approx(8800)  # D15 has no Closed Date: in no quarter
    assert q.loc["2025-Q2", "pipeline"] == approx(3000)
    assert q.loc["2025-Q1", "quota_attainment"] == approx(8800 / 16000)
    assert q.loc["2025-Q2", "quota_attainment"] == approx(5000 / 9999)


def test_kpi_table_by_month(book):
    t = kpi.kpi_table(book, by="month", **Q1).set_index("month")
    assert list(t.index) == ["2025-01", "2025-02", "2025-03"]
    assert t.loc["2025-01", "revenue"] == approx(1000)
    assert t.loc["2025-01", "win_rate"] == approx(1 / 2)  # D1 won, D6 lost
    assert t.loc["2025-01", "quota_attainment"] == approx(1000 / 1500)  # only Ann's January target lies in it
    assert t.loc["2025-02", "quota_attainment"] is None
    assert t.loc["2025-02", "cac"] == approx(1000 / 2)  # Beta and Mu; East's February cost
    assert t.loc["2025-03", "conversion_rate"] == 0.0


def test_kpi_table_without_optional_tables_has_none_columns():
    b = make_book(DEALS)
    t = kpi.kpi_table(b, by="owner")
    for col in ("conversion_rate", "cac", "quota_attainment"):
        assert all(v is None for v in t[col]), col
    assert kpi.kpi_table(b).loc[0, "revenue"] == approx(17200)


def _same(a, b):
    return (a is None and b is None) or (a is not None and b is not None and a == pytest.approx(b, rel=1e-9))


@pytest.mark.parametrize("by", [None, "owner", "team", "month", "quarter"])
@pytest.mark.parametrize("period", [{}, Q1, {"start": "2025-01-15", "end": "2025-03-10"}])
def test_kpi_table_rows_equal_single_functions(book, by, period):
    t = kpi.kpi_table(book, by=by, **period)
    assert len(t) >= 1
    for _, row in t.iterrows():
        args = dict(period)
        if by in ("owner", "team"):
            args[by] = row[by]
        elif by in ("month", "quarter"):
            first, last = kpi.period_bounds(row[by])
            lo, hi = pd.Timestamp(period.get("start", first)), pd.Timestamp(period.get("end", last))
            args = {"start": max(first, lo), "end": min(last, hi)}
        for key, func in kpi.KPIS.items():
            if key == "cac" and by == "owner":
                assert row[key] is None
                continue
            assert _same(row[key], func(book, **args)), (by, row.get(by), key)


def test_engine_imports_no_spreadsheet_or_cli_library():
    """kpi and forecast must run under Pyodide: no openpyxl, calamine, xlsxwriter, click or rich."""
    import subprocess
    import sys

    code = ("import sys\n"
            "for m in ('openpyxl', 'python_calamine', 'xlsxwriter', 'click', 'rich'): sys.modules[m] = None\n"
            "from salessheet import kpi, forecast\n"
            "print(sorted(kpi.KPIS))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "win_rate" in r.stdout


def test_pandas_string_dtype_gives_the_same_table(book):
    """Text columns as pandas "string" (pd.NA blanks) work like the reader's object columns."""
    tables = {name: t.astype({c: "string" for c in t.columns if t[c].dtype == object})
              for name, t in book.tables.items()}
    other = Book(source="t", tables=tables)
    for by in (None, "owner", "team"):
        pd.testing.assert_frame_equal(kpi.kpi_table(other, by=by, **Q1), kpi.kpi_table(book, by=by, **Q1))
