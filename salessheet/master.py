"""Write the sync master: salessheet's own sheets from frames, every other part of the package untouched.

A master is a workbook that managers also use: their own sheets, formulas, charts, pivot tables, names
and macros live beside the sheets salessheet owns (OWNED). openpyxl drops charts and images on
load/save, so the master is never round-tripped through a library: the package is edited part by part.
Owned sheets (their XML, table and rels parts) are written anew; workbook.xml, its rels,
[Content_Types].xml and styles.xml get small text insertions (new sheets, our cell formats, and
fullCalcOnLoad so every formula shows the new data); all other parts are copied byte for byte.

Sheet XML is built per column with numpy/pandas (each distinct value formatted once, rows assembled by one
join per chunk of rows) and deflated in a second thread while the next chunk is built: a 400,000-row
Deals sheet takes a few seconds (bench/master_write_bench.py).

Cell rules: text is always an inline string, never a formula (a team sheet cannot plant one in the
master); blanks (None, NaN, NaT, "") are no cell at all; dates are Excel serial numbers with a date
format; numbers, booleans and the standard money/percent formats by column.
"""
from __future__ import annotations

import datetime as dt
import math
import re
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Iterator
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

import numpy as np
import pandas as pd

from . import schema, template, xlsxpkg
from .errors import SyncError, ValidationError
from .reader import column_letter
from .xlsxpkg import NS

OWNED = ("Deals", "Leads", "Costs", "Targets", "Stages", "Issues", "Conflicts", "Sync Log", "Dashboard")
DASHBOARD = "Dashboard"
DASHBOARD_TABLES = ("Deals", "Leads", "Costs", "Stages")  # the tables the Dashboard's formulas read
NEW_ORDER = (DASHBOARD,) + tuple(n for n in OWNED if n != DASHBOARD)  # sheet order of a new master
MAX_ROWS, MAX_COLS, MAX_TEXT = 1_048_576, 16_384, 32_767  # Excel's limits
CHUNK_ROWS = 2_000  # rows per XML chunk handed to the deflate thread (small chunks stay in CPU cache)

_MAIN, _REL = NS["m"], NS["r"]
_PKG_REL = NS["pr"]
_RT = "http://schemas.openxmlformats.org/officeDocument/2006/relationships/"
_CT = "application/vnd.openxmlformats-officedocument.spreadsheetml."
_CT_SHEET, _CT_TABLE = _CT + "worksheet+xml", _CT + "table+xml"
# Parts that belong to one sheet only: dropped with the owned sheet that used them.
_SHEET_ONLY = ("table", "comments", "vmlDrawing", "threadedComment", "printerSettings")


def write_master(path, tables: dict[str, pd.DataFrame], out=None, backup: bool = True) -> Path:
    """Write the owned sheets in `tables` into the master workbook at `path`; return the file written.

    tables: owned sheet name -> frame written as that whole sheet (an Excel table named like the sheet
    without spaces). "Dashboard" is salessheet's own KPI sheet: a frame given for it is ignored; it is
    written when Deals, Leads, Costs or Stages is (its numbers change) or when the master has none.
    path missing: a new master. path existing: only the given owned sheets are replaced (or added);
    every other part stays byte-identical. out=None replaces `path` atomically (old one kept as
    path.bak when `backup`); out=PATH writes the new package there and leaves `path` alone.
    Raises LockedError (nothing changed) when the master is open in another program.
    """
    path = Path(path)
    xlsxpkg.check_unlocked(path)
    frames = _checked(tables)
    pkg = _Package(path if path.exists() else None)
    try:
        plan = _plan(pkg, frames)
        dst = Path(out) if out is not None else path
        with xlsxpkg.atomic_write(dst, backup=backup and out is None) as tmp:
            pkg.write(tmp, plan)
    except (xlsxpkg.PackageError, ET.ParseError, KeyError) as e:
        raise SyncError(f"{path}: the master cannot be updated: {e}; save it again from Excel or LibreOffice") from e
    finally:
        pkg.close()
    return dst


def table_name(sheet: str) -> str:
    """The Excel table an owned sheet holds: its name without spaces ("Sync Log" -> "SyncLog")."""
    return sheet.replace(" ", "")


# --- what to write ------------------------------------------------------------------------------


def _checked(tables) -> dict[str, pd.DataFrame]:
    unknown = [n for n in tables if n not in OWNED]
    if unknown:
        raise ValidationError(f"not sheets salessheet owns in a master: {', '.join(map(str, unknown))}; "
                              f"use {', '.join(OWNED)}")
    out = {}
    for name, df in tables.items():
        if name == DASHBOARD:
            continue
        if not isinstance(df, pd.DataFrame):
            raise ValidationError(f"{name}: expected a pandas DataFrame, got {type(df).__name__}")
        if len(df) + 1 > MAX_ROWS or df.shape[1] > MAX_COLS:
            raise ValidationError(f"{name} has {len(df):,} rows and {df.shape[1]} columns; a sheet holds at most "
                                  f"{MAX_ROWS - 1:,} rows under its header and {MAX_COLS:,} columns")
        out[name] = df
    return out


class _Sheet:
    """One owned sheet to write: where it goes, and what it holds (a frame, or the Dashboard)."""

    def __init__(self, name: str, frame: pd.DataFrame | None, part: str):
        self.name, self.frame, self.part = name, frame, part
        self.table_part: str | None = None
        self.table_id = 0
        self.rels: list[tuple[str, str, str, str | None]] = []  # (Id, Type, Target, TargetMode)
        self.drawing_rid: str | None = None
        self.table_rid: str | None = None
        self.selected = False
        self.sheet_pr = ""  # the old sheet's <sheetPr> (tab colour, VBA code name), kept
        self.headers: list[str] = []
        self.cells: list[_Cells] = []
        self.xml = b""


def _plan(pkg: _Package, frames: dict[str, pd.DataFrame]) -> _Plan:
    plan = _Plan(pkg)
    have = {n.casefold(): n for n in pkg.sheets}
    write = dict(frames)
    # Written when its numbers can change (or it is missing); otherwise it stays, cached values and all.
    dashboard = DASHBOARD.casefold() not in have or any(t in frames for t in DASHBOARD_TABLES)
    if dashboard and "Stages" not in write and "stages" not in have:
        from .book import default_stages  # the KPIs fall back to the standard stages; so does the master

        write["Stages"] = default_stages()
    if dashboard:
        write[DASHBOARD] = None
    order = [n for n in (OWNED if pkg.src else NEW_ORDER) if n in write]
    for name in order:
        plan.add_sheet(name, write[name])
    plan.finish()
    return plan


class _Plan:
    """Every part to replace, add or delete, worked out before anything is written."""

    def __init__(self, pkg: _Package):
        self.pkg = pkg
        self.sheets: list[_Sheet] = []
        self.replace: dict[str, bytes] = {}
        self.add: dict[str, bytes] = {}
        self.delete: set[str] = set()
        self.new_sheets: list[_Sheet] = []
        self.styles = xlsxpkg.CellStyles(pkg.text(pkg.styles_part), _STYLE_SPECS)
        self.tables = pkg.tables()  # casefolded table name -> (part, id, name, columns)
        self._reserved: set[str] = set()

    def new_part(self, pattern: str) -> str:
        """The first free part name pattern.format(1, 2, ...) (part names compare case-insensitively)."""
        used = {n.casefold() for n in self.pkg.names | self._reserved}
        i = 1
        while pattern.format(i).casefold() in used:
            i += 1
        self._reserved.add(pattern.format(i))
        return pattern.format(i)

    def add_sheet(self, name: str, frame: pd.DataFrame | None) -> None:
        pkg = self.pkg
        existing = next((s for n, s in pkg.sheets.items() if n.casefold() == name.casefold()), None)
        if existing is not None:
            if existing["ct"] != _CT_SHEET:
                raise SyncError(f"the master's sheet {existing['name']!r} is not a worksheet; rename it so "
                                f"salessheet can write its {name} sheet")
            sheet = _Sheet(existing["name"], frame, existing["part"])
            self._reclaim(sheet)
        else:
            sheet = _Sheet(name, frame, self.new_part("xl/worksheets/sheet{}.xml"))
            self.new_sheets.append(sheet)
        if frame is not None and frame.shape[1]:
            tname = table_name(name)
            clash = self.tables.get(tname.casefold())
            if clash is not None and clash[0] not in self.delete and clash[0] != sheet.table_part:
                raise SyncError(f"the master already has a table named {clash[2]!r} (in {clash[0]}); rename it "
                                f"so salessheet can write its {name} table")
            if tname.casefold() in pkg.defined_names:
                raise SyncError(f"the master has a defined name {tname!r}; rename it so salessheet can write its "
                                f"{name} table")
            if sheet.table_part is None:
                sheet.table_part = self.new_part("xl/tables/table{}.xml")
                sheet.table_id = max([t[1] for t in self.tables.values()] + [0]) + 1
                self.add[sheet.table_part] = b""  # reserve the name; filled in by finish()
            self.tables[tname.casefold()] = (sheet.table_part, sheet.table_id, tname,
                                             [str(c) for c in _headers(frame)])
        self.sheets.append(sheet)

    def _reclaim(self, sheet: _Sheet) -> None:
        """Take over an existing owned sheet: keep its drawing (a chart put on it) and tab settings, drop the rest."""
        pkg = self.pkg
        sheet.sheet_pr = _sheet_pr(pkg.head(sheet.part))
        rels_part = xlsxpkg.rels_path(sheet.part)
        for rid, typ, target, mode in pkg.rels(rels_part):
            kind = typ.rsplit("/", 1)[-1]
            if kind == "drawing" and sheet.drawing_rid is None:
                sheet.rels.append((rid, typ, target, mode))
                sheet.drawing_rid = rid
                continue
            if mode == "External" or kind not in _SHEET_ONLY:
                continue
            part = xlsxpkg.resolve(sheet.part, target)
            if kind == "table" and sheet.table_part is None:  # reuse the part and id: same bytes next time
                sheet.table_part = part
                sheet.table_id = next((t[1] for t in self.tables.values() if t[0] == part), 0)
                continue
            self.delete.add(part)
            self.delete.add(xlsxpkg.rels_path(part))
        if sheet.table_part is not None:
            self.tables = {k: v for k, v in self.tables.items() if v[0] != sheet.table_part}
            if not sheet.table_id:
                sheet.table_id = max([t[1] for t in self.tables.values()] + [0]) + 1
        for k, v in list(self.tables.items()):
            if v[0] in self.delete:
                del self.tables[k]

    def finish(self) -> None:
        pkg = self.pkg
        active = pkg.active_sheet()
        for sheet in self.sheets:
            has_table = sheet.frame is not None and sheet.frame.shape[1] > 0
            if sheet.table_part is not None and not has_table:  # an old table we no longer need
                self.delete.add(sheet.table_part)
                self.add.pop(sheet.table_part, None)
                sheet.table_part = None
            taken = {r[0] for r in sheet.rels}
            if has_table:
                sheet.table_rid = xlsxpkg.free_rel_id(taken)
                target = xlsxpkg.relative_target(sheet.part, sheet.table_part)
                sheet.rels.append((sheet.table_rid, _RT + "table", target, None))
            sheet.selected = (sheet.name == active) if pkg.src else sheet.name == DASHBOARD
        for sheet in self.sheets:  # typed before styles.xml is written: the columns pick their formats
            if sheet.frame is not None:
                sheet.headers = _headers(sheet.frame)
                sheet.cells = [_cells(h, sheet.frame.iloc[:, j], self.styles) for j, h in enumerate(sheet.headers)]
        # The Dashboard reads the final tables (given now or already in the master).
        for sheet in self.sheets:
            if sheet.frame is None:
                frames = {s.name: s.frame for s in self.sheets if s.frame is not None}
                columns = {v[2]: v[3] for v in self.tables.values()}
                sheet.xml = _dashboard_xml(self.styles, frames, columns, sheet)
            else:
                sheet.xml = None
        for sheet in self.sheets:
            if sheet.table_part is not None:
                part = (self.replace if sheet.table_part in pkg.names else self.add)
                part[sheet.table_part] = _table_xml(sheet)
            rels_part = xlsxpkg.rels_path(sheet.part)
            if sheet.rels:
                (self.replace if rels_part in pkg.names else self.add)[rels_part] = xlsxpkg.rels_xml(sheet.rels)
            elif rels_part in pkg.names:
                self.delete.add(rels_part)
        self._edit_package()

    def _edit_package(self) -> None:
        pkg = self.pkg
        wb, wb_rels, ct = pkg.text(pkg.workbook_part), pkg.text(xlsxpkg.rels_path(pkg.workbook_part)), pkg.text(
            "[Content_Types].xml")
        taken = {r[0] for r in pkg.rels(xlsxpkg.rels_path(pkg.workbook_part))}
        next_id = max([s["sheetId"] for s in pkg.sheets.values()] + [0]) + 1
        for sheet in self.new_sheets:
            rid = xlsxpkg.free_rel_id(taken)
            taken.add(rid)
            wb = xlsxpkg.insert_before_end(wb, "sheets", f'<sheet name={quoteattr(sheet.name)} sheetId="{next_id}" '
                                                  f'{xlsxpkg.rel_id_attr(wb)}="{rid}"/>', _MAIN)
            next_id += 1
            target = xlsxpkg.relative_target(pkg.workbook_part, sheet.part)
            rel = f'<Relationship Id="{rid}" Type="{_RT}worksheet" Target="{target}"/>'
            wb_rels = xlsxpkg.insert_before_end(wb_rels, "Relationships", rel, _PKG_REL)
            ct = xlsxpkg.add_override(ct, sheet.part, _CT_SHEET)
        for part in self.add:
            if part.endswith(".xml") and "/tables/" in part:
                ct = xlsxpkg.add_override(ct, part, _CT_TABLE)
        for rid, typ, target, _ in pkg.rels(xlsxpkg.rels_path(pkg.workbook_part)):
            if typ.endswith("/calcChain"):  # Excel rebuilds it; a stale one lists formulas we removed
                self.delete.add(xlsxpkg.resolve(pkg.workbook_part, target))
                wb_rels = xlsxpkg.remove_rel(wb_rels, rid)
        for part in self.delete:
            ct = xlsxpkg.remove_override(ct, part)
        wb = xlsxpkg.full_calc_on_load(wb)
        styles = self.styles.xml()
        for part, new, old in ((pkg.workbook_part, wb, pkg.text(pkg.workbook_part)),
                               (xlsxpkg.rels_path(pkg.workbook_part), wb_rels,
                                pkg.text(xlsxpkg.rels_path(pkg.workbook_part))),
                               ("[Content_Types].xml", ct, pkg.text("[Content_Types].xml")),
                               (pkg.styles_part, styles, pkg.text(pkg.styles_part))):
            if new != old or part not in pkg.names:
                (self.replace if part in pkg.names else self.add)[part] = new.encode("utf-8")
        self.delete -= set(self.replace) | set(self.add)


# --- the package --------------------------------------------------------------------------------


class _Package:
    """The master as it is (or a blank workbook): parts, sheets, rels, tables."""

    def __init__(self, src: Path | None):
        self.src = src
        self._blank = None if src else _blank_parts()
        self._cache: dict[str, str] = {}
        self._zip = None
        if src:
            try:
                self._zip = zipfile.ZipFile(src)
            except zipfile.BadZipFile:
                raise SyncError(f"{src}: the master is not a valid xlsx file (not a complete zip archive)") from None
            self.infos = self._zip.infolist()
        else:
            self.infos = [zipfile.ZipInfo(n) for n in self._blank]
        self.names = {i.filename for i in self.infos}
        self.workbook_part = self._main_part()
        wb_rels = {rid: (typ, xlsxpkg.resolve(self.workbook_part, t)) for rid, typ, t, _ in
                   self.rels(xlsxpkg.rels_path(self.workbook_part))}
        self.styles_part = next((p for typ, p in wb_rels.values() if typ.endswith("/styles")), None)
        if self.styles_part is None:
            raise SyncError(f"{src}: the master has no styles part; save it again from Excel or LibreOffice")
        self.overrides = self._overrides()
        root = ET.fromstring(self.text(self.workbook_part))
        self.sheets: dict[str, dict] = {}
        for s in root.iterfind("m:sheets/m:sheet", NS):
            typ, part = wb_rels.get(s.get(xlsxpkg.R_ID), ("", ""))
            self.sheets[s.get("name")] = {"name": s.get("name"), "sheetId": int(s.get("sheetId") or 0),
                                          "part": part, "ct": self.overrides.get(part.casefold(), "")}
        view = root.find("m:bookViews/m:workbookView", NS)
        self._active = int(view.get("activeTab") or 0) if view is not None else 0
        self.defined_names = {d.get("name", "").casefold() for d in root.iterfind("m:definedNames/m:definedName", NS)}

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()

    def text(self, name: str) -> str:
        if name not in self._cache:
            if name not in self.names:
                raise SyncError(f"{self.src}: the master has no part {name}")
            data = self._zip.read(name) if self._zip else self._blank[name]
            self._cache[name] = data.decode("utf-8-sig")
        return self._cache[name]

    def head(self, name: str, size: int = 1 << 16) -> str:
        """The first `size` bytes of a part, as text (enough to see a sheet's leading elements)."""
        if self._zip is None or name not in self.names:
            return ""
        with self._zip.open(name) as f:
            return f.read(size).decode("utf-8", "ignore")

    def _main_part(self) -> str:
        for rid, typ, target, _ in self.rels("_rels/.rels"):
            if typ.endswith("/officeDocument"):
                return xlsxpkg.resolve("", target)
        raise SyncError(f"{self.src}: not a spreadsheet package (no workbook part)")

    def rels(self, rels_part: str) -> list[tuple[str, str, str, str | None]]:
        if rels_part not in self.names:
            return []
        root = ET.fromstring(self.text(rels_part))
        return [(r.get("Id"), r.get("Type", ""), r.get("Target", ""), r.get("TargetMode"))
                for r in root.iterfind("pr:Relationship", NS)]

    def _overrides(self) -> dict[str, str]:
        root = ET.fromstring(self.text("[Content_Types].xml"))
        return {o.get("PartName", "").lstrip("/").casefold(): o.get("ContentType", "")
                for o in root.iterfind("ct:Override", NS)}

    def tables(self) -> dict[str, tuple[str, int, str, list[str]]]:
        """casefolded table name -> (part, id, name, column names), for every table in the package."""
        out = {}
        for info in self.infos:
            if self.overrides.get(info.filename.casefold()) != _CT_TABLE:
                continue
            root = ET.fromstring(self.text(info.filename))
            name = root.get("displayName") or root.get("name") or ""
            cols = [c.get("name", "") for c in root.iterfind("m:tableColumns/m:tableColumn", NS)]
            out[name.casefold()] = (info.filename, int(root.get("id") or 0), name, cols)
        return out

    def active_sheet(self) -> str | None:
        order = list(self.sheets)
        return order[self._active] if 0 <= self._active < len(order) else None

    def write(self, dst: Path, plan: _Plan) -> None:
        sheets = {s.part: s for s in plan.sheets}
        done = set()
        with xlsxpkg.ZipWriter(dst) as zout:
            raw = open(self.src, "rb") if self.src else None
            try:
                for info in self.infos:
                    name = info.filename
                    if name in plan.delete:
                        continue
                    if name in sheets:
                        _write_sheet(zout, sheets[name], plan.styles)
                    elif name in plan.replace:
                        zout.write(name, plan.replace[name])
                    elif raw is not None:
                        zout.copy(raw, info)
                    else:
                        zout.write(name, self._blank[name])
                    done.add(name)
            finally:
                if raw is not None:
                    raw.close()
            for sheet in plan.sheets:
                if sheet.part not in done:
                    _write_sheet(zout, sheet, plan.styles)
            for name, data in plan.add.items():
                if name not in done:
                    zout.write(name, data)


def _blank_parts() -> dict[str, bytes]:
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    parts = {
        "[Content_Types].xml": (
            f'{xlsxpkg.XML_HEAD}<Types xmlns="{NS["ct"]}">'
            '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
            '<Default Extension="xml" ContentType="application/xml"/>'
            f'<Override PartName="/xl/workbook.xml" ContentType="{_CT}sheet.main+xml"/>'
            f'<Override PartName="/xl/styles.xml" ContentType="{_CT}styles+xml"/>'
            '<Override PartName="/docProps/core.xml" '
            'ContentType="application/vnd.openxmlformats-package.core-properties+xml"/>'
            '<Override PartName="/docProps/app.xml" '
            'ContentType="application/vnd.openxmlformats-officedocument.extended-properties+xml"/></Types>'),
        "_rels/.rels": (
            f'{xlsxpkg.XML_HEAD}<Relationships xmlns="{_PKG_REL}">'
            f'<Relationship Id="rId1" Type="{_RT}officeDocument" Target="xl/workbook.xml"/>'
            '<Relationship Id="rId2" Type="http://schemas.openxmlformats.org/package/2006/relationships/metadata/'
            'core-properties" Target="docProps/core.xml"/>'
            f'<Relationship Id="rId3" Type="{_RT}extended-properties" Target="docProps/app.xml"/></Relationships>'),
        "docProps/app.xml": (
            f'{xlsxpkg.XML_HEAD}<Properties '
            'xmlns="http://schemas.openxmlformats.org/officeDocument/2006/extended-properties">'
            '<Application>salessheet</Application></Properties>'),
        "docProps/core.xml": (
            f'{xlsxpkg.XML_HEAD}<cp:coreProperties xmlns:cp="http://schemas.openxmlformats.org/package/2006/metadata/'
            'core-properties" xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:dcterms="http://purl.org/dc/terms/" '
            'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><dc:title>Sales master</dc:title>'
            '<dc:creator>salessheet</dc:creator>'
            f'<dcterms:created xsi:type="dcterms:W3CDTF">{now}</dcterms:created>'
            f'<dcterms:modified xsi:type="dcterms:W3CDTF">{now}</dcterms:modified></cp:coreProperties>'),
        "xl/workbook.xml": (
            f'{xlsxpkg.XML_HEAD}<workbook xmlns="{_MAIN}" xmlns:r="{_REL}"><workbookPr/>'
            '<bookViews><workbookView activeTab="0"/></bookViews><sheets></sheets>'
            '<calcPr calcId="191029" fullCalcOnLoad="1"/></workbook>'),
        "xl/_rels/workbook.xml.rels": (
            f'{xlsxpkg.XML_HEAD}<Relationships xmlns="{_PKG_REL}">'
            f'<Relationship Id="rId1" Type="{_RT}styles" Target="styles.xml"/></Relationships>'),
        "xl/styles.xml": (
            f'{xlsxpkg.XML_HEAD}<styleSheet xmlns="{_MAIN}">'
            '<fonts count="1"><font><sz val="11"/><name val="Calibri"/><family val="2"/></font></fonts>'
            '<fills count="2"><fill><patternFill patternType="none"/></fill>'
            '<fill><patternFill patternType="gray125"/></fill></fills>'
            '<borders count="1"><border><left/><right/><top/><bottom/><diagonal/></border></borders>'
            '<cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/></cellStyleXfs>'
            '<cellXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0"/></cellXfs>'
            '<cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/></cellStyles>'
            '<dxfs count="0"/><tableStyles count="0" defaultTableStyle="TableStyleMedium2" '
            'defaultPivotStyle="PivotStyleLight16"/></styleSheet>'),
    }
    return {k: v.encode("utf-8") for k, v in parts.items()}


# Our cell formats (see xlsxpkg.CellStyles).
_STYLE_SPECS = {
    "date": ("yyyy-mm-dd", None, False, False),
    "datetime": ("yyyy-mm-dd hh:mm", None, False, False),
    "time": ("hh:mm", None, False, False),
    "money": (template.money_format(), None, False, False),
    "percent": (9, None, False, False),  # 0%
    "int": (1, None, False, False),  # 0
    "pct1": ("0.0%", None, False, False),
    "days": ("0.0", None, False, False),
    "title": (0, "title", False, False),
    "label": (0, "bold", False, True),
    "wrap": (0, None, False, True),
    "head": (0, "bold", True, False),
}


# --- cells: one column at a time, each distinct value formatted once ------------------------------

_EPOCH = pd.Timestamp("1899-12-30")
_DAY = pd.Timedelta(days=1)
_KIND = {}  # column name -> kind, from every standard table (Amount: money, Probability: percent, ...)
_WIDTH = {}
for _t in schema.TABLES.values():
    for _c in _t.columns:
        _KIND.setdefault(_c.name, _c.kind)
        _WIDTH.setdefault(_c.name, _c.width)
_NUM_STYLE = {"money": "money", "percent": "percent", "int": "int"}
# Text that cannot go into <t> as it is: markup, characters XML forbids, Excel's own _xHHHH_ escapes, and
# leading/trailing whitespace (needs xml:space). Checked on all distinct values of a column at once,
# joined by "\n", so a column of plain text costs a few regex scans; each pattern has a literal or a
# single class up front (fast to scan for) and each hit is one character, so no hit hides the next.
_NEEDS_CARE = [re.compile(p) for p in (r"[&<>\r\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]",
                                         r"_x[0-9A-Fa-f]{4}_", r"\n(?=\s)", r"\s(?=\n)")]
# XML parsers turn a raw CR into LF, so CR is escaped too (as Excel does).
_XESC = re.compile(r"_(?=x[0-9A-Fa-f]{4}_)|[\r\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_TEXT_HEAD, _TEXT_TAIL = '" t="inlineStr"><is><t>', "</t></is></c>"


class _Cells:
    """A column as cell XML: codes (one per row, -1 = no cell) into tails ('" s="3"><v>45000</v></c>')."""

    def __init__(self, codes: np.ndarray, tails, style: str | None = None, width: float = 0.0):
        arr = np.empty(len(tails) + 1, dtype=object)  # codes of -1 pick the trailing ""
        arr[:-1] = tails
        arr[-1] = ""
        tails = arr
        empty = np.flatnonzero(tails[:-1] == "")
        if empty.size:
            codes = np.where(np.isin(codes, empty), -1, codes)
        self.codes, self.tails, self.style, self.width = codes, tails, style, width


def _text_xml(x: str) -> str:
    """The <t> content of one text cell (and the tail that closes the cell)."""
    if not x:
        return ""
    x = x[:MAX_TEXT]
    x = re.sub(r"[\ud800-\udfff]", "\ufffd", x)  # lone surrogates cannot be encoded
    x = _XESC.sub(lambda m: "_x005F_" if m.group() == "_" else "_x%04X_" % ord(m.group()), x)
    x = escape(x)
    if x[0].isspace() or x[-1].isspace():
        return '" t="inlineStr"><is><t xml:space="preserve">' + x + _TEXT_TAIL
    return _TEXT_HEAD + x + _TEXT_TAIL


def _text_cells(values) -> _Cells:
    codes, uniq = pd.factorize(values, use_na_sentinel=True)
    u = uniq.tolist()  # all str: the caller checked
    if not u:
        return _Cells(codes, [])
    tails = _TEXT_HEAD + np.array(u, dtype=object) + _TEXT_TAIL
    # One scan of all distinct values; only those it flags get the careful (slow) treatment.
    joined = "\n".join(u)
    hits = [m.start() for rx in _NEEDS_CARE for m in rx.finditer(joined)]
    if joined[:1].isspace() or joined[-1:].isspace():
        hits += [0, len(joined) - 1]
    lens = np.fromiter(map(len, u), dtype=np.int64, count=len(u))
    long = np.flatnonzero(lens > MAX_TEXT).tolist()
    if hits or long:
        starts = np.concatenate(([0], np.cumsum(lens[:-1] + 1)))
        # A hit on a separator ("\n" then a space) is about the value after it: redo both neighbours.
        idx = np.searchsorted(starts, hits, side="right") - 1
        for i in set(idx.tolist()) | set((idx + 1).tolist()) | set(long):
            if 0 <= i < len(u):
                tails[i] = _text_xml(u[i])
    tails[lens == 0] = ""  # "" is a blank cell
    return _Cells(codes, tails, None, _text_width(u))


def _text_width(u: list[str]) -> float:
    lens = sorted(len(x) for x in u[:2000])
    return float(lens[int(len(lens) * 0.9)] if lens else 0)


def _num(x: float) -> str:
    if x != x or x in (math.inf, -math.inf):
        return ""
    r = repr(float(x))
    return r[:-2] if r.endswith(".0") else r


def _nums(a) -> np.ndarray:
    """_num of every value, vectorised: whole numbers via int (no ".0"), the rest by repr (shortest exact)."""
    a = np.asarray(a, dtype=float)
    out = np.full(len(a), "", dtype=object)
    fin = np.isfinite(a)
    whole = fin & (a == np.round(a)) & (np.abs(a) < 2.0**53)
    out[whole] = list(map(str, a[whole].astype(np.int64).tolist()))
    rest = fin & ~whole
    out[rest] = list(map(repr, a[rest].tolist()))
    return out


def _value_tails(attr: str, a) -> np.ndarray:
    v = _nums(a)
    tails = attr + v + "</v></c>"
    tails[v == ""] = ""
    return tails


def _number_cells(values: pd.Series, style: str | None, styles) -> _Cells:
    codes, uniq = pd.factorize(values, use_na_sentinel=True)
    attr = f'" s="{styles(style)}"><v>' if style else '"><v>'
    return _Cells(codes, _value_tails(attr, np.asarray(uniq, dtype=float)), style, 12)


def _bool_cells(values: pd.Series) -> _Cells:
    codes, uniq = pd.factorize(values.astype("boolean"), use_na_sentinel=True)
    return _Cells(codes, ['" t="b"><v>1</v></c>' if bool(x) else '" t="b"><v>0</v></c>' for x in uniq.tolist()],
                  None, 8)


def _serial(ts: pd.Timestamp) -> float | None:
    """Excel's day number (1900 date system, counting its phantom 1900-02-29), None outside 1900-9999."""
    days = (ts - _EPOCH) / _DAY
    if days < 61:
        days -= 1
    return days if 1 <= days < 2958466 else None


def _iso(ts: pd.Timestamp) -> str:
    return ts.date().isoformat() if ts == ts.normalize() else ts.isoformat(sep=" ")


def _date_cells(values: pd.Series, styles) -> _Cells:
    if getattr(values.dt, "tz", None) is not None:
        values = values.dt.tz_localize(None)  # the wall-clock time, as the sheet showed it
    codes, uniq = pd.factorize(values, use_na_sentinel=True)
    uniq = pd.DatetimeIndex(uniq)
    timed = bool((uniq != uniq.normalize()).any())
    style = "datetime" if timed else "date"
    days = ((uniq - _EPOCH) / _DAY).to_numpy(dtype=float)
    tails = _value_tails(f'" s="{styles(style)}"><v>', days)
    # Before 1900-03-01 Excel counts a phantom 1900-02-29; before 1900 and after 9999 it has no day numbers.
    for i in np.flatnonzero((days < 61) | (days >= 2958466)).tolist():
        ts = uniq[i]
        s = _serial(ts)
        tails[i] = f'" s="{styles(style)}"><v>{_num(s)}</v></c>' if s is not None else _text_xml(_iso(ts))
    return _Cells(codes, tails, style, 17 if timed else 12)


def _any_cell(v, styles) -> str:
    """Tail of one cell of any Python value (columns of mixed types)."""
    if v is None or v is pd.NA or v is pd.NaT or (isinstance(v, np.datetime64) and np.isnat(v)):
        return ""
    if isinstance(v, (bool, np.bool_)):
        return '" t="b"><v>1</v></c>' if v else '" t="b"><v>0</v></c>'
    if isinstance(v, (int, float, np.integer, np.floating)):
        n = _num(float(v))
        return f'"><v>{n}</v></c>' if n else ""
    if isinstance(v, (dt.datetime, dt.date, np.datetime64)):
        ts = pd.Timestamp(v)
        if ts.tzinfo is not None:
            ts = ts.tz_localize(None)
        s = _serial(ts)
        if s is None:
            return _text_xml(_iso(ts))
        return f'" s="{styles("date" if ts == ts.normalize() else "datetime")}"><v>{_num(s)}</v></c>'
    if isinstance(v, dt.time):
        frac = (v.hour * 3600 + v.minute * 60 + v.second + v.microsecond / 1e6) / 86400
        return f'" s="{styles("time")}"><v>{_num(frac)}</v></c>'
    return _text_xml(v if isinstance(v, str) else str(v))


def _cells(name: str, values: pd.Series, styles) -> _Cells:
    """The cells of one column, typed by its dtype (object columns: by what they hold)."""
    kind = _KIND.get(name)
    dtype = values.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        values = values.astype(object)
        dtype = values.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return _bool_cells(values)
    if pd.api.types.is_numeric_dtype(dtype):
        return _number_cells(values, _NUM_STYLE.get(kind), styles)
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return _date_cells(values, styles)
    if dtype != object and pd.api.types.is_string_dtype(dtype):
        return _text_cells(values)
    inferred = pd.api.types.infer_dtype(values, skipna=True)
    if inferred in ("string", "empty"):
        return _text_cells(values)
    if inferred in ("floating", "integer", "mixed-integer-float", "decimal"):
        return _number_cells(pd.to_numeric(values), _NUM_STYLE.get(kind), styles)
    if inferred == "boolean":
        return _bool_cells(values)
    if inferred in ("datetime", "datetime64", "date"):
        try:
            return _date_cells(pd.to_datetime(values), styles)
        except (ValueError, TypeError, OverflowError):
            pass
    out = [_any_cell(v, styles) for v in values.tolist()]
    codes = np.arange(len(out), dtype=np.intp)
    return _Cells(codes, out, None, _text_width([x for x in map(str, values.tolist()[:2000])]))


# --- sheets -------------------------------------------------------------------------------------


def _headers(frame: pd.DataFrame) -> list[str]:
    """Header texts: unique (case-insensitively, as Excel tables need), never blank."""
    out, seen = [], set()
    for i, c in enumerate(frame.columns):
        blank = c is None or (isinstance(c, float) and math.isnan(c))
        h = re.sub(r"[\x00-\x1f]", " ", "" if blank else str(c)).strip() or f"Column{i + 1}"
        base, n = h, 2
        while h.casefold() in seen:
            h, n = f"{base} {n}", n + 1
        seen.add(h.casefold())
        out.append(h[:255])
    return out


def _sheet_pr(head: str) -> str:
    """A sheet's <sheetPr> element in our (unprefixed) namespace, without an active filter's flag."""
    m = re.search(r"<(\w+:)?sheetPr\b(?:[^>]*?/>|.*?</(\w+:)?sheetPr>)", head, re.S)
    if m is None:
        return ""
    pr = m.group()
    if m.group(1):
        pr = re.sub(r"<(/?)%s" % re.escape(m.group(1)), r"<\1", pr)
    return re.sub(r'\s+filterMode="[^"]*"', "", pr)


def _sheet_view(sheet: _Sheet, frozen: bool) -> str:
    sel = ' tabSelected="1"' if sheet.selected else ""
    if not frozen:
        return f'<sheetViews><sheetView{sel} workbookViewId="0"/></sheetViews>'
    return (f'<sheetViews><sheetView{sel} workbookViewId="0"><pane ySplit="1" topLeftCell="A2" activePane="bottomLeft" '
            'state="frozen"/><selection pane="bottomLeft" activeCell="A2" sqref="A2"/></sheetView></sheetViews>')


def _sheet_end(sheet: _Sheet) -> str:
    end = '<pageMargins left="0.7" right="0.7" top="0.75" bottom="0.75" header="0.3" footer="0.3"/>'
    if sheet.drawing_rid:
        end += f'<drawing r:id="{sheet.drawing_rid}"/>'
    if sheet.table_rid:
        end += f'<tableParts count="1"><tablePart r:id="{sheet.table_rid}"/></tableParts>'
    return end + "</worksheet>"


def _write_sheet(zout: xlsxpkg.ZipWriter, sheet: _Sheet, styles) -> None:
    if sheet.frame is None:
        zout.write(sheet.part, sheet.xml)
    else:
        zout.write_chunks(sheet.part, _frame_sheet(sheet, styles))


def _frame_sheet(sheet: _Sheet, styles) -> Iterator[bytes]:
    """The worksheet XML of a frame, in chunks of CHUNK_ROWS rows."""
    n, k = sheet.frame.shape
    headers, cols = sheet.headers, sheet.cells
    letters = [column_letter(j) for j in range(k)]
    last = max(n, 1) + 1 if k else 1
    widths = "".join(
        f'<col min="{j + 1}" max="{j + 1}" width="{_col_width(h, c)}" customWidth="1"'
        + (f' style="{styles(c.style)}"' if c.style else "") + "/>" for j, (h, c) in enumerate(zip(headers, cols)))
    head = (f'{xlsxpkg.XML_HEAD}<worksheet xmlns="{_MAIN}" xmlns:r="{_REL}">{sheet.sheet_pr}'
            f'<dimension ref="A1{":" + letters[-1] + str(last) if k else ""}"/>{_sheet_view(sheet, k > 0)}'
            f'<sheetFormatPr defaultRowHeight="15"/>' + (f"<cols>{widths}</cols>" if k else "") + "<sheetData>")
    if k:
        head += '<row r="1">' + "".join(f'<c r="{x}1{_text_xml(h)}' for x, h in zip(letters, headers)) + "</row>"
    yield head.encode("utf-8")
    pres = [f'<c r="{x}' for x in letters]
    for a in range(0, n if k else 0, CHUNK_ROWS):
        b = min(n, a + CHUNK_ROWS)
        nums = [str(i) for i in range(a + 2, b + 2)]
        rn = np.array(nums, dtype=object)
        arr = np.empty((b - a, 3 * k + 2), dtype=object)
        arr[:, 0] = np.array([f'<row r="{i}">' for i in nums], dtype=object)
        for j, c in enumerate(cols):
            codes = c.codes[a:b]
            arr[:, 1 + 3 * j] = pres[j]
            arr[:, 2 + 3 * j] = rn
            arr[:, 3 + 3 * j] = c.tails[codes]
            blank = codes < 0
            if blank.any():
                arr[blank, 1 + 3 * j] = ""
                arr[blank, 2 + 3 * j] = ""
        arr[:, -1] = "</row>"
        yield "".join(arr.ravel().tolist()).encode("utf-8")
    yield ("</sheetData>" + _sheet_end(sheet)).encode("utf-8")


def _col_width(header: str, c: _Cells) -> str:
    w = _WIDTH.get(header) or min(60.0, max(len(header) + 2.0, c.width + 2.0, 8.0))
    return _num(w + 0.7109375)  # Excel adds 5 pixels of padding to the character count


def _table_xml(sheet: _Sheet) -> bytes:
    headers = sheet.headers
    k, n = len(headers), len(sheet.frame)
    ref = f"A1:{column_letter(k - 1)}{max(n, 1) + 1}"  # a table needs one data row, even a blank one
    name = table_name(sheet.name)
    cols = "".join(f'<tableColumn id="{i + 1}" name={quoteattr(h)}/>' for i, h in enumerate(headers))
    return (f'{xlsxpkg.XML_HEAD}<table xmlns="{_MAIN}" id="{sheet.table_id}" name="{name}" displayName="{name}" '
            f'ref="{ref}" '
            f'totalsRowShown="0"><autoFilter ref="{ref}"/><tableColumns count="{k}">{cols}</tableColumns>'
            '<tableStyleInfo name="TableStyleMedium2" showFirstColumn="0" showLastColumn="0" showRowStripes="1" '
            'showColumnStripes="0"/></table>').encode("utf-8")


# --- Dashboard ----------------------------------------------------------------------------------

_REF = re.compile(r"([A-Za-z_][\w.]*)\[((?:'.|[^\]'])*)\]")
_CELL_REF = re.compile(r"(?<![\w\[$])([A-Z]{1,2}\d+)(?![\w\[(])")
_KIND_STYLE = {"money": "money", "percent": "pct1", "days": "days", "count": "int", "number": None}
_COUNT_SUMS = {"deals_won": "won_n", "deals_lost": "lost_n", "leads": "leads_n", "leads_converted": "converted_n",
               "new_customers": "customers", "costs": "costs"}


def _dashboard_xml(styles, frames: dict[str, pd.DataFrame], columns: dict[str, list[str]], sheet: _Sheet) -> bytes:
    """Template's native-formula KPI block over the master's tables, with the values cached for apps that
    do not calculate. A KPI whose table or column the master lacks says so instead of failing."""
    formulas = template.dashboard_formulas()
    where = {**template.DASHBOARD_CELLS, **template.DASHBOARD_COUNT_CELLS}
    by_addr = {a: k for k, a in where.items()}
    have = {t.casefold(): {c.casefold() for c in cols} for t, cols in columns.items()}

    def refs(key, seen=()):
        """(table, column) pairs a KPI reads, through the Dashboard cells its formula uses."""
        f = formulas[key][1]
        out = {(t, re.sub(r"'(.)", r"\1", c)) for t, c in _REF.findall(f)}
        for a in _CELL_REF.findall(f):
            if a in by_addr and by_addr[a] not in seen:
                out |= refs(by_addr[a], (*seen, key))
        return out

    cached = _cached_kpis(frames)
    rows: dict[int, list[str]] = {}

    def put(addr: str, xml: str) -> None:
        rows.setdefault(int(re.sub(r"\D", "", addr)), []).append(xml)

    def text(addr: str, value: str, style: str | None = None) -> None:
        s = f' s="{styles(style)}"' if style else ""
        put(addr, f'<c r="{addr}"{s}{_text_xml(value)[1:]}')

    text("A1", "Sales dashboard", "title")
    text("A2", "Worked out from the master's Deals, Leads, Costs and Stages sheets, all time. Nothing to type here.")
    for r, label in ((3, "KPI"), (14, "Counts behind the KPIs")):
        for col, t in zip("ABC", (label, "Value" if r == 3 else "", "How it is worked out" if r == 3 else "")):
            put(f"{col}{r}", f'<c r="{col}{r}" s="{styles("head")}"' + (_text_xml(t)[1:] if t else "/>"))
    for key, addr in where.items():
        label, formula, kind, note = formulas[key]
        row = addr[1:]
        text(f"A{row}", label, "label")
        no_table = sorted({t for t, _ in refs(key) if t.casefold() not in have})
        no_col = sorted(f"{t}[{c}]" for t, c in refs(key)
                        if t not in no_table and c.casefold() not in have[t.casefold()])
        if no_table or no_col:
            what = [f"the {t} table" for t in no_table] + [f"the column {c}" for c in no_col]
            text(addr, "n/a")
            text(f"C{row}", f"{note} Needs {' and '.join(what)}, which this master does not have.", "wrap")
            continue
        style = _KIND_STYLE[kind]
        s = f' s="{styles(style)}"' if style else ""
        f = escape(formula)
        f = f'<f t="array" ref="{addr}">{f}</f>' if key == "new_customers" else f"<f>{f}</f>"
        # Cache only values computed from tables written now: another table's rows are not known here.
        v = cached.get(key, "?") if all(t in frames for t, _ in refs(key)) else "?"
        if v == "?":
            put(addr, f'<c r="{addr}"{s}>{f}</c>')
        elif v is None:  # the formula's "" (undefined: nothing to divide by)
            put(addr, f'<c r="{addr}"{s} t="str">{f}<v></v></c>')
        else:
            put(addr, f'<c r="{addr}"{s}>{f}<v>{_num(v)}</v></c>')
        text(f"C{row}", note, "wrap")
    body = "".join(f'<row r="{r}">' + "".join(sorted(cells, key=lambda c: re.match(r'<c r="([A-Z]+)', c).group(1)))
                   + "</row>" for r, cells in sorted(rows.items()))
    cols = (f'<cols><col min="1" max="1" width="28.7109375" customWidth="1"/>'
            f'<col min="2" max="2" width="18.7109375" customWidth="1"/>'
            f'<col min="3" max="3" width="70.7109375" style="{styles("wrap")}" customWidth="1"/></cols>')
    return (f'{xlsxpkg.XML_HEAD}<worksheet xmlns="{_MAIN}" xmlns:r="{_REL}">{sheet.sheet_pr}'
            f'<dimension ref="A1:C{max(rows)}"/>'
            f'{_sheet_view(sheet, False)}<sheetFormatPr defaultRowHeight="15"/>{cols}<sheetData>{body}</sheetData>'
            f'{_sheet_end(sheet)}').encode("utf-8")


def _cached_kpis(frames: dict[str, pd.DataFrame]) -> dict[str, float | None]:
    """key -> value the Dashboard formula gives (None: its ""), from the KPI engine, for the KPIs whose
    tables are all being written now; the rest are left for the spreadsheet app to calculate."""
    from . import kpi
    from .book import Book
    from .errors import Error

    if "Deals" not in frames:
        return {}
    book = Book(source="master", tables={t: frames[t] for t in schema.TABLE_ORDER if t in frames})
    try:
        table = kpi.kpi_table(book).iloc[0]
        sums = kpi.sums(book, strict=False).iloc[0]
    except (Error, KeyError, TypeError, ValueError):  # frames not in the Book shape: let the app calculate
        return {}
    out: dict[str, float | None] = {}
    for key in template.DASHBOARD_CELLS:
        v = table.get(key)
        out[key] = None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)
    for key, col in _COUNT_SUMS.items():
        v = sums.get(col)
        if v is not None and not (isinstance(v, float) and math.isnan(v)):
            out[key] = float(v)
    return out
