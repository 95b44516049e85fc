"""Open a spreadsheet file and hand out its sheets and Excel tables as rows of cell values.

Every way a file can be unreadable ends here as a ReadError with a plain message: missing, empty,
not a spreadsheet, password-protected, truncated, or a zip that would expand beyond reason.
"""
from __future__ import annotations

import csv
import io
import re
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ReadError
from .values import BLANK_ROW as _BLANK, trim_row as _trim

SPREADSHEET_SUFFIXES = {".xlsx", ".xlsm", ".xlsb", ".xls", ".ods", ".csv", ".tsv", ".txt"}
# A real workbook of a million deals unpacks to well under this; a zip bomb does not.
MAX_UNPACKED_BYTES = 2 * 1024**3
MAX_RATIO = 400  # unpacked/packed per member; real sheet XML compresses 10-30x
RATIO_CHECKED_FROM = 50 * 1024**2  # small parts may compress as well as they like
# calamine holds a sheet's used range as a dense grid (~32 bytes a cell) and aborts the whole process
# when that cannot be allocated: a header in A1 and one stray cell in XFD1048576 is 17 billion cells.
MAX_CELLS = 20_000_000
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_PASSWORD = ("the workbook is password-protected; open it in Excel, remove the password "
             "(File > Info > Protect Workbook) and save it again")


@dataclass
class Sheet:
    name: str
    first_row: int = 1  # sheet row number (1-based) of rows[0]
    first_col: int = 0
    _load: object = None
    _rows: list | None = field(default=None, repr=False)

    @property
    def rows(self) -> list[list]:
        if self._rows is None:
            self._rows = self._load()
        return self._rows


@dataclass
class ExcelTable:
    name: str
    sheet: str
    rows: list[list]  # header first
    first_row: int
    first_col: int


def load(path: Path) -> tuple[list[Sheet], dict[str, ExcelTable]]:
    path = Path(path)
    if not path.exists():
        raise ReadError(path, "no such file")
    if path.is_dir():
        raise ReadError(path, "is a folder, not a spreadsheet file")
    size = path.stat().st_size
    if size == 0:
        raise ReadError(path, "the file is empty (0 bytes)")
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError as e:
        raise ReadError(path, f"cannot be opened ({e.strerror or _why(e)})") from None
    if head.startswith(b"PK"):
        _check_zip(path)
        return _load_calamine(path)
    if head == _OLE_MAGIC:
        if _is_encrypted_ole(path):
            raise ReadError(path, _PASSWORD)
        return _load_calamine(path)
    if path.suffix.lower() in (".xlsx", ".xlsm", ".xlsb", ".xls", ".ods"):
        raise ReadError(path, f"is not a valid {path.suffix} file (it does not start like one); "
                              "it may be damaged or renamed from another format")
    return _load_csv(path)


def _check_zip(path: Path) -> None:
    try:
        with zipfile.ZipFile(path) as z:
            infos = z.infolist()
            names = {i.filename for i in infos}
    except zipfile.BadZipFile:
        raise ReadError(path, "the file is truncated or damaged (not a complete zip archive); "
                              "save it again from the spreadsheet app") from None
    if "[Content_Types].xml" not in names and "mimetype" not in names:
        raise ReadError(path, "is a zip archive but not a spreadsheet")
    # Declared sizes can be trusted: python-calamine (like zipfile) refuses to unpack past them.
    total = sum(i.file_size for i in infos)
    if total > MAX_UNPACKED_BYTES:
        raise ReadError(path, f"would unpack to {total / 1024**3:.1f} GiB; refusing to read it "
                              f"(limit {MAX_UNPACKED_BYTES / 1024**3:.0f} GiB)")
    for i in infos:
        if i.file_size > RATIO_CHECKED_FROM and i.file_size > MAX_RATIO * max(i.compress_size, 1):
            raise ReadError(path, f"part {i.filename} would unpack {i.file_size / max(i.compress_size, 1):.0f}x "
                                  f"its packed size; refusing to read a likely zip bomb")
    try:
        with zipfile.ZipFile(path) as z:
            for member, sheet in _worksheets(z).items():
                _check_extent(z, member, sheet, path)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as e:
        raise ReadError(path, f"the file is damaged ({_why(e)}); save it again from the spreadsheet app") from None


_DIMENSION = re.compile(rb'<(?:\w+:)?dimension\s+ref="\$?([A-Z]{1,3})\$?(\d{1,7})(?::\$?([A-Z]{1,3})\$?(\d{1,7}))?"')
# A cell holding a value (not self-closing: <c r="B7" s="3"/> is formatting only, which calamine skips).
_VALUED_CELL = re.compile(rb'<(?:\w+:)?c\s[^>]*?\br="([A-Z]{1,3})(\d{1,7})"[^>/]*>')


def _worksheets(z: zipfile.ZipFile) -> dict[str, str]:
    """Worksheet part name -> sheet name (the part name itself when the workbook does not say)."""
    names = {n for n in z.namelist() if re.fullmatch(r"xl/worksheets/[^/]+\.xml", n)}
    out = {n: n for n in names}
    try:
        book = z.read("xl/workbook.xml").decode("utf-8", "replace")
        rels = z.read("xl/_rels/workbook.xml.rels").decode("utf-8", "replace")
    except KeyError:
        return out
    targets = {}
    for rel in re.finditer(r"<(?:\w+:)?Relationship\b[^>]*>", rels):
        rid, target = re.search(r'\bId="([^"]+)"', rel[0]), re.search(r'\bTarget="([^"]+)"', rel[0])
        if rid and target:
            t = target[1].lstrip("/")
            targets[rid[1]] = t if t.startswith("xl/") else "xl/" + t
    for sh in re.finditer(r"<(?:\w+:)?sheet\b[^>]*>", book):
        name, rid = re.search(r'\bname="([^"]*)"', sh[0]), re.search(r'\br:id="([^"]+)"', sh[0])
        if name and rid and targets.get(rid[1]) in out:
            out[targets[rid[1]]] = _unescape(name[1])
    return out


def _unescape(s: str) -> str:
    import html

    return html.unescape(s)


def _col(letters: bytes) -> int:
    n = 0
    for ch in letters:
        n = n * 26 + ch - 64
    return n


def _check_extent(z: zipfile.ZipFile, member: str, sheet: str, path: Path) -> None:
    """ReadError when a sheet's used range is too big to hold; cheap unless its <dimension> says it is."""
    with z.open(member) as f:
        head = f.read(65536)
    m = _DIMENSION.search(head)
    if m and (m[3] is None or _area(int(m[2]), _col(m[1]), int(m[4]), _col(m[3])) <= MAX_CELLS):
        return
    # No <dimension>, or a huge one (it also counts formatted empty cells): find the cells that hold values.
    r1 = c1 = 1 << 30
    r2 = c2 = 0
    tail = b""
    with z.open(member) as f:
        while chunk := f.read(1 << 22):
            data = tail + chunk
            cut = data.rfind(b"<")
            data, tail = data[:cut], data[cut:]
            for col, row in _VALUED_CELL.findall(data):
                r, c = int(row), _col(col)
                r1, r2, c1, c2 = min(r1, r), max(r2, r), min(c1, c), max(c2, c)
            if r2 and _area(r1, c1, r2, c2) > MAX_CELLS:
                raise ReadError(path, f"sheet {sheet!r} has a cell as far out as {_ref(r2, c2)}, a range of "
                                      f"{_area(r1, c1, r2, c2):,} cells, too many to read; delete the stray "
                                      f"cells beyond your data (Ctrl+End jumps to the last one) and save again")


def _area(r1: int, c1: int, r2: int, c2: int) -> int:
    return (abs(r2 - r1) + 1) * (abs(c2 - c1) + 1)


def _ref(row: int, col: int) -> str:
    s = ""
    while col:
        col, r = divmod(col - 1, 26)
        s = chr(65 + r) + s
    return f"{s}{row}"


def _is_encrypted_ole(path: Path) -> bool:
    """Encrypted xlsx files are OLE containers with an EncryptedPackage stream (name in UTF-16)."""
    marker = "EncryptedPackage".encode("utf-16-le")
    with open(path, "rb") as f:
        data = f.read(4 * 1024 * 1024)
    return marker in data


def _load_calamine(path: Path) -> tuple[list[Sheet], dict[str, ExcelTable]]:
    import python_calamine as pc

    try:
        wb = pc.CalamineWorkbook.from_path(str(path), load_tables=path.suffix.lower() in (".xlsx", ".xlsm", ""))
    except Exception as e:  # calamine raises its own types for zip/xml/password problems
        try:
            wb = pc.CalamineWorkbook.from_path(str(path))
        except pc.PasswordError:
            raise ReadError(path, _PASSWORD) from None
        except Exception:
            raise ReadError(path, f"cannot be read as a spreadsheet ({_why(e)})") from None
    sheets: list[Sheet] = []
    for meta in wb.sheets_metadata:
        if "Chart" in str(meta.typ):
            continue
        sheets.append(Sheet(meta.name, _load=_sheet_loader(wb, meta.name, path)))
    tables: dict[str, ExcelTable] = {}
    try:
        names = list(wb.table_names)
    except Exception:
        names = []
    from .schema import table_for_sheet_name

    for name in names:
        if table_for_sheet_name(name) is None:
            continue  # only the standard tables are worth reading
        try:
            t = wb.get_table_by_name(name)
            body = t.to_python()
        except Exception as e:
            raise ReadError(path, f"table {name!r} cannot be read ({_why(e)})") from None
        (r0, c0) = t.start
        tables[name] = ExcelTable(name, t.sheet, [list(t.columns)] + [_trim(r) for r in body], r0, c0)
    return sheets, tables


def _sheet_loader(wb, name: str, path: Path):
    def load() -> list[list]:
        try:
            sh = wb.get_sheet_by_name(name)
            if not sh.height:
                return []
            (r0, c0) = sh.start
            it = sh.iter_rows()
            first = next(it, [])
            width = len(first)
            rows = [_trim(first)] + [_trim(r) for r in it]
        except Exception as e:
            raise ReadError(path, f"sheet {name!r} cannot be read ({_why(e)})") from None
        # Pad so that rows[i][j] is cell (i, j) of the sheet. python-calamine 0.9 yields rows from the
        # sheet's first row but cells from the first used column; say so by size, not by version.
        top = max(0, r0 + sh.height - len(rows))
        left = c0 if width == sh.width else 0
        if left:
            rows = [[""] * left + r if r else r for r in rows]
        return [_BLANK] * top + rows

    return load


def _why(e: Exception) -> str:
    msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return msg[:200]


def decode_csv(data: bytes, suffix: str = ".csv") -> tuple[str, str, str]:
    """(text, encoding, delimiter) of a CSV file's bytes.

    UTF-8 (with or without a BOM; "utf-8-sig" only when there is one, so writing back keeps the file as it
    was), else Windows-1252, else Latin-1, which decodes anything. The delimiter is sniffed among , ; tab |
    (Excel writes ; where the decimal mark is a comma); a .tsv falls back to tab, anything else to comma.
    """
    for enc in ("utf-8-sig", "cp1252", "latin-1"):
        try:
            text = data.decode(enc)
            break
        except UnicodeDecodeError:
            continue
    if enc == "utf-8-sig" and not data.startswith(b"\xef\xbb\xbf"):
        enc = "utf-8"
    try:
        delim = csv.Sniffer().sniff(text[:65536], delimiters=",;\t|").delimiter
    except csv.Error:
        delim = "\t" if suffix.lower() == ".tsv" else ","
    return text, enc, delim


def _load_csv(path: Path) -> tuple[list[Sheet], dict[str, ExcelTable]]:
    if path.stat().st_size > MAX_UNPACKED_BYTES:
        raise ReadError(path, f"is {path.stat().st_size / 1024**3:.1f} GiB, too large to read as a sheet "
                              f"(limit {MAX_UNPACKED_BYTES / 1024**3:.0f} GiB)")
    data = path.read_bytes()
    if b"\x00" in data[:65536]:
        raise ReadError(path, "is not a spreadsheet or CSV file (it contains binary data)")
    text, _, delim = decode_csv(data, path.suffix)
    try:
        rows = [_trim(r) for r in csv.reader(io.StringIO(text, newline=""), delimiter=delim)]
    except csv.Error as e:
        raise ReadError(path, f"is not valid CSV ({e})") from None
    return [Sheet(path.stem, _rows=rows)], {}
