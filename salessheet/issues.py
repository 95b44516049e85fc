"""Issue records: every problem found in a sheet, located as the user sees it."""
from __future__ import annotations

import datetime as _dt
import math
from dataclasses import dataclass
from typing import Any

ERROR = "error"
WARNING = "warning"


def _plain(value: Any) -> Any:
    """A JSON-safe, human-readable form of a cell value."""
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, (_dt.date, _dt.datetime)):
        return value.isoformat()
    if hasattr(value, "isoformat"):  # pandas Timestamp
        return value.isoformat()
    if isinstance(value, (str, int, float, bool)):
        return value
    if hasattr(value, "item"):  # numpy scalar
        return value.item()
    return str(value)


@dataclass(frozen=True)
class Issue:
    """One problem: file, sheet, row number as shown in the sheet (1-based), column, value, message."""

    source: str
    sheet: str | None
    row: int | None
    column: str | None
    value: Any
    severity: str  # "error" or "warning"
    message: str

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            "sheet": self.sheet,
            "row": self.row,
            "column": self.column,
            "value": _plain(self.value),
            "severity": self.severity,
            "message": self.message,
        }

    def __str__(self) -> str:
        where = ", ".join(
            p for p in (self.source, self.sheet and f"sheet {self.sheet}", self.row and f"row {self.row}",
                        self.column and f"column {self.column}") if p
        )
        return f"{where}: {self.severity}: {self.message}"


def count(issues, severity: str) -> int:
    return sum(1 for i in issues if i.severity == severity)
