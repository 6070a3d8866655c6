"""Safe outputs: atomic single-file writes, exclusive locks, run folders that remember their
settings, and the check that an output never overwrites an input.

:func:`atomic_output` serves every writer of a file (text, JSON, YAML, npz, HDF5, ROOT,
Parquet/CSV, PNG, safetensors, ONNX, checkpoints) or of a folder published whole::

    with atomic_output("obs.parquet") as tmp:   # obs.parquet.partial, next to the target
        df.to_parquet(tmp)                        # renamed onto obs.parquet only on success

:func:`write_text_atomic` and :func:`save_npz_atomic` are the two writers used most, built on it.

While the block runs, an exclusive lock (``fcntl.flock`` on ``TARGET.lock``, which records the
writer's pid) is held, so a second writer of the same target stops at once with one line naming
the running one. The lock goes with its process: the lock file of a killed writer is simply taken
over. :func:`run_folder` does the same for a run folder (the lock file ``.jetfm.lock`` inside it)
and keeps the settings a run was started with in ``run.json``.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import socket
import sys
from collections.abc import Callable, Iterable, Iterator

from jetfm.errors import InputError

LOCK_SUFFIX = ".lock"
#: lock file inside a run folder, held for the whole run
RUN_LOCK = ".jetfm.lock"
#: the settings a run folder was started with
RUN_RECORD = "run.json"

try:
    import fcntl
except ImportError:  # not POSIX: outputs are still atomic, but not locked
    fcntl = None  # type: ignore[assignment]


class OutputLock:
    """An exclusive, non-blocking lock on ``lock_path`` guarding ``target``.

    :meth:`acquire` raises InputError (one line naming the pid of the holder) when another
    process holds it. A lock file left by a dead process is taken over (``flock`` locks end with
    their process). Released by :meth:`release`, which removes the lock file."""

    def __init__(self, lock_path: str, target: str, what: str = "file"):
        self.path, self.target, self.what = lock_path, target, what
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> OutputLock:
        if self._fd is not None or fcntl is None:
            return self
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as err:
                raise InputError(f"cannot create the lock file {self.path} "
                                 f"({err.strerror})", self.target) from err
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as err:
                holder = _holder(fd)
                os.close(fd)
                if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise InputError(f"another jetfm process{holder} is writing this "
                                     f"{self.what} now; wait for it to finish or stop it",
                                     self.target) from None
                return self  # a file system without locks: go on unlocked
            # the holder we raced with may have removed the file after we opened it: then our
            # lock is on a file nobody else sees, and we lock the new one instead
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        rec = json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                          "command": _command()}).encode()
        # write in place, then cut a longer stale record: truncating to zero first would make
        # ext4 flush the file on close (its replace-by-truncate safeguard), milliseconds each
        size = os.fstat(fd).st_size
        os.pwrite(fd, rec, 0)
        if size > len(rec):
            os.ftruncate(fd, len(rec))
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.path)  # while still locked: nobody can take a removed file's lock
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> OutputLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _command(limit: int = 80) -> str:
    """This process's command line, shortened: ``jetfm simulate aoj-like ...``."""
    words = [os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "python",
             *sys.argv[1:]]
    text = " ".join(words)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _holder(fd: int) -> str:
    """`` (pid N on HOST: COMMAND)`` from a lock file's content (host only when it is another
    machine), or ``""`` if unreadable."""
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        rec = json.loads(os.read(fd, 4096).decode() or "{}")
    except (OSError, ValueError):
        return ""
    if not isinstance(rec, dict) or "pid" not in rec:
        return ""
    host = rec.get("host")
    where = f" on {host}" if host and host != socket.gethostname() else ""
    cmd = f": {rec['command']}" if rec.get("command") else ""
    return f" (pid {rec['pid']}{where}{cmd})"


class AtomicOutput:
    """The temporary file (or folder) behind :func:`atomic_output`; usable as a context manager
    or by hand (:meth:`acquire`, then :meth:`commit` or :meth:`discard`) by writers that live
    longer than one block, such as :class:`jetfm.io.aoj.AOJWriter`."""

    def __init__(self, path: str | os.PathLike, suffix: str = "", tmp: str | None = None,
                 keep_partial: bool = False, lock: bool = True, folder: bool = False):
        self.path = os.fspath(path)
        self.tmp = tmp or self.path + ".partial" + suffix
        self.keep_partial, self.folder = keep_partial, folder
        self._lock = OutputLock(self.path + LOCK_SUFFIX, self.path) if lock else None
        self._open = False

    def acquire(self) -> str:
        """Take the lock and make the folder; returns the temporary path to write."""
        if not self._open:
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
            if self._lock is not None:
                self._lock.acquire()
            self._open = True
        return self.tmp

    def commit(self) -> str:
        """Rename the temporary file onto the target and release the lock."""
        try:
            os.replace(self.tmp, self.path)
        finally:
            self._release()
        return self.path

    def discard(self) -> None:
        """Remove the temporary file or folder (unless ``keep_partial``) and release the lock."""
        try:
            if not self.keep_partial:
                if self.folder and os.path.isdir(self.tmp) and not os.path.islink(self.tmp):
                    shutil.rmtree(self.tmp)
                elif os.path.lexists(self.tmp):
                    os.remove(self.tmp)
        finally:
            self._release()

    def _release(self) -> None:
        self._open = False
        if self._lock is not None:
            self._lock.release()

    def __enter__(self) -> str:
        return self.acquire()

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.discard()


def atomic_output(path: str | os.PathLike, suffix: str = "", tmp: str | None = None,
                  keep_partial: bool = False, lock: bool = True,
                  folder: bool = False) -> AtomicOutput:
    """A context manager yielding a temporary path next to ``path`` (``path.partial`` +
    ``suffix``, e.g. ``".png"`` for writers that tell the format from the name; ``tmp``: another
    name). On success the file is renamed onto ``path``; on an error it is removed (kept with
    ``keep_partial``, for a writer that resumes it). ``folder``: the writer makes a folder at the
    temporary path, published the same way (it may replace an empty folder) and removed whole
    on an error.
    ``lock``: hold ``path.lock`` meanwhile, so a second writer of ``path`` stops at once with
    InputError; ``lock=False`` for files inside a folder whose writer holds a lock already."""
    return AtomicOutput(path, suffix, tmp, keep_partial, lock, folder)


def write_text_atomic(path: str | os.PathLike, text: str, *, fsync: bool = False,
                      lock: bool = True) -> str:
    """Write ``text`` (UTF-8) to ``path`` through :func:`atomic_output`, so a crash never leaves
    a half-written file under the final name; ``fsync``: flush it to the disk before the rename
    (for a record that must survive a power cut, such as a build manifest). Returns the path."""
    with atomic_output(path, lock=lock) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        if fsync:
            fh.flush()
            os.fsync(fh.fileno())
    return os.fspath(path)


def save_npz_atomic(path: str | os.PathLike, arrays: dict, *, compressed: bool = True,
                    lock: bool = True) -> str:
    """``np.savez_compressed`` (``np.savez`` with ``compressed=False``) through
    :func:`atomic_output`: never a half-written file. Returns the path."""
    import numpy as np

    p = os.fspath(path)
    save = np.savez_compressed if compressed else np.savez
    # a file object: np.savez would append .npz to a name
    with atomic_output(p, lock=lock) as tmp, open(tmp, "wb") as fh:
        save(fh, **arrays)
    return p


# ------------------------------------------------------------------------------ inputs
def _same(a: str, b: str) -> bool:
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _inside(path: str, folder: str) -> bool:
    """``path`` is ``folder`` or lies below it (after resolving links)."""
    p, f = os.path.realpath(path), os.path.realpath(folder)
    return p == f or p.startswith(f.rstrip(os.sep) + os.sep)


def refuse_overwrite(output: str | os.PathLike, files: Iterable[str] = (),
                     folders: Iterable[str] = (), owned: Callable[[str], bool] | None = None,
                     option: str = "output") -> None:
    """Raise InputError (one line) when writing ``output`` could overwrite or delete an input.

    ``files``: input files; the output may not be one of them. ``folders``: input folders
    (models); the output may not be one of them or lie inside one. ``owned``: for an output
    folder, tells whether an entry name in it is written or removed by the run; an input file
    or folder under such an entry is refused too."""
    out = os.fspath(output)
    for f in files:
        f = os.fspath(f)
        if _same(out, f):
            raise InputError(f"the {option} is the input file {f}; write to another path", out)
        if owned is not None and _inside(f, out) and not _same(f, out):
            first = os.path.relpath(os.path.realpath(f), os.path.realpath(out)).split(os.sep)[0]
            if owned(first):
                raise InputError(f"the input file {f} lies where this run writes "
                                 f"({first}); use another {option} folder", out)
    for d in folders:
        d = os.fspath(d)
        if _inside(out, d):
            where = "is" if _same(out, d) else "is inside"
            raise InputError(f"the {option} {where} the input model folder {d}; write "
                             "outside it", out)
        if owned is not None and _inside(d, out):
            first = os.path.relpath(os.path.realpath(d), os.path.realpath(out)).split(os.sep)[0]
            if first == "." or owned(first):
                raise InputError(f"the {option} folder holds the input model folder {d}; "
                                 "use another output folder", out)


# ------------------------------------------------------------------------------ run folders
def _is_secondary_rank() -> bool:
    """True in the extra processes of a multi-process (DDP) run: only rank 0 locks and checks
    the run folder (the others re-run the same command line)."""
    for key in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID", "OMPI_COMM_WORLD_RANK",
                "PMI_RANK"):
        try:
            if int(os.environ.get(key, "0")) != 0:
                return True
        except ValueError:
            pass
    return False


def _differing(old: dict, new: dict) -> list[str]:
    """The settings that differ; one the old record lacks was not recorded then (a run folder
    of an earlier version) and is not compared."""
    return sorted(k for k in set(old) | set(new) if k in old and old.get(k) != new.get(k))


def contents_digest(paths: Iterable[str], block: int = 1 << 20) -> str:
    """A digest of the files' contents, cheap for any size: each file's size and its first
    and last ``block`` bytes. A rewritten data file changes them (its header, index or last
    chunks), so a run folder can tell its data from other data under the same name without
    reading every file whole."""
    import hashlib

    h = hashlib.sha1()
    for path in paths:
        try:
            size = os.path.getsize(path)
            h.update(f"{size}:".encode())
            with open(path, "rb") as fh:
                h.update(fh.read(block))
                if size > block:
                    fh.seek(max(block, size - block))
                    h.update(fh.read(block))
        except FileNotFoundError:
            raise InputError("no such file", path) from None
        except OSError as err:
            raise InputError(f"cannot read it: {err.strerror or err}", path) from None
    return h.hexdigest()


@contextlib.contextmanager
def run_folder(out: str | os.PathLike, settings: dict | None = None, overwrite: bool = False,
               fresh: Iterable[str] = (), started: Callable[[str], bool] | None = None,
               command: str = "run") -> Iterator[str]:
    """Hold the run folder ``out`` exclusively for the whole block (a second run on it stops at
    once, naming the running one) and check the settings it was started with.

    ``settings`` (JSON-able) are kept in ``out/run.json``. A rerun with other settings is
    refused, naming what differs, once the folder holds results of the earlier ones
    (``started(out)``; default: ``run.json`` exists), unless ``overwrite``: then the entries
    ``fresh`` of the folder are removed and the run starts afresh."""
    out = os.fspath(out)
    if os.path.exists(out) and not os.path.isdir(out):
        raise InputError("output exists and is not a folder", out)
    os.makedirs(out, exist_ok=True)
    if _is_secondary_rank():
        yield out
        return
    with OutputLock(os.path.join(out, RUN_LOCK), out, f"run folder ({command})"):
        if settings is not None:
            _check_settings(out, settings, overwrite, fresh, started)
        yield out


def _check_settings(out: str, settings: dict, overwrite: bool, fresh: Iterable[str],
                    started: Callable[[str], bool] | None) -> None:
    path = os.path.join(out, RUN_RECORD)
    settings = json.loads(json.dumps(settings))  # as it will read back
    old = None
    if os.path.exists(path):
        try:
            with open(path) as fh:
                old = json.load(fh).get("settings")
        except (OSError, ValueError, AttributeError):
            old = None
    if overwrite:
        for name in fresh:
            p = os.path.join(out, name)
            if os.path.isdir(p) and not os.path.islink(p):
                shutil.rmtree(p)
            elif os.path.lexists(p):
                os.remove(p)
    elif old is not None and (differing := _differing(old, settings)) and (
            started(out) if started else True):
        raise InputError(f"this run folder was started with other settings "
                         f"({', '.join(differing)}); rerun with the same "
                         "settings to resume, or add --overwrite to start afresh", out)
    if old != settings:
        write_text_atomic(path, json.dumps({"settings": settings}, indent=1))
