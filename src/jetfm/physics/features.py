"""Constituent features: kinematics, coordinates relative to the jet axis, particle species, and
the OmniJet-alpha preprocessing with its exact inverse. Pure NumPy, vectorised over jets.

Units: GeV for momenta and energies, radians for angles. Arrays are ``(N, P)`` over padded
constituents; values on padding are zero.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from jetfm.jets import Jets


def wrap_phi(phi: np.ndarray) -> np.ndarray:
    """Wrap angles to (-pi, pi]."""
    phi = np.asarray(phi)
    two_pi = phi.dtype.type(2 * np.pi) if phi.dtype.kind == "f" else 2 * np.pi
    if np.all(np.abs(phi) <= 2 * np.pi):  # differences of two angles: one shift suffices
        out = phi - two_pi * (phi > np.pi)
        out += two_pi * (out <= -np.pi)
        return out
    out = np.mod(phi + np.pi, two_pi) - np.pi
    return np.where(out == -np.pi, np.pi, out)


def pt_eta_phi(px: np.ndarray, py: np.ndarray, pz: np.ndarray):
    """(pT, eta, phi) from Cartesian momenta, in the inputs' float precision.

    eta is 0 where pT = 0 (padding).
    """
    px, py, pz = np.asarray(px), np.asarray(py), np.asarray(pz)
    pt = np.hypot(px, py)
    safe = pt > 0
    ratio = np.divide(pz, pt, out=np.zeros_like(pt), where=safe)
    eta = np.arcsinh(ratio)
    phi = np.arctan2(py, px)
    return pt, eta, phi


def constituent_kinematics(jets: Jets):
    """(pT, eta, phi) of every constituent, float32 ``(N, P)``; zero on padding."""
    # padding rows are all zero, so pT = eta = phi = 0 there without masking
    return pt_eta_phi(jets.c("px"), jets.c("py"), jets.c("pz"))


def constituent_axis(jets: Jets, massless: bool = True):
    """(pT, eta, phi) float64 ``(N,)`` of the jet axis: the sum of the constituents' momenta.

    Only the three-momentum enters the axis direction, so treating constituents as massless
    (the OmniJet-alpha convention) or not gives the same axis.
    """
    sums = [jets.c(k).sum(axis=1, dtype=np.float64) for k in ("px", "py", "pz")]
    return pt_eta_phi(*sums)


def relative_to_jet(jets: Jets, eta_axis: np.ndarray | None = None,
                    phi_axis: np.ndarray | None = None, kinematics=None):
    """(eta_rel, phi_rel) float32 ``(N, P)`` of the constituents: eta - eta_axis and wrapped
    phi - phi_axis. The axis defaults to the constituent sum; zero on padding.

    ``kinematics`` may pass a precomputed :func:`constituent_kinematics` result.
    """
    _, eta, phi = kinematics if kinematics is not None else constituent_kinematics(jets)
    if eta_axis is None or phi_axis is None:
        _, ea, pa = constituent_axis(jets)
        eta_axis = ea if eta_axis is None else eta_axis
        phi_axis = pa if phi_axis is None else phi_axis
    m = jets.mask
    ea = np.asarray(eta_axis, np.float32)[:, None]
    pa = np.asarray(phi_axis, np.float32)[:, None]
    deta = np.where(m, eta - ea, np.float32(0))
    dphi = np.where(m, wrap_phi(phi - pa), np.float32(0))
    return deta, dphi


# ----------------------------------------------------------------------------- species
#: species of particle-flow candidates, in a fixed order
SPECIES = ("charged_hadron", "neutral_hadron", "photon", "electron", "muon", "hf")
#: |pdgId| values of each species of :data:`SPECIES`, in order
SPECIES_PDGIDS = ((211,), (130,), (22,), (11,), (13,), (1, 2))
#: species index (into :data:`SPECIES`) of each |pdgId| below its length, -1 for the others
SPECIES_OF_ID = np.full(max(max(ids) for ids in SPECIES_PDGIDS) + 2, -1, np.int8)
for _i, _ids in enumerate(SPECIES_PDGIDS):
    SPECIES_OF_ID[list(_ids)] = _i


def species_from_pdgid(pdgid: np.ndarray) -> np.ndarray:
    """Index into :data:`SPECIES` for each candidate (-1 for unknown ids or padding).

    |pdgId| 211 charged hadron, 130 neutral hadron, 22 photon, 11 electron, 13 muon,
    1 and 2 HF hadronic / electromagnetic candidates.
    """
    # one table look-up per candidate; ids beyond the table (and NaN, whose integer value is
    # undefined) land on its first or last entry, both -1
    a = np.abs(np.asarray(pdgid).astype(np.int32))
    return SPECIES_OF_ID[np.clip(a, 0, len(SPECIES_OF_ID) - 1, out=a)]


def species(jets: Jets) -> np.ndarray:
    """Species index (N, P) of every constituent, -1 on padding."""
    if "pdgId" in jets.constituent_names:
        s = species_from_pdgid(jets.c("pdgId"))
    else:
        flags = {k: jets.c(k) for k in FLAG_COLUMNS}
        s = species_from_pdgid(pdgid_from_flags(flags, jets.c("charge")))
    return np.where(jets.mask, s, -1).astype(np.int8)


def species_counts(jets: Jets) -> dict[str, np.ndarray]:
    """Number of constituents of each species per jet: ``{name: (N,) int64}``."""
    s = species(jets)
    return {name: (s == i).sum(1, dtype=np.int64) for i, name in enumerate(SPECIES)}


#: JetClass-style species flags, in the order of :data:`SPECIES` (HF candidates have none)
FLAG_COLUMNS = ("isChargedHadron", "isNeutralHadron", "isPhoton", "isElectron", "isMuon")


def species_flags(pdgid: np.ndarray) -> dict[str, np.ndarray]:
    """JetClass-style boolean flags (as float32) from pdgId."""
    s = species_from_pdgid(pdgid)
    return {name: (s == i).astype(np.float32) for i, name in enumerate(FLAG_COLUMNS)}


def pdgid_from_flags(flags: dict[str, np.ndarray], charge: np.ndarray) -> np.ndarray:
    """The PDG id that a JetClass species flag stands for (sign from the charge): the inverse
    of :func:`species_flags`."""
    q = np.sign(charge)
    pid = np.zeros(np.shape(charge), np.float32)
    pid = np.where(flags["isChargedHadron"] > 0, 211.0 * q, pid)
    pid = np.where(flags["isNeutralHadron"] > 0, 130.0, pid)
    pid = np.where(flags["isPhoton"] > 0, 22.0, pid)
    pid = np.where(flags["isElectron"] > 0, -11.0 * q, pid)
    pid = np.where(flags["isMuon"] > 0, -13.0 * q, pid)
    return pid.astype(np.float32)


# ------------------------------------------------------------------ OmniJet-alpha inputs
def prong_seed_order(feats: np.ndarray, mask: np.ndarray, seeds: int, eta_scale: float = 3.0,
                     phi_scale: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
    """Move each jet's prong seeds to the front of its pT-ordered constituents.

    ``feats`` (N, P, 3) are :class:`Preprocessing` features (ln pT, scaled eta_rel, phi_rel) in
    decreasing pT, ``mask`` (N, P). The first seed is the leading constituent; each next one is
    the constituent farthest from the seeds before it in the kT measure, pT * min dR^2 (dR to
    the nearest seed): the hardest constituent of a prong the seeds do not yet hold, as the
    exclusive-kT algorithm would find a subjet's core. The ``seeds`` seeds (fewer in a jet with
    fewer constituents) come first in the order they were found, then the other constituents
    in decreasing pT; padding stays last. An autoregressive model reading the jet in this order
    places the prongs first and fills them after, instead of meeting a second prong only when
    its first constituent's turn in pT comes. Returns reordered copies."""
    n, p = mask.shape
    if seeds < 2 or p < 2 or n == 0:
        return feats, mask
    pt = np.where(mask, np.exp(feats[..., 0].astype(np.float64)), 0.0)
    x = feats[..., 1].astype(np.float64) / eta_scale
    y = feats[..., 2].astype(np.float64) / phi_scale
    rows = np.arange(n)
    rank = np.where(mask, seeds + np.arange(p), 2 * p + seeds)  # pT order after the seeds
    rank[:, 0] = np.where(mask[:, 0], 0, rank[:, 0])
    free = mask.copy()
    free[:, 0] = False
    d2 = (x - x[:, :1]) ** 2 + (y - y[:, :1]) ** 2
    for s in range(1, min(seeds, p)):
        score = np.where(free, pt * d2, -1.0)
        j = score.argmax(1)
        ok = score[rows, j] >= 0
        rank[rows[ok], j[ok]] = s
        free[rows[ok], j[ok]] = False
        d2 = np.minimum(d2, (x - x[rows, j][:, None]) ** 2 + (y - y[rows, j][:, None]) ** 2)
    order = np.argsort(rank, axis=1, kind="stable")
    return (np.take_along_axis(feats, order[..., None], axis=1),
            np.take_along_axis(mask, order, axis=1))


#: jets per block of :meth:`Preprocessing.forward` (its temporaries then fit in the CPU cache)
FORWARD_BLOCK_JETS = 1024


@dataclass(frozen=True)
class Preprocessing:
    """The OmniJet-alpha constituent transform (OmniJet-alpha, arXiv:2403.05618).

    features = (ln(pT / GeV) - pt_shift, eta_scale * eta_rel, phi_scale * phi_rel), after dropping
    constituents with |eta_rel| >= max_rel or |phi_rel| >= max_rel, keeping the ``n_max`` of
    highest pT, in decreasing pT; with ``prong_seeds = S >= 2`` the first S are the jet's prong
    seeds (:func:`prong_seed_order`), the rest follow in decreasing pT.
    """
    pt_shift: float = 1.8
    eta_scale: float = 3.0
    phi_scale: float = 3.0
    max_rel: float = 0.8
    n_max: int = 128
    prong_seeds: int = 0

    names = ("log_pt", "eta_rel", "phi_rel")

    def to_dict(self) -> dict:
        return asdict(self)

    def forward(self, jets: Jets) -> tuple[np.ndarray, np.ndarray]:
        """Jets -> (features (N, n_max, 3) float32, mask (N, n_max) bool), pT ordered."""
        if len(jets) <= FORWARD_BLOCK_JETS:
            return self._forward(jets)
        # every step is per jet: blocks of jets keep the temporaries in the CPU cache
        feats = np.empty((len(jets), self.n_max, 3), np.float32)
        mask = np.empty((len(jets), self.n_max), bool)
        for a in range(0, len(jets), FORWARD_BLOCK_JETS):
            b = min(a + FORWARD_BLOCK_JETS, len(jets))
            feats[a:b], mask[a:b] = self._forward(jets[a:b])
        return feats, mask

    def _forward(self, jets: Jets) -> tuple[np.ndarray, np.ndarray]:
        kin = constituent_kinematics(jets)
        pt = kin[0]
        deta, dphi = relative_to_jet(jets, kinematics=kin)
        keep = jets.mask & (np.abs(deta) < self.max_rel) & (np.abs(dphi) < self.max_rel) & (pt > 0)
        key = np.where(keep, pt, np.float32(-1))
        # most inputs are already pT ordered: sort only the jets that are not
        unsorted = (np.diff(key, axis=1) > 0).any(axis=1)
        if unsorted.any():
            rows = np.flatnonzero(unsorted)
            order = np.argsort(-key[rows], axis=1, kind="stable")
            for a in (key, deta, dphi):
                a[rows] = np.take_along_axis(a[rows], order, axis=1)
            keep = key > 0
        p = self.n_max
        mask = keep[:, :p]
        log_pt = np.log(np.where(mask, key[:, :p], np.float32(1))) - np.float32(self.pt_shift)
        feats = np.stack([log_pt, np.float32(self.eta_scale) * deta[:, :p],
                          np.float32(self.phi_scale) * dphi[:, :p]], axis=-1)
        feats *= mask[..., None]
        if self.prong_seeds >= 2:
            feats, mask = prong_seed_order(feats, mask, self.prong_seeds, self.eta_scale,
                                           self.phi_scale)
        n, q = mask.shape
        if q < p:  # pad to a fixed length
            feats = np.concatenate([feats, np.zeros((n, p - q, 3), np.float32)], 1)
            mask = np.concatenate([mask, np.zeros((n, p - q), bool)], 1)
        return feats.astype(np.float32, copy=False), mask

    def inverse(self, feats: np.ndarray, mask: np.ndarray) -> Jets:
        """Features -> Jets with columns pt, eta_rel, phi_rel (and massless px, py, pz, E of a
        jet whose axis is at eta = phi = 0)."""
        feats = np.asarray(feats, np.float64)
        mask = np.asarray(mask, bool)
        pt = np.where(mask, np.exp(feats[..., 0] + self.pt_shift), 0.0)
        eta = np.where(mask, feats[..., 1] / self.eta_scale, 0.0)
        phi = np.where(mask, feats[..., 2] / self.phi_scale, 0.0)
        px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
        e = pt * np.cosh(eta)
        cons = np.stack([pt, eta, phi, px, py, pz, e], axis=-1)
        cons = np.where(mask[..., None], cons, 0.0)
        return Jets(cons, mask, np.zeros((len(mask), 0), np.float32),
                    ("pt", "eta_rel", "phi_rel", "px", "py", "pz", "E"), ())
