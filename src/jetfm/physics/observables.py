"""Jet observables computed from the constituents: compiled kernels, one jet at a time, jets
split over threads.

Every function takes a :class:`jetfm.Jets` with ``px, py, pz, E`` columns (GeV) and returns arrays
over jets. Other constituent columns (track d0/dz, which may be NaN) are never read.

Conventions follow FastJet 3 and its contrib packages operation by operation, so that our numbers
equal FastJet's to rounding (tests/physics/test_observables.py checks 1e-10 relative on real jets;
the soft-drop masses come out bit for bit):

- Angles are FastJet's ``squared_distance``: rapidity ``y`` (not pseudorapidity) and azimuth,
  ``dR^2 = dy^2 + dphi^2``, with FastJet's rapidity of slightly off-shell inputs (``m^2 < 0`` is
  treated as 0).
- Clustering: pairwise recombination in the E scheme (four-vectors add), radius so large
  (FastJet's ``max_allowable_R`` = 1000) that nothing ever merges with the beam. kT uses
  ``d_ij = min(kt_i^2, kt_j^2) dR_ij^2``; Cambridge/Aachen uses ``dR_ij^2``. The merge loop is
  FastJet's N2Plain one with its nearest-neighbour bookkeeping and tie-breaking, on the
  constituents in stored order (see :mod:`jetfm.physics._kernels`).
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

Speed: the kernels are compiled by numba on first use and cached on disk beside this module
(about 15-30 s once per machine, a fraction of a second to load afterwards); they release the
GIL, so ``threads > 1`` runs blocks of jets in parallel threads with identical results.
benchmarks/observables.py measures them against FastJet.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from jetfm.errors import InputError
from jetfm.jets import Jets
from jetfm.physics.features import SPECIES, SPECIES_OF_ID, pt_eta_phi, species_counts

#: keys of :func:`compute_observables`, in order (other code depends on them)
OBSERVABLE_NAMES = ("pt", "eta", "phi", "mass", "n_constituents", "tau1", "tau2", "tau3", "tau4",
                    "tau21", "tau32", "d2", "msoftdrop") + tuple(f"n_{s}" for s in SPECIES)
#: jets per task handed to a thread: long enough to amortise the call, short enough to balance
BLOCK_JETS = 256
_P4 = ("px", "py", "pz", "E")


# ------------------------------------------------------------------------ kinematics
def jet_four_momentum(jets: Jets) -> np.ndarray:
    """(N, 4) float64 sum of the constituents' (px, py, pz, E) in GeV."""
    m = jets.mask
    return np.stack([np.where(m, jets.c(k), 0.0).astype(np.float64).sum(1)
                     for k in ("px", "py", "pz", "E")], axis=1)


def jet_kinematics(jets: Jets) -> dict[str, np.ndarray]:
    """pt (GeV), eta, phi (radians), mass (GeV) and number of constituents of the constituent
    sum, each ``(N,)`` float64."""
    return _kinematics(jet_four_momentum(jets), jets.n_constituents)


def _kinematics(p: np.ndarray, n_constituents: np.ndarray) -> dict[str, np.ndarray]:
    """:func:`jet_kinematics` from the (N, 4) four-momentum sums."""
    pt, eta, phi = pt_eta_phi(p[:, 0], p[:, 1], p[:, 2])
    m2 = p[:, 3] ** 2 - (p[:, :3] ** 2).sum(1)
    return {"pt": pt, "eta": eta, "phi": phi, "mass": np.sqrt(np.clip(m2, 0, None)),
            "n_constituents": n_constituents.astype(np.float64)}


# ------------------------------------------------------------------------ kernels
def _substructure_arrays(jets: Jets, threads: int = 1, n_tau: int = 0, tau_beta: float = 1.0,
                         tau_r0: float = 0.8, normalized: bool = True, want_d2: bool = False,
                         d2_beta: float = 1.0, want_sd: bool = False, sd_beta: float = 0.0,
                         sd_zcut: float = 0.1, sd_r0: float = 0.8, want_species: bool = False):
    """(taus (N, max(n_tau, 1)), d2 (N,), msoftdrop (N,), four-momentum sums (N, 4)) float64
    and, with ``want_species`` and a pdgId column, the species counts (N, len(SPECIES)) int64
    (else None) from the compiled kernels; what is not asked for stays 0. Blocks of
    :data:`BLOCK_JETS` jets run on ``threads`` threads; every jet is computed alone, so the
    numbers do not depend on the split."""
    from jetfm.physics import _kernels

    threads = int(threads)
    if threads < 1:
        raise InputError(f"threads must be at least 1, got {threads}")
    missing = [k for k in _P4 if not jets.has(k)]
    if missing:
        raise InputError(f"jets lack the constituent columns {missing} that observables need")
    cols = np.array([jets.constituent_names.index(k) for k in _P4], np.int64)
    cons = np.ascontiguousarray(jets.constituents)
    mask = np.ascontiguousarray(jets.mask)
    n = len(jets)
    taus, d2s, msds = np.zeros((n, max(n_tau, 1))), np.zeros(n), np.zeros(n)
    p4s, bad = np.zeros((n, 4)), np.zeros(n, bool)
    species_col = jets.constituent_names.index("pdgId") if want_species and jets.has("pdgId") \
        else -1
    counts = np.zeros((n, len(SPECIES)), np.int64)

    def run(a: int, b: int) -> None:
        _kernels.substructure(cons[a:b], mask[a:b], cols, n_tau, float(tau_beta), float(tau_r0),
                              bool(normalized), bool(want_d2), float(d2_beta), bool(want_sd),
                              float(sd_beta), float(sd_zcut), float(sd_r0), species_col,
                              SPECIES_OF_ID, taus[a:b], d2s[a:b], msds[a:b], p4s[a:b],
                              counts[a:b], bad[a:b])

    starts = range(0, n, BLOCK_JETS)
    if threads == 1 or len(starts) < 2:
        run(0, n)
    else:
        with ThreadPoolExecutor(min(threads, len(starts))) as pool:
            for f in [pool.submit(run, a, min(a + BLOCK_JETS, n)) for a in starts]:
                f.result()
    if bad.any():
        raise InputError(f"{int(bad.sum())} of {n} jets have a non-finite px, py, pz or E "
                         f"(first: jet {int(np.flatnonzero(bad)[0])}); observables need finite "
                         "four-momenta")
    return taus, d2s, msds, p4s, counts if species_col >= 0 else None


# ------------------------------------------------------------------ N-subjettiness
def nsubjettiness(jets: Jets, n_max: int = 4, beta: float = 1.0, R: float = 0.8,
                  normalized: bool = True, threads: int = 1) -> np.ndarray:
    """(N, n_max) float64 N-subjettiness tau_1..tau_n_max with exclusive-kT axes.

    ``normalized=True``: contrib ``NormalizedMeasure(beta, R0=R)`` (dimensionless, what CMS and
    JetClass store); ``False``: ``UnnormalizedMeasure(beta)`` (GeV). Jets with at most N
    constituents have tau_N = 0.
    """
    if n_max < 1:
        raise InputError(f"n_max must be at least 1, got {n_max}")
    return _substructure_arrays(jets, threads, n_tau=int(n_max), tau_beta=beta, tau_r0=R,
                                normalized=normalized)[0]


def tau_ratios(taus: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(tau21, tau32) from (N, >=3) taus; 0 where the denominator is 0."""
    t21 = np.divide(taus[:, 1], taus[:, 0], out=np.zeros(len(taus)), where=taus[:, 0] > 0)
    t32 = np.divide(taus[:, 2], taus[:, 1], out=np.zeros(len(taus)), where=taus[:, 1] > 0)
    return t21, t32


# -------------------------------------------------------------------------------- D2
def d2(jets: Jets, beta: float = 1.0, threads: int = 1) -> np.ndarray:
    """(N,) float64 energy-correlation ratio D2 = e3 / e2^3 (contrib ``EnergyCorrelatorD2(beta)``,
    pT and rapidity-azimuth angles); 0 for jets with fewer than 2 constituents."""
    return _substructure_arrays(jets, threads, want_d2=True, d2_beta=beta)[1]


# -------------------------------------------------------------------------- soft drop
def softdrop_mass(jets: Jets, beta: float = 0.0, zcut: float = 0.1, R: float = 0.8,
                  threads: int = 1) -> np.ndarray:
    """(N,) float64 soft-drop groomed mass in GeV (Cambridge/Aachen reclustering, contrib
    ``SoftDrop(beta, zcut, R0=R)``); 0 for jets without constituents."""
    return _substructure_arrays(jets, threads, want_sd=True, sd_beta=beta, sd_zcut=zcut,
                                sd_r0=R)[2]


# ------------------------------------------------------------------------ everything
def compute_observables(jets: Jets, threads: int = 1) -> dict[str, np.ndarray]:
    """All jet observables of jetfm: ``{name: (N,) float64}`` with the keys of
    :data:`OBSERVABLE_NAMES`.

    pt, eta, phi, mass of the constituent sum (GeV, radians); n_constituents; tau1..tau4, tau21,
    tau32 (beta = 1, R0 = 0.8, exclusive-kT axes, normalised); d2 (beta = 1); msoftdrop (GeV,
    beta = 0, z_cut = 0.1); constituent counts per species (``n_charged_hadron`` ...; NaN when
    the jets carry neither pdgId nor JetClass species flags, as generated jets do).
    ``threads > 1`` computes blocks of jets in that many threads (the same numbers).
    """
    taus, d2s, msds, p4s, counts = _substructure_arrays(
        jets, threads, n_tau=4, want_d2=True, want_sd=True, want_species=True)
    out = _kinematics(p4s, jets.n_constituents)
    out["d2"], out["msoftdrop"] = d2s, msds
    out.update({f"tau{k + 1}": taus[:, k] for k in range(4)})
    out["tau21"], out["tau32"] = tau_ratios(taus)
    if counts is not None:
        for k, name in enumerate(SPECIES):
            out[f"n_{name}"] = counts[:, k].astype(np.float64)
    elif jets.has("isChargedHadron"):
        for name, cnt in species_counts(jets).items():
            out[f"n_{name}"] = cnt.astype(np.float64)
    else:  # generated jets carry no particle identity: unknown, not zero
        for name in SPECIES:
            out[f"n_{name}"] = np.full(len(jets), np.nan)
    return {k: out[k] for k in OBSERVABLE_NAMES}
