"""salessheet functions for Excel desktop through the xlwings add-in (Windows).

Set-up (README): pip install "salessheet[excel]"; xlwings addin install; in the xlwings ribbon set
UDF Modules to `salessheet.udfs.xlwings_classic`; Import Functions.

Each function is a thin call into salessheet.udf: ranges arrive as 2-D lists, blanks as None, dates as
datetimes or serial numbers. With no data range the function reads the calling workbook's tables
(Deals, Stages, Leads, Costs, Targets) through `caller`, so those functions are volatile: they follow
edits to the tables. An undefined result shows as text starting with the error code
("#DIV/0! WINRATE is undefined here (...)"): xlwings' COM bridge has no way to return a native error.
"""
from __future__ import annotations

import xlwings as xw

from salessheet import schema, udf


def workbook_tables(book) -> dict[str, list[list]]:
    """The standard tables of an open workbook, as header-first 2-D lists (Excel tables by name)."""
    out: dict[str, list[list]] = {}
    for sheet in book.sheets:
        for table in getattr(sheet, "tables", []):
            name = schema.table_for_sheet_name(table.name)
            if name and name not in out and table.range is not None:
                out[name] = table.range.options(ndim=2).value
    return out


def host_value(result):
    """Engine result -> what xlwings writes into the cell."""
    if isinstance(result, udf.UDFError):
        return str(result)
    return result


def call(name: str, args: tuple, caller=None):
    workbook = (lambda: workbook_tables(caller.sheet.book)) if caller is not None else None
    return host_value(udf.evaluate(name, args, workbook=workbook))


_OPTS = dict(volatile=True)


@xw.func(**_OPTS)
@xw.arg("data", ndim=2)
def WINRATE(data=None, owner=None, team=None, start=None, end=None, caller=None):
    """Won / (won + lost) of the deals closed in the period."""
    return call("WINRATE", (data, owner, team, start, end), caller)


@xw.func(**_OPTS)
@xw.arg("data", ndim=2)
def REVENUE(data=None, owner=None, team=None, start=None, end=None, caller=None):
    """Sum of Amount of the deals won in the period."""
    return call("REVENUE", (data, owner, team, start, end), caller)


@xw.func(**_OPTS)
@xw.arg("data", ndim=2)
def SALESVOLUME(data=None, owner=None, team=None, start=None, end=None, caller=None):
    """Sum of Units of the deals won in the period (blank Units counts as 1)."""
    return call("SALESVOLUME", (data, owner, team, start, end), caller)


@xw.func(**_OPTS)
@xw.arg("data", ndim=2)
def AVGDEALSIZE(data=None, owner=None, team=None, start=None, end=None, caller=None):
    """Revenue / number of deals won in the period."""
    return call("AVGDEALSIZE", (data, owner, team, start, end), caller)


@xw.func(**_OPTS)
@xw.arg("data", ndim=2)
def SALESCYCLE(data=None, owner=None, team=None, start=None, end=None, caller=None):
    """Mean days from Created Date to Closed Date of the deals won in the period."""
    return call("SALESCYCLE", (data, owner, team, start, end), caller)


@xw.func(**_OPTS)
@xw.arg("data", ndim=2)
def CONVERSIONRATE(data=None, owner=None, team=None, start=None, end=None, caller=None):
    """Share of the leads created in the period whose Status is Converted (data: the Leads table)."""
    return call("CONVERSIONRATE", (data, owner, team, start, end), caller)


@xw.func(**_OPTS)
@xw.arg("data", ndim=2)
@xw.arg("costs", ndim=2)
def CAC(data=None, owner=None, team=None, start=None, end=None, costs=None, caller=None):
    """Sales + marketing costs / new customers in the period (costs: the Costs table)."""
    return call("CAC", (data, owner, team, start, end, costs), caller)


@xw.func(**_OPTS)
@xw.arg("data", ndim=2)
def PIPELINE(data=None, owner=None, team=None, start=None, end=None, caller=None):
    """Sum of Amount of open deals expected to close in the period."""
    return call("PIPELINE", (data, owner, team, start, end), caller)


@xw.func(**_OPTS)
@xw.arg("data", ndim=2)
def WEIGHTEDPIPELINE(data=None, owner=None, team=None, start=None, end=None, caller=None):
    """Sum of Amount x Probability of open deals expected to close in the period."""
    return call("WEIGHTEDPIPELINE", (data, owner, team, start, end), caller)


@xw.func(**_OPTS)
@xw.arg("data", ndim=2)
def SALESFORECAST(data=None, owner=None, team=None, start=None, end=None, caller=None):
    """Revenue of the period + weighted pipeline of the period."""
    return call("SALESFORECAST", (data, owner, team, start, end), caller)


@xw.func(**_OPTS)
@xw.arg("data", ndim=2)
def SALESVELOCITY(data=None, owner=None, team=None, start=None, end=None, caller=None):
    """Open deals x average deal size x win rate / sales cycle: revenue per day."""
    return call("SALESVELOCITY", (data, owner, team, start, end), caller)


@xw.func(**_OPTS)
@xw.arg("data", ndim=2)
@xw.arg("targets", ndim=2)
def QUOTAATTAINMENT(data=None, owner=None, team=None, start=None, end=None, targets=None, caller=None):
    """Revenue / quota of the period (targets: the Targets table)."""
    return call("QUOTAATTAINMENT", (data, owner, team, start, end, targets), caller)


@xw.func(**_OPTS)
@xw.arg("data", ndim=2)
@xw.ret(expand="table")
def KPITABLE(data=None, by=None, start=None, end=None, caller=None):
    """Every KPI for every owner/team/month/quarter in one array (header row first)."""
    return host_value(udf.evaluate("KPITABLE", (data, by, start, end),
                                   workbook=(lambda: workbook_tables(caller.sheet.book)) if caller else None))


@xw.sub
def validate_workbook(book=None):
    """Macro "Validate this workbook": list every problem on a "Validation" sheet."""
    from salessheet import validate

    book = book or xw.Book.caller()
    found = validate(book.fullname)
    rows = [["Sheet", "Row", "Column", "Value", "Severity", "Problem"]] + [
        [i.sheet, i.row, i.column, i.to_dict()["value"], i.severity, i.message] for i in found.issues]
    sheet = _fresh_sheet(book, "Validation")
    sheet.range("A1").value = rows
    return len(found.issues)


@xw.sub
def sync_now(book=None):
    """Macro "Sync now": run the sync that salessheet.toml beside this workbook configures, and show the
    summary on a "Sync Result" sheet. The master must be another file: Excel locks the open workbook."""
    from pathlib import Path

    from salessheet.errors import ValidationError
    from salessheet.sources_config import resolve_args
    from salessheet.sync import sync

    book = book or xw.Book.caller()
    here = Path(book.fullname)
    sources, master, state = resolve_args([], None, None, here.with_name("salessheet.toml"))
    if master.resolve() == here.resolve():
        raise ValidationError(f"{here.name} is the sync master and is open here; run Sync now from another "
                              f"workbook, or run: salessheet sync --config salessheet.toml")
    result = sync(sources, master, state=state)
    sheet = _fresh_sheet(book, "Sync Result")
    sheet.range("A1").value = [["", "Sync into " + str(master)]] + [[k, v] for k, v in result.to_dict().items()]
    return result


def _fresh_sheet(book, name: str):
    names = [s.name for s in book.sheets]
    if name in names:
        sheet = book.sheets[name]
        sheet.clear()
        return sheet
    return book.sheets.add(name, after=book.sheets[len(names) - 1])
