"""Streaming training data: jets/s through jetfm's sharded streaming loader (read, OmniJet-alpha
features, shuffle buffer, batches as tensors) against the raw h5py read of the same rows (the
limit: decompressing the datasets and nothing else).

    python benchmarks/data_loading.py [--jets 80000] [--files 4] [--quick]

The files are copies of the real CMS jets of ../shared/data/real/aoj_mini_2016H, each copy
rotated in phi and scaled in pT (benchmarks/aoj_read.py's generator, so the compression ratio is
that of real data), cached in benchmarks/out/. The loader runs in this process (num_workers=0)
and with 2 worker processes; the faster of the two is the figure. On a shared machine the worker
figure depends on how many cores are free at the time.
"""
from __future__ import annotations

import sys
from pathlib import Path

# this folder holds a tokenize.py that would shadow the standard library's module of that name:
# import the standard library (torch needs inspect -> tokenize) before putting the folder first
HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
import argparse  # noqa: E402
import os  # noqa: E402
import time  # noqa: E402
import tokenize  # noqa: E402,F401

import h5py  # noqa: E402

from jetfm.train.streaming import StreamingJets, StreamingLoader  # noqa: E402

sys.path.insert(0, str(HERE))
from _common import best_of, emit  # noqa: E402
from aoj_read import make_file  # noqa: E402

CHUNK = 4096


def raw_read(paths: list[Path]) -> int:
    """Decompress every row of the datasets the loader uses, in chunks: the limit."""
    n = 0
    for p in paths:
        with h5py.File(p) as f:
            for a in range(0, f["PFCands"].shape[0], CHUNK):
                n += len(f["PFCands"][a:a + CHUNK])
                f["jet_kinematics"][a:a + CHUNK]
                f["event_info"][a:a + CHUNK]
    return n


def stream(paths: list[Path], workers: int, batch: int, buffer: int) -> int:
    ds = StreamingJets([str(p) for p in paths], chunk_size=CHUNK, buffer_size=buffer, seed=0,
                       batch_size=batch)
    n = 0
    for b in StreamingLoader(ds, num_workers=workers):
        n += len(b["index"])
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--jets", type=int, default=80_000, help="jets in all files together")
    ap.add_argument("--files", type=int, default=4)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--buffer", type=int, default=16_384, help="shuffle buffer (jets)")
    ap.add_argument("--quick", action="store_true", help="16 k jets, one repeat")
    args = ap.parse_args()
    n = 16_000 if args.quick else args.jets
    repeats = 1 if args.quick else 3
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    out = HERE / "out"
    out.mkdir(exist_ok=True)
    per = n // args.files
    paths = [out / f"stream_{per}_{k}.h5" for k in range(args.files)]
    for k, p in enumerate(paths):
        if not p.exists():
            print(f"writing {per} jets to {p} ...", flush=True)
            make_file(p, per, seed=100 + k)
    total = per * args.files

    assert raw_read(paths) == total
    t_raw = best_of(lambda: raw_read(paths), repeats)
    rates = {}
    for workers in (0, 2):
        t0 = time.perf_counter()
        got = stream(paths, workers, args.batch, args.buffer)
        assert got == total, (got, total)  # every jet once (one process, remainder "drop")
        first = time.perf_counter() - t0
        t = min([first] + [best_of(lambda: stream(paths, workers, args.batch, args.buffer), 1)
                           for _ in range(repeats - 1)])
        rates[workers] = total / t
    raw = total / t_raw
    best_w = max(rates, key=rates.get)
    best = rates[best_w]
    print(f"{total} jets in {args.files} files, batch {args.batch}, shuffle buffer {args.buffer}")
    print(f"raw h5py read (limit)          : {raw:10.0f} jets/s")
    for w, r in rates.items():
        print(f"streaming loader, {w} workers    : {r:10.0f} jets/s ({r / raw:.2f} of the limit)")
    emit("data_loading", best, "jets/s", raw, best / raw, jets=total, files=args.files,
         workers=best_w, batch=args.batch, buffer=args.buffer,
         rate_workers0=round(rates[0], 1), rate_workers2=round(rates[2], 1),
         note="shared 2-core machine: noisy")


if __name__ == "__main__":
    main()
