"""One task of an AOJ build, run on a Dask worker (:mod:`jetfm.production.builder` plans them):
read an entry range of one PFNano input, select (:mod:`jetfm.production.selection`), gather the
selected jets (constituents sorted by pT, at most 150) and write them as the task's own AOJ files,
``<name>_<input id:05d>_<chunk:04d>_<k:02d>.h5``. Only file names, row counts, the cut flow and
timing go back to the driver, never jets.

Output compression: gzip level 1 with HDF5's shuffle filter (both standard HDF5 filters, read by
any HDF5 reader). Measured by ``benchmarks/build_aoj.py`` on its 29 k PFNano jets against AOJ's
gzip level 4 without shuffle: 1.8x less CPU to write (1.5 against 2.7 CPU-s), 28 % smaller
(24 against 34 MB) and faster to read back (0.5-0.8 against 1.0 CPU-s)."""
from __future__ import annotations

import dataclasses
import hashlib
import os
import time
import uuid
from dataclasses import dataclass

import numpy as np

from jetfm.errors import InputError
from jetfm.io.aoj import CHUNK_JETS, AOJWriter
from jetfm.io.nanoaod import PFNanoFile, chunk_to_rows, inspect_pfnano, read_pfnano
from jetfm.production.lumimask import LumiMask
from jetfm.production.selection import CutFlow, Selection, apply_selection, event_branches

#: output compression (see the module docstring for the measurement)
GZIP_LEVEL, SHUFFLE = 1, True
#: jets per HDF5 append: a multiple of the file's chunk, so no chunk is compressed twice
WRITE_SLICE = 16 * CHUNK_JETS


def output_name(name: str, input_id: int, chunk: int, k: int) -> str:
    """File name of the ``k``-th output file of chunk ``chunk`` of input ``input_id``."""
    return f"{name}_{input_id:05d}_{chunk:04d}_{k:02d}.h5"


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
