"""One exception type for bad input, so the CLI can print one clear line and exit 2."""
from __future__ import annotations

import os


class InputError(Exception):
    """Bad input: a missing, corrupted or malformed file, or an invalid argument.

    ``str(err)`` is one line: ``"<path>: <problem>"`` (or just the problem when no file is
    involved).
    """

    def __init__(self, message: str, path: str | os.PathLike | None = None):
        self.path = None if path is None else os.fspath(path)
        self.message = " ".join(str(message).split())  # always a single line
        super().__init__(self.message if self.path is None else f"{self.path}: {self.message}")


def require_file(path: str | os.PathLike) -> str:
    """Return ``path`` as a string if it is an existing readable file, else raise InputError."""
    p = os.fspath(path)
    if not os.path.exists(p):
        raise InputError("no such file", p)
    if os.path.isdir(p):
        raise InputError("is a directory, expected a file", p)
    if not os.access(p, os.R_OK):
        raise InputError("file is not readable", p)
    return p


def _nearest_existing(folder: str) -> str:
    """``folder`` or its closest ancestor that exists."""
    probe = folder
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    return probe


def check_writable(path: str | os.PathLike) -> str:
    """Raise InputError unless a file can be created at ``path`` (its folder exists or can be
    made)."""
    p = os.fspath(path)
    probe = _nearest_existing(os.path.dirname(os.path.abspath(p)))
    if not os.path.isdir(probe) or not os.access(probe, os.W_OK):
        raise InputError("output path is not writable", p)
    if os.path.isdir(p):
        raise InputError("output path is a directory, expected a file name", p)
    return p


def check_output_dir(path: str | os.PathLike, option: str) -> str:
    """Raise InputError (naming ``option``) unless ``path`` is a writable folder or one can be
    created there; creates nothing."""
    p = os.fspath(path)
    if os.path.exists(p) and not os.path.isdir(p):
        raise InputError(f"{option}: exists and is not a folder", p)
    probe = _nearest_existing(os.path.abspath(p))
    if not os.path.isdir(probe):
        raise InputError(f"{option}: cannot create the folder ({probe} is a file)", p)
    if not os.access(probe, os.W_OK | os.X_OK):
        raise InputError(f"{option}: folder is not writable ({probe})", p)
    return p


def __getattr__(name: str):
    # ``write_text_atomic`` lives in jetfm.io.output (which imports this module); the old name
    # here still resolves, for code that imports it from jetfm.errors
    if name == "write_text_atomic":
        from jetfm.io.output import write_text_atomic

        return write_text_atomic
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
