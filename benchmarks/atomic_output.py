"""Cost of a locked atomic write (jetfm.io.output.atomic_output) against a bare temporary file
and rename, for the small files jetfm writes many of (scan cells, reports, manifests).

    python benchmarks/atomic_output.py [--files 2000] [--bytes 4096] [--repeats 5]

Both paths write the same bytes to the same names in a temporary folder: the baseline opens
``NAME.partial``, writes and renames it (what the writers did before); ``atomic_output`` also
creates, locks (``flock``) and removes ``NAME.lock`` with the writer's pid. Figures are CPU
microseconds per file (steadier than wall time on a shared machine), best of ``--repeats``;
the two take turns in every repeat; the last line printed is one JSON object.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))

from jetfm.io.output import atomic_output  # noqa: E402


def bare(path: str, data: bytes) -> None:
    tmp = path + ".partial"
    with open(tmp, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def locked(path: str, data: bytes) -> None:
    with atomic_output(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data)


def per_file_us(writers: dict, folder: str, n: int, data: bytes, repeats: int) -> dict:
    """Best CPU and wall microseconds per file of each writer; the writers take turns in
    every repeat, so a change of the machine's load hits both alike."""
    names = [os.path.join(folder, f"f{i:05d}.json") for i in range(n)]
    best = {k: {"cpu_us": float("inf"), "wall_us": float("inf")} for k in writers}
    for _ in range(repeats):
        for key, write in writers.items():
            c0, w0 = time.process_time(), time.perf_counter()
            for p in names:
                write(p, data)
            b = best[key]
            b["cpu_us"] = min(b["cpu_us"], (time.process_time() - c0) / n * 1e6)
            b["wall_us"] = min(b["wall_us"], (time.perf_counter() - w0) / n * 1e6)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=2000)
    ap.add_argument("--bytes", type=int, default=4096)
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    data = os.urandom(a.bytes)
    with tempfile.TemporaryDirectory() as d:
        res = per_file_us({"baseline": bare, "atomic_output": locked}, d, a.files, data,
                          a.repeats)
        base, ours = res["baseline"], res["atomic_output"]
        assert sorted(os.listdir(d)) == [f"f{i:05d}.json" for i in range(a.files)]
    print(f"{a.files} files of {a.bytes} bytes, best of {a.repeats}; per file:")
    print(f"  bare .partial + rename (baseline)  {base['cpu_us']:8.1f} us CPU  "
          f"{base['wall_us']:8.1f} us wall")
    print(f"  atomic_output (locked)             {ours['cpu_us']:8.1f} us CPU  "
          f"{ours['wall_us']:8.1f} us wall")
    print(json.dumps({"files": a.files, "bytes": a.bytes, "baseline": base, "atomic_output": ours,
                      "extra_cpu_us_per_file": ours["cpu_us"] - base["cpu_us"],
                      "cpu_ratio": ours["cpu_us"] / base["cpu_us"]}))


if __name__ == "__main__":
    main()
