"""Reading AOJ files: jets/s to read and compute the OmniJet-alpha features, against the time
h5py alone takes to decompress the same PFCands rows (the limit).

    python benchmarks/aoj_read.py [--jets 200000] [--quick]

A file of ``--jets`` jets is written (once, cached in benchmarks/out/) from the real CMS jets in
../shared/data/real/aoj_mini_2016H, each copy rotated in phi and scaled in pT with a seeded RNG, so
the compression ratio is that of real data. Runs on one core (torch/BLAS threads are not used).

The limit and our read alternate, ``--rounds`` times, and each keeps its best time: on a shared
machine the two then see the same conditions. CPU time of this process is the figure (steadier
than wall time when other jobs compete for the cores); wall time is printed beside it. The
breakdown splits our read into reading the file into Jets (decompression included) and the
OmniJet-alpha features; zlib alone on the stored PFCands chunks is printed beside them (the
reader decompresses chunks of whole jets itself, without h5py's copy of the rows into an array).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import zlib
from pathlib import Path

import h5py
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit  # noqa: E402

from jetfm.io.aoj import ReadOptions, iter_aoj, read_aoj, write_aoj  # noqa: E402
from jetfm.jets import Jets  # noqa: E402
from jetfm.physics.features import Preprocessing  # noqa: E402

REAL = Path(__file__).resolve().parents[2] / "shared/data/real/aoj_mini_2016H/2016H_job0_mini.h5"
CHUNK = 50_000
#: what the OmniJet-alpha features need (E gives the mask)
FEATURE_COLUMNS = ("px", "py", "pz", "E")


def make_file(path: Path, n: int, seed: int = 0) -> None:
    base = read_aoj(REAL)
    rng = np.random.default_rng(seed)
    reps = -(-n // len(base))
    parts = []
    for _ in range(reps):
        dphi = rng.uniform(-np.pi, np.pi)
        scale = rng.uniform(0.8, 1.25)
        c, s = np.cos(dphi), np.sin(dphi)
        px, py = base.c("px"), base.c("py")
        new = base.with_constituent_columns(
            px=(c * px - s * py) * scale, py=(s * px + c * py) * scale,
            pz=base.c("pz") * scale, E=base.c("E") * scale)
        parts.append(new)
    jets = Jets.concat(parts)[:n]
    write_aoj(path, jets, attrs={"source": "benchmark copies of aoj_mini_2016H"})


def limit(path: Path) -> None:
    with h5py.File(path) as f:
        ds = f["PFCands"]
        for a in range(0, ds.shape[0], CHUNK):
            ds[a:a + CHUNK]


def inflate_only(path: Path) -> None:
    """zlib alone on the stored PFCands chunks (no h5py copy into an array): what any reader of
    these gzip files pays at the least."""
    with h5py.File(path) as f:
        ds = f["PFCands"]
        nbytes = int(np.prod(ds.chunks)) * 4
        for a in range(0, ds.shape[0], ds.chunks[0]):
            zlib.decompress(ds.id.read_direct_chunk((a, 0, 0))[1], bufsize=nbytes)


def ours(path: Path, pre: Preprocessing) -> None:
    for jets in iter_aoj(path, chunk_size=CHUNK, columns=FEATURE_COLUMNS,
                         options=ReadOptions(trim=True)):
        pre.forward(jets)


def timed(fn) -> tuple[float, float]:
    """(CPU seconds of this process, wall seconds) of one call."""
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.process_time() - c0, time.perf_counter() - w0


def breakdown(path: Path, pre: Preprocessing) -> dict[str, float]:
    """CPU seconds of our read split into its stages (one pass over the file): reading the
    file into Jets (decompression included), and the features."""
    out = {"read_to_jets": 0.0, "features": 0.0}
    chunks = iter_aoj(path, chunk_size=CHUNK, columns=FEATURE_COLUMNS,
                      options=ReadOptions(trim=True))
    while True:
        c0 = time.process_time()
        jets = next(chunks, None)
        c1 = time.process_time()
        if jets is None:
            return out
        pre.forward(jets)
        out["read_to_jets"] += c1 - c0
        out["features"] += time.process_time() - c1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--jets", type=int, default=200_000)
    ap.add_argument("--quick", action="store_true", help="20 k jets")
    ap.add_argument("--rounds", type=int, default=5, help="alternating timing rounds")
    args = ap.parse_args()
    n = 20_000 if args.quick else args.jets
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    out = Path(__file__).resolve().parent / "out"
    out.mkdir(exist_ok=True)
    path = out / f"aoj_{n}.h5"
    if not path.exists():
        print(f"writing {n} jets to {path} ...", flush=True)
        make_file(path, n)
    pre = Preprocessing()
    ours(path, pre)  # warm the page cache and the code paths
    best = {"limit": [float("inf")] * 2, "ours": [float("inf")] * 2}
    for _ in range(args.rounds):
        for name, fn in (("limit", lambda: limit(path)), ("ours", lambda: ours(path, pre))):
            best[name] = [min(a, b) for a, b in zip(best[name], timed(fn))]
    (c_limit, w_limit), (c_ours, w_ours) = best["limit"], best["ours"]
    parts = min((breakdown(path, pre) for _ in range(2)), key=lambda d: sum(d.values()))
    c_inflate = min(timed(lambda: inflate_only(path))[0] for _ in range(2))
    load = os.getloadavg()[0]
    print(f"h5py decompress only : {n / c_limit:10.0f} jets per CPU-s ({c_limit:.2f} CPU-s, "
          f"{w_limit:.2f} s wall)")
    print(f"jetfm read + features: {n / c_ours:10.0f} jets per CPU-s ({c_ours:.2f} CPU-s, "
          f"{w_ours:.2f} s wall), {c_ours / c_limit:.2f}x the limit "
          f"(wall {w_ours / w_limit:.2f}x; goal <= 1.3x)")
    print("ours by stage (CPU-s): " + ", ".join(f"{k} {v:.2f}" for k, v in parts.items())
          + f"; zlib alone on the stored chunks {c_inflate:.2f}; load average {load:.1f}")
    emit("aoj_read", n / c_ours, "jets/cpu-s", n / c_limit, c_ours / c_limit, jets=n,
         wall_ratio=round(w_ours / w_limit, 4), rounds=args.rounds,
         **{f"{k}_cpu_s": round(v, 3) for k, v in parts.items()},
         inflate_only_cpu_s=round(c_inflate, 3), load_average=round(load, 2))


if __name__ == "__main__":
    main()
