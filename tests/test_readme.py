"""The README stays true: its two commands, its KPI definitions and its command and function lists."""
from __future__ import annotations

import inspect
import re
from pathlib import Path

from click.testing import CliRunner

from salessheet import kpi, udf
from salessheet.cli import cli

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _flat(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def setup_commands() -> list[str]:
    section = README.split("## Set up", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", section)


def test_exactly_two_setup_commands_and_ci_runs_the_test_one():
    demo, tests = setup_commands()
    assert "salessheet demo" in demo and "pytest" in tests
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()
    assert tests in ci, "the last line of .ci/run must be the README's test command, verbatim"


def test_kpi_definitions_are_quoted_from_the_engine():
    flat = _flat(README)
    for key, fn in kpi.KPIS.items():
        first = inspect.getdoc(fn).split("\n\n")[0]
        name, definition = first.split(":", 1)
        assert name == kpi.FUNCTION_NAMES[key]
        definition = _flat(definition).rstrip(".:")
        assert f"| {name} | {definition}" in flat, f"README's {name} definition differs from kpi.{fn.__name__}"


def test_every_function_and_command_is_documented():
    for name in udf.ALL_FUNCTIONS:
        assert f"| {name} | `=" in README, name
    for name in cli.commands:
        assert f"`{name}" in README, name


def test_the_demo_runs_offline(tmp_path):
    res = CliRunner().invoke(cli, ["demo", str(tmp_path / "demo"), "--teams", "2", "--deals", "60"],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert (tmp_path / "demo" / "master.xlsx").exists()
    assert len(list((tmp_path / "demo" / "teams").glob("*.xlsx"))) == 2
    assert "Win rate" in res.output and "sync" in res.output and "validate" in res.output
