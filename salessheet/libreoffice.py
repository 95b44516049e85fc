"""salessheet's functions in LibreOffice Calc: install them into a user profile, recalc a book headless.

What works (LibreOffice 7.4, Debian 12; proved by tests/test_libreoffice_udf.py):
- Calc looks a cell function up only in *loaded* Basic libraries, and only the user's Standard library
  is loaded at start: a library of our own gives #NAME?. So the functions are a module "SalesSheet"
  in Standard (user/basic/Standard/SalesSheet.xba, listed in Standard/script.xlb). Each calls
  udfs/libreoffice/salessheet_calc.py, copied to user/Scripts/python/, through the script provider
  (vnd.sun.star.script:salessheet_calc.py$call?language=Python&location=user), which calls
  salessheet.udf.evaluate(name, args, workbook=callable).
- A profile LibreOffice has never started gets its user/basic replaced by the presets on first start:
  install only into an initialised profile (we run soffice --terminate_after_init when needed).
- No macro-security setting is needed (application Basic and user Python scripts run without the
  document macro check). We set OOXMLRecalcMode=ODFRecalcMode=0: the default 1 never recalculates on
  load, so cells would show the values cached in the file (xlsxwriter writes 0).
- xlsx formulas: the plain name, no _xlfn./_xludf. prefix, e.g. `WINRATE()`, `WINRATE(Deals[[#All]])`;
  LibreOffice saves them back unchanged. It reads `Deals[#All]` (single brackets, as xlsxwriter writes
  it) as #NAME?; `Deals[[#All]]` works; `Deals[]` is the data without the header. A name Calc already
  has (TABLE, FORECAST, ...) is Calc's function, never ours.
- Python receives a range as a tuple of row tuples (header first): numbers int or float, dates as
  serials, empty cells None; an omitted middle argument (`F(a;;c)`) as 0. A whole-column range (A:D)
  sends 1,048,576 rows and takes seconds.
- Errors: a Double NaN whose low 32 bits hold a Calc error code is that real error (#N/A 32767,
  #DIV/0! 532, #VALUE! 519, #NUM! 503, #REF! 524, #NAME? 525, #NULL! 521), in arrays too. CVErr(2042)
  shows as the text "Error 2042"; an unguarded Python or Basic error shows a blank cell.
- Arrays (KPITABLE() as an array formula): Basic must return a real 2-D array; Python's rows arrive as
  an array of arrays, which Calc shows blank, so Basic copies them over.
- The calling document: ThisComponent, None for documents loaded hidden (then the desktop's only
  spreadsheet). While a document loads and recalculates it is unreachable and ThisComponent is still
  the previous document, so zero-argument calls then are put off and the document is recalculated on
  its OnLoadFinished event. Zero-argument cells have no cell dependencies: they update on load and on
  Ctrl+Shift+F9, not on edits; ranges given explicitly update live. (Application.Volatile works only
  in VBA documents.)
- LibreOffice's Python on Linux is the system python3 (3.11.2 here); packages of another CPython of the
  same minor version (pyenv 3.11.7) import fine, so the script puts salessheet's folder and the
  installing interpreter's site-packages first on sys.path, and names the mismatch when minor versions
  differ (as with the Python bundled on Windows/macOS). soffice must start with that system python3
  first on PATH: with a pyenv/venv python3 first every Python script fails ("can't import __main__").
"""
from __future__ import annotations

import importlib
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

from .errors import Error

# udfs/libreoffice in a checkout; installed, the same files are the package salessheet.udfs.libreoffice.
UDF_DIR = Path(importlib.util.find_spec("salessheet.udfs.libreoffice").submodule_search_locations[0])
SCRIPT = "salessheet_calc.py"
MODULE = "SalesSheet"
MAX_ARGS = 10  # Optional parameters per Basic function; Calc passes only those the formula wrote
DEFAULT_ENGINE = "salessheet.udf:evaluate"
_DTD = '<!DOCTYPE {0} PUBLIC "-//OpenOffice.org//DTD OfficeDocument 1.0//EN" "{1}.dtd">'
_XML = '<?xml version="1.0" encoding="UTF-8"?>\n'


class LibreOfficeError(Error):
    """LibreOffice is missing, or a headless run failed or timed out."""


@dataclass(frozen=True)
class Installed:
    profile: Path  # the profile folder (it holds user/)
    script: Path  # user/Scripts/python/salessheet_calc.py
    module: Path  # user/basic/Standard/SalesSheet.xba
    functions: tuple[str, ...]


def default_profile_dir() -> Path:
    """The profile LibreOffice uses for this user when started without -env:UserInstallation."""
    if sys.platform == "win32":
        return Path(os.environ["APPDATA"]) / "LibreOffice" / "4"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "LibreOffice" / "4"
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "libreoffice" / "4"


def find_soffice() -> str | None:
    return shutil.which("soffice") or shutil.which("libreoffice")


def find_uno_python() -> str | None:
    """A Python that can `import uno`: the one next to soffice (Windows, macOS) or the system one."""
    candidates = []
    soffice = find_soffice()
    if soffice:
        program = Path(soffice).resolve().parent
        candidates += [program / "python", program / "python.exe"]
    candidates += [Path("/usr/bin/python3"), Path(sys.executable)]
    for py in candidates:
        if py.exists():
            r = subprocess.run([str(py), "-c", "import uno"], capture_output=True, timeout=60)
            if r.returncode == 0:
                return str(py)
    return None


def engine_functions(engine: str = DEFAULT_ENGINE) -> tuple[str, ...]:
    """The function names the engine module registers: ALL_FUNCTIONS (or FUNCTIONS, names or a dict)."""
    module = engine.partition(":")[0]
    try:
        mod = importlib.import_module(module)
        names = list(getattr(mod, "ALL_FUNCTIONS", None) or mod.FUNCTIONS)
    except (ImportError, AttributeError) as e:
        raise LibreOfficeError(f"cannot list the spreadsheet functions: {module}.FUNCTIONS: {e}") from None
    return tuple(names)


def basic_module(functions) -> str:
    """SalesSheet.bas with one Basic function per name appended."""
    params = ", ".join(f"Optional a{i}" for i in range(1, MAX_ARGS + 1))
    passed = ", ".join(f"a{i}" for i in range(1, MAX_ARGS + 1))
    given = "\n".join(f"\tIf Not IsMissing(a{i}) Then Given = {i} : Exit Function" for i in range(MAX_ARGS, 0, -1))
    parts = [(UDF_DIR / f"{MODULE}.bas").read_text().rstrip("\n"), "",
             "REM How many arguments the formula wrote: Calc passes them in order.",
             f"Private Function Given({params}) As Integer\n{given}\n\tGiven = 0\nEnd Function"]
    for name in functions:
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", name):
            raise LibreOfficeError(f"{name!r} cannot be a Basic function name")
        parts.append(f'Function {name}({params}) As Variant\n'
                     f'\t{name} = SalesSheetCall("{name}", Array({passed}), Given({passed}))\nEnd Function')
    return "\n\n".join(parts) + "\n"


def engine_paths() -> list[str]:
    """Where salessheet and its dependencies live for the running Python."""
    paths = [str(Path(__file__).resolve().parent.parent)]
    for name in ("numpy", "pandas"):
        spec = importlib.util.find_spec(name)
        if spec and spec.origin:
            paths.append(str(Path(spec.origin).resolve().parent.parent))
    paths += [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    return list(dict.fromkeys(paths))


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def _add_line(path: Path, marker: str, line: str, close: str) -> None:
    """Insert `line` before the closing tag `close` unless `marker` is already there."""
    text = path.read_text(encoding="utf-8")
    if marker not in text:
        _write(path, text.replace(close, f" {line}\n{close}", 1))


def initialise_profile(profile: Path, timeout: float = 120.0) -> None:
    """Let LibreOffice create the profile: on its first start it replaces user/basic with its presets,
    dropping anything installed there before."""
    if (profile / "user" / "extensions" / "buildid").exists():
        return
    soffice = find_soffice()
    if not soffice:
        raise LibreOfficeError(f"{profile} is not a LibreOffice profile yet, and soffice is not installed")
    proc = subprocess.Popen([soffice, "--headless", "--terminate_after_init", "--norestore",
                             f"-env:UserInstallation={profile.resolve().as_uri()}"], env=soffice_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    _stop(proc, wait=timeout)
    if not (profile / "user" / "extensions" / "buildid").exists():
        raise LibreOfficeError(f"LibreOffice did not create its profile in {profile}")


def _standard_library(basic: Path) -> None:
    """Make sure the user's Standard Basic library is listed (LibreOffice writes it on first start)."""
    for kind, root in (("script", "libraries"), ("dialog", "libraries")):
        xlc = basic / f"{kind}.xlc"
        if not xlc.exists():
            _write(xlc, _XML + _DTD.format(f"library:{root}", "libraries") + "\n"
                   '<library:libraries xmlns:library="http://openoffice.org/2000/library" '
                   'xmlns:xlink="http://www.w3.org/1999/xlink">\n</library:libraries>\n')
        _add_line(xlc, 'library:name="Standard"',
                  '<library:library library:name="Standard" library:link="false"/>', "</library:libraries>")
        xlb = basic / "Standard" / f"{kind}.xlb"
        if not xlb.exists():
            _write(xlb, _XML + _DTD.format("library:library", "library") + "\n"
                   '<library:library xmlns:library="http://openoffice.org/2000/library" library:name="Standard" '
                   'library:readonly="false" library:passwordprotected="false">\n</library:library>\n')


def _set_registry(profile: Path, path: str, name: str, value: str) -> None:
    """Set one configuration value in user/registrymodifications.xcu."""
    xcu = profile / "user" / "registrymodifications.xcu"
    if not xcu.exists():
        _write(xcu, _XML + '<oor:items xmlns:oor="http://openoffice.org/2001/registry" '
               'xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">\n'
               "</oor:items>\n")
    item = f'<item oor:path="{path}"><prop oor:name="{name}" oor:op="fuse"><value>{value}</value></prop></item>'
    text = xcu.read_text(encoding="utf-8")
    pattern = re.compile(rf'<item oor:path="{re.escape(path)}"><prop oor:name="{re.escape(name)}".*?</item>\n?')
    text = pattern.sub("", text)
    _write(xcu, text.replace("</oor:items>", item + "\n</oor:items>", 1))


def install_libreoffice(profile_dir=None, *, functions=None, engine: str = DEFAULT_ENGINE, sys_path=None,
                        recalc_on_load: bool = True) -> Installed:
    """Install the spreadsheet functions into a LibreOffice profile (the default one if None).

    Close LibreOffice first: it rewrites the Basic library lists when it exits. `functions` defaults
    to the engine module's FUNCTIONS; `sys_path` to where salessheet, numpy and pandas live now.
    Installing again replaces the functions and keeps the user's own Basic modules.
    """
    profile = Path(profile_dir) if profile_dir else default_profile_dir()
    initialise_profile(profile)
    names = tuple(n.upper() for n in (functions if functions is not None else engine_functions(engine)))
    paths = list(sys_path) if sys_path is not None else engine_paths()

    script = profile / "user" / "Scripts" / "python" / SCRIPT
    text = (UDF_DIR / SCRIPT).read_text(encoding="utf-8")
    for key, value in (("SYS_PATH", repr(paths)), ("PYTHON", repr(tuple(sys.version_info[:2]))),
                       ("ENGINE", repr(engine))):
        text, n = re.subn(rf"^{key} = .*$", lambda m, k=key, v=value: f"{k} = {v}", text, count=1, flags=re.M)
        assert n == 1, key
    _write(script, text)

    basic = profile / "user" / "basic"
    _standard_library(basic)
    module = basic / "Standard" / f"{MODULE}.xba"
    _write(module, _XML + _DTD.format("script:module", "module") + "\n"
           f'<script:module xmlns:script="http://openoffice.org/2000/script" script:name="{MODULE}" '
           f'script:language="StarBasic">{escape(basic_module(names))}</script:module>\n')
    _add_line(basic / "Standard" / "script.xlb", f'library:name="{MODULE}"',
              f'<library:element library:name="{MODULE}"/>', "</library:library>")
    if recalc_on_load:
        _set_registry(profile, "/org.openoffice.Office.Calc/Formula/Load", "OOXMLRecalcMode", "0")
        _set_registry(profile, "/org.openoffice.Office.Calc/Formula/Load", "ODFRecalcMode", "0")
    return Installed(profile, script, module, names)


def soffice_env(python: str | None = None) -> dict:
    """The environment to start soffice in. LibreOffice's embedded Python finds its standard library
    from the first python3 on PATH: a pyenv or venv python there makes every Python script fail with
    "can't import __main__ module". So LibreOffice's own Python goes first."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHOME", "PYTHONPATH", "VIRTUAL_ENV")}
    python = python or find_uno_python()
    if python:
        env["PATH"] = os.pathsep.join([str(Path(python).parent), env.get("PATH", "")])
    return env


def _stop(proc: subprocess.Popen, wait: float) -> None:
    """Wait for soffice to exit, then kill its whole process group (oosplash starts soffice.bin)."""
    try:
        proc.wait(timeout=wait)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def recalc_workbook(path, profile_dir, *, out=None, calculate: bool = True, hidden: bool = False,
                    open_first=(), timeout: float = 120.0) -> dict:
    """Open `path` in headless LibreOffice with the given profile, recalculate, and return
    {"cells": {"Sheet!A1": {"formula", "value", "text", "error"}}, "seconds": {...}}.

    `calculate=False` reads the values as loaded (recalculated on load by the installed profile);
    `open_first` workbooks are opened before `path` and kept open. soffice is always stopped, and
    the whole run is bounded by `timeout` seconds.
    """
    soffice, python = find_soffice(), find_uno_python()
    if not soffice or not python:
        raise LibreOfficeError("LibreOffice (soffice) and a Python with its uno module are needed")
    pipe = f"salessheet_{uuid.uuid4().hex}"
    start = time.monotonic()
    proc = subprocess.Popen([soffice, "--headless", "--invisible", "--norestore", "--nologo", "--nodefault",
                             "--nolockcheck", f"-env:UserInstallation={Path(profile_dir).resolve().as_uri()}",
                             f"--accept=pipe,name={pipe};urp;"], env=soffice_env(python),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        cmd = [python, str(UDF_DIR / "recalc.py"), "--pipe", pipe, "--wait", str(timeout), str(path)]
        cmd += ["--no-calc"] * (not calculate) + ["--hidden"] * hidden + (["--out", str(out)] if out else [])
        for other in open_first:
            cmd += ["--first", str(other)]
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise LibreOfficeError(f"LibreOffice took more than {timeout:g}s on {path}") from None
        if r.returncode:
            raise LibreOfficeError(f"LibreOffice failed on {path}: {r.stderr.strip()[-2000:]}")
        result = json.loads(r.stdout)
    finally:
        _stop(proc, wait=15)
    result["seconds"]["total"] = time.monotonic() - start
    return result
