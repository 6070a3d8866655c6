"""Compiled (numba) kernels behind :mod:`jetfm.io.aoj`: stored PFCands rows -> the constituent
array and mask of :class:`jetfm.Jets`, one block of jets at a time.

A block is decompressed into a buffer that stays in the CPU cache, and one pass over it does
every step the reader applies: the mask, the PUPPI weights, the column selection, the check for
non-finite values, zero padding, the track sentinels and the pT order. Each step is the same
float32 operation as the NumPy reference (tests/io/test_aoj.py), so the arrays are equal to it
bit for bit.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

_JIT = dict(cache=True, nogil=True)


@njit(**_JIT)
def rows_to_constituents(rows, first, sel, track, cols, drop_hf, puppi, nan_tracks, sort, out,
                         mask, used):
    """Turn the stored rows ``(B, P, 11)`` float32 of jets ``first .. first + B`` into
    ``out[first + r]`` ``(P, len(sel))`` (columns ``sel``) and ``mask[first + r]`` ``(P,)``;
    ``used[first + r]`` gets one past the jet's last masked slot in stored order.

    ``cols``: the stored columns px, py, pz, E, pdgId, puppiWeight. The mask is ``E > 0``
    (and ``|pdgId| >= 11`` with ``drop_hf``, and ``E w > 0`` with ``puppi``, which multiplies
    px, py, pz and E by the weight w). Values are multiplied by the mask (padding zero), a masked
    candidate whose ``track`` columns (positions in ``sel``) all hold -1 gets NaN there
    (``nan_tracks``), and with ``sort`` a jet not in decreasing pT = hypot(px, py) order (masked
    candidates first) is stably re-sorted. Returns the first slot holding a non-finite selected
    value (after weighting, before masking), or P if there is none.
    """
    B, P, _ = rows.shape
    k = sel.shape[0]
    i_px, i_py, i_e, i_pdg, i_w = cols[0], cols[1], cols[3], cols[4], cols[5]
    weighted = np.zeros(k, np.bool_)
    for j in range(k):
        weighted[j] = puppi and (sel[j] == cols[0] or sel[j] == cols[1] or sel[j] == cols[2]
                                 or sel[j] == cols[3])
    n_track = track.shape[0] if nan_tracks else 0
    bad = P
    m = np.empty(P, np.bool_)
    tmp = np.empty((P, k), np.float32)
    tmpm = np.empty(P, np.bool_)
    q = np.empty(P)
    one = np.float32(1.0)
    for r in range(B):
        i = first + r
        o = out[i]
        last = 0
        # each step in a loop of its own: the first, over every slot, stays branch-free
        for s in range(P):
            row = rows[r, s]
            w = row[i_w] if puppi else one
            e = row[i_e]
            ms = e > 0
            if drop_hf:
                ms = ms and abs(row[i_pdg]) >= 11
            if puppi:
                ms = ms and e * w > 0
            fm = np.float32(ms)
            finite = True
            for j in range(k):
                v = row[sel[j]]
                if weighted[j]:
                    v = v * w
                finite = finite and math.isfinite(v)
                o[s, j] = v * fm
            if not finite and s < bad:
                bad = s
            m[s] = ms
            last = s + 1 if ms else last
            px, py = row[i_px] * w, row[i_py] * w
            q[s] = np.float64(px) * px + np.float64(py) * py
        used[i] = last
        if n_track > 0:
            _missing_tracks(o, m, last, track)
        if sort and _unsorted(rows[r], m, q, last, i_px, i_py, i_w, puppi):
            # a stable sort by decreasing pT, unmasked slots last
            neg = np.empty(P, np.float32)
            for s in range(P):
                neg[s] = -_pt(rows[r, s], i_px, i_py, i_w, puppi) if m[s] else np.inf
            order = np.argsort(neg, kind="mergesort")
            for s in range(P):
                tmp[s] = o[order[s]]
                tmpm[s] = m[order[s]]
            o[:, :] = tmp
            m[:] = tmpm
        mask[i] = m
    return bad


@njit(**_JIT)
def _missing_tracks(o, m, last, track):
    """NaN in the ``track`` columns of masked slots where all of them hold -1."""
    for s in range(last):
        if not m[s]:
            continue
        missing = True
        for t in range(track.shape[0]):
            missing = missing and o[s, track[t]] == np.float32(-1.0)
        if missing:
            for t in range(track.shape[0]):
                o[s, track[t]] = np.float32(np.nan)


@njit(**_JIT)
def _pt(row, i_px, i_py, i_w, puppi):
    """float32 pT of one stored row: hypot of the (weighted) px and py, as NumPy's hypot."""
    w = row[i_w] if puppi else np.float32(1.0)
    return math.hypot(row[i_px] * w, row[i_py] * w)


@njit(**_JIT)
def _unsorted(rows, m, q, last, i_px, i_py, i_w, puppi):
    """Whether a masked slot has a higher pT than the masked slot before it. pT = hypot(px, py)
    rises with ``q`` = px^2 + py^2 (exact in float64 up to the rounding of the sum), so pT itself
    is computed only where q does not fall."""
    prev = -1
    for s in range(last):
        if not m[s]:
            continue
        if prev >= 0 and q[s] >= q[prev] and \
                _pt(rows[s], i_px, i_py, i_w, puppi) > _pt(rows[prev], i_px, i_py, i_w, puppi):
            return True
        prev = s
    return False


@njit(**_JIT)
def compact(flat, flat_mask, n, P, p, k):
    """Move jet i's first ``p`` slots of the ``(n, P, k)`` array ``flat`` (and ``(n, P)`` mask)
    to where an ``(n, p, k)`` array keeps them, in place (front to back: no value is
    overwritten before it is moved)."""
    for i in range(n):
        src, dst = i * P * k, i * p * k
        for x in range(p * k):
            flat[dst + x] = flat[src + x]
        src, dst = i * P, i * p
        for x in range(p):
            flat_mask[dst + x] = flat_mask[src + x]
