"""`salessheet kpi` and `salessheet forecast` on real xlsx files written by the template writer."""
from __future__ import annotations

import csv
import io
import json

import pandas as pd
import pytest
from click.testing import CliRunner

from salessheet.cli import cli
from salessheet.kpi import KPIS
from salessheet.template import write_workbook
from test_kpi import COSTS, DEALS, LEADS, TARGETS

DATE_COLUMNS = {"Created Date", "Closed Date", "Expected Close", "Month", "Period Start", "Period End"}


def typed(rows):
    return [{k: (pd.Timestamp(v).date() if k in DATE_COLUMNS and v else v) for k, v in r.items() if v is not None}
            for r in rows]


@pytest.fixture(scope="module")
def xlsx(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "team.xlsx"
    return write_workbook(path, {"Deals": typed(DEALS), "Leads": typed(LEADS), "Costs": typed(COSTS),
                                 "Targets": typed(TARGETS)})


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def test_kpi_json_for_a_period(xlsx):
    r = run("kpi", xlsx, "--from", "2025-01-01", "--to", "2025-03-31", "--format", "json")
    assert r.exit_code == 0, r.output
    k = json.loads(r.stdout)["kpis"]
    assert list(k) == list(KPIS)
    # Same hand arithmetic as tests/test_kpi.py, through a real workbook and the reader.
    assert k["revenue"] == pytest.approx(1000 + 2500 + 4000 + 700 + 600)
    assert k["win_rate"] == pytest.approx(5 / 7)
    assert k["sales_volume"] == pytest.approx(20)
    assert k["weighted_pipeline"] == pytest.approx(2000 * 0.5 + 1000 * 0.9 + 500 * 0.2)
    assert k["conversion_rate"] == pytest.approx(2 / 5)
    assert k["cac"] == pytest.approx(8000 / 3)
    assert k["quota_attainment"] == pytest.approx(8800 / 16000)


def test_kpi_json_by_owner(xlsx):
    r = run("kpi", xlsx, "--by", "owner", "--from", "2025-01-01", "--to", "2025-03-31", "--format", "json")
    assert r.exit_code == 0, r.output
    groups = json.loads(r.stdout)["groups"]
    assert [g["owner"] for g in groups] == ["Ann", "Bob", "Cat"]
    assert list(groups[0]) == ["owner"] + list(KPIS)
    assert groups[1]["win_rate"] == pytest.approx(2 / 3)
    assert all(g["cac"] is None for g in groups)  # null: costs are per team


def test_kpi_csv_by_month(xlsx):
    r = run("kpi", xlsx, "--by", "month", "--from", "2025-01-01", "--to", "2025-03-31", "--format", "csv")
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert [row["month"] for row in rows] == ["2025-01", "2025-02", "2025-03"]
    assert float(rows[0]["revenue"]) == pytest.approx(1000)
    assert rows[1]["quota_attainment"] == ""  # undefined: no target lies within February


def test_kpi_table_output(xlsx):
    r = run("kpi", xlsx, "--from", "2025-01-01", "--to", "2025-03-31")
    assert r.exit_code == 0, r.output
    assert "Win rate" in r.stdout and "71.4%" in r.stdout  # 5/7
    assert "8,800" in r.stdout


def test_kpi_by_team_table_has_a_row_per_team(xlsx):
    r = run("kpi", xlsx, "--by", "team")
    assert r.exit_code == 0, r.output
    assert "East" in r.stdout and "West" in r.stdout


def test_kpi_bad_date_is_one_line_error(xlsx):
    r = CliRunner().invoke(cli, ["kpi", str(xlsx), "--from", "someday"])
    assert r.exit_code == 2
    assert "not a date" in r.stderr and "Traceback" not in r.output


def test_kpi_missing_tables_are_null(tmp_path):
    path = tmp_path / "deals.csv"
    pd.DataFrame(typed(DEALS)).to_csv(path, index=False)
    r = run("kpi", path, "--format", "json")
    assert r.exit_code == 0, r.output
    k = json.loads(r.stdout)["kpis"]
    assert k["conversion_rate"] is None and k["cac"] is None and k["quota_attainment"] is None
    assert k["revenue"] == pytest.approx(17200)


def test_forecast_json(xlsx):
    r = run("forecast", xlsx, "--months", "2", "--today", "2025-03-15", "--format", "json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    months = doc["months"]
    assert [m["month"] for m in months] == ["2025-03", "2025-04"]
    # March: D13 (700) and D5 (4000) won; D8 2000 x 50% and D11 1500 x 0% expected in March.
    assert months[0]["committed"] == pytest.approx(700 + 4000)
    assert months[0]["weighted_pipeline"] == pytest.approx(1000)
    # History Nov 2024 (D4 starts it) .. Feb 2025: y = 3000, 0, 1000, 2500 + 600 at x = 0..3.
    assert months[0]["method"] == "linear trend over 4 months"
    mean_x, mean_y = 1.5, (3000 + 0 + 1000 + 3100) / 4
    slope = sum((x - mean_x) * (y - mean_y) for x, y in enumerate([3000, 0, 1000, 3100])) / (2.25 + .25 + .25 + 2.25)
    assert months[0]["trend"] == pytest.approx(mean_y + slope * (4 - mean_x))
    stages = {s["stage"]: s for s in doc["stages"]}
    assert stages["Proposal"]["default_probability"] == pytest.approx(0.5)
    assert stages["Proposal"]["learned_probability"] == pytest.approx(8 / 10)  # 8 won, 2 lost


def test_forecast_table(xlsx):
    r = run("forecast", xlsx, "--today", "2025-03-15")
    assert r.exit_code == 0, r.output
    assert "2025-05" in r.stdout and "linear trend" in r.stdout and "Negotiation" in r.stdout
