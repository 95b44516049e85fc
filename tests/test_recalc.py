"""salessheet recalc on real workbooks: values equal the KPI engine's, the rest of the file survives, and
LibreOffice shows the stored numbers without recalculating.

Workbooks are the standard template (template.write_workbook) with formula cells appended to its
Dashboard sheet XML, plus a small xlsxwriter workbook (no Leads table, a quoted sheet name, a spilling
array) and an openpyxl one (array formula whose other cells do not exist yet).
"""
from __future__ import annotations

import datetime as dt
import json
import re
import zipfile
from pathlib import Path

import openpyxl
import pytest
import python_calamine as pc
import xlsxwriter
from click.testing import CliRunner
from openpyxl.worksheet.formula import ArrayFormula

from libreoffice import sheets_as_csv
from salessheet import kpi, read_workbook, schema, template
from salessheet.cli import cli
from salessheet.errors import Error, ReadError
from salessheet.formula import parse_cell, shift_formula, tokenize
from salessheet.recalc import recalc
from salessheet.xlsxpkg import atomic_write, rewrite, sheet_parts

OWNERS = ("Ana", "Bob", "Cy")
TEAMS = ("North", "South")
EPOCH = dt.date(1899, 12, 30)
Q1 = (dt.date(2026, 1, 1), dt.date(2026, 3, 31))


def deal_rows(n: int = 48) -> list[dict]:
    """Deals over every stage, owner and team, some blank amounts/dates; Cy closes nothing."""
    out = []
    for i in range(n):
        st = schema.DEFAULT_STAGES[(i // 3) % len(schema.DEFAULT_STAGES)]  # every owner meets every stage
        owner = OWNERS[i % 3]
        if owner == "Cy" and st.is_closed:
            st = schema.DEFAULT_STAGES[0]
        created = dt.date(2025, 11, 1) + dt.timedelta(days=4 * i)
        out.append({"Deal ID": f"D-{i}", "Deal Name": f"Deal {i}", "Account": f"Acct {i % 5}", "Owner": owner,
                    "Team": TEAMS[i % 2], "Stage": st.name, "Amount": None if i % 11 == 5 else 1000.0 + 37 * i,
                    "Units": float(i % 4) or None, "Created Date": created,
                    "Expected Close": created + dt.timedelta(days=45),
                    "Closed Date": created + dt.timedelta(days=10 + i % 20) if st.is_closed else None})
    return out


def other_tables() -> dict[str, list[dict]]:
    leads = [{"Lead ID": f"L-{i}", "Created Date": dt.date(2026, 1, 1) + dt.timedelta(days=3 * i), "Source": "Web",
              "Owner": OWNERS[i % 3], "Team": TEAMS[i % 2],
              "Status": schema.CONVERTED_STATUS if i % 3 == 0 else "Working"} for i in range(30)]
    costs = [{"Month": dt.date(2026, m, 1), "Team": t, "Category": "Sales", "Amount": 500.0 * m}
             for m in (1, 2, 3) for t in TEAMS]
    targets = [{"Period Start": Q1[0], "Period End": Q1[1], "Owner": o, "Quota": 20000.0} for o in OWNERS]
    return {"Leads": leads, "Costs": costs, "Targets": targets}


# --- building test workbooks ----------------------------------------------------------------------


def append_cells(path: Path, sheet: str, cells: dict[str, str]) -> None:
    """Add raw <c> elements (ref -> element) in new rows below the sheet's last row, rewriting that part."""
    with zipfile.ZipFile(path) as z:
        part = sheet_parts(z)[sheet]
        xml = z.read(part).decode()
    rows: dict[int, list[tuple[int, str]]] = {}
    for ref, element in cells.items():
        r, c = parse_cell(ref)
        rows.setdefault(r, []).append((c, element))
    assert min(rows) > max(int(n) for n in re.findall(r'<row r="(\d+)"', xml))
    body = "".join(f'<row r="{r}">{"".join(e for _, e in sorted(v))}</row>' for r, v in sorted(rows.items()))
    with atomic_write(path, backup=False) as tmp:
        rewrite(path, tmp, replace={part: xml.replace("</sheetData>", body + "</sheetData>").encode()})


def esc(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def fcell(ref: str, formula: str, cached: str = "0") -> str:
    return f'<c r="{ref}"><f>{esc(formula)}</f><v>{cached}</v></c>'


# Dashboard cells added below the template's own content: ref -> formula (without "=").
FUNCS = {name: key for key, name in kpi.FUNCTION_NAMES.items()}
ZERO_ARG = {f"B{30 + i}": f"{name}()" for i, name in enumerate(FUNCS)}
FILTERED = {
    "C30": 'WINRATE(Deals[#All],"Ana",,DATE(2026,1,1),DATE(2026,3,31))',
    "C31": 'REVENUE(,"Bob")',
    "C32": 'PIPELINE(Deals[#All],,"North")',
    "C33": "REVENUE(,,,D60,D61)",  # dates from date cells
    "C34": "WINRATE(,D62)",  # owner from a text cell
    "C35": "SALESVOLUME(,,,,)",  # all blank
    "C36": 'REVENUE("","",,"","")',
    "C37": "REVENUE(Deals!A1:P1001)",  # an A1 range on another sheet
    "C38": "FORECAST(Deals!A:P,,\"South\")".replace("FORECAST", kpi.FUNCTION_NAMES["forecast"]),
    "C39": '_xludf.PIPELINE(,"Ana")',  # how Excel stores a function it does not know
    "C40": "REVENUE()/1000+1",
    "C41": 'REVENUE(,"Ana")+REVENUE(,"Bob")*2-WINRATE()',
    "C42": 'WINRATE(,"Cy")',  # Cy closed nothing: #DIV/0!
    "C43": 'CAC(,"Ana")',  # costs are per team: #VALUE!
    "C44": "WINRATE(,,,DATE(2026,3,31),DATE(2026,1,1))",  # period ends before it starts: #VALUE!
    "C45": "WINRATE(Deals)",  # the data body: recalc adds the header
    "C46": 'REVENUE(Deals[[#All],[Deal ID]:[Last Updated]],"Ana")',
    "C47": "QUOTAATTAINMENT(,,,DATE(2026,1,1),DATE(2026,3,31))",
    "C48": 'REVENUE(Deals[[#All],[Deal ID]:[Amount]],"Ana")',  # some columns: passed as a range
    "C49": "WINRATE(Deals[Stage])",  # one column, no header: not a table (#VALUE!)
    "C53": "REVENUE(,B72)*1",  # B72 is filled by the KPITABLE below: computed first
}
SKIPPED = {"C50": "SUM(B4:B5)+WINRATE()", "C51": 'IF(B6>0,WINRATE(),"")', "C52": "WINRATE(NoSuchName)",
           "C54": "WINRATE(,C54)"}
KPITABLE_RANGE = "B70:N74"  # header + 3 owners + 1 spare row (#N/A)


def expected_values(book) -> dict[str, object]:
    """What each added cell must hold, from salessheet.kpi on read_workbook of the same file."""
    k = kpi
    v = {ref: k.KPIS[FUNCS[f[:-2]]](book) for ref, f in ZERO_ARG.items()}
    v.update({
        "C30": k.win_rate(book, owner="Ana", start=Q1[0], end=Q1[1]),
        "C31": k.revenue(book, owner="Bob"),
        "C32": k.pipeline(book, team="North"),
        "C33": k.revenue(book, start=dt.date(2025, 12, 1), end=dt.date(2026, 2, 15)),
        "C34": k.win_rate(book, owner="Bob"),
        "C35": k.sales_volume(book),
        "C36": k.revenue(book),
        "C37": k.revenue(book),
        "C38": k.forecast(book, team="South"),
        "C39": k.pipeline(book, owner="Ana"),
        "C40": k.revenue(book) / 1000 + 1,
        "C41": k.revenue(book, owner="Ana") + 2 * k.revenue(book, owner="Bob") - k.win_rate(book),
        "C42": "#DIV/0!",
        "C43": "#VALUE!",
        "C44": "#VALUE!",
        "C45": k.win_rate(book),
        "C46": k.revenue(book, owner="Ana"),
        "C47": k.quota_attainment(book, start=Q1[0], end=Q1[1]),
        "C48": k.revenue(book, owner="Ana"),
        "C49": "#VALUE!",
        "C53": k.revenue(book, owner=k.kpi_table(book, by="owner")["owner"][1]),
    })
    return v


@pytest.fixture(scope="module")
def dash(tmp_path_factory) -> Path:
    """The standard workbook with data and the formula cells above added to its Dashboard."""
    path = tmp_path_factory.mktemp("recalc") / "dash.xlsx"
    template.write_workbook(path, tables={"Deals": deal_rows(), **other_tables()})
    with zipfile.ZipFile(path) as z:
        deals_xml = z.read(sheet_parts(z)["Deals"]).decode()
    date_style = re.search(r'<c r="K2" s="(\d+)"', deals_xml).group(1)  # Created Date's date format
    cells = {ref: fcell(ref, f) for ref, f in {**ZERO_ARG, **FILTERED, **SKIPPED}.items()}
    cells["D60"] = f'<c r="D60" s="{date_style}"><v>{(dt.date(2025, 12, 1) - EPOCH).days}</v></c>'
    cells["D61"] = f'<c r="D61" s="{date_style}"><v>{(dt.date(2026, 2, 15) - EPOCH).days}</v></c>'
    cells["D62"] = '<c r="D62" t="inlineStr"><is><t>Bob</t></is></c>'
    first = KPITABLE_RANGE.split(":")[0]
    cells[first] = f'<c r="{first}"><f t="array" ref="{KPITABLE_RANGE}">KPITABLE(,"owner")</f><v>0</v></c>'
    # A shared formula filled down over owners, as Excel stores one: text on the first cell only.
    for i, owner in enumerate(OWNERS):
        cells[f"D{80 + i}"] = f'<c r="D{80 + i}" t="inlineStr"><is><t>{owner}</t></is></c>'
        cells[f"E{80 + i}"] = (f'<c r="E{80 + i}"><f t="shared" ref="E80:E82" si="0">REVENUE(,D80)</f><v>0</v></c>'
                               if i == 0 else f'<c r="E{80 + i}"><f t="shared" si="0"/><v>0</v></c>')
    append_cells(path, template.DASHBOARD_SHEET, cells)
    return path


@pytest.fixture(scope="module")
def done(dash, tmp_path_factory):
    out = tmp_path_factory.mktemp("recalc-out") / "dash-out.xlsx"
    return dash, out, recalc(dash, out)


def cached(path: Path, sheet: str) -> dict[str, object]:
    """Every cell's stored value as a non-recalculating reader sees it (openpyxl data_only)."""
    ws = openpyxl.load_workbook(path, data_only=True)[sheet]
    return {c.coordinate: c.value for row in ws.iter_rows() for c in row}


def check(got, want, where=""):
    if isinstance(want, str) and want.startswith("#"):
        assert got == want, where
    elif want is None:  # undefined in the engine -> an error value, never 0
        assert isinstance(got, str) and got.startswith("#"), (where, got)
    else:
        assert got == pytest.approx(want, rel=1e-12, abs=1e-9), where


# --- values ---------------------------------------------------------------------------------------


def test_every_function_and_argument_form_matches_the_engine(done):
    src, out, res = done
    book = read_workbook(src)
    got = cached(out, template.DASHBOARD_SHEET)
    want = expected_values(book)
    for ref, value in want.items():
        check(got[ref], value, ref)
    assert {c.cell for c in res.cells} >= set(want)


def test_template_function_cells_are_recalculated(done):
    src, out, res = done
    book = read_workbook(src)
    got = cached(out, template.DASHBOARD_SHEET)
    for key, ref in template.FUNCTION_CELLS.items():
        check(got[ref], kpi.KPIS[key](book), ref)


def test_error_values_are_error_cells_with_messages(done):
    _, out, res = done
    by_cell = {c.cell: c for c in res.cells}
    assert by_cell["C42"].error == "#DIV/0!" and "no deals closed" in by_cell["C42"].message
    assert by_cell["C43"].error == "#VALUE!" and "per team" in by_cell["C43"].message
    with zipfile.ZipFile(out) as z:
        xml = z.read(sheet_parts(z)[template.DASHBOARD_SHEET]).decode()
    assert re.search(r'<c r="C42"[^>]* t="e"><f>WINRATE\(,&quot;Cy&quot;\)</f><v>#DIV/0!</v></c>', xml) or \
        re.search(r'<c r="C42"[^>]* t="e"><f>WINRATE\(,"Cy"\)</f><v>#DIV/0!</v></c>', xml)


def test_kpitable_array_fills_its_range(done):
    src, out, _ = done
    table = kpi.kpi_table(read_workbook(src), by="owner")
    ws = openpyxl.load_workbook(out, data_only=True)[template.DASHBOARD_SHEET]
    block = [[c.value for c in row] for row in ws[KPITABLE_RANGE]]
    cols = list(kpi.KPIS)
    assert block[0] == ["owner"] + cols[:len(block[0]) - 1]  # the range is 13 columns wide: cut as in Excel
    assert [r[0] for r in block[1:4]] == list(table["owner"])
    for r, rec in zip(block[1:4], table.to_dict("records")):
        for j, key in enumerate(cols[:len(r) - 1], start=1):
            if rec[key] is None:
                assert r[j] in (None, ""), key  # undefined: an empty cell in the table
            else:
                assert r[j] == pytest.approx(rec[key], rel=1e-12), key
    assert block[4] == ["#N/A"] * len(block[4])  # past the last owner
    # The formula is still an array formula over the same range.
    f = openpyxl.load_workbook(out)[template.DASHBOARD_SHEET][KPITABLE_RANGE.split(":")[0]].value
    assert isinstance(f, ArrayFormula) and f.ref == KPITABLE_RANGE and f.text == '=KPITABLE(,"owner")'


def test_shared_formula_cells_follow_their_row(done):
    src, out, res = done
    book = read_workbook(src)
    got = cached(out, template.DASHBOARD_SHEET)
    for i, owner in enumerate(OWNERS):
        check(got[f"E{80 + i}"], kpi.revenue(book, owner=owner), owner)
    assert {c.cell: c.formula for c in res.cells}["E82"] == "=REVENUE(,D82)"


def test_unsupported_formulas_are_left_alone_and_reported(done):
    src, out, res = done
    skipped = {s.cell: s.reason for s in res.skipped}
    assert set(skipped) == set(SKIPPED)
    assert "SUM" in skipped["C50"] and "NoSuchName" in skipped["C52"] and "circular" in skipped["C54"]
    before, after = cached(src, template.DASHBOARD_SHEET), cached(out, template.DASHBOARD_SHEET)
    assert all(after[ref] == before[ref] == 0 for ref in SKIPPED)


# --- the rest of the file survives ----------------------------------------------------------------


def test_only_the_dashboard_part_changes(done):
    src, out, res = done
    with zipfile.ZipFile(src) as a, zipfile.ZipFile(out) as b:
        dash_part = sheet_parts(a)[template.DASHBOARD_SHEET]
        assert a.namelist() == b.namelist()
        changed = [n for n in a.namelist() if a.read(n) != b.read(n)]
    assert changed == [dash_part] == res.parts


def formulas(ws) -> dict[str, str]:
    return {c.coordinate: str(getattr(c.value, "text", c.value)) for r in ws.iter_rows() for c in r if c.data_type == "f"}


def test_formulas_tables_validation_and_styles_survive(done):
    src, out, _ = done
    a, b = openpyxl.load_workbook(src), openpyxl.load_workbook(out)
    assert a.sheetnames == b.sheetnames
    for wa, wb in zip(a.worksheets, b.worksheets):
        assert formulas(wa) == formulas(wb), wa.title
        assert sorted(wa.tables) == sorted(wb.tables), wa.title
        assert len(wa.data_validations.dataValidation) == len(wb.data_validations.dataValidation), wa.title
        sa = {c.coordinate: (c.number_format, c.font.b, c.alignment.wrap_text) for r in wa.iter_rows() for c in r}
        sb = {c.coordinate: (c.number_format, c.font.b, c.alignment.wrap_text) for r in wb.iter_rows() for c in r}
        assert {k: v for k, v in sb.items() if k in sa} == sa, wa.title
    assert [len(ws.tables) for ws in a.worksheets].count(1) == len(schema.TABLES)


def test_recalc_again_changes_nothing_and_in_place_is_atomic(done, tmp_path):
    _, out, _ = done
    copy = tmp_path / "again.xlsx"
    copy.write_bytes(out.read_bytes())
    res = recalc(copy)
    assert not res.written and res.parts == [] and copy.read_bytes() == out.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again.xlsx"]  # no temp or backup left behind


def test_in_place_rewrites_the_input(dash, tmp_path):
    copy = tmp_path / "inplace.xlsx"
    copy.write_bytes(dash.read_bytes())
    res = recalc(copy)
    assert res.written and res.out == copy
    assert cached(copy, template.DASHBOARD_SHEET)["B30"] == pytest.approx(kpi.win_rate(read_workbook(dash)))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["inplace.xlsx"]


# --- LibreOffice, without recalculating -----------------------------------------------------------


def test_libreoffice_shows_the_stored_numbers_without_recalculating(soffice, done, tmp_path):
    """LibreOffice in never-recalculate mode keeps cached numbers; it re-evaluates cells cached as
    errors and array formulas even then (its OOXML import applies only numeric and string results),
    which without the add-in makes #NAME?: those are checked with openpyxl above."""
    src, out, _ = done
    before = sheets_as_csv(src, tmp_path, recalc=False, as_shown=False)[template.DASHBOARD_SHEET]
    after = sheets_as_csv(out, tmp_path, recalc=False, as_shown=False)[template.DASHBOARD_SHEET]
    want = expected_values(read_workbook(src))
    numeric = {ref: v for ref, v in want.items() if isinstance(v, float)}
    assert len(numeric) >= 25
    for ref, value in numeric.items():
        r, c = parse_cell(ref)
        assert float(after[r - 1][c - 1]) == pytest.approx(value, rel=1e-9), ref
        assert before[r - 1][c - 1] in ("0", ""), ref  # the stored value really came from recalc
    for ref in ("C42", "C43"):
        r, c = parse_cell(ref)
        assert after[r - 1][c - 1].startswith("#"), ref  # an error, never a number


# --- a hand-made workbook: no Leads, quoted sheet name, spilling array -----------------------------


@pytest.fixture(scope="module")
def plain(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("plain") / "plain.xlsx"
    wb = xlsxwriter.Workbook(str(path))
    data = wb.add_worksheet("My Deals")
    datef = wb.add_format({"num_format": "yyyy-mm-dd"})
    names = schema.DEALS.names
    data.write_row(0, 0, names)
    for r, rec in enumerate(deal_rows(30), start=1):
        for c, name in enumerate(names):
            v = rec.get(name)
            if isinstance(v, dt.date):
                data.write_datetime(r, c, dt.datetime(v.year, v.month, v.day), datef)
            elif v is not None:
                data.write(r, c, v)
    ws = wb.add_worksheet("Report")
    ws.write_formula("A1", "=CONVERSIONRATE()")
    ws.write_formula("A2", "=WINRATE('My Deals'!A1:P31,\"Ana\")")
    ws.write_formula("A3", "=REVENUE('My Deals'!A:P)")
    ws.write_formula("A4", "=WINRATE()*100")
    ws.write_dynamic_array_formula("C1", '=KPITABLE(,"team")')
    ws.write_formula("B10", "=SUM(1,2)", None, 3)
    wb.close()
    return path


def test_missing_table_is_na_and_quoted_sheet_ranges_work(plain, tmp_path):
    out = tmp_path / "o.xlsx"
    res = recalc(plain, out)
    book = read_workbook(plain)
    got = cached(out, "Report")
    assert got["A1"] == "#N/A"
    assert "Leads" in {c.cell: c for c in res.cells}["A1"].message
    check(got["A2"], kpi.win_rate(book, owner="Ana"))
    check(got["A3"], kpi.revenue(book))
    check(got["A4"], kpi.win_rate(book) * 100)
    assert got["B10"] == 3  # not a salessheet formula: untouched, not reported
    assert "B10" not in {c.cell for c in res.cells} | {s.cell for s in res.skipped}


def test_dynamic_array_spills_to_the_result_size(plain, tmp_path):
    out = tmp_path / "o.xlsx"
    recalc(plain, out)
    table = kpi.kpi_table(read_workbook(plain), by="team")
    rows = len(table) + 1
    ref = f"C1:{openpyxl.utils.get_column_letter(2 + len(kpi.KPIS) + 1)}{rows}"
    f = openpyxl.load_workbook(out)["Report"]["C1"].value
    assert isinstance(f, ArrayFormula) and f.ref == ref
    sheet = pc.CalamineWorkbook.from_path(str(out)).get_sheet_by_name("Report").to_python()
    assert sheet[0][2:3 + len(kpi.KPIS)] == ["team"] + list(kpi.KPIS)
    assert [r[2] for r in sheet[1:rows]] == list(table["team"])
    with zipfile.ZipFile(out) as z:
        xml = z.read(sheet_parts(z)["Report"]).decode()
    assert re.search(r'<c r="C1" cm="1" t="str"><f t="array" ref="' + ref + '"', xml)
    assert re.search(r'<dimension ref="A1:[A-Z]+\d+"', xml)


def test_openpyxl_array_formula_gets_its_missing_cells(tmp_path):
    src = tmp_path / "op.xlsx"
    template.write_workbook(src, tables={"Deals": deal_rows(20)})
    wb = openpyxl.load_workbook(src)
    wb["Dashboard"]["B40"] = ArrayFormula("B40:D42", '=KPITABLE(,"team")')
    wb.save(src)
    out = tmp_path / "o.xlsx"
    recalc(src, out)
    table = kpi.kpi_table(read_workbook(src), by="team")
    block = [[c.value for c in row] for row in openpyxl.load_workbook(out, data_only=True)["Dashboard"]["B40:D42"]]
    assert block[0] == ["team", "win_rate", "revenue"]
    for row, rec in zip(block[1:], table.to_dict("records")):
        assert row[0] == rec["team"]
        for got, key in zip(row[1:], ("win_rate", "revenue")):
            check(got, rec[key], key)


# --- formula text -----------------------------------------------------------------------------------


def test_shift_formula_moves_relative_references_only():
    assert shift_formula("WINRATE(,A5,$B$2,Deals!C$3)+SUM(B:B)", 2, 1) == "WINRATE(,B7,$B$2,Deals!D$3)+SUM(C:C)"
    assert shift_formula('WINRATE(Deals[[#All],[Owner]],"A1")', 5, 5) == 'WINRATE(Deals[[#All],[Owner]],"A1")'


def test_tokenize_structured_references_and_sheet_names():
    kinds = [(k, t) for k, t, _, _ in tokenize("WINRATE(Deals[[#All],[Deal ID]:[Stage]],'My ''Q'' Sheet'!A1:B2)")]
    assert kinds == [("func", "WINRATE"), ("op", "("), ("table", "Deals[[#All],[Deal ID]:[Stage]]"), ("op", ","),
                     ("sheet", "'My ''Q'' Sheet'!"), ("range", "A1:B2"), ("op", ")")]


# --- errors and the CLI -------------------------------------------------------------------------------


def test_not_a_workbook(tmp_path):
    bad = tmp_path / "bad.xlsx"
    bad.write_bytes(b"not a zip at all")
    with pytest.raises(ReadError):
        recalc(bad)
    csv = tmp_path / "deals.csv"
    csv.write_text("a,b\n")
    with pytest.raises(Error, match="xlsx"):
        recalc(csv)


def test_cli_table_and_json(dash, tmp_path):
    runner = CliRunner(env={"COLUMNS": "250"})  # rich folds long cells at the default 80 columns
    out = tmp_path / "cli.xlsx"
    r = runner.invoke(cli, ["recalc", str(dash), "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "recalculated" in r.output and "Deals[#All]" in r.output and "left as they were" in r.output
    r = runner.invoke(cli, ["recalc", str(out), "--format", "json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert data["written"] is False and data["recalculated"] == len(data["cells"]) > 40
    assert {s["cell"] for s in data["skipped"]} == set(SKIPPED)
    r = runner.invoke(cli, ["recalc", str(tmp_path / "missing.xlsx")])
    assert r.exit_code == 2 and "no such file" in r.output
