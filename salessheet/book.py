"""Book: the clean tables read from one workbook, with the issues found while reading it.

Contract every later stage relies on (KPIs, sync, spreadsheet functions):
- ``book.tables[name]`` is a DataFrame per standard table found, with every standard column present
  (in standard order, all-missing where the sheet lacked it) followed by the sheet's extra columns.
- Its index is the row number the user sees in the sheet (1-based), named ``row``.
- dtypes: text/id/choice/stage columns are object dtype holding str or None; date columns are datetime64 at midnight
  (``datetime`` columns keep the time); money/number/percent/int columns are float64 (percent as a
  fraction, 0.25 for 25%); bool columns are pandas "boolean".
- ``book.raw[name]`` holds the original cell values of every column the sheet has (under the same
  names as the clean table, extras included) with the same index: nothing is lost.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import pandas as pd

from . import schema
from .errors import MissingTableError
from .issues import ERROR, Issue


def default_stages() -> pd.DataFrame:
    """The standard Stages table as a clean frame."""
    df = pd.DataFrame(
        {
            "Stage": [s.name for s in schema.DEFAULT_STAGES],
            "Order": [float(s.order) for s in schema.DEFAULT_STAGES],
            "Probability": [s.probability for s in schema.DEFAULT_STAGES],
            "Is Closed": pd.array([s.is_closed for s in schema.DEFAULT_STAGES], dtype="boolean"),
            "Is Won": pd.array([s.is_won for s in schema.DEFAULT_STAGES], dtype="boolean"),
        }
    )
    df.index = pd.RangeIndex(2, 2 + len(df), name="row")
    return df


class LazyFrames(Mapping):
    """Table name -> DataFrame, each built on first access (the raw values are rarely all needed)."""

    def __init__(self):
        self._builders: dict[str, Callable[[], pd.DataFrame]] = {}
        self._frames: dict[str, pd.DataFrame] = {}

    def add(self, name: str, builder: Callable[[], pd.DataFrame]) -> None:
        self._builders[name] = builder
        self._frames.pop(name, None)

    def __setitem__(self, name: str, frame: pd.DataFrame) -> None:
        self._builders[name] = lambda: frame
        self._frames[name] = frame

    def __getitem__(self, name: str) -> pd.DataFrame:
        if name not in self._frames:
            self._frames[name] = self._builders[name]()
        return self._frames[name]

    def __iter__(self):
        return iter(self._builders)

    def __len__(self) -> int:
        return len(self._builders)


@dataclass
class Book:
    source: str
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    issues: list[Issue] = field(default_factory=list)
    sheets: dict[str, str] = field(default_factory=dict)  # table -> sheet it was read from
    raw: LazyFrames = field(default_factory=LazyFrames)
    headers: dict[str, dict[str, str]] = field(default_factory=dict)  # table -> {column: header as written}

    def has(self, name: str) -> bool:
        return name in self.tables

    def table(self, name: str, needed_for: str | None = None) -> pd.DataFrame:
        """A clean table; MissingTableError naming it (and what needed it) when the book has none."""
        if name == "Stages":
            return self.stages
        try:
            return self.tables[name]
        except KeyError:
            raise MissingTableError(name, needed_for or "this") from None

    @property
    def deals(self) -> pd.DataFrame:
        return self.table("Deals")

    @property
    def stages(self) -> pd.DataFrame:
        """The book's own Stages table when it has a usable one, else the standard defaults."""
        st = self.tables.get("Stages")
        if st is None or st["Stage"].notna().sum() == 0:
            return default_stages()
        return st[st["Stage"].notna()]

    @property
    def errors(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == ERROR]

    @classmethod
    def from_rows(cls, tables: dict[str, list[list]], source: str = "<data>", dayfirst: bool | None = None) -> "Book":
        """A Book from plain 2-D lists (header row first), as spreadsheet hosts pass ranges."""
        from .reader import book_from_rows

        return book_from_rows(tables, source=source, dayfirst=dayfirst)
