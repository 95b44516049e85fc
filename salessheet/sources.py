"""Open a spreadsheet file and hand out its sheets and Excel tables as rows of cell values.

Every way a file can be unreadable ends here as a ReadError with a plain message: missing, empty,
not a spreadsheet, password-protected, truncated, or a zip that would expand beyond reason.
"""
from __future__ import annotations

import csv
import io
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ReadError
from .values import BLANK_ROW as _BLANK, trim_row as _trim

SPREADSHEET_SUFFIXES = {".xlsx", ".xlsm", ".xlsb", ".xls", ".ods", ".csv", ".tsv", ".txt"}
# A real workbook of a million deals unpacks to well under this; a zip bomb does not.
MAX_UNPACKED_BYTES = 2 * 1024**3
MAX_RATIO = 400  # unpacked/packed per member; real sheet XML compresses 10-30x
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"


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
    with open(path, "rb") as f:
        head = f.read(8)
    if head.startswith(b"PK"):
        _check_zip(path)
        return _load_calamine(path)
    if head == _OLE_MAGIC:
        if _is_encrypted_ole(path):
            raise ReadError(path, "the workbook is password-protected; open it in Excel, remove the password "
                                  "(File > Info > Protect Workbook) and save it again")
        return _load_calamine(path)
    if path.suffix.lower() in (".xlsx", ".xlsm", ".xlsb", ".ods"):
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
    total = sum(i.file_size for i in infos)
    if total > MAX_UNPACKED_BYTES:
        raise ReadError(path, f"would unpack to {total / 1024**3:.1f} GiB; refusing to read it "
                              f"(limit {MAX_UNPACKED_BYTES / 1024**3:.0f} GiB)")
    for i in infos:
        if i.file_size > 50 * 1024**2 and i.file_size > MAX_RATIO * max(i.compress_size, 1):
            raise ReadError(path, f"part {i.filename} would unpack {i.file_size / max(i.compress_size, 1):.0f}x "
                                  f"its packed size; refusing to read a likely zip bomb")


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
            start = sh.start
            rows = [_trim(r) for r in sh.iter_rows()] if sh.height else []
        except Exception as e:
            raise ReadError(path, f"sheet {name!r} cannot be read ({_why(e)})") from None
        if start and start[1]:
            rows = [[""] * start[1] + r if r else r for r in rows]
        # iter_rows starts at the first used row; pad so rows[i] is sheet row i+1.
        return [_BLANK] * (start[0] if start else 0) + rows

    return load


def _why(e: Exception) -> str:
    msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return msg[:200]


def _load_csv(path: Path) -> tuple[list[Sheet], dict[str, ExcelTable]]:
    data = path.read_bytes()
    if b"\x00" in data[:65536]:
        raise ReadError(path, "is not a spreadsheet or CSV file (it contains binary data)")
    for enc in ("utf-8-sig", "cp1252", "latin-1"):
        try:
            text = data.decode(enc)
            break
        except UnicodeDecodeError:
            continue
    sample = text[:65536]
    try:
        dialect = csv.Sniffer().sniff(sample, delimiters=",;\t|")
        delim = dialect.delimiter
    except csv.Error:
        delim = "\t" if path.suffix.lower() == ".tsv" else ","
    try:
        rows = [_trim(r) for r in csv.reader(io.StringIO(text, newline=""), delimiter=delim)]
    except csv.Error as e:
        raise ReadError(path, f"is not valid CSV ({e})") from None
    return [Sheet(path.stem, _rows=rows)], {}
