"""Compiled (numba) kernels behind :mod:`jetfm.physics.observables`: pairwise clustering, the
N-subjettiness, D2 and soft-drop sums, one jet at a time.

Everything follows FastJet 3 and fjcontrib operation by operation, so that the numbers equal
FastJet's to rounding and the same pairs merge even where distances tie:

- four-vectors: ``PseudoJet``'s rapidity (``_set_rap_phi``: ``m^2 < 0`` taken as 0, momenta
  along the beam at +-(1e5 + |pz|)), azimuth in [0, 2 pi), ``kt2 = px^2 + py^2``,
  ``m^2 = (E + pz)(E - pz) - kt2``;
- distances: ``dphi = |phi1 - phi2|``, folded to ``2 pi - dphi`` above pi, plus ``dy^2``;
- clustering: ``ClusterSequence::_simple_N2_cluster`` (the N2Plain strategy) literally: the
  same arrays of brief jets, the same nearest-neighbour updates, the tail moved into the slot of
  the merged jet, the first minimum kept on ties, and R = 1000 (FastJet's
  ``max_allowable_R``), so an object merges with the beam only when it is the last one left
  (or lies along the beam: no partner within R). FastJet itself uses N2Plain up to 75 inputs at
  this R and a tiled strategy above, which merges the same pairs unless distances tie exactly.
- the history: hist index h < n for the inputs, n + s for step s; a pair merge records
  (min, max) of its parents' hist indices, a beam merge (parent, -1). Objects live at their
  hist index (a beam step leaves its slot unused).

Inputs are the constituents of one padded array, ``(N, P, F)`` float32, read in stored order
where the mask is set; a constituent with ``px = py = 0`` and ``E = |pz|`` lies along the beam, is
merged with the beam first by FastJet and never enters a jet, so it is skipped. The kernels
release the GIL: jets are split over threads by the caller.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

PI = math.pi
TWO_PI = 2.0 * math.pi
#: FastJet's rapidity of a massless momentum along the beam (plus |pz|)
MAX_RAP = 1e5
#: FastJet's max_allowable_R = 1000, squared: the initial nearest-neighbour distance
R2_MAX = 1e6
INF = math.inf

_JIT = dict(cache=True, nogil=True)


@njit(**_JIT)
def _set_rap_phi(px, py, pz, e):
    """(rap, phi in [0, 2 pi), kt2) as ``PseudoJet::_set_rap_phi`` computes them."""
    kt2 = px * px + py * py
    phi = 0.0 if kt2 == 0.0 else math.atan2(py, px)
    if phi < 0.0:
        phi += TWO_PI
    if phi >= TWO_PI:
        phi -= TWO_PI
    if e == abs(pz) and kt2 == 0.0:
        rap = MAX_RAP + abs(pz)
        if pz < 0.0:
            rap = -rap
    else:
        m2 = (e + pz) * (e - pz) - kt2
        if m2 < 0.0:
            m2 = 0.0
        epz = e + abs(pz)
        rap = 0.5 * math.log((kt2 + m2) / (epz * epz))
        if pz > 0.0:
            rap = -rap
    return rap, phi, kt2


@njit(**_JIT)
def _dist(rap1, phi1, rap2, phi2):
    """FastJet's squared rapidity-azimuth distance (``_bj_dist``, ``squared_distance``)."""
    dphi = abs(phi1 - phi2)
    if dphi > PI:
        dphi = TWO_PI - dphi
    drap = rap1 - rap2
    return dphi * dphi + drap * drap


@njit(**_JIT)
def _mass(p):
    """Mass of one four-vector, 0 where ``m^2 < 0`` (FastJet's m() is -sqrt(-m^2) there)."""
    m2 = (p[3] + p[2]) * (p[3] - p[2]) - (p[0] * p[0] + p[1] * p[1])
    return math.sqrt(m2) if m2 > 0.0 else 0.0


@njit(**_JIT)
def _load(cons, mask, cols, i, jp, jrap, jphi, jkt2, pt, p4):
    """Copy jet ``i``'s constituents into slots 0..n-1 (float64, ``pt`` = sqrt(kt2) as
    ``PseudoJet::perp``) and add their (px, py, pz, E) into ``p4``; returns n, or -1 if a
    four-momentum is not finite."""
    n = 0
    for c in range(mask.shape[1]):
        if not mask[i, c]:
            continue
        px = np.float64(cons[i, c, cols[0]])
        py = np.float64(cons[i, c, cols[1]])
        pz = np.float64(cons[i, c, cols[2]])
        e = np.float64(cons[i, c, cols[3]])
        if not (math.isfinite(px) and math.isfinite(py) and math.isfinite(pz)
                and math.isfinite(e)):
            return -1
        p4[0] += px
        p4[1] += py
        p4[2] += pz
        p4[3] += e
        if px == 0.0 and py == 0.0 and e == abs(pz):
            continue  # along the beam: never part of a jet
        jp[n, 0], jp[n, 1], jp[n, 2], jp[n, 3] = px, py, pz, e
        jrap[n], jphi[n], jkt2[n] = _set_rap_phi(px, py, pz, e)
        pt[n] = math.sqrt(jkt2[n])
        n += 1
    return n


@njit(**_JIT)
def _pair_distances(n, rap, phi, dd, nn0, nnd0):
    """All pairwise distances of the n inputs into the (n, n) ``dd`` (0 on the diagonal) and
    their nearest neighbours (-1: none within R). ``_bj_set_NN_crosscheck`` run over the inputs
    in order leaves each one with the first minimum of its row in slot order, which is what the
    row scans below give."""
    for a in range(n):
        row = dd[a]
        ra, fa = rap[a], phi[a]
        for b in range(n):
            row[b] = _dist(ra, fa, rap[b], phi[b])
    for a in range(n):
        row = dd[a]
        d_aa = row[a]
        row[a] = INF
        nn0[a], nnd0[a] = _first_min(row, n, R2_MAX)
        row[a] = d_aa


@njit(**_JIT)
def _first_min(v, m, start):
    """Index and value of the first minimum of v[0:m] below ``start`` (strict <), -1 if none:
    four interleaved running minima (independent chains), merged by value then index."""
    b0 = b1 = b2 = b3 = -1
    v0 = v1 = v2 = v3 = start
    k = 0
    while k + 4 <= m:
        x0, x1, x2, x3 = v[k], v[k + 1], v[k + 2], v[k + 3]
        if x0 < v0:
            v0, b0 = x0, k
        if x1 < v1:
            v1, b1 = x1, k + 1
        if x2 < v2:
            v2, b2 = x2, k + 2
        if x3 < v3:
            v3, b3 = x3, k + 3
        k += 4
    while k < m:
        if v[k] < v0:
            v0, b0 = v[k], k
        k += 1
    # the smallest value; among equal ones the smallest index (-1 only if the value is start)
    best, bv = b0, v0
    if v1 < bv or (v1 == bv and b1 >= 0 and (best < 0 or b1 < best)):
        best, bv = b1, v1
    if v2 < bv or (v2 == bv and b2 >= 0 and (best < 0 or b2 < best)):
        best, bv = b2, v2
    if v3 < bv or (v3 == bv and b3 >= 0 and (best < 0 or b3 < best)):
        best, bv = b3, v3
    return best, bv


@njit(**_JIT)
def _dij(nnd, w, nn, w_nn):
    """``_bj_diJ``: the NN distance ``nnd`` times the smaller weight of the jet (``w``) and its
    NN ``nn`` (weight ``w_nn``; none if nn < 0). Scalars only: array arguments would cost a
    reference count update per call."""
    return nnd * (w_nn if nn >= 0 and w_nn < w else w)


@njit(**_JIT)
def cluster(n, kt, nn0, nnd0, jp, jrap, jphi, jkt2, par1, par2,
            b_rap, b_phi, b_w, b_idx, b_nn, b_nnd, dij, tmp, todo):
    """Cluster the n inputs in slots 0..n-1 of ``jp, jrap, jphi, jkt2`` down to the beam, kT
    (``kt``: weight kt2) or Cambridge/Aachen (weight 1), starting from their nearest neighbours
    ``nn0, nnd0``. Fills slots n..2n-1: merged objects and ``par1, par2`` (see the module).

    ``b_*`` are FastJet's brief jets (slot q: rapidity, azimuth, weight, hist index, nearest
    neighbour NN and its distance), ``dij`` their NN distance times the smaller weight; ``tmp``,
    ``todo``: scratch. After a merge FastJet visits every brief jet q once and (1)
    gives a jet whose NN was ja or jb a new one, (2) lets a jet closer to the new object jb
    than to its NN take jb, (3) gives jb the first closest q, (4) renames a pointer to the moved
    tail ja. (1) reads only distances, (2) and (3) only the distances to jb, and each writes only
    q's fields or jb's, so (2)-(4) run in one pass and the searches of (1) after it, which
    leaves exactly FastJet's state.
    """
    for q in range(n):
        b_rap[q], b_phi[q] = jrap[q], jphi[q]
        b_w[q] = jkt2[q] if kt else 1.0
        b_idx[q] = q
        b_nn[q], b_nnd[q] = nn0[q], nnd0[q]
    for q in range(n):
        dij[q] = _dij(b_nnd[q], b_w[q], b_nn[q], b_w[b_nn[q]])
    m = n
    h = n - 1
    while m > 0:
        ja, _ = _first_min(dij, m, INF)
        h += 1
        jb = b_nn[ja]
        if jb >= 0:
            if ja < jb:
                ja, jb = jb, ja
            ha, hb = b_idx[ja], b_idx[jb]
            for c in range(4):
                jp[h, c] = jp[ha, c] + jp[hb, c]
            r, f, k2 = _set_rap_phi(jp[h, 0], jp[h, 1], jp[h, 2], jp[h, 3])
            jrap[h], jphi[h], jkt2[h] = r, f, k2
            par1[h], par2[h] = min(ha, hb), max(ha, hb)
            b_rap[jb], b_phi[jb] = r, f
            b_w[jb] = k2 if kt else 1.0
            b_idx[jb] = h
            b_nn[jb], b_nnd[jb] = -1, R2_MAX
        else:
            par1[h], par2[h] = b_idx[ja], -1
        m -= 1
        tail = m
        b_rap[ja], b_phi[ja], b_w[ja] = b_rap[tail], b_phi[tail], b_w[tail]
        b_idx[ja], b_nn[ja], b_nnd[ja] = b_idx[tail], b_nn[tail], b_nnd[tail]
        dij[ja] = dij[tail]
        nt = 0
        if jb >= 0:
            rb, fb, wb = b_rap[jb], b_phi[jb], b_w[jb]
            best, best_d = -1, R2_MAX
            for q in range(m):
                d = _dist(b_rap[q], b_phi[q], rb, fb)
                nq = b_nn[q]
                todo[nt] = q  # (1) is decided on the NNs before this merge's updates
                nt += (nq == ja) | (nq == jb)
                if q != jb:
                    if d < best_d:  # (3)
                        best_d, best = d, q
                    if d < b_nnd[q]:  # (2)
                        b_nn[q], b_nnd[q] = jb, d
                        dij[q] = min(b_w[q], wb) * d
                    elif nq == tail:  # (4)
                        b_nn[q] = ja
            b_nn[jb], b_nnd[jb] = best, best_d
        else:
            for q in range(m):
                nq = b_nn[q]
                if nq == ja or nq == -1:
                    todo[nt] = q
                    nt += 1
            for q in range(m):
                if b_nn[q] == tail:
                    b_nn[q] = ja
        for t in range(nt):  # (1): exact NN among the jets in use
            q = todo[t]
            rq, fq = b_rap[q], b_phi[q]
            for b in range(m):
                tmp[b] = _dist(rq, fq, b_rap[b], b_phi[b])
            tmp[q] = INF
            b_nn[q], b_nnd[q] = _first_min(tmp, m, R2_MAX)
        for t in range(nt):
            q = todo[t]
            dij[q] = _dij(b_nnd[q], b_w[q], b_nn[q], b_w[b_nn[q]])
        if jb >= 0:
            dij[jb] = _dij(b_nnd[jb], b_w[jb], b_nn[jb], b_w[b_nn[jb]])


@njit(**_JIT)
def _angle_power(d2, beta):
    """dR^beta from dR^2 (sqrt for beta = 1, which is what pow(d2, 0.5) gives)."""
    return math.sqrt(d2) if beta == 1.0 else d2 ** (0.5 * beta)


@njit(**_JIT)
def nsub_taus(n, jrap, jphi, pt, par1, par2, n_max, beta, r0, normalized, out, axes):
    """tau_1..tau_n_max (contrib Nsubjettiness, ``KT_Axes``) from a kT history into ``out``;
    tau_k = 0 when n <= k. ``axes``: int scratch of length >= n_max."""
    r0b = r0 ** beta
    norm = 0.0
    for c in range(n):
        norm += pt[c] * r0b
    if not normalized:
        norm = 1.0
    for k in range(1, n_max + 1):
        out[k - 1] = 0.0
        if n <= k:
            continue
        # exclusive_jets(k): objects made before the last k steps and used after them
        stop = 2 * n - k
        na = 0
        for hh in range(stop, 2 * n):
            if par1[hh] < stop:
                axes[na] = par1[hh]
                na += 1
            if 0 < par2[hh] < stop:
                axes[na] = par2[hh]
                na += 1
        num = 0.0
        for c in range(n):
            dmin = _dist(jrap[c], jphi[c], jrap[axes[0]], jphi[axes[0]])
            for a in range(1, na):
                d = _dist(jrap[c], jphi[c], jrap[axes[a]], jphi[axes[a]])
                if d < dmin:
                    dmin = d
            if dmin > 0.0:
                num += pt[c] * _angle_power(dmin, beta)
        out[k - 1] = num / norm if norm > 0.0 else 0.0


#: D2's sums reassociated and fused (vector registers): all their terms are positive, so the
#: order changes the result by rounding only (1e-14 relative); every run and thread still
#: computes each jet the same way
_JIT_SUMS = dict(_JIT, fastmath={"reassoc", "contract"})


@njit(**_JIT_SUMS)
def d2_value(n, pt, dd, beta, ang, s):
    """contrib ``EnergyCorrelatorD2(beta)`` (pt_R measure) of the n inputs of transverse momenta
    ``pt`` from their pairwise squared distances ``dd``: ECF(3) ECF(1)^3 / ECF(2)^3, 0 when
    ECF(2) = 0. ``ang``: (>= n, >= n) scratch for A = dR^beta (lower triangle); ``s``: scratch
    of length >= n.

    ECF(3) = sum_{k<b<c} pT_k pT_b pT_c A_bk A_ck A_cb: for each b the vector
    z_k = pT_k A_bk (k < b) is dotted with the row prefixes A_c[:b] of all c > b, four rows at a
    time, so every loop reads contiguous memory.
    """
    e1 = 0.0
    for c in range(n):
        e1 += pt[c]
    for a in range(1, n):
        src, dst = dd[a, :a], ang[a, :a]
        if beta == 1.0:  # what pow(d2, 0.5) gives, vectorised
            for k in range(a):
                dst[k] = math.sqrt(src[k])
        else:
            for k in range(a):
                dst[k] = src[k] ** (0.5 * beta)
    e2 = 0.0
    e3 = 0.0
    for b in range(1, n):
        row = ang[b, :b]
        acc = 0.0
        for k in range(b):
            z = pt[k] * row[k]
            s[k] = z
            acc += z
        e2 += pt[b] * acc
        z = s[:b]
        acc = 0.0
        c = b + 1
        while c + 4 <= n:
            r0, r1, r2, r3 = ang[c, :b], ang[c + 1, :b], ang[c + 2, :b], ang[c + 3, :b]
            d0 = d1 = d2 = d3 = 0.0
            for k in range(b):
                zk = z[k]
                d0 += zk * r0[k]
                d1 += zk * r1[k]
                d2 += zk * r2[k]
                d3 += zk * r3[k]
            acc += (pt[c] * ang[c, b] * d0 + pt[c + 1] * ang[c + 1, b] * d1
                    + pt[c + 2] * ang[c + 2, b] * d2 + pt[c + 3] * ang[c + 3, b] * d3)
            c += 4
        while c < n:
            rc = ang[c, :b]
            d0 = 0.0
            for k in range(b):
                d0 += z[k] * rc[k]
            acc += pt[c] * ang[c, b] * d0
            c += 1
        e3 += pt[b] * acc
    if e2 <= 0.0:
        return 0.0
    return e3 * e1 * e1 * e1 / (e2 * e2 * e2)


@njit(**_JIT)
def softdrop_value(n, jp, jrap, jphi, jkt2, par1, par2, beta, zcut, r0):
    """contrib ``SoftDrop(beta, zcut, R0)`` groomed mass from a C/A history (scalar_z, larger-pT
    recursion, grooming mode): decluster from the root, keep the first branching with
    min(pT1, pT2) / (pT1 + pT2) > zcut (dR12^2 / R0^2)^(beta / 2)."""
    if n == 0:
        return 0.0
    node = par1[2 * n - 1]  # the last step merges the whole jet with the beam
    r0sq = r0 * r0
    while node >= n:
        if jkt2[node] <= 0.0:
            return 0.0
        a, b = par1[node], par2[node]
        if jkt2[a] < jkt2[b]:  # has_parents: decreasing pT
            a, b = b, a
        pta, ptb = math.sqrt(jkt2[a]), math.sqrt(jkt2[b])
        s = pta + ptb
        if s == 0.0:
            return 0.0
        sym = min(pta, ptb) / s
        cut = zcut * (_dist(jrap[a], jphi[a], jrap[b], jphi[b]) / r0sq) ** (0.5 * beta)
        if sym > cut:
            return _mass(jp[node])
        node = a
    return _mass(jp[node])


@njit(**_JIT)
def _count_species(cons, mask, i, col, species_of_id, out):
    """Constituents of jet i per species, from the pdgId column ``col`` (as
    :func:`jetfm.physics.features.species_from_pdgid`: NaN and ids beyond the table count
    nowhere)."""
    top = species_of_id.shape[0] - 1
    for c in range(mask.shape[1]):
        if not mask[i, c]:
            continue
        v = abs(cons[i, c, col])
        a = int(v) if v < top else top  # also NaN: the comparison is false
        k = species_of_id[a]
        if k >= 0:
            out[k] += 1


@njit(**_JIT)
def substructure(cons, mask, cols, n_tau, tau_beta, tau_r0, normalized, want_d2, d2_beta,
                 want_sd, sd_beta, sd_zcut, sd_r0, species_col, species_of_id, taus, d2s, msds,
                 p4s, counts, bad):
    """Fill ``taus[i, :n_tau]``, ``d2s[i]``, ``msds[i]`` and the four-momentum sum ``p4s[i]``
    (float64, in stored order) for every jet i of ``cons`` ((L, P, F) float32 with (L, P)
    ``mask``; ``cols``: the px, py, pz, E columns). n_tau = 0 skips the kT clustering,
    ``want_d2`` / ``want_sd`` the D2 and the C/A clustering. With ``species_col`` >= 0 (the
    pdgId column) ``counts[i, s]`` counts the constituents of species s: the index that the
    table ``species_of_id`` gives |pdgId| (-1 and ids beyond the table: none).
    ``bad[i]`` is set for a jet with a non-finite four-momentum (not computed)."""
    L, P = mask.shape
    S = 2 * max(P, 1)
    jp = np.zeros((S, 4))
    jrap, jphi, jkt2 = np.zeros(S), np.zeros(S), np.zeros(S)
    par1, par2 = np.full(S, -1, np.int64), np.full(S, -1, np.int64)
    # (n, n) matrices of each jet live at the start of flat buffers: they stay in cache
    dd_buf = np.zeros(P * P)
    ang_buf = np.zeros(P * P if want_d2 else 1)
    nn0, nnd0 = np.zeros(P, np.int64), np.zeros(P)
    b_rap, b_phi, b_w, b_nnd, dij = np.zeros(P), np.zeros(P), np.zeros(P), np.zeros(P), np.zeros(P)
    b_idx, b_nn, todo = np.zeros(P, np.int64), np.zeros(P, np.int64), np.zeros(P, np.int64)
    tmp, pt, s = np.zeros(P), np.zeros(P), np.zeros(P)
    axes = np.zeros(max(n_tau, 1), np.int64)
    for i in range(L):
        if species_col >= 0:
            _count_species(cons, mask, i, species_col, species_of_id, counts[i])
        n = _load(cons, mask, cols, i, jp, jrap, jphi, jkt2, pt, p4s[i])
        if n < 0:  # reported by the caller; the outputs of this jet stay as they are
            bad[i] = True
            continue
        nn2 = n * n
        dd = dd_buf[:nn2].reshape((n, n))
        _pair_distances(n, jrap, jphi, dd, nn0, nnd0)
        if want_d2:
            d2s[i] = d2_value(n, pt, dd, d2_beta, ang_buf[:nn2].reshape((n, n)), s)
        if n_tau > 0:
            cluster(n, True, nn0, nnd0, jp, jrap, jphi, jkt2, par1, par2,
                    b_rap, b_phi, b_w, b_idx, b_nn, b_nnd, dij, tmp, todo)
            nsub_taus(n, jrap, jphi, pt, par1, par2, n_tau, tau_beta, tau_r0, normalized,
                      taus[i], axes)
        if want_sd:
            cluster(n, False, nn0, nnd0, jp, jrap, jphi, jkt2, par1, par2,
                    b_rap, b_phi, b_w, b_idx, b_nn, b_nnd, dij, tmp, todo)
            msds[i] = softdrop_value(n, jp, jrap, jphi, jkt2, par1, par2, sd_beta, sd_zcut, sd_r0)
