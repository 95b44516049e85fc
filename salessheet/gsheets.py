"""Google Sheets: the client salessheet talks to the service with, and Google sheet names (gsheet:KEY, URLs).

gspread and google-auth are imported only when a Google sheet is used (``pip install 'salessheet[google]'``).
Built on this client: gsheets_read (a spreadsheet into a Book; Google sheets as sync sources), gsheets_cells
(frames and the Dashboard as cells), gsheets_master (a Google sync master), gsheets_template (``new --google``).

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
"""
from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import random
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from .errors import Error

ENDPOINT_ENV = "SALESSHEET_GOOGLE_ENDPOINT"
GOOGLE_HOSTS = ("https://sheets.googleapis.com", "https://www.googleapis.com")
SHEETS_URL = "https://sheets.googleapis.com/v4/spreadsheets"
DRIVE_FILES_URL = "https://www.googleapis.com/drive/v3/files"
MAX_REQUEST_BYTES = 2_000_000  # a values:batchUpdate body stays under this (Google advises ~2 MB)
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
    if spec is None or hasattr(spec, "read"):  # a source object (a GoogleMaster has no read(): its str() is its URL)
        return None
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


class WithClient:
    """A Google spreadsheet we talk to: its client is made on first use, so naming one logs nobody in."""

    _client: GoogleClient | None = None

    @property
    def client(self) -> GoogleClient:
        if self._client is None:
            self._client = default_client()
        return self._client


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
