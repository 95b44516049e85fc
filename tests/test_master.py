"""The master writer: owned sheets written from frames into real xlsx files, every other part untouched.

Files are read back with salessheet's reader (calamine), openpyxl, zipfile and LibreOffice headless.
"""
from __future__ import annotations

import datetime as dt
import re
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import numpy as np
import openpyxl
import pandas as pd
import pytest
import xlsxwriter
from hypothesis import given, settings
from hypothesis import strategies as st

from libreoffice import inspect, sheets_as_csv
from salessheet import read_workbook, schema, xlsxpkg
from salessheet.errors import LockedError, SyncError, ValidationError
from salessheet.master import OWNED, write_master
from salessheet.sheetxml import table_name
from salessheet.template import DASHBOARD_CELLS, DASHBOARD_COUNT_CELLS

M = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
D = dt.datetime
FORMULA_TEXT = ["=1+2", "+1-2", "@SUM(A1)", "=HYPERLINK(\"http://x.test\",\"click\")"]


def deals_frame(n: int = 6, offset: int = 0) -> pd.DataFrame:
    """Deals as sync hands them over: the Book dtypes plus Source, Source Row, Synced At and an extra column."""
    stages = ["Closed Won", "Closed Lost", "Proposal", "Closed Won", "Negotiation", "Prospecting"]
    rows = []
    for i in range(n):
        k = i + offset
        closed = stages[k % 6].startswith("Closed")
        rows.append({
            "Deal ID": f"D-{100 + k}", "Deal Name": FORMULA_TEXT[k % 4] if k % 2 else f"Deal & <{k}>",
            "Account": f"Acct {k % 3}", "Owner": ["Ann", "Bo"][k % 2], "Team": "East", "Lead Source": None,
            "Stage": stages[k % 6], "Probability": 0.4 if k % 3 == 0 else np.nan, "Amount": 1000.0 + 250.5 * k,
            "Units": float(k % 4) if k % 4 else np.nan, "Created Date": D(2025, 1, 1) + dt.timedelta(k),
            "Expected Close": D(2025, 3, 1) + dt.timedelta(k),
            "Closed Date": D(2025, 2, 10) + dt.timedelta(k) if closed else None,
            "Lost Reason": "Price" if stages[k % 6] == "Closed Lost" else None, "Next Step": "  call back " if k == 2
            else None, "Last Updated": D(2025, 4, 1, 9, 30) + dt.timedelta(minutes=k),
            "Source": f"team{k % 2}.xlsx", "Source Row": float(k + 2), "Synced At": D(2025, 6, 1, 12, 0),
            "Region": FORMULA_TEXT[k % 4],
        })
    df = pd.DataFrame(rows)
    for c in df.columns:
        if df[c].dtype.kind not in "fM":
            df[c] = df[c].astype(object).where(df[c].notna(), None)
    for c in ("Created Date", "Expected Close", "Closed Date", "Last Updated", "Synced At"):
        df[c] = pd.to_datetime(df[c]).astype("datetime64[us]")
    return df


def standard(table: str, **cols) -> pd.DataFrame:
    """A frame with every standard column of `table` (blank unless given), as the reader returns it."""
    n = len(next(iter(cols.values())))
    out = {}
    for c in schema.TABLES[table].columns:
        if c.name in cols:
            out[c.name] = cols[c.name]
        elif c.kind in ("date", "datetime"):
            out[c.name] = pd.Series([pd.NaT] * n, dtype="datetime64[us]")
        elif c.kind in ("money", "number", "percent", "int"):
            out[c.name] = [np.nan] * n
        else:
            out[c.name] = pd.Series([None] * n, dtype=object)
    return pd.DataFrame(out)


def all_tables() -> dict[str, pd.DataFrame]:
    return {
        "Deals": deals_frame(),
        "Leads": standard("Leads", **{"Lead ID": ["L-1", "L-2", "L-3"], "Status": ["Converted", "New", "Working"],
                                      "Created Date": pd.to_datetime(["2025-01-02"] * 3)}),
        "Costs": standard("Costs", Month=pd.to_datetime(["2025-01-01", "2025-02-01"]), Category=["Sales", "Marketing"],
                          Amount=[300.0, 150.0]),
        "Targets": standard("Targets", **{"Period Start": pd.to_datetime(["2025-01-01"]),
                                          "Period End": pd.to_datetime(["2025-03-31"]), "Owner": ["Ann"],
                                          "Quota": [9000.0]}),
        "Stages": pd.DataFrame({"Stage": [s.name for s in schema.DEFAULT_STAGES],
                                "Order": [float(s.order) for s in schema.DEFAULT_STAGES],
                                "Probability": [s.probability for s in schema.DEFAULT_STAGES],
                                "Is Closed": pd.array([s.is_closed for s in schema.DEFAULT_STAGES], dtype="boolean"),
                                "Is Won": pd.array([s.is_won for s in schema.DEFAULT_STAGES], dtype="boolean")}),
        "Issues": pd.DataFrame({"File": ["team1.xlsx"], "Sheet": ["Deals"], "Row": [7], "Column": ["Amount"],
                                "Value": ["12k"], "Severity": ["error"], "Message": ["not a number"]}),
        "Conflicts": pd.DataFrame({"Deal ID": ["D-1"], "Source": ["team1.xlsx"], "Amount": [5.0]}),
        "Sync Log": pd.DataFrame({"Time": [D(2025, 6, 1, 12, 0, 5)], "Sources": [2], "Added": [6],
                                  "Duration (s)": [0.25]}),
    }


def members(path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as z:
        return {n: z.read(n) for n in z.namelist()}


def sheet_part(path, sheet: str) -> str:
    with zipfile.ZipFile(path) as z:
        return xlsxpkg.sheet_parts(z)[sheet]


def sheet_xml(path, sheet: str) -> str:
    with zipfile.ZipFile(path) as z:
        return z.read(xlsxpkg.sheet_parts(z)[sheet]).decode()


def cells(path, sheet: str) -> dict[str, ET.Element]:
    root = ET.fromstring(sheet_xml(path, sheet))
    return {c.get("r"): c for c in root.iter(M + "c")}


# --- a new master -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def new_master(tmp_path_factory):
    path = tmp_path_factory.mktemp("new") / "master.xlsx"
    assert write_master(path, all_tables()) == path
    return path


def test_new_master_has_every_owned_sheet_with_its_table(new_master):
    wb = openpyxl.load_workbook(new_master)
    assert sorted(wb.sheetnames) == sorted(OWNED)
    assert wb.sheetnames[0] == "Dashboard"  # what a manager sees first
    for name, df in all_tables().items():
        ws = wb[name]
        assert [c.value for c in ws[1]] == list(df.columns), name
        assert list(ws.tables) == [table_name(name)]
        assert ws.tables[table_name(name)].ref == f"A1:{ws.cell(1, df.shape[1]).column_letter}{len(df) + 1}"
        assert ws.freeze_panes == "A2"
        assert ws.max_row == len(df) + 1
    assert wb["Sync Log"].tables["SyncLog"].name == "SyncLog"


def test_new_master_reads_back_equal(new_master):
    df = deals_frame()
    book = read_workbook(new_master)
    got = book.tables["Deals"]
    assert list(got.index) == list(range(2, len(df) + 2))
    for col in schema.DEALS.names:
        assert got[col].dtype.kind == df[col].dtype.kind, col
        if df[col].dtype.kind == "M":
            assert list(got[col]) == list(df[col]), col
        elif df[col].dtype.kind == "f":
            np.testing.assert_array_equal(got[col].to_numpy(), df[col].to_numpy(), err_msg=col)
        else:  # the reader trims text (the master keeps it as given: see the next test)
            assert list(got[col]) == [v.strip() if isinstance(v, str) else v for v in df[col]], col
    # Extra columns come back as the raw cell values.
    assert list(got["Region"]) == list(df["Region"])
    assert list(got["Source Row"]) == list(df["Source Row"])
    assert list(got["Synced At"]) == [D(2025, 6, 1, 12, 0)] * len(df)


def test_cells_are_typed_and_blanks_are_absent(new_master):
    c = cells(new_master, "Deals")
    df = deals_frame()
    col = {h: chr(65 + i) for i, h in enumerate(df.columns)}
    for r, (_, row) in enumerate(df.iterrows(), start=2):
        for h in ("Probability", "Closed Date", "Lost Reason", "Next Step", "Lead Source", "Units"):
            if pd.isna(row[h]):
                assert f"{col[h]}{r}" not in c, (h, r)  # no <c> at all
    assert c["A2"].get("t") == "inlineStr" and c["A2"].find(f"{M}is/{M}t").text == "D-100"
    assert c["B2"].find(f"{M}is/{M}t").text == "Deal & <0>"
    assert c[f"{col['Amount']}2"].find(f"{M}v").text == "1000"
    assert c[f"{col['Amount']}3"].find(f"{M}v").text == "1250.5"
    assert c[f"{col['Created Date']}2"].find(f"{M}v").text == "45658"  # 2025-01-01
    assert float(c[f"{col['Last Updated']}2"].find(f"{M}v").text) == pytest.approx(45748 + 9.5 / 24)
    lead = c[f"{col['Next Step']}4"].find(f"{M}is/{M}t")
    assert lead.text == "  call back " and lead.get("{http://www.w3.org/XML/1998/namespace}space") == "preserve"
    wb = openpyxl.load_workbook(new_master)
    ws = wb["Deals"]
    assert ws[f"{col['Created Date']}2"].number_format == "yyyy-mm-dd"
    assert ws[f"{col['Last Updated']}2"].number_format == "yyyy-mm-dd hh:mm"
    assert ws[f"{col['Amount']}2"].number_format == "[$USD] #,##0.00"
    assert ws[f"{col['Probability']}2"].number_format == "0%"
    assert wb["Stages"]["D6"].value is True and wb["Stages"]["D2"].value is False
    assert wb["Sync Log"]["A2"].value == D(2025, 6, 1, 12, 0, 5)
    assert wb["Sync Log"]["A2"].number_format == "yyyy-mm-dd hh:mm"


def test_formula_text_is_never_a_formula(new_master):
    xml = "".join(sheet_xml(new_master, s) for s in OWNED if s != "Dashboard")
    assert "<f>" not in xml and "<f " not in xml
    ws = openpyxl.load_workbook(new_master)["Deals"]
    assert [ws.cell(r, 20).value for r in range(2, 6)] == FORMULA_TEXT
    assert all(ws.cell(r, 20).data_type == "s" for r in range(2, 8))


def test_libreoffice_shows_the_rows_and_keeps_formula_text_as_text(soffice_uno, new_master, tmp_path):
    df = deals_frame()
    csv = sheets_as_csv(new_master, tmp_path, recalc=True, as_shown=False)
    deals = csv["Deals"]
    assert deals[0] == list(df.columns)
    assert [r[0] for r in deals[1:]] == list(df["Deal ID"])
    assert [r[19] for r in deals[1:5]] == FORMULA_TEXT  # "=1+2" stays text, never 3
    assert deals[2][1] == "+1-2"
    info = inspect(new_master, cells={"Deals": ["T2", "T3", "B3", "T5"], "Dashboard": ["B4", "B6"]})
    for a in ("T2", "T3", "B3", "T5"):
        cell = info["cells"][f"Deals!{a}"]
        assert cell["type"] == "TEXT" and cell["formula"] == cell["string"], a
    assert info["cells"]["Deals!T2"]["string"] == "=1+2"
    assert set(info["database_ranges"]) >= {table_name(n) for n in OWNED if n != "Dashboard"}


# --- the Dashboard ------------------------------------------------------------------------------


def test_dashboard_formulas_calculate_in_libreoffice_and_match_the_cached_values(soffice_uno, new_master):
    from salessheet import kpi

    addrs = {**DASHBOARD_CELLS, **DASHBOARD_COUNT_CELLS}
    c = cells(new_master, "Dashboard")
    for key, a in addrs.items():
        assert c[a].find(f"{M}f") is not None, key  # a native formula, not a pasted value
    cached = {k: c[a].find(f"{M}v") for k, a in addrs.items()}
    lo = inspect(new_master, cells={"Dashboard": list(addrs.values())}, recalc=True)["cells"]
    book = read_workbook(new_master)
    for key, a in addrs.items():
        got = lo[f"Dashboard!{a}"]
        assert got["error"] == 0, key
        v = cached[key]
        if got["type"] == "TEXT" or (v is not None and not v.text):  # "" = undefined
            assert got["string"] == "" and (v.text or "") == "", key
        else:
            assert float(v.text) == pytest.approx(got["value"]), key
    for key in DASHBOARD_CELLS:
        want = kpi.KPIS[key](book)
        if want is not None:
            assert lo[f"Dashboard!{addrs[key]}"]["value"] == pytest.approx(want), key
    # By hand over deals_frame(): won D-100, D-103 (1000 + 1751.5), lost D-101.
    assert lo["Dashboard!B4"]["value"] == pytest.approx(2751.5)
    assert lo["Dashboard!B6"]["value"] == pytest.approx(2 / 3)


def test_dashboard_says_what_is_missing_instead_of_breaking(tmp_path):
    path = write_master(tmp_path / "m.xlsx", {"Deals": deals_frame()})
    wb = openpyxl.load_workbook(path)
    assert sorted(wb.sheetnames) == ["Dashboard", "Deals", "Stages"]  # default stages, for won/lost
    ws = wb["Dashboard"]
    row = int(DASHBOARD_CELLS["conversion_rate"][1:])
    assert ws.cell(row, 2).value == "n/a" and "Leads table" in ws.cell(row, 3).value
    assert str(ws[DASHBOARD_CELLS["revenue"]].value).startswith("=SUMPRODUCT(")


# --- an existing master with a manager's work in it ---------------------------------------------


def _xlsxwriter_master(path: Path, df: pd.DataFrame) -> None:
    wb = xlsxwriter.Workbook(str(path))
    report = wb.add_worksheet("Report")
    deals = wb.add_worksheet("Deals")
    mine = wb.add_worksheet("My Numbers")
    date_f = wb.add_format({"num_format": "yyyy-mm-dd"})
    for i, row in enumerate(df.itertuples(index=False), start=1):
        for j, v in enumerate(row):
            if isinstance(v, pd.Timestamp) and not pd.isna(v):
                deals.write_datetime(i, j, v.to_pydatetime(), date_f)
            elif isinstance(v, str):
                deals.write_string(i, j, v)
            elif isinstance(v, float) and not np.isnan(v):
                deals.write_number(i, j, v)
    deals.add_table(0, 0, len(df), df.shape[1] - 1, {"name": "Deals", "columns": [{"header": h} for h in df.columns]})
    deals.insert_textbox("W2", "a note on the Deals sheet")  # a drawing on an owned sheet
    deals.set_tab_color("#FF0000")
    chart = wb.add_chart({"type": "column"})
    chart.add_series({"name": "Amount", "categories": f"=Deals!$A$2:$A${len(df) + 1}",
                      "values": f"=Deals!$I$2:$I${len(df) + 1}"})
    report.insert_chart("D2", chart)
    bold = wb.add_format({"bold": True, "bg_color": "#FFF2CC", "num_format": "#,##0.0"})
    report.write("A1", "Total amount", bold)
    report.write_formula("B1", "=SUM(Deals!I2:I1000)", bold)
    report.write_formula("B2", "=COUNTA(Deals!A2:A1000)")
    mine.write("A1", "Mine")
    mine.write_formula("B1", "=Report!B1*2")
    wb.define_name("BigDeals", f"=Deals!$I$2:$I${len(df) + 1}")
    wb.define_name("Goal", "=100000")
    wb.close()


def _openpyxl_master(path: Path, df: pd.DataFrame) -> None:
    from openpyxl.chart import BarChart, Reference
    from openpyxl.styles import Font, PatternFill
    from openpyxl.workbook.defined_name import DefinedName
    from openpyxl.worksheet.table import Table

    wb = openpyxl.Workbook()
    report = wb.active
    report.title = "Report"
    deals = wb.create_sheet("Deals")
    mine = wb.create_sheet("My Numbers")
    deals.append(list(df.columns))
    for row in df.itertuples(index=False):
        deals.append([None if (isinstance(v, float) and np.isnan(v)) or v is pd.NaT else
                      (v.to_pydatetime() if isinstance(v, pd.Timestamp) else v) for v in row])
    deals.sheet_properties.tabColor = "FFFF0000"
    deals.add_table(Table(displayName="Deals", ref=f"A1:{deals.cell(1, df.shape[1]).column_letter}{len(df) + 1}"))
    chart = BarChart()
    chart.add_data(Reference(deals, min_col=9, min_row=1, max_row=len(df) + 1), titles_from_data=True)
    report.add_chart(chart, "D2")
    report["A1"], report["B1"] = "Total amount", "=SUM(Deals!I2:I1000)"
    report["B2"] = "=COUNTA(Deals!A2:A1000)"
    report["A1"].font = report["B1"].font = Font(bold=True, color="FF0000")
    report["B1"].fill = PatternFill("solid", fgColor="FFF2CC")
    mine["A1"], mine["B1"] = "Mine", "=Report!B1*2"
    wb.defined_names["BigDeals"] = DefinedName("BigDeals", attr_text=f"Deals!$I$2:$I${len(df) + 1}")
    wb.defined_names["Goal"] = DefinedName("Goal", attr_text="100000")
    wb.save(path)


@pytest.fixture(params=["xlsxwriter", "openpyxl"])
def managed(request, tmp_path):
    """(master path, its parts before the sync) for a master a manager built up with a chart and formulas."""
    path = tmp_path / "master.xlsx"
    (_xlsxwriter_master if request.param == "xlsxwriter" else _openpyxl_master)(path, deals_frame(4))
    return path, members(path)


def _owned_parts(path) -> set[str]:
    """The parts write_master owns in `path`: owned sheets, their rels and their tables."""
    with zipfile.ZipFile(path) as z:
        parts = xlsxpkg.sheet_parts(z)
        out = set()
        for name in OWNED:
            if name in parts:
                out |= {parts[name], xlsxpkg.rels_path(parts[name])}
                rels = xlsxpkg.rels_path(parts[name])
                if rels in z.namelist():
                    for r in xlsxpkg.read_xml(z, rels):
                        if r.get("Type").endswith("/table"):
                            out.add(xlsxpkg.resolve(parts[name], r.get("Target")))
    return out


PACKAGE_PARTS = {"xl/workbook.xml", "xl/_rels/workbook.xml.rels", "[Content_Types].xml", "xl/styles.xml"}


def test_existing_master_keeps_every_part_it_does_not_own(managed):
    path, before = managed
    new = deals_frame(9, offset=3)
    write_master(path, {"Deals": new})
    after = members(path)
    owned = _owned_parts(path) | PACKAGE_PARTS
    untouched = [n for n in before if n not in owned]
    assert any(n.startswith("xl/charts/") for n in untouched)
    assert any(n.startswith("xl/drawings/") for n in untouched)
    for n in untouched:
        assert after.get(n) == before[n], n  # byte-identical, including the Report sheet and its chart
    # The package parts changed only by insertion: defined names and the manager's sheets are as they were.
    wb_before, wb_after = before["xl/workbook.xml"].decode(), after["xl/workbook.xml"].decode()
    names = re.search(r"<definedNames>.*</definedNames>", wb_before).group()
    assert names in wb_after
    for tag in re.findall(r"<sheet [^>]*/>", wb_before):
        assert tag in wb_after
    assert 'fullCalcOnLoad="1"' in wb_after
    xfs_before = re.search(r"<cellXfs.*?</cellXfs>", before["xl/styles.xml"].decode(), re.S).group()
    xfs_after = re.search(r"<cellXfs.*?</cellXfs>", after["xl/styles.xml"].decode(), re.S).group()
    first = re.findall(r"<xf .*?(?:/>|</xf>)", xfs_before)
    assert re.findall(r"<xf .*?(?:/>|</xf>)", xfs_after)[:len(first)] == first  # existing indexes intact
    # The new rows are in, with the table grown to fit.
    wb = openpyxl.load_workbook(path)
    assert [c.value for c in wb["Deals"]["A"][1:]] == list(new["Deal ID"])
    assert wb["Deals"].tables["Deals"].ref == f"A1:T{len(new) + 1}"
    assert wb["Report"]["B1"].value == "=SUM(Deals!I2:I1000)"
    assert wb.defined_names["BigDeals"].attr_text.endswith("$I$2:$I$5")
    assert "Dashboard" in wb.sheetnames and wb.sheetnames[:3] == ["Report", "Deals", "My Numbers"]
    assert wb["Deals"].sheet_properties.tabColor.rgb == "FFFF0000"  # the manager's tab colour stays


def test_existing_master_opens_in_libreoffice_with_chart_and_new_numbers(soffice_uno, managed, tmp_path):
    path, _ = managed
    new = deals_frame(9, offset=3)
    write_master(path, {"Deals": new})
    with zipfile.ZipFile(path) as z:
        assert any(n.startswith("xl/charts/chart") for n in z.namelist())
    csv = sheets_as_csv(path, tmp_path, recalc=True, as_shown=False)
    assert list(csv)[:3] == ["Report", "Deals", "My Numbers"]
    total = float(csv["Report"][0][1])
    assert total == pytest.approx(new["Amount"].sum())  # the manager's formula reads the new rows
    assert csv["Report"][1][1] == str(len(new))
    assert float(csv["My Numbers"][0][1]) == pytest.approx(2 * total)
    assert [r[0] for r in csv["Deals"][1:len(new) + 1]] == list(new["Deal ID"])


def test_a_drawing_on_an_owned_sheet_survives(tmp_path):
    path = tmp_path / "m.xlsx"
    _xlsxwriter_master(path, deals_frame(4))
    write_master(path, {"Deals": deals_frame(5)})
    with zipfile.ZipFile(path) as z:
        part = xlsxpkg.sheet_parts(z)["Deals"]
        rels = {r.get("Type").rsplit("/", 1)[-1]: r.get("Target") for r in
                xlsxpkg.read_xml(z, xlsxpkg.rels_path(part))}
        assert set(rels) == {"drawing", "table"}
        assert xlsxpkg.resolve(part, rels["drawing"]) in z.namelist()
        xml = z.read(part).decode()
    assert re.search(r'<drawing r:id="[^"]+"/><tableParts', xml)


def test_replacing_a_sheet_reuses_its_table_part(managed):
    path, before = managed
    table_parts = sorted(n for n in before if n.startswith("xl/tables/"))
    write_master(path, {"Deals": deals_frame(3)})
    write_master(path, {"Deals": deals_frame(7)})
    after = members(path)
    assert table_parts[0] in after
    assert sum(n.startswith("xl/tables/") and "Deals" in after[n].decode() for n in after) == 1


def test_rewriting_with_the_same_frames_gives_the_same_bytes(managed, tmp_path):
    path, _ = managed
    tables = all_tables()
    write_master(path, tables)
    first = members(path)
    write_master(path, tables)
    second = members(path)
    assert first == second  # every part: owned ones regenerated identically, the rest copied
    assert Path(str(path) + ".bak").exists()
    assert members(str(path) + ".bak") == first


def test_only_given_owned_sheets_are_replaced(tmp_path):
    path = write_master(tmp_path / "m.xlsx", all_tables())
    before = members(path)
    log = pd.DataFrame({"Time": [D(2025, 7, 1)], "Sources": [3]})
    write_master(path, {"Sync Log": log})
    after = members(path)
    changed = {n for n in after if before.get(n) != after[n]}
    log_part = sheet_part(path, "Sync Log")
    assert changed <= {log_part, xlsxpkg.rels_path(log_part), "xl/tables/table8.xml"} | {
        n for n in after if n.startswith("xl/tables/") and "SyncLog" in after[n].decode()}
    assert sheet_part(path, "Deals") not in changed and sheet_part(path, "Dashboard") not in changed


def test_dashboard_is_rewritten_when_its_tables_change(tmp_path):
    path = write_master(tmp_path / "m.xlsx", all_tables())
    dash = sheet_part(path, "Dashboard")
    before = members(path)[dash]
    write_master(path, {"Issues": pd.DataFrame({"Message": ["x"]})})
    assert members(path)[dash] == before
    write_master(path, {"Dashboard": pd.DataFrame({"ignored": [1]})})
    assert members(path)[dash] == before  # a frame given for it is ignored
    write_master(path, {"Deals": deals_frame(2)})
    after = members(path)[dash]
    assert after != before  # new cached values
    assert re.findall(rb"<f>.*?</f>", after) == re.findall(rb"<f>.*?</f>", before)


def test_calc_chain_is_dropped(tmp_path):
    """Excel's calcChain lists formula cells; a stale one after we replace sheets makes Excel repair the file."""
    src = write_master(tmp_path / "m.xlsx", all_tables())
    path = tmp_path / "chain.xlsx"
    chain = '<calcChain xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><c r="B4" i="1"/></calcChain>'
    with zipfile.ZipFile(src) as z:
        rels = z.read("xl/_rels/workbook.xml.rels").decode().replace(
            "</Relationships>", '<Relationship Id="rId99" Type="http://schemas.openxmlformats.org/officeDocument/2006/'
                                'relationships/calcChain" Target="calcChain.xml"/></Relationships>')
        ct = z.read("[Content_Types].xml").decode().replace(
            "</Types>", '<Override PartName="/xl/calcChain.xml" ContentType="application/vnd.openxmlformats-'
                        'officedocument.spreadsheetml.calcChain+xml"/></Types>')
    xlsxpkg.rewrite(src, path, add={"xl/calcChain.xml": chain.encode()},
                    replace={"xl/_rels/workbook.xml.rels": rels.encode(), "[Content_Types].xml": ct.encode()})
    write_master(path, {"Deals": deals_frame(2)})
    after = members(path)
    assert "xl/calcChain.xml" not in after
    assert b"calcChain" not in after["xl/_rels/workbook.xml.rels"] and b"calcChain" not in after["[Content_Types].xml"]
    assert openpyxl.load_workbook(path)["Deals"]["A3"].value == "D-101"


def test_table_name_clash_is_a_clear_error(tmp_path):
    path = tmp_path / "m.xlsx"
    wb = xlsxwriter.Workbook(str(path))
    ws = wb.add_worksheet("Mine")
    ws.add_table(0, 0, 2, 1, {"name": "Deals", "columns": [{"header": "a"}, {"header": "b"}]})
    wb.close()
    before = path.read_bytes()
    with pytest.raises(SyncError, match="already has a table named 'Deals'"):
        write_master(path, {"Deals": deals_frame(2)})
    assert path.read_bytes() == before


# --- locks, out=, atomicity ---------------------------------------------------------------------


@pytest.mark.parametrize("lock", ["~$master.xlsx", ".~lock.master.xlsx#"])
def test_locked_master_is_refused_and_unchanged(tmp_path, lock):
    path = write_master(tmp_path / "master.xlsx", {"Deals": deals_frame(2)})
    before = path.read_bytes()
    (tmp_path / lock).write_text("someone")
    with pytest.raises(LockedError):
        write_master(path, {"Deals": deals_frame(5)})
    with pytest.raises(LockedError):
        write_master(path, {"Deals": deals_frame(5)}, out=tmp_path / "new.xlsx")
    assert path.read_bytes() == before
    assert not (tmp_path / "new.xlsx").exists() and not (tmp_path / "master.xlsx.bak").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["master.xlsx", lock])


def test_out_leaves_the_master_untouched(tmp_path):
    path = write_master(tmp_path / "master.xlsx", {"Deals": deals_frame(2)})
    before = path.read_bytes()
    out = write_master(path, {"Deals": deals_frame(5)}, out=tmp_path / "next.xlsx")
    assert out == tmp_path / "next.xlsx"
    assert path.read_bytes() == before and not (tmp_path / "master.xlsx.bak").exists()
    assert len(read_workbook(out).tables["Deals"]) == 5
    assert len(read_workbook(path).tables["Deals"]) == 2


def test_out_for_a_new_master(tmp_path):
    out = write_master(tmp_path / "master.xlsx", {"Deals": deals_frame(2)}, out=tmp_path / "tmp.xlsx")
    assert not (tmp_path / "master.xlsx").exists()
    assert list(read_workbook(out).tables["Deals"]["Deal ID"]) == ["D-100", "D-101"]


def test_a_failed_write_leaves_the_master_as_it_was(tmp_path, monkeypatch):
    path = write_master(tmp_path / "master.xlsx", {"Deals": deals_frame(2)})
    before = path.read_bytes()
    import salessheet.sheetxml as sheetxml

    def boom(*a, **k):
        raise RuntimeError("disk full")
        yield b""

    monkeypatch.setattr(sheetxml, "_frame_sheet", boom)
    with pytest.raises(RuntimeError):
        write_master(path, {"Deals": deals_frame(5)})
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["master.xlsx"]


def test_refuses_what_it_does_not_own(tmp_path):
    with pytest.raises(ValidationError, match="Report"):
        write_master(tmp_path / "m.xlsx", {"Report": deals_frame(1)})
    with pytest.raises(SyncError):
        (tmp_path / "bad.xlsx").write_bytes(b"PK\x03\x04 not a zip")
        write_master(tmp_path / "bad.xlsx", {"Deals": deals_frame(1)})


# --- values -------------------------------------------------------------------------------------


def test_odd_values_round_trip(tmp_path):
    df = pd.DataFrame({
        "Text": pd.Series(["a\x01b", "_x0041_", " lead", "trail ", "x" * 40_000, "line\nbreak", "", None],
                          dtype=object),
        "Str dtype": pd.Series(["é ünïcode ✓", None, "b", "c", "d", "e", "f", "g"], dtype="str"),
        "Category": pd.Categorical(["x", "y", "x", None, "y", "x", "x", "y"]),
        "Mixed": pd.Series([1, "two", 3.5, True, dt.date(2024, 5, 6), D(2024, 5, 6, 7, 8), dt.time(13, 30),
                            np.datetime64("NaT")], dtype=object),
        "Int": np.arange(8, dtype=np.int64) * 10**12,
        "Nullable": pd.array([1, None, 3, 4, 5, 6, 7, 8], dtype="Int64"),
        "Float": [0.1, -2.5, 1e20, np.inf, np.nan, 3.0, 1 / 3, -0.0],
        "Bool": pd.array([True, False, None, True, False, True, False, True], dtype="boolean"),
        "Old": pd.to_datetime(["1899-12-31", "1900-01-01", "1900-02-28", "1900-03-01", "2024-01-01", None,
                               "1970-01-01", "9999-12-31"]),
        "Aware": pd.to_datetime(["2024-01-01 10:00"] * 8).tz_localize("Europe/Paris"),
    })
    path = write_master(tmp_path / "m.xlsx", {"Conflicts": df})
    ws = openpyxl.load_workbook(path)["Conflicts"]
    col = lambda h: [ws.cell(r, list(df.columns).index(h) + 1).value for r in range(2, 10)]  # noqa: E731
    # Characters XML cannot hold are Excel's _xHHHH_ escapes, and a literal "_x0041_" gets its "_" escaped so that
    # Excel and LibreOffice do not decode it (openpyxl shows the escapes as written).
    assert col("Text") == ["a_x0001_b", "_x005F_x0041_", " lead", "trail ", "x" * 32_767, "line\nbreak", None, None]
    assert col("Str dtype")[:2] == ["é ünïcode ✓", None]
    assert col("Category") == ["x", "y", "x", None, "y", "x", "x", "y"]
    assert col("Mixed")[:6] == [1, "two", 3.5, True, D(2024, 5, 6), D(2024, 5, 6, 7, 8)]
    assert col("Mixed")[6] in (dt.time(13, 30), D(1899, 12, 30, 13, 30))
    assert col("Mixed")[7] is None
    assert col("Int") == [i * 10**12 for i in range(8)]
    assert col("Nullable") == [1, None, 3, 4, 5, 6, 7, 8]
    assert col("Float") == [0.1, -2.5, 1e20, None, None, 3, 1 / 3, 0]
    assert col("Bool") == [True, False, None, True, False, True, False, True]
    assert col("Old") == ["1899-12-31", D(1900, 1, 1), D(1900, 2, 28), D(1900, 3, 1), D(2024, 1, 1), None,
                          D(1970, 1, 1), D(9999, 12, 31)]
    assert col("Aware") == [D(2024, 1, 1, 10, 0)] * 8
    c = cells(path, "Conflicts")
    assert "B3" not in c and "A8" not in c and "A9" not in c  # None, "" -> no cell


def test_empty_frame_gets_a_table_with_one_blank_row(soffice, tmp_path):
    path = write_master(tmp_path / "m.xlsx", {"Issues": pd.DataFrame(columns=["File", "Message"]),
                                              "Conflicts": pd.DataFrame()})
    wb = openpyxl.load_workbook(path)
    assert wb["Issues"].tables["Issues"].ref == "A1:B2"
    assert not wb["Conflicts"].tables and wb["Conflicts"].max_row == 1
    assert sheets_as_csv(path, tmp_path)["Issues"][0] == ["File", "Message"]


def test_duplicate_and_blank_headers_are_made_unique(tmp_path):
    df = pd.DataFrame([[1, 2, 3, 4]], columns=["Amount", "amount", "", None])
    path = write_master(tmp_path / "m.xlsx", {"Conflicts": df})
    ws = openpyxl.load_workbook(path)["Conflicts"]
    assert [c.value for c in ws[1]] == ["Amount", "amount 2", "Column3", "Column4"]
    assert [c.name for c in ws.tables["Conflicts"].tableColumns] == ["Amount", "amount 2", "Column3", "Column4"]


def test_big_frames_are_written_in_chunks(tmp_path, monkeypatch):
    import salessheet.sheetxml as sheetxml

    monkeypatch.setattr(sheetxml, "CHUNK_ROWS", 7)
    df = deals_frame(50)
    path = write_master(tmp_path / "m.xlsx", {"Deals": df})
    got = read_workbook(path).tables["Deals"]
    assert list(got["Deal ID"]) == list(df["Deal ID"])
    assert list(got["Amount"]) == list(df["Amount"])


def test_zip64_records_are_readable(tmp_path, monkeypatch):
    monkeypatch.setattr(xlsxpkg, "ZIP64_LIMIT", 100)  # every member and the index go through zip64
    path = write_master(tmp_path / "m.xlsx", all_tables())
    with zipfile.ZipFile(path) as z:
        assert z.testzip() is None
    assert list(read_workbook(path).tables["Deals"]["Deal ID"]) == list(deals_frame()["Deal ID"])


def test_prefixed_package_xml_is_edited_in_its_own_prefix(tmp_path):
    """Some writers (the Open XML SDK) prefix every element (<x:sheets>); insertions must follow suit."""
    src = write_master(tmp_path / "m.xlsx", {"Deals": deals_frame(2)})
    ET.register_namespace("x", M[1:-1])
    ET.register_namespace("r", "http://schemas.openxmlformats.org/officeDocument/2006/relationships")
    with zipfile.ZipFile(src) as z:
        prefixed = {n: ET.tostring(ET.fromstring(z.read(n)), encoding="utf-8", xml_declaration=True)
                    for n in ("xl/workbook.xml", "xl/styles.xml")}
    path = tmp_path / "prefixed.xlsx"
    xlsxpkg.rewrite(src, path, replace=prefixed)
    assert b"<x:sheets>" in members(path)["xl/workbook.xml"]
    write_master(path, {"Sync Log": pd.DataFrame({"When": [D(2025, 1, 1, 8, 15)], "Amount": [5.0]})})
    after = members(path)
    assert re.search(rb'<x:sheet name="Sync Log" sheetId="\d+" r:id="rId\d+"/></x:sheets>', after["xl/workbook.xml"])
    assert b"<x:numFmt " in after["xl/styles.xml"] and b"<numFmt" not in after["xl/styles.xml"]
    wb = openpyxl.load_workbook(path)
    assert wb["Sync Log"]["A2"].number_format == "yyyy-mm-dd hh:mm"
    assert wb["Sync Log"]["B2"].number_format == "[$USD] #,##0.00"
    assert wb["Deals"]["A2"].value == "D-100"


_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12) | st.sampled_from(
    ["", " ", " a", "a ", "\n", "_x0041_", "_x00e9_", "&amp;", "<t>", "a\x00b", "\ufffe"])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.none(), _TEXT), min_size=1, max_size=12))
def test_any_text_round_trips_through_the_xml(tmp_path_factory, texts):
    """Decoding the written <t> (XML, then Excel's _xHHHH_ escapes) gives back every text; blanks are no cell."""
    path = write_master(tmp_path_factory.mktemp("t") / "m.xlsx",
                        {"Conflicts": pd.DataFrame({"T": pd.Series(texts, dtype=object)})})
    got = {c.get("r"): c for c in ET.fromstring(sheet_xml(path, "Conflicts")).iter(M + "c")}
    for r, text in enumerate(texts, start=2):
        if not text:
            assert f"A{r}" not in got
            continue
        t = got[f"A{r}"].find(f"{M}is/{M}t")
        decoded = re.sub(r"_x([0-9A-F]{4})_", lambda m: chr(int(m.group(1), 16)), t.text)
        assert decoded == text
        if any(ch.isspace() and (ch in "\t\n" or ord(ch) >= 0x20) for ch in (text[0], text[-1])):
            assert t.get("{http://www.w3.org/XML/1998/namespace}space") == "preserve"  # else Excel trims it
