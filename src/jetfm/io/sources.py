"""The files a streamed training reads: AOJ files or jetfm token files (:mod:`jetfm.io.tokens`),
told apart by their content, with what a reader needs to plan reads in whole HDF5 chunks."""
from __future__ import annotations

from dataclasses import dataclass

from jetfm.errors import InputError, require_file
from jetfm.io.tokens import FORMAT as TOKENS_FORMAT


@dataclass(frozen=True)
class SourceFile:
    """One training file: ``kind`` ``"aoj"`` or ``"tokens"``, ``n`` jets, ``chunk_rows`` jets
    per HDF5 chunk (1 if stored contiguously) and, for token files, the padded sequence length
    ``seq_len``."""
    path: str
    kind: str
    n: int
    chunk_rows: int
    seq_len: int = 0


def probe_source(path: str) -> SourceFile:
    """Kind, length and chunking of one file, from its header (an AOJ file's layout is checked
    in full by :func:`jetfm.io.aoj.aoj_length`); InputError for any other file."""
    import h5py

    require_file(path)
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise InputError("not a readable HDF5 file (an AOJ .h5 or a jetfm token file)",
                         path) from err
    with f:
        if f.attrs.get("format") == TOKENS_FORMAT:
            if not isinstance(f.get("tokens"), h5py.Dataset) or f["tokens"].ndim != 2:
                raise InputError("token file without a 2-d 'tokens' dataset", path)
            ds = f["tokens"]
            return SourceFile(path, "tokens", ds.shape[0], (ds.chunks or (1,))[0], ds.shape[1])
        if not isinstance(f.get("PFCands"), h5py.Dataset):
            raise InputError("neither an AspenOpenJets file (no 'PFCands' dataset) nor a jetfm "
                             "token file", path)
        ds = f["PFCands"]
        n, chunk_rows = ds.shape[0], (ds.chunks or (1,))[0]
    from jetfm.io.aoj import aoj_length

    aoj_length(path)  # full layout check, with its clear error messages
    return SourceFile(path, "aoj", n, chunk_rows)
