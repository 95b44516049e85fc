"""Forecast tests: months ahead and learned stage probabilities, expected values worked out by hand."""
from __future__ import annotations

import pandas as pd
import pytest

from salessheet.errors import MissingTableError, ValidationError
from salessheet.forecast import forecast_months, learned_stage_probabilities
from test_kpi import LOST, WON, deal, make_book


def approx(x):
    return pytest.approx(x, rel=1e-9, abs=1e-9)


def won(i, amount, closed, owner="Ann"):
    return deal(i, f"A{i}", owner, "East", WON, amount, "2024-01-01", closed=closed)


@pytest.fixture
def book():
    return make_book([
        won(1, 1000, "2024-12-10"),
        won(2, 2000, "2025-01-20"),
        won(3, 3000, "2025-02-05"),
        won(4, 500, "2025-03-02"),  # current month: committed so far
        deal(5, "L", "Ann", "East", LOST, 900, "2025-01-01", closed="2025-02-10"),
        deal(6, "O1", "Ann", "East", "Proposal", 2000, "2025-01-01", expected="2025-03-25"),  # 50%
        deal(7, "O2", "Bob", "East", "Negotiation", 1000, "2025-01-01", expected="2025-04-10", prob=0.4),
        deal(8, "O3", "Bob", "East", "Prospecting", 5000, "2025-01-01", expected="2025-02-01"),  # overdue
        deal(9, "O4", "Bob", "East", "Prospecting", 3000, "2025-01-01", expected="2025-06-01"),  # beyond 3 months
    ])


def test_three_months_ahead_with_a_linear_trend(book):
    f = forecast_months(book, months=3, today="2025-03-15")
    assert list(f["month"]) == ["2025-03", "2025-04", "2025-05"]
    assert list(f["committed"]) == [500, 0, 0]
    assert list(f["pipeline"]) == [2000, 1000, 0]
    assert list(f["weighted_pipeline"]) == approx([2000 * 0.5, 1000 * 0.4, 0])
    assert list(f["forecast"]) == approx([500 + 1000, 400, 0])
    # History Dec, Jan, Feb = 1000, 2000, 3000: the line 1000 + 1000 x, extended to x = 3, 4, 5.
    assert list(f["trend"]) == approx([4000, 5000, 6000])
    assert set(f["method"]) == {"linear trend over 3 months"}


def test_default_months_and_today(book):
    f = forecast_months(book, today=pd.Timestamp("2025-03-31 23:59"))
    assert list(f["month"]) == ["2025-03", "2025-04", "2025-05"]
    assert len(forecast_months(book)) == 3  # real today: runs, whatever the month


def test_fewer_than_three_months_use_the_mean(book):
    f = forecast_months(book, months=2, today="2025-02-15")  # history: Dec 1000, Jan 2000
    assert list(f["trend"]) == approx([1500, 1500])
    assert set(f["method"]) == {"mean of 2 months"}
    f = forecast_months(book, months=1, today="2025-01-01")
    assert list(f["trend"]) == approx([1000]) and f["method"][0] == "mean of 1 month"


def test_no_history(book):
    f = forecast_months(book, months=2, today="2024-12-20")
    assert list(f["trend"]) == [None, None]
    assert set(f["method"]) == {"no history"}
    assert list(f["committed"]) == [1000, 2000]  # committed is REVENUE of the month, even if dated ahead


def test_months_without_wins_count_as_zero():
    b = make_book([won(1, 1000, "2024-12-10"), won(2, 3000, "2025-02-05")])
    f = forecast_months(b, months=1, today="2025-03-05")  # history 1000, 0, 3000
    slope, intercept = (3000 - 1000) / 2, 4000 / 3 - (3000 - 1000) / 2
    assert f["trend"][0] == approx(intercept + slope * 3)


def test_trend_uses_the_last_twelve_months_only():
    old = [won(i, 10_000, f"2023-0{i}-15") for i in (1, 2, 3)]
    recent = [won(10 + k, 100, str(pd.Timestamp("2023-04-15") + pd.DateOffset(months=k))[:10]) for k in range(12)]
    f = forecast_months(make_book(old + recent), months=2, today="2024-04-10")
    assert list(f["trend"]) == approx([100, 100])
    assert f["method"][0] == "linear trend over 12 months"


def test_a_falling_trend_stops_at_zero():
    b = make_book([won(1, 3000, "2025-01-10"), won(2, 2000, "2025-02-10"), won(3, 1000, "2025-03-10")])
    f = forecast_months(b, months=2, today="2025-04-01")
    assert list(f["trend"]) == approx([0, 0])  # the line gives 0 and -1000


def test_bad_months_and_missing_deals(book):
    with pytest.raises(ValidationError):
        forecast_months(book, months=0)
    from salessheet.book import Book
    with pytest.raises(MissingTableError, match="Deals"):
        forecast_months(Book(source="t"), today="2025-01-01")


# --- learned stage probabilities ---------------------------------------------------------------


@pytest.fixture
def closed_book():
    return make_book([
        won(1, 100, "2025-01-10"), won(2, 100, "2025-01-11"), won(3, 100, "2025-01-12"),
        deal(4, "L1", "Ann", "East", LOST, 100, "2025-01-01", closed="2025-01-20"),
        deal(5, "L2", "Ann", "East", LOST, 100, "2025-01-01", closed="2025-01-20"),
        deal(6, "L3", "Ann", "East", LOST, 100, "2025-01-01", closed="2025-01-20"),
        deal(7, "Open", "Ann", "East", "Negotiation", 100, "2025-01-01"),  # open: not in any sample
    ])


def _by_stage(t):
    return t.set_index("stage")


def test_learned_without_history_is_the_overall_win_rate(closed_book):
    t = _by_stage(learned_stage_probabilities(closed_book))
    assert list(t.index) == ["Prospecting", "Qualification", "Proposal", "Negotiation", "Closed Won", "Closed Lost"]
    assert list(t["default_probability"]) == approx([0.10, 0.25, 0.50, 0.75, 1.0, 0.0])
    for stage in ("Prospecting", "Qualification", "Proposal", "Negotiation"):
        assert t.loc[stage, "learned_probability"] == approx(3 / 6)
        assert t.loc[stage, "deals"] == 6 and t.loc[stage, "from_history"] == 0
    assert t.loc["Closed Won", "learned_probability"] == 1.0 and t.loc["Closed Won", "deals"] == 3
    assert t.loc["Closed Lost", "learned_probability"] == 0.0 and t.loc["Closed Lost", "deals"] == 3


def test_learned_with_history(closed_book):
    history = pd.DataFrame({
        "Deal ID": ["D4", "D4", "D6", "D6", "D1", "D99", "D5"],
        "Stage": ["Prospecting", "Proposal", "Qualification", "Closed Lost", "Prospecting", "Negotiation", "Mystery"],
        "Seen At": pd.to_datetime(["2025-01-02"] * 7),
    })
    t = _by_stage(learned_stage_probabilities(closed_book, history=history))
    # D4 reached Proposal (3), D6 Qualification (2); D5 has only an unknown stage: assumed to reach all.
    assert t.loc["Prospecting", "learned_probability"] == approx(3 / 6)
    assert t.loc["Qualification", "learned_probability"] == approx(3 / 6)
    assert t.loc["Proposal", "learned_probability"] == approx(3 / 5)  # D6 stopped before Proposal
    assert t.loc["Negotiation", "learned_probability"] == approx(3 / 4)  # D4 and D6 stopped before
    assert list(t["deals"][:4]) == [6, 6, 5, 4]
    assert list(t["from_history"][:4]) == [2, 2, 1, 0]


def test_learned_with_no_closed_deals_is_none():
    t = learned_stage_probabilities(make_book([deal(1, "A", "Ann", "E", "Proposal", 5, "2025-01-01")]))
    assert all(v is None for v in t["learned_probability"])
    assert list(t["deals"]) == [0] * 6


def test_history_needs_its_columns(closed_book):
    with pytest.raises(ValidationError, match="Deal ID"):
        learned_stage_probabilities(closed_book, history=pd.DataFrame({"Stage": ["Proposal"]}))
