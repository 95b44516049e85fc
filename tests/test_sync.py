"""sync through the library: consolidation, drift, duplicates, conflicts, removals, formulas, bad rows,
idempotence, sources, dry runs, locks. Real xlsx/csv files in, a real master out, read back with calamine."""
from __future__ import annotations

import datetime as dt
import os
import sqlite3

import pytest

from salessheet import schema, template
from salessheet.errors import LockedError, SyncError
from salessheet.state import default_path
from salessheet.sync import sync
from sheetmaker import write_csv, write_xlsx
from test_sync_support import D, SYNC_COLUMNS, by_key, deal, digest, sheet_xml, table, team_xlsx


NORTH = dict(Leads=[{"Lead ID": "L-1", "Created Date": D(2026, 1, 2), "Status": "New", "Team": "North"}],
             Costs=[{"Month": D(2026, 1, 1), "Team": "North", "Category": "Sales", "Amount": 500.0}],
             Targets=[{"Period Start": D(2026, 1, 1), "Period End": D(2026, 3, 31), "Team": "North",
                       "Quota": 9000.0}])
SOUTH = dict(Costs=[{"Month": D(2026, 1, 15), "Team": "South", "Category": "Marketing", "Amount": 300.0}])


def north(d, deals):
    return team_xlsx(d / "north.xlsx", deals, **NORTH)


def south(d, deals, **kw):
    return team_xlsx(d / "south.xlsx", deals, **SOUTH, **kw)


@pytest.fixture
def teams(tmp_path):
    """Two team workbooks (7 rows: 3 deals, a lead, 2 costs, a target) and the master path."""
    d = tmp_path / "teams"
    d.mkdir()
    north(d, [deal("N-1"), deal("N-2", Stage="Proposal", Amount=2500.0)])
    south(d, [deal("S-1", Team="South", Owner="Ben Okafor")])
    return d, tmp_path / "master.xlsx"


def test_first_sync_consolidates_every_table(teams):
    d, master = teams
    res = sync([d], master)
    assert (res.added, res.updated, res.removed, res.sources) == (7, 0, 0, 2)  # 3 deals, a lead, 2 costs, a target
    deals = table(master)
    assert [r["Deal ID"] for r in deals] == ["N-1", "N-2", "S-1"]
    assert list(deals[0])[:len(schema.DEALS.names)] == schema.DEALS.names
    assert list(deals[0])[-4:] == SYNC_COLUMNS
    n2 = by_key(deals)["N-2"]
    assert (n2["Stage"], n2["Amount"], n2["Source File"], n2["Source Row"], n2["Sync Status"]) == (
        "Proposal", 2500.0, "north.xlsx", 3, "ok")
    assert by_key(deals)["S-1"]["Owner"] == "Ben Okafor"
    assert [r["Lead ID"] for r in table(master, "Leads")] == ["L-1"]
    costs = table(master, "Costs")
    assert sorted((r["Team"], r["Category"], r["Amount"]) for r in costs) == [
        ("North", "Sales", 500.0), ("South", "Marketing", 300.0)]
    assert [r["Quota"] for r in table(master, "Targets")] == [9000.0]
    log = table(master, "Sync Log")
    assert len(log) == 1 and log[0]["Added"] == 7


def test_schema_drift_reorder_aliases_and_extra_columns(teams, tmp_path):
    d, master = teams
    # A csv with its own column order, alias headers and two columns the standard does not have.
    write_csv(d / "west.csv", [
        ["Region", "Value", "Status", "Customer", "Opportunity ID", "Sales Rep", "Created", "Updated", "Priority"],
        ["EMEA", "4,200", "Negotiation", "Globex", "W-1", "Cara Meyer", "2026-01-10", "2026-02-03 10:00", "high"],
        ["APAC", "900", "Closed Won", "Initech", "W-2", "Cara Meyer", "2026-01-11", "2026-02-04 11:00", ""],
    ])
    sync([d], master)
    deals = by_key(table(master))
    w1 = deals["W-1"]
    assert (w1["Account"], w1["Owner"], w1["Stage"], w1["Amount"]) == ("Globex", "Cara Meyer", "Negotiation", 4200.0)
    assert w1["Created Date"] == dt.date(2026, 1, 10) or w1["Created Date"] == D(2026, 1, 10)
    assert (w1["Region"], w1["Priority"]) == ("EMEA", "high")
    assert deals["W-2"]["Region"] == "APAC" and deals["W-2"]["Priority"] == ""
    assert deals["N-1"]["Region"] == ""  # rows from sources without the column: blank, not dropped
    header = list(next(iter(deals.values())))
    assert header.index("Region") > header.index("Last Updated") and header[-4:] == SYNC_COLUMNS


def test_extra_columns_keep_their_types_when_rebuilt_from_the_state(teams, tmp_path):
    d, master = teams
    head = ["Deal ID", "Account", "Owner", "Stage", "Amount", "Created Date", "Renewal", "Seats Bought", "Region"]
    write_xlsx(d / "east.xlsx", {"Deals": [head, ["E-1", "Acme", "Ana", "Proposal", 5.0, D(2026, 1, 1),
                                                  D(2027, 1, 31), 12.0, "EMEA"],
                                           ["E-2", "Beta", "Ana", "Proposal", 6.0, D(2026, 1, 2), "next year", None,
                                            None]]})
    sync([d], master)
    south(d, [deal("S-1", Team="South", Owner="Ben Okafor", Amount=1.0)])  # east.xlsx is not read again
    res = sync([d], master)
    assert res.skipped_sources == 2 and res.updated == 1
    for rows in (table(master), table(master.with_name(master.name + ".bak"))):
        deals = by_key(rows)
        assert deals["E-1"]["Renewal"] in (dt.date(2027, 1, 31), D(2027, 1, 31))
        assert (deals["E-1"]["Seats Bought"], deals["E-1"]["Region"]) == (12.0, "EMEA")
        assert deals["E-2"]["Renewal"] == "next year" and deals["E-2"]["Region"] == ""


def test_same_id_in_two_sources_newer_last_updated_wins(teams):
    d, master = teams
    south(d, [deal("S-1"), deal("N-2", Amount=7777.0, Last_Updated=D(2026, 3, 1, 8, 0))])
    res = sync([d], master)
    n2 = by_key(table(master))["N-2"]
    assert (n2["Amount"], n2["Source File"], n2["Sync Status"]) == (7777.0, "south.xlsx", "ok")
    assert res.conflicts == []
    assert any(i.source == "north.xlsx" and "newer Last Updated" in i.message for i in res.issues)
    assert len([r for r in table(master) if r["Deal ID"] == "N-2"]) == 1


def test_same_last_updated_is_a_conflict_with_both_versions_listed(teams):
    d, master = teams
    south(d, [deal("S-1"), deal("N-2", Amount=1.0, Stage="Proposal")])  # same Last Updated
    res = sync([d], master)
    assert len(res.conflicts) == 1 and res.conflicts[0].key == "N-2"
    n2 = by_key(table(master))["N-2"]
    assert (n2["Amount"], n2["Source File"], n2["Sync Status"]) == (2500.0, "north.xlsx", "conflict")  # source order
    rows = [r for r in table(master, "Conflicts") if r["Key"] == "N-2"]
    assert sorted((r["Source File"], r["Chosen"], r["Amount"]) for r in rows) == [
        ("north.xlsx", "yes", 2500.0), ("south.xlsx", "no", 1.0)]
    assert res.to_dict()["conflicts"] == 1


def test_duplicate_within_one_source_missing_timestamp_is_a_conflict(tmp_path):
    src = team_xlsx(tmp_path / "a.xlsx", [deal("D-1", Amount=10.0, Last_Updated=None), deal("D-2"),
                                          deal("D-1", Amount=20.0, Last_Updated=None)])
    res = sync([src], tmp_path / "m.xlsx")
    assert [(c.key, [v["row"] for v in c.versions]) for c in res.conflicts] == [("D-1", [2, 4])]
    deals = table(tmp_path / "m.xlsx")
    assert [r["Deal ID"] for r in deals].count("D-1") == 1
    assert by_key(deals)["D-1"]["Amount"] == 10.0  # first row wins, deterministically


def test_exact_duplicate_row_is_counted_once_with_a_warning(tmp_path):
    src = team_xlsx(tmp_path / "a.xlsx", [deal("D-1"), deal("D-1")])
    res = sync([src], tmp_path / "m.xlsx")
    assert res.conflicts == [] and res.added == 1
    assert any(i.row == 3 and "same values" in i.message for i in res.issues)


def test_removed_rows_stay_marked_and_prune_deletes_them(teams):
    d, master = teams
    sync([d], master)
    north(d, [deal("N-1")])  # N-2 deleted by the rep
    res = sync([d], master)
    assert (res.added, res.updated, res.removed) == (0, 0, 1)
    n2 = by_key(table(master))["N-2"]
    assert (n2["Sync Status"], n2["Amount"]) == ("removed from source", 2500.0)
    again = sync([d], master)
    assert (again.removed, again.wrote_master) == (0, False)
    pruned = sync([d], master, prune=True)
    assert pruned.removed == 1
    assert "N-2" not in by_key(table(master))
    assert set(by_key(table(master))) == {"N-1", "S-1"}


def test_changed_row_updates_only_that_row(teams):
    d, master = teams
    sync([d], master)
    before = by_key(table(master))
    north(d, [deal("N-1"), deal("N-2", Stage="Negotiation", Amount=2500.0)])
    res = sync([d], master)
    assert (res.added, res.updated, res.unchanged, res.removed) == (0, 1, 6, 0)
    after = by_key(table(master))
    assert after["N-2"]["Stage"] == "Negotiation"
    assert after["N-1"]["Synced At"] == before["N-1"]["Synced At"]
    assert len(table(master, "Sync Log")) == 2


def test_formula_like_text_is_written_as_text(tmp_path):
    evil = {"Deal Name": "=1+1", "Account": "@SUM(1,2)", "Next Step": "+cmd|' /C calc'!A0", "Lost Reason": "-2+3"}
    src = tmp_path / "a.csv"
    write_csv(src, [list(schema.DEALS.names), ["D-1", *[evil.get(c, "") for c in schema.DEALS.names[1:]]]])
    # fill the required cells the csv row above left blank
    rows = [list(schema.DEALS.names), [{"Deal ID": "D-1", "Owner": "Ana", "Stage": "Prospecting", "Amount": "5",
                                        "Created Date": "2026-01-01", **evil}.get(c, "") for c in schema.DEALS.names]]
    write_csv(src, rows)
    master = tmp_path / "m.xlsx"
    sync([src], master)
    d1 = by_key(table(master))["D-1"]
    for col, text in evil.items():
        assert d1[col] == text
    xml = sheet_xml(master, "Deals")
    assert "<f>" not in xml and "<f " not in xml


def test_bad_rows_are_kept_flagged_and_listed_as_issues(tmp_path):
    src = tmp_path / "a.csv"
    cols = ["Deal ID", "Account", "Owner", "Stage", "Amount", "Created Date"]
    write_csv(src, [cols, ["D-1", "Acme", "Ana", "Proposal", "lots", "2026-01-01"],
                    ["D-2", "Beta", "Ana", "Proposal", "100", "not a date"],
                    ["D-3", "Gamma", "Ana", "Proposal", "200", "2026-01-03"]])
    master = tmp_path / "m.xlsx"
    res = sync([src], master)
    deals = by_key(table(master))
    assert set(deals) == {"D-1", "D-2", "D-3"}
    assert (deals["D-1"]["Amount"], deals["D-1"]["Sync Status"]) == ("lots", "has errors")
    assert (deals["D-2"]["Created Date"], deals["D-2"]["Sync Status"]) == ("not a date", "has errors")
    assert deals["D-3"]["Sync Status"] == "ok"
    issues = table(master, "Issues")
    hit = [i for i in issues if i["Row"] == 2 and i["Column"] == "Amount"]
    assert hit and hit[0]["Source"] == "a.csv" and hit[0]["Value"] == "lots" and hit[0]["Severity"] == "error"
    assert any(i["Row"] == 3 and i["Column"] == "Created Date" for i in issues)
    assert len(issues) == len(res.issues)


def test_second_sync_without_changes_rewrites_nothing(teams):
    d, master = teams
    sync([d], master)
    state = default_path(master)
    mtime, before = master.stat().st_mtime_ns, digest(master)
    res = sync([d], master)
    assert (res.added, res.updated, res.removed, res.wrote_master) == (0, 0, 0, False)
    assert res.unchanged == 7 and res.rows_read == 0
    assert master.stat().st_mtime_ns == mtime and digest(master) == before
    with sqlite3.connect(state) as con:
        assert [r[0] for r in con.execute("SELECT status FROM runs ORDER BY id")] == ["done", "no-change"]


def test_touched_but_unchanged_source_is_reread_and_changes_nothing(teams):
    d, master = teams
    sync([d], master)
    mtime = master.stat().st_mtime_ns
    # Same rows, another file: its team title and Lists differ, the synced tables do not.
    template.write_workbook(d / "south.xlsx", tables={"Deals": [deal("S-1", Team="South", Owner="Ben Okafor")],
                                                      **SOUTH}, team="South")
    res = sync([d], master)
    assert res.rows_read > 0 and (res.added, res.updated, res.removed) == (0, 0, 0)
    assert master.stat().st_mtime_ns == mtime


def test_a_deleted_master_is_written_again_from_the_state(teams):
    d, master = teams
    sync([d], master)
    before = table(master)
    master.unlink()
    res = sync([d], master)
    assert res.wrote_master and (res.added, res.updated, res.removed, res.unchanged) == (0, 0, 0, 7)
    assert table(master) == before


def test_folder_and_glob_skip_lock_and_hidden_files(tmp_path):
    d = tmp_path / "in"
    (d / "sub").mkdir(parents=True)
    team_xlsx(d / "a.xlsx", [deal("A-1")])
    write_csv(d / "sub" / "b.csv", [["Deal ID", "Account", "Owner", "Stage", "Amount", "Created Date"],
                                    ["B-1", "Acme", "Ana", "Proposal", "5", "2026-01-01"]])
    (d / "~$a.xlsx").write_bytes(b"\x00lock")
    team_xlsx(d / ".hidden.xlsx", [deal("H-1")])
    (d / "notes.txt").write_text("not a source")
    master = tmp_path / "m.xlsx"
    res = sync([d], master)
    assert res.sources == 2 and set(by_key(table(master))) == {"A-1", "B-1"}
    res = sync([str(d / "**" / "*.csv")], tmp_path / "m2.xlsx")
    assert res.sources == 1 and set(by_key(table(tmp_path / "m2.xlsx"))) == {"B-1"}


def test_master_in_the_source_folder_is_not_a_source(tmp_path):
    team_xlsx(tmp_path / "a.xlsx", [deal("A-1")])
    master = tmp_path / "master.xlsx"
    sync([tmp_path], master)
    res = sync([tmp_path], master)
    assert res.sources == 1 and res.added == 0


def test_dry_run_writes_nothing(teams):
    d, master = teams
    res = sync([d], master, dry_run=True)
    assert res.added == 7 and not master.exists() and not default_path(master).exists()
    sync([d], master)
    north(d, [deal("N-1", Amount=5.0)])
    files = {p: digest(p) for p in master.parent.iterdir() if p.is_file()}
    res = sync([d], master, dry_run=True)
    assert (res.updated, res.removed, res.wrote_master) == (1, 1, False)
    assert {p: digest(p) for p in master.parent.iterdir() if p.is_file()} == files


def test_locked_master_changes_nothing(teams):
    d, master = teams
    sync([d], master)
    north(d, [deal("N-1", Amount=5.0)])
    lock = master.with_name("~$" + master.name)
    lock.write_bytes(b"someone")
    before = digest(master), digest(default_path(master))
    with pytest.raises(LockedError, match="open in another program"):
        sync([d], master)
    assert (digest(master), digest(default_path(master))) == before
    lock.unlink()
    assert sync([d], master).updated == 1


def test_unreadable_source_keeps_its_rows(teams):
    d, master = teams
    sync([d], master)
    (d / "south.xlsx").write_bytes(b"PK\x03\x04 truncated")
    res = sync([d], master)
    assert res.removed == 0
    s1 = by_key(table(master))["S-1"]
    assert s1["Sync Status"] == "ok"
    assert any(i.source == "south.xlsx" and i.severity == "error" and "kept" in i.message for i in res.issues)
    assert any(i["Source"] == "south.xlsx" for i in table(master, "Issues"))
    team_xlsx(d / "south.xlsx", [])  # readable again, now empty: its rows are removed from source
    res = sync([d], master)
    assert res.removed == 2  # S-1 and the South cost


def test_rows_without_id_get_a_stable_identity(tmp_path):
    src = team_xlsx(tmp_path / "a.xlsx", [deal(None, Account="Acme"), deal(None, Account="Beta"), deal("D-9")])
    master = tmp_path / "m.xlsx"
    res = sync([src], master)
    ids = [r["Deal ID"] for r in table(master)]
    assert ids[2] == "D-9" and all(i.startswith("AUTO-") for i in ids[:2]) and ids[0] != ids[1]
    assert sum("no Deal ID" in i.message for i in res.issues) == 2
    team_xlsx(src, [deal(None, Account="Acme", Stage="Proposal"), deal(None, Account="Beta"), deal("D-9")])
    res = sync([src], master)
    assert (res.added, res.updated) == (0, 1)  # same identity: an update, not a new deal
    assert [r["Deal ID"] for r in table(master)] == ids


@pytest.mark.parametrize("kind", ["xlsx", "csv"])
def test_assign_ids_writes_generated_ids_into_the_source(tmp_path, kind):
    from salessheet import read_workbook

    master = tmp_path / "m.xlsx"
    if kind == "xlsx":
        src = team_xlsx(tmp_path / "a.xlsx", [deal("D-1"), deal(None, Account="Beta"), deal(None, Account="Cat")])
    else:
        src = write_csv(tmp_path / "a.csv", [["Account", "Owner", "Stage", "Amount", "Created Date"],
                                             ["Beta", "Ana", "Proposal", "5", "2026-01-01"],
                                             ["Cat", "Ana", "Proposal", "6", "2026-01-02"]])
    plain = sync([src], tmp_path / "plain.xlsx", dry_run=True)
    res = sync([src], master, assign_ids=True)
    assert not any("no Deal ID" in i.message for i in res.issues)
    book = read_workbook(src)
    written = [x for x in book.deals["Deal ID"] if x and x.startswith("AUTO-")]
    assert len(written) == 2
    assert sorted(written) == sorted(r["Deal ID"] for r in table(master) if r["Deal ID"].startswith("AUTO-"))
    assert sorted(written) == sorted(c for c in {i.message.split()[5] for i in plain.issues
                                                 if "no Deal ID" in i.message})
    again = sync([src], master)
    assert (again.added, again.updated, again.removed, again.wrote_master) == (0, 0, 0, False)
    if kind == "xlsx":  # the file still opens as a workbook with its tables
        import openpyxl

        wb = openpyxl.load_workbook(src)
        assert "Deals" in wb["Deals"].tables


def test_assign_ids_later_writes_the_ids_sync_has_been_using(tmp_path):
    from salessheet import read_workbook

    src = team_xlsx(tmp_path / "a.xlsx", [deal(None, Account="Beta"), deal("D-2")])
    master = tmp_path / "m.xlsx"
    sync([src], master)
    used = [r["Deal ID"] for r in table(master)]
    res = sync([src], master, assign_ids=True)  # the file has not changed since: read again all the same
    assert (res.added, res.updated, res.removed) == (0, 0, 0)
    assert list(read_workbook(src).deals["Deal ID"]) == used
    assert sync([src], master, assign_ids=True).rows_read == 0  # nothing left to assign: not read again


def test_assign_ids_never_writes_a_locked_source(tmp_path):
    src = team_xlsx(tmp_path / "a.xlsx", [deal(None)])
    (tmp_path / "~$a.xlsx").write_bytes(b"x")
    before = digest(src)
    res = sync([src], tmp_path / "m.xlsx", assign_ids=True)
    assert digest(src) == before
    assert any("not written" in i.message for i in res.issues)


def test_edits_in_the_master_survive_until_the_source_changes(teams):
    import openpyxl

    d, master = teams
    sync([d], master)
    wb = openpyxl.load_workbook(master)
    ws = wb["Deals"]
    head = [c.value for c in ws[1]]
    for row in ws.iter_rows(min_row=2):
        if row[0].value == "N-1":
            row[head.index("Next Step")].value = "Call the CFO"
    wb.save(master)
    res = sync([d], master)
    assert (res.added, res.updated, res.removed) == (0, 0, 0)
    assert by_key(table(master))["N-1"]["Next Step"] == "Call the CFO"
    south(d, [deal("S-1", Team="South", Owner="Ben Okafor", Amount=1.0)])
    sync([d], master)  # another source changes: the master is rewritten, the edit stays
    assert by_key(table(master))["N-1"]["Next Step"] == "Call the CFO"
    north(d, [deal("N-1", Next_Step="Send contract"), deal("N-2", Stage="Proposal", Amount=2500.0)])
    res = sync([d], master)
    assert by_key(table(master))["N-1"]["Next Step"] == "Send contract"
    assert any("edited in the master" in i.message for i in res.issues)


def test_stages_come_from_the_first_source_and_differences_are_issues(tmp_path):
    stages = [{"Stage": s.name, "Order": s.order, "Probability": s.probability, "Is Closed": s.is_closed,
               "Is Won": s.is_won} for s in schema.DEFAULT_STAGES]
    custom = [dict(s) for s in stages]
    custom.insert(3, {"Stage": "Verbal", "Order": 4, "Probability": 0.9, "Is Closed": False, "Is Won": False})
    a = team_xlsx(tmp_path / "a.xlsx", [deal("A-1")], Stages=custom)
    b = team_xlsx(tmp_path / "b.xlsx", [deal("B-1")], Stages=stages)
    res = sync([a, b], tmp_path / "m.xlsx")
    assert "Verbal" in [r["Stage"] for r in table(tmp_path / "m.xlsx", "Stages")]
    assert [i.source for i in res.issues if "Stages differ" in i.message] == ["b.xlsx"]


def test_no_sources_is_an_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SyncError, match="no spreadsheets"):
        sync([tmp_path / "empty"], tmp_path / "m.xlsx")


def test_parallel_reading_gives_the_same_master(tmp_path):
    d = tmp_path / "t"
    d.mkdir()
    for i in range(6):
        team_xlsx(d / f"t{i}.xlsx", [deal(f"T{i}-{k}", Amount=float(k)) for k in range(20)] + [deal("SHARED")])
    one = sync([d], tmp_path / "one.xlsx", workers=1)
    two = sync([d], tmp_path / "two.xlsx", workers=2)
    assert one.to_dict() | {"master": "", "duration_s": 0} == two.to_dict() | {"master": "", "duration_s": 0}
    strip = lambda rows: [{k: v for k, v in r.items() if k != "Synced At"} for r in rows]  # noqa: E731
    assert strip(table(tmp_path / "one.xlsx")) == strip(table(tmp_path / "two.xlsx"))
    assert os.getpid()  # the test process is still here: no worker took it down


def test_any_object_with_the_source_members_is_a_source(tmp_path):
    """The abstraction the Google Sheets sources will use: id, name, kind, content_hash(), read()."""
    from salessheet.book import Book

    class Memory:
        kind, parallel_safe = "memory", False

        def __init__(self, name, rows):
            self.id, self.name, self.rows = f"memory:{name}", name, rows

        def content_hash(self):
            return str(hash(repr(self.rows)))

        def read(self):
            return Book.from_rows({"Deals": self.rows}, source=self.name)

    head = ["Deal ID", "Account", "Owner", "Stage", "Amount", "Created Date"]
    a = Memory("crm", [head, ["C-1", "Acme", "Ana", "Proposal", 10, "2026-01-01"]])
    b = Memory("web", [head, ["W-1", "Beta", "Ben", "Closed Won", 20, "2026-01-02"]])
    master = tmp_path / "m.xlsx"
    res = sync([a, b, tmp_path / "none.xlsx"], master)
    deals = by_key(table(master))
    assert (deals["C-1"]["Source File"], deals["W-1"]["Amount"]) == ("crm", 20.0)
    assert any(i.source == "none.xlsx" and "no such file" in i.message for i in res.issues)
    assert sync([a, b, tmp_path / "none.xlsx"], master).wrote_master is False


def test_costs_are_keyed_by_month_team_and_category(tmp_path):
    cost = {"Team": "North", "Category": "Sales", "Amount": 100.0}
    a = team_xlsx(tmp_path / "a.xlsx", [], Costs=[{"Month": D(2026, 1, 1), **cost},
                                                  {"Month": D(2026, 2, 1), **cost}])
    b = team_xlsx(tmp_path / "b.xlsx", [], Costs=[{"Month": D(2026, 1, 15), **cost, "Amount": 250.0}])
    res = sync([a, b], tmp_path / "m.xlsx")
    assert [(c.table, c.key) for c in res.conflicts] == [("Costs", "2026-01 | North | Sales")]
    costs = table(tmp_path / "m.xlsx", "Costs")
    assert sorted((r["Month"].month, r["Amount"], r["Sync Status"]) for r in costs) == [
        (1, 100.0, "conflict"), (2, 100.0, "ok")]


def test_leads_without_an_id_get_one(tmp_path):
    lead = {"Created Date": D(2026, 1, 2), "Status": "New", "Owner": "Ana"}
    src = team_xlsx(tmp_path / "a.xlsx", [], Leads=[lead, {**lead, "Owner": "Ben"}])
    res = sync([src], tmp_path / "m.xlsx")
    ids = [r["Lead ID"] for r in table(tmp_path / "m.xlsx", "Leads")]
    assert len(set(ids)) == 2 and all(i.startswith("AUTO-") for i in ids)
    assert sum("no Lead ID" in i.message for i in res.issues) == 2


def test_prune_never_deletes_the_rows_of_an_unreadable_source(teams):
    d, master = teams
    sync([d], master)
    (d / "south.xlsx").write_bytes(b"not a workbook at all")
    north(d, [deal("N-1")])
    res = sync([d], master, prune=True)
    assert res.removed == 1  # N-2, gone from north.xlsx
    assert set(by_key(table(master))) == {"N-1", "S-1"}


def test_a_row_typed_into_the_master_is_kept(teams):
    import openpyxl

    d, master = teams
    sync([d], master)
    wb = openpyxl.load_workbook(master)
    ws = wb["Deals"]
    head = [c.value for c in ws[1]]
    row = [None] * len(head)
    for k, v in {"Deal ID": "M-9", "Account": "Walk-in", "Owner": "Boss", "Stage": "Proposal", "Amount": 77}.items():
        row[head.index(k)] = v
    ws.append(row)
    t = ws.tables["Deals"]  # as Excel does when a row is typed under a table: the table grows
    t.ref = f"{t.ref.split(':')[0]}:{t.ref.split(':')[1].rstrip('0123456789')}{ws.max_row}"
    wb.save(master)
    north(d, [deal("N-1", Amount=3.0), deal("N-2", Stage="Proposal", Amount=2500.0)])
    res = sync([d], master)
    assert (res.added, res.updated) == (0, 1)
    m9 = by_key(table(master))["M-9"]
    assert (m9["Amount"], m9["Sync Status"], m9["Source File"]) == (77.0, "master only", "")
    north(d, [deal("N-1", Amount=4.0), deal("N-2", Stage="Proposal", Amount=2500.0)])
    sync([d], master)  # kept through later syncs too (now from the state, the master being as written)
    assert by_key(table(master))["M-9"]["Sync Status"] == "master only"


@pytest.mark.parametrize("cache", ["kept", "deleted", "damaged"])
def test_unchanged_rows_are_the_same_with_or_without_the_frames_cache(tmp_path, cache, monkeypatch):
    from salessheet.sync_cache import FrameCache

    filled = []
    fill = FrameCache.fill
    monkeypatch.setattr(FrameCache, "fill", lambda self, keys, want, *a: filled.append(len(want)) or fill(
        self, keys, want, *a))
    d = tmp_path / "t"
    d.mkdir()
    head = ["Deal ID", "Account", "Owner", "Stage", "Amount", "Created Date", "Last Updated", "Region", "Renewal"]
    write_xlsx(d / "a.xlsx", {"Deals": [head] + [[f"A-{i}", f"Acc {i % 3}", "Ana", "Proposal", float(i),
                                                  D(2026, 1, 1 + i), D(2026, 2, 1, 9, i), "EMEA" if i % 2 else None,
                                                  D(2027, 1, 1 + i)] for i in range(10)]})
    team_xlsx(d / "b.xlsx", [deal("B-1")])
    master = tmp_path / "m.xlsx"
    sync([d], master)
    before = table(master)
    cache_file = default_path(master).with_name(default_path(master).name + ".frames.npz")
    assert cache_file.exists()
    if cache == "deleted":
        cache_file.unlink()
    elif cache == "damaged":
        cache_file.write_bytes(b"PK\x03\x04 nonsense")
    team_xlsx(d / "b.xlsx", [deal("B-1", Amount=2.0)])
    res = sync([d], master)
    assert res.skipped_sources == 1 and res.updated == 1
    after = table(master)
    strip = lambda rows: [{k: v for k, v in r.items() if k not in ("Synced At", "Amount")} for r in rows]  # noqa: E731
    assert strip(after) == strip(before)
    assert [r["Amount"] for r in after] == [float(i) for i in range(10)] + [2.0]
    assert filled == ([10] if cache == "kept" else [])  # a.xlsx's rows came from the cache, or from the state
