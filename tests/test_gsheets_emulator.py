"""The local Sheets API emulator, checked against real recorded traffic and driven through gspread."""
from __future__ import annotations

import datetime as dt
import json
import os
import re
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from gsheets_emulator import Emulator

gspread = pytest.importorskip("gspread")
from gspread.exceptions import APIError, SpreadsheetNotFound  # noqa: E402

RECORDINGS = Path(os.environ.get("GSHEETS_RECORDINGS") or
                  Path(__file__).resolve().parents[2] / "shared" / "google-sheets-recordings")
RECORDING_FILES = sorted(RECORDINGS.glob("*.json"))


def test_recordings_are_there():
    """The replay tests below are the emulator's proof; CI (with shared/ beside the checkout) must have them."""
    if not RECORDING_FILES and not os.environ.get("CI"):
        pytest.skip(f"no recordings in {RECORDINGS} (set GSHEETS_RECORDINGS)")
    assert len(RECORDING_FILES) >= 20, f"expected the recorded Google Sheets traffic in {RECORDINGS}"
# The service account that made the recordings: Google lists the owner among protected-range editors.
RECORDING_ACCOUNT = "telegram-budgeter@telegram-budgeter.iam.gserviceaccount.com"
ID_KEYS = ("spreadsheetId", "id", "sheetId", "protectedRangeId", "namedRangeId")
TIME_KEYS = ("createdTime", "modifiedTime")
STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
# Interactions that cannot be replayed, with the reason. Empty: every recorded request replays.
SKIPPED: dict[tuple[str, int], str] = {}


# ------------------------------------------------------------------------------------------- replay

def _learn_ids(expected, actual, ids):
    """Pair the random ids of a recorded answer with the emulator's, at id-named keys only."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        for k in expected.keys() & actual.keys():
            e, a = expected[k], actual[k]
            if k in ID_KEYS and type(e) is type(a) and not isinstance(e, (dict, list)) and e not in ids:
                assert a not in ids.values(), f"emulator reused id {a!r} for recorded {e!r}"
                ids[e] = a
            _learn_ids(e, a, ids)
    elif isinstance(expected, list) and isinstance(actual, list) and len(expected) == len(actual):
        for e, a in zip(expected, actual):
            _learn_ids(e, a, ids)


def _translate(obj, ids):
    """Recorded ids -> emulator ids, in strings (URLs, keys) and in integer sheet ids."""
    if isinstance(obj, dict):
        return {k: _translate(v, ids) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_translate(v, ids) for v in obj]
    if isinstance(obj, bool):
        return obj
    if isinstance(obj, int):
        return ids.get(obj, obj)
    if isinstance(obj, str):
        for old, new in ids.items():
            if isinstance(old, str) and old in obj:
                obj = obj.replace(old, new)
    return obj


def _normalise_times(obj):
    if isinstance(obj, dict):
        return {k: ("<time>" if k in TIME_KEYS and isinstance(v, str) and STAMP.match(v)
                    else _normalise_times(v)) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_normalise_times(v) for v in obj]
    return obj


def _canon(obj):
    return json.dumps(obj, sort_keys=True, ensure_ascii=False)


def replay(path):
    """Send every recorded request, in order, to a fresh emulator; return the mismatches."""
    interactions = json.loads(path.read_text())["interactions"]
    ids, problems, replayed = {}, [], 0
    with Emulator(account=RECORDING_ACCOUNT) as emu, requests.Session() as http:
        for n, item in enumerate(interactions):
            if (path.name, n) in SKIPPED:
                continue
            req, resp = item["request"], item["response"]
            uri = _translate(req["uri"], ids)
            parts = urlsplit(uri)
            body = req.get("body")
            data = json.dumps(_translate(json.loads(body), ids)).encode() if body else None
            r = http.request(req["method"], emu.url + parts.path + ("?" + parts.query if parts.query else ""),
                             data=data, headers={"Content-Type": "application/json"} if data else {})
            text = resp["body"].get("string") or ""
            expected = json.loads(text) if text.strip() else None
            actual = r.json() if r.content else None
            _learn_ids(expected, actual, ids)
            want = _normalise_times(_translate(expected, ids))
            got = _normalise_times(actual)
            replayed += 1
            # compared as JSON text: 2 and 2.0, or 1 and true, are different answers for a client
            if r.status_code != resp["status"]["code"] or _canon(want) != _canon(got):
                problems.append(f"[{n}] {req['method']} {req['uri']}\n  want {resp['status']['code']} {want}"
                                f"\n  got  {r.status_code} {got}")
    return replayed, problems


@pytest.mark.skipif(not RECORDING_FILES, reason=f"no recordings in {RECORDINGS}")
@pytest.mark.parametrize("path", RECORDING_FILES, ids=lambda p: p.stem)
def test_replay_recording(path):
    replayed, problems = replay(path)
    recorded = len(json.loads(path.read_text())["interactions"])
    assert replayed == recorded - sum(name == path.name for name, _ in SKIPPED) > 0
    assert not problems, "\n".join(problems)


@pytest.mark.skipif(not RECORDING_FILES, reason=f"no recordings in {RECORDINGS}")
def test_every_recorded_interaction_is_replayed():
    total = sum(len(json.loads(p.read_text())["interactions"]) for p in RECORDING_FILES)
    assert total > 300 and not SKIPPED


def test_replay_detects_a_wrong_answer(tmp_path):
    """The comparison is not vacuous: a doctored recording fails."""
    src = next((p for p in RECORDING_FILES if p.name == "WorksheetTest.test_batch_get.json"), None)
    if src is None:
        pytest.skip("recording missing")
    doc = json.loads(src.read_text())
    body = doc["interactions"][6]["response"]["body"]
    body["string"] = body["string"].replace('"D4"', '"D5"')
    bad = tmp_path / src.name
    bad.write_text(json.dumps(doc))
    assert replay(bad)[1]


# ---------------------------------------------------------------------------------- gspread, direct

@pytest.fixture
def emu():
    with Emulator() as e:
        yield e


@pytest.fixture
def gc(emu):
    return gspread.Client(auth=None, session=emu.session())


def with_retries(call, attempts=5, base=0.01):
    """What a client must do itself: bounded exponential backoff on 429 and 5xx."""
    for i in range(attempts):
        try:
            return call()
        except APIError as e:
            if e.code != 429 and e.code < 500 or i == attempts - 1:
                raise
            time.sleep(base * 2 ** i)


def test_create_open_and_list(gc, emu):
    sh = gc.create("Team A")
    assert gc.open_by_key(sh.id).title == "Team A"
    assert gc.open("Team A").id == sh.id
    assert [f["name"] for f in gc.list_spreadsheet_files()] == ["Team A"]
    assert [w.title for w in sh.worksheets()] == ["Sheet1"]
    assert sh.sheet1.row_count == 1000 and sh.sheet1.col_count == 26
    with pytest.raises(SpreadsheetNotFound):
        gc.open_by_key("no-such-key")
    with pytest.raises(SpreadsheetNotFound):
        gc.open("Team B")


def test_worksheet_add_and_delete(gc):
    sh = gc.create("Book")
    deals = sh.add_worksheet("Deals", rows=50, cols=8)
    sh.add_worksheet("Issues", rows=10, cols=3)
    assert [(w.title, w.index) for w in sh.worksheets()] == [("Sheet1", 0), ("Deals", 1), ("Issues", 2)]
    with pytest.raises(APIError, match='A sheet with the name "Deals" already exists'):
        sh.add_worksheet("Deals", rows=1, cols=1)
    sh.del_worksheet(deals)
    assert [w.title for w in sh.worksheets()] == ["Sheet1", "Issues"]
    assert sh.worksheet("Issues").row_count == 10


def test_render_options_and_input_parsing(gc):
    ws = gc.create("Values").sheet1
    ws.update([["007", "=1+2", "2026-01-05", "12%", "'007", "1,234.5", "TRUE"]], "A1",
              value_input_option="USER_ENTERED")
    ws.update([["007", "=1+2", "2026-01-05"]], "A2", value_input_option="RAW")
    assert ws.get("A1:G2") == [["7", "3", "2026-01-05", "12%", "007", "1,234.50", "TRUE"],
                               ["007", "=1+2", "2026-01-05"]]
    assert ws.get("A1:G1", value_render_option="UNFORMATTED_VALUE") == [[7, 3, 46027, 0.12, "007", 1234.5, True]]
    assert ws.get("A1:C1", value_render_option="FORMULA") == [[7, "=1+2", 46027]]
    assert ws.get("C1", value_render_option="UNFORMATTED_VALUE",
                  date_time_render_option="FORMATTED_STRING") == [["2026-01-05"]]
    # 2026-01-05 is 46027 days after 1899-12-30
    assert (dt.date(2026, 1, 5) - dt.date(1899, 12, 30)).days == 46027


def test_trailing_empties_and_missing_values_key(gc):
    sh = gc.create("Gaps")
    ws = sh.sheet1
    ws.update([["a", "", "c", ""], ["", "", "", ""], ["", "b"]], "A1")
    raw = sh.values_get("Sheet1!A1:E5")
    assert raw == {"range": "Sheet1!A1:E5", "majorDimension": "ROWS", "values": [["a", "", "c"], [], ["", "b"]]}
    empty = sh.values_get("Sheet1!H10:J12")
    assert empty == {"range": "Sheet1!H10:J12", "majorDimension": "ROWS"}
    assert sh.values_get("Sheet1")["range"] == "Sheet1!A1:Z1000"


def test_batch_get_append_and_clear(gc, emu):
    sh = gc.create("Ops")
    ws = sh.sheet1
    ws.append_row(["Deal ID", "Amount"])
    res = ws.append_row(["D-1", 100])
    assert res["tableRange"] == "Sheet1!A1:B1" and res["updates"]["updatedRange"] == "Sheet1!A2:B2"
    res = ws.append_rows([["D-2", 200], ["D-3", 300]], insert_data_option="INSERT_ROWS")
    assert res["updates"]["updatedRange"] == "Sheet1!A3:B4"
    assert sh.worksheet("Sheet1").row_count == 1002  # INSERT_ROWS added two rows
    assert emu.values(sh.id, "Sheet1") == [["Deal ID", "Amount"], ["D-1", 100], ["D-2", 200], ["D-3", 300]]
    got = ws.batch_get(["A1:A2", "B3:B4"], value_render_option="UNFORMATTED_VALUE")
    assert [list(v) for v in got] == [[["Deal ID"], ["D-1"]], [[200], [300]]]
    ws.batch_clear(["A2:B2", "B4"])
    assert emu.values(sh.id, "Sheet1") == [["Deal ID", "Amount"], [], ["D-2", 200], ["D-3"]]
    ws.clear()
    assert emu.values(sh.id, "Sheet1") == []


def test_share_deny_and_permissions(gc, emu):
    sh = gc.create("Shared")
    sh.share("boss@example.com", perm_type="user", role="writer", notify=False)
    roles = {p.get("emailAddress"): p["role"] for p in emu.permissions[sh.id]}
    assert roles == {emu.account: "owner", "boss@example.com": "writer"}
    key = emu.create_spreadsheet("Not shared", sheets={"Deals": [["Deal ID"], ["D-1"]]})
    emu.deny(key, 403)
    with pytest.raises(PermissionError):
        gc.open_by_key(key)
    assert "Not shared" not in [f["name"] for f in gc.list_spreadsheet_files()]
    r = emu.session().get(f"https://sheets.googleapis.com/v4/spreadsheets/{key}")
    assert r.status_code == 403 and r.json() == {"error": {
        "code": 403, "message": "The caller does not have permission", "status": "PERMISSION_DENIED"}}
    emu.share(key, emu.account)
    assert gc.open_by_key(key).worksheet("Deals").get_all_values() == [["Deal ID"], ["D-1"]]
    emu.deny(key, 404)
    with pytest.raises(SpreadsheetNotFound):
        gc.open_by_key(key)


def test_429_is_absorbed_by_a_bounded_retry(gc, emu):
    sh = gc.create("Busy")
    sh.sheet1.update([["x"]], "A1")
    emu.reset_requests()
    emu.fail(429, times=2, match="values:batchGet", retry_after=1)
    with pytest.raises(APIError) as err:
        sh.values_batch_get(["Sheet1!A1"])
    assert err.value.code == 429 and err.value.error["status"] == "RESOURCE_EXHAUSTED"
    assert "Read requests per minute per user" in err.value.error["message"]
    assert err.value.response.headers["Retry-After"] == "1"
    got = with_retries(lambda: sh.values_batch_get(["Sheet1!A1"]))
    assert got["valueRanges"][0]["values"] == [["x"]]
    assert [r.status for r in emu.requests] == [429, 429, 200]


def test_permanent_500_and_503_shapes(gc, emu):
    sh = gc.create("Down")
    emu.fail(503, times=None, match="PUT ")
    with pytest.raises(APIError) as err:
        with_retries(lambda: sh.sheet1.update([["x"]], "A1"), attempts=3)
    assert err.value.error == {"code": 503, "message": "The service is currently unavailable.",
                               "status": "UNAVAILABLE"}
    assert sum(r.method == "PUT" for r in emu.requests) == 3
    emu.clear_faults()
    emu.fail(500)
    with pytest.raises(APIError, match="Internal error encountered."):
        sh.sheet1.get("A1")


def test_quota_per_window(emu):
    emu.read_quota, emu.quota_window = 3, 0.5
    gc = gspread.Client(auth=None, session=emu.session())
    ws = gc.create("Quota").sheet1  # two reads: metadata on open, metadata for sheet1
    ws.get("A1")
    with pytest.raises(APIError) as err:
        ws.get("A1")
    assert err.value.code == 429 and err.value.error["details"][0]["reason"] == "RATE_LIMIT_EXCEEDED"
    ws.update([["writes are counted apart"]], "A1")
    time.sleep(0.55)
    assert ws.get("A1") == [["writes are counted apart"]]


def test_delay_and_disconnect(gc, emu):
    sh = gc.create("Slow")
    emu.delay(0.3, match="values/")
    t = time.monotonic()
    sh.sheet1.get("A1")
    assert time.monotonic() - t >= 0.3
    emu.delay(0.5)
    gc.http_client.set_timeout(0.1)
    with pytest.raises(requests.exceptions.ReadTimeout):
        sh.sheet1.get("A1")
    gc.http_client.set_timeout(None)
    emu.disconnect(match="values/")
    with pytest.raises(requests.exceptions.ConnectionError):
        sh.sheet1.get("A1")
    assert sh.sheet1.get("A1") == [[]]  # gspread pads a missing `values`


def test_payload_limit(gc):
    sh = gc.create("Big")
    rows = [["x" * 1000] * 10] * 1100  # ~11 MB of JSON
    with pytest.raises(APIError) as err:
        sh.values_update("Sheet1!A1", params={"valueInputOption": "RAW"}, body={"values": rows})
    assert err.value.code == 400
    assert err.value.error["message"] == "Request payload size exceeds the limit: 10485760 bytes."


def test_range_errors(gc):
    sh = gc.create("Ranges")
    with pytest.raises(APIError) as err:
        sh.values_get("Nope!A1")
    assert err.value.error == {"code": 400, "message": "Unable to parse range: Nope!A1", "status": "INVALID_ARGUMENT"}
    with pytest.raises(APIError, match=r"Range \(Sheet1!A1001\) exceeds grid limits. "
                                       r"Max rows: 1000, max columns: 26"):
        sh.sheet1.update([["a"]], "A1001")
    with pytest.raises(APIError, match=r"Requested writing within range \['Sheet1'!A1000\], "
                                       r"but tried writing to row \[1001\]"):
        sh.sheet1.update([["a"], ["b"]], "A1000")
    with pytest.raises(APIError, match=r"Requested writing within range \['Sheet1'!A1:B1\], "
                                       r"but tried writing to row \[2\]"):
        sh.sheet1.update([["a"], ["b"]], "A1:B1")
    with pytest.raises(APIError, match="Invalid valueInputOption: INPUT_VALUE_OPTION_UNSPECIFIED"):
        sh.values_update("Sheet1!A1", params={}, body={"values": [["a"]]})
    # a sheet titled like a cell needs quotes: unquoted, D3 is a cell of the first sheet
    sh.add_worksheet("D3", rows=5, cols=5).update([["in D3"]], "A1")
    sh.sheet1.update([["first sheet"]], "D3")
    assert sh.values_get("'D3'!A1")["values"] == [["in D3"]]
    assert sh.values_get("D3") == {"range": "Sheet1!D3", "majorDimension": "ROWS", "values": [["first sheet"]]}


def test_batch_update_is_atomic(gc, emu):
    sh = gc.create("Atomic")
    body = {"requests": [{"addSheet": {"properties": {"title": "Deals"}}},
                         {"deleteSheet": {"sheetId": 424242}}]}
    with pytest.raises(APIError, match=r"Invalid requests\[1\].deleteSheet: No grid with id: 424242"):
        sh.batch_update(body)
    assert [w.title for w in sh.worksheets()] == ["Sheet1"]
    with pytest.raises(APIError, match="Unknown name \"bogus\""):
        sh.batch_update({"requests": [{"bogus": {}}]})


def test_template_features_round_trip(gc, emu):
    """Frozen rows, protection, validation and number formats are stored and returned."""
    sh = gc.create("Template")
    deals = sh.add_worksheet("Deals", rows=100, cols=5)
    sid = deals.id
    rule = {"condition": {"type": "ONE_OF_LIST", "values": [{"userEnteredValue": "Won"},
                                                            {"userEnteredValue": "Lost"}]},
            "strict": True, "showCustomUi": True}
    sh.batch_update({"requests": [
        {"updateSheetProperties": {"properties": {"sheetId": sid, "gridProperties": {"frozenRowCount": 1}},
                                   "fields": "gridProperties.frozenRowCount"}},
        {"addProtectedRange": {"protectedRange": {"range": {"sheetId": sid, "startRowIndex": 0, "endRowIndex": 1},
                                                  "description": "header", "warningOnly": True}}},
        {"setDataValidation": {"range": {"sheetId": sid, "startRowIndex": 1, "startColumnIndex": 2,
                                         "endColumnIndex": 3}, "rule": rule}},
        {"repeatCell": {"range": {"sheetId": sid, "startRowIndex": 1, "startColumnIndex": 3, "endColumnIndex": 4},
                        "cell": {"userEnteredFormat": {"numberFormat": {"type": "DATE", "pattern": "yyyy-mm-dd"}}},
                        "fields": "userEnteredFormat.numberFormat"}},
        {"repeatCell": {"range": {"sheetId": sid, "startRowIndex": 1, "startColumnIndex": 4, "endColumnIndex": 5},
                        "cell": {"userEnteredFormat": {"numberFormat": {"type": "CURRENCY",
                                                                        "pattern": "$#,##0.00"}}},
                        "fields": "userEnteredFormat.numberFormat"}}]})
    deals.update([["Deal", "Owner", "Stage", "Close", "Amount"], ["D-1", "Ann", "Won", 46027, 1234.5]], "A1")
    assert deals.get("A2:E2") == [["D-1", "Ann", "Won", "2026-01-05", "$1,234.50"]]
    meta = sh.fetch_sheet_metadata({"fields": "sheets(properties(title,gridProperties),protectedRanges)"})
    props = meta["sheets"][1]["properties"]
    assert props == {"title": "Deals", "gridProperties": {"rowCount": 100, "columnCount": 5, "frozenRowCount": 1}}
    assert meta["sheets"][1]["protectedRanges"][0]["description"] == "header"
    assert set(meta) == {"sheets"}
    grid = sh.fetch_sheet_metadata({"includeGridData": "true", "ranges": "Deals!C2:D2"})
    cells = grid["sheets"][0]["data"][0]["rowData"][0]["values"]
    assert cells[0]["dataValidation"] == rule and cells[0]["formattedValue"] == "Won"
    assert cells[1]["userEnteredFormat"]["numberFormat"]["type"] == "DATE"
    assert emu.cell(sh.id, "Deals", "C99")["validation"] == rule


def test_seeded_state_and_request_log(gc, emu):
    key = emu.create_spreadsheet("Seeded", sheets={"Deals": [["Deal ID", "Close", "Amount"],
                                                             ["D-1", dt.date(2026, 1, 5), 100],
                                                             ["D-2", None, "=C2*2"]]},
                                   value_input_option="USER_ENTERED")
    emu.reset_requests()
    sh = gc.open_by_key(key)
    ws = sh.worksheet("Deals")
    assert ws.get("A2:C3") == [["D-1", "2026-01-05", "100"], ["D-2", "", "200"]]
    assert emu.values(key, "Deals") == [["Deal ID", "Close", "Amount"], ["D-1", 46027, 100], ["D-2", "", 200]]
    assert [(r.method, r.path) for r in emu.requests] == [
        ("GET", f"/v4/spreadsheets/{key}"), ("GET", f"/v4/spreadsheets/{key}"),
        ("GET", f"/v4/spreadsheets/{key}/values/'Deals'!A2:C3")]
    assert emu.reads == 3 and emu.writes == 0
    assert emu.requests[0].query == {"includeGridData": ["false"]}


def test_spreadsheets_create_and_values_batch_update(emu):
    http = emu.session()
    base = "https://sheets.googleapis.com/v4/spreadsheets"
    r = http.post(base, json={"properties": {"title": "Master"}, "sheets": [
        {"properties": {"title": "Deals", "gridProperties": {"rowCount": 3, "columnCount": 2}}},
        {"properties": {"title": "Sync Log"}}]})
    assert r.status_code == 200
    made = r.json()
    key = made["spreadsheetId"]
    assert made["spreadsheetUrl"] == f"https://docs.google.com/spreadsheets/d/{key}/edit"
    assert [s["properties"]["title"] for s in made["sheets"]] == ["Deals", "Sync Log"]
    assert made["sheets"][1]["properties"]["gridProperties"] == {"rowCount": 1000, "columnCount": 26}
    r = http.post(f"{base}/{key}/values:batchUpdate", json={
        "valueInputOption": "USER_ENTERED", "includeValuesInResponse": True,
        "responseValueRenderOption": "UNFORMATTED_VALUE",
        "data": [{"range": "Deals!A1", "values": [["Deal ID", "Amount"], ["D-1", "1,200"]]},
                 {"range": "'Sync Log'!B2", "majorDimension": "COLUMNS", "values": [["2026-01-05", "=B2+1"]]}]})
    out = r.json()
    assert (out["totalUpdatedRows"], out["totalUpdatedColumns"], out["totalUpdatedCells"],
            out["totalUpdatedSheets"]) == (4, 3, 6, 2)
    assert [x["updatedRange"] for x in out["responses"]] == ["Deals!A1:B2", "'Sync Log'!B2:B3"]
    assert out["responses"][1]["updatedData"]["values"] == [[46027], [46028]]
    # a block that does not fit the grid changes nothing at all
    r = http.post(f"{base}/{key}/values:batchUpdate", json={"valueInputOption": "RAW", "data": [
        {"range": "Deals!A1", "values": [["changed"]]}, {"range": "Deals!A3", "values": [["x"], ["y"]]}]})
    assert r.status_code == 400 and "tried writing to row [4]" in r.json()["error"]["message"]
    assert emu.values(key, "Deals") == [["Deal ID", "Amount"], ["D-1", 1200]]


def test_rows_shift_and_copy(gc, emu):
    sh = gc.create("Shift")
    ws = sh.sheet1
    ws.update([["a"], ["b"], ["c"]], "A1")
    ws.insert_rows([["new"]], row=2)
    assert emu.values(sh.id, "Sheet1") == [["a"], ["new"], ["b"], ["c"]]
    ws.delete_rows(1)
    assert emu.values(sh.id, "Sheet1") == [["new"], ["b"], ["c"]]
    assert sh.fetch_sheet_metadata()["sheets"][0]["properties"]["gridProperties"]["rowCount"] == 1000
    copied = gc.copy(sh.id, title="Shift copy")
    assert copied.title == "Shift copy" and copied.id != sh.id
    assert copied.sheet1.get_all_values() == [["new"], ["b"], ["c"]]


def test_drive_version_and_modified_time_follow_writes(gc, emu):
    sh = gc.create("Versioned")
    http, url = emu.session(), f"https://www.googleapis.com/drive/v3/files/{sh.id}"
    before = http.get(url, params={"fields": "id,name,version,modifiedTime"}).json()
    assert set(before) == {"id", "name", "version", "modifiedTime"} and before["name"] == "Versioned"
    time.sleep(0.002)
    sh.sheet1.update([["x"]], "A1")
    after = http.get(url, params={"fields": "version,modifiedTime"}).json()
    assert int(after["version"]) > int(before["version"]) and after["modifiedTime"] > before["modifiedTime"]
    missing = http.get("https://www.googleapis.com/drive/v3/files/nope").json()
    assert missing["error"]["code"] == 404 and missing["error"]["errors"][0]["reason"] == "notFound"
