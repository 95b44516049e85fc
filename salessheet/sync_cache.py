"""The frames cache (``<state>.frames.npz``): the tables as the last sync wrote them, typed, so that rows
unchanged since are not decoded again from the state's JSON.

Separate because it is only a speed-up with a file format of its own: losing it costs time, never data.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from .sync_rows import TABLES
from .sync_sheets import SYNC_COLUMNS


class FrameCache:
    """One table as the last sync wrote it, typed, from ``<state>.frames.npz``: rows that have not changed
    since come from here instead of being decoded again from the state's JSON (seconds for 400,000 rows).

    The file is a plain .npz (no pickle): per table its keys and columns; datetime and float columns as
    arrays, text columns as codes into their distinct values. It is tagged with the hash of the master it
    belongs to and only used when the master still has that hash; a table holding cells kept as written
    (mixed types) is not cached. Losing or spoiling the file only costs time."""

    def __init__(self, keys: np.ndarray, columns: dict[str, tuple]):
        self.index = pd.Index(keys)
        self.columns = columns  # name -> ("t", array) | ("s", codes, distinct values) | ("v", values)

    @staticmethod
    def path(state_path: Path) -> Path:
        return Path(str(state_path) + ".frames.npz")

    @classmethod
    def save(cls, state_path: Path, frames: dict[str, pd.DataFrame], keys: dict[str, np.ndarray], tag: str) -> None:
        arrays, manifest = {}, {"tag": tag, "tables": {}}

        def put(a: np.ndarray) -> str:
            name = f"a{len(arrays)}"
            arrays[name] = a
            return name

        def blob(strings: list) -> tuple[str, str]:
            offsets = np.cumsum([0] + list(map(len, strings)), dtype=np.int64)
            return put(np.frombuffer("".join(strings).encode(), dtype=np.uint8)), put(offsets)

        def text(a: np.ndarray) -> list:
            sample = a[:2000].tolist()
            if len(set(sample)) <= len(sample) // 2:  # few distinct values: codes into them (shared on load)
                codes, uniques = pd.factorize(a, use_na_sentinel=True)
                return ["s", put(codes.astype(np.int32)), *blob([str(u) for u in uniques])]
            vals = a.tolist()  # mostly distinct (IDs, names): the texts themselves, a mask for the blanks
            missing = np.array([v is None or v != v for v in vals], dtype=bool)
            return ["b", put(missing), *blob(["" if m else v for v, m in zip(vals, missing.tolist())])]

        for t in TABLES:
            df = frames.get(t)
            if df is None or keys.get(t) is None:
                continue
            entry = {}
            for c in df.columns:
                if c in SYNC_COLUMNS:
                    continue
                a = df[c].to_numpy()
                if a.dtype.kind in "fM":
                    entry[c] = ["t", put(a)]
                elif a.dtype == object and set(map(type, a[pd.notna(a)].tolist())) <= {str}:
                    entry[c] = text(a)
                else:
                    break  # a column mixing types: this table is decoded from the state next time
            else:
                manifest["tables"][t] = {"keys": text(np.asarray(keys[t], dtype=object)),
                                         "columns": entry}
        arrays["manifest"] = np.frombuffer(json.dumps(manifest).encode(), dtype=np.uint8)
        path = cls.path(state_path)
        tmp = path.with_name(path.name + f".{os.getpid()}.tmp.npz")
        try:
            np.savez(tmp, **arrays)
            os.replace(tmp, path)
        except OSError:
            tmp.unlink(missing_ok=True)  # no cache: only slower

    @classmethod
    def load(cls, state_path: Path, tag: str | None) -> dict[str, "FrameCache"]:
        path = cls.path(state_path)
        if tag is None or not path.exists():
            return {}
        try:
            with np.load(path, allow_pickle=False) as z:
                manifest = json.loads(z["manifest"].tobytes().decode())
                if manifest.get("tag") != tag:
                    return {}

                def strings(blob: str, offs: str) -> np.ndarray:
                    joined, offsets = z[blob].tobytes().decode(), z[offs].tolist()
                    out = np.empty(len(offsets) - 1, dtype=object)
                    out[:] = [joined[a:b] for a, b in zip(offsets[:-1], offsets[1:])]
                    return out

                def get(spec):
                    if spec[0] == "t":
                        return ("t", z[spec[1]])
                    if spec[0] == "s":
                        return ("s", z[spec[1]], strings(spec[2], spec[3]))
                    values = strings(spec[2], spec[3])
                    values[z[spec[1]]] = None
                    return ("v", values)

                def column(spec) -> np.ndarray:
                    got = get(spec)
                    return got[2][got[1]] if got[0] == "s" else got[1]

                return {t: cls(column(entry["keys"]), {c: get(spec) for c, spec in entry["columns"].items()})
                        for t, entry in manifest["tables"].items()}
        except Exception:  # a damaged or foreign file: decode from the state instead
            return {}

    def fill(self, keys: np.ndarray, want: np.ndarray, typed: dict, obj, rest: np.ndarray) -> np.ndarray:
        """Fill the rows at `want` (positions) that the cache has; return `rest` without them."""
        pos = self.index.get_indexer(keys[want]) if len(want) else np.empty(0, dtype=np.int64)
        hit = pos >= 0
        at, p = want[hit], pos[hit]
        if not len(at):
            return rest
        for c, entry in self.columns.items():
            if entry[0] == "t":
                a = entry[1][p]
                if not (np.isnat(a) if a.dtype.kind == "M" else np.isnan(a)).all():
                    typed.setdefault(c, []).append((at, a))
            elif entry[0] == "v":
                vals = entry[1][p]
                if (vals != None).any():  # noqa: E711
                    obj(c)[at] = vals
            else:
                codes = entry[1][p]
                if (codes >= 0).any():
                    vals = entry[2][np.maximum(codes, 0)]
                    vals[codes < 0] = None
                    obj(c)[at] = vals
        return np.setdiff1d(rest, at, assume_unique=True)
