"""Read any team sheet into a clean Book: find the tables, match the headers, type the values.

Team sheets drift from the standard. Reading copes and reports; it never guesses silently:
each table is found by Excel table name, else by sheet name, else by spotting its header row in
the first rows of a sheet; headers match by name or alias regardless of case and punctuation;
unknown columns are kept; every value that cannot be read becomes an Issue naming its cell.
"""
from __future__ import annotations

import gc
from contextlib import contextmanager
from itertools import chain
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from . import schema, sources, values
from .book import Book
from .issues import ERROR, WARNING, Issue

HEADER_SCAN_ROWS = 20


@dataclass
class Region:
    """A rectangle of cells: the rows under (and including) a header, as read from a sheet."""

    sheet: str
    rows: list[list]  # cell values; rows[0] is the header row
    first_row: int  # sheet row number (1-based) of rows[0]
    first_col: int = 0  # 0-based column index of rows[x][0]
    how: str = "sheet"  # "table" (Excel table), "sheet" (sheet name), "detected"
    trimmed: bool = True  # blank rows are already BLANK_ROW (sources does it while reading)


@dataclass
class _Parsed:
    clean: pd.DataFrame
    raw: object  # () -> DataFrame of the original values
    headers: dict[str, str]
    issues: list[Issue] = field(default_factory=list)


def column_letter(i: int) -> str:
    s = ""
    i += 1
    while i:
        i, r = divmod(i - 1, 26)
        s = chr(65 + r) + s
    return s


def _header_matches(row: list, table: schema.Table) -> set[str]:
    hm = schema.HEADER_MAPS[table.name]
    return {hm[k] for k in (schema.normalize(c) for c in row if isinstance(c, str) and c.strip()) if k in hm}


def _header_score(row: list, table: schema.Table) -> int:
    return len(_header_matches(row, table))


def find_header(rows: list[list], table: schema.Table, scan: int = HEADER_SCAN_ROWS) -> tuple[int, int]:
    """(index of the best header row among the first `scan` rows, its score)."""
    best, best_score = 0, -1
    for i, row in enumerate(rows[:scan]):
        score = _header_score(row, table)
        if score > best_score:
            best, best_score = i, score
    return best, best_score


def _fit(rows: list[list], table: schema.Table) -> tuple[tuple[float, int], int] | None:
    """How well a sheet's best header row fits a table: ((matches, share of required columns), row index).

    None unless at least two columns match and half the required ones are there: "Amount" and "Notes"
    alone do not make a Costs table.
    """
    i, _ = find_header(rows, table)
    matched = _header_matches(rows[i], table) if rows else set()
    required = table.required
    share = len(matched.intersection(required)) / len(required) if required else 1.0
    if len(matched) < 2 or share < 0.5:
        return None
    return (len(matched), share), i


def locate_tables(sheets: list[sources.Sheet], excel_tables: dict[str, sources.ExcelTable],
                  source: str = "", issues: list[Issue] | None = None) -> dict[str, Region]:
    """Where each standard table lives: Excel table name, then sheet name, then header detection.

    A sheet that looks like a table already found elsewhere is not read; it is reported in ``issues``.
    """
    found: dict[str, Region] = {}
    used_sheets: set[str] = set()
    for xname, xt in excel_tables.items():
        name = schema.table_for_sheet_name(xname)
        if name and name not in found:
            found[name] = Region(xt.sheet, xt.rows, xt.first_row, xt.first_col, how="table")
            used_sheets.add(xt.sheet)
    by_name = {s.name: s for s in sheets}
    for s in sheets:
        name = schema.table_for_sheet_name(s.name)
        if name and name not in found and s.name not in used_sheets:
            i, score = find_header(s.rows, schema.TABLES[name])
            if score >= 1:
                found[name] = Region(s.name, s.rows[i:], s.first_row + i, s.first_col, how="sheet")
                used_sheets.add(s.name)
    # Header detection on the sheets nobody claimed: each sheet goes to the table it fits best.
    best: dict[str, tuple] = {}
    for s in sheets:
        if s.name in used_sheets:
            continue
        for name, table in schema.TABLES.items():
            fit = _fit(s.rows, table)
            if fit and (s.name not in best or fit[0] > best[s.name][0]):
                best[s.name] = (fit[0], name, fit[1])
    for sheet, (_, name, i) in sorted(best.items(), key=lambda kv: kv[1][0], reverse=True):
        if name in found:
            if issues is not None:
                issues.append(Issue(source, sheet, None, None, None, WARNING,
                                    f"this sheet looks like a {name} table too, but {name} was read from sheet "
                                    f"{found[name].sheet!r}; this sheet was not read"))
            continue
        s = by_name[sheet]
        found[name] = Region(s.name, s.rows[i:], s.first_row + i, s.first_col, how="detected")
    return found


def _map_headers(header: list, table: schema.Table, region: Region, source: str) -> tuple[list[str], list[Issue]]:
    """The canonical (or kept) name of every column in the region, and issues about the headers."""
    hm = schema.HEADER_MAPS[table.name]
    names: list[str] = []
    issues: list[Issue] = []
    taken: dict[str, str] = {}
    exact = {schema.normalize(c) for c in table.names}
    # A column named exactly like a standard column beats an alias of it ("Stage" over "Status").
    order = sorted(range(len(header)), key=lambda j: schema.normalize(header[j]) not in exact)
    result: dict[int, str] = {}
    for j in order:
        h = header[j]
        text = values._as_text(h)
        if text is None:
            continue
        canon = hm.get(schema.normalize(text))
        if canon is not None and canon not in taken:
            taken[canon] = text
            result[j] = canon
        elif canon is not None:
            issues.append(Issue(source, region.sheet, region.first_row, text, text, WARNING,
                                f"column {text!r} also looks like {canon} (already read from {taken[canon]!r}); "
                                f"kept as an extra column"))
    seen = set(table.names)
    for j, h in enumerate(header):
        if j in result:
            names.append(result[j])
            continue
        text = values._as_text(h) or f"Column {column_letter(region.first_col + j)}"
        base, k = text, 2
        while text in seen:
            text, k = f"{base} ({k})", k + 1
        seen.add(text)
        names.append(text)
    return names, issues


def parse_region(table_name: str, region: Region, source: str, dayfirst: bool | None = None,
                 stage_lookup: dict[str, str] | None = None) -> _Parsed:
    table = schema.TABLES[table_name]
    header, body = region.rows[0], region.rows[1:]
    # Keep non-blank rows only; remember the sheet row of each. Trailing blanks are not rows.
    body = [values.trim_row(r) for r in body] if not region.trimmed else body
    filled = [k for k, r in enumerate(body) if r]
    kept = body if len(filled) == len(body) else [body[k] for k in filled]
    nonblank = np.array(filled, dtype=np.int64)
    longest, shortest = max(map(len, kept), default=0), min(map(len, kept), default=0)
    width = max(len(header), longest)  # csv rows may run past the header
    header = list(header) + [None] * (width - len(header))
    names, issues = _map_headers(header, table, region, source)
    if shortest != width or longest != width:
        kept = [list(r) + [None] * (width - len(r)) for r in kept]
    if len(nonblank) > 1:
        gaps = np.flatnonzero(np.diff(nonblank) > 1)
        for g in gaps:  # one issue per run of empty rows, however long
            first, last = region.first_row + 2 + nonblank[g], region.first_row + nonblank[g + 1]
            what = "an empty row" if first == last else f"{last - first + 1} empty rows (rows {first}-{last})"
            issues.append(Issue(source, region.sheet, int(first), None, None, WARNING,
                                f"{what} in the middle of the table; the rows below still count"))
    row_numbers = (nonblank + region.first_row + 1).tolist()

    index = pd.Index(row_numbers, name="row", dtype="int64")
    columns = _columns(kept, width)
    # A column with neither a header nor a value (the margin left of a table that starts in B) is no column.
    keep = [j for j in range(width) if values._as_text(header[j]) is not None
            or any(not values.is_blank(v) for v in columns[j])]
    raw = {names[j]: columns[j] for j in keep}
    written = {names[j]: values._as_text(header[j]) for j in keep}

    clean: dict[str, object] = {}
    for col in table.columns:
        if col.name not in raw:
            if col.required:
                issues.append(Issue(source, region.sheet, region.first_row, col.name, None, ERROR,
                                    f"required column {col.name!r} is missing from the {table.name} header row"))
            clean[col.name] = _empty(col.kind, len(kept))
            continue
        vals = raw[col.name]
        typed, problems = _parse(col, vals, dayfirst, stage_lookup)
        clean[col.name] = typed
        label = written.get(col.name) or col.name
        for i, sev, msg in problems:
            issues.append(Issue(source, region.sheet, row_numbers[i], label, vals[i], sev, msg))
    for name in raw:
        if name not in clean:  # extra columns survive as written
            clean[name] = np.array([None if v == "" or v is None else v for v in raw[name]], dtype=object)

    # Object dtype for text keeps one dtype whatever the column holds (pandas 3 would infer "str" only
    # when every cell is text), so tables from different sheets concatenate and compare alike.
    clean_df = pd.DataFrame({k: pd.Series(v, index=index, dtype=object) if getattr(v, "dtype", None) == object
                             else pd.Series(v, index=index) for k, v in clean.items()}, index=index)
    def raw_frame() -> pd.DataFrame:
        return pd.DataFrame({k: pd.Series(v, index=index, dtype=object) for k, v in raw.items()}, index=index)

    return _Parsed(clean_df, raw_frame, {k: v for k, v in written.items() if v}, issues)


def _columns(rows: list[list], width: int) -> list[list]:
    """Rows (all `width` long) as column lists: one flat list, then strided slices, all in C."""
    flat = list(chain.from_iterable(rows))
    return [flat[j::width] for j in range(width)]


def _empty(kind: str, n: int):
    if kind in ("date", "datetime"):
        return np.full(n, np.datetime64("NaT"), dtype="datetime64[us]")
    if kind in ("money", "number", "percent", "int"):
        return np.full(n, np.nan)
    if kind == "bool":
        return pd.array([None] * n, dtype="boolean")
    return np.full(n, None, dtype=object)


def _parse(col: schema.Column, vals: list, dayfirst, stage_lookup):
    k = col.kind
    if k in ("text", "id"):
        return values.parse_text(vals)
    if k == "choice":
        return values.parse_choice(vals, col.choices, col.name)
    if k == "stage":
        return values.parse_stage(vals, stage_lookup or values.stage_lookup(s.name for s in schema.DEFAULT_STAGES))
    if k in ("date", "datetime"):
        return values.parse_dates(vals, col.name, dayfirst=dayfirst, keep_time=(k == "datetime"))
    if k == "percent":
        return values.parse_percent(vals, col.name)
    if k == "bool":
        return values.parse_bool(vals, col.name)
    return values.parse_number(vals, col.name, kind=k)


def build_book(source: str, regions: dict[str, Region], dayfirst: bool | None = None) -> Book:
    book = Book(source=source)
    # Stages first: the Deals stage column is read against the book's own stage names.
    for name in sorted(regions, key=lambda n: n != "Stages"):
        region = regions[name]
        lookup = _stage_lookup(book.stages) if name == "Deals" else None
        parsed = parse_region(name, region, source, dayfirst=dayfirst, stage_lookup=lookup)
        book.tables[name] = parsed.clean
        book.raw.add(name, parsed.raw)
        book.sheets[name] = region.sheet
        book.headers[name] = parsed.headers
        book.issues.extend(parsed.issues)
    book.tables = {n: book.tables[n] for n in schema.TABLE_ORDER if n in book.tables}
    book.issues.sort(key=lambda i: (schema.TABLE_ORDER.index(_table_of(book, i.sheet)), i.row or 0))
    return book


def _stage_lookup(stages: pd.DataFrame) -> dict[str, str]:
    """The book's stage names, with "won"/"lost" pointing at its closing stages whatever they are called."""
    closed = stages["Is Closed"].fillna(False).astype(bool)
    won_mask = closed & stages["Is Won"].fillna(False).astype(bool)
    won = stages.loc[won_mask, "Stage"].tolist()
    lost = stages.loc[closed & ~won_mask, "Stage"].tolist()
    # Only an unambiguous closing stage takes the words; two won stages leave "won" to the name match.
    return values.stage_lookup(stages["Stage"], won=won[0] if len(won) == 1 else None,
                               lost=lost[0] if len(lost) == 1 else None)


def _table_of(book: Book, sheet: str | None) -> str:
    for t, s in book.sheets.items():
        if s == sheet:
            return t
    return "Deals"


@contextmanager
def no_gc():
    """Reading makes millions of short-lived, acyclic objects: the cycle collector only slows it down."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def read_workbook(path, dayfirst: bool | None = None) -> Book:
    """Read an xlsx/xlsm/xls/ods or csv file into a Book. Raises ReadError if it is not readable at all."""
    with no_gc():
        return _read_workbook(Path(path), dayfirst)


def _read_workbook(path: Path, dayfirst: bool | None) -> Book:
    sheets, excel_tables = sources.load(path)
    return book_from_sheets(str(path), sheets, excel_tables, dayfirst)


def book_from_sheets(source: str, sheets: list[sources.Sheet], excel_tables: dict | None = None,
                     dayfirst: bool | None = None) -> Book:
    """A Book from a workbook's sheets (from a file, or tabs fetched from a service such as Google Sheets)."""
    located: list[Issue] = []
    regions = locate_tables(sheets, excel_tables or {}, source, located)
    book = build_book(source, regions, dayfirst=dayfirst)
    book.issues[:0] = located
    if "Deals" not in regions:
        book.issues.insert(0, Issue(source, None, None, None, None, ERROR,
                                    f"no {schema.DEALS.name} table found: name a sheet (tab) or Excel table "
                                    f"{schema.DEALS.name!r}, or give it a header row with columns like "
                                    f"{', '.join(schema.DEALS.required)}"))
    return book


def book_from_rows(tables: dict[str, list[list]], source: str = "<data>", dayfirst: bool | None = None) -> Book:
    """A Book from 2-D lists (header row first) keyed by table name, as spreadsheet hosts pass ranges."""
    regions = {}
    for name, rows in tables.items():
        canon = schema.table_for_sheet_name(name) or name
        if canon not in schema.TABLES:
            raise KeyError(f"unknown table {name!r}; expected one of {', '.join(schema.TABLES)}")
        rows = [list(r) for r in rows]
        i, _ = find_header(rows, schema.TABLES[canon], scan=5)
        regions[canon] = Region(canon, rows[i:], 1 + i, 0, how="table", trimmed=False)
    return build_book(source, regions, dayfirst=dayfirst)
