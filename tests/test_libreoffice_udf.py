"""salessheet's functions in real headless LibreOffice Calc: install into a fresh profile, open an xlsx
with formulas in it, read the cells back.

The engine here is a stand-in written into the test's temporary folder (the real one is
salessheet.udf); it builds a real Book with pandas inside LibreOffice's own Python.
"""
import datetime as dt
import re
import subprocess
import textwrap
import zipfile

import pytest
import xlsxwriter

from salessheet import libreoffice as lo
from salessheet import schema

FUNCTIONS = ("ROWCOUNT", "WONAMOUNT", "ECHO", "GRID", "ERR", "BOOM")  # GRID: TABLE is a Calc built-in
STANDIN = '''
from salessheet import Book, schema


class Err:
    def __init__(self, code):
        self.code = code


def evaluate(name, args, workbook=None):
    if name == "ROWCOUNT":
        rows = args[0] if args else workbook()["Deals"]
        return len(rows) - 1
    if name == "WONAMOUNT":
        deals = Book.from_rows({"Deals": args[0]} if args else workbook()).deals
        return deals.loc[deals["Stage"] == schema.WON_STAGE, "Amount"].sum()
    if name == "ECHO":
        return repr(args)
    if name == "GRID":
        return [["Stage", "Count"], ["Won", 3], ["Lost", float("nan")], [None, "#DIV/0!"]]
    if name == "ERR":
        return Err(args[0])
    raise ValueError("boom")
'''
HEADER = schema.DEALS.names  # the standard Deals columns, as the template writes them
AMOUNT, CREATED = HEADER.index("Amount"), HEADER.index("Created Date")
EPOCH = dt.date(1899, 12, 30)


def deals(n: int) -> list[list]:
    """n deals over every stage, with some blank amounts and dates."""
    out = []
    for i in range(n):
        stage = schema.DEFAULT_STAGES[i % len(schema.DEFAULT_STAGES)]
        created = dt.date(2025, 1, 1) + dt.timedelta(days=3 * i)
        row = {"Deal ID": f"D-{i}", "Account": f"Acct {i % 4}", "Owner": ("Ann", "Bob", "Cy")[i % 3],
               "Team": ("East", "West")[i % 2], "Stage": stage.name, "Amount": None if i % 7 == 3 else 100.0 + 7 * i,
               "Created Date": None if i % 9 == 4 else created, "Expected Close": created + dt.timedelta(days=40),
               "Closed Date": created + dt.timedelta(days=20 + i) if stage.is_closed else None}
        out.append([row.get(h) for h in HEADER])
    return out


def as_calc(rows: list[list]) -> list[list]:
    """The rows as LibreOffice hands a range to Python: header first, dates as serials, blanks None."""
    return [HEADER] + [[float((v - EPOCH).days) if isinstance(v, dt.date) else v for v in r] for r in rows]


def write_book(path, rows, formulas=(), array=None):
    wb = xlsxwriter.Workbook(path)
    ws = wb.add_worksheet("Deals")
    ws.add_table(0, 0, len(rows), len(HEADER) - 1, {"name": "Deals", "columns": [{"header": h} for h in HEADER],
                                                     "data": rows})
    ws.set_column(CREATED, len(HEADER) - 1, 12, wb.add_format({"num_format": "yyyy-mm-dd"}))
    kpi = wb.add_worksheet("KPI")
    for i, f in enumerate(formulas):
        kpi.write_formula(i, 0, f)
    for a in [array] if array else []:
        kpi.write_array_formula(*a)
    wb.close()
    return path


@pytest.fixture(scope="module")
def profile(soffice_uno, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lo")
    (tmp / "standin_udf.py").write_text(STANDIN)
    prof = tmp / "profile"
    paths = [str(tmp)] + lo.engine_paths()
    lo.install_libreoffice(prof, functions=["ROWCOUNT", "OLDNAME"], engine="standin_udf:evaluate", sys_path=paths)
    return lo.install_libreoffice(prof, functions=FUNCTIONS, engine="standin_udf:evaluate", sys_path=paths)


N = 23
FORMULAS = ["=ROWCOUNT()", "=WONAMOUNT()", "=WONAMOUNT(Deals[[#All]])", f"=WONAMOUNT(Deals!A1:P{N + 1})",
            "=ECHO(Deals!I2:K6)", '=ECHO(1,,"z")', "=ECHO(Z99)", '=ERR("#DIV/0!")', '=ERR("#N/A")', "=BOOM()",
            "=ROWCOUNT(Deals[[#All]])"]


@pytest.fixture(scope="module")
def opened(profile, tmp_path_factory):
    """The workbook as LibreOffice shows it right after opening (no explicit recalc), and saved."""
    tmp = tmp_path_factory.mktemp("book")
    book = write_book(tmp / "book.xlsx", deals(N), FORMULAS, array=(0, 11, 3, 12, "{=GRID()}"))
    out = tmp / "saved.xlsx"
    result = lo.recalc_workbook(book, profile.profile, out=out, calculate=False)
    return {c: v for c, v in result["cells"].items()}, out


def cell(cells, i):
    return cells[f"KPI!A{i + 1}"]


def won_total(rows):
    return sum(r[AMOUNT] or 0 for r in rows if r[HEADER.index("Stage")] == schema.WON_STAGE)


def test_install_writes_module_script_and_settings(profile):
    user = profile.profile / "user"
    xlb = (user / "basic" / "Standard" / "script.xlb").read_text()
    assert xlb.count('library:name="SalesSheet"') == 1  # installed twice, listed once
    assert 'library:name="Module1"' in xlb  # the user's own module is kept
    module = profile.module.read_text()
    for name in profile.functions:
        assert f"Function {name}(Optional a1," in module
    assert module.count("Function ROWCOUNT(") == 1 and "OLDNAME" not in module  # reinstalling replaces
    script = profile.script.read_text()
    assert "ENGINE = 'standin_udf:evaluate'" in script and "SYS_PATH = []" not in script
    assert "<value>0</value>" in (user / "registrymodifications.xcu").read_text()


def test_zero_argument_form_reads_the_deals_table_on_open(opened):
    cells, _ = opened
    rows = deals(N)
    assert cell(cells, 0)["value"] == N
    assert cell(cells, 1)["value"] == pytest.approx(won_total(rows))
    assert won_total(rows) > 0


def test_ranges_given_explicitly(opened):
    cells, _ = opened
    expected = won_total(deals(N))
    assert cell(cells, 2)["value"] == pytest.approx(expected)  # Deals[[#All]]
    assert cell(cells, 3)["value"] == pytest.approx(expected)  # Deals!A1:F24
    assert cell(cells, 10)["value"] == N


def test_values_arrive_as_floats_serials_and_none(opened):
    cells, _ = opened
    expected = [[r[AMOUNT:CREATED + 1] for r in as_calc(deals(N))[1:6]]]  # Amount, Units, Created Date
    assert None in [v for r in expected[0] for v in r]  # the sample has blanks
    assert cell(cells, 4)["text"] == repr(expected)
    assert isinstance(expected[0][0][2], float)  # a date as a serial
    assert cell(cells, 5)["text"] == repr([1.0, 0.0, "z"])  # an omitted middle argument is 0
    assert cell(cells, 6)["text"] == repr([None])  # an empty cell


def test_errors_are_real_calc_errors_or_say_what_failed(opened):
    cells, _ = opened
    assert (cell(cells, 7)["error"], cell(cells, 7)["text"]) == (532, "#DIV/0!")
    assert (cell(cells, 8)["error"], cell(cells, 8)["text"]) == (32767, "#N/A")
    assert cell(cells, 9)["error"] == 0 and cell(cells, 9)["text"] == "salessheet: ValueError: boom"


def test_array_formula_fills_its_range(opened):
    cells, _ = opened
    got = [[(cells[f"KPI!{c}{r}"]["text"], cells[f"KPI!{c}{r}"]["error"]) for c in "LM"] for r in range(1, 5)]
    assert got == [[("Stage", 0), ("Count", 0)], [("Won", 0), ("3", 0)], [("Lost", 0), ("#N/A", 32767)],
                   [("", 0), ("#DIV/0!", 532)]]


def test_saved_xlsx_keeps_the_plain_function_names(opened):
    _, out = opened
    with zipfile.ZipFile(out) as z:
        xml = next(z.read(n).decode() for n in z.namelist() if "worksheets/sheet" in n and b"ROWCOUNT" in z.read(n))
    formulas = re.findall(r"<f[^>]*>([^<]*)</f>", xml)
    assert "ROWCOUNT()" in formulas and "WONAMOUNT(Deals[[#All]])" in formulas and "GRID()" in formulas


def test_zero_argument_form_reads_its_own_workbook_when_another_is_open(profile, tmp_path):
    other = write_book(tmp_path / "other.xlsx", deals(5), ["=ROWCOUNT()"])
    book = write_book(tmp_path / "book.xlsx", deals(9), ["=ROWCOUNT()", "=WONAMOUNT()"])
    for calculate in (False, True):
        cells = lo.recalc_workbook(book, profile.profile, calculate=calculate, open_first=[other])["cells"]
        assert (cell(cells, 0)["value"], cell(cells, 1)["value"]) == (9, pytest.approx(won_total(deals(9))))


def test_hidden_document_as_in_a_headless_conversion(profile, tmp_path):
    book = write_book(tmp_path / "book.xlsx", deals(6), ["=ROWCOUNT()", "=WONAMOUNT(Deals[[#All]])"])
    cells = lo.recalc_workbook(book, profile.profile, calculate=False, hidden=True)["cells"]
    assert cell(cells, 0)["value"] == 6
    assert cell(cells, 1)["value"] == pytest.approx(won_total(deals(6)))


def test_python_version_mismatch_is_reported_in_the_cell(profile, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mismatch")
    prof = tmp / "profile"
    installed = lo.install_libreoffice(prof, functions=["ROWCOUNT"], engine="standin_udf:evaluate",
                                       sys_path=[str(profile.script.parent)])
    text = installed.script.read_text()
    installed.script.write_text(re.sub(r"^PYTHON = .*$", "PYTHON = (3, 0)", text, flags=re.M))
    book = write_book(tmp / "book.xlsx", deals(2), ["=ROWCOUNT()"])
    got = cell(lo.recalc_workbook(book, prof)["cells"], 0)["text"]
    assert got.startswith("salessheet: RuntimeError: LibreOffice runs Python 3.") and got.endswith("for Python 3.0")


def test_timeout_stops_soffice(profile, tmp_path):
    book = write_book(tmp_path / "book.xlsx", deals(2), ["=ROWCOUNT()"])
    with pytest.raises(lo.LibreOfficeError, match="took more than"):
        lo.recalc_workbook(book, profile.profile, timeout=0.2)
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert str(profile.profile.resolve()) not in ps


def test_basic_names_are_checked(tmp_path):
    with pytest.raises(lo.LibreOfficeError, match="cannot be a Basic function name"):
        lo.basic_module(["WIN RATE"])
    module = lo.basic_module(["WINRATE"])
    assert textwrap.dedent("""\
        Function WINRATE(Optional a1, Optional a2, Optional a3, Optional a4, Optional a5, Optional a6, \
Optional a7, Optional a8, Optional a9, Optional a10) As Variant""") in module


# --- the real engine (salessheet.udf) inside LibreOffice ---------------------------------------------

CALC_ERRORS = {"#N/A": 32767, "#DIV/0!": 532, "#VALUE!": 519, "#NUM!": 503}
CALC_BUILTINS = {"FORECAST"}  # Calc's own function of that name wins over the Basic one: never ours
try:
    ENGINE_NAMES = [n for n in lo.engine_functions() if n != "KPITABLE"]
except lo.LibreOfficeError:
    ENGINE_NAMES = []


@pytest.fixture(scope="module")
def real(soffice_uno, tmp_path_factory):
    """Every engine function in a real workbook: with the table given, without it, and filtered."""
    from salessheet import udf

    tmp = tmp_path_factory.mktemp("real")
    prof = tmp / "profile"
    lo.install_libreoffice(prof)
    rows = deals(40)
    formulas = []
    for name in ENGINE_NAMES:
        formulas += [f"={name}(Deals[[#All]])", f"={name}()", f'={name}(Deals[[#All]],"Ann",,"2025-01-15")']
    table = udf.kpi_table_array([as_calc(rows), "owner"])
    array = (0, 5, len(table) - 1, 5 + len(table[0]) - 1, '{=KPITABLE(,"owner")}')
    book = write_book(tmp / "book.xlsx", rows, formulas, array=array)
    return lo.recalc_workbook(book, prof, calculate=False)["cells"], as_calc(rows), table


def expect(got, want):
    if hasattr(want, "code"):
        assert (got["error"], got["text"]) == (CALC_ERRORS[want.code], want.code)
    else:
        assert got["error"] == 0 and got["value"] == pytest.approx(want)


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.xfail(n in CALC_BUILTINS, strict=True,
                                                                          reason="Calc built-in of that name"))
                                  for n in ENGINE_NAMES])
def test_engine_functions_match_the_engine(real, name):
    from salessheet import udf

    cells, rows, _ = real
    i = 3 * ENGINE_NAMES.index(name)
    assert cells[f"KPI!A{i + 1}"]["formula"].startswith(f"={name}(")
    expect(cells[f"KPI!A{i + 1}"], udf.evaluate(name, [rows]))
    expect(cells[f"KPI!A{i + 2}"], udf.evaluate(name, [rows]))
    expect(cells[f"KPI!A{i + 3}"], udf.evaluate(name, [rows, "Ann", None, "2025-01-15"]))


def test_kpitable_array_matches_the_engine(real):
    cells, _, table = real
    cols = [chr(ord("F") + j) for j in range(len(table[0]))]
    got = [[cells[f"KPI!{c}{r + 1}"] for c in cols] for r in range(len(table))]
    assert [g["text"] for g in got[0]] == table[0]
    for grow, trow in zip(got[1:], table[1:]):
        assert grow[0]["text"] == trow[0]
        for g, t in zip(grow[1:], trow[1:]):
            if t == "":
                assert (g["text"], g["error"]) == ("", 0)
            else:
                assert g["value"] == pytest.approx(t)


def test_cli_installs_into_a_profile(soffice, tmp_path):
    from click.testing import CliRunner

    from salessheet.cli import cli

    r = CliRunner().invoke(cli, ["install-libreoffice", "--profile", str(tmp_path / "p")])
    assert r.exit_code == 0, r.output
    assert "WINRATE" in r.output and "KPITABLE" in r.output
    xba = (tmp_path / "p" / "user" / "basic" / "Standard" / "SalesSheet.xba").read_text()
    assert "Function WINRATE(" in xba and "Function KPITABLE(" in xba
