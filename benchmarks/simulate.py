"""Speed of `jetfm simulate aoj-like` against its limit, Pythia alone.

Measures, in one run:
1. jets per CPU-second of ``simulate_aoj_like`` with one worker (generation, region-of-interest
   extraction, detector response, clustering, substructure and writing the AOJ file);
2. the limit, Pythia alone generating exactly the same events, twice:
   a. in the same run: the CPU time spent inside Pythia (initialisation and ``Pythia.next``) while
      run 1 made its jets. Both figures then come from the same seconds of the machine, which
      makes their ratio immune to the load of other jobs (the headline ratio);
   b. a separate run of Pythia alone (same settings, same per-chunk seeds, same number of events
      per chunk, no particle copying, detector, clustering or writing): a cross-check, exposed
      to load changes between the two runs;
3. scaling: the same sample with two workers (one process per core): wall speed-up and the CPU
   time of the workers against one worker; the output must be identical.

The machine is shared: CPU times (``time.process_time``; the one-worker run is in-process) are the
robust figures; wall times and the wall speed-up depend on how busy the cores are (the load
average is printed).

Usage: .venv/bin/python benchmarks/simulate.py [--quick] [--jets N]
The last line printed is one JSON object.
"""
from __future__ import annotations

import argparse  # noqa: E402
import json  # noqa: E402
import os
import resource  # noqa: E402
import sys
import tempfile  # noqa: E402
import time  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))


def pythia_alone(seed: int, events_per_chunk: list[int]) -> tuple[float, float]:
    """(wall, CPU) seconds for Pythia to generate the given events (same init, same chunk
    seeds)."""
    from jetfm.simulate.pythia import AOJ_QCD, derive_seed, make_pythia

    t0, c0 = time.perf_counter(), time.process_time()
    p = make_pythia(AOJ_QCD, derive_seed(seed, 0, 0))
    for k, n in enumerate(events_per_chunk):
        p.rndm.init(derive_seed(seed, k + 1, 0))
        for _ in range(n):
            p.next()
    return time.perf_counter() - t0, time.process_time() - c0


class PythiaClock:
    """Accumulates the CPU time spent inside Pythia (init and next) during a simulate run."""

    def __init__(self):
        from jetfm.simulate import pythia

        self.cpu = 0.0
        self._mod = pythia
        self._orig = (pythia.make_pythia, pythia.EventGenerator.generate)

    def __enter__(self):
        clock = self
        make, generate = self._orig

        def timed_make(*a, **k):
            c = time.process_time()
            try:
                return make(*a, **k)
            finally:
                clock.cpu += time.process_time() - c

        def timed_generate(gen):
            c = time.process_time()
            ok = gen.pythia.next()
            clock.cpu += time.process_time() - c
            gen.n_generated += 1
            gen.n_failed += not ok
            return ok

        self._mod.make_pythia = timed_make
        self._mod.EventGenerator.generate = timed_generate
        return self

    def __exit__(self, *exc):
        self._mod.make_pythia, self._mod.EventGenerator.generate = self._orig


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a small run (300 jets)")
    ap.add_argument("--jets", type=int, default=None)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    n = args.jets or (300 if args.quick else 2000)
    chunk = max(50, n // 4)

    import awkward  # noqa: F401  (imports are not generation cost: load them first)
    import fastjet  # noqa: F401
    import h5py
    import scipy.stats  # noqa: F401

    from jetfm.simulate import simulate_aoj_like

    with tempfile.TemporaryDirectory() as tmp:
        # warm-up: pays the one-time costs (lazy imports, first calls into FastJet, h5py, the
        # observables) that are not generation cost; another seed, so Pythia is initialised
        # again (and timed) in the measured run
        simulate_aoj_like(3, args.seed + 1000, os.path.join(tmp, "warm.h5"), workers=1,
                          progress=False)
        out1 = os.path.join(tmp, "w1.h5")
        with PythiaClock() as clock:
            t0, c0 = time.perf_counter(), time.process_time()
            simulate_aoj_like(n, args.seed, out1, workers=1, chunk_jets=chunk, progress=False)
            t_ours, c_ours = time.perf_counter() - t0, time.process_time() - c0
        c_inside = clock.cpu
        with h5py.File(out1, "r") as f:
            per_chunk = [int(x) for x in json.loads(f.attrs["events_per_chunk"])]
        events = sum(per_chunk)
        t_limit, c_limit = pythia_alone(args.seed, per_chunk)

        out2 = os.path.join(tmp, "w2.h5")
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        simulate_aoj_like(n, args.seed, out2, workers=2, chunk_jets=chunk, progress=False)
        t_two = time.perf_counter() - t0
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        c_two = (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)
        with h5py.File(out1, "r") as f1, h5py.File(out2, "r") as f2:
            same = all(bool((f1[k][:] == f2[k][:]).all()) for k in f1)

    load = os.getloadavg()[0]
    print(f"simulate aoj-like, {n} jets from {events} events (chunks of {chunk} jets), "
          f"{os.cpu_count()} cores, load average {load:.1f}")
    print(f"  {'':34s} {'wall s':>8s} {'CPU s':>8s} {'jets/CPU-s':>11s}")
    print(f"  {'jetfm simulate, 1 worker':34s} {t_ours:8.2f} {c_ours:8.2f} {n / c_ours:11.1f}")
    print(f"  {'  of which inside Pythia (limit a)':34s} {'':8s} {c_inside:8.2f} "
          f"{n / c_inside:11.1f}")
    print(f"  {'Pythia alone, separate (limit b)':34s} {t_limit:8.2f} {c_limit:8.2f} "
          f"{n / c_limit:11.1f}")
    print(f"  ratio ours / limit (CPU): {c_ours / c_inside:.3f} same run (goal <= 1.3), "
          f"{c_ours / c_limit:.3f} separate run; wall, separate run: {t_ours / t_limit:.3f}")
    print(f"  {'jetfm simulate, 2 workers':34s} {t_two:8.2f} {c_two:8.2f} {n / c_two:11.1f}"
          f"   wall speed-up {t_ours / t_two:.2f}x (ideal 2x on 2 free cores); CPU time vs 1 "
          f"worker {c_two / c_ours:.2f}x; identical output: {same}")
    print(json.dumps({"benchmark": "simulate_aoj_like_jets_per_cpu_s",
                      "value": round(n / c_ours, 2), "unit": "jets/CPU-s",
                      "baseline": round(n / c_inside, 2), "ratio": round(c_ours / c_inside, 3),
                      "ratio_meaning": "CPU time of jetfm simulate / CPU time inside Pythia for "
                                       "the same events, same run",
                      "ratio_separate_pythia_run_cpu": round(c_ours / c_limit, 3),
                      "ratio_separate_pythia_run_wall": round(t_ours / t_limit, 3),
                      "jets": n, "events": events,
                      "wall_jets_per_s_1_worker": round(n / t_ours, 2),
                      "wall_jets_per_s_2_workers": round(n / t_two, 2),
                      "speedup_2_workers_wall": round(t_ours / t_two, 3),
                      "cpu_time_2_vs_1_workers": round(c_two / c_ours, 3),
                      "load_average": round(load, 2),
                      "identical_output_1_vs_2_workers": same}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
