"""Helpers shared by the sync tests: team workbooks to sync, and the master read back independently
(python-calamine, not salessheet's reader) so the tests check the file, not our own code."""
from __future__ import annotations

import datetime as dt
import hashlib
import zipfile
from pathlib import Path

import python_calamine as pc

from salessheet import template

D = dt.datetime
SYNC_COLUMNS = ["Source File", "Source Row", "Synced At", "Sync Status"]


def deal(deal_id, **kw) -> dict:
    """One deal row with sensible defaults; keyword names use _ for spaces (Last_Updated=...)."""
    d = {"Deal ID": deal_id, "Deal Name": f"Deal {deal_id}", "Account": "Acme Labs", "Owner": "Ana Silva",
         "Team": "North", "Stage": "Prospecting", "Amount": 1000.0, "Created Date": D(2026, 1, 5),
         "Last Updated": D(2026, 2, 1, 9, 0)}
    d.update({k.replace("_", " "): v for k, v in kw.items()})
    return d


def team_xlsx(path: Path, deals: list[dict], **tables) -> Path:
    """A standard team workbook (the template) holding these rows."""
    return template.write_workbook(path, tables={"Deals": deals, **tables})


def sheet_rows(path: Path, sheet: str) -> list[list]:
    wb = pc.CalamineWorkbook.from_path(str(path))
    return wb.get_sheet_by_name(sheet).to_python()


def table(path: Path, sheet: str = "Deals") -> list[dict]:
    """A sheet of the master as records (header row first, empty rows skipped)."""
    rows = sheet_rows(path, sheet)
    if not rows:
        return []
    header = [str(h) for h in rows[0]]
    out = []
    for r in rows[1:]:
        if any(v not in ("", None) for v in r):
            out.append(dict(zip(header, r)))
    return out


def by_key(rows: list[dict], key: str = "Deal ID") -> dict:
    return {r[key]: r for r in rows}


def digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def sheet_xml(path: Path, sheet: str) -> str:
    """The worksheet XML of a sheet, found through workbook.xml and its rels."""
    import re

    with zipfile.ZipFile(path) as z:
        wb = z.read("xl/workbook.xml").decode()
        rels = z.read("xl/_rels/workbook.xml.rels").decode()
        rid = re.search(rf'<sheet\b[^>]*name="{re.escape(sheet)}"[^>]*r:id="([^"]+)"', wb).group(1)
        target = re.search(rf'<Relationship\b[^>]*Id="{rid}"[^>]*Target="([^"]+)"', rels)
        if target is None:
            target = re.search(rf'<Relationship\b[^>]*Target="([^"]+)"[^>]*Id="{rid}"', rels)
        part = target.group(1).lstrip("/")
        part = part if part.startswith("xl/") else "xl/" + part
        return z.read(part).decode()
