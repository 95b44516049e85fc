"""Edit an xlsx package part by part, and replace files atomically.

openpyxl drops charts, images and pivot caches on load/save, and a full load/save of a big workbook is
slow. Sync and recalc therefore rewrite only the parts (zip members) they own and copy every other part
byte for byte. Writes go to a temp file beside the target, are fsynced, and replace it with os.replace,
so a crash leaves either the old file or the new one, never half of one.
"""
from __future__ import annotations

import os
import posixpath
import re
import shutil
import struct
import tempfile
import xml.etree.ElementTree as ET
import zipfile
from contextlib import contextmanager
from xml.sax.saxutils import quoteattr
from pathlib import Path

from .errors import LockedError

NS = {
    "m": "http://schemas.openxmlformats.org/spreadsheetml/2006/main",
    "r": "http://schemas.openxmlformats.org/officeDocument/2006/relationships",
    "pr": "http://schemas.openxmlformats.org/package/2006/relationships",
    "ct": "http://schemas.openxmlformats.org/package/2006/content-types",
}
R_ID = "{%s}id" % NS["r"]
XML_HEAD = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'


class PackageError(ValueError):  # noqa: N818 - callers turn it into their own salessheet.Error
    """A package part is not as the spec says (an element an edit needs is missing)."""


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

    Untouched parts keep their content and order (copied compressed, byte for byte); `dst` may be a temp
    path from atomic_write.
    """
    replace = dict(replace or {})
    add = dict(add or {})
    with zipfile.ZipFile(src) as zin, open(src, "rb") as raw, ZipWriter(dst) as zout:
        names = set()
        for info in zin.infolist():
            names.add(info.filename)
            if info.filename in replace:
                data = replace.pop(info.filename)
                if data is not None:
                    zout.write(info.filename, data)
                continue
            zout.copy(raw, info)
        for name, data in {**{k: v for k, v in replace.items() if v is not None}, **add}.items():
            if name in names:
                raise ValueError(f"part {name} already exists")
            zout.write(name, data)


# --- a zip writer for packages ------------------------------------------------------------------
# zipfile can neither copy a member without recompressing it nor take data deflated elsewhere; this
# writer does both, so untouched parts cost a file copy and a big sheet is deflated in a thread while
# the next chunk of its XML is being built. isal (ISA-L) deflates ~4x faster than zlib level 1 at a
# better ratio; it is used when installed.
try:
    from isal import isal_zlib as _zlib

    _STREAM_LEVEL = _PART_LEVEL = 2
except ImportError:  # pragma: no cover - depends on the environment
    import zlib as _zlib

    _STREAM_LEVEL, _PART_LEVEL = 1, 6

_DOS_EPOCH = (1980, 1, 1, 0, 0, 0)
_U32 = 0xFFFFFFFF
ZIP64_LIMIT = _U32  # sizes/offsets from here on go in zip64 records (tests lower it)


class ZipWriter:
    """Write a zip package member by member: copy(), write() and write_chunks(); close() writes the index.

    Output depends only on the members given (fixed timestamps for new members), so equal input gives
    equal bytes. Zip64 records are written only when a member or the archive needs them.
    """

    def __init__(self, path: Path):
        self._f = open(path, "wb")
        self._entries: list[tuple] = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if exc[0] is None:
            self.close()
        else:
            self._f.close()

    def copy(self, src, info: zipfile.ZipInfo) -> None:
        """Copy member `info` of the open zip file object `src` without decompressing it."""
        if info.flag_bits & 0x1:
            raise ValueError(f"part {info.filename} is encrypted")
        src.seek(info.header_offset)
        head = src.read(30)
        if head[:4] != b"PK\x03\x04":
            raise zipfile.BadZipFile(f"bad local header for {info.filename}")
        n, m = struct.unpack("<HH", head[26:30])
        src.seek(info.header_offset + 30 + n + m)

        def blocks(left=info.compress_size):
            while left:
                b = src.read(min(left, 1 << 20))
                if not b:
                    raise zipfile.BadZipFile(f"part {info.filename} is truncated")
                left -= len(b)
                yield b

        self._member(info.filename, info.compress_type, info.CRC, info.compress_size, info.file_size,
                     info.date_time, blocks())

    def write(self, name: str, data: bytes, level: int = _PART_LEVEL) -> None:
        c = _zlib.compressobj(level, _zlib.DEFLATED, -15)
        comp = c.compress(data) + c.flush()
        self._member(name, zipfile.ZIP_DEFLATED, _zlib.crc32(data), len(comp), len(data), _DOS_EPOCH, [comp])

    def write_chunks(self, name: str, chunks, level: int = _STREAM_LEVEL) -> None:
        """Deflate an iterable of bytes as one member, in a worker thread while the iterable makes the next."""
        import queue
        import threading

        q: queue.Queue = queue.Queue(maxsize=16)
        out: list[bytes] = []
        state = {"crc": 0, "size": 0, "error": None}

        def work():
            c = _zlib.compressobj(level, _zlib.DEFLATED, -15)
            while (b := q.get()) is not None:
                if state["error"] is None:
                    try:
                        state["crc"] = _zlib.crc32(b, state["crc"])
                        state["size"] += len(b)
                        out.append(c.compress(b))
                    except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
                        state["error"] = e
            out.append(c.flush())

        t = threading.Thread(target=work, name="deflate", daemon=True)
        t.start()
        try:
            for b in chunks:
                q.put(b)
        finally:
            q.put(None)
            t.join()
        if state["error"] is not None:
            raise state["error"]
        self._member(name, zipfile.ZIP_DEFLATED, state["crc"], sum(map(len, out)), state["size"], _DOS_EPOCH, out)

    def _member(self, name, method, crc, csize, usize, date_time, blocks) -> None:
        offset = self._f.tell()
        raw = name.encode("utf-8")
        flags = 0 if raw.isascii() else 0x800
        dtime, ddate = _dos_time(date_time)
        big = csize >= ZIP64_LIMIT or usize >= ZIP64_LIMIT
        extra = struct.pack("<HHQQ", 1, 16, usize, csize) if big else b""
        self._f.write(struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 45 if big else 20, flags, method, dtime, ddate,
                                  crc, _U32 if big else csize, _U32 if big else usize, len(raw), len(extra)))
        self._f.write(raw + extra)
        for b in blocks:
            self._f.write(b)
        self._entries.append((raw, flags, method, dtime, ddate, crc, csize, usize, offset))

    def close(self) -> None:
        f = self._f
        cd_start = f.tell()
        for raw, flags, method, dtime, ddate, crc, csize, usize, offset in self._entries:
            big = [v >= ZIP64_LIMIT for v in (usize, csize, offset)]
            z64 = [v for v, b in zip((usize, csize, offset), big) if b]
            extra = struct.pack("<HH", 1, 8 * len(z64)) + struct.pack(f"<{len(z64)}Q", *z64) if z64 else b""
            f.write(struct.pack("<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 45 if z64 else 20, 45 if z64 else 20, flags,
                                method, dtime, ddate, crc, _U32 if big[1] else csize, _U32 if big[0] else usize,
                                len(raw), len(extra), 0, 0, 0, 0, _U32 if big[2] else offset))
            f.write(raw + extra)
        cd_end = f.tell()
        n, cd_size = len(self._entries), cd_end - cd_start
        z64 = n >= 0xFFFF or cd_start >= ZIP64_LIMIT or cd_size >= ZIP64_LIMIT
        if z64:
            f.write(struct.pack("<4sQHHIIQQQQ", b"PK\x06\x06", 44, 45, 45, 0, 0, n, n, cd_size, cd_start))
            f.write(struct.pack("<4sIQI", b"PK\x06\x07", 0, cd_end, 1))
        f.write(struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, 0xFFFF if z64 else n, 0xFFFF if z64 else n,
                            _U32 if z64 else cd_size, _U32 if z64 else cd_start, 0))
        f.close()


def _dos_time(t) -> tuple[int, int]:
    y, mo, d, h, mi, s = t
    return (h << 11) | (mi << 5) | (s // 2), (max(y, 1980) - 1980) << 9 | (mo << 5) | d


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


# --- text edits of package XML (so that everything we do not touch stays byte-identical) -----------


def xml_prefix(xml: str, ns: str) -> str:
    """The prefix ("x:" or "") under which the document uses namespace `ns` for its elements."""
    m = re.search(r'xmlns(?::(\w+))?="%s"' % re.escape(ns), xml)
    return f"{m.group(1)}:" if m and m.group(1) else ""


def insert_before_end(xml: str, tag: str, text: str, ns: str) -> str:
    """Insert `text` (unprefixed elements) as the last children of the last <tag> of namespace `ns`."""
    p = xml_prefix(xml, ns)
    end = f"</{p}{tag}>"
    i = xml.rfind(end)
    if i < 0:  # <sheets/> written empty
        m = re.search(r"<%s%s\b([^>]*)/>" % (re.escape(p), tag), xml)
        if m is None:
            raise PackageError(f"the package has no <{tag}> element")
        return xml[:m.start()] + f"<{p}{tag}{m.group(1)}>{text}{end}" + xml[m.end():]
    if p:  # our snippets are unprefixed: give them the document's prefix
        text = re.sub(r"<(/?)(?=[A-Za-z])(?![A-Za-z]+:)", r"<\1" + p, text)
    return xml[:i] + text + xml[i:]


def rel_id_attr(wb: str) -> str:
    """How this document writes an r:id attribute (its own prefix for the relationships namespace)."""
    m = re.search(r'xmlns:(\w+)="%s"' % re.escape(NS["r"]), wb)
    return f"{m.group(1)}:id" if m else f'xmlns:r="{NS["r"]}" r:id'


def add_override(ct: str, part: str, content_type: str) -> str:
    """[Content_Types].xml with an Override for `part` (unchanged when it has one; names are case-insensitive)."""
    if re.search(r'PartName="/%s"' % re.escape(part), ct, re.IGNORECASE):
        return ct
    return insert_before_end(ct, "Types", f'<Override PartName="/{part}" ContentType="{content_type}"/>', NS["ct"])


def remove_override(ct: str, part: str) -> str:
    return re.sub(r'<(\w+:)?Override\b[^>]*\bPartName="/%s"[^>]*?(/>|>\s*</(\w+:)?Override>)' % re.escape(part), "",
                  ct, flags=re.IGNORECASE)


def remove_rel(rels: str, rid: str) -> str:
    return re.sub(r'<(\w+:)?Relationship\b[^>]*\bId="%s"[^>]*?(/>|>\s*</(\w+:)?Relationship>)' % re.escape(rid), "",
                  rels)


def full_calc_on_load(wb: str) -> str:
    """Ask Excel to recalculate every formula on open: the manager's formulas read the sheets we replaced."""
    p = xml_prefix(wb, NS["m"])
    m = re.search(r"<%scalcPr\b[^>]*?/?>" % re.escape(p), wb)
    if m:
        tag = m.group()
        if re.search(r'\bfullCalcOnLoad="(1|true)"', tag):
            return wb
        new = re.sub(r'\s*\bfullCalcOnLoad="[^"]*"', "", tag)
        new = re.sub(r"(\s*/?>)$", r' fullCalcOnLoad="1"\1', new)
        return wb[:m.start()] + new + wb[m.end():]
    # calcPr follows sheets, functionGroups, externalReferences and definedNames (CT_Workbook order).
    ends = [wb.rfind(f"</{p}{t}>") + len(f"</{p}{t}>") for t in ("sheets", "functionGroups", "externalReferences",
                                                                   "definedNames") if f"</{p}{t}>" in wb]
    if not ends:
        raise PackageError("workbook.xml has no sheets")
    i = max(ends)
    return wb[:i] + f'<{p}calcPr fullCalcOnLoad="1"/>' + wb[i:]


def free_rel_id(taken) -> str:
    """The first rIdN not in `taken`."""
    i = 1
    while f"rId{i}" in taken:
        i += 1
    return f"rId{i}"


def relative_target(from_part: str, to_part: str) -> str:
    """The Target a rels part of `from_part` uses for `to_part` ("worksheets/sheet2.xml")."""
    return posixpath.relpath(to_part, posixpath.dirname(from_part) or ".")


def rels_xml(rels) -> bytes:
    body = "".join(f'<Relationship Id={quoteattr(rid)} Type={quoteattr(typ)} Target={quoteattr(target)}'
                   + (f" TargetMode={quoteattr(mode)}" if mode else "") + "/>" for rid, typ, target, mode in rels)
    return f'{XML_HEAD}<Relationships xmlns="{NS["pr"]}">{body}</Relationships>'.encode("utf-8")


# --- styles: cell formats appended to styles.xml, existing indexes untouched ---------------------


def _canon(el: ET.Element):
    return (el.tag.rsplit("}", 1)[-1], tuple(sorted(el.attrib.items())), tuple(sorted(_canon(c) for c in el)))


class CellStyles:
    """Finds or appends cell formats (cellXfs), leaving every existing one in place.

    specs: key -> (number format: builtin id or format code, font: None/"bold"/"title" (bold 16 pt),
    bottom border: bool, wrap text and align top: bool). Fonts are the workbook's default font made bold.
    """

    def __init__(self, xml: str, specs: dict[str, tuple]):
        self.src, self.specs = xml, specs
        root = ET.fromstring(xml)
        self.numfmts = {n.get("formatCode"): int(n.get("numFmtId")) for n in root.iterfind("m:numFmts/m:numFmt", NS)}
        self.fonts = [_canon(f) for f in root.iterfind("m:fonts/m:font", NS)]
        font0 = root.find("m:fonts/m:font", NS)
        self._font0 = [(c.tag.rsplit("}", 1)[-1], dict(c.attrib)) for c in font0] if font0 is not None else []
        self.borders = [_canon(b) for b in root.iterfind("m:borders/m:border", NS)]
        self.xfs = [self._xf_key(x) for x in root.iterfind("m:cellXfs/m:xf", NS)]
        self.new = {"numFmts": [], "fonts": [], "borders": [], "cellXfs": []}
        self.index: dict[str, int] = {}

    @staticmethod
    def _xf_key(x: ET.Element):
        align = x.find("m:alignment", NS)
        return (int(x.get("numFmtId", 0)), int(x.get("fontId", 0)), int(x.get("fillId", 0)), int(x.get("borderId", 0)),
                tuple(sorted(align.attrib.items())) if align is not None else (), len(x) - (align is not None))

    def __call__(self, key: str) -> int:
        """The cellXfs index of format `key` of the specs (appended the first time it is needed)."""
        if key not in self.index:
            self.index[key] = self._xf(*self.specs[key])
        return self.index[key]

    def _xf(self, fmt, font, border, wrap) -> int:
        num = fmt if isinstance(fmt, int) else self._numfmt(fmt)
        font_id = 0 if font is None else self._font(font)
        border_id = 0 if not border else self._find_or_add(
            self.borders, "borders", '<border><left/><right/><top/><bottom style="thin"><color auto="1"/></bottom>'
                                     '<diagonal/></border>')
        align = (("vertical", "top"), ("wrapText", "1")) if wrap else ()
        key = (num, font_id, 0, border_id, align, 0)
        if key in self.xfs:
            return self.xfs.index(key)
        attrs = (f'numFmtId="{num}" fontId="{font_id}" fillId="0" borderId="{border_id}" xfId="0"'
                 + (' applyNumberFormat="1"' if num else "") + (' applyFont="1"' if font_id else "")
                 + (' applyBorder="1"' if border_id else "") + (' applyAlignment="1"' if wrap else ""))
        xml = f'<xf {attrs}><alignment vertical="top" wrapText="1"/></xf>' if wrap else f"<xf {attrs}/>"
        self.xfs.append(key)
        self.new["cellXfs"].append(xml)
        return len(self.xfs) - 1

    def _numfmt(self, code: str) -> int:
        if code not in self.numfmts:
            self.numfmts[code] = max([163, *self.numfmts.values()]) + 1
            self.new["numFmts"].append(f'<numFmt numFmtId="{self.numfmts[code]}" formatCode={quoteattr(code)}/>')
        return self.numfmts[code]

    def _font(self, kind: str) -> int:
        children = [(t, a) for t, a in self._font0 if t != "b"]
        if kind == "title":
            children = [(t, {"val": "16"} if t == "sz" else a) for t, a in children]
            if not any(t == "sz" for t, _ in children):
                children.append(("sz", {"val": "16"}))
        xml = "<font><b/>" + "".join(f"<{t}" + "".join(f" {k}={quoteattr(v)}" for k, v in a.items() if "}" not in k)
                                     + "/>" for t, a in children) + "</font>"
        return self._find_or_add(self.fonts, "fonts", xml)

    def _find_or_add(self, have: list, section: str, xml: str) -> int:
        key = _canon(ET.fromstring(xml.replace("<font>", f'<font xmlns="{NS["m"]}">', 1)
                                   .replace("<border>", f'<border xmlns="{NS["m"]}">', 1)))
        if key in have:
            return have.index(key)
        have.append(key)
        self.new[section].append(xml)
        return len(have) - 1

    def xml(self) -> str:
        out = self.src
        for section, items in self.new.items():
            if not items:
                continue
            p = xml_prefix(out, NS["m"])
            if section == "numFmts" and f"<{p}numFmts" not in out:
                m = re.search(r"<%sstyleSheet\b[^>]*>" % re.escape(p), out)
                out = out[:m.end()] + f'<{p}numFmts count="0"></{p}numFmts>' + out[m.end():]
            out = insert_before_end(out, section, "".join(items), NS["m"])
            m = re.search(r"<%s%s\b[^>]*>" % (re.escape(p), section), out)
            tag = m.group()
            n = len(self.numfmts_elements(out)) if section == "numFmts" else None
            count = n if n is not None else len({"fonts": self.fonts, "borders": self.borders,
                                                 "cellXfs": self.xfs}[section])
            new = (re.sub(r'\bcount="\d+"', f'count="{count}"', tag) if "count=" in tag
                   else tag[:-1] + f' count="{count}">')
            out = out[:m.start()] + new + out[m.end():]
        return out

    @staticmethod
    def numfmts_elements(xml: str) -> list[str]:
        m = re.search(r"<(\w+:)?numFmts\b.*?</(\w+:)?numFmts>", xml, re.S)
        return re.findall(r"<(?:\w+:)?numFmt\b", m.group()) if m else []
