"""The `salessheet` command: a thin layer that parses arguments, calls the engine and renders.

Every command's work is a library call; this module only turns arguments into that call and its
result into a rich table (or JSON/CSV for machines). salessheet.Error becomes one clear line.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from . import __version__
from .errors import Error, ReadError


class _Group(click.Group):
    """Turns salessheet errors into one readable line and exit code 2, never a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except ReadError as e:
            _err(str(e))
            ctx.exit(2)
        except Error as e:
            _err(str(e))
            ctx.exit(2)


def _err(message: str) -> None:
    from rich.console import Console

    Console(stderr=True, highlight=False).print(f"[bold red]error:[/] {message}", markup=True)


def console():
    from rich.console import Console

    return Console(highlight=False)


DAYFIRST = click.option("--dayfirst/--monthfirst", default=None,
                        help="How to read text dates like 03/04/2026. Default: infer per column from "
                             "unambiguous values and report what stays ambiguous.")
FORMAT = click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True,
                      help="table for people, json for machines.")


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="salessheet")
def cli():
    """Sales tracking that lives in spreadsheets.

    Reps fill the standard workbook (salessheet new), managers get KPIs (salessheet kpi),
    admins merge team sheets into one master (salessheet sync).
    """


@cli.command()
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--team", help="Team name to put first in the Team list.")
@click.option("--force", is_flag=True, help="Overwrite PATH if it exists.")
def new(path: Path, team: str | None, force: bool):
    """Write the standard deal workbook to PATH.

    Example: salessheet new q3-deals.xlsx --team EMEA
    """
    from .template import write_template

    if path.exists() and not force:
        raise Error(f"{path} already exists; pass --force to overwrite it")
    if path.suffix.lower() not in (".xlsx", ".xlsm"):
        raise Error(f"{path}: the workbook must be an .xlsx file")
    write_template(path, team=team)
    console().print(f"Wrote [bold]{path}[/]: fill the Deals sheet, one row per deal.")


@cli.command("validate")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@DAYFIRST
@FORMAT
def validate_cmd(paths, dayfirst, fmt):
    """Check workbooks against the standard and list every problem.

    Exit status: 0 no errors (warnings allowed), 1 errors found, 2 a file could not be read.

    Example: salessheet validate teams/*.xlsx --format json
    """
    from .validate import validate

    books, unreadable = [], []
    for p in paths:
        try:
            books.append(validate(p, dayfirst=dayfirst))
        except ReadError as e:
            unreadable.append(e)
    issues = [i for b in books for i in b.issues]
    if fmt == "json":
        click.echo(json.dumps([i.to_dict() for i in issues], indent=2, ensure_ascii=False))
    else:
        from .render import issues_table

        out = console()
        for b in books:
            out.print(issues_table(b))
    for e in unreadable:
        _err(str(e))
    if unreadable:
        sys.exit(2)
    sys.exit(1 if any(i.severity == "error" for i in issues) else 0)


# --- commands below: other modules add theirs here -------------------------------------------


def main() -> None:
    cli(prog_name="salessheet")


if __name__ == "__main__":
    main()
