"""Jet observables computed from the constituents, vectorised over jets (pure NumPy).

Every function takes a :class:`jetfm.Jets` with ``px, py, pz, E`` columns (GeV) and returns arrays
over jets. Other constituent columns (track d0/dz, which may be NaN) are never read.

Conventions follow FastJet 3 and its contrib packages exactly, so that our numbers equal FastJet's
to floating-point precision (tests/physics/test_observables.py checks 1e-4 relative on real jets):

- Angles are FastJet's ``squared_distance``: rapidity ``y`` (not pseudorapidity) and azimuth,
  ``dR^2 = dy^2 + dphi^2``, with FastJet's rapidity of slightly off-shell inputs (``m^2 < 0`` is
  treated as 0).
- Clustering: pairwise recombination in the E scheme (four-vectors add), radius so large
  (FastJet's ``max_allowable_R`` = 1000) that nothing ever merges with the beam. kT uses
  ``d_ij = min(kt_i^2, kt_j^2) dR_ij^2``; Cambridge/Aachen uses ``dR_ij^2``.
- N-subjettiness (contrib Nsubjettiness, ``KT_Axes`` + ``NormalizedMeasure(beta, R0)``):
  axes are the exclusive-kT subjets, ``tau_N = sum_k pT_k min_a dR_ka^beta / (sum_k pT_k R0^beta)``.
  This normalised measure is what CMS stores (NanoAOD ``FatJet_tau*``, the AOJ ``jet_tagging``
  columns, via ``NjettinessAdder`` with ``measureDefinition = 0``) and what JetClass stores in
  ``jet_tau*``; both use ``OnePass_KT_Axes`` (kT axes refined by one minimisation pass), CMS on
  PUPPI-weighted candidates, so stored values agree only approximately with these.
  ``normalized=False`` gives contrib's ``UnnormalizedMeasure(beta)`` (the numerator alone, GeV).
  The ``fastjet`` Python package exposes both via ``ClusterSequence.njettiness``.
- D2 (contrib EnergyCorrelator, ``EnergyCorrelatorD2(beta)``, default measure ``pt_R``):
  energies are pT, angles ``dR`` as above; ``ECF(1) = sum pT``,
  ``ECF(2) = sum_{i<j} pT_i pT_j dR_ij^beta``,
  ``ECF(3) = sum_{i<j<k} pT_i pT_j pT_k (dR_ij dR_ik dR_jk)^beta``,
  ``D2 = e3 / e2^3 = ECF(3) ECF(1)^3 / ECF(2)^3``.
- Soft drop (contrib SoftDrop with FastJet's default Cambridge/Aachen reclustering, ``scalar_z``
  symmetry, larger-pT recursion): decluster from the top; keep the first branching with
  ``min(pT1, pT2) / (pT1 + pT2) > z_cut (dR12 / R0)^beta``; the groomed mass is the mass of that
  node (or of the single constituent left when no branching passes). Masses are 0 where
  m^2 < 0 (float32 rounding of a massless constituent), where FastJet's ``m()`` would return
  ``-sqrt(-m^2)``.

Speed: jets are sorted by multiplicity and processed in chunks of similar size; clustering loops
over merge steps (never over jets) with FastJet's nearest-neighbour bookkeeping, refreshed lazily
(a neighbour distance that went stale stays a lower bound and is recomputed only when it would be
chosen), so one step costs O(N P) instead of O(N P^2); kT and C/A run in the same loop, and empty
slots are dropped as clustering proceeds. Azimuths are held relative to the jet axis, which saves
the 2 pi folding of every distance. benchmarks/observables.py measures it against FastJet.
"""
from __future__ import annotations

import os

import numpy as np

from jetfm.jets import Jets
from jetfm.physics.features import SPECIES, pt_eta_phi, species_counts

TWO_PI = 2.0 * np.pi
#: FastJet's rapidity of a massless momentum along the beam
MAX_RAP = 1e5
#: rapidity put on empty slots: far from every real one, but finite (no NaN from inf - inf)
_FAR = 1e30
#: keys of :func:`compute_observables`, in order (other code depends on them)
OBSERVABLE_NAMES = ("pt", "eta", "phi", "mass", "n_constituents", "tau1", "tau2", "tau3", "tau4",
                    "tau21", "tau32", "d2", "msoftdrop") + tuple(f"n_{s}" for s in SPECIES)


# ------------------------------------------------------------------------ kinematics
def jet_four_momentum(jets: Jets) -> np.ndarray:
    """(N, 4) float64 sum of the constituents' (px, py, pz, E) in GeV."""
    m = jets.mask
    return np.stack([np.where(m, jets.c(k), 0.0).astype(np.float64).sum(1)
                     for k in ("px", "py", "pz", "E")], axis=1)


def jet_kinematics(jets: Jets) -> dict[str, np.ndarray]:
    """pt (GeV), eta, phi (radians), mass (GeV) and number of constituents of the constituent
    sum, each ``(N,)`` float64."""
    p = jet_four_momentum(jets)
    pt, eta, phi = pt_eta_phi(p[:, 0], p[:, 1], p[:, 2])
    m2 = p[:, 3] ** 2 - (p[:, :3] ** 2).sum(1)
    return {"pt": pt, "eta": eta, "phi": phi, "mass": np.sqrt(np.clip(m2, 0, None)),
            "n_constituents": jets.n_constituents.astype(np.float64)}


def rap_phi(px, py, pz, e, kt2=None):
    """FastJet's rapidity and azimuth in [0, 2 pi) of four-vectors (any shape, float64).

    Rapidity ``0.5 ln((E + |pz|)^2 / (kt^2 + max(m^2, 0)))`` with the sign of pz, as
    ``PseudoJet::_set_rap_phi`` computes it. ``kt2 = px^2 + py^2`` may be passed when known;
    padding (all zero) gives NaN rapidity, which callers overwrite.
    """
    if kt2 is None:
        kt2 = px * px + py * py
    m2 = (e + pz) * (e - pz) - kt2
    np.maximum(m2, 0.0, out=m2)
    m2 += kt2
    epz = e + np.abs(pz)
    epz *= epz
    with np.errstate(divide="ignore", invalid="ignore"):
        m2 /= epz
        rap = np.log(m2, out=m2)
    rap *= 0.5
    np.negative(rap, out=rap, where=pz > 0)
    np.clip(rap, -MAX_RAP, MAX_RAP, out=rap)  # FastJet's cap for a momentum along the beam
    phi = np.arctan2(py, px)
    phi[phi < 0] += TWO_PI
    return rap, phi


def _dr2(rap1, phi1, rap2, phi2):
    """FastJet ``squared_distance``: dy^2 + dphi^2 with dphi folded into [0, pi]."""
    dphi = phi1 - phi2
    np.abs(dphi, out=dphi)
    np.subtract(TWO_PI, dphi, out=dphi, where=dphi > np.pi)
    drap = rap1 - rap2
    drap *= drap
    dphi *= dphi
    dphi += drap
    return dphi


def _dr2_flat(rap1, phi1, rap2, phi2):
    """dy^2 + dphi^2 for azimuths already measured from a common reference, all within pi/2
    of it (so no difference exceeds pi and no folding is needed)."""
    dphi = phi1 - phi2
    drap = rap1 - rap2
    drap *= drap
    dphi *= dphi
    dphi += drap
    return dphi


def _phi_from(phi: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Azimuth ``phi`` measured from ``ref``, wrapped to (-pi, pi]."""
    d = phi - ref
    d[d > np.pi] -= TWO_PI
    d[d <= -np.pi] += TWO_PI
    return d


def _mass(p: np.ndarray) -> np.ndarray:
    """Mass of (..., 4) four-vectors, 0 where m^2 < 0 (rounding of massless sums)."""
    m2 = p[..., 3] ** 2 - p[..., 0] ** 2 - p[..., 1] ** 2 - p[..., 2] ** 2
    return np.sqrt(np.maximum(m2, 0.0))


# --------------------------------------------------------------------------- chunks
class _Chunk:
    """Jets of similar multiplicity as dense float64 arrays, constituents first, P = max n.

    Azimuths are stored relative to each jet's axis (``ref``, the azimuth of the constituent
    sum), so distances need no 2 pi folding when every constituent lies within pi/2 of it
    (``flat``, true for any jet of radius < 1.5); otherwise the folded distance is used.
    """

    def __init__(self, p4: np.ndarray, n: np.ndarray):
        self.p4 = p4                      # (L, P, 4) px, py, pz, E; zero on padding
        self.n = n                        # (L,) int64, non-increasing
        self.mask = np.arange(p4.shape[1])[None, :] < n[:, None]
        self.pt = np.hypot(p4[..., 0], p4[..., 1])
        rap, phi = rap_phi(p4[..., 0], p4[..., 1], p4[..., 2], p4[..., 3])
        self.rap = np.where(self.mask, rap, _FAR)
        self.ref = np.arctan2(p4[..., 1].sum(1), p4[..., 0].sum(1))[:, None]
        self.phi = np.where(self.mask, _phi_from(phi, self.ref), 0.0)
        self.flat = bool((np.abs(self.phi) <= 0.5 * np.pi).all())
        self.dr2 = _dr2_flat if self.flat else _dr2


#: constituent slots per chunk: big enough to amortise NumPy's per-call cost, small enough that
#: a chunk holds jets of similar multiplicity (little padding) and stays in cache
CHUNK_SLOTS = 10_000
#: entries of an (L, P, P) pairwise array built at once
MATRIX_BUDGET = 2_000_000
#: compact the slots once the objects left fill at most this fraction of them
COMPACT = 0.6


def _chunks(jets: Jets, max_elements: int | None = None):
    """Yield (indices into jets, _Chunk): jets sorted by constituent count, most first, in
    chunks of at most ``max_elements`` (default :data:`CHUNK_SLOTS`) constituent slots."""
    max_elements = max_elements or CHUNK_SLOTS
    n = jets.n_constituents
    order = np.argsort(-n, kind="stable")
    cols = [jets.constituent_names.index(k) for k in ("px", "py", "pz", "E")]
    start = 0
    while start < len(order):
        p = max(int(n[order[start]]), 1)
        stop = min(len(order), start + max(1, max_elements // p))
        idx = order[start:stop]
        # real constituents come first in a Jets, so slicing to P keeps them all
        sub = jets.constituents[idx, :p][..., cols].astype(np.float64)
        sub *= jets.mask[idx, :p, None]
        yield idx, _Chunk(sub, n[idx].astype(np.int64))
        start = stop


def _blocks(n: np.ndarray, budget: int = MATRIX_BUDGET):
    """Split rows of non-increasing counts ``n`` into (start, stop, P) blocks whose (rows, P, P)
    pairwise arrays hold at most ``budget`` entries, P being the block's largest count."""
    a = 0
    while a < len(n):
        p = max(int(n[a]), 1)
        b = min(len(n), a + max(1, budget // (p * p)))
        yield a, b, p
        a = b


# ----------------------------------------------------------------------- clustering
class _History:
    """Clustering trees of R rows: merge step s of row r joined ``mom_a[r, s]`` (made at step
    ``child_a[r, s]``, -1 for a constituent) with ``mom_b[r, s]`` (``child_b``). A row of n
    constituents has merges 0..n-2; its last merge is the root."""

    def __init__(self, child_a, child_b, mom_a, mom_b):
        self.child_a, self.child_b, self.mom_a, self.mom_b = child_a, child_b, mom_a, mom_b


def _cluster(ch: _Chunk, algorithms: tuple[str, ...]) -> _History:
    """Pairwise E-scheme clustering of every jet down to one object, once per algorithm
    ("kt" or "ca"); rows are jet-major: row ``len(algorithms) * l + a`` is jet l, algorithm a.

    All algorithms run in one loop over merge steps, vectorised over rows. FastJet's N2Plain
    bookkeeping: each object keeps its geometric nearest neighbour (NN), and
    min_i w_i dR^2(i, NN_i), w = kt^2 (kT) or 1 (C/A), is the smallest pairwise distance.
    """
    k = len(algorithms)
    n = np.repeat(ch.n, k)
    p4 = np.repeat(ch.p4, k, axis=0)
    rap, phi = np.repeat(ch.rap, k, axis=0), np.repeat(ch.phi, k, axis=0)
    ref = np.repeat(ch.ref[:, 0], k)
    dist = ch.dr2
    active = np.repeat(ch.mask, k, axis=0)
    is_kt = np.tile(np.array([a == "kt" for a in algorithms]), len(ch.n))
    R, P = active.shape
    w = np.where(is_kt[:, None], p4[..., 0] ** 2 + p4[..., 1] ** 2, 1.0)
    w[~active] = np.inf
    nn = np.zeros((R, P), np.int64)
    nn_d = np.full((R, P), np.inf)
    for a, b, q in _blocks(n):
        d = dist(rap[a:b, :q, None], phi[a:b, :q, None], rap[a:b, None, :q], phi[a:b, None, :q])
        d[:, np.arange(q), np.arange(q)] = np.inf
        nn[a:b, :q] = d.argmin(axis=2)
        nn_d[a:b, :q] = np.take_along_axis(d, nn[a:b, :q, None], axis=2)[..., 0]
    nn_d[~active] = np.inf
    node = np.full((R, P), -1, np.int32)  # merge step that made the object in each slot
    n_steps = max(int(n[0]) - 1, 0) if R else 0
    S = max(n_steps, 1)
    hist = _History(np.full((R, S), -1, np.int32), np.full((R, S), -1, np.int32),
                    np.zeros((R, S, 4)), np.zeros((R, S, 4)))
    # n is non-increasing, so the rows still merging at step s (n - s >= 2) are a prefix
    n_live = np.searchsorted(-n, -(np.arange(n_steps) + 2), side="right")
    # rows are C-contiguous, so slot (r, i) of the live prefix is flat index r * P + i
    base = np.arange(R) * P
    p4f, rapf, phif, wf = p4.reshape(-1, 4), rap.reshape(-1), phi.reshape(-1), w.reshape(-1)
    nnf, nndf, nodef, actf = nn.reshape(-1), nn_d.reshape(-1), node.reshape(-1), active.reshape(-1)
    stale = np.zeros((R, P), bool)
    stf = stale.reshape(-1)

    def refresh(fs: np.ndarray) -> None:
        """Exact nearest neighbours of the objects at flat slots ``fs``."""
        rl = fs // P
        rr = dist(rapf[fs][:, None], phif[fs][:, None], rap[rl], phi[rl])
        rrf = rr.reshape(-1)
        m = np.arange(len(fs)) * P
        rrf[m + (fs - rl * P)] = np.inf
        bb = rr.argmin(axis=1)
        nnf[fs] = bb
        nndf[fs] = rrf[m + bb]
        stf[fs] = False

    for s in range(n_steps):
        lv = int(n_live[s])
        bl = base[:lv]
        # nn_d of a stale object is a lower bound of its true NN distance: the minimum is
        # exact once the object holding it is fresh
        i = (w[:lv] * nn_d[:lv]).argmin(axis=1)
        fi = bl + i
        sub = np.flatnonzero(stf[fi])
        while len(sub):
            refresh(fi[sub])
            ii = (w[sub] * nn_d[sub]).argmin(axis=1)
            i[sub] = ii
            fi[sub] = base[sub] + ii
            sub = sub[stf[fi[sub]]]
        j = nnf[fi]
        fj = bl + j
        pi, pj = p4f[fi], p4f[fj]
        hist.child_a[:lv, s], hist.child_b[:lv, s] = nodef[fi], nodef[fj]
        hist.mom_a[:lv, s], hist.mom_b[:lv, s] = pi, pj
        new = pi + pj
        p4f[fi] = new
        nodef[fi] = s
        actf[fj] = False
        px, py = new[:, 0], new[:, 1]
        kt2 = px * px + py * py
        r_new, f_new = rap_phi(px, py, new[:, 2], new[:, 3], kt2)
        f_new = _phi_from(f_new, ref[:lv])
        rapf[fi], phif[fi] = r_new, f_new
        rapf[fj] = _FAR  # far from everything: never a neighbour again
        wf[fi] = np.where(is_kt[:lv], kt2, 1.0)
        wf[fj] = np.inf
        nndf[fj] = np.inf
        # distances of every slot to the merged object
        row = dist(r_new[:, None], f_new[:, None], rap[:lv], phi[:lv])
        rowf = row.reshape(-1)
        rowf[fi] = np.inf
        best = row.argmin(axis=1)
        # objects whose neighbour was i or j become stale (their old distance stays a lower
        # bound); any object now closer to i than its bound has i as exact neighbour
        nn_l, nnd_l, st_l = nn[:lv], nn_d[:lv], stale[:lv]
        st_l |= nn_l == i[:, None]
        st_l |= nn_l == j[:, None]
        closer = row < nnd_l
        np.copyto(nnd_l, row, where=closer)
        np.copyto(nn_l, i[:, None], where=closer)
        st_l &= ~closer
        nnf[fi] = best
        nndf[fi] = rowf[bl + best]
        stf[fi] = False
        # fewer objects left than slots: move them to the front and drop the empty slots
        left = int(n[0]) - s - 1
        if 2 <= left <= COMPACT * P and P > 8:
            order = np.argsort(~active, axis=1, kind="stable")[:, :left]
            newpos = np.cumsum(active, axis=1) - 1
            take = lambda x: np.take_along_axis(x, order, axis=1)  # noqa: E731
            p4 = np.take_along_axis(p4, order[..., None], axis=1)
            rap, phi, w, nn_d, node, active, stale = map(
                take, (rap, phi, w, nn_d, node, active, stale))
            nn = np.clip(np.take_along_axis(newpos, take(nn), axis=1), 0, left - 1)
            P = left
            base = np.arange(R) * P
            p4f, rapf, phif, wf = p4.reshape(-1, 4), rap.reshape(-1), phi.reshape(-1), w.reshape(-1)
            nnf, nndf = nn.reshape(-1), nn_d.reshape(-1)
            nodef, actf, stf = node.reshape(-1), active.reshape(-1), stale.reshape(-1)
    return hist


def _rows(hist: _History, k: int, a: int) -> _History:
    """The rows of algorithm ``a`` of ``k`` from a jet-major history."""
    return _History(hist.child_a[a::k], hist.child_b[a::k], hist.mom_a[a::k], hist.mom_b[a::k])


# ------------------------------------------------------------------ N-subjettiness
def _nsub_from_history(ch: _Chunk, hist: _History, n_max: int, beta: float, R: float,
                       normalized: bool) -> np.ndarray:
    """(L, n_max) tau_1..tau_n_max with exclusive-kT axes read off a kT clustering tree: the
    k exclusive jets are what is left before the last k - 1 merges."""
    L = len(ch.n)
    n = ch.n
    ar = np.arange(L)
    axes = np.zeros((L, n_max, 4))
    ids = np.full((L, n_max), -2, np.int64)  # -2: no axis; -1: a constituent; s: merge step
    root = np.maximum(n - 2, 0)
    many = n >= 2
    axes[many, 0] = hist.mom_a[ar, root][many] + hist.mom_b[ar, root][many]
    ids[many, 0] = root[many]
    one = n == 1
    axes[one, 0] = ch.p4[one, 0]
    ids[one, 0] = -1
    taus = np.zeros((L, n_max))
    norm = ch.pt.sum(1) * R ** beta if normalized else np.ones(L)
    for k in range(1, n_max + 1):
        valid = ids > -2
        ra, fa = rap_phi(axes[..., 0], axes[..., 1], axes[..., 2], axes[..., 3])
        ra = np.where(valid, ra, _FAR)
        fa = _phi_from(fa, ch.ref)
        dmin = ch.dr2(ch.rap[:, :, None], ch.phi[:, :, None], ra[:, None, :], fa[:, None, :]).min(2)
        dist = np.sqrt(dmin) if beta == 1.0 else dmin ** (0.5 * beta)
        num = np.where(ch.mask, ch.pt * dist, 0.0).sum(1)
        t = np.divide(num, norm, out=np.zeros(L), where=norm > 0)
        # with n <= k constituents every one is its own axis: tau_k = 0
        taus[:, k - 1] = np.where(n > k, t, 0.0)
        if k == n_max:
            break
        # undo merge n - 1 - k: it splits one axis into its two children
        t_step = n - 1 - k
        go = np.flatnonzero(t_step >= 0)
        if not len(go):
            continue
        ts = t_step[go]
        pos = np.argmax(ids[go] == ts[:, None], axis=1)
        axes[go, pos], ids[go, pos] = hist.mom_a[go, ts], hist.child_a[go, ts]
        axes[go, k], ids[go, k] = hist.mom_b[go, ts], hist.child_b[go, ts]
    return taus


def nsubjettiness(jets: Jets, n_max: int = 4, beta: float = 1.0, R: float = 0.8,
                  normalized: bool = True) -> np.ndarray:
    """(N, n_max) float64 N-subjettiness tau_1..tau_n_max with exclusive-kT axes.

    ``normalized=True``: contrib ``NormalizedMeasure(beta, R0=R)`` (dimensionless, what CMS and
    JetClass store); ``False``: ``UnnormalizedMeasure(beta)`` (GeV). Jets with at most N
    constituents have tau_N = 0.
    """
    out = np.zeros((len(jets), n_max))
    for idx, ch in _chunks(jets):
        out[idx] = _nsub_from_history(ch, _cluster(ch, ("kt",)), n_max, beta, R, normalized)
    return out


def tau_ratios(taus: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(tau21, tau32) from (N, >=3) taus; 0 where the denominator is 0."""
    t21 = np.divide(taus[:, 1], taus[:, 0], out=np.zeros(len(taus)), where=taus[:, 0] > 0)
    t32 = np.divide(taus[:, 2], taus[:, 1], out=np.zeros(len(taus)), where=taus[:, 1] > 0)
    return t21, t32


# -------------------------------------------------------------------------------- D2
def _d2_chunk(ch: _Chunk, beta: float) -> np.ndarray:
    """(L,) D2 of one chunk. ECF(3) = tr(S^3) / 6 with S_ij = sqrt(pT_i pT_j) dR_ij^beta
    (S_ii = 0, so the trace holds only terms of three distinct constituents)."""
    out = np.zeros(len(ch.n))
    for a, b, q in _blocks(ch.n):
        rap, phi, pt = ch.rap[a:b, :q], ch.phi[a:b, :q], ch.pt[a:b, :q]
        d2 = ch.dr2(rap[:, :, None], phi[:, :, None], rap[:, None, :], phi[:, None, :])
        ang = np.sqrt(d2, out=d2) if beta == 1.0 else d2 ** (0.5 * beta)
        ang[:, np.arange(q), np.arange(q)] = 0.0
        sq = np.sqrt(pt)  # zero on padding, which removes padding from every sum
        s = ang * sq[:, :, None]
        s *= sq[:, None, :]
        e1 = pt.sum(1)
        e2 = 0.5 * (np.matmul(s, sq[:, :, None])[..., 0] * sq).sum(axis=1)
        s2 = np.matmul(s, s)
        s2 *= s  # S symmetric: tr(S^3) = sum_ij (S^2)_ij S_ij
        e3 = s2.sum(axis=(1, 2)) / 6.0
        with np.errstate(divide="ignore", invalid="ignore"):
            v = e3 * e1 ** 3 / e2 ** 3
        out[a:b] = np.where(e2 > 0, v, 0.0)
    return out


def d2(jets: Jets, beta: float = 1.0) -> np.ndarray:
    """(N,) float64 energy-correlation ratio D2 = e3 / e2^3 (contrib ``EnergyCorrelatorD2(beta)``,
    pT and rapidity-azimuth angles); 0 for jets with fewer than 2 constituents."""
    out = np.zeros(len(jets))
    for idx, ch in _chunks(jets):
        out[idx] = _d2_chunk(ch, beta)
    return out


# -------------------------------------------------------------------------- soft drop
def _softdrop_from_history(ch: _Chunk, hist: _History, beta: float, zcut: float,
                           R: float) -> np.ndarray:
    """(L,) groomed mass (GeV) from C/A clustering trees, declustered from the root."""
    out = np.zeros(len(ch.n))
    single = ch.n == 1  # a jet of one constituent is its own groomed jet
    out[single] = _mass(ch.p4[single, 0])
    cur = ch.n - 2
    todo = np.flatnonzero(cur >= 0)
    cur = cur[todo]
    while len(todo):
        pa, pb = hist.mom_a[todo, cur], hist.mom_b[todo, cur]
        pta, ptb = np.hypot(pa[:, 0], pa[:, 1]), np.hypot(pb[:, 0], pb[:, 1])
        z = np.minimum(pta, ptb) / (pta + ptb)
        if beta == 0.0:
            cut = zcut
        else:
            ra, fa = rap_phi(pa[:, 0], pa[:, 1], pa[:, 2], pa[:, 3])
            rb, fb = rap_phi(pb[:, 0], pb[:, 1], pb[:, 2], pb[:, 3])
            cut = zcut * (_dr2(ra, fa, rb, fb) / (R * R)) ** (0.5 * beta)
        keep = z > cut
        out[todo[keep]] = _mass(pa[keep] + pb[keep])
        # follow the harder branch; a constituent there ends the grooming
        a_harder = pta >= ptb
        nxt = np.where(a_harder, hist.child_a[todo, cur], hist.child_b[todo, cur])
        leaf = ~keep & (nxt < 0)
        out[todo[leaf]] = _mass(np.where(a_harder[leaf, None], pa[leaf], pb[leaf]))
        go = ~keep & ~leaf
        todo, cur = todo[go], nxt[go]
    return out


def softdrop_mass(jets: Jets, beta: float = 0.0, zcut: float = 0.1, R: float = 0.8) -> np.ndarray:
    """(N,) float64 soft-drop groomed mass in GeV (Cambridge/Aachen reclustering, contrib
    ``SoftDrop(beta, zcut, R0=R)``); 0 for jets without constituents."""
    out = np.zeros(len(jets))
    for idx, ch in _chunks(jets):
        out[idx] = _softdrop_from_history(ch, _cluster(ch, ("ca",)), beta, zcut, R)
    return out


# ------------------------------------------------------------------------ everything
def _substructure(jets: Jets) -> dict[str, np.ndarray]:
    """tau1..tau4, d2, msoftdrop of all jets, one pass over the chunks."""
    n = len(jets)
    taus, dd, msd = np.zeros((n, 4)), np.zeros(n), np.zeros(n)
    for idx, ch in _chunks(jets):
        hist = _cluster(ch, ("kt", "ca"))
        taus[idx] = _nsub_from_history(ch, _rows(hist, 2, 0), 4, 1.0, 0.8, True)
        msd[idx] = _softdrop_from_history(ch, _rows(hist, 2, 1), 0.0, 0.1, 0.8)
        dd[idx] = _d2_chunk(ch, 1.0)
    out = {f"tau{k + 1}": taus[:, k] for k in range(4)}
    out["tau21"], out["tau32"] = tau_ratios(taus)
    out["d2"], out["msoftdrop"] = dd, msd
    return out


def compute_observables(jets: Jets, processes: int = 1) -> dict[str, np.ndarray]:
    """All jet observables of jetfm: ``{name: (N,) float64}`` with the keys of
    :data:`OBSERVABLE_NAMES`.

    pt, eta, phi, mass of the constituent sum (GeV, radians); n_constituents; tau1..tau4, tau21,
    tau32 (beta = 1, R0 = 0.8, exclusive-kT axes, normalised); d2 (beta = 1); msoftdrop (GeV,
    beta = 0, z_cut = 0.1); constituent counts per species (``n_charged_hadron`` ...; NaN when
    the jets carry neither pdgId nor JetClass species flags, as generated jets do).
    ``processes > 1`` splits the jets over a pool of worker processes.
    """
    out = jet_kinematics(jets)
    if processes > 1 and len(jets) >= 2 * processes:
        import multiprocessing as mp

        light = jets.select_columns(("px", "py", "pz", "E"), ())
        bounds = np.linspace(0, len(jets), processes + 1).astype(int)
        parts = [light[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
        ctx = mp.get_context("fork" if os.name == "posix" else "spawn")
        with ctx.Pool(processes) as pool:
            res = pool.map(_substructure, parts)
        sub = {k: np.concatenate([r[k] for r in res]) for k in res[0]}
    else:
        sub = _substructure(jets)
    out.update(sub)
    if jets.has("pdgId") or jets.has("isChargedHadron"):
        for name, cnt in species_counts(jets).items():
            out[f"n_{name}"] = cnt.astype(np.float64)
    else:  # generated jets carry no particle identity: unknown, not zero
        for name in SPECIES:
            out[f"n_{name}"] = np.full(len(jets), np.nan)
    return {k: out[k] for k in OBSERVABLE_NAMES}
