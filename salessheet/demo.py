"""A realistic, seeded sample: team workbooks in the standard template, with a few planted problems.

The data follows how B2B pipelines behave: more deals opened early in a quarter and closed at its end,
log-normal deal sizes that differ by team, cycle lengths of weeks to months, a win rate near 30%,
leads that convert into deals, and monthly sales and marketing spend. A handful of deliberate data
problems (a text date, an alias stage, a duplicate ID, a missing close date...) give validation
something real to say. Same seed, same workbooks.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from . import schema

TEAMS = ("North", "South", "East", "West", "Central", "Enterprise", "Partners", "Online")
FIRST = ("Ana", "Ben", "Chloe", "Dev", "Elif", "Femi", "Grace", "Hugo", "Ines", "Jon", "Kira", "Luis", "Maya",
         "Nils", "Omar", "Priya", "Quinn", "Rosa", "Sam", "Tara", "Uma", "Vik", "Wen", "Yara", "Zoe")
LAST = ("Silva", "Okafor", "Meyer", "Tanaka", "Novak", "Haddad", "Larsen", "Costa", "Ito", "Brown", "Rossi", "Khan")
COMPANY_A = ("Acme", "Globex", "Initech", "Umbrella", "Stark", "Wayne", "Tyrell", "Cyberdyne", "Soylent", "Hooli",
             "Vandelay", "Wonka", "Oscorp", "Gringotts", "Aperture", "Monarch", "Nakatomi", "Pied Piper", "Dunder",
             "Massive", "Blue Sun", "Zorg", "Virtucon", "Duff")
COMPANY_B = ("Labs", "Industries", "Systems", "Foods", "Logistics", "Health", "Bank", "Retail", "Energy", "Media",
             "Motors", "Analytics")
LOST_REASONS = ("Price", "Timing", "Competitor", "No budget", "No decision", "Feature gap")
NEXT_STEPS = ("Discovery call", "Send proposal", "Demo", "Security review", "Negotiate terms", "Follow up",
              "Legal review", "Exec sponsor meeting")


@dataclass
class TeamData:
    team: str
    tables: dict[str, pd.DataFrame]


def _quarter_end_pull(dates: pd.Series, rng: np.random.Generator, share: float = 0.35) -> pd.Series:
    """Move a share of closing dates to the last two weeks of their quarter, as real closes bunch there."""
    q_end = dates + pd.offsets.QuarterEnd(0)
    pull = rng.random(len(dates)) < share
    moved = q_end - pd.to_timedelta(rng.integers(0, 14, len(dates)), unit="D")
    return dates.where(~pull | (moved < dates), moved)


def generate(teams: int = 3, deals: int = 400, seed: int = 7, today: dt.date | None = None) -> list[TeamData]:
    """The sample: per team, Deals/Leads/Costs/Targets frames in the standard columns."""
    if not 1 <= teams <= len(TEAMS):
        raise ValueError(f"teams must be between 1 and {len(TEAMS)}")
    rng = np.random.default_rng(seed)
    today = pd.Timestamp(today or dt.date(2026, 11, 15))
    start = (today - pd.DateOffset(months=24)).normalize().replace(day=1)
    accounts = np.array(sorted({f"{a} {b}" for a in COMPANY_A for b in COMPANY_B}))
    rng.shuffle(accounts)
    people = rng.permutation([f"{f} {l}" for f in FIRST for l in LAST])
    stages = schema.DEFAULT_STAGES
    open_stages = [s for s in stages if not s.is_closed]
    won = next(s.name for s in stages if s.is_won)
    lost = next(s.name for s in stages if s.is_closed and not s.is_won)
    out = []
    for t in range(teams):
        team = TEAMS[t]
        code = team[0] if team[0] not in {x[0] for x in TEAMS[:t]} else team[:2].upper()
        owners = list(people[t * 6: t * 6 + int(rng.integers(3, 7))])
        size_mu = np.log(rng.choice([4_000, 9_000, 18_000, 40_000]))
        n = deals
        span = (today - start).days
        # Seasonality: opening dates denser in the first half of each quarter.
        # Growth: the team opens more deals each month (density rising ~3x over the two years).
        # Inverse CDF of the density (1 + 2x) / 2 on [0, 1].
        raw_days = (span * (np.sqrt(1 + 8 * rng.uniform(0, 1, n * 2)) - 1) / 2).astype(int)
        day_in_q = (start + pd.to_timedelta(raw_days, unit="D")).day_of_year % 91
        keep = rng.random(n * 2) < np.where(day_in_q < 45, 0.75, 0.45)
        created = (start + pd.to_timedelta(np.sort(raw_days[keep][:n]), unit="D")).normalize()
        n = len(created)
        cycle = np.clip(rng.lognormal(np.log(55), 0.6, n), 7, 365).round()
        close = pd.Series(created + pd.to_timedelta(cycle, unit="D"))
        close = _quarter_end_pull(close, rng)
        is_closed = (close <= today).to_numpy()
        p_win = rng.uniform(0.22, 0.38)
        is_won = is_closed & (rng.random(n) < p_win)
        stage = np.where(is_won, won, np.where(is_closed, lost, None)).astype(object)
        open_idx = np.flatnonzero(~is_closed)
        # Open deals sit further along the pipeline the nearer their expected close.
        days_left = (close.iloc[open_idx] - today).dt.days.to_numpy()
        pos = np.clip(len(open_stages) - 1 - days_left // 30 + rng.integers(-1, 2, len(open_idx)), 0,
                      len(open_stages) - 1)
        stage[open_idx] = [open_stages[i].name for i in pos]
        amount = np.round(rng.lognormal(size_mu, 0.7, n), -1)
        unit_price = rng.choice([250.0, 500.0, 1200.0])
        units = np.maximum(1, np.round(amount / unit_price))
        units_blank = rng.random(n) < 0.1
        own_prob = np.where(rng.random(n) < 0.15, rng.choice([0.2, 0.4, 0.6, 0.8, 0.9], n), np.nan)
        own_prob[is_closed] = np.nan
        expected = close.copy()
        slip = ~is_closed & (rng.random(n) < 0.3)
        expected[slip] = expected[slip] + pd.to_timedelta(rng.integers(7, 60, slip.sum()), unit="D")
        closed_date = close.where(is_closed)
        updated = closed_date.fillna(pd.Series(today - pd.to_timedelta(rng.integers(0, 20, n), unit="D")))
        updated = updated + pd.to_timedelta(rng.integers(8 * 60, 18 * 60, n), unit="min")
        ids = [f"{code}-{1001 + i}" for i in range(n)]
        acct = accounts[rng.integers(0, min(len(accounts), 40 + 30 * teams), n)]
        deals_df = pd.DataFrame({
            "Deal ID": ids,
            "Deal Name": [f"{a.split()[0]} {rng.choice(['renewal', 'expansion', 'new logo', 'pilot', 'upgrade'])}"
                          for a in acct],
            "Account": acct,
            "Owner": rng.choice(owners, n),
            "Team": team,
            "Lead Source": rng.choice(schema.DEFAULT_LEAD_SOURCES, n, p=[0.3, 0.2, 0.2, 0.1, 0.1, 0.1]),
            "Stage": stage,
            "Probability": own_prob,
            "Amount": amount,
            "Units": np.where(units_blank, np.nan, units),
            "Created Date": created,
            "Expected Close": expected.dt.normalize(),
            "Closed Date": closed_date,
            "Lost Reason": np.where(stage == lost, rng.choice(LOST_REASONS, n), None),
            "Next Step": np.where(is_closed, None, rng.choice(NEXT_STEPS, n)),
            "Last Updated": updated,
        })
        out.append(TeamData(team, {
            "Deals": deals_df,
            "Leads": _leads(deals_df, rng, owners, team, start, today),
            "Costs": _costs(team, rng, start, today, deals_df),
            "Targets": _targets(deals_df, owners, team, today, rng),
        }))
    _plant_problems(out, rng)
    return out


def _leads(deals: pd.DataFrame, rng, owners, team, start, today) -> pd.DataFrame:
    converted = deals[deals["Lead Source"] != "Outbound"]
    n_other = int(len(converted) * rng.uniform(1.4, 3.2))  # teams qualify leads differently
    created_other = start + pd.to_timedelta(rng.integers(0, (today - start).days, n_other), unit="D")
    status = rng.choice(["New", "Working", "Qualified", "Disqualified"], n_other, p=[0.15, 0.2, 0.1, 0.55])
    lead_created = converted["Created Date"] - pd.to_timedelta(rng.integers(3, 30, len(converted)), unit="D")
    df = pd.concat([
        pd.DataFrame({"Created Date": lead_created.to_numpy(), "Source": converted["Lead Source"].to_numpy(),
                      "Owner": converted["Owner"].to_numpy(), "Team": team, "Status": "Converted",
                      "Converted Date": converted["Created Date"].to_numpy(), "Deal ID": converted["Deal ID"].to_numpy()}),
        pd.DataFrame({"Created Date": created_other, "Source": rng.choice(schema.DEFAULT_LEAD_SOURCES, n_other),
                      "Owner": rng.choice(owners, n_other), "Team": team, "Status": status,
                      "Converted Date": pd.NaT, "Deal ID": None}),
    ]).sort_values("Created Date", kind="stable").reset_index(drop=True)
    df.insert(0, "Lead ID", [f"L-{team[:2].upper()}{i + 1:05d}" for i in range(len(df))])
    return df


def _costs(team, rng, start, today, deals) -> pd.DataFrame:
    months = pd.date_range(start, today, freq="MS")
    scale = deals["Amount"].median() * len(deals) / len(months) * 0.12
    rows = []
    for m in months:
        season = 1.25 if m.month in (1, 2, 9, 10) else 1.0
        rows.append((m, team, "Sales", round(scale * season * rng.uniform(0.8, 1.2), -1), "Salaries and commission"))
        rows.append((m, team, "Marketing", round(scale * 0.6 * season * rng.uniform(0.6, 1.4), -1), "Campaigns"))
    return pd.DataFrame(rows, columns=schema.COSTS.names)


def _targets(deals, owners, team, today, rng) -> pd.DataFrame:
    quarters = pd.period_range(today - pd.DateOffset(months=12), today, freq="Q")
    won = deals[deals["Stage"] == schema.WON_STAGE]
    per_q = won.groupby(won["Closed Date"].dt.to_period("Q"))["Amount"].sum()
    typical = per_q.median() if len(per_q) else 100_000.0
    rows = []
    for q in quarters:
        team_quota = round(typical * rng.uniform(0.9, 1.3), -3)
        rows.append((q.start_time, q.end_time.normalize(), None, team, team_quota))
        for o in owners:
            rows.append((q.start_time, q.end_time.normalize(), o, team, round(team_quota / len(owners), -3)))
    return pd.DataFrame(rows, columns=schema.TARGETS.names)


def _plant_problems(teams: list[TeamData], rng) -> None:
    """A few mistakes reps really make, in the first team's workbook, so validation has work to do."""
    d = teams[0].tables["Deals"].astype({"Created Date": object, "Amount": object, "Stage": object})
    won = d.index[d["Stage"] == schema.WON_STAGE]
    lost = d.index[d["Stage"] == schema.LOST_STAGE]
    opened = d.index[~d["Stage"].isin([schema.WON_STAGE, schema.LOST_STAGE])]
    if len(won) > 3 and len(lost) > 2 and len(opened) > 2:
        d.loc[won[0], "Stage"] = "won"  # alias: read as Closed Won, no issue
        d.loc[won[1], "Amount"] = f"${d.loc[won[1], 'Amount']:,.2f}"  # text amount: parsed, no issue
        c = d.loc[won[2], "Created Date"]
        d.loc[won[2], "Created Date"] = f"{c.day:02d}/{c.month:02d}/{c.year}"  # text date, inferred order
        d.loc[won[3], "Closed Date"] = pd.NaT  # error: closed without a Closed Date
        d.loc[lost[0], "Lost Reason"] = None  # warning: no lost reason
        d.loc[lost[1], "Deal ID"] = d.loc[lost[0], "Deal ID"]  # error: duplicate ID
        d.loc[opened[0], "Stage"] = "Verbal Commit"  # warning: unknown stage, counted as open
        d.loc[opened[1], "Account"] = None  # error: required field missing
    teams[0].tables["Deals"] = d


def write_demo(directory, teams: int = 3, deals: int = 400, seed: int = 7) -> list[Path]:
    """Write one standard workbook per team into `directory`; return their paths."""
    from .template import write_workbook

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for td in generate(teams=teams, deals=deals, seed=seed):
        owners = sorted(td.tables["Deals"]["Owner"].dropna().unique())
        path = directory / f"team-{td.team.lower()}.xlsx"
        write_workbook(path, tables=td.tables, team=td.team, owners=owners, teams=[td.team])
        paths.append(path)
    return paths
