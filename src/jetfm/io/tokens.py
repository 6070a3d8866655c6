"""Token sequences of the OmniJet-alpha tokenizer, in memory and on disk (no torch here).

A sequence is ``[start] + [code + 1 for each constituent, pT order] + [stop]`` with start = 0,
stop = codebook_size + 1 and vocabulary = codebook_size + 2; sequences are padded with -1 to a
common length. In memory: ``(N, L)`` int64.

A tokenizer with ``residual_codes = R > 0`` (see :class:`jetfm.omnijet.tokenizer.TokenizerConfig`)
gives each of a jet's leading constituents a second token right after its code: the index r of
its residual code as token ``codebook_size + 1 + r``. Then stop = codebook_size + R + 1 and
vocabulary = codebook_size + R + 2. Per constituent such a tokenizer's codes are *combined*:
``code + codebook_size * (r + 1)`` for a constituent with a residual code, the plain code
otherwise (:func:`split_codes`).

File format (HDF5, ``jetfm tokenize`` writes it):

===============  =============  ==============================================================
dataset          shape, dtype   content
===============  =============  ==============================================================
``tokens``       (N, L) int32   sequences as above, -1 padded (gzip)
``n_tokens``     (N,) int32     sequence length including start and stop
===============  =============  ==============================================================

File attributes: ``format = "jetfm-tokens"``, ``version``, ``codebook_size``,
``residual_codes``, ``start_token``, ``stop_token``, plus provenance given by the writer
(tokenizer directory, source files).
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


def stop_token(codebook_size: int, residual_codes: int = 0) -> int:
    return codebook_size + residual_codes + 1


def split_codes(codes: np.ndarray, codebook_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Combined codes (any shape; -1 padding stays -1) -> (codes in [0, codebook_size), residual
    indices, -1 where a constituent has none)."""
    codes = np.asarray(codes, np.int64)
    real = codes >= 0
    return (np.where(real, codes % codebook_size, -1),
            np.where(real, codes // codebook_size - 1, -1))


def codes_to_sequences(codes: np.ndarray, mask: np.ndarray, codebook_size: int,
                       residual_codes: int = 0) -> np.ndarray:
    """codes (N, P) in [0, codebook_size) with mask (N, P) (real entries first) ->
    sequences (N, P + 2) int64: start, code + 1 ..., stop, then -1 padding.

    With ``residual_codes`` R > 0 the codes are combined (module docstring): a constituent with
    a residual index r is followed by the token ``codebook_size + 1 + r``, and the sequences are
    as long as the longest needs."""
    codes = np.asarray(codes, np.int64)
    mask = np.asarray(mask, bool)
    n, p = mask.shape
    hi = codebook_size * (residual_codes + 1)
    if (codes[mask] < 0).any() or (codes[mask] >= hi).any():
        raise ValueError(f"codes outside [0, {hi})")
    stop = stop_token(codebook_size, residual_codes)
    if not residual_codes:
        seq = np.full((n, p + 2), -1, np.int64)
        seq[:, 0] = START_TOKEN
        seq[:, 1:p + 1] = np.where(mask, codes + 1, -1)
        seq[np.arange(n), mask.sum(1) + 1] = stop
        return seq
    code, res = split_codes(np.where(mask, codes, -1), codebook_size)
    has = res >= 0
    # each constituent takes 1 token, 2 with a residual code: its code's place in the sequence
    at = 1 + np.cumsum(1 + has, axis=1) - (1 + has)
    length = (mask * (1 + has)).sum(1)
    seq = np.full((n, int(length.max(initial=0)) + 2), -1, np.int64)
    seq[:, 0] = START_TOKEN
    rows = np.broadcast_to(np.arange(n)[:, None], mask.shape)
    seq[rows[mask], at[mask]] = code[mask] + 1
    both = mask & has
    seq[rows[both], at[both] + 1] = codebook_size + 1 + res[both]
    seq[np.arange(n), length + 1] = stop
    return seq


def sequences_to_codes(seqs: np.ndarray, codebook_size: int, n_max: int | None = None,
                       residual_codes: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Sequences (N, L) -> (codes (N, n_max) with -1 on padding, mask (N, n_max)).

    Each sequence is cut at its first stop token (or at its padding); a leading start token is
    dropped. ``n_max`` defaults to L - 1. With ``residual_codes`` the codes are combined: a
    residual token joins the code before it (one that follows no code is dropped)."""
    seqs = np.asarray(seqs, np.int64)
    body = seqs[:, 1:] if len(seqs) and (seqs[:, 0] == START_TOKEN).all() else seqs
    stop = stop_token(codebook_size, residual_codes)
    bad = (body == START_TOKEN) | (body > stop) | (body < -1)
    ended = np.cumsum((body == stop) | (body < 0) | bad, axis=1) > 0
    mask = ~ended
    codes = np.where(mask, body - 1, -1)
    if residual_codes:
        is_res = mask & (body > codebook_size)
        is_code = mask & ~is_res
        # a residual token after a code: the code's combined value
        joins = is_res[:, 1:] & is_code[:, :-1]
        joined = codes[:, :-1] + codebook_size * (body[:, 1:] - codebook_size)
        codes[:, :-1] = np.where(joins, joined, codes[:, :-1])
        order = np.argsort(~is_code, axis=1, kind="stable")
        codes = np.take_along_axis(np.where(is_code, codes, -1), order, 1)
        mask = np.take_along_axis(is_code, order, 1)
    p = body.shape[1] if n_max is None else n_max
    if p > codes.shape[1]:
        pad = p - codes.shape[1]
        codes = np.pad(codes, ((0, 0), (0, pad)), constant_values=-1)
        mask = np.pad(mask, ((0, 0), (0, pad)))
    return codes[:, :p], mask[:, :p]


def write_tokens(path: str | os.PathLike, seqs: np.ndarray, codebook_size: int,
                 attrs: dict | None = None, residual_codes: int = 0, prong_seeds: int = 0) -> str:
    """Write sequences (N, L) atomically (:func:`jetfm.io.output.atomic_output`); returns the
    path. ``prong_seeds``: the constituents' order in the sequences (the preprocessing's)."""
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
                        "residual_codes": residual_codes, "start_token": START_TOKEN,
                        "stop_token": stop_token(codebook_size, residual_codes),
                        "prong_seeds": prong_seeds})
        for k, v in (attrs or {}).items():
            f.attrs[k] = v if isinstance(v, (int, float, str)) else json.dumps(v)
    return out


def check_token_layout(attrs: dict, tokenizer, path: str) -> None:
    """A token file's attributes must match ``tokenizer`` (its codebook size, residual codes and
    the order of the constituents; None: no tokenizer, any file is refused), else one InputError
    naming the file."""
    k = int(attrs.get("codebook_size", -1))
    r = int(attrs.get("residual_codes", 0))
    want = (0, 0) if tokenizer is None else (tokenizer.codebook_size, tokenizer.residual_codes)
    if (k, r) != want:
        have = f"{k} codes" + (f" + {r} residual codes" if r else "")
        need = f"{want[0]} codes" + (f" + {want[1]} residual codes" if want[1] else "")
        raise InputError(f"token file of a tokenizer with {have}, the model's tokenizer has "
                         f"{need} (tokenize it with this model)", path)
    seeds = int(attrs.get("prong_seeds", 0))
    want_seeds = tokenizer.preprocessing.prong_seeds
    if max(seeds, 1) != max(want_seeds, 1):
        raise InputError(f"token file with the constituents in the order of prong_seeds = "
                         f"{seeds}, the model's is {want_seeds} (tokenize it with this model)",
                         path)


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
    stop = stop_token(int(attrs["codebook_size"]), int(attrs.get("residual_codes", 0)))
    if seqs.ndim != 2 or (len(seqs) and ((seqs < -1).any() or (seqs > stop).any())):
        raise InputError(f"dataset 'tokens' holds values outside [-1, {stop}]", p)
    return seqs, attrs
