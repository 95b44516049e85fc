"""Open a workbook in a running headless LibreOffice, recalculate it, print its formula cells as JSON.

Run with a Python that has LibreOffice's `uno` module (Debian: /usr/bin/python3), by
salessheet.libreoffice.recalc_workbook, which starts and always stops soffice around it:

    python3 recalc.py --pipe NAME [--no-calc] [--hidden] [--out OUT.xlsx] [--first OTHER.xlsx] BOOK.xlsx

Prints {"cells": {"Sheet!A1": {"formula", "value", "text", "error"}}, "seconds": {...}}; "error" is
Calc's error code (532 #DIV/0!, 32767 #N/A, ...) or 0. Ends by asking soffice to terminate.
"""
import argparse
import json
import os
import sys
import time

import uno
from com.sun.star.beans import PropertyValue

FORMULA = 16  # com.sun.star.sheet.CellFlags.FORMULA
FILTERS = {".xlsx": "Calc MS Excel 2007 XML", ".ods": "calc8"}


def prop(name, value):
    p = PropertyValue()
    p.Name, p.Value = name, value
    return p


def connect(pipe, wait):
    local = uno.getComponentContext()
    resolver = local.ServiceManager.createInstanceWithContext("com.sun.star.bridge.UnoUrlResolver", local)
    deadline = time.monotonic() + wait
    while True:
        try:
            return resolver.resolve("uno:pipe,name=%s;urp;StarOffice.ComponentContext" % pipe)
        except Exception:  # soffice not listening yet
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def load(desktop, path, hidden):
    url = uno.systemPathToFileUrl(os.path.abspath(path))
    doc = desktop.loadComponentFromURL(url, "_blank", 0, (prop("Hidden", hidden),))
    if doc is None:
        raise SystemExit("LibreOffice could not open %s" % path)
    return doc


def formula_cells(doc):
    cells = {}
    for sheet in doc.Sheets:
        found = sheet.queryContentCells(FORMULA)
        for addr in found.RangeAddresses:
            for row in range(addr.StartRow, addr.EndRow + 1):
                for col in range(addr.StartColumn, addr.EndColumn + 1):
                    cell = sheet.getCellByPosition(col, row)
                    cells["%s!%s" % (sheet.Name, cell.AbsoluteName.split(".")[-1].replace("$", ""))] = {
                        "formula": cell.getFormula(), "value": cell.getValue(), "text": cell.getString(),
                        "error": cell.getError()}
    return cells


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("book")
    ap.add_argument("--pipe", required=True)
    ap.add_argument("--wait", type=float, default=60.0, help="seconds to wait for soffice to listen")
    ap.add_argument("--no-calc", action="store_true", help="read values as loaded, without calculateAll()")
    ap.add_argument("--hidden", action="store_true", help="load hidden (ThisComponent is then None in Basic)")
    ap.add_argument("--out", help="save the recalculated workbook here (.xlsx or .ods)")
    ap.add_argument("--first", action="append", default=[], help="open this workbook first and keep it open")
    a = ap.parse_args(argv)
    t0 = time.monotonic()
    ctx = connect(a.pipe, a.wait)
    desktop = ctx.ServiceManager.createInstanceWithContext("com.sun.star.frame.Desktop", ctx)
    seconds = {"connect": time.monotonic() - t0}
    try:
        for other in a.first:
            load(desktop, other, a.hidden)
        t = time.monotonic()
        doc = load(desktop, a.book, a.hidden)
        seconds["load"] = time.monotonic() - t
        t = time.monotonic()
        if not a.no_calc:
            doc.calculateAll()
        seconds["calc"] = time.monotonic() - t
        cells = formula_cells(doc)
        if a.out:
            ext = os.path.splitext(a.out)[1].lower()
            doc.storeToURL(uno.systemPathToFileUrl(os.path.abspath(a.out)), (prop("FilterName", FILTERS[ext]),))
        doc.close(True)
        json.dump({"cells": cells, "seconds": seconds}, sys.stdout)
    finally:
        try:
            desktop.terminate()
        except Exception:  # the bridge drops while soffice exits
            pass


if __name__ == "__main__":
    main()
