"""The `salessheet` command: a thin layer that parses arguments, calls the engine and renders.

Every command's work is a library call; this module only turns arguments into that call and its
result into a rich table (or JSON/CSV for machines). salessheet.Error becomes one clear line.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from . import __version__, render
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
    from rich.markup import escape

    # soft_wrap: one line per error whatever the terminal width; escape: paths may hold "[...]".
    Console(stderr=True, highlight=False, soft_wrap=True).print(f"[bold red]error:[/] {escape(message)}", markup=True)


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
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path), required=False)
@click.option("--team", help="Team name to put first in the Team list.")
@click.option("--force", is_flag=True, help="Overwrite PATH if it exists.")
@click.option("--google", is_flag=True, help="Create it as a new Google Sheet instead of a file; prints its URL.")
@click.option("--title", help="With --google: the spreadsheet's title.")
@click.option("--share", multiple=True, metavar="EMAIL", help="With --google: give EMAIL edit access (repeatable).")
@click.option("--credentials", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="With --google: a service-account key or OAuth file (default: GOOGLE_APPLICATION_CREDENTIALS, "
                   "then gspread's files in ~/.config/gspread).")
def new(path: Path | None, team: str | None, force: bool, google: bool, title: str | None, share: tuple,
        credentials: Path | None):
    """Write the standard deal workbook to PATH, or create it as a Google Sheet with --google.

    Example: salessheet new q3-deals.xlsx --team EMEA
    Example: salessheet new --google --title "EMEA deals" --share rep@example.com
    """
    if google:
        from . import gsheets
        from .gsheets_template import create_template

        if path is not None:
            raise Error("give either PATH or --google, not both")
        client = gsheets.connect(credentials)
        key, url = create_template(title, share=share, team=team, client=client)
        for w in client.warnings:
            _err(f"warning: {w}")
        console().print(f"Created Google Sheet [bold]{title or key}[/]: {url}"
                        + (f" (shared with {', '.join(share)})" if share else ""), soft_wrap=True)
        return
    if path is None or title or share or credentials:
        raise Error("give the PATH of the workbook to write (or --google to create a Google Sheet)")
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


@cli.command("sync")
@click.argument("sources", nargs=-1, metavar="[SOURCE]...")
@click.option("--into", type=click.Path(dir_okay=False, path_type=Path),
              help="The master: an .xlsx file (created if missing) or a Google Sheet (gsheet:KEY or its URL).")
@click.option("--state", type=click.Path(dir_okay=False, path_type=Path),
              help="The sync state store (default: MASTER.salessheet.db beside the master).")
@click.option("--config", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A salessheet.toml with sources = [...] and master = \"...\" "
                   "(default: ./salessheet.toml when no SOURCE is given).")
@click.option("--dry-run", is_flag=True, help="Report what would change; write nothing.")
@click.option("--prune", is_flag=True, help="Delete rows gone from their source instead of marking them.")
@click.option("--assign-ids", is_flag=True, help="Write generated IDs into source rows that have none.")
@click.option("--wait", type=float, default=30.0, show_default=True,
              help="Seconds to wait for another sync of the same master to finish.")
@click.option("--credentials", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="For Google Sheets sources or master (gsheet:KEY or URLs): a service-account key or OAuth file.")
@FORMAT
def sync_cmd(sources, into, state, config, dry_run, prune, assign_ids, wait, credentials, fmt):
    """Merge team workbooks into one master workbook.

    SOURCE: .xlsx/.xlsm/.csv files, folders (every spreadsheet inside) or globs. Rows are matched by
    Deal ID; rows gone from their source stay, marked; conflicts and issues get their own sheets.

    Example: salessheet sync teams/ --into master.xlsx
    """
    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table
    from rich.text import Text

    from .sources_config import resolve_args
    from .sync import sync

    from . import gsheets  # no gspread import unless a Google sheet is used

    gsheets.use(credentials=credentials)
    sources, into, state = resolve_args(sources, into, state, config)
    # No refresh thread: sources may be read in forked worker processes.
    with Progress(console=Console(stderr=True), transient=True, disable=fmt == "json", auto_refresh=False) as bar:
        task = bar.add_task("Reading sources", total=None)

        def progress(done, total, name):
            bar.update(task, total=total, completed=done, description=f"Read {name}")
            bar.refresh()

        res = sync(sources, into, state=state, dry_run=dry_run, prune=prune, assign_ids=assign_ids,
                   progress=progress, wait=wait)
    if fmt == "json":
        click.echo(json.dumps(res.to_dict()))
        return
    out = console()
    counts = res.to_dict()
    t = Table(title=f"{'Dry run: would sync' if dry_run else 'Synced'} {res.sources} source(s) into {res.master.name}",
              title_justify="left", header_style="bold")
    for k in ("rows_read", "added", "updated", "unchanged", "removed", "conflicts", "issues"):
        t.add_column(k.replace("_", " ").capitalize(), justify="right")
    t.add_row(*(f"{counts[k]:,}" for k in ("rows_read", "added", "updated", "unchanged", "removed", "conflicts",
                                          "issues")))
    out.print(t)
    for note in res.notes:
        out.print(Text(f"note: {note}"))
    if res.conflicts:
        ct = Table(title="Conflicts (all versions are in the master's Conflicts sheet)", title_justify="left",
                   header_style="bold")
        for c in ("Table", "Key", "Chosen", "Other versions", "Why"):
            ct.add_column(c, overflow="fold")
        for c in res.conflicts[:20]:
            chosen = next(v for v in c.versions if v["chosen"])
            others = ", ".join(f"{v['source']} row {v['row']}" for v in c.versions if not v["chosen"])
            ct.add_row(c.table, Text(c.key), Text(f"{chosen['source']} row {chosen['row']}"), Text(others),
                       Text(c.reason))
        out.print(ct)
    errors = sum(i.severity == "error" for i in res.issues)
    if res.issues:
        out.print(f"{errors} error(s), {len(res.issues) - errors} warning(s): see the Issues sheet"
                  + (" (first 10 below)" if len(res.issues) > 10 else ""))
        for i in res.issues[:10]:
            out.print(Text(f"  {i}"))
    write = "nothing written (dry run)" if dry_run else (
        f"wrote {res.master}" if res.wrote_master else "master unchanged, not rewritten")
    out.print(f"{write} in {res.duration_s:.2f}s ({res.skipped_sources} source(s) unchanged since the last sync)")


def _when(iso) -> str:
    """'2026-02-11T09:00:00' -> '2026-02-11 09:00' (dates stay dates)."""
    return "" if not iso else str(iso).replace("T", " ")[:16]


@cli.command("history")
@click.argument("key", metavar="DEAL-ID")
@click.option("--master", type=click.Path(dir_okay=False, path_type=Path),
              help="The master workbook whose state store to read.")
@click.option("--state", type=click.Path(dir_okay=False, path_type=Path), help="The sync state store to read.")
@click.option("--table", type=click.Choice(["Deals", "Leads", "Costs", "Targets"]), default="Deals",
              show_default=True, help="Which table the key belongs to.")
@FORMAT
def history_cmd(key, master, state, table, fmt):
    """Show every version of a deal that sync has seen, its stage changes and the time spent in each stage.

    Example: salessheet history N-1001 --master master.xlsx
    """
    from rich.table import Table
    from rich.text import Text

    from .sources_config import state_for
    from .state import row_history

    h = row_history(state_for(state, master), key, table)
    if fmt == "json":
        click.echo(json.dumps(h, indent=2, ensure_ascii=False, default=str))
        return
    from .schema import DEALS

    out = console()
    stage, amount_col, updated = (DEALS.column(c).name for c in ("Stage", "Amount", "Last Updated"))
    vt = Table(title=f"{table} {key}: {len(h['versions'])} version(s)", title_justify="left", header_style="bold")
    for c in ("First seen", "Last seen", "Source", "Row", stage, amount_col, updated, "Changed"):
        vt.add_column(c, overflow="fold")
    for v in h["versions"]:
        vals = v["values"]
        amount = vals.get(amount_col)
        vt.add_row(_when(v["first_seen"]), "now" if v["current"] else _when(v["last_seen"]), Text(v["source"]),
                   str(v["row"] or ""), Text(str(vals.get(stage) or "")),
                   f"{amount:,.2f}" if isinstance(amount, float) else Text(str(amount or "")),
                   _when(vals.get(updated)), Text(", ".join(v["changed"]) or "(first)"))
    out.print(vt)
    if h["stages"]:
        st = Table(title="Stages", title_justify="left", header_style="bold")
        for c in ("Stage", "Since", "Until", "Days"):
            st.add_column(c, justify="right" if c == "Days" else "left")
        for s in h["stages"]:
            st.add_row(Text(str(s["stage"] or "(none)")), _when(s["since"]), _when(s["until"]) or "now",
                       f"{s['days']:.1f}")
        out.print(st)


@cli.command("recalc")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the recalculated workbook here instead of replacing PATH.")
@FORMAT
def recalc_cmd(path: Path, out: Path | None, fmt: str):
    """Compute the salessheet formulas (=WINRATE() ...) in a workbook and store their values in the file,
    so viewers that do not recalculate show current numbers. Formulas, tables and formatting stay.

    Example: salessheet recalc q3-deals.xlsx --out q3-shared.xlsx
    """
    from rich.table import Table
    from rich.text import Text

    from .recalc import recalc

    res = recalc(path, out)
    if fmt == "json":
        click.echo(json.dumps(res.to_dict(), indent=2, ensure_ascii=False, default=str))
        return
    con = console()
    if res.cells:
        t = Table(title=f"{len(res.cells)} cell(s) recalculated", title_justify="left", header_style="bold")
        for c in ("Sheet", "Cell", "Formula", "Value"):
            t.add_column(c, overflow="fold")
        for c in res.cells:
            v = c.value
            shown = (f"{c.error} {c.message}" if c.error else f"{len(v)}x{len(v[0]) if v else 0} array"
                     if isinstance(v, list) else f"{v:,.6g}" if isinstance(v, float) else str(v))
            t.add_row(Text(c.sheet), c.cell, Text(c.formula), Text(shown))
        con.print(t)
    if res.skipped:
        t = Table(title=f"{len(res.skipped)} cell(s) left as they were", title_justify="left", header_style="bold")
        for c in ("Sheet", "Cell", "Formula", "Why"):
            t.add_column(c, overflow="fold")
        for s in res.skipped:
            t.add_row(Text(s.sheet), s.cell, Text(s.formula), Text(s.reason))
        con.print(t)
    if not res.cells and not res.skipped:
        con.print(f"{path}: no salessheet formulas found")
    con.print(f"Wrote [bold]{res.out}[/]" if res.written else f"{res.out}: already up to date, not rewritten")


@cli.command("install-libreoffice")
@click.option("--profile", type=click.Path(file_okay=False, path_type=Path),
              help="LibreOffice profile folder (the one holding user/). Default: this user's profile.")
def install_libreoffice_cmd(profile: Path | None):
    """Add =WINRATE() and the other functions to LibreOffice Calc. Close LibreOffice first.

    Example: salessheet install-libreoffice
    """
    from .libreoffice import install_libreoffice

    done = install_libreoffice(profile)
    console().print(f"Installed {len(done.functions)} functions into [bold]{done.profile}[/]: "
                    f"{', '.join(done.functions)}. Start LibreOffice Calc and type e.g. =WINRATE().")


def _warn_errors(book, path) -> None:
    if book.errors:
        _err(f"{len(book.errors)} error(s) in {path}: values that could not be read are left out "
             f"(see: salessheet validate {path})")


@cli.command("kpi")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--by", type=click.Choice(["owner", "team", "month", "quarter"]),
              help="One row per owner, team, month or quarter.")
@click.option("--from", "start", metavar="DATE", help="First day of the period, inclusive (e.g. 2025-01-01).")
@click.option("--to", "end", metavar="DATE", help="Last day of the period, inclusive.")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True,
              help="table for people; csv or json for machines (json: null where undefined).")
@DAYFIRST
def kpi_cmd(path, by, start, end, fmt, dayfirst):
    """Every KPI of a workbook, overall or per owner, team, month or quarter.

    Example: salessheet kpi deals.xlsx --by owner --from 2025-01-01 --to 2025-03-31
    """
    from .kpi import kpi_table
    from .reader import read_workbook

    book = read_workbook(path, dayfirst=dayfirst)
    table = kpi_table(book, by=by, start=start, end=end)
    records = table.to_dict("records")
    if fmt == "json":
        click.echo(json.dumps({"kpis": records[0]} if by is None else {"groups": records}, indent=2,
                              ensure_ascii=False))
    elif fmt == "csv":
        click.echo(table.to_csv(index=False), nl=False)
    else:
        title = f"{path.name}: " + (f"{start or '…'} to {end or '…'}" if start or end else "all time")
        render.print_kpis(console(), table, records, by, title)
    _warn_errors(book, path)


@cli.command("forecast")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--months", type=click.IntRange(1, 60), default=3, show_default=True,
              help="Months ahead, starting with the current one.")
@click.option("--today", metavar="DATE", help="Forecast as of this day instead of today.")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True,
              help="table for people; csv (the months) or json for machines.")
@click.option("--state", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A sync state store whose deal history teaches the stage probabilities "
                   "(default: the one beside PATH, when PATH is a sync master).")
@DAYFIRST
def forecast_cmd(path, months, today, fmt, state, dayfirst):
    """Committed, weighted pipeline and trend per month ahead; stage probabilities learned from history.

    On a sync master the stages every deal went through come from sync's history, so "of the deals
    that reached Negotiation, how many were won" is measured, not assumed.

    Example: salessheet forecast master.xlsx --months 6
    """
    from .forecast import forecast_months, learned_stage_probabilities
    from .reader import read_workbook
    from .state import default_path, stage_history

    book = read_workbook(path, dayfirst=dayfirst)
    state = state or (default_path(path) if default_path(path).exists() else None)
    history = stage_history(state) if state else None
    ahead = forecast_months(book, months=months, today=today)
    stages = learned_stage_probabilities(book, history=history)
    if fmt == "json":
        click.echo(json.dumps({"months": ahead.to_dict("records"), "stages": stages.to_dict("records")}, indent=2,
                              ensure_ascii=False))
    elif fmt == "csv":
        click.echo(ahead.to_csv(index=False), nl=False)
    else:
        out = console()
        out.print(render.frame_table(ahead.drop(columns="method"),
                                     f"{path.name}: months ahead; trend: {ahead['method'][0]}", render.FORECAST_HEADS))
        how = (f"stage history from {state.name}" if state else
               "no stage history (sync keeps one): a lost deal counts as reaching every open stage")
        out.print(render.frame_table(stages, "Stage win probability: default vs learned from the closed deals that "
                                     f"reached the stage; {how}", render.FORECAST_HEADS))
    _warn_errors(book, path)


@cli.command("demo")
@click.argument("directory", required=False, default="salessheet-demo",
                type=click.Path(file_okay=False, path_type=Path))
@click.option("--teams", type=click.IntRange(1, 8), default=3, show_default=True, help="Team workbooks to make.")
@click.option("--deals", type=click.IntRange(10, 200_000), default=400, show_default=True, help="Deals per team.")
@click.option("--seed", type=int, default=7, show_default=True, help="Same seed, same data.")
def demo_cmd(directory: Path, teams: int, deals: int, seed: int):
    """The whole job on generated data: team workbooks, validation, sync into a master, KPIs by team.

    Offline and seeded. Example: salessheet demo /tmp/demo --teams 4 --deals 1000
    """
    import time

    from rich.table import Table

    from .demo import write_demo
    from .kpi import kpi_table
    from .reader import read_workbook
    from .sync import sync
    from .validate import validate

    out = console()
    t0 = time.perf_counter()
    team_dir = directory / "teams"
    paths = write_demo(team_dir, teams=teams, deals=deals, seed=seed)
    out.print(f"[bold]1. Reps' workbooks[/]: {len(paths)} team workbooks in the standard template, in {team_dir}/")

    books = [validate(p) for p in paths]
    t = Table(title="2. salessheet validate: what a manager would have to chase", title_justify="left",
              header_style="bold")
    for c in ("Workbook", "Deals", "Leads", "Errors", "Warnings"):
        t.add_column(c, justify="left" if c == "Workbook" else "right")
    for p, b in zip(paths, books):
        errors = len(b.errors)
        t.add_row(p.name, f"{len(b.tables.get('Deals', [])):,}", f"{len(b.tables.get('Leads', [])):,}",
                  f"[red]{errors}[/]" if errors else "0", str(len(b.issues) - errors))
    out.print(t)
    flagged = [i for b in books for i in b.issues][:8]
    for i in flagged:
        out.print(f"  [dim]{Path(i.source).name}[/] {i.sheet} row {i.row}, {i.column or '-'}: "
                  f"[{'red' if i.severity == 'error' else 'yellow'}]{i.severity}[/] {i.message}", highlight=False)

    master = directory / "master.xlsx"
    res = sync([team_dir], master)
    c = res.to_dict()
    out.print(f"[bold]3. salessheet sync[/] teams/ --into {master.name}: {c['rows_read']:,} rows read, "
              f"{c['added']:,} added, {c['updated']:,} updated, {c['unchanged']:,} unchanged, "
              f"{c['removed']:,} removed, {c['conflicts']} conflict(s), {c['issues']} issue(s) "
              f"-> {master}")

    book = read_workbook(master)
    table = kpi_table(book, by="team")
    render.print_kpis(out, table, table.to_dict("records"), "team", "4. salessheet kpi master.xlsx --by team")
    out.print(f"Done in {time.perf_counter() - t0:.1f}s. Next: salessheet kpi {master} --by owner, "
              f"salessheet forecast {master}, salessheet history <DEAL-ID> --master {master}")


def main() -> None:
    cli(prog_name="salessheet")


if __name__ == "__main__":
    main()
