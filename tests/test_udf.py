"""Spreadsheet functions through the host adapters: the shared core, xlwings classic, xlwings Lite.

Inputs are shaped the way each host sends them (header-first 2-D lists, None/""/0 blanks, dates as
datetimes or float serials); every expected value comes from the KPI engine on a Book read from the
same rows, so the adapters are checked against the one definition.
"""
from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from salessheet import Book, kpi, schema, udf

from salessheet.udfs import xlwings_classic as classic

ROOT = Path(__file__).resolve().parents[1]

D = dt.datetime
DEALS = [
    ["Deal ID", "Account", "Owner", "Team", "Stage", "Probability", "Amount", "Units", "Created Date",
     "Expected Close", "Closed Date"],
    ["D1", "Acme", "Ana", "North", "Closed Won", None, 1000.0, 2.0, D(2026, 1, 5), None, D(2026, 2, 4)],
    ["D2", "Beta", "Ana", "North", "Closed Lost", None, 500.0, None, D(2026, 1, 10), None, D(2026, 3, 1)],
    ["D3", "Gamma", "Bo", "South", "Closed Won", None, 3000.0, None, D(2026, 2, 1), None, D(2026, 4, 2)],
    ["D4", "Delta", "Bo", "South", "Proposal", 0.8, 2000.0, 1.0, D(2026, 3, 1), D(2026, 5, 1), None],
    ["D5", "Acme", "Ana", "North", "Negotiation", None, 400.0, None, D(2026, 3, 3), D(2026, 6, 30), None],
]
LEADS = [
    ["Lead ID", "Created Date", "Source", "Owner", "Team", "Status", "Converted Date", "Deal ID"],
    ["L1", D(2026, 1, 2), "Website", "Ana", "North", "Converted", D(2026, 1, 5), "D1"],
    ["L2", D(2026, 1, 3), "Website", "Ana", "North", "Disqualified", None, None],
    ["L3", D(2026, 2, 3), "Event", "Bo", "South", "Working", None, None],
]
COSTS = [
    ["Month", "Team", "Category", "Amount", "Note"],
    [D(2026, 1, 1), "North", "Sales", 600.0, None],
    [D(2026, 2, 1), "North", "Marketing", 300.0, None],
    [D(2026, 4, 1), "South", "Sales", 900.0, None],
]
TARGETS = [
    ["Period Start", "Period End", "Owner", "Team", "Quota"],
    [D(2026, 1, 1), D(2026, 3, 31), "Ana", "North", 2000.0],
]


def serials(rows):
    """The same rows as a host that sends dates as Excel serial numbers."""
    epoch = dt.datetime(1899, 12, 30)
    return [[(v - epoch).days if isinstance(v, dt.datetime) else v for v in r] for r in rows]


NUMERIC = {DEALS[0].index(c) for c in ("Probability", "Amount", "Units")}


def blanks_as(rows, blank):
    """Empty text and date cells as `blank` (hosts that send 0 do so there); number cells stay None."""
    return [[blank if v is None and j not in NUMERIC else v for j, v in enumerate(r)] for r in rows]


@pytest.fixture(scope="module")
def book():
    return Book.from_rows({"Deals": DEALS, "Leads": LEADS, "Costs": COSTS, "Targets": TARGETS})


@pytest.fixture(autouse=True)
def fresh_cache():
    udf.CACHE.clear()


def expected(book, key, **filters):
    return kpi.KPIS[key](book, **filters)


FILTERS = [
    {},
    {"owner": "Ana"},
    {"team": "South"},
    {"start": dt.date(2026, 2, 1), "end": dt.date(2026, 3, 31)},
    {"owner": "Bo", "start": dt.date(2026, 4, 1), "end": dt.date(2026, 12, 31)},
]
DEAL_FUNCTIONS = ["WINRATE", "REVENUE", "SALESVOLUME", "AVGDEALSIZE", "SALESCYCLE", "PIPELINE",
                  "WEIGHTEDPIPELINE", "SALESFORECAST", "SALESVELOCITY"]


def _args(f):
    return [f.get("owner"), f.get("team"), f.get("start"), f.get("end")]


@pytest.mark.parametrize("fname", DEAL_FUNCTIONS)
@pytest.mark.parametrize("filters", FILTERS, ids=lambda f: ",".join(f) or "none")
def test_classic_deal_functions_match_engine(book, fname, filters):
    want = expected(book, udf.FUNCTIONS[fname], **filters)
    got = getattr(classic, fname)(DEALS, *_args(filters))
    if want is None:
        assert isinstance(got, str) and got.startswith("#DIV/0!"), got
    else:
        assert got == pytest.approx(want)


@pytest.mark.parametrize("shape", ["datetimes", "serials", "zero-blanks", "empty-string-blanks"])
def test_host_value_shapes_agree(book, shape):
    rows = {"datetimes": DEALS, "serials": serials(DEALS), "zero-blanks": blanks_as(serials(DEALS), 0),
            "empty-string-blanks": blanks_as(DEALS, "")}[shape]
    for fname in DEAL_FUNCTIONS:
        want = expected(book, udf.FUNCTIONS[fname], owner="Ana")
        got = udf.evaluate(fname, [rows, "Ana"])
        assert (got == pytest.approx(want)) if want is not None else isinstance(got, udf.UDFError)


def test_filters_as_hosts_send_them(book):
    # Dates as serials, a 1x1 range around a value, 0 and "" for omitted arguments.
    start = (dt.datetime(2026, 2, 1) - dt.datetime(1899, 12, 30)).days
    end = float((dt.datetime(2026, 3, 31) - dt.datetime(1899, 12, 30)).days)
    want = expected(book, "revenue", start=dt.date(2026, 2, 1), end=dt.date(2026, 3, 31))
    assert udf.evaluate("REVENUE", [DEALS, 0, "", start, [[end]]]) == pytest.approx(want)
    assert udf.evaluate("REVENUE", [DEALS, None, None, "2026-02-01", "2026-03-31"]) == pytest.approx(want)
    assert want == 1000.0  # D1 closes 2026-02-04: the only deal won in February-March


def test_conversion_cac_quota_take_their_tables(book):
    assert classic.CONVERSIONRATE(LEADS) == pytest.approx(expected(book, "conversion_rate"))
    assert classic.CONVERSIONRATE(LEADS, "Ana") == pytest.approx(0.5)
    assert classic.CAC(DEALS, None, "North", None, None, COSTS) == pytest.approx(expected(book, "cac", team="North"))
    assert classic.QUOTAATTAINMENT(DEALS, "Ana", None, dt.date(2026, 1, 1), dt.date(2026, 3, 31), TARGETS) == \
        pytest.approx(expected(book, "quota_attainment", owner="Ana", start=dt.date(2026, 1, 1),
                               end=dt.date(2026, 3, 31)))


def test_errors_are_error_values_not_crashes_or_zero():
    header_only = [DEALS[0]]
    assert classic.WINRATE(header_only).startswith("#DIV/0!")
    assert classic.AVGDEALSIZE(header_only).startswith("#DIV/0!")
    assert classic.REVENUE(header_only) == 0.0  # a sum over no deals is defined
    assert classic.CONVERSIONRATE(DEALS).startswith("#N/A")  # no Leads table given
    assert "Leads" in classic.CONVERSIONRATE(DEALS)
    assert classic.CAC(DEALS, "Ana", None, None, None, COSTS).startswith("#VALUE!")  # CAC has no owner filter
    assert classic.WINRATE([["nothing", "here"], [1, 2]]).startswith("#VALUE!")
    assert classic.WINRATE(DEALS, None, None, "not a date").startswith("#VALUE!")
    assert classic.WINRATE().startswith("#VALUE!")  # no data and no caller workbook


class _Range:
    def __init__(self, rows):
        self.rows = rows

    def options(self, **_):
        return self

    @property
    def value(self):
        return self.rows


class _Table:
    def __init__(self, name, rows):
        self.name, self.range = name, _Range(rows)


class _Sheet:
    def __init__(self, tables):
        self.tables = tables


class _Caller:
    """What xlwings passes as `caller`: the calling cell, whose sheet.book holds the Excel tables."""

    def __init__(self, book):
        self.sheet = type("S", (), {"book": book})()


def test_classic_zero_argument_form_reads_the_callers_tables(book):
    wb = type("B", (), {})()
    wb.sheets = [_Sheet([_Table("Deals", DEALS), _Table("tblLeads", LEADS)]), _Sheet([_Table("Costs", COSTS)]),
                 _Sheet([_Table("Other", [["x"], [1]])])]
    caller = _Caller(wb)
    assert classic.WINRATE(caller=caller) == pytest.approx(expected(book, "win_rate"))
    assert classic.CONVERSIONRATE(caller=caller) == pytest.approx(expected(book, "conversion_rate"))
    assert classic.CAC(None, None, "North", caller=caller) == pytest.approx(expected(book, "cac", team="North"))
    # An explicit range still wins over the workbook's Deals; the workbook fills the other tables.
    only_bo = [DEALS[0]] + [r for r in DEALS[1:] if r[2] == "Bo"]
    assert classic.REVENUE(only_bo, caller=caller) == 3000.0
    assert classic.QUOTAATTAINMENT(caller=caller).startswith("#N/A")  # no Targets table in that workbook


def test_kpitable_array_matches_single_functions(book):
    arr = classic.KPITABLE(DEALS, "owner")
    header, rows = arr[0], arr[1:]
    assert header[0] == "owner" and header[1:] == list(kpi.KPIS)
    assert [r[0] for r in rows] == ["Ana", "Bo"]
    for r in rows:
        for key, v in zip(header[1:], r[1:]):
            if key in ("conversion_rate", "cac", "quota_attainment"):
                continue  # need tables KPITABLE was not given
            want = kpi.KPIS[key](book, owner=r[0])
            assert (v == "" if want is None else v == pytest.approx(want)), (r[0], key)


def test_cache_parses_each_table_once_per_content():
    calls = [udf.evaluate(f, [[list(r) for r in DEALS]]) for f in DEAL_FUNCTIONS]  # fresh lists each call
    assert not any(isinstance(c, udf.UDFError) and c.code != "#DIV/0!" for c in calls)
    assert udf.CACHE.misses == 1 and udf.CACHE.hits == len(DEAL_FUNCTIONS) - 1
    changed = [list(r) for r in DEALS]
    changed[1][6] = 1500.0  # one cell in the middle of the table
    assert udf.evaluate("REVENUE", [changed]) == 4500.0  # never a stale answer
    assert udf.CACHE.misses == 2


def test_lite_module_imports_and_runs_without_compiled_extras(tmp_path):
    """xlwings Lite runs under Pyodide: no calamine, openpyxl, xlsxwriter, click, rich, nor real xlwings."""
    fake = tmp_path / "xlwings.py"
    fake.write_text(textwrap.dedent("""
        def func(f=None, **kw):
            return f if f is not None else (lambda g: g)
        def arg(*a, **kw):
            return lambda g: g
        def ret(*a, **kw):
            return lambda g: g
    """))
    script = textwrap.dedent(f"""
        import sys, importlib.abc
        BLOCKED = {{"python_calamine", "openpyxl", "xlsxwriter", "click", "rich", "sqlite3", "lxml"}}
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name.split(".")[0] in BLOCKED:
                    raise ImportError(f"{{name}} is not available under Pyodide")
        sys.meta_path.insert(0, Block())
        sys.path[:0] = [{str(tmp_path)!r}, {str(ROOT / 'udfs' / 'xlwings_lite')!r}, {str(ROOT)!r}]
        import json, main
        rows = {serials(DEALS)!r}
        print(main.WINRATE(rows), main.REVENUE(rows, "Bo"), main.KPITABLE(rows, "team")[1][0])
        try:
            main.WINRATE([rows[0]])
        except ValueError as e:
            print("raised", e)
        print(sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED))
        calls = {{}}
        for name in {DEAL_FUNCTIONS!r}:
            for owner in (None, "Ana", "Bo"):
                try:
                    calls[f"{{name}}/{{owner}}"] = getattr(main, name)(rows, owner, None, 46054.0, None)
                except ValueError as e:
                    calls[f"{{name}}/{{owner}}"] = str(e)
        calls["CONVERSIONRATE"] = main.CONVERSIONRATE({serials(LEADS)!r}, "Ana")
        calls["CAC"] = main.CAC(rows, None, "North", None, None, {serials(COSTS)!r})
        calls["QUOTAATTAINMENT"] = main.QUOTAATTAINMENT(rows, "Ana", None, 46023.0, 46112.0, {serials(TARGETS)!r})
        print(json.dumps(calls))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[0].split() == ["0.6666666666666666", "3000.0", "North"]
    assert lines[1].startswith("raised #DIV/0!")
    assert lines[2] == "[]"
    # Every function through the Lite module equals the classic adapter on the same host-shaped input.
    calls = json.loads(lines[3])
    start = dt.date(2026, 1, 31)  # serial 46054
    for name in DEAL_FUNCTIONS:
        for owner in (None, "Ana", "Bo"):
            want = classic.call(name, (serials(DEALS), owner, None, start, None))
            got = calls[f"{name}/{owner}"]
            assert got == (pytest.approx(want) if isinstance(want, float) else want), (name, owner)
    assert calls["CONVERSIONRATE"] == pytest.approx(0.5)
    assert calls["CAC"] == pytest.approx(classic.CAC(DEALS, None, "North", None, None, COSTS))
    assert calls["QUOTAATTAINMENT"] == pytest.approx(
        classic.QUOTAATTAINMENT(DEALS, "Ana", None, dt.date(2026, 1, 1), dt.date(2026, 3, 31), TARGETS))


def test_every_function_is_exposed_by_each_adapter():
    names = set(udf.ALL_FUNCTIONS)
    assert names <= set(dir(classic))
    lite_src = (ROOT / "udfs" / "xlwings_lite" / "main.py").read_text()
    for n in names:
        assert f"def {n}(" in lite_src
    assert set(udf.FUNCTIONS.values()) == set(kpi.KPIS)
    assert all(schema.normalize(n) for n in names)


class _FakeSheet:
    def __init__(self, name):
        self.name, self.cells = name, {}

    def clear(self):
        self.cells.clear()

    def range(self, addr):
        sheet = self

        class R:
            @property
            def value(self):
                return sheet.cells.get(addr)

            @value.setter
            def value(self, v):
                sheet.cells[addr] = v
        return R()


class _FakeSheets(list):
    def __getitem__(self, k):
        return next(s for s in self if s.name == k) if isinstance(k, str) else list.__getitem__(self, k)

    def add(self, name, after=None):
        s = _FakeSheet(name)
        self.append(s)
        return s


class _FakeBook:
    """The part of xlwings' Book the macros use: fullname, sheets[...], sheets.add, range().value."""

    def __init__(self, path):
        self.fullname = str(path)
        self.sheets = _FakeSheets([_FakeSheet("Deals")])


def test_validate_macro_lists_problems_on_a_validation_sheet(tmp_path):
    from sheetmaker import write_xlsx

    path = write_xlsx(tmp_path / "team.xlsx", {"Deals": [DEALS[0], ["D1", None, "Ana", "North", "Closed Won", None,
                                                                     -5.0, None, D(2026, 1, 5), None, None]]})
    book = _FakeBook(path)
    n = classic.validate_workbook(book)
    rows = book.sheets["Validation"].range("A1").value
    assert n == len(rows) - 1 >= 3
    problems = {(r[1], r[2], r[4]) for r in rows[1:]}
    assert (2, "Account", "error") in problems and (2, "Amount", "error") in problems
    assert (2, "Closed Date", "error") in problems
    classic.validate_workbook(book)  # run again: the sheet is reused, not duplicated
    assert [s.name for s in book.sheets].count("Validation") == 1


def test_sync_now_macro_runs_the_configured_sync(tmp_path):
    from salessheet.template import write_workbook

    teams = tmp_path / "teams"
    teams.mkdir()
    write_workbook(teams / "north.xlsx", tables={"Deals": [dict(zip(DEALS[0], r)) for r in DEALS[1:]]})
    (tmp_path / "salessheet.toml").write_text('sources = ["teams"]\nmaster = "master.xlsx"\n')
    book = _FakeBook(tmp_path / "dashboard.xlsx")
    result = classic.sync_now(book)
    assert result.added == 5 and (tmp_path / "master.xlsx").exists()
    shown = dict(r for r in book.sheets["Sync Result"].range("A1").value[1:])
    assert shown["added"] == 5 and shown["rows_read"] >= 5
    # The open master itself cannot be the target: Excel holds it locked.
    with pytest.raises(Exception, match="is the sync master"):
        classic.sync_now(_FakeBook(tmp_path / "master.xlsx"))
