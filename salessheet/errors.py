"""The exception hierarchy: everything salessheet raises on purpose is a salessheet.Error."""
from __future__ import annotations


class Error(Exception):
    """Base class of every salessheet error. The CLI prints its message as one line."""


class ReadError(Error):
    """A file (or sheet) cannot be read at all: not a spreadsheet, encrypted, truncated, too large."""

    def __init__(self, path, message: str):
        self.path = str(path)
        super().__init__(f"{self.path}: {message}")


class MissingTableError(Error):
    """A calculation needs a table (Leads, Costs, Targets, ...) that the workbook does not have."""

    def __init__(self, table: str, needed_for: str):
        self.table = table
        super().__init__(f"{needed_for} needs the {table} table, and this workbook has none")


class ValidationError(Error):
    """Input that salessheet refuses (a bad argument or filter), as opposed to issues found in data."""


class LockedError(Error):
    """A file is open (locked) in another program, or another sync holds the state lock."""

    def __init__(self, path, message: str):
        self.path = str(path)
        super().__init__(f"{self.path}: {message}")


class SyncError(Error):
    """A sync could not complete; the master and state are left as they were."""
