"""Token sequences of the OmniJet-alpha tokenizer, in memory and on disk (no torch here).

A sequence is ``[start] + [code + 1 for each constituent, pT order] + [stop]`` with start = 0,
stop = codebook_size + 1 and vocabulary = codebook_size + 2; sequences are padded with -1 to a
common length. In memory: ``(N, L)`` int64.

File format (HDF5, ``jetfm tokenize`` writes it):

===============  =============  ==============================================================
dataset          shape, dtype   content
===============  =============  ==============================================================
``tokens``       (N, L) int32   sequences as above, -1 padded (gzip)
``n_tokens``     (N,) int32     sequence length including start and stop
===============  =============  ==============================================================

File attributes: ``format = "jetfm-tokens"``, ``version``, ``codebook_size``, ``start_token``,
``stop_token``, plus provenance given by the writer (tokenizer directory, source files).
"""
from __future__ import annotations

import json
import os

import numpy as np

from jetfm.errors import InputError, check_writable, require_file
from jetfm.io.output import atomic_output

FORMAT = "jetfm-tokens"
VERSION = 1
START_TOKEN = 0


def stop_token(codebook_size: int) -> int:
    return codebook_size + 1


def codes_to_sequences(codes: np.ndarray, mask: np.ndarray, codebook_size: int) -> np.ndarray:
    """codes (N, P) in [0, codebook_size) with mask (N, P) (real entries first) ->
    sequences (N, P + 2) int64: start, code + 1 ..., stop, then -1 padding."""
    codes = np.asarray(codes, np.int64)
    mask = np.asarray(mask, bool)
    n, p = mask.shape
    if (codes[mask] < 0).any() or (codes[mask] >= codebook_size).any():
        raise ValueError(f"codes outside [0, {codebook_size})")
    seq = np.full((n, p + 2), -1, np.int64)
    seq[:, 0] = START_TOKEN
    seq[:, 1:p + 1] = np.where(mask, codes + 1, -1)
    n_real = mask.sum(1)
    seq[np.arange(n), n_real + 1] = stop_token(codebook_size)
    return seq


def sequences_to_codes(seqs: np.ndarray, codebook_size: int,
                       n_max: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Sequences (N, L) -> (codes (N, n_max) with -1 on padding, mask (N, n_max)).

    Each sequence is cut at its first stop token (or at its padding); a leading start token is
    dropped. ``n_max`` defaults to L - 1.
    """
    seqs = np.asarray(seqs, np.int64)
    body = seqs[:, 1:] if len(seqs) and (seqs[:, 0] == START_TOKEN).all() else seqs
    stop = stop_token(codebook_size)
    bad = (body == START_TOKEN) | (body > stop) | (body < -1)
    ended = np.cumsum((body == stop) | (body < 0) | bad, axis=1) > 0
    mask = ~ended
    codes = np.where(mask, body - 1, -1)
    p = body.shape[1] if n_max is None else n_max
    if p > codes.shape[1]:
        pad = p - codes.shape[1]
        codes = np.pad(codes, ((0, 0), (0, pad)), constant_values=-1)
        mask = np.pad(mask, ((0, 0), (0, pad)))
    return codes[:, :p], mask[:, :p]


def write_tokens(path: str | os.PathLike, seqs: np.ndarray, codebook_size: int,
                 attrs: dict | None = None) -> str:
    """Write sequences (N, L) atomically (:func:`jetfm.io.output.atomic_output`); returns the
    path."""
    import h5py

    out = check_writable(path)
    seqs = np.asarray(seqs, np.int64)
    if seqs.ndim != 2:
        raise ValueError(f"sequences must be (N, L), got {seqs.shape}")
    with atomic_output(out) as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset("tokens", data=seqs.astype(np.int32), compression="gzip",
                         chunks=(min(max(len(seqs), 1), 4096), max(seqs.shape[1], 1)))
        f.create_dataset("n_tokens", data=(seqs >= 0).sum(1).astype(np.int32))
        f.attrs.update({"format": FORMAT, "version": VERSION, "codebook_size": codebook_size,
                        "start_token": START_TOKEN, "stop_token": stop_token(codebook_size)})
        for k, v in (attrs or {}).items():
            f.attrs[k] = v if isinstance(v, (int, float, str)) else json.dumps(v)
    return out


def read_token_rows(path: str | os.PathLike, lo: int, hi: int, seq_len: int = 0) -> np.ndarray:
    """Sequences ``lo..hi`` of a token file -> (hi - lo, max(L, seq_len)) int64, -1 padded (for
    reads of a few rows at a time: no check of the file's attributes or values)."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            arr = f["tokens"][lo:hi].astype(np.int64)
    except (OSError, RuntimeError, ValueError) as err:
        raise InputError(f"cannot read tokens {lo}..{hi}: corrupted or truncated data ({err})",
                         path) from err
    if arr.shape[1] < seq_len:
        arr = np.pad(arr, ((0, 0), (0, seq_len - arr.shape[1])), constant_values=-1)
    return arr


def read_tokens(path: str | os.PathLike) -> tuple[np.ndarray, dict]:
    """Read a token file -> (sequences (N, L) int64, attributes)."""
    import h5py

    p = require_file(path)
    try:
        f = h5py.File(p, "r")
    except OSError as err:
        raise InputError("not a readable HDF5 token file (truncated or another format)", p) from err
    with f:
        if f.attrs.get("format") != FORMAT or not isinstance(f.get("tokens"), h5py.Dataset):
            raise InputError(f"not a jetfm token file (attribute format != '{FORMAT}' or no "
                             "'tokens' dataset)", p)
        seqs = f["tokens"][...].astype(np.int64)
        attrs = {k: (v.item() if hasattr(v, "item") else v) for k, v in f.attrs.items()}
    k = int(attrs["codebook_size"])
    if seqs.ndim != 2 or (len(seqs) and ((seqs < -1).any() or (seqs > k + 1).any())):
        raise InputError(f"dataset 'tokens' holds values outside [-1, {k + 1}]", p)
    return seqs, attrs
