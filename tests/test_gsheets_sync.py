"""Sync with Google Sheets sources and masters, end to end through the CLI against the local Sheets API
emulator: template, team sheets, a mix of Google and file sources, Google and xlsx masters, re-syncs, faults
and the per-user quota."""
from __future__ import annotations

import datetime as dt
import json

import pandas as pd
import pytest
from click.testing import CliRunner

from gsheets_emulator import Emulator
from salessheet import gsheets, gsheets_master, gsheets_read, schema
from salessheet.cli import cli
from salessheet.errors import SyncError
from salessheet.gsheets import Backoff, GoogleRetryError, Pacer
from salessheet.reader import column_letter, read_workbook
from salessheet.sync import sync
from salessheet.sync_sheets import SOURCE_FILE
from sheetmaker import deal, deals_rows, write_xlsx
from test_gsheets import FakeClock, secret_lines, service_account_file


@pytest.fixture
def emu():
    e = Emulator().start()
    yield e
    e.stop()


@pytest.fixture(autouse=True)
def _fresh_google_defaults():
    gsheets.use()
    yield
    gsheets.use()


@pytest.fixture
def env(emu, tmp_path):
    return {gsheets.ENDPOINT_ENV: emu.url, "XDG_DATA_HOME": str(tmp_path / "data")}


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def client(emu, clock):
    """In-process client: pacing and backoff on a fake clock (retries cost no time)."""
    c = gsheets.connect(session=emu.session(), pacer=Pacer(clock=clock, sleep=clock.sleep),
                        backoff=Backoff(rand=lambda: 0.5), fresh=True)
    gsheets.use(client=c)
    return c


def run(*args, env=None):
    return CliRunner().invoke(cli, [str(a) for a in args], env=env, catch_exceptions=False)


def key_in(output: str) -> str:
    return gsheets.google_key(output.split("docs.google.com", 1)[1].split()[0].join(["docs.google.com", ""]))


def visible(emu, key) -> dict:
    """title -> (sheetId, values) of every tab that is not a sync temp tab."""
    out = {}
    for s in emu.metadata(key)["sheets"]:
        p = s["properties"]
        if not p["title"].startswith(gsheets_master.TEMP_PREFIX):
            out[p["title"]] = (p["sheetId"], emu.values(key, p["title"]))
    return out


def temp_tabs(emu, key) -> list[str]:
    return [s["properties"]["title"] for s in emu.metadata(key)["sheets"]
            if s["properties"]["title"].startswith(gsheets_master.TEMP_PREFIX)]


def typed_rows(*deals) -> list[list]:
    """Deals as a rep types them into Google Sheets (USER_ENTERED text: dates and numbers get parsed)."""
    out = []
    for d in deals:
        row = []
        for c in schema.DEALS.names:
            v = d.get(c)
            row.append("" if v is None else v.isoformat() if isinstance(v, dt.date) else str(v))
        out.append(row)
    return out


def fill(client, key, deals, formula_text=None):
    client.write_values(key, [{"range": "'Deals'!A2", "values": typed_rows(*deals)}], "USER_ENTERED")
    if formula_text:  # typed as text (a leading apostrophe in the UI): RAW keeps it text
        col = column_letter(schema.DEALS.names.index("Next Step"))
        client.write_values(key, [{"range": f"'Deals'!{col}2", "values": [[formula_text]]}], "RAW")


def deals_of(emu, key) -> pd.DataFrame:
    rows = emu.values(key, "Deals")
    return pd.DataFrame([r + [""] * (len(rows[0]) - len(r)) for r in rows[1:]], columns=rows[0])


# --- end to end through the CLI -----------------------------------------------------------------

def test_template_team_sheets_and_a_mixed_sync_into_google_and_xlsx_masters(emu, env, tmp_path):
    keys = {}
    for team in ("North", "South"):
        res = run("new", "--google", "--title", f"{team} deals", "--team", team, env=env)
        assert res.exit_code == 0, res.output
        keys[team] = key_in(res.output)
    rep = gsheets.connect(session=emu.session(), fresh=True)
    fill(rep, keys["North"], [deal(Deal_ID="N-1", Team="North", Amount=1200.5, Stage="Closed Won",
                                   Closed_Date=dt.date(2026, 2, 1)),
                              deal(Deal_ID="N-2", Team="North", Amount=800, Account="Beta")],
         formula_text='=HYPERLINK("http://evil.example","click")')
    fill(rep, keys["South"], [deal(Deal_ID="S-1", Team="South", Amount=3000, Account="Gamma")])
    west = write_xlsx(tmp_path / "west.xlsx", {"Deals": deals_rows(deal(Deal_ID="W-1", Team="West", Amount=50.0))})
    master = emu.create_spreadsheet("Master", sheets={"Manager notes": [["Q3 plan", 42]]})
    notes_before = visible(emu, master)["Manager notes"]
    state = tmp_path / "g.db"
    srcs = [f"https://docs.google.com/spreadsheets/d/{keys['North']}/edit#gid=0", f"gsheet:{keys['South']}", west]

    res = run("sync", *srcs, "--into", f"gsheet:{master}", "--state", state, "--format", "json", env=env)
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert (out["added"], out["updated"], out["removed"], out["sources"]) == (4, 0, 0, 3)
    assert out["master"] == gsheets.spreadsheet_url(master)
    tabs = visible(emu, master)
    assert {"Deals", "Leads", "Costs", "Targets", "Stages", "Issues", "Conflicts", "Sync Log", "Dashboard"} <= set(tabs)
    assert tabs["Manager notes"] == notes_before  # same sheet id, same values
    assert temp_tabs(emu, master) == []
    g = deals_of(emu, master)
    assert sorted(g["Deal ID"]) == ["N-1", "N-2", "S-1", "W-1"]
    assert dict(zip(g["Deal ID"], g[SOURCE_FILE])) == {"N-1": "North deals", "N-2": "North deals",
                                                       "S-1": "South deals", "W-1": "west.xlsx"}
    assert dict(zip(g["Deal ID"], g["Amount"])) == {"N-1": 1200.5, "N-2": 800, "S-1": 3000, "W-1": 50}
    created = column_letter(schema.DEALS.names.index("Created Date"))
    assert emu.cell(master, "Deals", f"{created}2")["format"]["type"] == "DATE"
    assert emu.cell(master, "Deals", f"{created}2")["value"] == (dt.date(2026, 1, 5) - dt.date(1899, 12, 30)).days
    nxt = column_letter(schema.DEALS.names.index("Next Step"))
    planted = emu.cell(master, "Deals", f"{nxt}2")
    assert planted["value"] == '=HYPERLINK("http://evil.example","click")' and planted["formula"] is None
    assert emu.cell(master, "Dashboard", "B4")["formula"].startswith("=SUMPRODUCT(")
    ids = {t: sid for t, (sid, _) in tabs.items()}

    # The same sources into an xlsx master: the same consolidated rows.
    xlsx = tmp_path / "master.xlsx"
    res = run("sync", *srcs, "--into", xlsx, "--format", "json", env=env)
    assert res.exit_code == 0, res.output
    x = read_workbook(xlsx).tables["Deals"]
    gbook = gsheets_read.read_spreadsheet(master, client=rep).tables["Deals"]
    cols = schema.DEALS.names + [SOURCE_FILE, "Source Row", "Sync Status"]
    pd.testing.assert_frame_equal(x[cols].reset_index(drop=True), gbook[cols].reset_index(drop=True))

    # Nothing changed: nothing written, and only the master is read (the sources' Drive versions match).
    emu.reset_requests()
    res = run("sync", *srcs, "--into", f"gsheet:{master}", "--state", state, "--format", "json", env=env)
    out = json.loads(res.output)
    assert (out["added"], out["updated"], out["removed"], out["unchanged"]) == (0, 0, 0, 4)
    v4 = [r for r in emu.requests if r.path.startswith("/v4/")]
    assert [r.method for r in v4] == ["GET", "GET"] and all(master in r.path for r in v4)
    assert visible(emu, master) == tabs

    # A rep changes a deal: one update, swapped in with every owned tab keeping its sheet id.
    amount = column_letter(schema.DEALS.names.index("Amount"))
    rep.write_values(keys["South"], [{"range": f"'Deals'!{amount}2", "values": [[3500]]}])
    res = run("sync", *srcs, "--into", f"gsheet:{master}", "--state", state, "--format", "json", env=env)
    out = json.loads(res.output)
    assert (out["added"], out["updated"], out["unchanged"]) == (0, 1, 3)
    assert dict(zip(deals_of(emu, master)["Deal ID"], deals_of(emu, master)["Amount"]))["S-1"] == 3500
    after = visible(emu, master)
    assert {t: sid for t, (sid, _) in after.items()} == ids and after["Manager notes"] == notes_before
    assert temp_tabs(emu, master) == []
    # history works for a Google master, from the default state folder when --state is not given
    res = run("history", "S-1", "--state", state, "--format", "json", env=env)
    assert [v["values"]["Amount"] for v in json.loads(res.output)["versions"]] == [3000.0, 3500.0]


def test_default_state_lives_in_the_data_folder(emu, env, tmp_path):
    src = emu.create_spreadsheet("A", sheets={"Deals": deals_rows(deal())})
    master = emu.create_spreadsheet("M")
    res = run("sync", f"gsheet:{src}", "--into", f"gsheet:{master}", env=env)
    assert res.exit_code == 0, res.output
    assert "Synced 1 source(s) into M" in res.output
    db = tmp_path / "data" / "salessheet" / f"gsheet-{master}.salessheet.db"
    assert db.exists()
    res = run("history", "D-1", "--master", f"gsheet:{master}", "--format", "json", env=env)
    assert res.exit_code == 0 and json.loads(res.output)["versions"]


def test_a_dry_run_writes_nothing(emu, env, tmp_path):
    src = emu.create_spreadsheet("A", sheets={"Deals": deals_rows(deal())})
    master = emu.create_spreadsheet("M")
    before = visible(emu, master)
    emu.reset_requests()
    res = run("sync", f"gsheet:{src}", "--into", f"gsheet:{master}", "--state", tmp_path / "s.db", "--dry-run",
              "--format", "json", env=env)
    assert res.exit_code == 0, res.output and json.loads(res.output)["added"] == 1
    assert not [r for r in emu.requests if r.method != "GET"]
    assert visible(emu, master) == before


def test_an_edit_made_in_the_google_master_is_kept(emu, client, tmp_path):
    src = emu.create_spreadsheet("A", sheets={"Deals": deals_rows(deal(Deal_ID="D-1"), deal(Deal_ID="D-2"))})
    master = emu.create_spreadsheet("M")
    state = tmp_path / "s.db"
    sync([f"gsheet:{src}"], f"gsheet:{master}", state=state)
    nxt = column_letter(schema.DEALS.names.index("Next Step"))
    client.write_values(master, [{"range": f"'Deals'!{nxt}3", "values": [["manager's note"]]}])
    r = sync([f"gsheet:{src}"], f"gsheet:{master}", state=state)
    assert any("edited since the last sync" in n for n in r.notes)
    g = deals_of(emu, master)
    assert dict(zip(g["Deal ID"], g["Next Step"]))["D-2"] == "manager's note"


def test_an_unshared_source_is_an_issue_naming_the_sheet_and_account_never_the_key(emu, env, tmp_path):
    ok = emu.create_spreadsheet("A", sheets={"Deals": deals_rows(deal())})
    hidden = emu.create_spreadsheet("B", sheets={"Deals": deals_rows(deal(Deal_ID="D-9"))})
    emu.deny(hidden, 403)
    master = emu.create_spreadsheet("M")
    sa = service_account_file(tmp_path)
    res = run("sync", f"gsheet:{ok}", f"gsheet:{hidden}", "--into", f"gsheet:{master}", "--state",
              tmp_path / "s.db", "--credentials", sa, env=env)
    assert res.exit_code == 0, res.output
    flat = "".join(res.output.split())  # the terminal wraps long lines
    assert gsheets.spreadsheet_url(hidden) in flat and "robot@proj.iam.gserviceaccount.com" in flat
    issues = emu.values(master, "Issues")
    assert any(gsheets.spreadsheet_url(hidden) in " ".join(map(str, r)) for r in issues)
    assert not any(s in res.output for s in secret_lines(sa))


def test_a_missing_master_is_a_clear_error(emu, env, tmp_path):
    src = emu.create_spreadsheet("A", sheets={"Deals": deals_rows(deal())})
    res = run("sync", f"gsheet:{src}", "--into", "gsheet:1NoSuchMasterKey0000000", "--state", tmp_path / "s.db",
              env=env)
    assert res.exit_code == 2
    flat = " ".join(res.output.split())
    assert "error:" in flat and "1NoSuchMasterKey0000000" in flat and "was not found" in flat and "as Editor" in flat


# --- faults -------------------------------------------------------------------------------------

def test_a_burst_of_429s_during_a_sync_is_absorbed(emu, client, clock, tmp_path):
    srcs = [emu.create_spreadsheet(f"T{i}", sheets={"Deals": deals_rows(deal(Deal_ID=f"D-{i}"))}) for i in range(3)]
    master = emu.create_spreadsheet("M")
    emu.fail(429, times=3, match="values:batchGet")
    emu.fail(429, times=2, match="values:batchUpdate")
    emu.fail(503, times=1, match=":batchUpdate")
    r = sync([f"gsheet:{k}" for k in srcs], f"gsheet:{master}", state=tmp_path / "s.db")
    assert r.added == 3 and sorted(deals_of(emu, master)["Deal ID"]) == ["D-0", "D-1", "D-2"]
    assert client.stats.retries == 6 and client.stats.errors == {429: 5, 503: 1}
    assert temp_tabs(emu, master) == []


def synced_then_source_changed(emu, client, tmp_path):
    """A master synced once from one source, then a new deal added in that source: the next sync must write."""
    src = emu.create_spreadsheet("A", sheets={"Deals": deals_rows(deal(Deal_ID="D-1"))})
    master = emu.create_spreadsheet("M", sheets={"Mine": [["keep", 1]]})
    state = tmp_path / "s.db"
    sync([f"gsheet:{src}"], f"gsheet:{master}", state=state)
    before = visible(emu, master)
    client.write_values(src, [{"range": "'Deals'!A3", "values": typed_rows(deal(Deal_ID="D-2"))}], "USER_ENTERED")
    return src, master, state, before


def test_a_permanent_failure_stops_clearly_and_leaves_the_master_as_it_was(emu, client, tmp_path):
    src, master, state, before = synced_then_source_changed(emu, client, tmp_path)
    emu.fail(500, times=None, match="values:batchUpdate")  # staging cannot be written
    with pytest.raises(GoogleRetryError, match="HTTP 500"):
        sync([f"gsheet:{src}"], f"gsheet:{master}", state=state)
    assert visible(emu, master) == before and temp_tabs(emu, master) == []
    emu.clear_faults()
    r = sync([f"gsheet:{src}"], f"gsheet:{master}", state=state)
    assert r.added == 1 and sorted(deals_of(emu, master)["Deal ID"]) == ["D-1", "D-2"]


def test_a_failed_swap_leaves_the_master_whole_and_the_next_sync_finishes_it(emu, client, tmp_path):
    src, master, state, before = synced_then_source_changed(emu, client, tmp_path)
    swap = lambda method, path, query, body: bool(body) and any("copyPaste" in r for r in body.get("requests", []))  # noqa: E731
    emu.fail(500, times=None, match=swap)
    emu.fail(500, times=None, match=lambda m, p, q, body: bool(body) and any(
        "deleteSheet" in r for r in body.get("requests", [])) and not any("addSheet" in r for r in body["requests"]))
    with pytest.raises(SyncError, match="could not be swapped in"):
        sync([f"gsheet:{src}"], f"gsheet:{master}", state=state)
    assert visible(emu, master) == before  # hidden temp tabs may remain; nothing visible changed
    emu.clear_faults()
    r = sync([f"gsheet:{src}"], f"gsheet:{master}", state=state)
    assert r.wrote_master and any("written again from the state" in n for n in r.notes)
    assert sorted(deals_of(emu, master)["Deal ID"]) == ["D-1", "D-2"] and temp_tabs(emu, master) == []
    assert visible(emu, master)["Mine"] == before["Mine"]


# --- the per-user quota -------------------------------------------------------------------------

WINDOW = 1.0  # the emulator's quota window, shortened from 60 s so that the test takes seconds


def test_the_emulator_quota_bites_an_unpaced_client():
    with Emulator(read_quota=60, write_quota=60, quota_window=WINDOW) as e:
        key = e.create_spreadsheet("A", sheets={"Deals": deals_rows(deal())})
        c = gsheets.connect(session=e.session(), pacer=Pacer(reads=10**6, window=WINDOW),
                            backoff=Backoff(tries=0), fresh=True)
        with pytest.raises(GoogleRetryError, match="quota exceeded"):
            for _ in range(40):
                gsheets_read.read_spreadsheet(key, client=c)


def test_syncing_100_google_sources_under_the_quota_surfaces_no_quota_error(tmp_path):
    with Emulator(read_quota=60, write_quota=60, quota_window=WINDOW) as e:
        keys = [e.create_spreadsheet(f"Team {i}", sheets={"Deals": deals_rows(
            *[deal(Deal_ID=f"T{i}-{j}", Amount=100.0 * j) for j in range(5)])}) for i in range(100)]
        master = e.create_spreadsheet("Master")
        c = gsheets.connect(session=e.session(), pacer=Pacer(window=WINDOW), fresh=True)
        gsheets.use(client=c)
        r = sync([f"gsheet:{k}" for k in keys], f"gsheet:{master}", state=tmp_path / "s.db")
        assert r.added == 500 and r.sources == 100
        assert [q for q in e.requests if q.status == 429] == [] and c.stats.retries == 0
        reads = [q for q in e.requests if q.path.startswith("/v4/") and q.method == "GET"]
        assert len(reads) == 2 * 100 + 1  # two per source; the new master has no tabs of ours to batchGet
        assert len(e.values(master, "Deals")) == 501
