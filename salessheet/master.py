"""Write the sync master: salessheet's own sheets from frames, every other part of the package untouched.

A master is a workbook that managers also use: their own sheets, formulas, charts, pivot tables, names
and macros live beside the sheets salessheet owns (OWNED). openpyxl drops charts and images on
load/save, so the master is never round-tripped through a library: the package is edited part by part.
Owned sheets (their XML, table and rels parts) are written anew; workbook.xml, its rels,
[Content_Types].xml and styles.xml get small text insertions (new sheets, our cell formats, and
fullCalcOnLoad so every formula shows the new data); all other parts are copied byte for byte.

The owned sheets' XML comes from sheetxml.py (frames) and dashboard.py (the Dashboard); masterpkg.py reads
the package as it is and writes the new one; this module decides what changes.
"""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path
from xml.sax.saxutils import quoteattr

import pandas as pd

from . import xlsxpkg
from .dashboard import dashboard_xml
from .errors import SyncError, ValidationError
from .masterpkg import CT_SHEET, CT_TABLE, RT, Package
from .sheetxml import STYLE_SPECS, Sheet, column_cells, frame_headers, table_name, table_xml
from .xlsxpkg import NS

OWNED = ("Deals", "Leads", "Costs", "Targets", "Stages", "Issues", "Conflicts", "Sync Log", "Dashboard")
DASHBOARD = "Dashboard"
DASHBOARD_TABLES = ("Deals", "Leads", "Costs", "Stages")  # the tables the Dashboard's formulas read
NEW_ORDER = (DASHBOARD,) + tuple(n for n in OWNED if n != DASHBOARD)  # sheet order of a new master
MAX_ROWS, MAX_COLS = 1_048_576, 16_384  # Excel's limits

_MAIN = NS["m"]
_PKG_REL = NS["pr"]
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
    pkg = Package(path if path.exists() else None)
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


def _plan(pkg: Package, frames: dict[str, pd.DataFrame]) -> Plan:
    plan = Plan(pkg)
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


class Plan:
    """Every part to replace, add or delete, worked out before anything is written."""

    def __init__(self, pkg: Package):
        self.pkg = pkg
        self.sheets: list[Sheet] = []
        self.replace: dict[str, bytes] = {}
        self.add: dict[str, bytes] = {}
        self.delete: set[str] = set()
        self.new_sheets: list[Sheet] = []
        self.styles = xlsxpkg.CellStyles(pkg.text(pkg.styles_part), STYLE_SPECS)
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
            if existing["ct"] != CT_SHEET:
                raise SyncError(f"the master's sheet {existing['name']!r} is not a worksheet; rename it so "
                                f"salessheet can write its {name} sheet")
            sheet = Sheet(existing["name"], frame, existing["part"])
            self._reclaim(sheet)
        else:
            sheet = Sheet(name, frame, self.new_part("xl/worksheets/sheet{}.xml"))
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
                                             [str(c) for c in frame_headers(frame)])
        self.sheets.append(sheet)

    def _reclaim(self, sheet: Sheet) -> None:
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
                sheet.rels.append((sheet.table_rid, RT + "table", target, None))
            sheet.selected = (sheet.name == active) if pkg.src else sheet.name == DASHBOARD
        for sheet in self.sheets:  # typed before styles.xml is written: the columns pick their formats
            if sheet.frame is not None:
                sheet.headers = frame_headers(sheet.frame)
                sheet.cells = [column_cells(h, sheet.frame.iloc[:, j], self.styles)
                               for j, h in enumerate(sheet.headers)]
        # The Dashboard reads the final tables (given now or already in the master).
        for sheet in self.sheets:
            if sheet.frame is None:
                frames = {s.name: s.frame for s in self.sheets if s.frame is not None}
                columns = {v[2]: v[3] for v in self.tables.values()}
                sheet.xml = dashboard_xml(self.styles, frames, columns, sheet)
            else:
                sheet.xml = None
        for sheet in self.sheets:
            if sheet.table_part is not None:
                part = (self.replace if sheet.table_part in pkg.names else self.add)
                part[sheet.table_part] = table_xml(sheet)
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
            rel = f'<Relationship Id="{rid}" Type="{RT}worksheet" Target="{target}"/>'
            wb_rels = xlsxpkg.insert_before_end(wb_rels, "Relationships", rel, _PKG_REL)
            ct = xlsxpkg.add_override(ct, sheet.part, CT_SHEET)
        for part in self.add:
            if part.endswith(".xml") and "/tables/" in part:
                ct = xlsxpkg.add_override(ct, part, CT_TABLE)
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


def _sheet_pr(head: str) -> str:
    """A sheet's <sheetPr> element in our (unprefixed) namespace, without an active filter's flag."""
    m = re.search(r"<(\w+:)?sheetPr\b(?:[^>]*?/>|.*?</(\w+:)?sheetPr>)", head, re.S)
    if m is None:
        return ""
    pr = m.group()
    if m.group(1):
        pr = re.sub(r"<(/?)%s" % re.escape(m.group(1)), r"<\1", pr)
    return re.sub(r'\s+filterMode="[^"]*"', "", pr)
