"""Speed of `jetfm build-aoj`: input events/s and jets/s per Dask worker, the 1 -> 2 worker
speed-up, and the per-worker rate against uproot's bare read of the same branches (the limit).

Inputs: the two real PFNano files (index and inline flavour) with their events repeated until the
set holds >= 20 000 events (--quick: 2 000). The repeats are written as bigger PFNano files (the
branches the builder reads, a TTree with baskets of about 1000 events, uproot's ZLIB compression,
event numbers shifted per repeat) rather than as hundreds of 10-event copies: opening a real
PFNano tree costs seconds (about 1800 branch descriptions), which would dominate copies of such
tiny files but not real files of 10^4-10^5 events. Each configuration gets a fresh
LocalCluster (processes, one thread each) and cold file caches; cluster start-up and the
workers' first imports are not timed. The workers read, select and write the outputs; the
per-worker CPU rate counts all of it (the bare read is only the reading). The machine is shared
with other busy work: note the load average printed.

    .venv/bin/python benchmarks/build_aoj.py [--quick]
"""
from __future__ import annotations

import os
import sys

# the real PFNano paths are defined once, in tests/conftest.py at the repository root
sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse  # noqa: E402
import logging  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
from _common import emit  # noqa: E402

from jetfm.io import nanoaod  # noqa: E402
from jetfm.production.builder import build_aoj  # noqa: E402
from jetfm.production.selection import Selection, event_branches  # noqa: E402
from tests.conftest import PFNANO_INDEX, PFNANO_INLINE  # noqa: E402


def branches_read(path: str) -> list[str]:
    """Exactly the branches a build reads from this file."""
    info = nanoaod.inspect_pfnano(path)
    extra = [b for b in (*nanoaod.TAGGING_BRANCHES.values(), *nanoaod.FATJET_OPTIONAL)
             if b in info.branches]
    return list(dict.fromkeys((*nanoaod.REQUIRED_BRANCHES[info.flavour], *extra,
                               *event_branches(Selection(), info.branches))))


def make_repeated(src: str, dst: str, repeats: int) -> int:
    """Write ``src``'s events ``repeats`` times into ``dst`` (PFNano naming); returns events."""
    import awkward as ak
    import uproot

    names = branches_read(src)
    arrs = uproot.open(src)["Events"].arrays(names, how=dict)
    n = len(arrs["run"])
    flat: dict = {}
    groups: dict[str, dict] = {}
    for name, arr in arrs.items():  # NanoAOD layout: collections share an nX counter
        coll = next((c for c in ("FatJetPFCands", "FatJet", "PFCands")
                     if name.startswith(c + "_")), None)
        if coll is None:
            flat[name] = ak.to_numpy(arr)
        else:
            groups.setdefault(coll, {})[name[len(coll) + 1:]] = arr
    block = {**flat, **{c: ak.zip(f) for c, f in groups.items()}}
    per_basket = max(1, 1000 // n)  # baskets of about 1000 events
    with uproot.recreate(dst) as f:  # a TTree, as PFNano (uproot's default would be RNTuple)
        tree = f.mktree("Events", {k: (v.type.content if isinstance(v, ak.Array) else v.dtype)
                                   for k, v in block.items()})
        for r0 in range(0, repeats, per_basket):
            k = min(per_basket, repeats - r0)
            part = {key: (ak.concatenate([v] * k) if isinstance(v, ak.Array)
                          else np.tile(v, k)) for key, v in block.items()}
            part["event"] = part["event"] + np.repeat(
                np.arange(r0, r0 + k, dtype=np.uint64), n) * 10**8
            tree.extend(part)
    return n * repeats


def bare_read(files: list[str], chunk_events: int) -> tuple[float, float, int]:
    """Wall and CPU seconds for uproot to read the builder's branches of every file, in the same
    entry ranges, in this one process (opening included, as a worker does), and the events."""
    import uproot

    t0, c0 = time.perf_counter(), time.process_time()
    events = 0
    for path in files:
        names = branches_read(path)
        nanoaod._open_tree.cache_clear()
        tree = uproot.open(path)["Events"]
        for a in range(0, tree.num_entries, chunk_events):
            tree.arrays(names, entry_start=a, entry_stop=a + chunk_events, how=dict)
        events += tree.num_entries
    return time.perf_counter() - t0, time.process_time() - c0, events


def out_mb(res) -> float:
    return sum(os.path.getsize(p) for p in res.outputs) / 1e6


def timed_build(files: list[str], out: str, n_workers: int, chunk_events: int):
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                           dashboard_address=":0", silence_logs=logging.ERROR)
    client = Client(cluster)
    try:
        # imports happen once per worker in a real build: keep them out of the timed part
        client.run(lambda: __import__("jetfm.production.builder") and __import__("uproot"))
        nanoaod._open_tree.cache_clear()
        t0, c0 = time.perf_counter(), time.process_time()
        res = build_aoj(files, out, client=client, chunk_events=chunk_events, progress=False,
                        log=lambda m: None)
        wall, driver_cpu = time.perf_counter() - t0, time.process_time() - c0
    finally:
        client.close()
        cluster.close()
    return wall, driver_cpu, res


def compression_table(paths: list[str], tmp: str) -> dict:
    """Write the built jets again with AOJ's gzip level 4 (no shuffle) and with build-aoj's
    gzip 1 + shuffle: CPU-s to write, MB, CPU-s to read back, in this one process."""
    import h5py

    from jetfm.io.aoj import DATASETS, GZIP_LEVEL, AOJWriter
    from jetfm.production import tasks

    rows = {k: np.concatenate([h5py.File(p, "r")[k][:] for p in paths]) for k in DATASETS}
    out = {}
    for label, level, shuffle in (("AOJ gzip 4", GZIP_LEVEL, False),
                                  ("build-aoj gzip 1 + shuffle", tasks.GZIP_LEVEL,
                                   tasks.SHUFFLE)):
        path = os.path.join(tmp, "compression.h5")
        c0 = time.process_time()
        with AOJWriter(path, gzip_level=level, shuffle=shuffle) as w:
            for a in range(0, len(rows["PFCands"]), tasks.WRITE_SLICE):
                w.append_rows({k: v[a:a + tasks.WRITE_SLICE] for k, v in rows.items()})
        c1 = time.process_time()
        with h5py.File(path, "r") as f:
            f["PFCands"][:]
        out[label] = (c1 - c0, os.path.getsize(path) / 1e6, time.process_time() - c1)
        print(f"{label}: write {out[label][0]:.2f} CPU-s, {out[label][1]:.1f} MB, read back "
              f"{out[label][2]:.2f} CPU-s")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2 000 events instead of 20 000")
    ap.add_argument("--chunk-events", type=int, default=None)
    ap.add_argument("--scale", type=float, default=1.0,
                    help="events x this (e.g. 4: 80 000 events, so fixed costs weigh less)")
    args = ap.parse_args()
    scale = 0.1 if args.quick else args.scale
    chunk = args.chunk_events or (250 if args.quick else 1000)
    with tempfile.TemporaryDirectory(prefix="bench_build_aoj_") as tmp:
        files, events = [], 0
        t0 = time.perf_counter()
        # 3 inline files of 5000 events and 2 index files of 2500 (PF candidates of whole events)
        for k, (src, reps) in enumerate([(PFNANO_INLINE, 50)] * 3 + [(PFNANO_INDEX, 250)] * 2):
            dst = os.path.join(tmp, f"in_{k}.root")
            events += make_repeated(str(src), dst, max(int(reps * scale), 1))
            files.append(dst)
        mb = sum(os.path.getsize(f) for f in files) / 1e6
        print(f"inputs: {len(files)} files, {events} events, {mb:.0f} MB "
              f"(made in {time.perf_counter() - t0:.0f} s)")

        t_bare, cpu_bare, ev_bare = bare_read(files, chunk)
        print(f"uproot bare read of the same branches (one process): {t_bare:.1f} s wall, "
              f"{ev_bare / t_bare:.0f} events/s; {ev_bare / cpu_bare:.0f} events per CPU-second")
        runs = {}
        for w in (1, 2):
            wall, driver_cpu, res = timed_build(files, os.path.join(tmp, f"out{w}"), w, chunk)
            assert res.events == events and not res.failed
            runs[w] = (wall, res, driver_cpu, out_mb(res))
            print(f"{w} worker(s): {wall:.1f} s wall, {res.events / wall:.0f} events/s, "
                  f"{res.jets / wall:.0f} jets/s in all; per worker {res.events / wall / w:.0f} "
                  f"events/s, {res.jets / wall / w:.0f} jets/s; per worker CPU-second "
                  f"{res.events / res.task_cpu_seconds:.0f} events, "
                  f"{res.jets / res.task_cpu_seconds:.0f} jets (reading, selecting and "
                  f"writing the outputs); driver (planning, manifest) {driver_cpu:.1f} CPU-s; "
                  f"{len(res.outputs)} output files, {out_mb(res):.0f} MB; the workers got "
                  f"{res.task_cpu_seconds / wall:.2f} cores on average")
        comp = compression_table(runs[1][1].outputs, tmp)
    (w1, r1, _, mb1), (w2, r2, d2, _) = runs[1], runs[2]
    speedup = w1 / w2
    cpu_rate, cpu_bare_rate = r1.events / r1.task_cpu_seconds, ev_bare / cpu_bare
    print(f"speed-up 1 -> 2 workers: {speedup:.2f}x (goal >= 1.8x; the machine is shared: "
          f"os.cpu_count() = {os.cpu_count()}, load average {os.getloadavg()[0]:.1f}; the "
          f"workers got {r1.task_cpu_seconds / w1:.2f} and {r2.task_cpu_seconds / w2:.2f} "
          f"cores)")
    eff = (r2.events / r2.task_cpu_seconds) / (r1.events / r1.task_cpu_seconds)
    print(f"work per CPU-second with 2 workers / with 1: {eff:.2f} (1.0: the parallel build "
          f"does no extra work; the wall speed-up is then the ratio of the cores the workers "
          f"got, {r2.task_cpu_seconds / w2 / (r1.task_cpu_seconds / w1):.2f} here)")
    print(f"per-worker rate / bare uproot read: {cpu_rate / cpu_bare_rate:.2f} per CPU-second, "
          f"{r1.events / w1 / (ev_bare / t_bare):.2f} in wall time (goal >= 0.5, i.e. within "
          f"2x of the limit)")
    emit("build_aoj", cpu_rate, "events per worker CPU-second", cpu_bare_rate,
         cpu_rate / cpu_bare_rate, events=events, jets=r1.jets,
         jets_per_worker_cpu_second=round(r1.jets / r1.task_cpu_seconds, 1),
         wall_events_per_s_1w=round(r1.events / w1, 1),
         wall_events_per_s_per_worker_2w=round(r2.events / w2 / 2, 1),
         wall_jets_per_s_1w=round(r1.jets / w1, 1),
         bare_read_wall_events_per_s=round(ev_bare / t_bare, 1),
         speedup_1_to_2_workers=round(speedup, 3),
         cpu_efficiency_2w_over_1w=round(eff, 3),
         worker_cores_used_1w=round(r1.task_cpu_seconds / w1, 2),
         worker_cores_used_2w=round(r2.task_cpu_seconds / w2, 2),
         driver_cpu_seconds_2w=round(d2, 2), output_mb=round(mb1, 1),
         compression={k: [round(x, 2) for x in v] for k, v in comp.items()},
         output_files=len(r1.outputs),
         load_average=round(os.getloadavg()[0], 2), quick=args.quick, scale=scale,
         chunk_events=chunk)


if __name__ == "__main__":
    main()
