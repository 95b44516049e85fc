"""Validation rules: what a clean Book must satisfy beyond being readable.

Reading already reports cells it could not type. These rules check the meaning of the rows:
required fields, ranges, the closing rules of deals, and duplicate IDs. Each rule is vectorised
over a table and yields Issues located at the row and column the user sees.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from . import schema
from .book import Book
from .issues import ERROR, WARNING, Issue
from .reader import read_workbook


def validate(path, dayfirst: bool | None = None) -> Book:
    """Read a workbook and check it against the standard; the Book's issues hold everything found."""
    book = read_workbook(path, dayfirst=dayfirst)
    book.issues.extend(check_book(book))
    book.issues.sort(key=lambda i: (list(book.sheets.values()).index(i.sheet) if i.sheet in book.sheets.values()
                                    else -1, i.row or 0))
    return book


def check_book(book: Book) -> list[Issue]:
    out: list[Issue] = []
    for name, df in book.tables.items():
        table = schema.TABLES[name]
        ctx = _Ctx(book, name, df)
        out += _required(ctx, table)
        out += _ranges(ctx, table)
        if table.key and table.key in df:
            out += _duplicates(ctx, table.key)
        out += _dropdown_lists(ctx, table)
    if "Deals" in book.tables:
        out += _deal_rules(_Ctx(book, "Deals", book.tables["Deals"]))
    if "Targets" in book.tables:
        ctx = _Ctx(book, "Targets", book.tables["Targets"])
        df = ctx.df
        out += ctx.issues(df["Period End"] < df["Period Start"], "Period End", ERROR,
                          "Period End is before Period Start")
    return out


class _Ctx:
    def __init__(self, book: Book, name: str, df: pd.DataFrame):
        self.book, self.name, self.df = book, name, df
        self.sheet = book.sheets.get(name, name)
        self.raw = book.raw.get(name)
        # Issues name a column as the sheet spells it ("Sales Rep"), not by our canonical name.
        self.headers = book.headers.get(name, {})

    def issues(self, mask, column: str, severity: str, message) -> list[Issue]:
        mask = np.asarray(mask, dtype=bool)
        if not mask.any():
            return []
        rows = self.df.index[mask]
        vals = self.raw[column].reindex(rows) if self.raw is not None and column in self.raw else \
            self.df[column].reindex(rows) if column in self.df else pd.Series([None] * len(rows), index=rows)
        out = []
        for r, v in zip(rows, vals):
            v = None if _blank(v) else v  # an empty cell is null in JSON, not ""
            msg = message(r) if callable(message) else message
            out.append(Issue(self.book.source, self.sheet, int(r), self.headers.get(column, column), v, severity, msg))
        return out


def _required(ctx: _Ctx, table: schema.Table) -> list[Issue]:
    out = []
    for col in table.required:
        if ctx.raw is None or col not in ctx.raw:
            continue  # a missing required column was reported once, at the header row
        blank = ctx.raw[col].map(_blank).to_numpy(dtype=bool)
        out += ctx.issues(blank, col, ERROR, f"{col} is required")
    return out


def _blank(v) -> bool:
    return v is None or (isinstance(v, str) and not v.strip()) or (isinstance(v, float) and v != v)


def _ranges(ctx: _Ctx, table: schema.Table) -> list[Issue]:
    out = []
    df = ctx.df
    for c in table.columns:
        if c.name not in df:
            continue
        if c.kind in ("money", "number"):
            out += ctx.issues(df[c.name] < 0, c.name, ERROR, f"{c.name} must be 0 or more")
        elif c.kind == "percent":
            s = df[c.name]
            out += ctx.issues((s < 0) | (s > 1), c.name, ERROR, f"{c.name} must be between 0% and 100%")
    return out


def _duplicates(ctx: _Ctx, key: str) -> list[Issue]:
    ids = ctx.df[key]
    dup = ids.notna() & ids.duplicated(keep=False)
    if not dup.any():
        return []
    first = ids[dup].reset_index().groupby(key)["row"].min()
    firsts = ids.map(first)
    return ctx.issues(dup & (ctx.df.index.to_series().to_numpy() != firsts.to_numpy()), key, ERROR,
                      lambda r: f"{key} {ids[r]!r} is used again (first at row {int(firsts[r])}); IDs must be unique")


def _dropdown_lists(ctx: _Ctx, table: schema.Table) -> list[Issue]:
    """Values outside a non-empty Lists column: a warning (a new rep may not be on the list yet)."""
    lists = ctx.book.tables.get("Lists")
    if lists is None or ctx.name == "Lists":
        return []
    out = []
    for c in table.columns:
        if not c.dropdown or c.dropdown == "Stage" or c.name not in ctx.df or c.dropdown not in lists:
            continue
        allowed = {schema.normalize(v) for v in lists[c.dropdown].dropna()}
        if not allowed:
            continue
        s = ctx.df[c.name]
        bad = s.notna() & ~s.map(lambda v: schema.normalize(v) in allowed).astype(bool)
        out += ctx.issues(bad, c.name, WARNING, f"not in the {c.dropdown} list on the Lists sheet")
    return out


def _deal_rules(ctx: _Ctx) -> list[Issue]:
    df = ctx.df
    stages = ctx.book.stages
    closed = set(stages.loc[stages["Is Closed"].fillna(False).astype(bool), "Stage"])
    lost = set(stages.loc[stages["Is Closed"].fillna(False).astype(bool) & ~stages["Is Won"].fillna(False).astype(bool),
                          "Stage"])
    is_closed = df["Stage"].isin(closed).to_numpy()
    is_lost = df["Stage"].isin(lost).to_numpy()
    out = []
    no_close = is_closed & df["Closed Date"].isna().to_numpy() & _raw_blank(ctx, "Closed Date")
    out += ctx.issues(no_close, "Closed Date", ERROR,
                      lambda r: f"Closed Date is required when the stage is {df.at[r, 'Stage']}")
    out += ctx.issues((df["Closed Date"] < df["Created Date"]).to_numpy(), "Closed Date", ERROR,
                      lambda r: f"Closed Date {df.at[r, 'Closed Date']:%Y-%m-%d} is before Created Date "
                                f"{df.at[r, 'Created Date']:%Y-%m-%d}")
    open_with_close = ~is_closed & df["Closed Date"].notna().to_numpy() & df["Stage"].notna().to_numpy()
    out += ctx.issues(open_with_close, "Closed Date", WARNING,
                      lambda r: f"has a Closed Date but the stage {df.at[r, 'Stage']} is still open")
    no_reason = is_lost & df["Lost Reason"].isna().to_numpy()
    out += ctx.issues(no_reason, "Lost Reason", WARNING, "Lost Reason is expected for a lost deal")
    return out


def _raw_blank(ctx: _Ctx, col: str) -> np.ndarray:
    # A Closed Date that is present but unreadable was already reported by the reader.
    if ctx.raw is None or col not in ctx.raw:
        return np.ones(len(ctx.df), dtype=bool)
    return ctx.raw[col].map(_blank).to_numpy(dtype=bool)


def validate_paths(paths, dayfirst: bool | None = None) -> list[Book]:
    return [validate(Path(p), dayfirst=dayfirst) for p in paths]
