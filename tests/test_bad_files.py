"""Files that cannot be read: a clear ReadError quickly and in bounded memory, exit 2 through the CLI.

The huge-sheet cases run in a child process: if a guard ever regresses, calamine aborts the process
that reads the file, and that must not take pytest down with it.
"""
from __future__ import annotations

import json
import re
import struct
import subprocess
import sys
import textwrap
import zipfile
import zlib
from pathlib import Path

import pytest
import xlsxwriter
from click.testing import CliRunner

from salessheet import ReadError, read_workbook, sources
from salessheet.cli import cli
from sheetmaker import deal, deals_rows, write_xlsx

ROOT = Path(__file__).resolve().parents[1]


def small_xlsx(path: Path) -> Path:
    return write_xlsx(path, {"Deals": deals_rows(*(deal(Deal_ID=f"D-{i}") for i in range(200)))})


def png_bytes() -> bytes:
    """A real 1x1 PNG image."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00\xff\x00\x00")) + chunk(b"IEND", b""))


def make_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path


def with_member(src: Path, dst: Path, member: str, write, level: int = 1) -> Path:
    """A copy of workbook src whose `member` is written by write(file) instead."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED, compresslevel=level) as zout:
        for info in zin.infolist():
            if info.filename == member:
                with zout.open(member, "w", force_zip64=True) as f:
                    write(f)
            else:
                zout.writestr(info, zin.read(info))
    return dst


def zeros(n: int):
    def write(f):
        block = bytes(64 * 1024**2)
        left = n
        while left > 0:
            f.write(block[: min(left, len(block))])
            left -= len(block)
    return write


# -- the cases: name -> (builder, words the message must contain) ---------------------------------

def text_as_xlsx(tmp):
    p = tmp / "deals.xlsx"
    p.write_text("Deal ID,Account\nD-1,Acme\n")
    return p


def png_as_xlsx(tmp):
    p = tmp / "chart.xlsx"
    p.write_bytes(png_bytes())
    return p


def png_as_csv(tmp):
    p = tmp / "chart.csv"
    p.write_bytes(png_bytes())
    return p


def html_as_xls(tmp):
    p = tmp / "export.xls"
    p.write_text("<html><body><table><tr><td>Deal ID</td></tr></table></body></html>")
    return p


def zip_not_workbook(tmp):
    return make_zip(tmp / "photos.xlsx", {"readme.txt": b"holiday photos", "a.jpg": b"\xff\xd8\xff"})


def document_as_xlsx(tmp):
    return make_zip(tmp / "letter.xlsx", {"[Content_Types].xml": b'<?xml version="1.0"?><Types/>',
                                          "word/document.xml": b"<w:document/>"})


def password_protected(tmp):
    from msoffcrypto.format.ooxml import OOXMLFile

    plain = small_xlsx(tmp / "plain.xlsx")
    out = tmp / "locked.xlsx"
    with open(plain, "rb") as f, open(out, "wb") as g:
        OOXMLFile(f).encrypt("s3cret", g)
    assert out.read_bytes()[:8] == b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # a real OLE/CFB container
    return out


def truncated(tmp):
    data = small_xlsx(tmp / "whole.xlsx").read_bytes()
    p = tmp / "cut.xlsx"
    p.write_bytes(data[: len(data) // 2])
    return p


def damaged_member(tmp):
    # The zip directory is intact but the sheet's compressed bytes are scrambled.
    src = small_xlsx(tmp / "whole.xlsx")
    with zipfile.ZipFile(src) as z:
        info = z.getinfo("xl/worksheets/sheet1.xml")
    data = bytearray(src.read_bytes())
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    for k in range(start + 20, start + min(info.compress_size, 400)):
        data[k] ^= 0x5A
    p = tmp / "damaged.xlsx"
    p.write_bytes(bytes(data))
    return p


def empty_file(tmp):
    p = tmp / "empty.xlsx"
    p.write_bytes(b"")
    return p


def folder(tmp):
    p = tmp / "deals.xlsx"
    p.mkdir()
    return p


def missing(tmp):
    return tmp / "nope.xlsx"


def bomb_small_member(tmp):
    """One part far more compressed than sheet XML ever is (the ratio guard, from 50 MiB of zeros)."""
    return with_member(small_xlsx(tmp / "base.xlsx"), tmp / "bomb.xlsx", "xl/worksheets/sheet1.xml",
                       zeros(60 * 1024**2), level=9)


CASES = {
    "text renamed .xlsx": (text_as_xlsx, "not a valid .xlsx"),
    "png renamed .xlsx": (png_as_xlsx, "not a valid .xlsx"),
    "png renamed .csv": (png_as_csv, "binary"),
    "html saved as .xls": (html_as_xls, "not a valid .xls"),
    "zip of photos": (zip_not_workbook, "not a spreadsheet"),
    "zip of a document": (document_as_xlsx, "cannot be read as a spreadsheet"),
    "password-protected": (password_protected, "password"),
    "truncated": (truncated, "truncated"),
    "damaged part": (damaged_member, "damaged"),
    "empty file": (empty_file, "empty"),
    "folder": (folder, "folder"),
    "missing": (missing, "no such file"),
    "zip bomb part": (bomb_small_member, "zip bomb"),
}


def assert_one_plain_line(message: str, path: Path):
    assert "\n" not in message.strip()
    assert str(path) in message
    assert "Traceback" not in message and "Error(" not in message and "b'" not in message


@pytest.mark.parametrize("case", CASES)
def test_library_raises_read_error(tmp_path, case):
    build, words = CASES[case]
    path = build(tmp_path)
    with pytest.raises(ReadError) as e:
        read_workbook(path)
    assert words in str(e.value)
    assert e.value.path == str(path)
    assert_one_plain_line(str(e.value), path)


@pytest.mark.parametrize("case", CASES)
def test_cli_exit_2_with_one_line(tmp_path, case):
    build, words = CASES[case]
    path = build(tmp_path)
    good = small_xlsx(tmp_path / "good.xlsx")
    result = CliRunner().invoke(cli, ["validate", str(good), str(path)], env={"COLUMNS": "300"})
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert words in lines[0]
    assert_one_plain_line(lines[0], path)
    assert "good.xlsx" in result.stdout  # the readable file was still checked


def test_lower_unpack_limit(tmp_path, monkeypatch):
    # The same guard that stops a many-GiB bomb, exercised with a small limit.
    src = small_xlsx(tmp_path / "base.xlsx")
    path = with_member(src, tmp_path / "big.xlsx", "xl/worksheets/sheet1.xml", zeros(3 * 1024**2), level=9)
    monkeypatch.setattr(sources, "MAX_UNPACKED_BYTES", 2 * 1024**2)
    with pytest.raises(ReadError, match="would unpack to"):
        read_workbook(path)
    monkeypatch.setattr(sources, "MAX_UNPACKED_BYTES", 4 * 1024**2)
    with pytest.raises(ReadError, match="zip bomb"):  # 3 MiB of zeros packs ~1000x
        monkeypatch.setattr(sources, "RATIO_CHECKED_FROM", 1024**2)
        read_workbook(path)


def test_real_zip_bomb_over_2_gib(tmp_path):
    # A workbook whose sheet part really unpacks to 2.1 GiB (of zeros): refused from the zip directory,
    # without unpacking anything.
    src = small_xlsx(tmp_path / "base.xlsx")
    path = with_member(src, tmp_path / "bomb.xlsx", "xl/worksheets/sheet1.xml", zeros(2 * 1024**3 + 64 * 1024**2))
    assert path.stat().st_size < 20 * 1024**2
    with zipfile.ZipFile(path) as z:
        assert z.getinfo("xl/worksheets/sheet1.xml").file_size > 2 * 1024**3
    child = run_child(path)
    assert child["error"] and "would unpack to 2.1 GiB" in child["error"]
    assert child["seconds"] < 5 and child["peak_mb"] < 300


# -- sheets a million rows tall: run in a child that reports time and peak memory -----------------

CHILD = textwrap.dedent("""
    import json, resource, sys, time
    from salessheet import ReadError, validate
    t0 = time.perf_counter()
    out = {"error": None}
    try:
        book = validate(sys.argv[1])
        df = book.tables.get("Deals")
        out["rows"] = None if df is None else df.index.tolist()
        out["columns"] = None if df is None else list(df.columns)
        out["issues"] = [i.to_dict() for i in book.issues]
    except ReadError as e:
        out["error"] = str(e)
    out["seconds"] = time.perf_counter() - t0
    out["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out))
""")


def run_child(path: Path) -> dict:
    proc = subprocess.run([sys.executable, "-c", CHILD, str(path)], capture_output=True, text=True, timeout=120,
                          cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


def tall_sheet(path: Path, last_col: int) -> Path:
    wb = xlsxwriter.Workbook(str(path), {"constant_memory": True})
    ws = wb.add_worksheet("Deals")
    ws.write_row(0, 0, ["Deal ID", "Account", "Owner", "Stage", "Amount", "Created Date"])
    ws.write_string(1048575, last_col, "last")
    wb.close()
    return path


def test_million_row_sheet_with_a_stray_cell_in_the_last_corner(tmp_path):
    path = tall_sheet(tmp_path / "tall.xlsx", 16383)  # XFD1048576
    child = run_child(path)
    assert child["error"] and "XFD1048576" in child["error"] and "too many" in child["error"]
    assert child["seconds"] < 30 and child["peak_mb"] < 1024
    result = subprocess.run([sys.executable, "-m", "salessheet.cli", "validate", str(path)], capture_output=True,
                            text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_million_row_sheet_with_a_stray_cell_at_the_bottom(tmp_path):
    # A1048576 only makes a narrow grid: it is read, and the stray row is reported where it is.
    path = tall_sheet(tmp_path / "tall.xlsx", 0)
    child = run_child(path)
    assert child["error"] is None
    assert child["seconds"] < 30 and child["peak_mb"] < 1024
    assert child["rows"] == [1048576]
    assert {(i["row"], i["column"], i["severity"]) for i in child["issues"]} >= {(1048576, "Account", "error")}


def test_wide_sheet_within_the_limit_is_read(tmp_path):
    # A stray cell far to the right of a short table is fine: 3 rows x 16384 columns is a small grid.
    path = write_xlsx(tmp_path / "wide.xlsx", {"Deals": deals_rows(deal()) + [[None] * 16383 + ["x"]]})
    book = read_workbook(path)
    assert book.tables["Deals"]["Column XFD"].tolist() == [None, "x"]


def test_sheet_without_dimension_is_scanned(tmp_path):
    # No <dimension> element: the guard finds the used range from the cells themselves.
    src = tall_sheet(tmp_path / "tall.xlsx", 16383)
    with zipfile.ZipFile(src) as z:
        xml = z.read("xl/worksheets/sheet1.xml")
    stripped = re.sub(rb"<dimension[^>]*/>", b"", xml)
    assert stripped != xml
    path = with_member(src, tmp_path / "nodim.xlsx", "xl/worksheets/sheet1.xml", lambda f: f.write(stripped))
    child = run_child(path)
    assert child["error"] and "XFD1048576" in child["error"]


def test_csv_too_large(tmp_path, monkeypatch):
    p = tmp_path / "big.csv"
    p.write_text("Deal ID,Account\n" + "D-1,Acme\n" * 1000)
    monkeypatch.setattr(sources, "MAX_UNPACKED_BYTES", 1000)
    with pytest.raises(ReadError, match="too large"):
        read_workbook(p)
