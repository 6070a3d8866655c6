"""Speed of the JetNet W1P metric (jetfm.evaluate.metrics.w1p) against pooling the drawn jets'
constituents and sorting them (what JetNet does), on the same draws, in one run.

    python benchmarks/metrics.py [--quick]

Data: the real CMS jets of ../shared/data/real/aoj_mini_2016H (constituent eta_rel, phi_rel,
pT / jet pT) as both samples, the second one shifted, 50 000 jet draws per batch, 5 batches (the
JetNet convention). jetfm weighs each distinct constituent by its jet's draw count instead, which
is the same empirical distribution: the values agree to rounding (printed). Best of the repeats
on a shared, noisy machine.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import best_of, emit  # noqa: E402

from jetfm.evaluate.metrics import _sample_rows, constituent_features, w1p  # noqa: E402
from jetfm.io import read_jets  # noqa: E402

REAL = Path(__file__).resolve().parents[2] / "shared/data/real/aoj_mini_2016H/2016H_job0_mini.h5"


def pooled_w1p(ref, rm, gen, gm, num_samples, num_batches, seed):
    """The straightforward way: concatenate the drawn jets' constituents, W1 per feature."""
    rng = np.random.default_rng(seed)
    per = np.zeros((num_batches, ref.shape[-1]))
    for b in range(num_batches):
        ir, ig = _sample_rows(len(ref), num_samples, rng), _sample_rows(len(gen), num_samples, rng)
        r, g = ref[ir][rm[ir]], gen[ig][gm[ig]]
        for f in range(ref.shape[-1]):
            per[b, f] = stats.wasserstein_distance(r[:, f], g[:, f])
    return per.mean(1).mean()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="10 000 draws per batch, one repeat")
    args = ap.parse_args()
    n, reps = (10_000, 1) if args.quick else (50_000, 3)
    jets = read_jets(REAL)
    ref = constituent_features(jets).astype(np.float64)
    gen = ref * 1.05 + 0.01
    rm = gm = jets.mask
    ours = w1p(ref, rm, gen, gm, n, 5, seed=1)[0].value
    base = pooled_w1p(ref, rm, gen, gm, n, 5, 1)
    t = best_of(lambda: w1p(ref, rm, gen, gm, n, 5, seed=1), reps)
    t0 = best_of(lambda: pooled_w1p(ref, rm, gen, gm, n, 5, 1), reps)
    print(f"W1P, {len(jets)} real jets ({rm.sum()} constituents) per side, {n} draws x 5 batches")
    print(f"jetfm (draw-count weights): {t:.3f} s   pooled draws: {t0:.3f} s   ({t0 / t:.1f}x)")
    print(f"values: {ours:.12g} vs {base:.12g} (relative difference {abs(ours - base) / base:.1e})")
    emit("w1p_seconds", t, "s", t0, t0 / t, w1p_value=ours, w1p_pooled_value=base,
         draws=n)


if __name__ == "__main__":
    main()
