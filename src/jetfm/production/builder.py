"""Build AOJ datasets from PFNano NanoAOD in parallel with Dask, resumably.

One Dask task per input file, or per entry range of ``chunk_events`` events of a large file
(chunk ``c`` holds entries ``c * chunk_events ...``). Everything expensive happens in the
workers: a first task per input opens it and reads its header (:func:`inspect_pfnano`); each
chunk task reads its range (:func:`jetfm.io.nanoaod.read_pfnano`), applies the selection
(:mod:`jetfm.production.selection`), gathers the selected jets (constituents sorted by pT, at most
150) and **writes them itself** as AOJ files named after the task,
``<name>_<input id:05d>_<chunk:04d>_<k:02d>.h5`` (``k`` counts the files of a chunk holding
more than ``jets_per_file`` jets), each under a unique ``.partial`` name renamed when complete.
The input id is given once, in the order the inputs are first listed, and kept in the manifest,
so the files and their contents do not depend on the number of workers or the completion order.
As AOJ itself, which is one file per CMS job, a build is a set of per-task files; a reader takes
them in the manifest's order (:func:`output_files`).

The driver (this module) only plans, records and shows progress: tasks
(:mod:`jetfm.production.tasks`) send back the names and row counts of their files, their cut flow
and timing, never jets; they run in this process or on a Dask cluster
(:mod:`jetfm.production.runners`). ``manifest.json`` (:mod:`jetfm.production.manifest`) is
rewritten atomically at most every :data:`SAVE_EVERY_S` seconds and at the end; everything it
lists exists complete. After a crash, a rerun removes the files it does not list (half-written
``.partial`` files and files of tasks finished after the last save), skips the inputs and chunks
already done and goes on: the result equals an uninterrupted build. An unreadable input is
reported and skipped (its files removed; ``strict=True`` stops the build instead); it is retried
by the next run. The cut flow of all inputs done is written as ``cutflow.json`` and
``cutflow.md``. Output compression: see :mod:`jetfm.production.tasks`."""
from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from jetfm import __version__
from jetfm.errors import InputError
from jetfm.io.aoj import expand_paths
from jetfm.production.lumimask import LumiMask
from jetfm.production.manifest import (
    BUILD_FILES,
    MANIFEST,
    MANIFEST_FORMAT,
    Manifest,
    output_files,
    output_pattern,
    write_cutflow,
)
from jetfm.production.runners import DaskRunner, InlineRunner
from jetfm.production.selection import CutFlow, Selection
from jetfm.production.tasks import ChunkResult, OutputSpec, Task, inspect_task, run_task

#: the build and the names of its folder's records (:mod:`jetfm.production.manifest`)
__all__ = ["build_aoj", "BuildSummary", "Manifest", "output_files", "output_pattern",
           "write_cutflow", "BUILD_FILES", "MANIFEST", "MANIFEST_FORMAT", "JETS_PER_FILE",
           "CHUNK_EVENTS"]

#: how long to wait for a --scheduler to answer
SCHEDULER_TIMEOUT = "30s"
#: AOJ's file size: about 2.2 M jets per file
JETS_PER_FILE = 2_200_000
#: events per Dask task; bounded memory: the index flavour reads every PF candidate of an event
#: (~1800 x 11 fields), about 80 kB per event in memory
CHUNK_EVENTS = 20_000
#: the manifest is rewritten at most this often (and at the end): its size grows with the
#: inputs, so rewriting it after every task would cost O(tasks x inputs)
SAVE_EVERY_S = 2.0
#: run an input's chunks preferably on the worker that opened it (Dask may still move them)
AFFINITY = True


# ------------------------------------------------------------------------------ driver
@dataclass
class BuildSummary:
    """What a build did. ``outputs``: every AOJ file of the folder, in order."""
    out_dir: str
    outputs: list[str]
    inputs_done: int                    # built by this run
    inputs_skipped: int                 # already done by an earlier run
    failed: dict[str, str]              # path -> error, this run
    events: int                         # input events processed by this run
    jets: int                           # jets written by this run
    cutflow: CutFlow                    # all inputs of the folder
    seconds: float
    n_workers: int
    task_seconds: float = 0.0           # summed wall time of this run's tasks on the workers
    task_cpu_seconds: float = 0.0       # summed CPU time of the workers during those tasks
    dashboard: str | None = None
    extra: dict = field(default_factory=dict)


def _make_client(scheduler: str | None, n_workers: int | None, log: Callable):
    from distributed import Client, LocalCluster

    if scheduler:
        try:
            client = Client(scheduler, timeout=SCHEDULER_TIMEOUT)
        except (OSError, ValueError, TypeError) as err:  # unreachable, or not an address
            raise InputError(f"--scheduler {scheduler}: cannot connect to a Dask scheduler "
                             f"({err.__class__.__name__}: {' '.join(str(err).split())})") from err
        cluster = None
    else:
        cluster = LocalCluster(n_workers=n_workers or os.cpu_count() or 1, threads_per_worker=1,
                               processes=True, dashboard_address=":0",
                               silence_logs=logging.ERROR)
        client = Client(cluster)
    link = client.dashboard_link
    try:
        import bokeh  # noqa: F401  (the dashboard is served only with bokeh installed)
        note = ""
    except ImportError:
        note = " (install bokeh to serve it)"
    log(f"Dask dashboard: {link}{note}")
    return client, cluster, link


def _settings(selection: Selection, jets_per_file: int, name: str) -> dict:
    return {"selection": selection.to_dict(), "jets_per_file": jets_per_file, "name": name}


def _remove_strays(out_dir: str, name: str, keep: set[str]) -> int:
    """Remove this build's files that the manifest does not list (a crashed run's)."""
    pat, n = output_pattern(name), 0
    for fn in os.listdir(out_dir):
        if pat.match(fn) and fn not in keep:
            try:
                os.remove(os.path.join(out_dir, fn))
                n += 1
            except FileNotFoundError:  # a late task of the crashed run renamed it meanwhile
                pass
    return n


def _remove_outputs(out_dir: str, outputs: Iterable[dict]) -> None:
    for o in outputs:
        try:
            os.remove(os.path.join(out_dir, o["file"]))
        except FileNotFoundError:
            pass


def _unchanged(rec: dict, path: str) -> bool:
    st = os.stat(path) if os.path.exists(path) else None
    return st is not None and (st.st_size, st.st_mtime_ns) == (rec.get("size"), rec.get("mtime_ns"))


def build_aoj(inputs: str | Iterable[str], out_dir: str, selection: Selection = Selection(), *,
              jets_per_file: int = JETS_PER_FILE, chunk_events: int = CHUNK_EVENTS,
              name: str = "aoj", scheduler: str | None = None, n_workers: int | None = None,
              client=None, workers: list[str] | None = None, strict: bool = False,
              progress: bool = True, log: Callable[[str], None] | None = None) -> BuildSummary:
    """Build AOJ files in ``out_dir`` from PFNano ``inputs`` (paths, globs, or .txt lists).

    ``scheduler``: a Dask scheduler address, or ``"inline"`` to run every task in this process
    (debugging); default a LocalCluster of ``n_workers`` processes (all cores) with one thread
    each. ``client``: an existing ``distributed.Client`` (wins over both); ``workers``: run the
    tasks only on these worker addresses of the cluster. The workers write the outputs
    themselves: on a remote cluster ``out_dir`` must be a shared folder, at the same path.
    Raises InputError when no input can be built, on a manifest of other settings, on a failure
    to write the outputs, or with ``strict`` on the first unreadable input.
    """
    t0 = time.perf_counter()
    log = log or (lambda msg: print(msg, file=sys.stderr))
    if jets_per_file < 1 or chunk_events < 1:
        raise InputError("--jets-per-file and --chunk-events must be positive")
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise InputError(f"invalid output name {name!r} (letters, digits, _ . - only)")
    files = list(dict.fromkeys(os.path.abspath(p) for p in expand_paths(inputs)))
    if not files:
        raise InputError("no input files given")
    lumi = LumiMask.from_json(selection.lumi_json) if selection.lumi_json else None
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise InputError("output path exists and is not a folder", out_dir)
    os.makedirs(out_dir, exist_ok=True)
    out_dir = os.path.abspath(out_dir)
    manifest = Manifest(out_dir, _settings(selection, jets_per_file, name))

    todo: list[str] = []
    skipped = 0
    for path in files:
        rec = manifest.inputs.get(path)
        if rec and rec["status"] == "done":
            if not _unchanged(rec, path):
                raise InputError("input changed since it was built into this folder; build "
                                 "into a new folder", path)
            skipped += 1
            continue
        if rec and rec["status"] == "partial" and not _unchanged(rec, path):
            manifest.inputs[path] = {"id": rec["id"], "status": "new"}  # start it again
        manifest.input_id(path)
        todo.append(path)
    # ids are on disk before any task writes a file named after them
    manifest.save()
    if _remove_strays(out_dir, name, manifest.recorded_files()):
        log("removed the unfinished outputs of an interrupted build")

    attrs = {"generator": f"jetfm {__version__} build-aoj",
             "selection": json.dumps(selection.to_dict(), sort_keys=True)}
    spec = OutputSpec(out_dir, name, jets_per_file, attrs)
    state = _Drain(manifest, spec, selection, lumi, chunk_events, strict, progress, log,
                   single=len(files) == 1)
    dashboard = None
    n_w = 1
    own_client = cluster = None
    try:
        if todo:
            if client is None and scheduler != "inline":
                client, cluster, dashboard = _make_client(scheduler, n_workers, log)
                own_client = client
            if client is None:
                runner = InlineRunner()
            else:
                n_w = max(len(workers) if workers else len(client.scheduler_info()["workers"]), 1)
                runner = DaskRunner(client, workers)
            state.run(runner, todo)
    finally:
        manifest.save()  # what is recorded exists complete, whatever stopped the build
        if own_client is not None:
            own_client.close()
        if cluster is not None:
            cluster.close()
    if not skipped and state.unreadable == len(todo) > 0:
        raise InputError(f"no input could be read ({len(state.failed)} failed); first: "
                         f"{next(iter(state.failed.values()))}")
    total = CutFlow.total(CutFlow.from_dict(r["cutflow"]) for r in manifest.inputs.values()
                          if r.get("status") == "done")
    write_cutflow(out_dir, selection, total, manifest)
    return BuildSummary(out_dir, [os.path.join(out_dir, f) for f in manifest.data["outputs"]],
                        state.done, skipped, state.failed, state.events, state.jets, total,
                        time.perf_counter() - t0, n_w, state.task_seconds, state.task_cpu,
                        dashboard)


class _Drain:
    """The driver's loop: submit an inspection per input, then its chunk tasks; record what
    comes back (any order) in the manifest."""

    def __init__(self, manifest: Manifest, spec: OutputSpec, selection: Selection,
                 lumi: LumiMask | None, chunk_events: int, strict: bool, progress: bool,
                 log: Callable, single: bool):
        self.manifest, self.spec, self.selection, self.lumi = manifest, spec, selection, lumi
        self.chunk_events, self.strict, self.progress = chunk_events, strict, progress
        self.log = log
        self.single = single                # one input: its failure is the build's error
        self.affinity = AFFINITY
        self.failed: dict[str, str] = {}
        self.pending: dict[str, set[int]] = {}
        self.done = self.events = self.jets = 0
        self.unreadable = 0                 # inputs that could not even be opened
        self.task_seconds = self.task_cpu = 0.0
        self._last_save = time.monotonic()
        self._dirty = False

    def run(self, runner, todo: list[str]) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=0, unit="ev", desc="build-aoj", disable=not self.progress,
                        file=sys.stderr)
        try:
            for path in todo:
                runner.submit(("inspect", path), inspect_task, path)
            for tag, res in runner.results():
                if tag[0] == "inspect":
                    self._planned(runner, tag[1], res)
                else:
                    self._finished(tag[1], tag[2], res)
                self._maybe_save()
        except BaseException:
            runner.cancel()
            raise
        finally:
            self.bar.close()

    def _maybe_save(self) -> None:
        if self._dirty and time.monotonic() - self._last_save >= SAVE_EVERY_S:
            self.manifest.save()
            self._dirty, self._last_save = False, time.monotonic()

    def _fail(self, path: str, error: str, unreadable: bool = False) -> None:
        rec = self.manifest.inputs[path]
        if self.strict or (self.single and unreadable):
            raise InputError(error)
        self.unreadable += unreadable
        _remove_outputs(self.spec.out_dir, (o for ch in rec.get("chunks", {}).values()
                                            for o in ch["outputs"]))
        self.manifest.inputs[path] = {"id": rec["id"], "status": "failed", "error": error,
                                      **{k: rec[k] for k in ("size", "mtime_ns") if k in rec}}
        self.failed[path] = error
        self.pending.pop(path, None)
        self._dirty = True
        self.log(f"skipped: {error}")

    def _planned(self, runner, path: str, res) -> None:
        if isinstance(res, BaseException):
            info, where = f"{path}: worker failed ({type(res).__name__}: {res})", None
        else:
            info, where = res
        if isinstance(info, str):
            self._fail(path, info, unreadable=True)
            return
        rec = self.manifest.inputs[path]
        if rec["status"] != "partial":
            rec = self.manifest.inputs[path] = {
                "id": rec["id"], "status": "partial", "size": info.size,
                "mtime_ns": info.mtime_ns, "flavour": info.flavour,
                "chunk_events": self.chunk_events, "chunks": {}}
        ce = rec["chunk_events"]  # a resumed input keeps the chunking it was started with
        todo = [c for c in range(max(-(-info.n_events // ce), 1)) if str(c) not in rec["chunks"]]
        self.pending[path] = set(todo)
        for c in todo:
            a = c * ce
            task = Task(rec["id"], c, path, info.flavour, a, min(a + ce, info.n_events), c == 0)
            self.bar.total += task.stop - task.start
            # opening a PFNano tree costs about a second: prefer the worker that has it open
            runner.submit(("chunk", path, c), run_task, task, self.selection, self.lumi,
                          self.spec, near=where if self.affinity else None)
        self.bar.refresh()
        self._complete_if_done(path)

    def _finished(self, path: str, c: int, res) -> None:
        if isinstance(res, BaseException):
            res = ChunkResult([], None, 0, error=f"{path}: worker failed "
                              f"({type(res).__name__}: {' '.join(str(res).split())})")
        self.task_seconds += res.seconds
        self.task_cpu += res.cpu_seconds
        self.bar.update(res.n_events)
        if path not in self.pending:  # the input failed already: drop the late chunk's files
            _remove_outputs(self.spec.out_dir, res.outputs)
            return
        if res.error:
            if res.fatal:
                raise InputError(res.error)
            self._fail(path, res.error)
            return
        self.manifest.inputs[path]["chunks"][str(c)] = {
            "events": res.n_events, "jets": res.n_jets, "outputs": res.outputs,
            "cutflow": res.cutflow.to_dict(), "sha256": res.sha256}
        self.pending[path].discard(c)
        self._dirty = True
        self._complete_if_done(path)

    def _complete_if_done(self, path: str) -> None:
        if self.pending.get(path):
            return
        del self.pending[path]
        rec = self.manifest.inputs[path]
        chunks = [rec["chunks"][k] for k in sorted(rec["chunks"], key=int)]
        flow = CutFlow.total(CutFlow.from_dict(ch["cutflow"]) for ch in chunks)
        flow.notes = CutFlow.from_dict(chunks[0]["cutflow"]).notes  # per-file: count once
        flow.inputs = 1
        n_ev, n_jets = sum(ch["events"] for ch in chunks), sum(ch["jets"] for ch in chunks)
        self.manifest.inputs[path] = {
            "id": rec["id"], "status": "done", "size": rec["size"], "mtime_ns": rec["mtime_ns"],
            "sha256": chunks[0]["sha256"], "flavour": rec["flavour"], "events": n_ev,
            "jets": n_jets, "outputs": [o for ch in chunks for o in ch["outputs"]],
            "cutflow": flow.to_dict()}
        self.done += 1
        self.events += n_ev
        self.jets += n_jets
        self._dirty = True


