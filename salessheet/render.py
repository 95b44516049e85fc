"""Rich renderings shared by the CLI commands: issue lists, summaries."""
from __future__ import annotations

from rich.table import Table
from rich.text import Text

from .book import Book
from .issues import ERROR, count


def issues_table(book: Book):
    errors, warnings = count(book.issues, ERROR), len(book.issues) - count(book.issues, ERROR)
    rows = sum(len(df) for df in book.tables.values())
    title = f"{book.source}: {errors} error(s), {warnings} warning(s) in {rows} rows"
    if not book.issues:
        return Text(f"✓ {book.source}: no problems in {rows} rows", style="green")
    t = Table(title=title, title_justify="left", show_lines=False, header_style="bold")
    for c in ("Sheet", "Row", "Column", "Value", "", "Problem"):
        t.add_column(c, overflow="fold")
    for i in book.issues:
        sev = Text("error", style="bold red") if i.severity == ERROR else Text("warning", style="yellow")
        v = i.to_dict()["value"]
        t.add_row(i.sheet or "", str(i.row or ""), i.column or "", "" if v is None else str(v), sev, i.message)
    return t
