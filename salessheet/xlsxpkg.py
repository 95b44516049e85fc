"""Edit an xlsx package part by part, and replace files atomically.

openpyxl drops charts, images and pivot caches on load/save, and a full load/save of a big workbook is
slow. Sync and recalc therefore rewrite only the parts (zip members) they own and copy every other part
byte for byte. Writes go to a temp file beside the target, are fsynced, and replace it with os.replace,
so a crash leaves either the old file or the new one, never half of one.
"""
from __future__ import annotations

import os
import posixpath
import shutil
import tempfile
import xml.etree.ElementTree as ET
import zipfile
from contextlib import contextmanager
from pathlib import Path

from .errors import LockedError

NS = {
    "m": "http://schemas.openxmlformats.org/spreadsheetml/2006/main",
    "r": "http://schemas.openxmlformats.org/officeDocument/2006/relationships",
    "pr": "http://schemas.openxmlformats.org/package/2006/relationships",
    "ct": "http://schemas.openxmlformats.org/package/2006/content-types",
}
R_ID = "{%s}id" % NS["r"]


def lock_files(path: Path) -> list[Path]:
    """Lock files that Excel (~$name) and LibreOffice (.~lock.name#) leave while a workbook is open."""
    path = Path(path)
    return [p for p in (path.with_name("~$" + path.name), path.with_name(f".~lock.{path.name}#")) if p.exists()]


def check_unlocked(path: Path) -> None:
    """Raise LockedError if another program has the file open (lock file present, or Windows share lock)."""
    path = Path(path)
    locks = lock_files(path)
    if locks:
        raise LockedError(path, f"is open in another program (lock file {locks[0].name}); close it and try again")
    if path.exists():
        try:
            with open(path, "r+b"):
                pass
        except PermissionError:
            raise LockedError(path, "cannot be written (it is open in another program or read-only)") from None


@contextmanager
def atomic_write(dst: Path, backup: bool = True, suffix: str = ".bak"):
    """Yield a temp path beside `dst`; on success fsync it, keep the old file as `dst+suffix`, and rename."""
    dst = Path(dst)
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        if backup and dst.exists():
            bak = dst.with_name(dst.name + suffix)
            shutil.copy2(dst, bak)
        os.replace(tmp, dst)
        _fsync_dir(dst.parent)
    finally:
        if tmp.exists():
            tmp.unlink()


def _fsync_dir(d: Path) -> None:
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def rewrite(src: Path, dst: Path, replace: dict[str, bytes | None] | None = None,
            add: dict[str, bytes] | None = None) -> None:
    """Copy the package `src` to `dst`, replacing (bytes) or dropping (None) some parts and adding others.

    Untouched parts keep their content and order; `dst` may be a temp path from atomic_write.
    """
    replace = dict(replace or {})
    add = dict(add or {})
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as zout:
        names = set()
        for info in zin.infolist():
            names.add(info.filename)
            if info.filename in replace:
                data = replace.pop(info.filename)
                if data is not None:
                    zout.writestr(_info(info.filename), data)
                continue
            with zin.open(info) as fsrc, zout.open(_info(info.filename, info), "w", force_zip64=info.file_size > 2**31) as fdst:
                shutil.copyfileobj(fsrc, fdst, 1 << 20)
        for name, data in {**{k: v for k, v in replace.items() if v is not None}, **add}.items():
            if name in names:
                raise ValueError(f"part {name} already exists")
            zout.writestr(_info(name), data)


def _info(name: str, like: zipfile.ZipInfo | None = None) -> zipfile.ZipInfo:
    zi = zipfile.ZipInfo(name, date_time=like.date_time if like else (1980, 1, 1, 0, 0, 0))
    zi.compress_type = zipfile.ZIP_DEFLATED
    zi.external_attr = like.external_attr if like else 0o600 << 16
    return zi


def read_xml(z: zipfile.ZipFile, name: str) -> ET.Element:
    with z.open(name) as f:
        return ET.parse(f).getroot()


def rels_path(part: str) -> str:
    d, f = posixpath.split(part)
    return posixpath.join(d, "_rels", f + ".rels")


def resolve(base_part: str, target: str) -> str:
    if target.startswith("/"):
        return target.lstrip("/")
    return posixpath.normpath(posixpath.join(posixpath.dirname(base_part), target))


def sheet_parts(z: zipfile.ZipFile) -> dict[str, str]:
    """Sheet name -> worksheet part ("xl/worksheets/sheet1.xml"), in workbook order."""
    wb = read_xml(z, "xl/workbook.xml")
    rels = {r.get("Id"): r.get("Target") for r in read_xml(z, rels_path("xl/workbook.xml"))}
    out = {}
    for s in wb.iterfind("m:sheets/m:sheet", NS):
        target = rels.get(s.get(R_ID))
        if target:
            out[s.get("name")] = resolve("xl/workbook.xml", target)
    return out
