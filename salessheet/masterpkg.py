"""The master's package as it is on disk (or a blank workbook when there is none): its parts, sheets,
rels, content types and tables, read on demand; and the writer that streams the new package out, copying
every part the plan leaves alone byte for byte.

Separate from master, which plans what changes: this module reads the package the plan starts from and
writes the result.
"""
from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

from . import xlsxpkg
from .errors import SyncError
from .sheetxml import write_sheet
from .xlsxpkg import NS

if TYPE_CHECKING:
    from .master import Plan

_MAIN, _REL = NS["m"], NS["r"]
_PKG_REL = NS["pr"]
RT = "http://schemas.openxmlformats.org/officeDocument/2006/relationships/"
_CT = "application/vnd.openxmlformats-officedocument.spreadsheetml."
CT_SHEET, CT_TABLE = _CT + "worksheet+xml", _CT + "table+xml"


class Package:
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
            if self.overrides.get(info.filename.casefold()) != CT_TABLE:
                continue
            root = ET.fromstring(self.text(info.filename))
            name = root.get("displayName") or root.get("name") or ""
            cols = [c.get("name", "") for c in root.iterfind("m:tableColumns/m:tableColumn", NS)]
            out[name.casefold()] = (info.filename, int(root.get("id") or 0), name, cols)
        return out

    def active_sheet(self) -> str | None:
        order = list(self.sheets)
        return order[self._active] if 0 <= self._active < len(order) else None

    def write(self, dst: Path, plan: Plan) -> None:
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
                        write_sheet(zout, sheets[name], plan.styles)
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
                    write_sheet(zout, sheet, plan.styles)
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
            f'<Relationship Id="rId1" Type="{RT}officeDocument" Target="xl/workbook.xml"/>'
            '<Relationship Id="rId2" Type="http://schemas.openxmlformats.org/package/2006/relationships/metadata/'
            'core-properties" Target="docProps/core.xml"/>'
            f'<Relationship Id="rId3" Type="{RT}extended-properties" Target="docProps/app.xml"/></Relationships>'),
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
            f'<Relationship Id="rId1" Type="{RT}styles" Target="styles.xml"/></Relationships>'),
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
