"""The salessheet standard: every sheet, column, type, rule and header alias.

This module is the single source of truth. The template writer, the reader, the validator, the KPI
engine and sync all read the standard from here; nothing else hard-codes a column name or a stage.
It imports nothing but the standard library so that every host (Pyodide included) can load it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

# Column kinds. The reader turns each into one clean dtype:
#   text, id, choice, stage -> str      date -> datetime64 (midnight)   datetime -> datetime64
#   money, number, percent  -> float64  int -> float64 (whole numbers)  bool -> boolean
KINDS = ("text", "id", "choice", "stage", "date", "datetime", "money", "number", "percent", "int", "bool")


@dataclass(frozen=True)
class Column:
    name: str
    kind: str = "text"
    required: bool = False
    choices: tuple[str, ...] = ()  # fixed allowed values (kind "choice")
    dropdown: str | None = None  # the Lists column (or "Stage") that feeds this column's dropdown
    aliases: tuple[str, ...] = ()
    width: int = 14
    help: str = ""  # the input message reps see in the template

    def __post_init__(self):
        assert self.kind in KINDS, self.kind


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    key: str | None = None  # the column that identifies a row
    aliases: tuple[str, ...] = ()  # other sheet names this table is found under
    about: str = ""

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def required(self) -> list[str]:
        return [c.name for c in self.columns if c.required]

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"{self.name} has no column {name!r}")

    def of_kind(self, *kinds: str) -> list[str]:
        return [c.name for c in self.columns if c.kind in kinds]


@dataclass(frozen=True)
class Stage:
    name: str
    order: int
    probability: float
    is_closed: bool
    is_won: bool


DEFAULT_STAGES: tuple[Stage, ...] = (
    Stage("Prospecting", 1, 0.10, False, False),
    Stage("Qualification", 2, 0.25, False, False),
    Stage("Proposal", 3, 0.50, False, False),
    Stage("Negotiation", 4, 0.75, False, False),
    Stage("Closed Won", 5, 1.00, True, True),
    Stage("Closed Lost", 6, 0.00, True, False),
)
WON_STAGE = "Closed Won"
LOST_STAGE = "Closed Lost"
# Words reps type for the closing stages; matched case- and punctuation-insensitively.
STAGE_ALIASES: dict[str, str] = {
    "won": WON_STAGE, "win": WON_STAGE, "closedwon": WON_STAGE,
    "lost": LOST_STAGE, "loss": LOST_STAGE, "closedlost": LOST_STAGE,
}

LEAD_STATUSES = ("New", "Working", "Qualified", "Converted", "Disqualified")
CONVERTED_STATUS = "Converted"
COST_CATEGORIES = ("Sales", "Marketing")
DEFAULT_LEAD_SOURCES = ("Website", "Referral", "Outbound", "Event", "Partner", "Paid Ads")
DEFAULT_CURRENCY = "USD"

DEALS = Table(
    "Deals",
    key="Deal ID",
    aliases=("Opportunities", "Pipeline", "Deal List"),
    about="One row per deal (opportunity).",
    columns=(
        Column("Deal ID", "id", required=True, width=12,
               aliases=("Opportunity ID", "Opp ID", "ID", "Deal #", "Deal No", "Deal Number", "Record ID"),
               help="A unique ID for the deal, e.g. D-1001. Never reuse one."),
        Column("Deal Name", width=28, aliases=("Opportunity", "Opportunity Name", "Deal", "Name", "Deal Title"),
               help="A short name for the deal."),
        Column("Account", required=True, width=22,
               aliases=("Customer", "Company", "Client", "Account Name", "Company Name", "Customer Name"),
               help="The customer company."),
        Column("Owner", required=True, dropdown="Owner", width=16,
               aliases=("Sales Rep", "Rep", "Deal Owner", "Salesperson", "Sales Person", "Opportunity Owner",
                        "Account Executive", "AE"),
               help="The rep who owns the deal. Pick from the list."),
        Column("Team", dropdown="Team", width=14, aliases=("Sales Team", "Squad"),
               help="Your sales team. Pick from the list."),
        Column("Lead Source", dropdown="Lead Source", width=14,
               aliases=("Source", "Lead Origin", "Channel", "Origin"),
               help="Where the deal came from. Pick from the list."),
        Column("Stage", "stage", required=True, dropdown="Stage", width=15,
               aliases=("Status", "Deal Stage", "Sales Stage", "Pipeline Stage", "Opportunity Stage"),
               help="Where the deal is now. Pick from the list; use Closed Won / Closed Lost when it ends."),
        Column("Probability", "percent", width=12,
               aliases=("Prob", "Win Probability", "Likelihood", "Chance", "Win %", "Win Chance"),
               help="Optional: your own win chance, 0% to 100%. Blank uses the stage's default."),
        Column("Amount", "money", required=True, width=14,
               aliases=("Value", "Deal Value", "Deal Amount", "Deal Size", "Contract Value", "ACV", "Price"),
               help="Deal value in the sheet's currency, 0 or more."),
        Column("Units", "number", width=9, aliases=("Qty", "Quantity", "Seats", "Licenses", "Licences", "Volume"),
               help="Optional: units sold (seats, licences, items), 0 or more. Blank counts as 1."),
        Column("Created Date", "date", required=True, width=13,
               aliases=("Created", "Created On", "Open Date", "Opened", "Date Created", "Created At", "Start Date"),
               help="The day the deal was opened."),
        Column("Expected Close", "date", width=14,
               aliases=("Expected Close Date", "Expected Closing", "Forecast Close", "Target Close", "Est Close"),
               help="The day you expect the deal to close."),
        Column("Closed Date", "date", width=13,
               aliases=("Close Date", "Closed On", "Date Closed", "Actual Close", "Actual Close Date", "Won Lost Date"),
               help="The day the deal was won or lost. Required once the stage is closed."),
        Column("Lost Reason", width=20, aliases=("Loss Reason", "Reason Lost", "Reason"),
               help="Why the deal was lost (for Closed Lost)."),
        Column("Next Step", width=26, aliases=("Next Steps", "Next Action"), help="The next thing to do."),
        Column("Last Updated", "datetime", width=17,
               aliases=("Updated", "Modified", "Last Modified", "Updated At", "Last Update", "Updated On"),
               help="When this row was last changed."),
    ),
)

STAGES = Table(
    "Stages",
    key="Stage",
    aliases=("Pipeline Stages", "Stage List"),
    about="The pipeline stages, in order, with their default win probability.",
    columns=(
        Column("Stage", required=True, width=16, aliases=("Name", "Stage Name", "Deal Stage")),
        Column("Order", "int", required=True, width=8, aliases=("Sort", "Position", "#")),
        Column("Probability", "percent", required=True, width=12, aliases=("Prob", "Default Probability", "Win %")),
        Column("Is Closed", "bool", required=True, width=10, aliases=("Closed",)),
        Column("Is Won", "bool", required=True, width=10, aliases=("Won",)),
    ),
)

LEADS = Table(
    "Leads",
    key="Lead ID",
    aliases=("Lead List", "Prospects"),
    about="One row per lead, before it becomes a deal.",
    columns=(
        Column("Lead ID", "id", required=True, width=12, aliases=("ID", "Lead #", "Lead No", "Lead Number")),
        Column("Created Date", "date", required=True, width=13,
               aliases=("Created", "Created On", "Date Created", "Date", "Created At"),
               help="The day the lead came in."),
        Column("Source", dropdown="Lead Source", width=14, aliases=("Lead Source", "Channel", "Origin"),
               help="Where the lead came from. Pick from the list."),
        Column("Owner", dropdown="Owner", width=16, aliases=("Sales Rep", "Rep", "Lead Owner", "Assigned To"),
               help="The rep working the lead. Pick from the list."),
        Column("Team", dropdown="Team", width=14, aliases=("Sales Team",), help="Pick from the list."),
        Column("Status", "choice", required=True, choices=LEAD_STATUSES, width=13,
               aliases=("Lead Status", "Stage"), help="New, Working, Qualified, Converted or Disqualified."),
        Column("Converted Date", "date", width=14, aliases=("Converted On", "Date Converted", "Conversion Date"),
               help="The day the lead became a deal."),
        Column("Deal ID", "id", width=12, aliases=("Opportunity ID", "Converted Deal"),
               help="The deal this lead became, if any."),
    ),
)

COSTS = Table(
    "Costs",
    aliases=("Spend", "Expenses", "Cost"),
    about="Sales and marketing spend per month and team (for CAC).",
    columns=(
        Column("Month", "date", required=True, width=12, aliases=("Period", "Date", "Month Start"),
               help="Any day in the month the cost belongs to (the 1st is best)."),
        Column("Team", dropdown="Team", width=14, aliases=("Sales Team",), help="Pick from the list."),
        Column("Category", "choice", required=True, choices=COST_CATEGORIES, width=12, aliases=("Type", "Cost Type"),
               help="Sales or Marketing."),
        Column("Amount", "money", required=True, width=14, aliases=("Cost", "Spend", "Value", "Amount Spent"),
               help="What was spent, 0 or more."),
        Column("Note", width=30, aliases=("Notes", "Description", "Comment")),
    ),
)

TARGETS = Table(
    "Targets",
    aliases=("Quotas", "Quota", "Target"),
    about="Quotas per period for an owner or a team.",
    columns=(
        Column("Period Start", "date", required=True, width=13, aliases=("Start", "From", "Start Date")),
        Column("Period End", "date", required=True, width=13, aliases=("End", "To", "End Date")),
        Column("Owner", dropdown="Owner", width=16, aliases=("Sales Rep", "Rep"),
               help="Leave blank for a team quota."),
        Column("Team", dropdown="Team", width=14, aliases=("Sales Team",), help="Pick from the list."),
        Column("Quota", "money", required=True, width=14, aliases=("Target", "Goal", "Quota Amount"),
               help="Revenue target for the period, 0 or more."),
    ),
)

LISTS = Table(
    "Lists",
    aliases=("Settings", "Lookups", "Dropdowns"),
    about="The lists that feed the dropdowns. Add a team, rep or lead source here and it appears in the menus.",
    columns=(
        Column("Team", width=16, aliases=("Teams",)),
        Column("Owner", width=18, aliases=("Owners", "Reps", "Sales Reps")),
        Column("Lead Source", width=16, aliases=("Lead Sources", "Sources")),
        Column("Currency", width=10, aliases=("Currencies",)),
    ),
)

TABLES: dict[str, Table] = {t.name: t for t in (DEALS, STAGES, LEADS, COSTS, TARGETS, LISTS)}
# The order sheets appear in the template and are looked for when reading.
TABLE_ORDER = ("Deals", "Leads", "Costs", "Targets", "Stages", "Lists")


def normalize(text: object) -> str:
    """Header/label key: case, spaces, punctuation and a trailing "(...)" unit do not matter."""
    s = str(text).strip().lower()
    s = re.sub(r"\([^)]*\)\s*$", "", s)  # "Amount ($)", "Probability (%)", "Amount (USD)"
    s = s.replace("#", "no")  # "Deal #" is "Deal No", not "Deal"
    return re.sub(r"[^0-9a-z]+", "", s)


def header_map(table: Table) -> dict[str, str]:
    """normalized header -> canonical column name, for a table's names and aliases."""
    out: dict[str, str] = {}
    for c in table.columns:  # aliases first so that a real column name always wins
        for a in c.aliases:
            out.setdefault(normalize(a), c.name)
    for c in table.columns:
        out[normalize(c.name)] = c.name
    return out


HEADER_MAPS: dict[str, dict[str, str]] = {name: header_map(t) for name, t in TABLES.items()}


def table_for_sheet_name(sheet: str) -> str | None:
    """The standard table a sheet (or Excel table) name stands for, if any."""
    key = normalize(sheet)
    key = key[3:] if key.startswith("tbl") and len(key) > 3 else key
    for t in TABLES.values():
        if key in {normalize(t.name)} | {normalize(a) for a in t.aliases}:
            return t.name
    return None
