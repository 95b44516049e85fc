"""Where sync's sources come from: files, folders, globs, a salessheet.toml, or a Sources sheet.

A source is anything with an ``id`` (stable identity, kept in the state store), a display ``name``, a
``kind``, ``content_hash()`` (None when it cannot be hashed, e.g. missing) and ``read() -> Book``.
Files are the only kind today; Google Sheets will add another class with the same five members.
"""
from __future__ import annotations

import glob
import hashlib
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from .errors import ReadError, ValidationError

SUFFIXES = (".xlsx", ".xlsm", ".xls", ".ods", ".csv")
CONFIG_NAME = "salessheet.toml"
SOURCES_SHEET = "Sources"


@dataclass(frozen=True)
class FileSource:
    path: Path
    kind: str = "file"
    parallel_safe: bool = True  # can be read in a worker process

    @property
    def id(self) -> str:
        return str(self.path)

    @property
    def name(self) -> str:
        return self.path.name

    def content_hash(self) -> str | None:
        h = hashlib.blake2b(digest_size=16)
        try:
            with open(self.path, "rb") as f:
                while chunk := f.read(1 << 20):
                    h.update(chunk)
        except OSError:
            return None
        return h.hexdigest()

    def read(self):
        from .reader import read_workbook

        return read_workbook(self.path)

    def write_ids(self, updates: list[tuple[str, str, str, dict[int, str]]]) -> None:
        """Fill empty ID cells: updates are (table, sheet, column, {sheet row: id}). Atomic; refuses a locked
        file (LockedError). xlsx: each cell is set in the sheet XML in place; csv: the file is rewritten."""
        from . import xlsxpkg

        xlsxpkg.check_unlocked(self.path)
        if self.path.suffix.lower() == ".csv":
            _write_csv_ids(self.path, updates)
        elif self.path.suffix.lower() in (".xlsx", ".xlsm"):
            _write_xlsx_ids(self.path, updates)
        else:
            raise ValidationError(f"{self.name}: IDs can be written into .xlsx, .xlsm and .csv files only")


@dataclass
class Config:
    sources: list[str]
    master: Path | None
    state: Path | None
    base: Path  # relative entries are relative to this folder


def load_config(path) -> Config:
    """Read ``salessheet.toml``: ``sources = [...]``, ``master = "..."``, optional ``state = "..."``."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ValidationError(f"{path}: cannot read the config file ({e})") from None
    srcs = data.get("sources", [])
    if isinstance(srcs, str):
        srcs = [srcs]
    if not isinstance(srcs, list) or not all(isinstance(s, str) for s in srcs):
        raise ValidationError(f"{path}: 'sources' must be a list of paths, folders or globs")
    base = path.resolve().parent

    def opt(k):
        v = data.get(k)
        if v is not None and not isinstance(v, str):
            raise ValidationError(f"{path}: {k!r} must be a path")
        from .gsheets import google_key

        return v if v and google_key(v) else (base / v) if v else None  # a Google master is no path

    return Config(list(srcs), opt("master"), opt("state"), base)


def sources_sheet(master: Path) -> list[str]:
    """Entries of a "Sources" sheet in the master (first column under a header like Source or Path)."""
    from . import sources as _files

    master = Path(master)
    if not master.exists():
        return []
    try:
        sheets, _ = _files.load(master)
    except ReadError:
        return []
    sheet = next((s for s in sheets if s.name.strip().lower() == SOURCES_SHEET.lower()), None)
    if sheet is None:
        return []
    out = []
    for r in sheet.rows:
        v = r[0] if r else None
        if isinstance(v, str) and v.strip() and v.strip().lower() not in ("source", "sources", "path", "file"):
            out.append(v.strip())
    return [str(master.resolve().parent / e) if not Path(e).is_absolute() else e for e in out]


def _skipped(p: Path) -> bool:
    """Office lock files (~$x.xlsx), LibreOffice locks (.~lock.x#) and hidden files are never sources."""
    return p.name.startswith(("~$", ".")) or p.suffix.lower() not in SUFFIXES


def expand(specs, exclude=(), base: Path | None = None) -> tuple[list[FileSource], list[str]]:
    """Files, folders (every spreadsheet inside, recursively, hidden folders skipped) and globs ->
    sources in the order given (folder and glob matches sorted), each once; plus warnings."""
    out: list[FileSource] = []
    seen = {Path(e).resolve() for e in exclude}
    warnings: list[str] = []

    def add(p: Path) -> None:
        rp = p.resolve()
        if rp not in seen:
            seen.add(rp)
            out.append(FileSource(rp))

    for spec in specs:
        if _google(spec, out):
            continue
        spec = str(spec)
        p = Path(spec) if base is None or Path(spec).is_absolute() else base / spec
        if p.is_dir():
            found = sorted(_walk(p))
            if not found:
                warnings.append(f"{spec}: no spreadsheets in this folder")
            for f in found:
                add(f)
        elif glob.has_magic(spec):
            found = sorted(Path(m) for m in glob.glob(str(p), recursive=True))
            found = [f for f in found if f.is_file() and not _skipped(f)]
            if not found:
                warnings.append(f"{spec}: matches no spreadsheet")
            for f in found:
                add(f)
        else:  # a file, even a missing one: reading it reports why it is unusable
            add(p)
    return out, warnings


def _google(spec, out: list) -> bool:
    """A Google Sheets source (gsheet:KEY or a docs.google.com URL) is added once; gspread loads only when read."""
    from .gsheets import google_key
    from .gsheets_read import GoogleSource

    key = google_key(spec)
    if key is None:
        return False
    if all(s.id != f"gsheet:{key}" for s in out):
        out.append(GoogleSource(key))
    return True


def _walk(folder: Path):
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for f in files:
            p = Path(root) / f
            if not _skipped(p):
                yield p


# --- writing generated IDs back -------------------------------------------------------------------

def _id_column(rows: list[list], table: str, column: str) -> tuple[int, int | None]:
    """(header row index, column index of `column`) in a sheet's rows, by the reader's header rules."""
    from . import schema
    from .reader import find_header

    t = schema.TABLES[table]
    i, _ = find_header(rows, t)
    hm = schema.HEADER_MAPS[table]
    header = rows[i] if i < len(rows) else []
    names = [schema.normalize(h) if isinstance(h, str) else "" for h in header]
    exact = schema.normalize(column)
    if exact in names:
        return i, names.index(exact)
    for j, n in enumerate(names):
        if hm.get(n) == column:
            return i, j
    return i, None


def _write_csv_ids(path: Path, updates) -> None:
    import csv
    import io

    from . import xlsxpkg

    from .sources import decode_csv

    text, enc, delim = decode_csv(path.read_bytes(), path.suffix)
    newline = "\r\n" if "\r\n" in text[:65536] else "\n"
    rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=delim))
    for table, _sheet, column, ids in updates:
        h, j = _id_column(rows, table, column)
        if j is None:  # no ID column at all: add one at the end of the header
            j = max(len(rows[h]), 1) if rows else 0
            rows[h] = rows[h] + [""] * (j - len(rows[h])) + [column]
        for r, value in ids.items():
            row = rows[r - 1]
            if len(row) <= j:
                row.extend([""] * (j + 1 - len(row)))
            if row[j].strip():
                raise ValidationError(f"{path.name}: row {r} already has a {column}; not overwriting it")
            row[j] = value
    out = io.StringIO(newline="")
    csv.writer(out, delimiter=delim, lineterminator=newline).writerows(rows)
    with xlsxpkg.atomic_write(path, backup=False) as tmp:
        tmp.write_bytes(out.getvalue().encode(enc))


def _write_xlsx_ids(path: Path, updates) -> None:
    import zipfile

    from . import sources as files, xlsxpkg
    from .reader import column_letter

    sheets, _ = files.load(path)
    by_name = {s.name: s for s in sheets}
    with zipfile.ZipFile(path) as z:
        parts = xlsxpkg.sheet_parts(z)
        edits: dict[str, dict[tuple[int, int], str]] = {}
        for table, sheet, column, ids in updates:
            if sheet not in by_name or sheet not in parts:
                raise ValidationError(f"{path.name}: sheet {sheet!r} not found")
            _h, j = _id_column(by_name[sheet].rows, table, column)
            if j is None:
                raise ValidationError(f"{path.name}: sheet {sheet!r} has no {column} column to write IDs into; "
                                      f"add the column")
            edits.setdefault(parts[sheet], {}).update({(r, j): v for r, v in ids.items()})
        replace = {part: _set_cells(z.read(part).decode("utf-8"), cells, column_letter).encode("utf-8")
                   for part, cells in edits.items()}
    with xlsxpkg.atomic_write(path, backup=False) as tmp:
        xlsxpkg.rewrite(path, tmp, replace=replace)


def _set_cells(xml: str, cells: dict[tuple[int, int], str], letter) -> str:
    """Put inline-string cells into a worksheet's XML text, leaving every other byte as it was."""
    import re
    from xml.sax.saxutils import escape

    m = re.search(r"<(\w+:)?sheetData\b[^>]*?(/?)>", xml)
    if m is None:
        raise ValidationError("the sheet has no sheetData")
    pre = m.group(1) or ""
    if m.group(2):  # <sheetData/>
        xml = xml[:m.start()] + f"<{pre}sheetData></{pre}sheetData>" + xml[m.end():]
    by_row: dict[int, dict[int, str]] = {}
    for (r, c), v in cells.items():
        by_row.setdefault(r, {})[c] = v
    for r in sorted(by_row):
        row_re = re.compile(rf'<{pre}row\b[^>]*?\br="{r}"[^>]*?(/?)>')
        rm = row_re.search(xml)
        if rm is None:  # no such row yet: insert it before the first row below it
            new_row = f'<{pre}row r="{r}"></{pre}row>'
            pos = None
            for om in re.finditer(rf'<{pre}row\b[^>]*?\br="(\d+)"', xml):
                if int(om.group(1)) > r:
                    pos = om.start()
                    break
            if pos is None:
                pos = xml.index(f"</{pre}sheetData>")
            xml = xml[:pos] + new_row + xml[pos:]
            rm = row_re.search(xml)
        if rm.group(1):  # <row .../>
            open_tag = rm.group(0)[:-2] + ">"
            xml = xml[:rm.start()] + open_tag + f"</{pre}row>" + xml[rm.end():]
            rm = row_re.search(xml)
        start = rm.end()
        end = xml.index(f"</{pre}row>", start)
        body = xml[start:end]
        for c, value in sorted(by_row[r].items()):
            ref = f"{letter(c)}{r}"
            cell_re = re.compile(rf'<{pre}c\b[^>]*?\br="{ref}"[^>]*?(?:/>|>.*?</{pre}c>)', re.S)
            style = ""
            cm = cell_re.search(body)
            if cm is not None:
                sm = re.search(r'\bs="(\d+)"', cm.group(0).split(">", 1)[0])
                style = f' s="{sm.group(1)}"' if sm else ""
            new = f'<{pre}c r="{ref}"{style} t="inlineStr"><{pre}is><{pre}t>{escape(value)}</{pre}t></{pre}is></{pre}c>'
            if cm is not None:
                body = body[:cm.start()] + new + body[cm.end():]
                continue
            pos = len(body)
            for om in re.finditer(rf'<{pre}c\b[^>]*?\br="([A-Z]+)\d+"', body):
                if _col_index(om.group(1)) > c:
                    pos = om.start()
                    break
            body = body[:pos] + new + body[pos:]
        xml = xml[:start] + body + xml[end:]
    return xml


def _col_index(letters: str) -> int:
    n = 0
    for ch in letters:
        n = n * 26 + ord(ch) - 64
    return n - 1


def resolve_args(sources, into, state=None, config=None) -> tuple[list[str], Path, Path | None]:
    """What the sync command works on: its SOURCE arguments, else a config file (--config, or
    ./salessheet.toml when no SOURCE is given), else the master's Sources sheet. Returns (sources, master, state)."""
    sources = [str(s) for s in sources]
    if config is None and not sources and Path(CONFIG_NAME).is_file():
        config = Path(CONFIG_NAME)
    if config is not None:
        cfg = load_config(config)
        if not sources:
            from .gsheets import google_key

            sources = [s if Path(s).is_absolute() or google_key(s) else str(cfg.base / s) for s in cfg.sources]
        into = into or cfg.master
        state = state or cfg.state
    if into is None:
        raise ValidationError("no master: give one with --into MASTER.xlsx (or master = \"...\" in salessheet.toml)")
    if not sources:
        sources = sources_sheet(Path(into))
    if not sources:
        raise ValidationError("no sources: give files, folders or globs, list them in salessheet.toml "
                              "(sources = [...]), or in a Sources sheet in the master")
    return sources, Path(into), Path(state) if state else None


def state_for(state=None, master=None, config=None) -> Path:
    """The state store the history command reads: --state, else beside --master, else from salessheet.toml."""
    from .state import default_path

    if state:
        return Path(state)
    from .gsheets import google_key
    from .gsheets_master import default_state_path

    if master and google_key(master):
        return default_state_path(google_key(master))
    if master:
        return default_path(Path(master))
    if config is None and Path(CONFIG_NAME).is_file():
        config = Path(CONFIG_NAME)
    if config is not None:
        cfg = load_config(config)
        if cfg.state or cfg.master:
            return cfg.state or default_path(cfg.master)
    raise ValidationError("which master? give --master MASTER.xlsx or --state PATH")
