"""Reading a Google spreadsheet into a Book, and a Google spreadsheet as a sync source (GoogleSource).

Reading a spreadsheet: one metadata request and one values:batchGet of every grid tab, UNFORMATTED_VALUE and
SERIAL_NUMBER dates, fed to the same reader as files (``book_from_grids``), so typing, aliases and issues are
the same. A source's content hash is Drive's ``version`` of the file (one Drive request, outside the Sheets
quota); when Drive cannot be asked (API disabled), it is a hash of the batchGet values (the full two reads,
kept for ``read()``).

Separate from the client (gsheets.py) because it is about Books and sources, not HTTP; the sync master
reads its own tabs back through fetch() too.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from .errors import ReadError
from .gsheets import (GoogleAccessError, GoogleAuthError, GoogleClient, GoogleError, GoogleRetryError,
                      WithClient, default_client, google_key, quote_sheet)


@dataclass
class Fetched:
    """A spreadsheet as read: its title and every grid tab's rows (UNFORMATTED_VALUE, serial dates)."""

    key: str
    title: str
    sheets: list[tuple[str, list[list]]]
    meta: dict = field(default_factory=dict, repr=False)

    def values_hash(self) -> str:
        return grids_hash({t: rows for t, rows in self.sheets})


def fetch(client: GoogleClient, key: str, only: set[str] | None = None) -> Fetched:
    """One metadata request and one values:batchGet of the grid tabs (those in `only`, when given)."""
    meta = client.metadata(key)
    props = [s.get("properties", {}) for s in meta.get("sheets", [])]
    wanted = None if only is None else {t.casefold() for t in only}  # Google's tab names ignore case
    titles = [p["title"] for p in sorted(props, key=lambda p: p.get("index", 0))
              if p.get("sheetType", "GRID") == "GRID" and (wanted is None or p["title"].casefold() in wanted)]
    ranges = client.batch_get(key, [quote_sheet(t) for t in titles])
    if len(ranges) != len(titles):
        raise GoogleError(f"Google returned {len(ranges)} ranges for the {len(titles)} tabs of spreadsheet {key}")
    sheets = [(t, vr.get("values", [])) for t, vr in zip(titles, ranges)]
    return Fetched(key, meta.get("properties", {}).get("title") or key, sheets, meta)


def _cells(row: list) -> list:
    # JSON gives whole numbers as int; files give float: the same value must type and hash the same.
    return [float(v) if type(v) is int else v for v in row]


def book_from_grids(source: str, sheets: list[tuple[str, list[list]]], dayfirst: bool | None = None):
    """A Book from tabs' rows, exactly as read_workbook does it for a file's sheets."""
    from .reader import book_from_sheets, no_gc
    from .sources import Sheet
    from .values import trim_row

    with no_gc():
        objs = [Sheet(title, _rows=[trim_row(_cells(r)) for r in rows]) for title, rows in sheets]
        return book_from_sheets(source, objs, None, dayfirst)


def read_spreadsheet(spec, client: GoogleClient | None = None, dayfirst: bool | None = None):
    """Read a Google spreadsheet (gsheet:KEY, URL or key) into a Book, like read_workbook reads a file."""
    key = google_key(spec) or str(spec)
    f = fetch(client or default_client(), key)
    return book_from_grids(f.title, f.sheets, dayfirst)


def _norm(v):
    if v is None or v == "":
        return None
    if type(v) is int or type(v) is float:
        return float(v)
    return v


def norm_grid(rows: list[list]) -> list[list]:
    """Rows as Google gives them back: blanks None, numbers float, trailing blanks and empty rows dropped."""
    out = []
    for r in rows:
        cells = [_norm(v) for v in r]
        while cells and cells[-1] is None:
            cells.pop()
        out.append(cells)
    while out and not out[-1]:
        out.pop()
    return out


def grids_hash(grids: dict[str, list[list]]) -> str:
    h = hashlib.blake2b(digest_size=16)
    for title in sorted(grids):
        h.update(json.dumps([title, norm_grid(grids[title])], ensure_ascii=False, allow_nan=False,
                            separators=(",", ":")).encode("utf-8"))
    return h.hexdigest()


class GoogleSource(WithClient):
    """A Google spreadsheet as a sync source (same members as sources_config.FileSource)."""

    kind = "google"
    parallel_safe = False  # one pacer per process: never read in worker processes

    def __init__(self, key: str, client: GoogleClient | None = None):
        self.key = key
        self._client = client
        self._title: str | None = None
        self._fetched: Fetched | None = None

    def __repr__(self) -> str:
        return f"GoogleSource({self.key!r})"

    @property
    def id(self) -> str:
        return f"gsheet:{self.key}"

    @property
    def name(self) -> str:
        return self._title or self.id

    def content_hash(self) -> str | None:
        """Drive's version of the file (changes with every edit); None when it cannot be read.
        Without Drive (API disabled for the project), a hash of the values, read now and kept for read()."""
        self._fetched = None
        try:
            meta = self.client.drive_version(self.key)
        except GoogleAccessError:
            return None
        except (GoogleAuthError, GoogleRetryError):
            raise
        except GoogleError:
            meta = {}
        if meta.get("name"):
            self._title = meta["name"]
        tag = meta.get("version") or meta.get("modifiedTime")
        if tag:
            return f"drive:{tag}"
        try:
            self._fetched = fetch(self.client, self.key)
        except GoogleAccessError:
            return None
        self._title = self._fetched.title
        return "values:" + self._fetched.values_hash()

    def read(self):
        try:
            f = self._fetched or fetch(self.client, self.key)
        except GoogleAccessError as e:
            raise ReadError(self.id, str(e)) from None
        self._fetched = None  # one use: the next sync reads afresh
        self._title = f.title
        return book_from_grids(self.name, f.sheets)
