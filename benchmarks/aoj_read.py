"""Reading AOJ files: jets/s to read and compute the OmniJet-alpha features, against the time
h5py alone takes to decompress the same PFCands rows (the limit).

    python benchmarks/aoj_read.py [--jets 200000] [--quick]

A file of ``--jets`` jets is written (once, cached in benchmarks/out/) from the real CMS jets in
../shared/data/real/aoj_mini_2016H, each copy rotated in phi and scaled in pT with a seeded RNG, so
the compression ratio is that of real data. Runs on one core (torch/BLAS threads are not used).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import h5py
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import best_of, emit  # noqa: E402

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


def ours(path: Path, pre: Preprocessing) -> None:
    for jets in iter_aoj(path, chunk_size=CHUNK, columns=FEATURE_COLUMNS,
                         options=ReadOptions(trim=True)):
        pre.forward(jets)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--jets", type=int, default=200_000)
    ap.add_argument("--quick", action="store_true", help="20 k jets")
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
    t_limit = best_of(lambda: limit(path))
    t_ours = best_of(lambda: ours(path, pre))
    rate, rate_limit = n / t_ours, n / t_limit
    print(f"h5py decompress only : {rate_limit:10.0f} jets/s ({t_limit:.2f} s)")
    print(f"jetfm read + features: {rate:10.0f} jets/s ({t_ours:.2f} s), "
          f"{t_ours / t_limit:.2f}x the limit")
    emit("aoj_read", rate, "jets/s", rate_limit, t_ours / t_limit, jets=n)


if __name__ == "__main__":
    main()
