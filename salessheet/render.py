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


KPI_TITLES = {
    "win_rate": "Win rate", "revenue": "Revenue", "sales_volume": "Sales volume", "avg_deal_size": "Avg deal size",
    "sales_cycle_days": "Sales cycle (days)", "conversion_rate": "Conversion rate", "cac": "CAC",
    "pipeline": "Pipeline", "weighted_pipeline": "Weighted pipeline", "forecast": "Forecast",
    "sales_velocity": "Sales velocity (/day)", "quota_attainment": "Quota attainment",
}
KPI_HEADS = {  # two-line headers keep a table with every KPI narrow
    "win_rate": "Win\nrate", "revenue": "Revenue", "sales_volume": "Units", "avg_deal_size": "Avg\ndeal",
    "sales_cycle_days": "Cycle\ndays", "conversion_rate": "Conv.\nrate", "cac": "CAC", "pipeline": "Pipeline",
    "weighted_pipeline": "Weighted\npipeline", "forecast": "Forecast", "sales_velocity": "Velocity\n/day",
    "quota_attainment": "Quota\nattained", "owner": "Owner", "team": "Team", "month": "Month", "quarter": "Quarter",
}
FORECAST_HEADS = {"month": "Month", "committed": "Committed\n(won)", "pipeline": "Pipeline",
                   "weighted_pipeline": "Weighted\npipeline", "forecast": "Committed\n+ weighted",
                   "trend": "Trend", "stage": "Stage", "order": "Order", "closed": "Closed",
                   "default_probability": "Default", "learned_probability": "Learned",
                   "deals": "Sample", "won": "Won", "from_history": "From\nhistory"}
_SHARES = ("win_rate", "conversion_rate", "quota_attainment", "default_probability", "learned_probability")
_LABELS = ("owner", "team", "month", "quarter", "stage", "KPI")


def _num(key: str, v) -> str:
    """A value as people read it; csv/json keep full precision."""
    if v is None or v != v:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, (str, int)):
        return str(v)
    if key in _SHARES:
        return f"{v:.1%}"
    if key in ("sales_cycle_days", "order"):
        return f"{v:,.1f}".removesuffix(".0")
    return f"{v:,.0f}" if abs(v) >= 100 or v == int(v) else f"{v:,.2f}"


def frame_table(df, title: str, heads: dict):
    from rich.table import Table

    t = Table(title=title, title_justify="left", header_style="bold")
    for c in df.columns:
        label = c in _LABELS
        t.add_column(heads.get(c, c), justify="left" if label else "right", no_wrap=label,
                     min_width=min(30, max([len(str(v)) for v in df[c]] + [1])) if label else None)
    for rec in df.to_dict("records"):
        t.add_row(*[_num(c, v) for c, v in rec.items()])
    return t


def _width(out, table) -> int:
    return out.measure(table, options=out.options.update_width(100_000)).maximum


def print_kpis(out, table, records: list[dict], by: str | None, title: str) -> None:
    """One row per group when that fits the terminal; else KPIs as rows, in as many tables as it takes."""
    from .kpi import KPIS

    if by and _width(out, wide := frame_table(table, title, KPI_HEADS)) <= out.width:
        return out.print(wide)
    first = 0
    while first < len(records):
        last = first + 1
        while last < len(records) and _width(out, _long(records[first:last + 1], by, title, KPIS)) <= out.width:
            last += 1
        out.print(_long(records[first:last], by, title, KPIS))
        first, title = last, ""


def _long(records, by, title, keys):
    import pandas as pd

    long = pd.DataFrame({"KPI": [KPI_TITLES[k] for k in keys]})
    for rec in records:
        long[str(rec[by]) if by else "Value"] = [_num(k, rec[k]) for k in keys]
    return frame_table(long, title, {})
