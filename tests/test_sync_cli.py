"""The sync and history commands through click's CliRunner, config files, and the master as LibreOffice
and a chart-holding workbook see it."""
from __future__ import annotations

import datetime as dt
import json
import zipfile

import pytest
import xlsxwriter
from click.testing import CliRunner

from salessheet.cli import cli
from salessheet.state import default_path
from salessheet.sync import RESULT_KEYS
from test_sync_support import D, by_key, deal, sheet_rows, table, team_xlsx

KEYS = {"sources", "rows_read", "added", "updated", "unchanged", "removed", "conflicts", "issues", "master",
        "duration_s"}


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture
def teams(tmp_path):
    d = tmp_path / "teams"
    d.mkdir()
    team_xlsx(d / "north.xlsx", [deal("N-1"), deal("N-2", Amount=2000.0)])
    team_xlsx(d / "south.xlsx", [deal("S-1", Amount=3000.0), deal("N-2", Amount=1.0)])  # N-2: a tie
    return d, tmp_path / "master.xlsx"


def test_json_output_has_exactly_the_documented_keys(teams):
    d, master = teams
    res = run("sync", d, "--into", master, "--format", "json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert set(out) == KEYS == set(RESULT_KEYS)
    assert all(type(out[k]) is int for k in KEYS - {"master", "duration_s"})
    assert (out["sources"], out["added"], out["conflicts"], out["master"]) == (2, 3, 1, str(master.resolve()))
    again = json.loads(run("sync", d, "--into", master, "--format", "json").output)
    assert (again["added"], again["updated"], again["removed"], again["unchanged"]) == (0, 0, 0, 3)


def test_table_output_summarises_counts_conflicts_and_issues(teams):
    d, master = teams
    res = run("sync", d, "--into", master)
    assert res.exit_code == 0
    for text in ("Synced 2 source(s)", "Added", "Conflicts", "N-2", "north.xlsx row 3", "south.xlsx row 3",
                 "same Last Updated", "wrote"):
        assert text in res.output, text
    res = run("sync", d, "--into", master)
    assert "master unchanged, not rewritten" in res.output


def test_dry_run_flag(teams):
    d, master = teams
    out = json.loads(run("sync", d, "--into", master, "--dry-run", "--format", "json").output)
    assert out["added"] == 3 and not master.exists()


def test_config_file_lists_sources_and_master(teams, tmp_path, monkeypatch):
    d, _ = teams
    (tmp_path / "salessheet.toml").write_text('sources = ["teams/north.xlsx", "teams/s*.xlsx"]\n'
                                              'master = "out/master.xlsx"\n')
    (tmp_path / "out").mkdir()
    monkeypatch.chdir(tmp_path)
    res = run("sync", "--format", "json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["sources"] == 2
    assert set(by_key(table(tmp_path / "out" / "master.xlsx"))) == {"N-1", "N-2", "S-1"}
    monkeypatch.chdir(d)  # elsewhere, the config is named explicitly; relative paths are the config's
    res = run("sync", "--config", tmp_path / "salessheet.toml", "--format", "json")
    assert json.loads(res.output)["unchanged"] == 3


def test_sources_sheet_in_the_master(teams, tmp_path):
    d, master = teams
    wb = xlsxwriter.Workbook(str(master))
    ws = wb.add_worksheet("Sources")
    ws.write_column(0, 0, ["Source", "teams/north.xlsx"])
    wb.close()
    res = run("sync", "--into", master, "--format", "json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["sources"] == 1
    assert set(by_key(table(master))) == {"N-1", "N-2"}
    assert [r[0] for r in sheet_rows(master, "Sources")] == [
        "Source", "teams/north.xlsx"]  # the admin's sheet survives


def test_errors_are_one_line_with_exit_code_2(teams):
    d, master = teams
    run("sync", d, "--into", master)
    master.with_name("~$" + master.name).write_bytes(b"x")
    res = CliRunner().invoke(cli, ["sync", str(d), "--into", str(master)])
    assert res.exit_code == 2
    assert "error:" in res.output and "open in another program" in res.output and "Traceback" not in res.output
    res = CliRunner().invoke(cli, ["sync", "--into", str(master.with_name("x.xlsx"))])
    assert res.exit_code == 2 and "no sources" in res.output


def test_history_shows_versions_stage_changes_and_time_in_stage(tmp_path):
    src, master = tmp_path / "a.xlsx", tmp_path / "m.xlsx"
    steps = [("Prospecting", D(2026, 2, 1, 9, 0)), ("Proposal", D(2026, 2, 11, 9, 0)),
             ("Proposal", D(2026, 2, 15, 9, 0)), ("Closed Won", D(2026, 2, 21, 21, 0))]
    for stage, when in steps:
        amount = 2000.0 if when.day == 15 else 1000.0
        team_xlsx(src, [deal("D-7", Stage=stage, Last_Updated=when, Amount=amount,
                             Closed_Date=when if stage == "Closed Won" else None)])
        assert run("sync", src, "--into", master).exit_code == 0
    res = run("history", "D-7", "--master", master, "--format", "json")
    h = json.loads(res.output)
    assert [v["values"]["Stage"] for v in h["versions"]] == [s for s, _ in steps]
    assert h["versions"][2]["changed"] == ["Amount", "Last Updated"]
    assert [(s["stage"], s["days"]) for s in h["stages"][:2]] == [("Prospecting", 10.0), ("Proposal", 10.5)]
    assert h["stages"][2]["stage"] == "Closed Won" and h["stages"][2]["until"] is None
    assert [v["current"] for v in h["versions"]] == [False, False, False, True]
    res = run("history", "D-7", "--state", default_path(master))
    assert res.exit_code == 0
    for text in ("4 version(s)", "Prospecting", "Closed Won", "10.0", "10.5", "now"):
        assert text in res.output, text
    res = CliRunner().invoke(cli, ["history", "NOPE", "--master", str(master)])
    assert res.exit_code == 2 and "not found" in res.output


def test_master_opened_in_libreoffice_shows_the_consolidated_rows(teams, soffice, tmp_path):
    from libreoffice import sheets_as_csv

    d, master = teams
    run("sync", d, "--into", master)
    sheets = sheets_as_csv(master, tmp_path, recalc=True, as_shown=False)
    deals = sheets["Deals"]
    head = deals[0]
    rows = {r[head.index("Deal ID")]: r for r in deals[1:] if any(r)}
    assert set(rows) == {"N-1", "N-2", "S-1"}
    assert float(rows["S-1"][head.index("Amount")]) == 3000.0
    assert rows["N-2"][head.index("Sync Status")] == "conflict"
    assert rows["N-2"][head.index("Source File")] == "north.xlsx"
    conflicts = sheets["Conflicts"]
    assert sum(1 for r in conflicts[1:] if "N-2" in r) == 2


def test_a_master_with_a_chart_keeps_it_after_syncs(teams, tmp_path, soffice):
    from libreoffice import sheets_as_csv

    d, master = teams
    wb = xlsxwriter.Workbook(str(master))
    ws = wb.add_worksheet("Report")
    ws.write_column(0, 0, ["Q1", "Q2", "Q3"])
    ws.write_column(0, 1, [10, 20, 15])
    chart = wb.add_chart({"type": "column"})
    chart.add_series({"categories": "=Report!$A$1:$A$3", "values": "=Report!$B$1:$B$3", "name": "Won"})
    ws.insert_chart("D2", chart)
    wb.close()
    with zipfile.ZipFile(master) as z:
        before = {n: z.read(n) for n in z.namelist() if n.startswith(("xl/charts/", "xl/drawings/"))}
    assert any(n.startswith("xl/charts/chart") for n in before)
    assert run("sync", d, "--into", master).exit_code == 0
    team_xlsx(d / "north.xlsx", [deal("N-1", Amount=9.0), deal("N-2", Amount=2000.0)])
    assert run("sync", d, "--into", master).exit_code == 0
    with zipfile.ZipFile(master) as z:
        after = {n: z.read(n) for n in z.namelist() if n.startswith(("xl/charts/", "xl/drawings/"))}
    assert after == before
    sheets = sheets_as_csv(master, tmp_path, as_shown=False)
    assert sheets["Report"][:3] == [["Q1", "10"], ["Q2", "20"], ["Q3", "15"]]
    assert by_key(table(master))["N-1"]["Amount"] == 9.0


def test_forecast_learns_stage_probabilities_from_sync_history(tmp_path):
    """Two syncs see D2 in Negotiation, then lost: the history says it reached Negotiation, not Proposal+."""
    from salessheet.template import write_workbook

    def deals(stage_d2, updated):
        base = {"Account": "A", "Owner": "Ana", "Amount": 100.0, "Created Date": dt.datetime(2026, 1, 1)}
        return [
            {**base, "Deal ID": "D1", "Stage": "Closed Won", "Closed Date": dt.datetime(2026, 2, 1),
             "Last Updated": dt.datetime(2026, 2, 1)},
            {**base, "Deal ID": "D2", "Stage": stage_d2, "Last Updated": updated,
             **({"Closed Date": dt.datetime(2026, 3, 1), "Lost Reason": "Price"} if stage_d2 == "Closed Lost" else {})},
            {**base, "Deal ID": "D3", "Stage": "Closed Lost", "Closed Date": dt.datetime(2026, 3, 1),
             "Lost Reason": "Price", "Last Updated": dt.datetime(2026, 3, 1)},
        ]

    team, master = tmp_path / "team.xlsx", tmp_path / "master.xlsx"
    runner = CliRunner()
    write_workbook(team, tables={"Deals": deals("Qualification", dt.datetime(2026, 1, 10))})
    assert runner.invoke(cli, ["sync", str(team), "--into", str(master)]).exit_code == 0
    write_workbook(team, tables={"Deals": deals("Closed Lost", dt.datetime(2026, 3, 1))})
    assert runner.invoke(cli, ["sync", str(team), "--into", str(master)]).exit_code == 0

    res = runner.invoke(cli, ["forecast", str(master), "--format", "json", "--today", "2026-04-01"])
    assert res.exit_code == 0, res.output
    stages = {s["stage"]: s for s in json.loads(res.output)["stages"]}
    # D1 won (reached every stage); D2 lost after reaching Qualification (history); D3 lost, no history of
    # an open stage, so assumed to have reached every open stage.
    assert stages["Qualification"]["deals"] == 3 and stages["Qualification"]["learned_probability"] == 1 / 3
    assert stages["Negotiation"]["deals"] == 2 and stages["Negotiation"]["learned_probability"] == 1 / 2
    assert stages["Qualification"]["from_history"] == 1
    without = runner.invoke(cli, ["forecast", str(team), "--format", "json", "--today", "2026-04-01"])
    plain = {s["stage"]: s for s in json.loads(without.output)["stages"]}
    assert plain["Negotiation"]["deals"] == 3  # no state beside the team file: every lost deal reached it
