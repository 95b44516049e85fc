"""The master's Dashboard sheet: the template's native-formula KPI block over the master's tables, with
values cached from the KPI engine for apps that do not calculate.

Separate from master (package editing) and sheetxml (frames as cells): it is the one owned sheet made of
formulas rather than data, and the only part of writing a master that runs the KPI engine.
"""
from __future__ import annotations

import math
import re
from xml.sax.saxutils import escape

import pandas as pd

from . import schema, template, xlsxpkg
from .sheetxml import Sheet, num, sheet_end, sheet_view, text_xml
from .xlsxpkg import NS

_MAIN, _REL = NS["m"], NS["r"]
_REF = re.compile(r"([A-Za-z_][\w.]*)\[((?:'.|[^\]'])*)\]")
_CELL_REF = re.compile(r"(?<![\w\[$])([A-Z]{1,2}\d+)(?![\w\[(])")
_KIND_STYLE = {"money": "money", "percent": "pct1", "days": "days", "count": "int", "number": None}
_COUNT_SUMS = {"deals_won": "won_n", "deals_lost": "lost_n", "leads": "leads_n", "leads_converted": "converted_n",
               "new_customers": "customers", "costs": "costs"}


def dashboard_xml(styles, frames: dict[str, pd.DataFrame], columns: dict[str, list[str]], sheet: Sheet) -> bytes:
    """Template's native-formula KPI block over the master's tables, with the values cached for apps that
    do not calculate. A KPI whose table or column the master lacks says so instead of failing."""
    formulas = template.dashboard_formulas()
    where = {**template.DASHBOARD_CELLS, **template.DASHBOARD_COUNT_CELLS}
    by_addr = {a: k for k, a in where.items()}
    have = {t.casefold(): {c.casefold() for c in cols} for t, cols in columns.items()}

    def refs(key, seen=()):
        """(table, column) pairs a KPI reads, through the Dashboard cells its formula uses."""
        f = formulas[key][1]
        out = {(t, re.sub(r"'(.)", r"\1", c)) for t, c in _REF.findall(f)}
        for a in _CELL_REF.findall(f):
            if a in by_addr and by_addr[a] not in seen:
                out |= refs(by_addr[a], (*seen, key))
        return out

    cached = _cached_kpis(frames)
    rows: dict[int, list[str]] = {}

    def put(addr: str, xml: str) -> None:
        rows.setdefault(int(re.sub(r"\D", "", addr)), []).append(xml)

    def text(addr: str, value: str, style: str | None = None) -> None:
        s = f' s="{styles(style)}"' if style else ""
        put(addr, f'<c r="{addr}"{s}{text_xml(value)[1:]}')

    text("A1", "Sales dashboard", "title")
    text("A2", "Worked out from the master's Deals, Leads, Costs and Stages sheets, all time. Nothing to type here.")
    for r, label in ((3, "KPI"), (14, "Counts behind the KPIs")):
        for col, t in zip("ABC", (label, "Value" if r == 3 else "", "How it is worked out" if r == 3 else "")):
            put(f"{col}{r}", f'<c r="{col}{r}" s="{styles("head")}"' + (text_xml(t)[1:] if t else "/>"))
    for key, addr in where.items():
        label, formula, kind, note = formulas[key]
        row = addr[1:]
        text(f"A{row}", label, "label")
        no_table = sorted({t for t, _ in refs(key) if t.casefold() not in have})
        no_col = sorted(f"{t}[{c}]" for t, c in refs(key)
                        if t not in no_table and c.casefold() not in have[t.casefold()])
        if no_table or no_col:
            what = [f"the {t} table" for t in no_table] + [f"the column {c}" for c in no_col]
            text(addr, "n/a")
            text(f"C{row}", f"{note} Needs {' and '.join(what)}, which this master does not have.", "wrap")
            continue
        style = _KIND_STYLE[kind]
        s = f' s="{styles(style)}"' if style else ""
        f = escape(formula)
        f = f'<f t="array" ref="{addr}">{f}</f>' if key == "new_customers" else f"<f>{f}</f>"
        # Cache only values computed from tables written now: another table's rows are not known here.
        v = cached.get(key, "?") if all(t in frames for t, _ in refs(key)) else "?"
        if v == "?":
            put(addr, f'<c r="{addr}"{s}>{f}</c>')
        elif v is None:  # the formula's "" (undefined: nothing to divide by)
            put(addr, f'<c r="{addr}"{s} t="str">{f}<v></v></c>')
        else:
            put(addr, f'<c r="{addr}"{s}>{f}<v>{num(v)}</v></c>')
        text(f"C{row}", note, "wrap")
    body = "".join(f'<row r="{r}">' + "".join(sorted(cells, key=lambda c: re.match(r'<c r="([A-Z]+)', c).group(1)))
                   + "</row>" for r, cells in sorted(rows.items()))
    cols = (f'<cols><col min="1" max="1" width="28.7109375" customWidth="1"/>'
            f'<col min="2" max="2" width="18.7109375" customWidth="1"/>'
            f'<col min="3" max="3" width="70.7109375" style="{styles("wrap")}" customWidth="1"/></cols>')
    return (f'{xlsxpkg.XML_HEAD}<worksheet xmlns="{_MAIN}" xmlns:r="{_REL}">{sheet.sheet_pr}'
            f'<dimension ref="A1:C{max(rows)}"/>'
            f'{sheet_view(sheet, False)}<sheetFormatPr defaultRowHeight="15"/>{cols}<sheetData>{body}</sheetData>'
            f'{sheet_end(sheet)}').encode("utf-8")


def _cached_kpis(frames: dict[str, pd.DataFrame]) -> dict[str, float | None]:
    """key -> value the Dashboard formula gives (None: its ""), from the KPI engine, for the KPIs whose
    tables are all being written now; the rest are left for the spreadsheet app to calculate."""
    from . import kpi
    from .book import Book
    from .errors import Error

    if "Deals" not in frames:
        return {}
    book = Book(source="master", tables={t: frames[t] for t in schema.TABLE_ORDER if t in frames})
    try:
        table = kpi.kpi_table(book).iloc[0]
        sums = kpi.sums(book, strict=False).iloc[0]
    except (Error, KeyError, TypeError, ValueError):  # frames not in the Book shape: let the app calculate
        return {}
    out: dict[str, float | None] = {}
    for key in template.DASHBOARD_CELLS:
        v = table.get(key)
        out[key] = None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)
    for key, col in _COUNT_SUMS.items():
        v = sums.get(col)
        if v is not None and not (isinstance(v, float) and math.isnan(v)):
            out[key] = float(v)
    return out
