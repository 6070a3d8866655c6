"""Deterministic train/validation/test split of AOJ files, keyed on (run, lumi, event).

AOJ has no official split. Each jet goes to the split chosen by a 64-bit hash of its event's
(run, luminosityBlock, event) and a ``seed``, mapped to [0, 1) and compared with the cumulative
fractions. So a jet's split depends only on its event (never on file order, file boundaries or
how many files there are), and all jets of one event land in the same split (no leakage of an
event between training and test).
"""
from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from jetfm.errors import InputError
from jetfm.io.aoj import AOJWriter
from jetfm.io.output import write_text_atomic
from jetfm.jets import Jets

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: a bijective, well-mixed uint64 -> uint64."""
    x = x ^ (x >> np.uint64(30))
    x = x * _M1
    x = x ^ (x >> np.uint64(27))
    x = x * _M2
    return x ^ (x >> np.uint64(31))


def event_hash(event_info: np.ndarray, seed: int = 0) -> np.ndarray:
    """(N, 3) run, lumi, event -> (N,) float64 uniform in [0, 1), reproducible everywhere."""
    ev = np.asarray(event_info, np.int64).astype(np.uint64)
    with np.errstate(over="ignore"):
        h = _mix(np.full(len(ev), np.uint64(seed & 0xFFFFFFFFFFFFFFFF)) + _GOLDEN)
        for k in range(3):
            h = _mix(h ^ (ev[:, k] + _GOLDEN))
    return (h >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def parse_fractions(text: str | Sequence[float], n_names: int = 3) -> tuple[float, ...]:
    """``"0.9,0.05,0.05"`` -> (0.9, 0.05, 0.05); must be >= 0, one per split, summing to 1."""
    try:
        fr = tuple(float(x) for x in (text.split(",") if isinstance(text, str) else text))
    except ValueError as err:
        raise InputError(f"--fractions must be numbers separated by commas, got {text!r}") from err
    if len(fr) != n_names:
        raise InputError(f"--fractions needs {n_names} values (one per split), got {len(fr)}")
    if any(not np.isfinite(f) or f < 0 for f in fr) or abs(sum(fr) - 1.0) > 1e-6:
        raise InputError(f"--fractions must be non-negative and sum to 1, got {text!r}")
    return fr


def assign(event_info: np.ndarray, fractions: Sequence[float], seed: int = 0) -> np.ndarray:
    """(N,) int split index of each jet."""
    edges = np.cumsum(fractions)[:-1]
    return np.searchsorted(edges, event_hash(event_info, seed), side="right")


def series_pattern(name: str) -> re.Pattern:
    """Every file of the split ``name``, finished or being written."""
    return re.compile(re.escape(name) + r"_\d{4,}\.h5(\.partial)?$")


class OutputSeries:
    """AOJ files ``<name>_NNNN.h5`` filled in order, a new one every ``jets_per_file`` jets,
    each written as ``.partial`` and renamed when full or at :meth:`finish`. Files of this
    series left in the folder by an earlier run are removed first. Compression as build-aoj's
    outputs (gzip 1 with shuffle)."""

    def __init__(self, out_dir: str, name: str, jets_per_file: int, attrs: dict | None = None):
        from jetfm.production.tasks import GZIP_LEVEL, SHUFFLE

        self.out_dir, self.name, self.jets_per_file = out_dir, name, jets_per_file
        self.attrs, self.compression = attrs or {}, {"gzip_level": GZIP_LEVEL, "shuffle": SHUFFLE}
        self.file_index = self.rows = 0
        self._writer: AOJWriter | None = None
        pat = series_pattern(name)
        for fn in os.listdir(out_dir):
            if pat.match(fn):
                os.remove(os.path.join(out_dir, fn))

    def file_name(self, i: int) -> str:
        return f"{self.name}_{i:04d}.h5"

    def append(self, jets: Jets) -> None:
        done = 0
        while done < len(jets):
            if self._writer is None:
                path = os.path.join(self.out_dir, self.file_name(self.file_index))
                self._writer = AOJWriter(path, self.attrs, **self.compression)
            take = min(len(jets) - done, self.jets_per_file - self.rows)
            self._writer.append(jets[done:done + take])
            self.rows += take
            done += take
            if self.rows >= self.jets_per_file:
                self.finish()

    def finish(self) -> None:
        """Publish the file being filled (if it holds jets)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
            self.file_index += 1
            self.rows = 0

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.abort()
            self._writer = None


@dataclass
class SplitSummary:
    out_dir: str
    counts: dict[str, int]
    files: dict[str, list[str]]


def split_aoj(inputs: Sequence[str], out_dir: str, fractions: Sequence[float] = (0.9, 0.05, 0.05),
              names: Sequence[str] = ("train", "val", "test"), seed: int = 0,
              jets_per_file: int = 2_200_000, chunk_size: int = 50_000,
              progress: bool = True) -> SplitSummary:
    """Stream AOJ ``inputs`` into ``<out_dir>/<name>_NNNN.h5`` for each split name.

    Rows are copied unchanged (constituent order, sentinels, all columns); within a split,
    jets keep the order of the inputs. ``split.json`` records fractions, seed and counts.
    """
    from tqdm import tqdm

    from jetfm.io.aoj import ReadOptions, aoj_length, iter_aoj

    if len(names) != len(set(names)):
        raise InputError(f"split names must differ, got {list(names)}")
    if isinstance(jets_per_file, bool) or not isinstance(jets_per_file, (int, np.integer)) \
            or jets_per_file < 1:
        raise InputError(f"--jets-per-file must be an integer >= 1, got {jets_per_file!r}")
    fractions = parse_fractions(list(fractions), len(names))
    if not inputs:
        raise InputError("no AOJ files to split")
    os.makedirs(out_dir, exist_ok=True)
    attrs = {"generator": "jetfm split",
             "split": json.dumps({"fractions": list(fractions), "seed": seed})}
    series = {n: OutputSeries(out_dir, n, jets_per_file, attrs=attrs) for n in names}
    counts = dict.fromkeys(names, 0)
    # read rows as stored: no re-sorting, sentinels kept as NaN and written back as -1
    opts = ReadOptions(sort_by_pt=False)
    try:
        with tqdm(total=aoj_length(inputs), unit="jet", desc="split", disable=not progress) as bar:
            for jets in iter_aoj(inputs, chunk_size=chunk_size, options=opts):
                if jets.event_info is None:
                    raise InputError("AOJ file without event_info cannot be split by event",
                                     jets.meta.get("source"))
                which = assign(jets.event_info, fractions, seed)
                for k, n in enumerate(names):
                    part = jets[which == k]
                    if len(part):
                        series[n].append(part)
                        counts[n] += len(part)
                bar.update(len(jets))
        for s in series.values():
            s.finish()
    except BaseException:
        for s in series.values():
            s.abort()
        raise
    files = {n: [os.path.join(out_dir, series[n].file_name(i))
                 for i in range(series[n].file_index)] for n in names}
    rec = {"inputs": [os.path.abspath(p) for p in inputs], "fractions": list(fractions),
           "names": list(names), "seed": seed, "counts": counts,
           "files": {n: [os.path.basename(f) for f in fs] for n, fs in files.items()}}
    write_text_atomic(os.path.join(out_dir, "split.json"), json.dumps(rec, indent=1))
    return SplitSummary(out_dir, counts, files)
