"""Speed of `jetfm simulate aoj-like` against its limit, Pythia alone.

Measures, in one run:
1. jets/s of ``simulate_aoj_like`` with one worker (generation, region-of-interest extraction,
   detector response, clustering, substructure and writing the AOJ file);
2. the limit: Pythia alone generating exactly the same events (same settings, same per-chunk
   seeds, same number of events per chunk) with no particle copying, detector, clustering or
   writing, converted to jets/s with the jet count of run 1;
3. scaling: the same sample with two workers (one process per core).

Both timings include one Pythia initialisation per process; library imports are done before
timing. The machine is shared and noisy: repeat runs scatter by about 10 %.

Usage: .venv/bin/python benchmarks/simulate.py [--quick] [--jets N]
The last line printed is one JSON object.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))


def pythia_alone(seed: int, events_per_chunk: list[int]) -> float:
    """Seconds for Pythia to generate the given events (same init, same chunk seeds)."""
    from jetfm.simulate.pythia import AOJ_QCD, derive_seed, make_pythia

    t0 = time.perf_counter()
    p = make_pythia(AOJ_QCD, derive_seed(seed, 0, 0))
    for k, n in enumerate(events_per_chunk):
        p.rndm.init(derive_seed(seed, k + 1, 0))
        for _ in range(n):
            p.next()
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a small run (300 jets)")
    ap.add_argument("--jets", type=int, default=None)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    n = args.jets or (300 if args.quick else 2000)
    chunk = max(50, n // 4)

    import h5py

    import awkward  # noqa: F401  (imports are not generation cost: load them first)
    import fastjet  # noqa: F401
    import scipy.stats  # noqa: F401

    from jetfm.simulate import simulate_aoj_like

    with tempfile.TemporaryDirectory() as tmp:
        out1 = os.path.join(tmp, "w1.h5")
        t0 = time.perf_counter()
        simulate_aoj_like(n, args.seed, out1, workers=1, chunk_jets=chunk, progress=False)
        t_ours = time.perf_counter() - t0
        with h5py.File(out1, "r") as f:
            per_chunk = [int(x) for x in json.loads(f.attrs["events_per_chunk"])]
        events = sum(per_chunk)
        t_limit = pythia_alone(args.seed, per_chunk)

        out2 = os.path.join(tmp, "w2.h5")
        t0 = time.perf_counter()
        simulate_aoj_like(n, args.seed, out2, workers=2, chunk_jets=chunk, progress=False)
        t_two = time.perf_counter() - t0
        with h5py.File(out1, "r") as f1, h5py.File(out2, "r") as f2:
            same = all(bool((f1[k][:] == f2[k][:]).all()) for k in f1)
    ours, limit, two = n / t_ours, n / t_limit, n / t_two
    print(f"simulate aoj-like, {n} jets from {events} events (chunks of {chunk} jets), "
          f"{os.cpu_count()} cores, shared machine")
    print(f"  jetfm simulate, 1 worker : {t_ours:7.2f} s  {ours:7.1f} jets/s")
    print(f"  Pythia alone (the limit) : {t_limit:7.2f} s  {limit:7.1f} jets/s")
    print(f"  time ratio ours / limit  : {t_ours / t_limit:7.2f}   (goal <= 1.3)")
    print(f"  jetfm simulate, 2 workers: {t_two:7.2f} s  {two:7.1f} jets/s  "
          f"speed-up {t_ours / t_two:.2f}x (ideal 2x); output identical to 1 worker: {same}")
    print(json.dumps({"benchmark": "simulate_aoj_like_jets_per_s", "value": round(ours, 2),
                      "unit": "jets/s", "baseline": round(limit, 2),
                      "ratio": round(t_ours / t_limit, 3),
                      "ratio_meaning": "time of jetfm simulate / time of Pythia alone, 1 core",
                      "jets": n, "events": events, "two_workers_jets_per_s": round(two, 2),
                      "speedup_2_workers": round(t_ours / t_two, 3),
                      "identical_output_1_vs_2_workers": same}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
