"""LibreOffice headless harness for tests: convert workbooks to CSV and inspect them over UNO.

Use from tests::

    from libreoffice import sheets_as_csv, inspect

    def test_x(soffice, tmp_path):           # the `soffice` fixture (conftest.py) skips or fails
        csvs = sheets_as_csv(xlsx, tmp_path)  # {"Deals": [["Deal ID", ...], ...], ...}
        info = inspect(xlsx, cells={"Dashboard": ["B4"]})

Rules this module keeps so tests never collide or hang:
- every soffice run gets its own fresh profile (-env:UserInstallation=file:///tmp/...), so a leftover
  or parallel soffice cannot take over the request;
- every run is in its own process group with a timeout; on timeout or error the whole group is killed;
- whether formulas are recalculated on load is set explicitly in that profile (``recalc``): True means
  "always recalculate" (values LibreOffice computes), False means "never" (the cached values stored in
  the file; xlsxwriter stores 0 for formulas unless told otherwise).

``inspect`` runs this same file as a script under Debian's /usr/bin/python3, which has ``uno``;
the module therefore imports only the standard library at top level.
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

SOFFICE = os.environ.get("SOFFICE", "soffice")
UNO_PYTHON = os.environ.get("UNO_PYTHON", "/usr/bin/python3")
TIMEOUT = 120  # seconds for any one soffice run

# CSV filter options (LibreOffice >= 7.2), by token: separator 44 (,), text delimiter 34 ("), charset 76
# (UTF-8), start line 1, no column formats, language 0, quote all text false, detect special numbers
# true, save cell contents as shown, export formulas false, remove spaces false, sheet -1 = every sheet
# into "<stem>-<SheetName>.csv".
_CSV_FILTER = 'csv:Text - txt - csv (StarCalc):44,34,76,1,,0,false,true,{as_shown},false,false,-1'

_RECALC_XCU = """<?xml version="1.0" encoding="UTF-8"?>
<oor:items xmlns:oor="http://openoffice.org/2001/registry" xmlns:xs="http://www.w3.org/2001/XMLSchema"
 xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
<item oor:path="/org.openoffice.Office.Calc/Formula/Load"><prop oor:name="OOXMLRecalcMode" oor:op="fuse"><value>{mode}</value></prop></item>
<item oor:path="/org.openoffice.Office.Calc/Formula/Load"><prop oor:name="ODFRecalcMode" oor:op="fuse"><value>{mode}</value></prop></item>
</oor:items>
"""


class LibreOfficeError(RuntimeError):
    """soffice failed, timed out, or produced nothing."""


def soffice_available() -> bool:
    """True when a soffice binary is on PATH (or at $SOFFICE)."""
    return shutil.which(SOFFICE) is not None


def uno_available() -> bool:
    """True when soffice exists and UNO_PYTHON can `import uno`."""
    if not soffice_available() or not Path(UNO_PYTHON).exists():
        return False
    r = subprocess.run([UNO_PYTHON, "-c", "import uno"], capture_output=True, timeout=30)
    return r.returncode == 0


def require_soffice(uno: bool = False) -> None:
    """Skip the calling test when LibreOffice is missing, but fail it when $CI is set."""
    import pytest

    ok = uno_available() if uno else soffice_available()
    if ok:
        return
    what = f"LibreOffice with uno ({UNO_PYTHON})" if uno else f"LibreOffice ({SOFFICE})"
    if os.environ.get("CI"):
        pytest.fail(f"{what} is required on CI and was not found", pytrace=False)
    pytest.skip(f"{what} not installed")


def _fresh_profile(recalc: bool) -> Path:
    """A new, empty LibreOffice user profile whose only setting is the recalc-on-load mode."""
    root = Path(tempfile.mkdtemp(prefix="lo-profile-"))
    user = root / "user"
    user.mkdir()
    # 0 = always recalculate, 1 = never recalculate, 2 = ask (treated as never when headless).
    (user / "registrymodifications.xcu").write_text(_RECALC_XCU.format(mode=0 if recalc else 1))
    return root


def _run(cmd: list[str], timeout: float, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run cmd in its own process group; kill the whole group on timeout."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, env=env)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        out, err = proc.communicate()
        raise LibreOfficeError(f"timed out after {timeout:.0f}s: {' '.join(cmd)}\n{err}") from None
    finally:
        if proc.poll() is None:
            _kill_group(proc)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def sheets_as_csv(xlsx_path, tmpdir, recalc: bool = True, as_shown: bool = True,
                  timeout: float = TIMEOUT) -> dict[str, list[list[str]]]:
    """Every sheet of a workbook as CSV rows, converted by a real `soffice --headless --convert-to`.

    recalc: recalculate every formula on load (True) or keep the values cached in the file (False).
    as_shown: cells as formatted on screen ("2024-03-01", "25%"); False gives raw values.
    Returns {sheet name: rows}, sheets in workbook order. Sheet names come from the output file names,
    "<stem>-<Sheet>.csv".
    """
    src = Path(xlsx_path).resolve()
    outdir = Path(tmpdir) / f"csv-{uuid.uuid4().hex[:8]}"
    outdir.mkdir(parents=True)
    profile = _fresh_profile(recalc)
    try:
        cmd = [SOFFICE, f"-env:UserInstallation={profile.as_uri()}", "--headless", "--norestore",
               "--nolockcheck", "--convert-to", _CSV_FILTER.format(as_shown=str(as_shown).lower()),
               "--outdir", str(outdir), str(src)]
        r = _run(cmd, timeout)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    prefix = src.stem + "-"
    files = list(outdir.glob("*.csv"))
    if r.returncode != 0 or not files:
        raise LibreOfficeError(f"soffice exit {r.returncode}, no CSV written\n{r.stdout}\n{r.stderr}")
    found: dict[str, list[list[str]]] = {}
    for f in files:
        name = f.stem[len(prefix):] if f.stem.startswith(prefix) else f.stem
        with f.open(newline="", encoding="utf-8") as fh:
            found[name] = list(csv.reader(fh))
    order = _xlsx_sheet_names(src)
    return {n: found[n] for n in sorted(found, key=lambda n: (order.index(n) if n in order else len(order), n))}


def _xlsx_sheet_names(path: Path) -> list[str]:
    """Sheet names in workbook order for an xlsx (empty for anything else)."""
    import re
    import zipfile
    from xml.sax.saxutils import unescape

    try:
        with zipfile.ZipFile(path) as z:
            xml = z.read("xl/workbook.xml").decode("utf-8")
    except (zipfile.BadZipFile, KeyError, OSError):
        return []
    return [unescape(m, {"&quot;": '"', "&apos;": "'"}) for m in re.findall(r'<sheet\b[^>]*?\bname="([^"]*)"', xml)]


def inspect(xlsx_path, cells: dict[str, list[str]] | None = None, probe: dict[str, dict[str, str]] | None = None,
            validation_row: int = 2, recalc: bool = True, timeout: float = TIMEOUT) -> dict:
    """Open a workbook in headless LibreOffice over UNO and report what LibreOffice made of it.

    Returns a dict:
      sheets:      sheet names in order
      validation:  {sheet: {header: {...}}} for every cell of `validation_row` that has a validation:
                   type (LIST, DATE, DECIMAL, WHOLE, CUSTOM, ANY ...), operator, formula1, formula2,
                   show_list, input_title/input_message, error_title/error_message, show_error, and for
                   LIST types `entries`: the list as LibreOffice evaluates the source (named ranges and
                   OFFSET included; trailing blanks are kept so a long blank tail is visible)
      database_ranges: {name: "Sheet!A1:B9"} (xlsx tables become database ranges)
      named_ranges: {name: content}
      cells:       {"Sheet!B4": {formula, string, value, error, type}} after calculateAll, for `cells`
      probe:       {"Sheet!G2": {"value": typed, "valid": bool}}: each value is typed into its cell (as a
                   user would, so "2024-01-05" becomes a date) and LibreOffice's own validity check
                   (Tools > Detective > Mark invalid data) says whether it is accepted.
    """
    src = Path(xlsx_path).resolve()
    profile = _fresh_profile(recalc)
    pidfile = profile / "office.pid"  # the UNO script's soffice runs in its own group: kill it from here too
    request = {"path": str(src), "profile": profile.as_uri(), "soffice": shutil.which(SOFFICE) or SOFFICE,
               "cells": cells or {}, "probe": probe or {}, "row": validation_row, "pidfile": str(pidfile),
               "deadline": time.time() + timeout - 5}
    r = None
    try:
        r = _run([UNO_PYTHON, str(Path(__file__).resolve()), json.dumps(request)], timeout,
                 env={k: v for k, v in os.environ.items() if not k.startswith("PYTHON")})
    finally:
        if r is None or r.returncode != 0:  # the script may not have shut its soffice down
            try:
                os.killpg(int(pidfile.read_text()), signal.SIGKILL)
            except (OSError, ValueError):
                pass  # no pid written, or the group has already exited
        shutil.rmtree(profile, ignore_errors=True)
    if r.returncode != 0:
        raise LibreOfficeError(f"inspect failed (exit {r.returncode})\n{r.stdout}\n{r.stderr}")
    return json.loads(r.stdout.strip().splitlines()[-1])


# ---- everything below runs inside UNO_PYTHON (a separate process), never in the test process ----

def _uno_main(request: dict) -> dict:
    import uno
    from com.sun.star.beans import PropertyValue

    def props(**kw):
        out = []
        for k, v in kw.items():
            p = PropertyValue()
            p.Name, p.Value = k, v
            out.append(p)
        return tuple(out)

    pipe = f"salessheet-test-{uuid.uuid4().hex}"
    office = subprocess.Popen(
        [request["soffice"], f"-env:UserInstallation={request['profile']}", "--headless", "--invisible",
         "--nologo", "--norestore", "--nodefault", "--nolockcheck",
         f"--accept=pipe,name={pipe};urp;StarOffice.ComponentContext"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    Path(request["pidfile"]).write_text(str(office.pid))
    doc = desktop = None
    try:
        local = uno.getComponentContext()
        resolver = local.ServiceManager.createInstanceWithContext("com.sun.star.bridge.UnoUrlResolver", local)
        while True:
            try:
                ctx = resolver.resolve(f"uno:pipe,name={pipe};urp;StarOffice.ComponentContext")
                break
            except Exception:
                if office.poll() is not None or time.time() > request["deadline"]:
                    raise RuntimeError("soffice did not accept a UNO connection")
                time.sleep(0.2)
        desktop = ctx.ServiceManager.createInstanceWithContext("com.sun.star.frame.Desktop", ctx)
        url = uno.systemPathToFileUrl(request["path"])
        doc = desktop.loadComponentFromURL(url, "_blank", 0, props(Hidden=True))
        if doc is None:
            raise RuntimeError(f"LibreOffice could not open {request['path']}")
        return _dump(doc, request)
    finally:
        try:
            if doc is not None:
                doc.close(True)
            if desktop is not None:
                desktop.terminate()
        except Exception:
            pass
        try:
            office.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(office.pid, signal.SIGKILL)
            office.wait()


def _col_letters(n: int) -> str:
    s = ""
    n += 1
    while n:
        n, r = divmod(n - 1, 26)
        s = chr(65 + r) + s
    return s


def _addr(doc, a) -> str:
    sheet = doc.Sheets.getByIndex(a.Sheet).Name
    return f"{sheet}!{_col_letters(a.StartColumn)}{a.StartRow + 1}:{_col_letters(a.EndColumn)}{a.EndRow + 1}"


def _literal_list(formula: str) -> list[str] | None:
    """Entries of a literal list formula like '"New";"Working"', else None."""
    f = formula.strip()
    if not f.startswith('"'):
        return None
    try:
        rows = next(csv.reader([f], delimiter=";", quotechar='"'))
    except Exception:
        return None
    return rows


def _dump(doc, request: dict) -> dict:
    sheets = doc.Sheets
    names = list(sheets.ElementNames)
    row = request["row"] - 1
    doc.calculateAll()
    # A scratch sheet to evaluate list sources the way a formula does.
    sheets.insertNewByName("__inspect__", sheets.Count)
    scratch = sheets.getByName("__inspect__")
    out = {"sheets": names, "validation": {}, "database_ranges": {}, "named_ranges": {}, "cells": {}, "probe": {}}
    for name in names:
        sh = sheets.getByName(name)
        cur = sh.createCursor()
        cur.gotoEndOfUsedArea(False)
        ncols = cur.RangeAddress.EndColumn + 1
        per = {}
        for c in range(ncols):
            cell = sh.getCellByPosition(c, row)
            v = cell.Validation
            vtype = v.Type.value
            if vtype == "ANY" and not v.ShowInputMessage:
                continue
            header = sh.getCellByPosition(c, 0).String or _col_letters(c)
            info = {
                "cell": f"{_col_letters(c)}{row + 1}", "type": vtype, "operator": v.getOperator().value,
                "formula1": v.getFormula1(), "formula2": v.getFormula2(), "show_list": int(v.ShowList),
                "input_title": v.InputTitle, "input_message": v.InputMessage, "show_input": bool(v.ShowInputMessage),
                "error_title": v.ErrorTitle, "error_message": v.ErrorMessage, "show_error": bool(v.ShowErrorMessage),
                "error_style": v.ErrorAlertStyle.value, "ignore_blank": bool(v.IgnoreBlankCells),
            }
            if vtype == "LIST":
                info["entries"] = _list_entries(scratch, v.getFormula1())
            per[header] = info
        out["validation"][name] = per
    dbr = doc.DatabaseRanges
    for n in dbr.ElementNames:
        out["database_ranges"][n] = _addr(doc, dbr.getByName(n).DataArea)
    nr = doc.NamedRanges
    for n in nr.ElementNames:
        out["named_ranges"][n] = nr.getByName(n).Content
    for key, value in ((f"{s}!{a}", (s, a)) for s, addrs in request["cells"].items() for a in addrs):
        cell = sheets.getByName(value[0]).getCellRangeByName(value[1])
        out["cells"][key] = {"formula": cell.Formula, "string": cell.String, "value": cell.Value,
                             "error": cell.getError(), "type": cell.Type.value}
    for s, typed in request["probe"].items():
        sh = sheets.getByName(s)
        for a, text in typed.items():
            cell = sh.getCellRangeByName(a)
            old = cell.Formula
            sh.clearArrows()
            base = sh.DrawPage.Count
            cell.setFormula(text)  # like typing: "2024-01-05" becomes a date, "12" a number
            sh.showInvalid()
            out["probe"][f"{s}!{a}"] = {"value": text, "valid": sh.DrawPage.Count == base,
                                        "type": cell.Type.value}
            sh.clearArrows()
            cell.setFormula(old)
    return out


def _list_entries(scratch, formula: str, size: int = 300) -> list | None:
    """A list validation's source as LibreOffice evaluates it (array formula in a scratch range)."""
    lit = _literal_list(formula)
    if lit is not None:
        return lit
    rng = scratch.getCellRangeByPosition(0, 0, 0, size - 1)
    count = scratch.getCellByPosition(1, 0)
    rng.clearContents(1023)
    try:
        rng.setArrayFormula(formula)
        # A scalar fills a whole array range, so take the length from ROWS()*COLUMNS() of the source.
        count.setFormula(f"=ROWS({formula})*COLUMNS({formula})")
    except Exception as e:  # not a formula LibreOffice can evaluate
        return {"error": str(e)}
    if count.getError():
        return {"error": f"Err:{count.getError()}", "first": scratch.getCellByPosition(0, 0).String}
    n = min(int(count.Value), size)
    return [scratch.getCellByPosition(0, r).String for r in range(n)]


if __name__ == "__main__":  # the UNO side of inspect()
    print(json.dumps(_uno_main(json.loads(sys.argv[1]))))
