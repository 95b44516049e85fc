"""salessheet.gsheets against the local Sheets API emulator: reading, pacing and retries, credentials and
secrets, and `salessheet new --google`."""
from __future__ import annotations

import datetime as dt
import json
import os
import re

import pandas as pd
import pytest
from click.testing import CliRunner

from gsheets_emulator import Emulator
from salessheet import gsheets, gsheets_read, schema, template
from salessheet.cli import cli
from salessheet.errors import ReadError
from salessheet.gsheets import Backoff, GoogleAccessError, GoogleAuthError, GoogleError, GoogleRetryError, Pacer
from salessheet.reader import column_letter, read_workbook
from sheetmaker import deal, deals_rows, write_xlsx


class FakeClock:
    """A clock that only moves when slept on: pacing and backoff run instantly, their waits recorded."""

    def __init__(self):
        self.t = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.t += s


@pytest.fixture
def emu():
    e = Emulator().start()
    yield e
    e.stop()


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def client(emu, clock):
    return gsheets.connect(session=emu.session(), pacer=Pacer(clock=clock, sleep=clock.sleep),
                           backoff=Backoff(rand=lambda: 0.5), fresh=True)


def invoke(*args, env=None):
    return CliRunner().invoke(cli, [str(a) for a in args], env=env, catch_exceptions=False)


def sheets_requests(emu, path_part):
    return [r for r in emu.requests if path_part in r.path]


# --- names --------------------------------------------------------------------------------------

@pytest.mark.parametrize("spec,key", [
    ("gsheet:1AbC_def-GHIjkl", "1AbC_def-GHIjkl"),
    ("https://docs.google.com/spreadsheets/d/1AbC_def-GHIjkl/edit#gid=0", "1AbC_def-GHIjkl"),
    ("https://docs.google.com/spreadsheets/u/1/d/1AbC_def-GHIjkl", "1AbC_def-GHIjkl"),
    ("https:/docs.google.com/spreadsheets/d/1AbC_def-GHIjkl", "1AbC_def-GHIjkl"),  # after pathlib
    ("teams/north.xlsx", None), ("gsheet:", None), ("https://example.com/spreadsheets/d/1AbC_def-GHIjkl", None),
])
def test_google_key(spec, key):
    assert gsheets.google_key(spec) == key


# --- reading ------------------------------------------------------------------------------------

MESSY_HEADER = ["Opportunity ID", "Customer", "Sales Rep", "Status", "Deal Value", "Created", "Next Step",
                "Last Updated", "Region"]


def messy_rows():
    """Aliased headers, an extra column, a leading-zero ID, text amounts, a bad date, formula-like text,
    an empty row in the middle, an impossible date and a time of day."""
    return [MESSY_HEADER,
            ["007", "Acme", "Ann", "Closed Won", 1200, dt.date(2026, 1, 5), "=HYPERLINK(\"x\")",
             dt.datetime(2026, 1, 6, 13, 45), "EMEA"],
            ["D-2", "Beta", "Bob", "proposal", "$1,200.50", "31/02/2026", "+call back", None, "APAC"],
            [],
            ["D-3", "Gamma", "Cy", "won", None, dt.date(2026, 2, 1), None, None, None],
            ["D-4", "Delta", "Di", "Nonsense", "abc", "2026-03-04", "@team", dt.datetime(2026, 3, 5), 7]]


def test_reading_a_google_sheet_gives_the_same_book_as_the_same_xlsx(emu, client, tmp_path):
    rows = messy_rows()
    stages = [schema.STAGES.names] + [[s.name, s.order, s.probability, s.is_closed, s.is_won]
                                      for s in schema.DEFAULT_STAGES]
    path = write_xlsx(tmp_path / "team.xlsx", {"Pipeline": rows, "Stages": stages, "Notes": [["free text"]]})
    key = emu.create_spreadsheet("team", sheets={"Pipeline": rows, "Stages": stages, "Notes": [["free text"]]})
    a = read_workbook(path)
    b = gsheets_read.read_spreadsheet(f"gsheet:{key}", client=client)
    assert set(a.tables) == set(b.tables) == {"Deals", "Stages"}
    for name in a.tables:
        pd.testing.assert_frame_equal(a.tables[name], b.tables[name])
    strip = lambda issues: [(i.sheet, i.row, i.column, i.value, i.severity, i.message) for i in issues]  # noqa: E731
    assert strip(a.issues) == strip(b.issues)
    assert len(b.issues) >= 4  # the bad date, the bad amount, the unknown stage, the empty row
    deals = b.tables["Deals"]
    assert deals.loc[2, "Deal ID"] == "007" and deals.loc[3, "Amount"] == 1200.5
    assert deals.loc[2, "Next Step"] == '=HYPERLINK("x")'
    assert deals.loc[2, "Last Updated"] == pd.Timestamp(2026, 1, 6, 13, 45)
    assert list(deals.index) == [2, 3, 5, 6]  # sheet row numbers, the empty row 4 skipped


def test_a_read_is_one_metadata_request_and_one_unformatted_batch_get(emu, client):
    key = emu.create_spreadsheet("team", sheets={"Deals": deals_rows(deal()), "Other": [["x"]], "Empty": []})
    emu.reset_requests()
    book = gsheets_read.read_spreadsheet(key, client=client)
    assert len(book.tables["Deals"]) == 1
    reqs = emu.requests
    assert [(r.method, r.path.rsplit("/", 1)[-1]) for r in reqs] == [("GET", key), ("GET", "values:batchGet")]
    q = reqs[1].query
    assert q["valueRenderOption"] == ["UNFORMATTED_VALUE"] and q["dateTimeRenderOption"] == ["SERIAL_NUMBER"]
    assert q["ranges"] == ["'Deals'", "'Other'", "'Empty'"]


def test_a_source_hash_is_one_drive_request_and_follows_edits(emu, client):
    key = emu.create_spreadsheet("team", sheets={"Deals": deals_rows(deal())})
    src = gsheets_read.GoogleSource(key, client)
    emu.reset_requests()
    h1 = src.content_hash()
    assert [r.path for r in emu.requests] == [f"/drive/v3/files/{key}"] and src.name == "team"
    assert src.content_hash() == h1
    client.write_values(key, [{"range": "'Deals'!A2", "values": [["D-9"]]}])
    assert src.content_hash() != h1
    assert src.read().tables["Deals"].loc[2, "Deal ID"] == "D-9"


def test_without_drive_the_hash_is_of_the_values_and_the_read_is_reused(emu, client):
    key = emu.create_spreadsheet("team", sheets={"Deals": deals_rows(deal())})
    emu.fail(403, times=None, match="GET /drive/", message="Google Drive API has not been used in project 1 "
                                                           "before or it is disabled.")
    src = gsheets_read.GoogleSource(key, client)
    emu.reset_requests()
    h = src.content_hash()
    assert h.startswith("values:")
    book = src.read()
    assert len(book.tables["Deals"]) == 1
    assert len(sheets_requests(emu, "/v4/")) == 2  # the read made for the hash served read()


def test_a_missing_or_unshared_sheet_names_the_sheet_and_the_account(emu, tmp_path):
    key = emu.create_spreadsheet("secret", sheets={"Deals": deals_rows(deal())})
    emu.deny(key, 403)
    sa = service_account_file(tmp_path)
    client = gsheets.connect(credentials=sa, session=emu.session(), fresh=True)
    with pytest.raises(GoogleAccessError) as e:
        gsheets_read.read_spreadsheet(key, client=client)
    msg = str(e.value)
    assert gsheets.spreadsheet_url(key) in msg and "robot@proj.iam.gserviceaccount.com" in msg
    assert "share" in msg
    with pytest.raises(GoogleAccessError, match="was not found"):
        gsheets_read.read_spreadsheet("1NoSuchSpreadsheetKey000", client=client)
    src = gsheets_read.GoogleSource(key, client)
    assert src.content_hash() is None
    with pytest.raises(ReadError, match="robot@proj"):
        src.read()


# --- pacing and retries -------------------------------------------------------------------------

def test_pacer_never_lets_more_than_the_limit_into_any_window():
    clock = FakeClock()
    p = Pacer(reads=5, writes=3, window=10.0, clock=clock, sleep=clock.sleep)
    times = {"read": [], "write": []}
    for i in range(60):
        kind = "read" if i % 3 else "write"
        p.acquire(kind)
        times[kind].append(clock())
    for kind, limit in (("read", 5), ("write", 3)):
        ts = times[kind]
        assert max(sum(1 for u in ts if t <= u < t + 10.0) for t in ts) == limit
    assert clock.t >= (40 / 5 - 1) * 10.0  # 40 reads at 5 per 10 s cannot take less


def test_a_burst_of_429s_is_absorbed_honouring_retry_after(emu, client, clock):
    key = emu.create_spreadsheet("team", sheets={"Deals": deals_rows(deal())})
    emu.fail(429, times=3, match="values:batchGet", retry_after=7)
    book = gsheets_read.read_spreadsheet(key, client=client)
    assert len(book.tables["Deals"]) == 1
    assert client.stats.retries == 3 and client.stats.errors == {429: 3}
    assert [s for s in clock.sleeps if s >= 7] == clock.sleeps and len(clock.sleeps) == 3


def test_backoff_grows_exponentially_with_jitter_and_is_bounded():
    b = Backoff(tries=6, base=1.0, cap=32.0, rand=lambda: 1.0)
    assert [b.delay(n) for n in range(7)] == [2.0, 3.0, 5.0, 9.0, 17.0, 33.0, 33.0]
    assert Backoff(rand=lambda: 0.0).delay(0, retry_after=20.0) == 20.0


def test_when_retries_run_out_the_error_is_clear(emu, client, clock):
    key = emu.create_spreadsheet("team", sheets={"Deals": deals_rows(deal())})
    emu.fail(503, times=None, match="values:batchGet")
    with pytest.raises(GoogleRetryError) as e:
        gsheets_read.read_spreadsheet(key, client=client)
    assert "HTTP 503" in str(e.value) and "7 attempt(s)" in str(e.value) and key in str(e.value)
    assert len(sheets_requests(emu, "values:batchGet")) == 7  # the first try and 6 retries
    assert len(clock.sleeps) == 6 and max(clock.sleeps) <= 32.0 + 1.0


def test_a_retry_after_longer_than_allowed_is_not_waited_for(emu, client, clock):
    key = emu.create_spreadsheet("team", sheets={"Deals": deals_rows(deal())})
    emu.fail(429, times=1, match="values:batchGet", retry_after=3600)
    with pytest.raises(GoogleRetryError, match="wait 3600s"):
        gsheets_read.read_spreadsheet(key, client=client)
    assert clock.sleeps == []


def test_client_errors_are_not_retried(emu, client, clock):
    key = emu.create_spreadsheet("team", sheets={"Deals": deals_rows(deal())})
    with pytest.raises(GoogleError, match="HTTP 400"):
        client.write_values(key, [{"range": "'Nope'!A1", "values": [[1]]}])
    assert clock.sleeps == [] and len(sheets_requests(emu, "values:batchUpdate")) == 1


def test_a_dropped_connection_on_a_read_is_retried(emu, client):
    key = emu.create_spreadsheet("team", sheets={"Deals": deals_rows(deal())})
    emu.disconnect(times=1, match="values:batchGet")
    assert len(gsheets_read.read_spreadsheet(key, client=client).tables["Deals"]) == 1
    assert client.stats.retries == 1


def test_writes_are_chunked_under_the_request_limit():
    rows = [[f"D-{i}", "x" * 200, float(i)] for i in range(3000)]
    data = [{"range": "'A'!A1", "values": rows}, {"range": "'B'!A1", "values": rows[:10]}]
    chunks = list(gsheets._chunks(data, limit=100_000))
    assert len(chunks) > 5
    assert all(len(json.dumps({"valueInputOption": "RAW", "data": c})) < 100_000 for c in chunks)
    back: dict[str, list] = {}
    for c in chunks:
        for item in c:
            sheet, start = gsheets._split_a1(item["range"])
            assert start == len(back.get(sheet, [])) + 1  # each piece starts where the last ended
            back.setdefault(sheet, []).extend(item["values"])
    assert back == {"'A'!A": rows, "'B'!A": rows[:10]}


# --- credentials and secrets --------------------------------------------------------------------

def _private_key() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def service_account_file(tmp_path, mode=0o600, private_key=None):
    info = {"type": "service_account", "project_id": "proj", "private_key_id": "a1b2c3d4e5f6a7b8c9d0",
            "private_key": private_key or _private_key(), "client_email": "robot@proj.iam.gserviceaccount.com",
            "client_id": "1234567890", "token_uri": "https://oauth2.googleapis.com/token"}
    path = tmp_path / "sa.json"
    path.write_text(json.dumps(info))
    os.chmod(path, mode)
    return path


def secret_lines(path) -> list[str]:
    info = json.loads(path.read_text())
    return [ln for k in ("private_key", "refresh_token", "client_secret", "private_key_id") if info.get(k)
            for ln in str(info[k]).splitlines() if len(ln) >= 16]


@pytest.mark.skipif(os.name == "nt", reason="POSIX file modes")
def test_a_world_readable_service_account_key_is_refused_without_showing_it(emu, tmp_path):
    sa = service_account_file(tmp_path, mode=0o644)
    res = invoke("new", "--google", "--credentials", sa, env={gsheets.ENDPOINT_ENV: emu.url})
    assert res.exit_code == 2
    assert "can be read by other users" in res.output and f"chmod 600 {sa}" in res.output
    assert not any(s in res.output for s in secret_lines(sa))
    assert emu.spreadsheet_keys() == []  # refused before anything was created
    os.chmod(sa, 0o600)
    res = invoke("new", "--google", "--credentials", sa, env={gsheets.ENDPOINT_ENV: emu.url})
    assert res.exit_code == 0, res.output


def test_unusable_credentials_are_reported_with_every_secret_scrubbed(tmp_path):
    pem = _private_key()
    broken = pem.replace("\n", "\n ", 3)  # a corrupted key: google-auth refuses it
    sa = service_account_file(tmp_path, private_key=broken)
    with pytest.raises(GoogleAuthError) as e:
        gsheets._authorize(sa, None)
    assert str(sa) in str(e.value)
    assert not any(s in str(e.value) for s in secret_lines(sa))
    assert gsheets.scrub(f"boom {pem} and {pem.splitlines()[3]}", [pem]).count("[redacted]") == 2


def test_an_oauth_client_file_starts_gspreads_user_flow(tmp_path, monkeypatch):
    import gspread

    path = tmp_path / "client.json"
    path.write_text(json.dumps({"installed": {"client_id": "x.apps.googleusercontent.com",
                                              "client_secret": "GOCSPX-verysecretvalue123", "redirect_uris": []}}))
    os.chmod(path, 0o600)
    seen = {}

    def fake_oauth(**kw):
        seen.update(kw)
        return "client"

    monkeypatch.setattr(gspread, "oauth", fake_oauth)
    gc, account, warnings = gsheets._authorize(path, "paced-http-client")
    assert gc == "client" and seen == {"credentials_filename": str(path), "http_client": "paced-http-client"}
    assert account is None and warnings == []


def test_an_open_oauth_token_file_is_a_warning(tmp_path):
    path = tmp_path / "authorized_user.json"
    path.write_text(json.dumps({"type": "authorized_user", "refresh_token": "1//0refresh-token-secret-value",
                                "client_id": "x", "client_secret": "GOCSPX-anothersecret"}))
    os.chmod(path, 0o644)
    info, warnings = gsheets._read_key_file(path)
    assert warnings and "chmod 600" in warnings[0] and "refresh-token" not in warnings[0]


def test_no_credentials_says_where_to_put_them(tmp_path, monkeypatch):
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.delenv(gsheets.ENDPOINT_ENV, raising=False)
    import gspread.auth as ga

    monkeypatch.setattr(ga, "DEFAULT_SERVICE_ACCOUNT_FILENAME", tmp_path / "none.json")
    monkeypatch.setattr(ga, "DEFAULT_AUTHORIZED_USER_FILENAME", tmp_path / "none2.json")
    monkeypatch.setattr(ga, "DEFAULT_CREDENTIALS_FILENAME", tmp_path / "none3.json")
    with pytest.raises(GoogleAuthError, match="GOOGLE_APPLICATION_CREDENTIALS"):
        gsheets.connect(fresh=True)


def test_the_endpoint_hook_only_talks_to_this_computer():
    with pytest.raises(GoogleError, match="local test server"):
        gsheets.rewriting_session("http://sheets.example.com:8080")
    gsheets.rewriting_session("http://127.0.0.1:1")
    gsheets.rewriting_session("http://localhost:1")


# --- salessheet new --google --------------------------------------------------------------------

def test_new_google_creates_the_standard_workbook_in_one_batch_update(emu):
    res = invoke("new", "--google", "--title", "EMEA deals", "--share", "rep@example.com", "--share",
                 "boss@example.com", env={gsheets.ENDPOINT_ENV: emu.url})
    assert res.exit_code == 0, res.output
    key = re.search(r"docs\.google\.com/spreadsheets/d/([\w-]+)", res.output).group(1)
    meta = emu.metadata(key)
    props = {s["properties"]["title"]: s["properties"] for s in meta["sheets"]}
    assert list(props) == list(template.SHEET_ORDER) and meta["properties"]["title"] == "EMEA deals"
    assert len([r for r in emu.requests if r.path.endswith(":batchUpdate")]) == 1
    assert sorted((p["emailAddress"], p["role"]) for p in emu.permissions[key] if p["role"] == "writer") == [
        ("boss@example.com", "writer"), ("rep@example.com", "writer")]
    for name in schema.TABLE_ORDER:
        table = schema.TABLES[name]
        assert emu.values(key, name)[0] == table.names
        assert props[name]["gridProperties"]["frozenRowCount"] == 1
        header = [s for s in meta["sheets"] if s["properties"]["title"] == name][0]["protectedRanges"]
        assert any(p["range"].get("startRowIndex") == 0 and p["range"].get("endRowIndex") == 1 for p in header)
    stages = emu.values(key, "Stages")
    assert [r[0] for r in stages[1:]] == [s.name for s in schema.DEFAULT_STAGES]

    def cell(table, column, row=2):
        return emu.cell(key, table, f"{column_letter(schema.TABLES[table].names.index(column))}{row}")

    stage = cell("Deals", "Stage")["validation"]
    assert stage["condition"]["type"] == "ONE_OF_RANGE" and stage["strict"] is True
    assert stage["condition"]["values"][0]["userEnteredValue"] == "='Stages'!$A$2:$A"
    owner = cell("Deals", "Owner", 2000)["validation"]["condition"]
    owner_col = column_letter(schema.LISTS.names.index("Owner"))
    assert owner == {"type": "ONE_OF_RANGE", "values": [{"userEnteredValue": f"='Lists'!${owner_col}$2:${owner_col}"}]}
    status = cell("Leads", "Status")["validation"]["condition"]
    assert status["type"] == "ONE_OF_LIST" and [v["userEnteredValue"] for v in status["values"]] == list(
        schema.LEAD_STATUSES)
    assert cell("Deals", "Created Date")["validation"]["condition"]["type"] == "DATE_IS_VALID"
    assert cell("Deals", "Amount")["validation"]["condition"]["type"] == "NUMBER_GREATER_THAN_EQ"
    assert cell("Deals", "Created Date")["format"]["type"] == "DATE"
    assert cell("Deals", "Probability")["format"]["type"] == "PERCENT"
    assert "Pick from the list" in cell("Deals", "Owner")["validation"]["inputMessage"]
    revenue = emu.cell(key, "Dashboard", template.DASHBOARD_CELLS["revenue"])["formula"]
    amount = column_letter(schema.DEALS.names.index("Amount"))
    assert revenue.startswith("=SUMPRODUCT(") and f"'Deals'!${amount}$2:${amount}" in revenue
    assert "[" not in revenue  # no Excel structured references left
    book = gsheets_read.read_spreadsheet(key, client=gsheets.connect(session=emu.session(), fresh=True))
    assert len(book.tables["Deals"]) == 0 and not [i for i in book.issues if i.severity == "error"]
    assert list(book.stages["Stage"]) == [s.name for s in schema.DEFAULT_STAGES]


def test_new_needs_a_path_or_google(tmp_path):
    assert invoke("new").exit_code == 2
    assert invoke("new", tmp_path / "x.xlsx", "--google").exit_code == 2
    assert invoke("new", tmp_path / "x.xlsx").exit_code == 0


def test_gspread_and_google_auth_load_only_when_a_google_sheet_is_used(tmp_path):
    import subprocess
    import sys

    write_xlsx(tmp_path / "a.xlsx", {"Deals": deals_rows(deal())})
    code = ("import sys; from click.testing import CliRunner; from salessheet.cli import cli; "
            f"r = CliRunner().invoke(cli, ['sync', {str(tmp_path / 'a.xlsx')!r}, '--into', {str(tmp_path / 'm.xlsx')!r}]); "
            "assert r.exit_code == 0, r.output; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('gspread', 'google', 'requests')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
