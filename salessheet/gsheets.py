"""Google Sheets: the standard workbook as a Google Sheet, and Google Sheets as sync sources and masters.

gspread and google-auth are imported only when a Google sheet is used (``pip install 'salessheet[google]'``).

Talking to the service (``GoogleClient``)
- Every request goes through one HTTP client that paces it and retries it. Pacing: at most ``reads`` GET and
  ``writes`` other requests to the Sheets API in any ``window`` seconds (default 55 a minute each, under the
  per-user quota of 60), a sliding window so that no minute, however aligned, sees more. Retries: 429, 408 and
  5xx (and Drive's 403 rate-limit answers) are retried up to ``Backoff.tries`` times with truncated exponential
  backoff plus jitter, honouring Retry-After; then ``GoogleRetryError``. gspread's own BackOffHTTPClient retries
  forever and is not used. Clock and sleep are injectable (tests run the quota logic on a fake clock).
- Credentials: ``--credentials FILE``, else GOOGLE_APPLICATION_CREDENTIALS, else gspread's default files
  (~/.config/gspread/service_account.json, then the OAuth user flow of ``gspread.oauth()`` with
  credentials.json / authorized_user.json). A service-account key that other users can read (mode & 0o077) is
  refused; an OAuth token file that others can read gets a warning. No key, token or secret is ever put in a
  message: messages built from library errors are scrubbed of every secret the credential file holds.
- Testing hook: ``SALESSHEET_GOOGLE_ENDPOINT=http://127.0.0.1:PORT`` sends every googleapis request to that
  local server (path kept, host rewritten), without authentication; only loopback addresses are accepted.
  In-process code may pass a ``requests.Session`` instead (``connect(session=...)``).

Reading a spreadsheet: one metadata request and one values:batchGet of every grid tab, UNFORMATTED_VALUE and
SERIAL_NUMBER dates, fed to the same reader as files (``book_from_grids``), so typing, aliases and issues are
the same. A source's content hash is Drive's ``version`` of the file (one Drive request, outside the Sheets
quota); when Drive cannot be asked (API disabled), it is a hash of the batchGet values (the full two reads,
kept for ``read()``).

Writing a master (``GoogleRun``): see the docstring of ``GoogleRun``.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import json
import math
import os
import random
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from . import schema
from .errors import Error, ReadError, SyncError

ENDPOINT_ENV = "SALESSHEET_GOOGLE_ENDPOINT"
GOOGLE_HOSTS = ("https://sheets.googleapis.com", "https://www.googleapis.com")
SHEETS_URL = "https://sheets.googleapis.com/v4/spreadsheets"
DRIVE_FILES_URL = "https://www.googleapis.com/drive/v3/files"
MAX_REQUEST_BYTES = 2_000_000  # a values:batchUpdate body stays under this (Google advises ~2 MB)
EPOCH = dt.datetime(1899, 12, 30)  # day 0 of SERIAL_NUMBER dates
META_FIELDS = ("spreadsheetId,properties.title,sheets.properties(sheetId,title,index,sheetType,hidden,"
               "gridProperties(rowCount,columnCount,frozenRowCount))")
_KEY_IN_URL = re.compile(r"docs\.google\.com/spreadsheets/(?:u/\d+/)?d/([A-Za-z0-9_-]{10,})")
_GSHEET = re.compile(r"^gsheet:([A-Za-z0-9_-]+)$")
_API_KEY = re.compile(r"/spreadsheets/([A-Za-z0-9_-]+)|/files/([A-Za-z0-9_-]+)")


# --- errors -------------------------------------------------------------------------------------

class GoogleError(Error):
    """Google Sheets could not do what was asked (the message says what and what to do)."""


class GoogleAuthError(GoogleError):
    """No usable credentials, or credentials Google refused."""


class GoogleAccessError(GoogleError):
    """A spreadsheet that does not exist or is not shared with the account salessheet uses."""

    def __init__(self, key: str, message: str):
        self.key = key
        super().__init__(message)


class GoogleRetryError(GoogleError):
    """Google kept failing (quota, server errors) after every retry."""


# --- names --------------------------------------------------------------------------------------

def google_key(spec) -> str | None:
    """The spreadsheet key in ``gsheet:KEY`` or a docs.google.com/spreadsheets/d/KEY URL, else None.
    (A URL that went through pathlib has lost a slash of its ``https://``: still found.)"""
    if spec is None or hasattr(spec, "read"):
        return getattr(spec, "key", None) if isinstance(spec, GoogleMaster) else None
    text = str(spec).strip()
    m = _GSHEET.match(text) or _KEY_IN_URL.search(text)
    return m.group(1) if m else None


def spreadsheet_url(key: str) -> str:
    return f"https://docs.google.com/spreadsheets/d/{key}"


def quote_sheet(title: str) -> str:
    """A sheet title as the A1 notation wants it: always quoted, quotes doubled."""
    return "'" + title.replace("'", "''") + "'"


def _key_of_url(url: str) -> str | None:
    m = _API_KEY.search(urlsplit(url).path)
    return (m.group(1) or m.group(2)) if m else None


# --- pacing and retrying ------------------------------------------------------------------------

class Pacer:
    """At most `reads` reads and `writes` writes in any `window` seconds (a sliding window: a fixed
    per-minute quota, however its minutes are aligned, is never exceeded). Thread-safe."""

    def __init__(self, reads: int = 55, writes: int = 55, window: float = 60.0, clock=time.monotonic,
                 sleep=time.sleep):
        self.limits = {"read": reads, "write": writes}
        self.window, self.clock, self.sleep = window, clock, sleep
        self._sent: dict[str, deque] = {"read": deque(), "write": deque()}
        self._lock = threading.Lock()
        self.waited = 0.0  # seconds spent waiting for the quota

    def acquire(self, kind: str) -> None:
        q, limit = self._sent[kind], self.limits[kind]
        while True:
            with self._lock:
                now = self.clock()
                while q and q[0] <= now - self.window:
                    q.popleft()
                if len(q) < limit:
                    q.append(now)
                    return
                wait = q[0] + self.window - now
            self.sleep(max(wait, 1e-3))
            self.waited += max(wait, 1e-3)


@dataclass
class Backoff:
    """Truncated exponential backoff with jitter: base * 2**n seconds (at most `cap`) plus up to `base`."""

    tries: int = 6  # retries after the first attempt
    base: float = 1.0
    cap: float = 32.0
    max_retry_after: float = 300.0  # a longer Retry-After is not waited for: the error says so
    rand: object = random.random

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        d = min(self.cap, self.base * 2 ** attempt) + self.rand() * self.base
        return max(d, retry_after) if retry_after is not None else d


def _retry_after(resp) -> float | None:
    v = resp.headers.get("Retry-After")
    if not v:
        return None
    try:
        return max(0.0, float(v))
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            return max(0.0, (parsedate_to_datetime(v) - dt.datetime.now(dt.timezone.utc)).total_seconds())
        except (TypeError, ValueError):
            return None


def _error_body(resp) -> dict:
    try:
        err = resp.json().get("error", {})
        return err if isinstance(err, dict) else {"message": str(err)}
    except ValueError:
        return {"message": (resp.text or "")[:300]}


def _retryable(resp) -> bool:
    code = resp.status_code
    if code in (408, 429) or code >= 500:
        return True
    if code == 403:  # Drive answers rate limits with 403
        reasons = {e.get("reason") for e in _error_body(resp).get("errors", []) if isinstance(e, dict)}
        return bool(reasons & {"rateLimitExceeded", "userRateLimitExceeded"})
    return False


@dataclass
class Stats:
    """Requests sent (retries included), by API and kind, and time spent waiting."""

    sheets_read: int = 0
    sheets_write: int = 0
    drive: int = 0
    retries: int = 0
    backoff_s: float = 0.0
    errors: dict = field(default_factory=dict)  # HTTP status -> count of failed attempts

    def snapshot(self) -> dict:
        return {"sheets_read": self.sheets_read, "sheets_write": self.sheets_write, "drive": self.drive,
                "retries": self.retries, "backoff_s": round(self.backoff_s, 3), "errors": dict(self.errors)}


def _http_client_class(pacer: Pacer, backoff: Backoff, stats: Stats, account):
    """A gspread HTTPClient whose every request is paced and retried (gspread calls it as cls(auth, session))."""
    import requests
    from gspread.http_client import HTTPClient

    class PacedHTTPClient(HTTPClient):
        def request(self, method, endpoint, params=None, data=None, json=None, files=None, headers=None):
            sheets = endpoint.startswith(SHEETS_URL)
            kind = "read" if method.upper() == "GET" else "write"
            # A structural batchUpdate is not repeated after a lost connection: it may have been applied.
            resend_on_network_error = kind == "read" or endpoint.endswith("values:batchUpdate")
            attempt = 0
            while True:
                if sheets:
                    pacer.acquire(kind)
                    setattr(stats, f"sheets_{kind}", getattr(stats, f"sheets_{kind}") + 1)
                else:
                    stats.drive += 1
                try:
                    resp = self.session.request(method=method, url=endpoint, json=json, params=params, data=data,
                                                files=files, headers=headers, timeout=self.timeout)
                except (requests.ConnectionError, requests.Timeout) as e:
                    if not resend_on_network_error or attempt >= backoff.tries:
                        raise GoogleRetryError(f"Google could not be reached ({type(e).__name__}) for "
                                               f"{_what(method, endpoint)}; check the connection and try again") \
                            from None
                    resp = None
                if resp is not None and resp.ok:
                    return resp
                if resp is not None:
                    stats.errors[resp.status_code] = stats.errors.get(resp.status_code, 0) + 1
                    if not _retryable(resp):
                        raise _api_error(resp, method, endpoint, account() if callable(account) else account)
                after = _retry_after(resp) if resp is not None else None
                if attempt >= backoff.tries or (after is not None and after > backoff.max_retry_after):
                    raise _gave_up(resp, method, endpoint, attempt, after)
                wait = backoff.delay(attempt, after)
                stats.retries += 1
                stats.backoff_s += wait
                pacer.sleep(wait)
                attempt += 1

    return PacedHTTPClient


def _what(method: str, endpoint: str) -> str:
    path = urlsplit(endpoint).path
    key = _key_of_url(endpoint)
    op = path.rsplit(":", 1)[1] if ":" in path.rsplit("/", 1)[-1] else ("read" if method.upper() == "GET" else "write")
    return f"{op} of spreadsheet {key}" if key else f"{method.upper()} {path}"


def _gave_up(resp, method, endpoint, attempt, after) -> GoogleRetryError:
    if resp is None:
        why = "the connection kept failing"
    else:
        err = _error_body(resp)
        why = f"HTTP {resp.status_code} {err.get('status') or ''}".strip() + (
            " (quota exceeded)" if resp.status_code == 429 else "")
    tail = (f"; Google asks to wait {after:.0f}s" if after is not None else "")
    return GoogleRetryError(f"Google Sheets gave up on {_what(method, endpoint)}: {why} after {attempt + 1} "
                            f"attempt(s){tail}. Nothing was changed by this request; try again in a few minutes")


def _api_error(resp, method, endpoint, account) -> GoogleError:
    err = _error_body(resp)
    code, message = resp.status_code, str(err.get("message", ""))[:300]
    key = _key_of_url(endpoint)
    disabled = "has not been used" in message or "is disabled" in message or err.get("status") == "SERVICE_DISABLED"
    if code in (403, 404) and key and not disabled:
        who = account or "the Google account salessheet signs in with"
        need = "Viewer is enough to read it" if method.upper() == "GET" else "it needs Editor access"
        what = "was not found" if code == 404 else "is not shared"
        return GoogleAccessError(key, f"Google spreadsheet {spreadsheet_url(key)} {what} (HTTP {code}): check the "
                                      f"link, then share it with {who} ({need})")
    if code == 401:
        return GoogleAuthError(f"Google refused the credentials (HTTP 401: {message}); check the key file or sign "
                               f"in again")
    return GoogleError(f"Google Sheets refused {_what(method, endpoint)} (HTTP {code}: {message})")


# --- credentials --------------------------------------------------------------------------------

def _secrets_of(info: dict) -> list[str]:
    return [str(info[k]) for k in ("private_key", "private_key_id", "refresh_token", "client_secret", "token")
            if info.get(k)]


def scrub(text: str, secrets) -> str:
    """`text` with every secret (and every long line of one, e.g. of a PEM key) replaced by [redacted]."""
    parts = []
    for s in secrets:
        parts.append(s)
        parts.extend(line for line in s.splitlines() if len(line) >= 16)
    for p in sorted(set(parts), key=len, reverse=True):
        if p:
            text = text.replace(p, "[redacted]")
    return text


def _read_key_file(path: Path) -> tuple[dict, list[str]]:
    """A credentials JSON file: (its content, warnings). Refuses a service-account key others can read."""
    path = Path(path).expanduser()
    try:
        raw = path.read_text(encoding="utf-8")
    except OSError as e:
        raise GoogleAuthError(f"{path}: cannot read the credentials file ({e.strerror})") from None
    try:
        info = json.loads(raw)
        if not isinstance(info, dict):
            raise ValueError
    except ValueError:
        raise GoogleAuthError(f"{path}: not a Google credentials file (not a JSON object)") from None
    warnings = []
    mode = path.stat().st_mode & 0o777
    if os.name != "nt" and mode & 0o077:
        fix = f"run: chmod 600 {path}"
        if info.get("type") == "service_account":
            raise GoogleAuthError(f"{path}: this service-account key can be read by other users of this computer "
                                  f"(mode {mode:03o}); it is a password to every sheet shared with the account. "
                                  f"Make it private: {fix}")
        warnings.append(f"{path} can be read by other users (mode {mode:03o}); it holds a sign-in token: {fix}")
    return info, warnings


def default_credentials_file(explicit=None) -> Path | None:
    """--credentials, else GOOGLE_APPLICATION_CREDENTIALS, else gspread's service_account.json if present."""
    if explicit:
        return Path(explicit).expanduser()
    env = os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
    if env:
        return Path(env).expanduser()
    from gspread.auth import DEFAULT_SERVICE_ACCOUNT_FILENAME

    return DEFAULT_SERVICE_ACCOUNT_FILENAME if DEFAULT_SERVICE_ACCOUNT_FILENAME.exists() else None


def _authorize(credentials, http_client) -> tuple[object, str | None, list[str]]:
    """(gspread Client, account e-mail or None, warnings) from the credentials in order of precedence."""
    import gspread
    from gspread.auth import DEFAULT_AUTHORIZED_USER_FILENAME, DEFAULT_CREDENTIALS_FILENAME

    path = default_credentials_file(credentials)
    if path is None:
        if DEFAULT_AUTHORIZED_USER_FILENAME.exists() or DEFAULT_CREDENTIALS_FILENAME.exists():
            warnings = []
            if DEFAULT_AUTHORIZED_USER_FILENAME.exists():
                _, warnings = _read_key_file(DEFAULT_AUTHORIZED_USER_FILENAME)
            gc = _guarded(lambda: gspread.oauth(http_client=http_client), [], DEFAULT_CREDENTIALS_FILENAME)
            return gc, None, warnings
        raise GoogleAuthError(
            "no Google credentials: pass --credentials KEY.json (a service-account key), set "
            "GOOGLE_APPLICATION_CREDENTIALS, put the key at ~/.config/gspread/service_account.json, or put an "
            "OAuth client file at ~/.config/gspread/credentials.json to sign in as yourself")
    info, warnings = _read_key_file(path)
    secrets = _secrets_of(info)
    kind = info.get("type") or ("installed" if "installed" in info or "web" in info else None)
    if kind == "service_account":
        gc = _guarded(lambda: gspread.service_account_from_dict(info, http_client=http_client), secrets, path)
        return gc, info.get("client_email"), warnings
    if kind == "authorized_user":
        from google.oauth2.credentials import Credentials

        creds = _guarded(lambda: Credentials.from_authorized_user_info(info, gspread.auth.DEFAULT_SCOPES),
                         secrets, path)
        return gspread.Client(auth=creds, http_client=http_client), info.get("account") or None, warnings
    if kind == "installed":  # an OAuth client: the user signs in in the browser, as gspread documents
        gc = _guarded(lambda: gspread.oauth(credentials_filename=str(path), http_client=http_client), secrets, path)
        return gc, None, warnings
    raise GoogleAuthError(f"{path}: not a service-account key or OAuth file (type {kind!r})")


def _guarded(make, secrets, path):
    """Run a credential loader; its errors become GoogleAuthError with every secret scrubbed out."""
    try:
        return make()
    except GoogleError:
        raise
    except Exception as e:  # google-auth and oauthlib raise many types; none may leak a key into a message
        msg = scrub(str(e).splitlines()[0] if str(e).strip() else "", secrets)[:200]
        raise GoogleAuthError(f"{path}: the credentials cannot be used ({type(e).__name__}"
                              f"{': ' + msg if msg else ''})") from None


def _loopback(endpoint: str) -> str:
    u = urlsplit(endpoint)
    host = u.hostname or ""
    try:
        ok = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        ok = False
    if u.scheme not in ("http", "https") or not ok:
        raise GoogleError(f"{ENDPOINT_ENV} must be a local test server such as http://127.0.0.1:8080, not {endpoint!r}")
    return endpoint.rstrip("/")


def rewriting_session(endpoint: str):
    """A requests.Session sending googleapis requests to `endpoint` (a local emulator), path kept, no auth."""
    import requests

    base = _loopback(endpoint)

    class RewritingSession(requests.Session):
        def request(self, method, url, *args, **kwargs):
            for host in GOOGLE_HOSTS:
                if url.startswith(host):
                    url = base + url[len(host):]
                    break
            return super().request(method, url, *args, **kwargs)

    return RewritingSession()


class GoogleClient:
    """The Sheets and Drive calls salessheet makes, paced and retried; one per process and account."""

    def __init__(self, gc, account: str | None, pacer: Pacer, backoff: Backoff, stats: Stats,
                 warnings: list[str] | None = None):
        self.gc, self.account, self.pacer, self.backoff, self.stats = gc, account, pacer, backoff, stats
        self.warnings = list(warnings or [])
        self.http = gc.http_client
        self.http.set_timeout((15, 300))

    def __repr__(self) -> str:
        return f"GoogleClient(account={self.account!r})"

    def metadata(self, key: str) -> dict:
        return self.http.fetch_sheet_metadata(key, params={"includeGridData": "false", "fields": META_FIELDS})

    def batch_get(self, key: str, ranges: list[str]) -> list[dict]:
        if not ranges:
            return []
        got = self.http.values_batch_get(key, ranges, params={
            "valueRenderOption": "UNFORMATTED_VALUE", "dateTimeRenderOption": "SERIAL_NUMBER",
            "majorDimension": "ROWS"})
        return got.get("valueRanges", [])

    def write_values(self, key: str, data: list[dict], input_option: str = "RAW") -> int:
        """values:batchUpdate, chunked to stay under MAX_REQUEST_BYTES; data: [{"range", "values"}].
        Returns the number of requests sent."""
        sent = 0
        for chunk in _chunks(data):
            self.http.values_batch_update(key, {"valueInputOption": input_option, "data": chunk})
            sent += 1
        return sent

    def batch_update(self, key: str, requests: list[dict]) -> dict:
        return self.http.batch_update(key, {"requests": requests}) if requests else {}

    def drive_version(self, key: str) -> dict:
        r = self.http.request("get", f"{DRIVE_FILES_URL}/{key}", params={
            "fields": "id,name,version,modifiedTime", "supportsAllDrives": "true"})
        return r.json()

    def create(self, title: str) -> str:
        r = self.http.request("post", DRIVE_FILES_URL, params={"supportsAllDrives": "true"},
                              json={"name": title, "mimeType": "application/vnd.google-apps.spreadsheet"})
        return r.json()["id"]

    def share(self, key: str, email: str, role: str = "writer") -> None:
        self.http.insert_permission(key, email, perm_type="user", role=role, notify=True)


_clients: dict = {}
_clients_lock = threading.Lock()


def connect(credentials=None, session=None, pacer: Pacer | None = None, backoff: Backoff | None = None,
            fresh: bool = False) -> GoogleClient:
    """The client for these credentials (cached per process: the quota is per account, so is the pacer).

    session: a requests.Session to send everything through without auth (tests); the
    SALESSHEET_GOOGLE_ENDPOINT hook makes one. credentials: a key/OAuth file (see the module doc)."""
    endpoint = os.environ.get(ENDPOINT_ENV)
    cache_key = (str(credentials or ""), id(session) if session is not None else None, endpoint)
    with _clients_lock:
        if not fresh and pacer is None and backoff is None and cache_key in _clients:
            return _clients[cache_key]
    try:
        import gspread
    except ImportError:
        raise GoogleError("Google Sheets support needs gspread and google-auth: pip install 'salessheet[google]'") \
            from None
    pacer, backoff, stats = pacer or Pacer(), backoff or Backoff(), Stats()
    box: dict = {}
    http_client = _http_client_class(pacer, backoff, stats, lambda: box.get("account"))
    warnings: list[str] = []
    if session is None and endpoint:
        session = rewriting_session(endpoint)
    if session is not None:
        account = None
        if credentials:  # not used to sign in here, but still checked and named in messages
            info, warnings = _read_key_file(Path(credentials))
            account = info.get("client_email")
        gc = gspread.Client(auth=None, session=session, http_client=http_client)
    else:
        gc, account, warnings = _authorize(credentials, http_client)
    box["account"] = account
    client = GoogleClient(gc, account, pacer, backoff, stats, warnings)
    with _clients_lock:
        _clients[cache_key] = client
    return client


_default: dict = {}


def use(credentials=None, session=None, client: GoogleClient | None = None) -> None:
    """Set what Google sources and masters built from names (gsheet:KEY, URLs) connect with."""
    _default.clear()
    _default.update(credentials=credentials, session=session, client=client)


def default_client() -> GoogleClient:
    if _default.get("client") is not None:
        return _default["client"]
    return connect(_default.get("credentials"), _default.get("session"))


# --- chunking writes ----------------------------------------------------------------------------

def _row_bytes(row: list) -> int:
    return len(json.dumps(row, allow_nan=False)) + 2  # as requests encodes it (ASCII, ", " between rows)


def _chunks(data: list[dict], limit: int = MAX_REQUEST_BYTES):
    """Requests' worth of ranges, each request's JSON under `limit`; a long range is split by rows."""
    out, size = [], 200
    for item in data:
        rng, rows = item["range"], item["values"]
        sheet, start = _split_a1(rng)
        head = len(sheet) + 40  # {"range": ..., "values": []}
        # (sheet holds the start column too: 'Deals'!A)
        begin, acc = 0, head
        for i, row in enumerate(rows):
            b = _row_bytes(row)
            if size + acc + b > limit and (i > begin or out):
                if i > begin:
                    out.append({"range": f"{sheet}{start + begin}", "values": rows[begin:i]})
                yield out
                out, size, begin, acc = [], 200, i, head
            acc += b
        if rows[begin:] or not rows:
            out.append({"range": f"{sheet}{start + begin}", "values": rows[begin:]})
            size += acc
    if out:
        yield out


def _split_a1(rng: str) -> tuple[str, int]:
    """("'Sheet'!B", first row) of a range given by its top-left cell, like 'Sheet'!B5."""
    sheet, _, cell = rng.rpartition("!")
    m = re.fullmatch(r"([A-Z]{1,3})(\d+)", cell)
    if not m:
        raise ValueError(f"write ranges are given by their top-left cell, like 'Deals'!A2: not {rng}")
    return f"{sheet}!{m.group(1)}", int(m.group(2))


# --- reading ------------------------------------------------------------------------------------

@dataclass
class Fetched:
    """A spreadsheet as read: its title and every grid tab's rows (UNFORMATTED_VALUE, serial dates)."""

    key: str
    title: str
    sheets: list[tuple[str, list[list]]]
    meta: dict = field(default_factory=dict, repr=False)

    def values_hash(self) -> str:
        return grids_hash({t: rows for t, rows in self.sheets})


def fetch(client: GoogleClient, key: str, only: set[str] | None = None) -> Fetched:
    """One metadata request and one values:batchGet of the grid tabs (those in `only`, when given)."""
    meta = client.metadata(key)
    props = [s.get("properties", {}) for s in meta.get("sheets", [])]
    wanted = None if only is None else {t.casefold() for t in only}  # Google's tab names ignore case
    titles = [p["title"] for p in sorted(props, key=lambda p: p.get("index", 0))
              if p.get("sheetType", "GRID") == "GRID" and (wanted is None or p["title"].casefold() in wanted)]
    ranges = client.batch_get(key, [quote_sheet(t) for t in titles])
    if len(ranges) != len(titles):
        raise GoogleError(f"Google returned {len(ranges)} ranges for the {len(titles)} tabs of spreadsheet {key}")
    sheets = [(t, vr.get("values", [])) for t, vr in zip(titles, ranges)]
    return Fetched(key, meta.get("properties", {}).get("title") or key, sheets, meta)


def _cells(row: list) -> list:
    # JSON gives whole numbers as int; files give float: the same value must type and hash the same.
    return [float(v) if type(v) is int else v for v in row]


def book_from_grids(source: str, sheets: list[tuple[str, list[list]]], dayfirst: bool | None = None):
    """A Book from tabs' rows, exactly as read_workbook does it for a file's sheets."""
    from .reader import book_from_sheets, no_gc
    from .sources import Sheet
    from .values import trim_row

    with no_gc():
        objs = [Sheet(title, _rows=[trim_row(_cells(r)) for r in rows]) for title, rows in sheets]
        return book_from_sheets(source, objs, None, dayfirst)


def read_spreadsheet(spec, client: GoogleClient | None = None, dayfirst: bool | None = None):
    """Read a Google spreadsheet (gsheet:KEY, URL or key) into a Book, like read_workbook reads a file."""
    key = google_key(spec) or str(spec)
    f = fetch(client or default_client(), key)
    return book_from_grids(f.title, f.sheets, dayfirst)


def _norm(v):
    if v is None or v == "":
        return None
    if type(v) is int or type(v) is float:
        return float(v)
    return v


def norm_grid(rows: list[list]) -> list[list]:
    """Rows as Google gives them back: blanks None, numbers float, trailing blanks and empty rows dropped."""
    out = []
    for r in rows:
        cells = [_norm(v) for v in r]
        while cells and cells[-1] is None:
            cells.pop()
        out.append(cells)
    while out and not out[-1]:
        out.pop()
    return out


def grids_hash(grids: dict[str, list[list]]) -> str:
    h = hashlib.blake2b(digest_size=16)
    for title in sorted(grids):
        h.update(json.dumps([title, norm_grid(grids[title])], ensure_ascii=False, allow_nan=False,
                            separators=(",", ":")).encode("utf-8"))
    return h.hexdigest()


class GoogleSource:
    """A Google spreadsheet as a sync source (same members as sources_config.FileSource)."""

    kind = "google"
    parallel_safe = False  # one pacer per process: never read in worker processes

    def __init__(self, key: str, client: GoogleClient | None = None):
        self.key = key
        self._client = client
        self._title: str | None = None
        self._fetched: Fetched | None = None

    def __repr__(self) -> str:
        return f"GoogleSource({self.key!r})"

    @property
    def client(self) -> GoogleClient:
        if self._client is None:
            self._client = default_client()
        return self._client

    @property
    def id(self) -> str:
        return f"gsheet:{self.key}"

    @property
    def name(self) -> str:
        return self._title or self.id

    def content_hash(self) -> str | None:
        """Drive's version of the file (changes with every edit); None when it cannot be read.
        Without Drive (API disabled for the project), a hash of the values, read now and kept for read()."""
        self._fetched = None
        try:
            meta = self.client.drive_version(self.key)
        except GoogleAccessError:
            return None
        except (GoogleAuthError, GoogleRetryError):
            raise
        except GoogleError:
            meta = {}
        if meta.get("name"):
            self._title = meta["name"]
        tag = meta.get("version") or meta.get("modifiedTime")
        if tag:
            return f"drive:{tag}"
        try:
            self._fetched = fetch(self.client, self.key)
        except GoogleAccessError:
            return None
        self._title = self._fetched.title
        return "values:" + self._fetched.values_hash()

    def read(self):
        try:
            f = self._fetched or fetch(self.client, self.key)
        except GoogleAccessError as e:
            raise ReadError(self.id, str(e)) from None
        self._fetched = None  # one use: the next sync reads afresh
        self._title = f.title
        return book_from_grids(self.name, f.sheets)


# --- cells we write -----------------------------------------------------------------------------

_FORMATS = {
    "date": {"type": "DATE", "pattern": "yyyy-mm-dd"},
    "datetime": {"type": "DATE_TIME", "pattern": "yyyy-mm-dd hh:mm"},
    "money": {"type": "NUMBER", "pattern": "#,##0.00"},
    "percent": {"type": "PERCENT", "pattern": "0%"},
    "int": {"type": "NUMBER", "pattern": "0"},
    "percent1": {"type": "PERCENT", "pattern": "0.0%"},
    "days": {"type": "NUMBER", "pattern": "0.0"},
}
# Columns sync adds and the sheets it owns beside the standard tables: their kinds, for number formats.
_EXTRA_KINDS = {"Source Row": "int", "Synced At": "datetime", "Row": "int", "Time": "datetime"}


def _kind_of(table: str, column: str) -> str | None:
    t = schema.TABLES.get(table)
    if t is not None and column in t.names:
        return t.column(column).kind
    return _EXTRA_KINDS.get(column)


def serial(v) -> float:
    """A date/datetime as a SERIAL_NUMBER (days since 1899-12-30)."""
    if isinstance(v, dt.datetime):
        return (v.replace(tzinfo=None) - EPOCH) / dt.timedelta(days=1)
    return float((dt.date(v.year, v.month, v.day) - EPOCH.date()).days)


def _cell(v):
    """One value as written RAW: text stays text (never a formula), blanks are ""."""
    import numpy as np
    import pandas as pd

    if v is None or v is pd.NA or v is pd.NaT:
        return ""
    if isinstance(v, str):
        return v
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, float, np.number)):
        x = float(v)
        return "" if x != x else x if math.isfinite(x) else str(v)
    if isinstance(v, (dt.datetime, dt.date)):  # Timestamp too
        return serial(v)
    if isinstance(v, dt.time):
        return (v.hour * 3600 + v.minute * 60 + v.second) / 86400
    return str(v)


def column_cells(s, kind: str | None) -> tuple[list, str | None]:
    """A frame column as cells, and the kind its number format follows."""
    import numpy as np

    if s.dtype.kind == "M":
        arr = s.to_numpy(dtype="datetime64[us]")
        nat = np.isnat(arr)
        days = (arr - np.datetime64("1899-12-30T00:00:00", "us")) / np.timedelta64(1, "D")
        out = days.astype(object)
        out[nat] = ""
        if kind not in ("date", "datetime"):
            whole = (arr[~nat].astype("datetime64[D]") == arr[~nat]).all()
            kind = "date" if whole else "datetime"
        return out.tolist(), kind
    if s.dtype.kind == "f":
        arr = s.to_numpy()
        out = arr.astype(object)
        out[np.isnan(arr)] = ""
        bad = ~np.isfinite(arr) & ~np.isnan(arr)
        out[bad] = [str(x) for x in arr[bad]]
        return out.tolist(), kind if kind in _FORMATS else None
    vals = [_cell(v) for v in s.tolist()]
    if kind is None:
        filled = [v for v in s.tolist() if _cell(v) != ""]
        if filled and all(isinstance(v, (dt.date, dt.datetime)) for v in filled):
            kind = "date" if all(not isinstance(v, dt.datetime) or v == v.replace(hour=0, minute=0, second=0,
                                                                                    microsecond=0) for v in filled) \
                else "datetime"
    return vals, kind if kind in _FORMATS else None


@dataclass
class Grid:
    """A tab's content: rows (header first) and each column's number format kind."""

    rows: list[list]
    kinds: list[str | None]
    formulas: bool = False  # written USER_ENTERED (the Dashboard), else RAW
    cell_kinds: dict = field(default_factory=dict)  # (row, column) -> kind, for single cells

    @property
    def width(self) -> int:
        return max((len(r) for r in self.rows), default=1) or 1


def frame_grid(table: str, df) -> Grid:
    headers = [str(c) for c in df.columns]
    cols, kinds = [], []
    for c in df.columns:
        vals, kind = column_cells(df[c], _kind_of(table, str(c)))
        cols.append(vals)
        kinds.append(kind)
    rows = [headers] + ([list(r) for r in zip(*cols)] if len(df) else [])
    return Grid(rows, kinds)


# --- the Dashboard ------------------------------------------------------------------------------

_REF = re.compile(r"([A-Za-z_][\w.]*)\[((?:'.|[^\]'])*)\]")


def google_formula(formula: str, columns: dict[str, list[str]]) -> str | None:
    """A template Dashboard formula with its structured references (Deals[Amount]) as open-ended ranges
    ('Deals'!$I$2:$I), which Google Sheets has; None when a referenced column is missing."""
    from .reader import column_letter

    missing = []

    def sub(m):
        table, col = m.group(1), re.sub(r"'(.)", r"\1", m.group(2))
        cols = columns.get(table, [])
        if col not in cols:
            missing.append(f"{table}[{col}]")
            return "0"
        L = column_letter(cols.index(col))
        return f"{quote_sheet(table)}!${L}$2:${L}"

    out = _REF.sub(sub, formula)
    return None if missing else out


def dashboard_grid(columns: dict[str, list[str]]) -> Grid:
    """The template's KPI block (labels, native formulas, explanations) for a Google sheet whose tables have
    these columns. Array formulas are wrapped in ARRAYFORMULA, Google's way to say so."""
    from . import template

    where = {**template.DASHBOARD_CELLS, **template.DASHBOARD_COUNT_CELLS}
    formulas = template.dashboard_formulas()
    last = max(int(a[1:]) for a in where.values())
    rows = [["", "", ""] for _ in range(last)]
    rows[0][0] = "Sales dashboard"
    rows[1][0] = ("Worked out from the Deals, Leads, Costs and Stages tabs, all time. Nothing to type here.")
    rows[2] = ["KPI", "Value", "How it is worked out"]
    first_count = min(int(a[1:]) for a in template.DASHBOARD_COUNT_CELLS.values())
    rows[first_count - 2] = ["Counts behind the KPIs", "", ""]
    cell_kinds = {}
    for key, addr in where.items():
        label, formula, kind, note = formulas[key]
        r = int(addr[1:]) - 1
        f = google_formula(formula, columns)
        if f is None:
            rows[r] = [label, "n/a", note + " (a column it needs is missing)"]
            continue
        f = f"=ARRAYFORMULA({f})" if key == "new_customers" else "=" + f
        rows[r] = [label, f, note]
        cell_kinds[(r, 1)] = {"money": "money", "percent": "percent1", "count": "int", "days": "days"}.get(kind)
    return Grid(rows, [None, None, None], formulas=True, cell_kinds=cell_kinds)


# --- the master ---------------------------------------------------------------------------------

TEMP_PREFIX = "salessheet tmp: "  # hidden tabs a sync writes before swapping them in


def default_state_path(key: str) -> Path:
    """Where a Google master's state store lives unless --state says: the user's data folder."""
    base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "salessheet"
    return base / f"gsheet-{key}.salessheet.db"


class GoogleMaster:
    """A Google spreadsheet as the sync master (what the sync engine's `master` is for files)."""

    def __init__(self, key: str, client: GoogleClient | None = None):
        self.key = key
        self._client = client
        self._title: str | None = None

    @property
    def client(self) -> GoogleClient:
        if self._client is None:
            self._client = default_client()
        return self._client

    @property
    def name(self) -> str:
        return self._title or f"gsheet:{self.key}"

    @property
    def url(self) -> str:
        return spreadsheet_url(self.key)

    def __str__(self) -> str:
        return self.url

    def __repr__(self) -> str:
        return f"GoogleMaster({self.key!r})"


@dataclass
class _Staged:
    """Temp tabs written by a sync, waiting to be swapped in: owned name -> (temp sheetId, rows, columns).
    Stands where a file master has its temp file: unlink() discards it."""

    temps: dict[str, tuple[int, int, int]]
    master: "GoogleMaster"
    requests: int = 0

    def unlink(self, missing_ok: bool = True) -> None:
        """Delete the temp tabs (best effort: a sync that cannot leaves them to the next one)."""
        if not self.temps:
            return
        try:
            self.master.client.batch_update(self.master.key, [{"deleteSheet": {"sheetId": sid}}
                                                              for sid, _, _ in self.temps.values()])
        except GoogleError:
            pass
        self.temps = {}


_run_cls = None


def run_class():
    """The sync run for a Google master (sync._Run with the master's five steps done through the API)."""
    global _run_cls
    if _run_cls is not None:
        return _run_cls
    from . import sync as S
    from .master import DASHBOARD, OWNED

    data_tabs = tuple(n for n in OWNED if n != DASHBOARD)

    class GoogleRun(S._Run):
        """Writes a Google master so that it is never seen half written.

        1. Read (2 requests): metadata, and one batchGet of the owned data tabs. Their normalised values'
           hash plays the file hash's part (clean / edited / stale), and they are the master read back
           when a person edited it. The Dashboard holds formulas: not hashed.
        2. Stage (1 + k + 1 requests): one batchUpdate deletes temp tabs left by a killed sync and adds a
           hidden temp tab per owned tab, sized exactly, with number formats; then values:batchUpdate RAW
           (chunked under 2 MB) writes the tables, and one USER_ENTERED request the Dashboard's formulas.
           Nothing visible has changed yet; a failure here deletes the temp tabs (or the next sync does).
        3. The state store commits (as for files), recording the staged content's hash.
        4. Swap (1 request): one batchUpdate, which Google applies atomically, per owned tab resizes it to the
           new size (which drops stale rows and columns), copy-pastes the temp tab over it and deletes the
           temp; an owned tab the master lacks is the temp tab renamed and shown. The owned tabs keep their
           sheet ids, so other tabs' formulas and charts that point at them keep working. Tabs the master
           does not own are never in a request.
        A failure between 3 and 4 leaves the old master with the new state: the next sync sees the
        master's hash equal the previous one and writes it again from the state, as for files.
        """

        def _master_hash(self):
            gm = self.master
            try:
                f = fetch(gm.client, gm.key, only=set(data_tabs))
            except GoogleAccessError as e:
                who = gm.client.account or "the Google account salessheet signs in with"
                raise GoogleAccessError(gm.key, f"the master {gm.url} cannot be opened ({str(e).split(' (')[0]}): "
                                                f"create it in Google Sheets and share it with {who} as Editor") \
                    from None
            gm._title = f.title
            self._gfetched = f
            self._gtabs = {s["properties"]["title"].casefold(): s["properties"] for s in f.meta.get("sheets", [])
                           if "properties" in s}
            present = {next(n for n in data_tabs if n.casefold() == t.casefold()): rows for t, rows in f.sheets}
            return grids_hash(present) if present else None

        def _remove_stale_temps(self) -> None:
            pass  # done by the staging request, which knows the tabs

        def _master_book(self):
            tables = [(t, rows) for t, rows in self._gfetched.sheets
                      if t.casefold() in {n.casefold() for n in (*S.TABLES, "Stages")}]
            return book_from_grids(self.master.name, tables)

        def _write_temp(self):
            gm, client = self.master, self.master.client
            self._phase("state")
            frames = self.frames()
            grids = {name: frame_grid(name, df) for name, df in frames.items()}
            new_hash = grids_hash({n: g.rows for n, g in grids.items()})
            grids[DASHBOARD] = dashboard_grid({t: list(map(str, frames[t].columns)) for t in frames})
            taken = {p.get("sheetId") for p in self._gtabs.values()}
            stale = [p["sheetId"] for t, p in self._gtabs.items() if t.startswith(TEMP_PREFIX.casefold())]
            requests = [{"deleteSheet": {"sheetId": sid}} for sid in stale]
            rng = random.Random()
            temps = {}
            for name in [n for n in OWNED if n in grids]:
                g = grids[name]
                sid = rng.randrange(1, 2**31 - 1)
                while sid in taken:
                    sid = rng.randrange(1, 2**31 - 1)
                taken.add(sid)
                n_rows, n_cols = max(len(g.rows), 2), g.width
                temps[name] = (sid, n_rows, n_cols)
                requests.append({"addSheet": {"properties": {
                    "sheetId": sid, "title": TEMP_PREFIX + name, "hidden": True, "sheetType": "GRID",
                    "gridProperties": {"rowCount": n_rows, "columnCount": n_cols,
                                       "frozenRowCount": 0 if g.formulas else 1}}}})
                requests += _format_requests(sid, g, n_rows)
            staged = _Staged(temps, gm)
            client.batch_update(gm.key, requests)
            staged.requests += 1
            try:
                raw = [{"range": f"{quote_sheet(TEMP_PREFIX + n)}!A1", "values": g.rows}
                       for n, g in grids.items() if not g.formulas]
                staged.requests += client.write_values(gm.key, raw, "RAW")
                formulas = [{"range": f"{quote_sheet(TEMP_PREFIX + n)}!A1", "values": g.rows}
                            for n, g in grids.items() if g.formulas]
                staged.requests += client.write_values(gm.key, formulas, "USER_ENTERED")
                S._point("after-master-temp")
            except BaseException:
                staged.unlink()
                raise
            return staged, new_hash

        def _replace(self, staged) -> None:
            requests = []
            for name, (sid, n_rows, n_cols) in staged.temps.items():
                dest = self._gtabs.get(name.casefold())
                frozen = 0 if name == DASHBOARD else 1
                if dest is None:
                    requests.append({"updateSheetProperties": {"properties": {
                        "sheetId": sid, "title": name, "hidden": False}, "fields": "title,hidden"}})
                    continue
                did = dest["sheetId"]
                requests.append({"updateSheetProperties": {"properties": {"sheetId": did, "gridProperties": {
                    "rowCount": n_rows, "columnCount": n_cols, "frozenRowCount": frozen}},
                    "fields": "gridProperties.rowCount,gridProperties.columnCount,gridProperties.frozenRowCount"}})
                whole = {"startRowIndex": 0, "endRowIndex": n_rows, "startColumnIndex": 0, "endColumnIndex": n_cols}
                requests.append({"copyPaste": {"source": {"sheetId": sid, **whole},
                                               "destination": {"sheetId": did, **whole},
                                               "pasteType": "PASTE_NORMAL", "pasteOrientation": "NORMAL"}})
                requests.append({"deleteSheet": {"sheetId": sid}})
            try:
                self.master.client.batch_update(self.master.key, requests)
            except GoogleError as e:
                raise SyncError(f"{self.master.url}: the new master was written into hidden tabs but could not be "
                                f"swapped in ({e}); the master is unchanged. Run sync again to finish") from None
            staged.requests += 1
            staged.temps = {}  # they are the master's tabs now

    _run_cls = GoogleRun
    return GoogleRun


def _format_requests(sid: int, g: Grid, n_rows: int) -> list[dict]:
    """Bold header, and each typed column's number format over its data rows."""
    out = [{"repeatCell": {"range": {"sheetId": sid, "startRowIndex": 0, "endRowIndex": 1},
                           "cell": {"userEnteredFormat": {"textFormat": {"bold": True}}},
                           "fields": "userEnteredFormat.textFormat.bold"}}]
    for (r, c), kind in g.cell_kinds.items():
        if kind in _FORMATS:
            out.append({"repeatCell": {"range": {"sheetId": sid, "startRowIndex": r, "endRowIndex": r + 1,
                                                 "startColumnIndex": c, "endColumnIndex": c + 1},
                                       "cell": {"userEnteredFormat": {"numberFormat": _FORMATS[kind]}},
                                       "fields": "userEnteredFormat.numberFormat"}})
    for j, kind in enumerate(g.kinds):
        if kind in _FORMATS:
            out.append({"repeatCell": {"range": {"sheetId": sid, "startRowIndex": 1, "endRowIndex": n_rows,
                                                 "startColumnIndex": j, "endColumnIndex": j + 1},
                                       "cell": {"userEnteredFormat": {"numberFormat": _FORMATS[kind]}},
                                       "fields": "userEnteredFormat.numberFormat"}})
    return out


def resolve(specs, master: GoogleMaster | None, state_path: Path | None) -> tuple[list, list[str]]:
    """Sync sources from SOURCE arguments: Google specs, source objects, files/folders/globs; each once."""
    from .sources_config import expand

    client = master._client if master is not None else None
    out, warnings, seen = [], [], set()
    for spec in specs:
        key = google_key(spec)
        if hasattr(spec, "read") and hasattr(spec, "content_hash"):
            found = [spec]
        elif key:
            if master is not None and key == master.key:
                warnings.append(f"{spec}: is the master itself; not read as a source")
                continue
            found = [GoogleSource(key, client)]
        else:
            found, w = expand([spec], exclude=[state_path] if state_path else ())
            warnings += w
        for s in found:
            if s.id not in seen:
                seen.add(s.id)
                out.append(s)
    return out, warnings


def sync_google(sources, into, state=None, dry_run: bool = False, prune: bool = False, assign_ids: bool = False,
                progress=None, wait: float = 30.0, workers: int | None = None, client: GoogleClient | None = None):
    """sync.sync() into a Google master (`into`: gsheet:KEY, a URL or a GoogleMaster): same arguments, same
    SyncResult (its master is the GoogleMaster; str() gives the URL). The state store defaults to
    default_state_path(key)."""
    from . import state as state_mod

    t0 = time.perf_counter()
    master = into if isinstance(into, GoogleMaster) else GoogleMaster(google_key(into), client)
    if master._client is None and client is not None:
        master._client = client
    state_path = Path(state).expanduser().resolve() if state else default_state_path(master.key)
    srcs, warnings = resolve(list(sources), master, state_path)
    if not srcs:
        raise SyncError("no sources to sync: " + ("; ".join(warnings) if warnings else "give sheets, files or folders"))
    Run = run_class()
    if dry_run:
        with state_mod.lock(state_path, wait, create=False), \
                state_mod.State.open(state_path, readonly=True, untouched=True) as st:
            return Run(srcs, warnings, master, state_path, st, True, prune, False, progress, 1, t0).run()
    state_path.parent.mkdir(parents=True, exist_ok=True)
    with state_mod.lock(state_path, wait):
        with state_mod.State.open(state_path) as st:
            run = Run(srcs, warnings, master, state_path, st, False, prune, assign_ids, progress, 1, t0)
            result = run.run()
    result.notes.extend(master.client.warnings)
    return result


# --- the standard workbook as a Google Sheet ----------------------------------------------------

def _value(v) -> dict:
    if isinstance(v, bool):
        return {"boolValue": v}
    if isinstance(v, (int, float)):
        return {"numberValue": v}
    if isinstance(v, str) and v.startswith("="):
        return {"formulaValue": v}
    return {"stringValue": str(v)}


def _update_cells(sid: int, rows: list[list]) -> dict:
    """One updateCells writing `rows` from A1 (text as text; only "=..." strings are formulas)."""
    return {"updateCells": {
        "start": {"sheetId": sid, "rowIndex": 0, "columnIndex": 0},
        "rows": [{"values": [{"userEnteredValue": _value(v)} if v not in ("", None) else {} for v in r]}
                 for r in rows],
        "fields": "userEnteredValue"}}


def _validation_rule(table: schema.Table, col: schema.Column, j: int) -> dict | None:
    """The Google form of the template's data validation for one column (see template._validation)."""
    from . import template
    from .reader import column_letter

    if col.dropdown:
        src = schema.STAGES if col.dropdown == "Stage" else schema.LISTS
        L = column_letter(src.names.index(col.dropdown))
        cond = {"type": "ONE_OF_RANGE", "values": [{"userEnteredValue": f"={quote_sheet(src.name)}!${L}$2:${L}"}]}
    elif col.choices:
        cond = {"type": "ONE_OF_LIST", "values": [{"userEnteredValue": c} for c in col.choices]}
    elif col.kind in ("date", "datetime"):
        cond = {"type": "DATE_IS_VALID"}
    elif col.kind in ("money", "number"):
        cond = {"type": "NUMBER_GREATER_THAN_EQ", "values": [{"userEnteredValue": "0"}]}
    elif col.kind == "percent":
        cond = {"type": "NUMBER_BETWEEN", "values": [{"userEnteredValue": "0"}, {"userEnteredValue": "1"}]}
    elif col.kind == "int":
        L = column_letter(j)
        cond = {"type": "CUSTOM_FORMULA", "values": [{"userEnteredValue": f"=AND(ISNUMBER({L}2),{L}2>=0,INT({L}2)={L}2)"}]}
    elif col.name == table.key:
        L = column_letter(j)
        cond = {"type": "CUSTOM_FORMULA", "values": [{"userEnteredValue": f"=COUNTIF(${L}$2:${L},{L}2)<=1"}]}
    else:
        return None
    rule = {"condition": cond, "strict": True, "showCustomUi": cond["type"].startswith("ONE_OF")}
    help_text = template.column_help(table, col)
    if help_text:
        rule["inputMessage"] = help_text[:255]
    return rule


def _howto_rows(team: str | None) -> list[list]:
    stages = schema.DEFAULT_STAGES
    won = ", ".join(s.name for s in stages if s.is_won)
    lost = ", ".join(s.name for s in stages if s.is_closed and not s.is_won)
    rows = [[f"How to use this sales sheet{f' ({team})' if team else ''}"],
            ["Keep your deals here. Your manager combines everyone's sheets into one report: type in the tabs and "
             "keep the layout as it is."], [""]]
    rows += [[f"{name} tab: {schema.TABLES[name].about} Type in the first empty row."]
             for name in ("Deals", "Leads", "Costs", "Targets")]
    rows += [["Stages tab: the steps a deal goes through. Lists tab: the teams, reps and lead sources the dropdowns "
              "offer; add one there and it appears in the menus."],
             [f"Move the Stage along as the deal progresses; when it ends set it to {won} or {lost} and fill in "
              "Closed Date."],
             ["Don't rename, move or delete the header row or the tabs: sync and the Dashboard find your data by "
              "those names. Extra columns are fine at the right-hand end."],
             ["The Dashboard tab works out revenue, win rate, pipeline and more by itself."]]
    return rows


def template_requests(team: str | None = None, remove: list[int] = ()) -> list[dict]:
    """Every request that turns a new spreadsheet into the standard workbook (one batchUpdate)."""
    from . import template
    from .reader import column_letter

    order = template.SHEET_ORDER
    first = max([100, *remove]) + 1  # ids of our own, clear of the tabs being removed
    ids = {name: first + i for i, name in enumerate(order)}
    lists = template._default_lists(team, None, None)
    content = {
        "Stages": [schema.STAGES.names] + [[s.name, s.order, s.probability, s.is_closed, s.is_won]
                                           for s in schema.DEFAULT_STAGES],
        "Lists": [schema.LISTS.names] + [[r.get(c) or "" for c in schema.LISTS.names] for r in lists],
    }
    for name in template.DATA_TABLES:
        content[name] = [schema.TABLES[name].names]
    columns = {n: schema.TABLES[n].names for n in schema.TABLES}
    reqs: list[dict] = []
    for i, name in enumerate(order):
        table = schema.TABLES.get(name)
        n_rows = (template.VALIDATION_ROWS + 1 if name in template.DATA_TABLES
                  else 100 if table is not None else 40)
        n_cols = len(table.names) + 4 if table is not None else 6
        grid = {"rowCount": n_rows, "columnCount": n_cols}
        if table is not None:
            grid["frozenRowCount"] = 1
        reqs.append({"addSheet": {"properties": {"sheetId": ids[name], "title": name, "index": i,
                                                 "sheetType": "GRID", "gridProperties": grid}}})
    reqs += [{"deleteSheet": {"sheetId": sid}} for sid in remove]
    for name in order:
        sid, table = ids[name], schema.TABLES.get(name)
        if table is None:
            g = dashboard_grid(columns) if name == template.DASHBOARD_SHEET else Grid(_howto_rows(team), [None])
            reqs.append(_update_cells(sid, g.rows))
            reqs += _format_requests(sid, g, len(g.rows)) if g.formulas else []
            widths = (28, 18, 70) if g.formulas else (120,)
            reqs += [_width(sid, j, w) for j, w in enumerate(widths)]
            reqs.append({"addProtectedRange": {"protectedRange": {
                "range": {"sheetId": sid}, "warningOnly": True,
                "description": f"{name}: written by salessheet"}}})
            continue
        reqs.append(_update_cells(sid, content[name]))
        last = template.VALIDATION_ROWS + 1 if name in template.DATA_TABLES else 100
        g = Grid(content[name], [c.kind for c in table.columns])
        reqs += _format_requests(sid, g, last)
        for j, col in enumerate(table.columns):
            reqs.append(_width(sid, j, col.width))
            rule = _validation_rule(table, col, j)
            if rule is not None:
                reqs.append({"setDataValidation": {"range": {
                    "sheetId": sid, "startRowIndex": 1, "endRowIndex": last, "startColumnIndex": j,
                    "endColumnIndex": j + 1}, "rule": rule}})
        reqs.append({"addProtectedRange": {"protectedRange": {
            "range": {"sheetId": sid, "startRowIndex": 0, "endRowIndex": 1, "startColumnIndex": 0,
                      "endColumnIndex": len(table.names)},
            "warningOnly": True,
            "description": f"{name} header: salessheet finds the columns by these names "
                           f"({column_letter(0)}1:{column_letter(len(table.names) - 1)}1)"}}})
    return reqs


def _width(sid: int, j: int, width: float) -> dict:
    return {"updateDimensionProperties": {
        "range": {"sheetId": sid, "dimension": "COLUMNS", "startIndex": j, "endIndex": j + 1},
        "properties": {"pixelSize": int(width * 7 + 12)}, "fields": "pixelSize"}}


def create_template(title: str | None = None, share=(), team: str | None = None,
                    client: GoogleClient | None = None) -> tuple[str, str]:
    """Create the standard workbook as a new Google Sheet; return (key, URL).

    Requests: one Drive create, one metadata read (the tab Google starts with, deleted), one batchUpdate
    with everything (tabs, headers, Stages and Lists, Dashboard formulas, frozen and warning-protected
    header rows, dropdowns and checks, number formats, widths), and one Drive permission per --share."""
    client = client or default_client()
    title = title or f"Sales sheet{f' - {team}' if team else ''}"
    key = client.create(title)
    meta = client.metadata(key)
    old = [s["properties"]["sheetId"] for s in meta.get("sheets", []) if "properties" in s]
    client.batch_update(key, template_requests(team, remove=old))
    for email in share:
        client.share(key, email, "writer")
    return key, spreadsheet_url(key)
