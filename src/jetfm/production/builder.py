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

The driver only plans, records and shows progress: tasks send back the names and row counts of
their files, their cut flow and timing, never jets. ``manifest.json`` holds per input its id,
size, mtime, sha256, events, jets, the output files with their rows and its cut flow, and for an
input not finished yet the chunks already written. It is rewritten atomically at most every
:data:`SAVE_EVERY_S` seconds and at the end; everything it lists exists complete. After a
crash, a rerun removes the files it does not list (half-written ``.partial`` files and files of
tasks finished after the last save), skips the inputs and chunks already done and goes on: the
result equals an uninterrupted build. An unreadable input is reported and skipped (its files
removed; ``strict=True`` stops the build instead); it is retried by the next run. The cut flow
of all inputs done is written as ``cutflow.json`` and ``cutflow.md``.

Output compression: gzip level 1 with HDF5's shuffle filter (both standard HDF5 filters, read by
any HDF5 reader). Measured by ``benchmarks/build_aoj.py`` on its 29 k PFNano jets against AOJ's
gzip level 4 without shuffle: 1.8x less CPU to write (1.5 against 2.7 CPU-s), 28 % smaller
(24 against 34 MB) and faster to read back (0.5-0.8 against 1.0 CPU-s)."""
from __future__ import annotations

import dataclasses
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

import numpy as np

from jetfm import __version__
from jetfm.production.lumimask import LumiMask
from jetfm.production.selection import CutFlow, Selection, apply_selection, event_branches
from jetfm.errors import InputError, write_text_atomic
from jetfm.io.aoj import CHUNK_JETS, AOJWriter, expand_paths
from jetfm.io.output import atomic_output
from jetfm.io.nanoaod import PFNanoFile, chunk_to_rows, inspect_pfnano, read_pfnano

MANIFEST = "manifest.json"
#: how long to wait for a --scheduler to answer
SCHEDULER_TIMEOUT = "30s"
MANIFEST_FORMAT = "jetfm-build-aoj/2"
#: the files besides the AOJ outputs that a build writes in its folder
BUILD_FILES = (MANIFEST, "cutflow.json", "cutflow.md")
#: AOJ's file size: about 2.2 M jets per file
JETS_PER_FILE = 2_200_000
#: events per Dask task; bounded memory: the index flavour reads every PF candidate of an event
#: (~1800 x 11 fields), about 80 kB per event in memory
CHUNK_EVENTS = 20_000
#: output compression (see the module docstring for the measurement)
GZIP_LEVEL, SHUFFLE = 1, True
#: jets per HDF5 append: a multiple of the file's chunk, so no chunk is compressed twice
WRITE_SLICE = 16 * CHUNK_JETS
#: the manifest is rewritten at most this often (and at the end): its size grows with the
#: inputs, so rewriting it after every task would cost O(tasks x inputs)
SAVE_EVERY_S = 2.0
#: run an input's chunks preferably on the worker that opened it (Dask may still move them)
AFFINITY = True


def output_name(name: str, input_id: int, chunk: int, k: int) -> str:
    """File name of the ``k``-th output file of chunk ``chunk`` of input ``input_id``."""
    return f"{name}_{input_id:05d}_{chunk:04d}_{k:02d}.h5"


def output_pattern(name: str) -> re.Pattern:
    """Every file a build named ``name`` writes, finished or ``.partial``."""
    return re.compile(re.escape(name) + r"_\d{5,}_\d{4,}_\d{2,}\.h5(\.[0-9a-f]+\.partial)?$")


# ------------------------------------------------------------------------------ worker side
@dataclass(frozen=True)
class OutputSpec:
    """Where and how a task writes its jets."""
    out_dir: str
    name: str
    jets_per_file: int
    attrs: dict


@dataclass(frozen=True)
class Task:
    """Entries ``start..stop`` (chunk number ``chunk``) of the input with id ``input_id``."""
    input_id: int
    chunk: int
    path: str
    flavour: str
    start: int
    stop: int
    first: bool                      # the input's first task also computes its checksum


@dataclass
class ChunkResult:
    """What a task sends back: no jets, only where it wrote them."""
    outputs: list[dict]              # [{"file": name, "jets": rows}, ...] in order
    cutflow: CutFlow | None
    n_events: int
    n_jets: int = 0
    sha256: str | None = None
    error: str | None = None         # one line; set when the task failed
    fatal: bool = False              # the error is about writing outputs: stop the build
    seconds: float = 0.0             # wall time of the task
    cpu_seconds: float = 0.0         # CPU time of the worker process during the task


def sha256_file(path: str, block: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for b in iter(lambda: fh.read(block), b""):
            h.update(b)
    return h.hexdigest()


def _one_line(err: BaseException, path: str) -> str:
    msg = str(err) if isinstance(err, InputError) else f"{path}: {type(err).__name__}: {err}"
    return " ".join(msg.split())


def inspect_task(path: str) -> tuple[PFNanoFile | str, str | None]:
    """Open an input and read its header (runs on a Dask worker, which then keeps the tree
    open for the input's chunks). Returns (file info or the error line for bad input, the
    worker's address or None outside Dask). The branch names are dropped from the answer:
    the driver does not need them."""
    try:
        from distributed import get_worker

        where = get_worker().address
    except (ImportError, ValueError):
        where = None
    try:
        return dataclasses.replace(inspect_pfnano(path), branches=frozenset()), where
    except Exception as err:
        return _one_line(err, path), where


def write_outputs(rows: dict[str, np.ndarray], spec: OutputSpec, input_id: int,
                  chunk: int) -> list[dict]:
    """Write one task's jets, given as AOJ ``rows`` (:func:`chunk_to_rows`), as its AOJ files of
    ``spec.jets_per_file`` jets at most each. Each is written under a unique ``.partial`` name
    (two runs may write the same task at once after a crash) and renamed when complete."""
    outputs = []
    n_jets = len(rows["PFCands"])
    for k, a in enumerate(range(0, n_jets, spec.jets_per_file)):
        n = min(spec.jets_per_file, n_jets - a)
        fn = output_name(spec.name, input_id, chunk, k)
        final = os.path.join(spec.out_dir, fn)
        tmp = f"{final}.{uuid.uuid4().hex[:12]}.partial"
        # no lock per file: the driver holds the output folder's, and the names are unique
        w = AOJWriter(final, spec.attrs, gzip_level=GZIP_LEVEL, shuffle=SHUFFLE, tmp=tmp,
                      lock=False)
        try:
            for b in range(a, a + n, WRITE_SLICE):
                w.append_rows({key: v[b:min(b + WRITE_SLICE, a + n)] for key, v in rows.items()})
            w.close()
        except BaseException:
            w.abort()
            if os.path.exists(tmp):
                os.remove(tmp)
            raise
        outputs.append({"file": fn, "jets": n})
    return outputs


_MALLOC_TUNED = False


def _tune_malloc() -> None:
    """Let glibc keep freed memory for reuse in this process (once per process).

    Dask's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``, which makes glibc give
    every freed block above 64 kB back to the system, so each of a task's large arrays costs
    fresh page faults: measured, 1.5x the CPU of the whole task (8.7 against 6.0 CPU-s for the
    benchmark's 20 k events). A trim threshold of 256 MB and glibc's largest mmap threshold
    (32 MB) restore the default speed; a worker then holds at most 256 MB of freed memory.
    Without glibc (macOS, musl) nothing is done."""
    global _MALLOC_TUNED
    if _MALLOC_TUNED:
        return
    _MALLOC_TUNED = True
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-1, 256 << 20)  # M_TRIM_THRESHOLD
        libc.mallopt(-3, 32 << 20)   # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        pass


def run_task(task: Task, selection: Selection, lumi: LumiMask | None,
             spec: OutputSpec) -> ChunkResult:
    """Read, select, gather and write one entry range (runs on a Dask worker). Never raises:
    a bad input comes back as one line in :attr:`ChunkResult.error`, a failure to write the
    outputs as a ``fatal`` one."""
    _tune_malloc()
    t0, c0 = time.perf_counter(), time.process_time()

    def failed(msg: str, fatal: bool = False) -> ChunkResult:
        return ChunkResult([], None, task.stop - task.start, error=msg, fatal=fatal,
                           seconds=time.perf_counter() - t0, cpu_seconds=time.process_time() - c0)

    try:
        info = inspect_pfnano(task.path)  # the tree is cached in this process
        chunk = read_pfnano(task.path, task.start, task.stop,
                            event_branches(selection, info.branches), task.flavour)
        mask, flow = apply_selection(chunk, selection, info.branches, lumi)
        rows = chunk_to_rows(chunk, mask, selection.n_max)
        digest = sha256_file(task.path) if task.first else None
    except Exception as err:  # reported per input by the driver, never spoils other inputs
        return failed(_one_line(err, task.path))
    try:
        outputs = write_outputs(rows, spec, task.input_id, task.chunk)
    except Exception as err:
        return failed(f"cannot write the outputs of {task.path} into {spec.out_dir}: "
                      f"{type(err).__name__}: {' '.join(str(err).split())}", fatal=True)
    return ChunkResult(outputs, flow, chunk.n_events, len(rows["PFCands"]), digest,
                       seconds=time.perf_counter() - t0, cpu_seconds=time.process_time() - c0)


# ------------------------------------------------------------------------------ manifest
class Manifest:
    """``manifest.json`` of an output folder, rewritten atomically.

    ``inputs``: path -> record, in input-id order. A record has ``id``, ``status`` (``done``,
    ``partial``: some chunks written, or ``failed``), ``size``, ``mtime_ns``; done: ``sha256``,
    ``flavour``, ``events``, ``jets``, ``outputs`` ([{"file", "jets"}] in chunk order),
    ``cutflow``; partial: ``chunk_events`` and ``chunks`` (chunk number -> its outputs, events,
    jets, cut flow, checksum); failed: ``error``.
    """

    def __init__(self, out_dir: str, settings: dict):
        self.path = os.path.join(out_dir, MANIFEST)
        self.data = {"format": MANIFEST_FORMAT, "jetfm": __version__, "settings": settings,
                     "next_id": 0, "inputs": {}, "outputs": []}
        if os.path.exists(self.path):
            try:
                with open(self.path) as fh:
                    old = json.load(fh)
            except (json.JSONDecodeError, UnicodeDecodeError) as err:
                raise InputError(f"unreadable manifest ({err}); build into a new folder",
                                 self.path) from err
            if old.get("format") != MANIFEST_FORMAT:
                raise InputError(f"not a {MANIFEST_FORMAT} manifest (another layout or "
                                 "version); build into a new folder", self.path)
            if old.get("settings") != settings:
                diff = sorted(k for k in set(settings) | set(old.get("settings", {}))
                              if settings.get(k) != old.get("settings", {}).get(k))
                raise InputError("this folder holds a build with other settings (" +
                                 ", ".join(diff) + "); use a new --out folder", self.path)
            self.data = old
            try:
                listed = [o["file"] for r in old["inputs"].values()
                          for o in r.get("outputs", []) + [o for ch in r.get("chunks", {}).values()
                                                           for o in ch["outputs"]]]
                listed += old["outputs"]
            except (KeyError, TypeError, AttributeError) as err:
                raise InputError(f"malformed manifest ({err.__class__.__name__}: {err}); build "
                                 "into a new folder", self.path) from err
            check_listed_files(listed, output_pattern(settings["name"]), self.path)

    @property
    def inputs(self) -> dict:
        return self.data["inputs"]

    def input_id(self, path: str) -> int:
        """The input's id, given once, in the order inputs are first seen."""
        rec = self.inputs.get(path)
        if rec is None:
            rec = self.inputs[path] = {"id": self.data["next_id"], "status": "new"}
            self.data["next_id"] += 1
        return rec["id"]

    def recorded_files(self) -> set[str]:
        """Every output file the manifest lists (done inputs and chunks of partial ones)."""
        files = set()
        for rec in self.inputs.values():
            outs = rec.get("outputs", [])
            for ch in rec.get("chunks", {}).values():
                outs = outs + ch["outputs"]
            files.update(o["file"] for o in outs)
        return files

    def save(self) -> None:
        recs = sorted(self.inputs.items(), key=lambda kv: kv[1]["id"])
        self.data["inputs"] = dict(recs)
        self.data["outputs"] = [o["file"] for _, r in recs if r["status"] == "done"
                                for o in r["outputs"]]
        with atomic_output(self.path) as tmp, open(tmp, "w") as fh:
            json.dump(self.data, fh, indent=1)
            fh.flush()
            os.fsync(fh.fileno())


# ------------------------------------------------------------------------------ execution
class _InlineRunner:
    """Runs submitted calls in this process, first in, first out (``scheduler="inline"``)."""

    def __init__(self):
        self._queue: list = []

    def submit(self, tag, fn, *args, near: str | None = None) -> None:
        self._queue.append((tag, fn, args))

    def results(self) -> Iterator[tuple]:
        while self._queue:
            tag, fn, args = self._queue.pop(0)
            yield tag, fn(*args)

    def cancel(self) -> None:
        self._queue.clear()


class _DaskRunner:
    """Submits calls to a Dask cluster; yields (tag, result) in completion order. A task that
    raises (a worker crash, say) comes back as the exception object."""

    def __init__(self, client, workers: list[str] | None):
        from distributed import as_completed

        self.client, self.workers = client, workers
        self._ac = as_completed()
        self._tags: dict = {}
        self._prefix = f"build-aoj-{uuid.uuid4().hex[:8]}"
        self._n = 0

    def submit(self, tag, fn, *args, near: str | None = None) -> None:
        """``near``: a worker to prefer (one that has the input open), others allowed."""
        if self.workers is None and near is not None:
            where, loose = [near], True
        else:
            where, loose = self.workers, False
        fut = self.client.submit(fn, *args, pure=False, key=f"{self._prefix}-{self._n}",
                                 workers=where, allow_other_workers=loose)
        self._n += 1
        self._tags[fut.key] = tag
        self._ac.add(fut)

    def results(self) -> Iterator[tuple]:
        for fut in self._ac:
            tag = self._tags.pop(fut.key)
            res = fut.exception() if fut.status == "error" else fut.result()
            fut.release()
            yield tag, res

    def cancel(self) -> None:
        futs = list(self._ac.futures)
        self._ac.clear()
        if futs:
            self.client.cancel(futs)


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
                runner = _InlineRunner()
            else:
                n_w = max(len(workers) if workers else len(client.scheduler_info()["workers"]), 1)
                runner = _DaskRunner(client, workers)
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


def write_cutflow(out_dir: str, selection: Selection, total: CutFlow, manifest: Manifest) -> None:
    """``cutflow.json`` (total and per input) and ``cutflow.md`` beside the outputs."""
    per_input = {p: r["cutflow"] for p, r in manifest.inputs.items() if r.get("status") == "done"}
    bad = {p: r["error"] for p, r in manifest.inputs.items() if r.get("status") == "failed"}
    doc = {"selection": selection.to_dict(), "labels": selection.labels(),
           "total": total.to_dict(), "per_input": per_input, "failed_inputs": bad}
    write_text_atomic(os.path.join(out_dir, "cutflow.json"), json.dumps(doc, indent=1))
    md = [f"# AOJ build cut flow ({total.inputs} input(s))", "", total.to_markdown(selection)]
    if bad:
        md += ["## Inputs that failed (retried by the next run)", ""]
        md += [f"- {p}: {e}" for p, e in bad.items()] + [""]
    write_text_atomic(os.path.join(out_dir, "cutflow.md"), "\n".join(md))


def check_listed_files(names, pattern: re.Pattern | None, manifest: str) -> None:
    """Raise InputError unless every file name a manifest lists is a plain name of this build
    (``pattern``; any ``.h5`` name if None) inside its folder: a crafted manifest must not make
    a build delete, or a split read, files elsewhere."""
    for f in names:
        ok = isinstance(f, str) and os.path.basename(f) == f and f not in ("", ".", "..") and (
            pattern.match(f) if pattern is not None else f.endswith(".h5"))
        if not ok:
            raise InputError(f"the manifest lists {f!r}, not an output file name of this folder "
                             "(names only, no paths); build into a new folder", manifest)


def output_files(out_dir: str) -> list[str]:
    """The AOJ files of a build folder in order (from its manifest, else sorted ``*.h5``)."""
    mpath = os.path.join(out_dir, MANIFEST)
    if os.path.exists(mpath):
        try:
            with open(mpath) as fh:
                meta = json.load(fh)
            outs, name = meta.get("outputs", []), meta.get("settings", {}).get("name")
        except (OSError, ValueError, AttributeError) as err:
            raise InputError(f"unreadable manifest ({err.__class__.__name__})", mpath) from err
        if not isinstance(outs, list):
            raise InputError("malformed manifest ('outputs' is not a list)", mpath)
        check_listed_files(outs, output_pattern(name) if isinstance(name, str) else None, mpath)
        return [os.path.join(out_dir, f) for f in outs]
    return sorted(os.path.join(out_dir, f) for f in os.listdir(out_dir) if f.endswith(".h5"))
