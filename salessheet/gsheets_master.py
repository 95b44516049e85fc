"""A Google spreadsheet as the sync master: sync_google() runs sync's run with the master's steps (hash,
read back, stage, swap) done through the Sheets API; see GoogleRun for how it is never seen half written.

Separate because it is the only part of Google support that knows the sync run (sync.py), which it
subclasses; the client and the reader know nothing of syncing.
"""
from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import SyncError
from .gsheets import GoogleAccessError, GoogleClient, GoogleError, WithClient, google_key, quote_sheet, \
    spreadsheet_url
from .gsheets_cells import _format_requests, dashboard_grid, frame_grid
from .gsheets_read import GoogleSource, book_from_grids, fetch, grids_hash

TEMP_PREFIX = "salessheet tmp: "  # hidden tabs a sync writes before swapping them in


def default_state_path(key: str) -> Path:
    """Where a Google master's state store lives unless --state says: the user's data folder."""
    base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "salessheet"
    return base / f"gsheet-{key}.salessheet.db"


class GoogleMaster(WithClient):
    """A Google spreadsheet as the sync master (what the sync engine's `master` is for files)."""

    def __init__(self, key: str, client: GoogleClient | None = None):
        self.key = key
        self._client = client
        self._title: str | None = None

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


def resolve(specs, master: GoogleMaster | None, state_path: Path | None) -> tuple[list, list[str]]:
    """Sync sources from SOURCE arguments: Google specs, source objects, files/folders/globs; each once."""
    from .sync import resolve_sources

    client = master._client if master is not None else None

    def google(spec, warnings: list) -> list | None:
        key = google_key(spec)
        if not key:
            return None
        if master is not None and key == master.key:
            warnings.append(f"{spec}: is the master itself; not read as a source")
            return []
        return [GoogleSource(key, client)]  # the master's client, when it has one

    return resolve_sources(specs, exclude=[state_path] if state_path else (), special=google)


def sync_google(sources, into, state=None, dry_run: bool = False, prune: bool = False, assign_ids: bool = False,
                progress=None, wait: float = 30.0, workers: int | None = None, client: GoogleClient | None = None):
    """sync.sync() into a Google master (`into`: gsheet:KEY, a URL or a GoogleMaster): same arguments, same
    SyncResult (its master is the GoogleMaster; str() gives the URL). The state store defaults to
    default_state_path(key)."""
    from .sync import run_locked

    t0 = time.perf_counter()
    master = into if isinstance(into, GoogleMaster) else GoogleMaster(google_key(into), client)
    if master._client is None and client is not None:
        master._client = client
    state_path = Path(state).expanduser().resolve() if state else default_state_path(master.key)
    srcs, warnings = resolve(list(sources), master, state_path)
    if not srcs:
        raise SyncError("no sources to sync: " + ("; ".join(warnings) if warnings else "give sheets, files or folders"))
    if not dry_run:
        state_path.parent.mkdir(parents=True, exist_ok=True)
    result = run_locked(run_class(), srcs, warnings, master, state_path, dry_run=dry_run, prune=prune,
                        assign_ids=assign_ids, progress=progress, workers=1, t0=t0, wait=wait)
    if not dry_run:
        result.notes.extend(master.client.warnings)
    return result
