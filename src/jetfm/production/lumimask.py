"""Certified-luminosity ("golden JSON") masks: which (run, lumi section) pairs are good.

The CMS format is a JSON object mapping a run number (a string) to a list of inclusive
``[first, last]`` lumi-section ranges, e.g. ``{"273158": [[1, 1279]], "273302": [[1, 459]]}``.
AOJ used ``Cert_271036-284044_13TeV_Legacy2016_Collisions16_JSON.txt``.
"""
from __future__ import annotations

import json
import os

import numpy as np

from jetfm.errors import InputError, require_file


class LumiMask:
    """Vectorised lookup of certified (run, lumi) pairs.

    ``ranges``: run -> list of inclusive (first, last) lumi ranges. Overlapping or touching
    ranges are merged, so each query is one binary search.
    """

    def __init__(self, ranges: dict[int, list[tuple[int, int]]], source: str | None = None):
        self.source = source
        self.ranges: dict[int, list[tuple[int, int]]] = {}
        starts, ends = [], []
        for run in sorted(ranges):
            merged: list[list[int]] = []
            for lo, hi in sorted((int(a), int(b)) for a, b in ranges[run]):
                if merged and lo <= merged[-1][1] + 1:
                    merged[-1][1] = max(merged[-1][1], hi)
                else:
                    merged.append([lo, hi])
            self.ranges[int(run)] = [tuple(r) for r in merged]
            for lo, hi in merged:
                starts.append(_key(int(run), lo))
                ends.append(_key(int(run), hi))
        self._starts = np.asarray(starts, np.uint64)
        self._ends = np.asarray(ends, np.uint64)

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> LumiMask:
        """Load a CMS certified-luminosity JSON file; InputError on anything malformed."""
        p = require_file(path)
        try:
            with open(p) as fh:
                data = json.load(fh)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise InputError(f"not a JSON file ({err})", p) from err
        if not isinstance(data, dict):
            raise InputError("lumi JSON must map run numbers to [first, last] ranges", p)
        ranges: dict[int, list[tuple[int, int]]] = {}
        for run, lst in data.items():
            try:
                r = int(run)
                pairs = [(int(a), int(b)) for a, b in lst]
            except (TypeError, ValueError) as err:
                raise InputError(f"run {run!r}: expected a list of [first, last] lumi ranges",
                                 p) from err
            if r < 0 or any(a < 0 or b < a for a, b in pairs):
                raise InputError(f"run {run!r}: invalid lumi range (need 0 <= first <= last)", p)
            ranges[r] = pairs
        return cls(ranges, p)

    def __call__(self, run: np.ndarray, lumi: np.ndarray) -> np.ndarray:
        """(E,) bool: True where (run, lumi) lies in a certified range."""
        run = np.asarray(run, np.int64)
        lumi = np.asarray(lumi, np.int64)
        if self._starts.size == 0:
            return np.zeros(run.shape, bool)
        q = _key(run, lumi)
        i = np.searchsorted(self._starts, q, side="right").astype(np.int64) - 1
        return (i >= 0) & (q <= self._ends[np.maximum(i, 0)])

    def __len__(self) -> int:
        return sum(len(v) for v in self.ranges.values())

    def describe(self) -> str:
        return (f"{os.path.basename(self.source) if self.source else 'lumi mask'}: "
                f"{len(self.ranges)} runs, {len(self)} lumi ranges")


def _key(run, lumi):
    """Sortable uint64 key of (run, lumi): run in the high 32 bits."""
    return (np.asarray(run, np.uint64) << np.uint64(32)) | np.asarray(lumi, np.uint64)
