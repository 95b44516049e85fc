"""Spreadsheet formula text: A1 references, tokens, the parse tree, shared-formula shifting, structured
references (``Deals[[#All],[Stage]]``) and Excel's serial dates.

Separate from recalc because it knows nothing of salessheet, workbooks or files: it reads the formula
language as Excel writes it, and the evaluator and the worksheet splicer build on it. What it cannot read
raises Unsupported, and recalc leaves that cell alone.
"""
from __future__ import annotations

import datetime as dt
import re

_PREFIXES = ("_XLUDF.", "_XLL.", "_XLFN.", "_XLWS.")
_EPOCH = dt.datetime(1899, 12, 30)  # Excel serial 0 (1900 date system; serials from 1900-03-01 on)


class Unsupported(Exception):
    """The formula uses something recalc does not evaluate; the cell is left alone."""


# --- A1 references ------------------------------------------------------------------------------


def col_index(letters: str) -> int:
    n = 0
    for ch in letters.upper():
        n = n * 26 + ord(ch) - 64
    return n


def col_letters(n: int) -> str:
    s = ""
    while n:
        n, r = divmod(n - 1, 26)
        s = chr(65 + r) + s
    return s


_A1 = re.compile(r"(\$?)([A-Za-z]{1,3})(\$?)(\d+)$")


def parse_cell(ref: str) -> tuple[int, int]:
    """"B4" -> (row 4, column 2), both 1-based."""
    m = _A1.match(ref)
    if not m:
        raise ValueError(f"not a cell reference: {ref!r}")
    return int(m.group(4)), col_index(m.group(2))


def cell_name(row: int, col: int) -> str:
    return f"{col_letters(col)}{row}"


def ref_area(text: str):
    """'B2' -> (2, 2, 2, 2, True); 'A:P' -> (1, 1, None, 16, False); '3:5' -> (3, 1, 5, None, False)."""
    a, _, b = text.replace("$", "").partition(":")
    b = b or a
    if a.isdigit():
        return int(a), 1, int(b), None, False
    if a.isalpha():
        return 1, col_index(a), None, col_index(b), False
    (r1, c1), (r2, c2) = parse_cell(a), parse_cell(b)
    r1, r2 = sorted((r1, r2))
    c1, c2 = sorted((c1, c2))
    return r1, c1, r2, c2, text.find(":") < 0


# --- formula tokens and parser ------------------------------------------------------------------

_TOKEN = re.compile(r"""
 (?P<ws>\s+)
|(?P<str>"(?:[^"]|"")*")
|(?P<err>\#(?:NULL!|DIV/0!|VALUE!|REF!|NAME\?|NUM!|N/A|GETTING_DATA|SPILL!|CALC!))
|(?P<sheet>(?:'(?:[^']|'')+'|\[\d+\][\w.]*|[^\W\d][\w.]*)!)
|(?P<func>[^\W\d][\w.]*(?=\())
|(?P<range>(?:\$?[A-Za-z]{1,3}\$?\d+(?::\$?[A-Za-z]{1,3}\$?\d+)?|\$?[A-Za-z]{1,3}:\$?[A-Za-z]{1,3}|\$?\d+:\$?\d+)
   (?![\w.(\[]))
|(?P<table>[^\W\d][\w.]*(?=\[))
|(?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
|(?P<name>[^\W\d][\w.]*)
|(?P<op><=|>=|<>|[-+*/^%&=<>(),:;{}@])
""", re.X)


def tokenize(text: str) -> list[tuple[str, str, int, int]]:
    """(kind, text, start, end) tokens; a table token's text includes its [...] specifier."""
    out, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise Unsupported(f"cannot read the formula at {text[pos:pos + 12]!r}")
        kind, end = m.lastgroup, m.end()
        if kind == "table":
            end = _bracket_end(text, end)
        if kind != "ws":
            out.append((kind, text[pos:end], pos, end))
        pos = end
    return out


def _bracket_end(text: str, i: int) -> int:
    """Index after the ] closing the [ at text[i]; ' escapes the next character inside brackets."""
    depth = 0
    while i < len(text):
        ch = text[i]
        if ch == "'":
            i += 2
            continue
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    raise Unsupported("unbalanced [ ] in a table reference")


def shift_formula(text: str, drow: int, dcol: int) -> str:
    """A shared formula as seen from a cell (drow, dcol) away from its master: relative references move."""
    if not drow and not dcol:
        return text
    parts, last = [], 0
    for kind, tok, start, end in tokenize(text):
        if kind == "range":
            parts.append(text[last:start])
            parts.append(":".join(_shift_ref(p, drow, dcol) for p in tok.split(":")))
            last = end
    parts.append(text[last:])
    return "".join(parts)


def _shift_ref(ref: str, drow: int, dcol: int) -> str:
    m = re.fullmatch(r"(\$?)([A-Za-z]{0,3})(\$?)(\d*)", ref)
    cabs, col, rabs, row = m.groups()
    if col and not cabs:
        c = col_index(col) + dcol
        if c < 1:
            raise Unsupported("a shared formula moves a reference off the sheet (#REF!)")
        col = col_letters(c)
    if row and not rabs:
        r = int(row) + drow
        if r < 1:
            raise Unsupported("a shared formula moves a reference off the sheet (#REF!)")
        row = str(r)
    return f"{cabs}{col}{rabs}{row}"


class _Parser:
    """Recursive descent over Excel's operator precedence: + - < * / < ^ < unary minus < %."""

    def __init__(self, text: str):
        self.toks = tokenize(text)
        self.i = 0

    def parse(self):
        node = self.expr()
        if self.i != len(self.toks):
            raise Unsupported(f"recalc does not evaluate {self.toks[self.i][1]!r} here")
        return node

    def peek(self, offset: int = 0):
        j = self.i + offset
        return self.toks[j] if j < len(self.toks) else (None, None, 0, 0)

    def take(self):
        tok = self.peek()
        self.i += 1
        return tok

    def op(self, *ops) -> str | None:
        kind, text, _, _ = self.peek()
        if kind == "op" and text in ops:
            self.i += 1
            return text
        return None

    def expr(self):
        node = self.term()
        while (o := self.op("+", "-")) is not None:
            node = ("bin", o, node, self.term())
        return node

    def term(self):
        node = self.power()
        while (o := self.op("*", "/")) is not None:
            node = ("bin", o, node, self.power())
        return node

    def power(self):
        node = self.unary()
        while self.op("^") is not None:
            node = ("bin", "^", node, self.unary())
        return node

    def unary(self):
        if (o := self.op("-", "+")) is not None:
            inner = self.unary()
            return ("neg", inner) if o == "-" else inner
        node = self.primary()
        while self.op("%") is not None:
            node = ("pct", node)
        return node

    def primary(self):
        kind, text, _, _ = self.take()
        if kind == "num":
            return ("num", float(text))
        if kind == "str":
            return ("str", text[1:-1].replace('""', '"'))
        if kind == "err":
            return ("err", text)
        if kind == "op" and text == "(":
            node = self.expr()
            if self.op(")") is None:
                raise Unsupported("missing )")
            return node
        if kind == "sheet":
            sheet = text[:-1]
            if sheet.startswith("["):
                if self.peek()[0] == "func":  # an add-in's function: [1]!WINRATE(...)
                    return self.call(self.take()[1])
                raise Unsupported("references to other workbooks are not evaluated")
            if sheet.startswith("'"):
                sheet = sheet[1:-1].replace("''", "'")
            k2, t2, _, _ = self.take()
            if k2 == "func":  # 'C:\addins\x.xlam'!WINRATE( or Book!WINRATE(
                self.i -= 1
                return self.call(self.take()[1])
            if k2 != "range":
                raise Unsupported(f"recalc does not evaluate {text}{t2 or ''}")
            return ("ref", sheet, t2)
        if kind == "range":
            return ("ref", None, text)
        if kind == "table":
            return ("table", text)
        if kind == "func":
            return self.call(text)
        if kind == "name":
            up = text.upper()
            if up in ("TRUE", "FALSE"):
                return ("bool", up == "TRUE")
            return ("name", text)
        raise Unsupported(f"recalc does not evaluate {text!r}" if text else "the formula ends too early")

    def call(self, name: str):
        self.take()  # (
        args = []
        if self.op(")") is not None:
            return ("call", name, args)
        while True:
            kind, text, _, _ = self.peek()
            if kind == "op" and text in (",", ")"):
                args.append(("missing",))
            else:
                args.append(self.expr())
            if self.op(",") is not None:
                continue
            if self.op(")") is not None:
                return ("call", name, args)
            raise Unsupported(f"recalc does not evaluate {self.peek()[1]!r} in {name}()")


def parse_formula(text: str):
    return _Parser(text).parse()


def function_name(name: str) -> str:
    up = name.upper()
    for p in _PREFIXES:
        if up.startswith(p):
            return up[len(p):]
    return up


# --- structured references ----------------------------------------------------------------------


def table_spec(inner: str) -> tuple[set[str], tuple[str, str] | None]:
    """Specials ({"#all"}) and the column span of the text inside Table[...]."""
    def unescape(s: str) -> str:
        return re.sub(r"'(.)", r"\1", s).strip()

    if not inner.strip():
        return set(), None
    if not inner.lstrip().startswith("["):
        item = unescape(inner)
        if item.startswith("@"):
            return {"#this row"}, None
        return ({item.casefold()}, None) if item.startswith("#") else (set(), (item, item))
    specials, cols = set(), None
    for item in _split_items(inner):
        span = [unescape(x.strip()[1:-1]) for x in _split_top(item, ":")]
        if span[0].startswith("#"):
            specials.add(span[0].casefold())
        else:
            cols = (span[0], span[-1])
    return specials, cols


def _split_top(text: str, sep: str) -> list[str]:
    """Split on sep outside brackets (honouring ' escapes)."""
    out, depth, cur, i = [], 0, [], 0
    while i < len(text):
        ch = text[i]
        if ch == "'" and i + 1 < len(text):
            cur.append(text[i:i + 2])
            i += 2
            continue
        depth += (ch == "[") - (ch == "]")
        if ch == sep and depth == 0:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    out.append("".join(cur))
    return out


def _split_items(inner: str) -> list[str]:
    return [s.strip() for s in _split_top(inner, ",") if s.strip()]


# --- dates --------------------------------------------------------------------------------------


def serial(d: dt.date) -> float:
    if not isinstance(d, dt.datetime):
        d = dt.datetime(d.year, d.month, d.day)
    return (d.replace(tzinfo=None) - _EPOCH).total_seconds() / 86400
