"""Forecasting: the months ahead, and stage win probabilities learned from closed deals.

Pure pandas/numpy like the KPI engine, whose definitions it reuses (REVENUE, WEIGHTEDPIPELINE).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from . import kpi, schema
from .book import Book
from .errors import ValidationError

HISTORY_MONTHS = 12
MIN_TREND_MONTHS = 3


def _month_code(ts: pd.Timestamp) -> int:
    return (ts.year - 1970) * 12 + ts.month - 1


def forecast_months(book: Book, months: int = 3, today=None) -> pd.DataFrame:
    """One row per month ahead, starting with the month of ``today`` (default: the real today).

    Columns:
    - ``month``: "2025-03";
    - ``committed``: REVENUE of the month (won deals whose Closed Date is in it: for the current month,
      what is won so far);
    - ``pipeline`` / ``weighted_pipeline``: PIPELINE / WEIGHTEDPIPELINE of the month (open deals whose
      Expected Close is in it; open deals whose Expected Close has already passed are in no month);
    - ``forecast``: committed + weighted_pipeline (the FORECAST KPI for the month);
    - ``trend``: a projection of monthly won revenue from history, independent of the pipeline;
    - ``method``: how ``trend`` was made. History is the complete months before the current one, at
      most the last 12, starting at the first month with a won deal (months without wins inside it
      count as 0). With 3 or more months: a least-squares straight line, extended to each month ahead
      and floored at 0 ("linear trend over N months"); with 1-2 months: their mean ("mean of N
      months"); with none: ``trend`` is None ("no history").
    """
    if not isinstance(months, (int, np.integer)) or isinstance(months, bool) or months < 1:
        raise ValidationError(f"months must be a whole number of 1 or more, not {months!r}")
    day = kpi.Period.of(today if today is not None else pd.Timestamp.today(), None).start
    now = _month_code(pd.Timestamp(day))
    last_day = kpi.period_bounds(kpi.period_label(now + months - 1, "month"))[1]
    s = kpi.sums(book, ("closed", "open"), by="month", end=last_day, needed_for="forecast")
    ahead = [kpi.period_label(now + k, "month") for k in range(months)]
    fut = s.reindex(ahead, fill_value=0.0)

    won_months = [_code(label) for label in s.index[s["won_n"] > 0]]
    first = max(min(won_months) if won_months else now, now - HISTORY_MONTHS)
    past = [kpi.period_label(c, "month") for c in range(first, now)]
    y = s["revenue"].reindex(past, fill_value=0.0).to_numpy(dtype=float)
    n = len(y)
    if n >= MIN_TREND_MONTHS:
        slope, intercept = np.polyfit(np.arange(n, dtype=float), y, 1)
        trend = np.maximum(intercept + slope * np.arange(n, n + months), 0.0)
        method = f"linear trend over {n} months"
    elif n:
        trend, method = np.full(months, y.mean()), f"mean of {n} month{'s' if n > 1 else ''}"
    else:
        trend, method = [None] * months, "no history"
    return pd.DataFrame({
        "month": ahead,
        "committed": fut["revenue"].to_numpy(dtype=float),
        "pipeline": fut["pipeline"].to_numpy(dtype=float),
        "weighted_pipeline": fut["weighted"].to_numpy(dtype=float),
        "forecast": (fut["revenue"] + fut["weighted"]).to_numpy(dtype=float),
        "trend": pd.array([None if v is None else float(v) for v in trend], dtype=object),
        "method": method,
    })


def _code(label: str) -> int:
    return _month_code(pd.Timestamp(label + "-01"))


def _open_order(info: dict, name) -> float:
    """The Order of an open stage; NaN for a closed or unknown one."""
    f = info.get(schema.normalize(name)) if isinstance(name, str) else None
    return f[3] if f is not None and not f[0] and not f[1] else np.nan


def learned_stage_probabilities(book: Book, history: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per stage: the configured default probability beside the one learned from closed deals.

    learned = of the closed deals that reached the stage, the share that was won. "Reached" follows the
    stage Order (a deal that got to Negotiation passed Prospecting..Negotiation):
    - a won deal reached every open stage;
    - a lost deal reached the open stages up to the highest-ordered open stage ``history`` shows it in
      (``history``: a DataFrame with columns Deal ID, Stage, Seen At, e.g. from sync's deal history);
    - a lost deal with no such history is assumed to have reached every open stage, because the sheet
      only keeps its current stage. Without any history every open stage therefore learns the same value,
      the overall win rate: a lower bound of the true rate for the later stages.
    Closed stages report 1 (won) or 0 (lost) by definition. Deals at a stage not in Stages are left out.

    Columns: stage, order, closed, default_probability, learned_probability (None when no closed deal
    reached the stage), deals (the sample: closed deals that reached it), won, from_history (how many of
    the sample's lost deals had their reach from history).
    """
    st = book.stages
    info = kpi.stage_info(book)
    d = kpi.deal_facts(book, needed_for="learned stage probabilities")
    names = [n for n in st["Stage"].to_numpy(dtype=object) if isinstance(n, str) and n.strip()]
    keys = list(dict.fromkeys(schema.normalize(n) for n in names))
    label = {schema.normalize(n): n for n in reversed(names)}  # first spelling wins, like stage_info
    is_open = np.array([not info[k][0] and not info[k][1] for k in keys])
    order = np.array([info[k][3] for k in keys], dtype=float)

    reach = np.full(len(d), np.inf)  # highest open stage Order reached; inf = all of them
    known = np.zeros(len(d), dtype=bool)
    if history is not None and len(history):
        missing = {"Deal ID", "Stage"} - set(history.columns)
        if missing:
            raise ValidationError(f"stage history needs the columns Deal ID, Stage, Seen At; missing {sorted(missing)}")
        codes, uniques = pd.factorize(history["Stage"].to_numpy(dtype=object))
        h_order = np.array([_open_order(info, u) for u in uniques] + [np.nan])[codes]
        best = pd.Series(h_order).groupby(history["Deal ID"].to_numpy(dtype=object)).max()
        ids = book.table("Deals")["Deal ID"].to_numpy(dtype=object)
        seen = pd.Series(ids).map(best).to_numpy(dtype=float)
        known = d.lost & ~np.isnan(seen)
        reach = np.where(known, seen, reach)

    closed = d.won | d.lost
    reached = closed[:, None] & (reach[:, None] >= order[None, :])  # deals x stages
    n = reached.sum(axis=0)
    won = (reached & d.won[:, None]).sum(axis=0)
    from_hist = (reached & known[:, None]).sum(axis=0)
    # Closed stages: the deals sitting in them.
    stage_key = np.array([schema.normalize(s) for s in d.stage_names] + [""], dtype=object)[d.stage_code]
    for j, k in enumerate(keys):
        if not is_open[j]:
            at = stage_key == k
            n[j], won[j], from_hist[j] = at.sum(), (at & d.won).sum(), 0
    with np.errstate(invalid="ignore", divide="ignore"):
        learned = np.where(n > 0, won / np.maximum(n, 1), np.nan)
    out = pd.DataFrame({
        "stage": [label[k] for k in keys], "order": order, "closed": ~is_open,
        "default_probability": [info[k][2] for k in keys],
        "learned_probability": pd.array([None if np.isnan(v) else float(v) for v in learned], dtype=object),
        "deals": n.astype(int), "won": won.astype(int), "from_history": from_hist.astype(int),
    })
    return out.sort_values("order", kind="stable").reset_index(drop=True)
