"""File formats live here and only here: AOJ HDF5, JetClass ROOT, NanoAOD, token files.

:func:`read_jets` reads any jet file jetfm knows, telling the format from the file's first bytes.
"""
from __future__ import annotations

import os

from jetfm.errors import InputError, require_file

FORMATS = ("aoj", "jetclass")


def detect_format(path: str | os.PathLike) -> str:
    """``"aoj"`` for an HDF5 file, ``"jetclass"`` for a ROOT or Parquet file; InputError
    otherwise."""
    p = require_file(path)
    with open(p, "rb") as fh:
        head = fh.read(8)
    if head == b"\x89HDF\r\n\x1a\n":
        return "aoj"
    if head[:4] in (b"root", b"PAR1"):  # JetClass as ROOT, or as Parquet (JetClass-II)
        return "jetclass"
    if len(head) == 0:
        raise InputError("file is empty", p)
    raise InputError("unknown file format: expected an AOJ .h5 (HDF5) or JetClass .root or "
                     ".parquet file", p)


def read_jets(path: str | os.PathLike, start: int = 0, stop: int | None = None, **kw):
    """Read an AOJ or JetClass file into :class:`jetfm.Jets`."""
    fmt = detect_format(path)
    if fmt == "aoj":
        from jetfm.io.aoj import read_aoj

        return read_aoj(path, start, stop, **kw)
    from jetfm.io.jetclass import read_jetclass

    return read_jetclass(path, start, stop, **kw)


def iter_jets(path: str | os.PathLike, chunk_size: int = 50_000, **kw):
    """Stream an AOJ or JetClass file in chunks of :class:`jetfm.Jets`."""
    fmt = detect_format(path)
    if fmt == "aoj":
        from jetfm.io.aoj import iter_aoj

        return iter_aoj(path, chunk_size, **kw)
    from jetfm.io.jetclass import iter_jetclass

    return iter_jetclass(path, chunk_size, **kw)


def count_jets(path: str | os.PathLike) -> int:
    if detect_format(path) == "aoj":
        from jetfm.io.aoj import aoj_length

        return aoj_length(path)
    from jetfm.io.jetclass import jetclass_length

    return jetclass_length(path)
