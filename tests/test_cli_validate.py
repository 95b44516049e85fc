"""`salessheet validate` through click's CliRunner: exit codes, json output, day/month order, many files."""
from __future__ import annotations

import datetime as dt
import json

import pytest
from click.testing import CliRunner

from salessheet.cli import cli
from sheetmaker import deal, deals_rows, write_csv, write_xlsx

D = dt.date
KEYS = ["source", "sheet", "row", "column", "value", "severity", "message"]


def run(*args):
    # A wide terminal, so that rich does not fold long tmp paths inside the names we look for.
    return CliRunner().invoke(cli, ["validate", *map(str, args)], env={"COLUMNS": "300"})


@pytest.fixture
def clean(tmp_path):
    return write_xlsx(tmp_path / "clean.xlsx", {"Deals": deals_rows(deal(), deal(Deal_ID="D-2"))})


@pytest.fixture
def warnings_only(tmp_path):
    return write_xlsx(tmp_path / "warn.xlsx", {"Deals": deals_rows(deal(Stage="Verbal"), {}, deal(Deal_ID="D-2"))})


@pytest.fixture
def with_errors(tmp_path):
    return write_xlsx(tmp_path / "bad.xlsx", {"Deals": deals_rows(deal(Amount="lots"), deal(Deal_ID="D-1"))})


def test_clean_file_exits_0(clean):
    r = run(clean)
    assert r.exit_code == 0, r.output
    out = " ".join(r.stdout.split())  # rich wraps to the terminal width
    assert "clean.xlsx" in out and "no problems" in out and "2 rows" in out


def test_warnings_only_exits_0(warnings_only):
    r = run(warnings_only)
    assert r.exit_code == 0, r.output
    out = " ".join(r.stdout.split())  # rich wraps to the terminal width
    assert "0 error(s), 2 warning(s)" in out
    assert "Verbal" in out and "empty row" in out


def test_errors_exit_1(with_errors):
    r = run(with_errors)
    assert r.exit_code == 1, r.output
    out = " ".join(r.stdout.split())
    assert "2 error(s)" in out and "lots" in out and "used again" in out
    assert r.stderr == ""


def test_unreadable_exits_2(tmp_path, clean):
    bad = tmp_path / "bad.xlsx"
    bad.write_text("not a workbook")
    r = run(clean, bad)
    assert r.exit_code == 2
    assert r.stderr.strip().splitlines() == [f"error: {bad}: is not a valid .xlsx file (it does not start like one); "
                                             "it may be damaged or renamed from another format"]
    assert "clean.xlsx" in r.stdout


def test_json_keys_and_values(with_errors, warnings_only):
    r = run(with_errors, warnings_only, "--format", "json")
    assert r.exit_code == 1
    issues = json.loads(r.stdout)
    assert issues and all(list(i) == KEYS for i in issues)
    assert {i["source"] for i in issues} == {str(with_errors), str(warnings_only)}
    amount = next(i for i in issues if i["column"] == "Amount")
    assert amount == {"source": str(with_errors), "sheet": "Deals", "row": 2, "column": "Amount", "value": "lots",
                      "severity": "error", "message": amount["message"]}
    assert "lots" in amount["message"]
    gap = next(i for i in issues if "empty row" in i["message"])
    assert (gap["row"], gap["column"], gap["value"], gap["severity"]) == (3, None, None, "warning")


def test_json_is_an_empty_list_for_a_clean_file(clean):
    r = run("--format", "json", clean)
    assert r.exit_code == 0 and json.loads(r.stdout) == []


def test_json_dates_are_iso_text(tmp_path):
    path = write_xlsx(tmp_path / "d.xlsx", {"Deals": deals_rows(deal(Stage="won", Closed_Date=D(2025, 12, 1)))})
    r = run(path, "--format", "json")
    [issue] = json.loads(r.stdout)
    assert issue["value"] == "2025-12-01" and issue["column"] == "Closed Date"


@pytest.fixture
def slashed(tmp_path):
    # 05/03 and 04/04: day-first that is 5 March -> 4 April; month-first it is May 3 -> April 4 (closed before created).
    rows = deals_rows(deal(Stage="won", Created_Date="05/03/2026", Closed_Date="04/04/2026"))
    return write_csv(tmp_path / "slashed.csv", rows)


def test_ambiguous_dates_without_a_hint(slashed):
    r = run(slashed, "--format", "json")
    assert r.exit_code == 1
    issues = json.loads(r.stdout)
    # 04/04 reads the same either way; only 05/03 is ambiguous.
    [issue] = issues
    assert (issue["column"], issue["value"], issue["row"]) == ("Created Date", "05/03/2026", 2)
    assert "--dayfirst" in issue["message"] and "5 March" in issue["message"] and "May 3" in issue["message"]


def test_dayfirst(slashed):
    r = run(slashed, "--dayfirst", "--format", "json")
    assert r.exit_code == 0 and json.loads(r.stdout) == []


def test_monthfirst(slashed):
    r = run(slashed, "--monthfirst", "--format", "json")
    assert r.exit_code == 1
    [issue] = json.loads(r.stdout)
    assert issue["column"] == "Closed Date" and "2026-04-04" in issue["message"] and "2026-05-03" in issue["message"]


def test_several_paths_worst_exit_wins(tmp_path, clean, warnings_only, with_errors):
    assert run(clean, warnings_only).exit_code == 0
    assert run(clean, with_errors, warnings_only).exit_code == 1
    r = run(clean, with_errors, tmp_path / "missing.xlsx")
    assert r.exit_code == 2
    for name in ("clean.xlsx", "bad.xlsx"):
        assert name in r.stdout
    assert "missing.xlsx: no such file" in r.stderr


def test_no_path_is_a_usage_error():
    r = run()
    assert r.exit_code == 2 and "Missing argument" in r.output
