"""Build AOJ datasets from PFNano NanoAOD in parallel with Dask, resumably.

One Dask task per input file, or per entry range of ``chunk_events`` events of a large file. A
task reads its range (:func:`jetfm.io.nanoaod.read_pfnano`), applies the selection
(:mod:`jetfm.build.selection`) and returns the selected jets (constituents sorted by pT, at
most 150) with its cut flow. The driver appends the jets to AOJ files **in input order**, never in
completion order, so the outputs are the same for any number of workers; a new file starts every
``jets_per_file`` jets (``<name>_0000.h5``, ``<name>_0001.h5``, ...; each written as ``.partial``
and renamed when full or at the end).

Safety: an input's jets are appended only when all its tasks have succeeded, then the manifest
(``manifest.json``: per input its size, mtime, sha256, events, jets, the output rows holding its
jets, its cut flow; and the row count of the file being filled) is rewritten atomically. After a
crash a rerun truncates the file being filled back to the manifest's row count, skips the inputs
already done and goes on: the result equals an uninterrupted build. An unreadable input is
reported and skipped (``strict=True`` stops the build instead); it is retried by the next run.
The cut flow of all inputs done is written as ``cutflow.json`` and ``cutflow.md``.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

from jetfm import __version__
from jetfm.build.lumimask import LumiMask
from jetfm.build.selection import CutFlow, Selection, apply_selection, event_branches
from jetfm.errors import InputError
from jetfm.io.aoj import AOJWriter, DATASETS, expand_paths
from jetfm.io.nanoaod import PFNanoFile, chunk_to_jets, inspect_pfnano, read_pfnano
from jetfm.jets import Jets

MANIFEST = "manifest.json"
MANIFEST_FORMAT = "jetfm-build-aoj/1"
#: AOJ's file size: about 2.2 M jets per file
JETS_PER_FILE = 2_200_000
#: events per Dask task; bounded memory: the index flavour reads every PF candidate of an event
#: (~1800 x 11 fields), about 80 kB per event in memory
CHUNK_EVENTS = 20_000


# ------------------------------------------------------------------------------ worker side
@dataclass(frozen=True)
class Task:
    """Entries ``start..stop`` of input number ``input_index``."""
    input_index: int
    path: str
    flavour: str
    start: int
    stop: int
    first: bool                      # the input's first task also computes its checksum
    branches: frozenset              # the file's branch names
    event_branches: tuple[str, ...]  # trigger and filter branches to read


@dataclass
class ChunkResult:
    jets: Jets | None
    cutflow: CutFlow | None
    n_events: int
    sha256: str | None = None
    error: str | None = None         # one line; set when the task failed
    seconds: float = 0.0             # wall time of the task
    cpu_seconds: float = 0.0         # CPU time of the worker process during the task


def sha256_file(path: str, block: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for b in iter(lambda: fh.read(block), b""):
            h.update(b)
    return h.hexdigest()


def run_task(task: Task, selection: Selection, lumi: LumiMask | None) -> ChunkResult:
    """Read, select and gather one entry range (runs on a Dask worker). Never raises for bad
    input: the error comes back as one line in :attr:`ChunkResult.error`."""
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        chunk = read_pfnano(task.path, task.start, task.stop, task.event_branches, task.flavour)
        mask, flow = apply_selection(chunk, selection, task.branches, lumi)
        jets = chunk_to_jets(chunk, mask, selection.n_max)
        digest = sha256_file(task.path) if task.first else None
    except Exception as err:  # reported per input by the driver, never spoils other inputs
        msg = (str(err) if isinstance(err, InputError)
               else f"{task.path}: {type(err).__name__}: {err}")
        return ChunkResult(None, None, task.stop - task.start, error=" ".join(msg.split()),
                           seconds=time.perf_counter() - t0,
                           cpu_seconds=time.process_time() - c0)
    return ChunkResult(jets, flow, chunk.n_events, digest, seconds=time.perf_counter() - t0,
                       cpu_seconds=time.process_time() - c0)


# ------------------------------------------------------------------------------ outputs
class OutputSeries:
    """AOJ files ``<name>_NNNN.h5`` filled in order, a new one every ``jets_per_file`` jets.

    ``file_index``/``rows``: the file being filled and its committed row count (from the
    manifest). Restoring puts the folder back in that state: a file that was completed after
    the last commit goes back to ``.partial``, rows past the commit are cut, later files removed.
    """

    def __init__(self, out_dir: str, name: str, jets_per_file: int, file_index: int = 0,
                 rows: int = 0, attrs: dict | None = None):
        self.out_dir, self.name, self.jets_per_file = out_dir, name, jets_per_file
        self.file_index, self.rows, self.attrs = file_index, rows, attrs or {}
        self._writer: AOJWriter | None = None
        self._restore()

    def file_name(self, i: int) -> str:
        return f"{self.name}_{i:04d}.h5"

    def _path(self, i: int) -> str:
        return os.path.join(self.out_dir, self.file_name(i))

    def _restore(self) -> None:
        import h5py

        path = self._path(self.file_index)
        partial = path + ".partial"
        pat = re.compile(re.escape(self.name) + r"_(\d{4,})\.h5(\.partial)?$")
        for fn in os.listdir(self.out_dir):  # uncommitted files of a crashed run
            m = pat.match(fn)
            if m and int(m.group(1)) > self.file_index:
                os.remove(os.path.join(self.out_dir, fn))
        if self.rows == 0:
            for p in (path, partial):
                if os.path.exists(p):
                    os.remove(p)
            return
        if not os.path.exists(partial) and os.path.exists(path):
            os.replace(path, partial)  # completed after the last commit: reopen it
        if not os.path.exists(partial):
            raise InputError(f"cannot resume: {os.path.basename(partial)} holding {self.rows} "
                             "committed jets is missing; build into a new folder", self.out_dir)
        with h5py.File(partial, "a") as f:
            have = f["PFCands"].shape[0]
            if have < self.rows:
                raise InputError(f"cannot resume: {os.path.basename(partial)} holds {have} jets, "
                                 f"the manifest {self.rows}; build into a new folder",
                                 self.out_dir)
            if have > self.rows:  # rows of an input that was never committed
                for k in DATASETS:
                    f[k].resize(self.rows, axis=0)

    def _open(self) -> AOJWriter:
        if self._writer is None:
            self._writer = AOJWriter(self._path(self.file_index), self.attrs, resume=True)
        return self._writer

    def append(self, jets: Jets) -> list[dict]:
        """Append ``jets``; returns where they went: ``[{"file", "start", "stop"}, ...]``."""
        placed, done = [], 0
        while done < len(jets):
            w = self._open()
            take = min(len(jets) - done, self.jets_per_file - self.rows)
            w.append(jets[done:done + take])
            placed.append({"file": self.file_name(self.file_index), "start": self.rows,
                           "stop": self.rows + take})
            self.rows += take
            done += take
            if self.rows >= self.jets_per_file:
                self._close_current()
        return placed

    def _close_current(self) -> None:
        if self._writer is None and self.rows:
            self._open()
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self.file_index += 1
        self.rows = 0

    def finish(self) -> None:
        """Publish the file being filled (if it holds jets)."""
        if self.rows:
            self._close_current()

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.abort()
            self._writer = None

    def state(self) -> dict:
        return {"file_index": self.file_index, "rows": self.rows}


# ------------------------------------------------------------------------------ manifest
class Manifest:
    """``manifest.json`` of an output folder, rewritten atomically after every input."""

    def __init__(self, out_dir: str, settings: dict):
        self.path = os.path.join(out_dir, MANIFEST)
        self.data = {"format": MANIFEST_FORMAT, "jetfm": __version__, "settings": settings,
                     "inputs": {}, "writer": {"file_index": 0, "rows": 0}, "outputs": []}
        if os.path.exists(self.path):
            try:
                with open(self.path) as fh:
                    old = json.load(fh)
            except (json.JSONDecodeError, UnicodeDecodeError) as err:
                raise InputError(f"unreadable manifest ({err}); build into a new folder",
                                 self.path) from err
            if old.get("format") != MANIFEST_FORMAT:
                raise InputError("not a jetfm build-aoj manifest", self.path)
            if old.get("settings") != settings:
                diff = sorted(k for k in set(settings) | set(old.get("settings", {}))
                              if settings.get(k) != old.get("settings", {}).get(k))
                raise InputError("this folder holds a build with other settings (" +
                                 ", ".join(diff) + "); use a new --out folder", self.path)
            self.data = old

    @property
    def inputs(self) -> dict:
        return self.data["inputs"]

    def save(self) -> None:
        tmp = self.path + ".partial"
        with open(tmp, "w") as fh:
            json.dump(self.data, fh, indent=1)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)


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
        client = Client(scheduler, timeout="30s")
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


def _run_dask(client, tasks: list[Task], selection: Selection, lumi: LumiMask | None,
              n_workers: int, workers: list[str] | None = None
              ) -> Iterator[tuple[int, ChunkResult]]:
    """Yield (task index, result) in completion order, with at most a window of tasks ahead of
    the first one not yet received (bounds the results held for in-order writing)."""
    from distributed import as_completed

    window = max(4 * n_workers, 4)
    tag = uuid.uuid4().hex[:8]
    ac = as_completed()
    index: dict[str, int] = {}
    received: set[int] = set()
    first_missing = next_submit = 0

    def submit_more():
        nonlocal next_submit
        while next_submit < len(tasks) and next_submit < first_missing + window:
            fut = client.submit(run_task, tasks[next_submit], selection, lumi, pure=False,
                                key=f"build-aoj-{tag}-{next_submit}", workers=workers,
                                allow_other_workers=False)
            index[fut.key] = next_submit
            ac.add(fut)
            next_submit += 1

    submit_more()
    for fut in ac:
        i = index.pop(fut.key)
        if fut.status == "error":
            err = fut.exception()
            res = ChunkResult(None, None, tasks[i].stop - tasks[i].start,
                              error=f"{tasks[i].path}: worker failed ({type(err).__name__}: "
                                    f"{' '.join(str(err).split())})")
        else:
            res = fut.result()
        fut.release()
        received.add(i)
        while first_missing in received:
            received.discard(first_missing)
            first_missing += 1
        yield i, res
        submit_more()


def _settings(selection: Selection, jets_per_file: int, name: str) -> dict:
    return {"selection": selection.to_dict(), "jets_per_file": jets_per_file, "name": name}


def build_aoj(inputs: str | Iterable[str], out_dir: str, selection: Selection = Selection(), *,
              jets_per_file: int = JETS_PER_FILE, chunk_events: int = CHUNK_EVENTS,
              name: str = "aoj", scheduler: str | None = None, n_workers: int | None = None,
              client=None, workers: list[str] | None = None, strict: bool = False,
              progress: bool = True, log: Callable[[str], None] | None = None) -> BuildSummary:
    """Build AOJ files in ``out_dir`` from PFNano ``inputs`` (paths, globs, or .txt lists).

    ``scheduler``: a Dask scheduler address, or ``"inline"`` to run every task in this process
    (debugging); default a LocalCluster of ``n_workers`` processes (all cores) with one thread
    each. ``client``: an existing ``distributed.Client`` (wins over both); ``workers``: run the
    tasks only on these worker addresses of the cluster.
    Raises InputError when no input can be built, on a manifest of other settings, or with
    ``strict`` on the first unreadable input.
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
    manifest = Manifest(out_dir, _settings(selection, jets_per_file, name))

    # plan: skip what is done, refuse changed inputs, report the unreadable
    plan: list[PFNanoFile] = []
    failed: dict[str, str] = {}
    skipped = 0
    for path in files:
        rec = manifest.inputs.get(path)
        if rec and rec.get("status") == "done":
            st = os.stat(path) if os.path.exists(path) else None
            if st is not None and (st.st_size, st.st_mtime_ns) != (rec["size"], rec["mtime_ns"]):
                raise InputError("input changed since it was built into this folder; build "
                                 "into a new folder", path)
            skipped += 1
            continue
        try:
            plan.append(inspect_pfnano(path))
        except InputError as err:
            if strict or len(files) == 1:
                raise
            failed[path] = str(err)
    if not plan and not skipped and failed:
        raise InputError(f"no input could be read ({len(failed)} failed); first: "
                         f"{next(iter(failed.values()))}")
    for path, err in failed.items():
        log(f"skipped: {err}")
        manifest.inputs[path] = {"status": "failed", "error": err}

    tasks: list[Task] = []
    tasks_of: list[list[int]] = []
    for k, info in enumerate(plan):
        branches = event_branches(selection, info.branches)
        ids = []
        for a in range(0, max(info.n_events, 1), chunk_events):
            ids.append(len(tasks))
            tasks.append(Task(k, info.path, info.flavour, a, min(a + chunk_events, info.n_events),
                              a == 0, info.branches, tuple(branches)))
        tasks_of.append(ids)

    attrs = {"generator": f"jetfm {__version__} build-aoj",
             "selection": json.dumps(selection.to_dict(), sort_keys=True)}
    series = OutputSeries(out_dir, name, jets_per_file, attrs=attrs, **manifest.data["writer"])
    events = jets_written = 0
    task_seconds = task_cpu = 0.0
    dashboard = None
    n_w = 1
    try:
        if tasks:
            own_client = cluster = None
            if client is None and scheduler != "inline":
                client, cluster, dashboard = _make_client(scheduler, n_workers, log)
                own_client = client
            try:
                if client is None:  # "inline": every task in this process, in order
                    results = ((i, run_task(t, selection, lumi)) for i, t in enumerate(tasks))
                else:
                    n_w = len(workers) if workers else len(client.scheduler_info()["workers"])
                    n_w = max(n_w, 1)
                    results = _run_dask(client, tasks, selection, lumi, n_w, workers)
                events, jets_written, task_seconds, task_cpu = _drain(
                    results, tasks, tasks_of, plan, manifest, series, failed, strict, progress,
                    log)
            finally:
                if own_client is not None:
                    own_client.close()
                if cluster is not None:
                    cluster.close()
        series.finish()
        manifest.data["writer"] = series.state()
        manifest.data["outputs"] = [series.file_name(i) for i in range(series.file_index)]
        manifest.save()
    except BaseException:
        series.abort()
        raise
    total = CutFlow.total(CutFlow.from_dict(r["cutflow"]) for r in manifest.inputs.values()
                          if r.get("status") == "done")
    write_cutflow(out_dir, selection, total, manifest)
    return BuildSummary(os.path.abspath(out_dir),
                        [os.path.join(out_dir, f) for f in manifest.data["outputs"]],
                        len(plan) - sum(p.path in failed for p in plan), skipped, failed,
                        events, jets_written, total, time.perf_counter() - t0, n_w,
                        task_seconds, task_cpu, dashboard)


def _drain(results, tasks, tasks_of, plan, manifest, series, failed, strict, progress, log):
    """Receive task results (any order) and commit inputs strictly in input order."""
    from tqdm import tqdm

    got: dict[int, ChunkResult] = {}
    next_input = 0
    events = jets_written = 0
    task_seconds = task_cpu = 0.0
    bar = tqdm(total=sum(t.stop - t.start for t in tasks), unit="ev", desc="build-aoj",
               disable=not progress, file=sys.stderr)
    try:
        for i, res in results:
            got[i] = res
            task_seconds += res.seconds
            task_cpu += res.cpu_seconds
            bar.update(tasks[i].stop - tasks[i].start)
            while next_input < len(plan) and all(t in got for t in tasks_of[next_input]):
                parts = [got.pop(t) for t in tasks_of[next_input]]
                info = plan[next_input]
                next_input += 1
                errors = [r.error for r in parts if r.error]
                if errors:
                    if strict:
                        raise InputError(errors[0])
                    failed[info.path] = errors[0]
                    manifest.inputs[info.path] = {"status": "failed", "error": errors[0],
                                                  "size": info.size, "mtime_ns": info.mtime_ns}
                    manifest.save()
                    log(f"skipped: {errors[0]}")
                    continue
                jets = [r.jets for r in parts if len(r.jets)]
                jets = Jets.concat(jets) if len(jets) > 1 else (jets[0] if jets else None)
                outputs = series.append(jets) if jets is not None else []
                flow = CutFlow.total(r.cutflow for r in parts)
                flow.notes = parts[0].cutflow.notes  # per-file notes: count each input once
                flow.inputs = 1
                n_ev = sum(r.n_events for r in parts)
                n_jets = 0 if jets is None else len(jets)
                manifest.inputs.pop(info.path, None)  # keep the manifest in commit order
                manifest.inputs[info.path] = {
                    "status": "done", "size": info.size, "mtime_ns": info.mtime_ns,
                    "sha256": parts[0].sha256, "flavour": info.flavour, "events": n_ev,
                    "jets": n_jets, "outputs": outputs, "cutflow": flow.to_dict()}
                manifest.data["writer"] = series.state()
                manifest.save()
                events += n_ev
                jets_written += n_jets
    finally:
        bar.close()
    return events, jets_written, task_seconds, task_cpu


def write_cutflow(out_dir: str, selection: Selection, total: CutFlow, manifest: Manifest) -> None:
    """``cutflow.json`` (total and per input) and ``cutflow.md`` beside the outputs."""
    per_input = {p: r["cutflow"] for p, r in manifest.inputs.items() if r.get("status") == "done"}
    bad = {p: r["error"] for p, r in manifest.inputs.items() if r.get("status") == "failed"}
    doc = {"selection": selection.to_dict(), "labels": selection.labels(),
           "total": total.to_dict(), "per_input": per_input, "failed_inputs": bad}
    _atomic_text(os.path.join(out_dir, "cutflow.json"), json.dumps(doc, indent=1))
    md = [f"# AOJ build cut flow ({total.inputs} input(s))", "", total.to_markdown(selection)]
    if bad:
        md += ["## Inputs that failed (retried by the next run)", ""]
        md += [f"- {p}: {e}" for p, e in bad.items()] + [""]
    _atomic_text(os.path.join(out_dir, "cutflow.md"), "\n".join(md))


def _atomic_text(path: str, text: str) -> None:
    with open(path + ".partial", "w") as fh:
        fh.write(text)
    os.replace(path + ".partial", path)


def output_files(out_dir: str) -> list[str]:
    """The AOJ files of a build folder in order (from its manifest, else sorted ``*.h5``)."""
    mpath = os.path.join(out_dir, MANIFEST)
    if os.path.exists(mpath):
        with open(mpath) as fh:
            outs = json.load(fh).get("outputs", [])
        return [os.path.join(out_dir, f) for f in outs]
    return sorted(os.path.join(out_dir, f) for f in os.listdir(out_dir) if f.endswith(".h5"))
