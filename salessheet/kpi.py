"""The KPI engine: every sales KPI, defined once, for one scope or for every group in one pass.

Pure pandas/numpy (no spreadsheet library) so that every host, Pyodide included, runs the same code.

How it works: each KPI is a formula over a few *sums* (won count, revenue, open count, ...). The sums
come from "parts", one per kind of event, each a masked ``np.bincount`` over group codes:

- closed deals (won or lost, by Closed Date): won_n, lost_n, revenue, units, cycle_sum, cycle_n
- open deals (by Expected Close): open_n, pipeline, weighted
- leads (by Created Date): leads_n, converted_n
- costs (by Month) and new customers (by their first won deal's Closed Date): costs, customers
- targets (by Period Start..Period End): quota, quota_n

A single-KPI function computes the sums of its parts for one group (the filtered scope); ``kpi_table``
computes them for every owner/team/month/quarter at once. Both apply the same formulas, so a group's
row equals the single function called with that group as its filter.

Shared rules (every KPI):
- Filters: ``owner``/``team`` match the row's Owner/Team exactly (a blank string means no filter);
  ``start``/``end`` are inclusive days given as str, date, datetime or Timestamp (time of day ignored).
  With neither date the period is all time and rows count even when their date is blank; with a date
  given, a row with a blank date is outside the period.
- Won / lost / open come from the Stages table (the book's own, else the standard defaults), matched to
  Deals[Stage] by name: Is Won -> won; Is Closed and not Is Won -> lost; anything else, including a
  stage that is not in Stages, is open.
- Undefined values (a division by zero: no closed deals, no leads, no customers, no quota) are None,
  never 0 and never an exception. Sums over no rows are 0, which is defined.
- In ``kpi_table`` rows with a blank Owner/Team (or a blank event date for month/quarter) belong to no
  group, though they count in the ungrouped totals.
"""
from __future__ import annotations

import datetime as _dt
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from . import schema
from .book import Book
from .errors import ValidationError

GROUPINGS = ("owner", "team", "month", "quarter")
_ALL = "all"
_DAY = np.timedelta64(1, "D")
_NAT = np.datetime64("NaT", "ns")

# Spreadsheet function names, used in messages ("CAC needs the Costs table"). The forecast is
# SALESFORECAST because FORECAST is a built-in of Excel and Calc, which always wins over an add-in.
FUNCTION_NAMES = {
    "win_rate": "WINRATE", "revenue": "REVENUE", "sales_volume": "SALESVOLUME", "avg_deal_size": "AVGDEALSIZE",
    "sales_cycle_days": "SALESCYCLE", "conversion_rate": "CONVERSIONRATE", "cac": "CAC", "pipeline": "PIPELINE",
    "weighted_pipeline": "WEIGHTEDPIPELINE", "forecast": "SALESFORECAST", "sales_velocity": "SALESVELOCITY",
    "quota_attainment": "QUOTAATTAINMENT",
}

# --- inputs -------------------------------------------------------------------------------------


def _day(value, what: str) -> np.datetime64 | None:
    """A filter date as midnight datetime64[ns]; None for no bound."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NaT:
        return None
    if isinstance(value, str):
        if not value.strip():
            return None
        try:
            ts = pd.Timestamp(value.strip())
        except (ValueError, TypeError):
            raise ValidationError(f"{what} date {value!r} is not a date (use YYYY-MM-DD)") from None
    elif isinstance(value, (_dt.date, pd.Timestamp, np.datetime64)):
        ts = pd.Timestamp(value)
    else:
        raise ValidationError(f"{what} date must be a date or YYYY-MM-DD text, not {type(value).__name__}")
    if ts is pd.NaT:
        return None
    if ts.tzinfo is not None:
        ts = ts.tz_localize(None)
    return np.datetime64(ts.normalize().to_datetime64(), "ns")


def _name(value) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    value = str(value).strip()
    return value or None


@dataclass(frozen=True)
class Period:
    """Inclusive days [start, end]; None = unbounded. Compared as start <= d < end + 1 day."""

    start: np.datetime64 | None = None
    end: np.datetime64 | None = None

    @classmethod
    def of(cls, start=None, end=None) -> "Period":
        lo, hi = _day(start, "start"), _day(end, "end")
        if lo is not None and hi is not None and hi < lo:
            raise ValidationError(f"the period ends ({_iso(hi)}) before it starts ({_iso(lo)})")
        return cls(lo, hi)

    @property
    def all_time(self) -> bool:
        return self.start is None and self.end is None

    def mask(self, dates: np.ndarray) -> np.ndarray:
        if self.all_time:
            return np.ones(len(dates), dtype=bool)
        m = ~np.isnat(dates)
        if self.start is not None:
            m &= dates >= self.start
        if self.end is not None:
            m &= dates < self.end + _DAY
        return m

    def contains(self, first: np.ndarray, last: np.ndarray) -> np.ndarray:
        """Spans [first, last] that lie within the period (all of them for all time)."""
        if self.all_time:
            return np.ones(len(first), dtype=bool)
        m = ~np.isnat(first) & ~np.isnat(last)
        if self.start is not None:
            m &= first >= self.start
        if self.end is not None:
            m &= last < self.end + _DAY
        return m


def _iso(d: np.datetime64) -> str:
    return str(d.astype("datetime64[D]"))


def _dates(s: pd.Series) -> np.ndarray:
    if s.isna().all():
        return np.full(len(s), _NAT)
    return np.asarray(s, dtype="datetime64[ns]")


def _floats(s: pd.Series) -> np.ndarray:
    return pd.to_numeric(s, errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def _labels(s: pd.Series) -> np.ndarray:
    """Owner/Team/... values as an object array; blanks (None/NaN) match no filter and no group."""
    if s.dtype == object:  # the reader's text columns: blanks are already None, skip the NA scan
        return s.to_numpy()
    return s.to_numpy(dtype=object, na_value=None)  # e.g. "string" dtype, whose pd.NA has no truth value


def _eq(labels: np.ndarray, value: str) -> np.ndarray:
    return labels == value  # object == str -> bool array; None never matches


# --- shared data prep ---------------------------------------------------------------------------


@dataclass
class Deals:
    """The Deals table reduced to what the KPIs need: status masks, effective numbers, dates as arrays."""

    owner: np.ndarray
    team: np.ndarray
    account: np.ndarray
    stage_code: np.ndarray  # index into stage_names; -1 blank
    stage_names: np.ndarray  # the distinct Stage values as written
    won: np.ndarray
    lost: np.ndarray
    open: np.ndarray
    amount: np.ndarray  # blank -> 0 for sums
    units: np.ndarray  # blank -> 1
    probability: np.ndarray  # own Probability, else the stage default, else 0
    created: np.ndarray
    closed: np.ndarray
    expected: np.ndarray

    def __len__(self) -> int:
        return len(self.won)


def stage_info(book: Book) -> dict[str, tuple[bool, bool, float, float]]:
    """normalized stage name -> (is_won, is_lost, default probability, order), first row wins."""
    st = book.stages
    won = st["Is Won"].astype("boolean").fillna(False).to_numpy(dtype=bool)
    closed = st["Is Closed"].astype("boolean").fillna(False).to_numpy(dtype=bool)
    prob, order = _floats(st["Probability"]), _floats(st["Order"])
    out: dict[str, tuple[bool, bool, float, float]] = {}
    for i, name in enumerate(st["Stage"].to_numpy(dtype=object)):
        if isinstance(name, str) and name.strip():
            out.setdefault(schema.normalize(name), (bool(won[i]), bool(closed[i] and not won[i]), prob[i], order[i]))
    return out


def deal_facts(book: Book, needed_for: str = "this") -> Deals:
    """Prepare the Deals table once: won/lost/open from Stages, effective probability and units.

    Memoised on the Book while its Deals and Stages frames stay the same objects: a dashboard asks
    for hundreds of KPIs of one Book, and this preparation is most of the cost of each.
    """
    d = book.table("Deals", needed_for=needed_for)
    memo = _memo(book)
    if "deal_facts" not in memo:
        memo["deal_facts"] = _deal_facts(book, d)
    return memo["deal_facts"]


_MEMO_TABLES = ("Deals", "Stages", "Leads", "Costs", "Targets")
_MEMO_MAX = 4096


def _memo(book: Book) -> dict:
    """Per-Book memo of prepared facts and part sums, dropped as soon as any table is replaced."""
    memo = book.__dict__.setdefault("_kpi_memo", {})
    tables = tuple(book.tables.get(n) for n in _MEMO_TABLES)
    held = memo.get("tables")
    if held is None or any(a is not b for a, b in zip(held, tables)) or len(memo) > _MEMO_MAX:
        memo.clear()
        memo["tables"] = tables  # held, so their ids cannot be reused by new frames while memoised
    return memo


def _deal_facts(book: Book, d: pd.DataFrame) -> Deals:
    info = stage_info(book)
    codes, uniques = pd.factorize(_labels(d["Stage"]))
    found = [info.get(schema.normalize(u)) for u in uniques] + [None]  # last slot: code -1 (blank stage)
    won_u = np.array([f is not None and f[0] for f in found], dtype=bool)
    lost_u = np.array([f is not None and f[1] for f in found], dtype=bool)
    prob_u = np.array([f[2] if f is not None and not math.isnan(f[2]) else 0.0 for f in found], dtype=float)
    won, lost = won_u[codes], lost_u[codes]
    own = _floats(d["Probability"])
    amount, units = _floats(d["Amount"]), _floats(d["Units"])
    return Deals(
        owner=_labels(d["Owner"]), team=_labels(d["Team"]), account=_labels(d["Account"]),
        stage_code=codes, stage_names=np.asarray(uniques, dtype=object),
        won=won, lost=lost, open=~(won | lost),
        amount=np.nan_to_num(amount, nan=0.0), units=np.where(np.isnan(units), 1.0, units),
        probability=np.where(np.isnan(own), prob_u[codes], own),
        created=_dates(d["Created Date"]), closed=_dates(d["Closed Date"]), expected=_dates(d["Expected Close"]),
    )


# --- grouping -----------------------------------------------------------------------------------


def _period_codes(dates: np.ndarray, by: str) -> np.ndarray:
    """Months (or quarters) since 1970 as int64; NaT -> int64 min."""
    m = dates.astype("datetime64[M]").astype(np.int64)
    nat = np.isnat(dates)
    if by == "quarter":
        m = m // 3
    m[nat] = np.iinfo(np.int64).min
    return m


def period_label(code: int, by: str) -> str:
    if by == "quarter":
        return f"{1970 + code // 4}-Q{code % 4 + 1}"
    return f"{1970 + code // 12:04d}-{code % 12 + 1:02d}"


def period_bounds(label: str) -> tuple[pd.Timestamp, pd.Timestamp]:
    """First and last day of a kpi_table month ("2025-03") or quarter ("2025-Q1") label."""
    if "-Q" in label:
        year, q = label.split("-Q")
        first = pd.Timestamp(int(year), 3 * int(q) - 2, 1)
        return first, first + pd.offsets.QuarterEnd(0)
    first = pd.Timestamp(label + "-01")
    return first, first + pd.offsets.MonthEnd(0)


def _sum_by(by: str | None, labels: np.ndarray | None, dates: np.ndarray | None, mask: np.ndarray,
            cols: dict[str, np.ndarray]) -> pd.DataFrame:
    """Per-group sums of the masked rows: one bincount per column. Index = group label; `_n` = row count."""
    idx = np.flatnonzero(mask)
    if by is None:
        codes, index = np.zeros(len(idx), dtype=np.int64), pd.Index([_ALL])
    elif by in ("owner", "team"):
        codes, uniques = pd.factorize(labels[idx])
        index = pd.Index(uniques, dtype=object)
    else:
        p = _period_codes(dates[idx], by)
        valid = p != np.iinfo(np.int64).min
        lo = int(p[valid].min()) if valid.any() else 0
        codes = np.where(valid, p - lo, -1)
        size = int(codes.max()) + 1 if valid.any() else 0
        index = pd.Index([period_label(lo + k, by) for k in range(size)], dtype=object)
    keep = codes >= 0
    codes, idx = codes[keep], idx[keep]
    n = len(index)
    out = {"_n": np.bincount(codes, minlength=n).astype(float)}
    for name, values in cols.items():
        out[name] = np.bincount(codes, weights=values[idx], minlength=n)
    df = pd.DataFrame(out, index=index)
    return df if by is None else df[df["_n"] > 0]


@dataclass(frozen=True)
class _Scope:
    by: str | None
    owner: str | None
    team: str | None
    period: Period

    def mask(self, owner: np.ndarray, team: np.ndarray) -> np.ndarray:
        m = np.ones(len(owner), dtype=bool)
        if self.owner is not None:
            m &= _eq(owner, self.owner)
        if self.team is not None:
            m &= _eq(team, self.team)
        return m

    def labels(self, owner: np.ndarray, team: np.ndarray) -> np.ndarray | None:
        return owner if self.by == "owner" else team if self.by == "team" else None


# --- parts: the sums each KPI is computed from ----------------------------------------------------


def _closed_part(d: Deals, sc: _Scope) -> pd.DataFrame:
    m = (d.won | d.lost) & sc.period.mask(d.closed) & sc.mask(d.owner, d.team)
    won = d.won.astype(float)
    cycle = (d.closed - d.created) / _DAY
    has_cycle = d.won & ~np.isnan(cycle)
    return _sum_by(sc.by, sc.labels(d.owner, d.team), d.closed, m, {
        "won_n": won, "lost_n": d.lost.astype(float), "revenue": won * d.amount, "units": won * d.units,
        "cycle_sum": np.where(has_cycle, cycle, 0.0), "cycle_n": has_cycle.astype(float)})


def _open_part(d: Deals, sc: _Scope) -> pd.DataFrame:
    m = d.open & sc.period.mask(d.expected) & sc.mask(d.owner, d.team)
    return _sum_by(sc.by, sc.labels(d.owner, d.team), d.expected, m, {
        "open_n": np.ones(len(d)), "pipeline": d.amount, "weighted": d.amount * d.probability})


def _leads_part(book: Book, sc: _Scope, needed_for: str) -> pd.DataFrame:
    leads = book.table("Leads", needed_for=needed_for)
    owner, team, created = _labels(leads["Owner"]), _labels(leads["Team"]), _dates(leads["Created Date"])
    s_codes, s_uniques = pd.factorize(_labels(leads["Status"]))
    conv_u = np.array([schema.normalize(u) == schema.normalize(schema.CONVERTED_STATUS) for u in s_uniques] + [False])
    m = sc.period.mask(created) & sc.mask(owner, team)
    return _sum_by(sc.by, sc.labels(owner, team), created, m, {
        "leads_n": np.ones(len(leads)), "converted_n": conv_u[s_codes].astype(float)})


def _account_key(name) -> str:
    s = str(name).casefold()
    return " ".join(s.split()) if "  " in s or s != s.strip() else s


def _first_won(d: Deals) -> np.ndarray:
    """Row positions of each account's first won deal (earliest Closed Date, then sheet order)."""
    rows = np.flatnonzero(d.won)
    codes, uniques = pd.factorize(d.account[rows])
    # Accounts match case- and space-insensitively ("ACME Corp" is "Acme  corp").
    norm_codes, keys = pd.factorize(np.array([_account_key(u) for u in uniques] + [None], dtype=object))
    codes = norm_codes[codes]  # code -1 (blank account) maps to the None slot, -1 again
    rows, codes = rows[codes >= 0], codes[codes >= 0]
    if not len(rows):
        return rows
    day = d.closed[rows].astype("datetime64[D]").astype(np.int64)
    nat = np.isnat(d.closed[rows])
    lo, hi = (day[~nat].min(), day[~nat].max()) if (~nat).any() else (0, 0)
    day = np.where(nat, hi + 1, day) - lo  # a blank Closed Date sorts last
    key = day * len(d) + rows  # (day, sheet row) in one int64: the smallest is the first won deal
    best = np.full(len(keys), np.iinfo(np.int64).max)
    np.minimum.at(best, codes, key)
    return best[best != np.iinfo(np.int64).max] % len(d)


def _cac_part(book: Book, d: Deals, sc: _Scope, needed_for: str) -> pd.DataFrame:
    costs = book.table("Costs", needed_for=needed_for)
    team = _labels(costs["Team"])
    month = _dates(costs["Month"]).astype("datetime64[M]").astype("datetime64[ns]")  # a cost row is its month
    no_owner = np.full(len(costs), None, dtype=object)
    cost_sums = _sum_by(sc.by, sc.labels(no_owner, team), month, sc.period.mask(month) & sc.mask(no_owner, team),
                        {"costs": np.nan_to_num(_floats(costs["Amount"]), nan=0.0)})
    rows = _first_won(d)
    closed, owner_f, team_f = d.closed[rows], d.owner[rows], d.team[rows]
    m = sc.period.mask(closed) & sc.mask(owner_f, team_f)
    customers = _sum_by(sc.by, sc.labels(owner_f, team_f), closed, m, {"customers": np.ones(len(rows))})
    return cost_sums.rename(columns={"_n": "_costs_n"}).join(
        customers.rename(columns={"_n": "_cust_n"}), how="outer")


def _overlapped(rows: np.ndarray, by: np.ndarray, first: np.ndarray, last: np.ndarray,
                team: np.ndarray | None = None) -> np.ndarray:
    """Which `rows` share some day with one of the `by` rows (of the same team when `team` is given)."""
    a = pd.DataFrame({"i": np.flatnonzero(rows), "f": first[rows], "l": last[rows]})
    b = pd.DataFrame({"f2": first[by], "l2": last[by]})
    if team is None:
        j = a.merge(b, how="cross")
    else:
        a["t"], b["t"] = team[rows], team[by]
        j = a.merge(b, on="t")
    out = np.zeros(len(rows), dtype=bool)
    out[j["i"][(j["f2"] <= j["l"]) & (j["l2"] >= j["f"])].to_numpy(dtype=np.int64)] = True
    return out


def _quota_part(book: Book, sc: _Scope, needed_for: str) -> pd.DataFrame:
    t = book.table("Targets", needed_for=needed_for)
    owner, team = _labels(t["Owner"]), _labels(t["Team"])
    first, last = _dates(t["Period Start"]), _dates(t["Period End"])
    ok = sc.period.contains(first, last)
    if sc.by in ("month", "quarter"):  # a target belongs to the month/quarter it lies within
        ok &= ~np.isnat(first) & (_period_codes(first, sc.by) == _period_codes(last, sc.by))
    o_set, t_set = ~pd.isna(owner), ~pd.isna(team)
    company, team_rows, rep_rows = ok & ~o_set & ~t_set, ok & ~o_set & t_set, ok & o_set
    if sc.owner is not None or sc.by == "owner":
        m = rep_rows & (_eq(owner, sc.owner) if sc.owner is not None else True)
        if sc.team is not None:
            m &= _eq(team, sc.team) | ~t_set
    elif sc.team is not None or sc.by == "team":
        m = (team_rows | rep_rows & ~_overlapped(rep_rows, team_rows, first, last, team)) & (
            _eq(team, sc.team) if sc.team is not None else t_set)
    else:  # a broader target replaces the narrower ones it overlaps
        m = (company | team_rows & ~_overlapped(team_rows, company, first, last)
             | rep_rows & ~_overlapped(rep_rows, company, first, last)
             & ~_overlapped(rep_rows, team_rows, first, last, team))
    quota = np.nan_to_num(_floats(t["Quota"]), nan=0.0)
    labels = owner if sc.by == "owner" else team if sc.by == "team" else None
    return _sum_by(sc.by, labels, first, m, {"quota": quota}).rename(columns={"_n": "quota_n"})


_PART_COLUMNS = {
    "closed": ("won_n", "lost_n", "revenue", "units", "cycle_sum", "cycle_n"),
    "open": ("open_n", "pipeline", "weighted"),
    "leads": ("leads_n", "converted_n"),
    "cac": ("costs", "customers"),
    "quota": ("quota", "quota_n"),
}
_PART_TABLES = {"closed": ("Deals",), "open": ("Deals",), "leads": ("Leads",), "cac": ("Deals", "Costs"),
                "quota": ("Targets",)}


def sums(book: Book, parts=tuple(_PART_COLUMNS), by: str | None = None, owner=None, team=None, start=None,
         end=None, strict: bool = True, needed_for: str = "this") -> pd.DataFrame:
    """The sums every KPI is computed from, per group (one row "all" when by is None).

    ``strict``: a part whose table is missing raises MissingTableError; otherwise its columns are NaN.
    """
    if by is not None and by not in GROUPINGS:
        raise ValidationError(f"cannot group by {by!r}; use one of: {', '.join(GROUPINGS)}")
    sc = _Scope(by, _name(owner), _name(team), Period.of(start, end))
    frames, missing = [], []
    d = None
    for part in parts:
        if part == "cac" and (sc.owner is not None or by == "owner"):
            if strict:
                raise ValidationError(f"{needed_for} cannot be filtered by owner: costs are recorded per team")
            missing.append(part)
            continue
        if not strict and not all(book.has(t) for t in _PART_TABLES[part]):
            missing.append(part)
            continue
        key = ("part", part, sc.by, sc.owner, sc.team, sc.period.start, sc.period.end)
        memo = _memo(book)
        f = memo.get(key)
        if f is None:
            if part in ("closed", "open", "cac") and d is None:
                d = deal_facts(book, needed_for)
            if part == "closed":
                f = _closed_part(d, sc)
            elif part == "open":
                f = _open_part(d, sc)
            elif part == "leads":
                f = _leads_part(book, sc, needed_for)
            elif part == "cac":
                f = _cac_part(book, d, sc, needed_for)
            else:
                f = _quota_part(book, sc, needed_for)
            f = memo[key] = f[[c for c in f.columns if not c.startswith("_")]]
        frames.append(f)
    out = pd.concat(frames, axis=1, join="outer").fillna(0.0) if frames else pd.DataFrame(index=pd.Index([_ALL]))
    for part in missing:
        for c in _PART_COLUMNS[part]:
            out[c] = np.nan
    if by is not None:
        out = out.sort_index()
    return out


# --- formulas: each KPI defined once, on sums ---------------------------------------------------


def _div(a, b):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(b != 0, a / np.where(b != 0, b, 1.0), np.nan)


def _f_win_rate(s):
    return _div(s["won_n"], s["won_n"] + s["lost_n"])


def _f_avg_deal_size(s):
    return _div(s["revenue"], s["won_n"])


def _f_sales_cycle(s):
    return _div(s["cycle_sum"], s["cycle_n"])


def _f_sales_velocity(s):
    return _div(s["open_n"] * _f_avg_deal_size(s) * _f_win_rate(s), _f_sales_cycle(s))


def _f_quota(s):
    return _div(s["revenue"], np.where(s["quota_n"] > 0, s["quota"], 0.0))


_FORMULAS = {
    "win_rate": (("closed",), _f_win_rate),
    "revenue": (("closed",), lambda s: s["revenue"].to_numpy(dtype=float)),
    "sales_volume": (("closed",), lambda s: s["units"].to_numpy(dtype=float)),
    "avg_deal_size": (("closed",), _f_avg_deal_size),
    "sales_cycle_days": (("closed",), _f_sales_cycle),
    "conversion_rate": (("leads",), lambda s: _div(s["converted_n"], s["leads_n"])),
    "cac": (("cac",), lambda s: _div(s["costs"], s["customers"])),
    "pipeline": (("open",), lambda s: s["pipeline"].to_numpy(dtype=float)),
    "weighted_pipeline": (("open",), lambda s: s["weighted"].to_numpy(dtype=float)),
    "forecast": (("closed", "open"), lambda s: (s["revenue"] + s["weighted"]).to_numpy(dtype=float)),
    "sales_velocity": (("closed", "open"), _f_sales_velocity),
    "quota_attainment": (("closed", "quota"), _f_quota),
}


def _scalar(key: str, book: Book, owner, team, start, end) -> float | None:
    parts, formula = _FORMULAS[key]
    s = sums(book, parts, None, owner, team, start, end, strict=True, needed_for=FUNCTION_NAMES[key])
    v = float(np.asarray(formula(s))[0])
    return None if math.isnan(v) else v


# --- the KPIs -----------------------------------------------------------------------------------


def win_rate(book: Book, owner=None, team=None, start=None, end=None) -> float | None:
    """WINRATE: won / (won + lost) over the deals closed (won or lost) whose Closed Date is in the period.

    Open deals never count. None when no deal closed in the period.
    """
    return _scalar("win_rate", book, owner, team, start, end)


def revenue(book: Book, owner=None, team=None, start=None, end=None) -> float | None:
    """REVENUE: the sum of Amount of the won deals whose Closed Date is in the period (0 when none)."""
    return _scalar("revenue", book, owner, team, start, end)


def sales_volume(book: Book, owner=None, team=None, start=None, end=None) -> float | None:
    """SALESVOLUME: the sum of Units of the won deals whose Closed Date is in the period; a blank Units
    counts as 1 (0 when no deal was won)."""
    return _scalar("sales_volume", book, owner, team, start, end)


def avg_deal_size(book: Book, owner=None, team=None, start=None, end=None) -> float | None:
    """AVGDEALSIZE: REVENUE / the number of won deals whose Closed Date is in the period.

    None when no deal was won in the period.
    """
    return _scalar("avg_deal_size", book, owner, team, start, end)


def sales_cycle(book: Book, owner=None, team=None, start=None, end=None) -> float | None:
    """SALESCYCLE: the mean of (Closed Date - Created Date) in days over the won deals whose Closed Date is
    in the period (deals without a Created Date are left out). None when there is no such deal."""
    return _scalar("sales_cycle_days", book, owner, team, start, end)


def conversion_rate(book: Book, owner=None, team=None, start=None, end=None) -> float | None:
    """CONVERSIONRATE: of the leads whose Created Date is in the period (filtered by the lead's own Owner
    and Team), the share whose Status is Converted. Needs the Leads table; None when there are no leads."""
    return _scalar("conversion_rate", book, owner, team, start, end)


def cac(book: Book, owner=None, team=None, start=None, end=None) -> float | None:
    """CAC: the sum of Costs Amount (Sales + Marketing) whose Month is in the period, divided by the number
    of new customers in the period.

    A cost row stands for its whole month: it counts when the first day of its Month is in the period.
    A new customer is an Account (matched ignoring case and extra spaces) whose first-ever won deal
    (earliest Closed Date, ties by sheet row) closed in the period. A team filter applies to the costs'
    Team and to the team of that first won deal. Costs are per team, so an owner filter raises
    ValidationError. Needs the Costs table; None when there is no new customer.
    """
    return _scalar("cac", book, owner, team, start, end)


def pipeline(book: Book, owner=None, team=None, start=None, end=None) -> float | None:
    """PIPELINE: the sum of Amount of the open deals whose Expected Close is in the period (0 when none)."""
    return _scalar("pipeline", book, owner, team, start, end)


def weighted_pipeline(book: Book, owner=None, team=None, start=None, end=None) -> float | None:
    """WEIGHTEDPIPELINE: the sum of Amount x Probability over the PIPELINE deals (open, Expected Close in
    the period). A deal's own Probability wins over its stage's default Probability from Stages; a deal
    with no own Probability whose stage is not in Stages counts with probability 0."""
    return _scalar("weighted_pipeline", book, owner, team, start, end)


def forecast(book: Book, owner=None, team=None, start=None, end=None) -> float | None:
    """SALESFORECAST: REVENUE of the period + WEIGHTEDPIPELINE of the period."""
    return _scalar("forecast", book, owner, team, start, end)


def sales_velocity(book: Book, owner=None, team=None, start=None, end=None) -> float | None:
    """SALESVELOCITY: open deals x AVGDEALSIZE x WINRATE / SALESCYCLE, in revenue per day.

    "Open deals" are the PIPELINE deals: open, matching the owner/team filter, Expected Close in the
    period (all open deals for all time). None when AVGDEALSIZE, WINRATE or SALESCYCLE is undefined or
    SALESCYCLE is 0.
    """
    return _scalar("sales_velocity", book, owner, team, start, end)


def quota_attainment(book: Book, owner=None, team=None, start=None, end=None) -> float | None:
    """QUOTAATTAINMENT: REVENUE / Quota, the Quota summed over the Targets rows that lie within the
    period (Period Start and Period End both in it; every row for all time) and match the scope, where a
    broader target replaces the narrower ones it overlaps in time:

    - owner given: that Owner's rows (with a team filter too: their Team is it or blank);
    - team given: the team's rows (Owner blank), plus its reps' rows (Owner set, same Team) that no
      team row overlaps;
    - neither: the company rows (Owner and Team blank), plus the team rows no company row overlaps, plus
      the rep rows that neither a company row nor a row of their team overlaps.

    Rows that do not overlap add up (Jan + Feb + Mar targets make a Q1 quota). In kpi_table by
    month/quarter a target counts in the month/quarter it lies within. Needs the Targets table; None when
    no target matches or the Quota is 0.
    """
    return _scalar("quota_attainment", book, owner, team, start, end)


KPIS = {
    "win_rate": win_rate,
    "revenue": revenue,
    "sales_volume": sales_volume,
    "avg_deal_size": avg_deal_size,
    "sales_cycle_days": sales_cycle,
    "conversion_rate": conversion_rate,
    "cac": cac,
    "pipeline": pipeline,
    "weighted_pipeline": weighted_pipeline,
    "forecast": forecast,
    "sales_velocity": sales_velocity,
    "quota_attainment": quota_attainment,
}


def kpi_table(book: Book, by: str | None = None, start=None, end=None) -> pd.DataFrame:
    """Every KPI for every group in one vectorised pass.

    ``by``: None (one row), "owner", "team", "month" or "quarter". A month/quarter group holds the events
    that fall in it: Closed Date for closed deals, Expected Close for open deals, Created Date for leads,
    Month for costs, the first won deal's Closed Date for new customers; a target counts in the
    month/quarter it lies within. Groups are labelled "2025-03" / "2025-Q1" (see period_bounds) and appear
    when they have at least one event in the period. A KPI whose table is missing is an all-None column;
    so is CAC by owner (costs are per team). Undefined values are None; columns are object dtype.
    A group's row equals the single KPI function called with that group as its filter.
    """
    s = sums(book, tuple(_PART_COLUMNS), by, None, None, start, end, strict=False)
    cols = {} if by is None else {by: s.index.to_numpy(dtype=object)}
    for key, (_, formula) in _FORMULAS.items():
        cols[key] = np.asarray(formula(s), dtype=float)
    out = pd.DataFrame(cols)
    kp = list(KPIS)
    out[kp] = out[kp].astype(object).where(out[kp].notna(), None)
    return out
