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
    out = np.mod(phi + np.pi, 2 * np.pi) - np.pi
    return np.where(out == -np.pi, np.pi, out)


def pt_eta_phi(px: np.ndarray, py: np.ndarray, pz: np.ndarray):
    """(pT, eta, phi) from Cartesian momenta. eta is 0 where pT = 0 (padding)."""
    px, py, pz = (np.asarray(a, np.float64) for a in (px, py, pz))
    pt = np.hypot(px, py)
    safe = pt > 0
    eta = np.where(safe, np.arcsinh(np.divide(pz, pt, out=np.zeros_like(pz), where=safe)), 0.0)
    phi = np.arctan2(py, px)
    return pt, eta, phi


def constituent_kinematics(jets: Jets):
    """(pT, eta, phi) of every constituent, float64 ``(N, P)``; zero on padding."""
    pt, eta, phi = pt_eta_phi(jets.c("px"), jets.c("py"), jets.c("pz"))
    m = jets.mask
    return np.where(m, pt, 0.0), np.where(m, eta, 0.0), np.where(m, phi, 0.0)


def constituent_axis(jets: Jets, massless: bool = True):
    """(pT, eta, phi) of the jet axis: the sum of the constituents' four-momenta.

    With ``massless=True`` (the OmniJet-alpha convention) each constituent's energy is |p|.
    """
    m = jets.mask
    px, py, pz = (np.where(m, jets.c(k), 0.0).astype(np.float64) for k in ("px", "py", "pz"))
    spx, spy, spz = px.sum(1), py.sum(1), pz.sum(1)
    return pt_eta_phi(spx, spy, spz)


def relative_to_jet(jets: Jets, eta_axis: np.ndarray | None = None,
                    phi_axis: np.ndarray | None = None):
    """(eta_rel, phi_rel) of the constituents: eta - eta_axis and wrapped phi - phi_axis.

    The axis defaults to the constituent sum; zero on padding.
    """
    _, eta, phi = constituent_kinematics(jets)
    if eta_axis is None or phi_axis is None:
        _, ea, pa = constituent_axis(jets)
        eta_axis = ea if eta_axis is None else eta_axis
        phi_axis = pa if phi_axis is None else phi_axis
    m = jets.mask
    deta = np.where(m, eta - np.asarray(eta_axis)[:, None], 0.0)
    dphi = np.where(m, wrap_phi(phi - np.asarray(phi_axis)[:, None]), 0.0)
    return deta, dphi


# ----------------------------------------------------------------------------- species
#: species of particle-flow candidates, in a fixed order
SPECIES = ("charged_hadron", "neutral_hadron", "photon", "electron", "muon", "hf")


def species_from_pdgid(pdgid: np.ndarray) -> np.ndarray:
    """Index into :data:`SPECIES` for each candidate (-1 for unknown ids or padding).

    |pdgId| 211 charged hadron, 130 neutral hadron, 22 photon, 11 electron, 13 muon,
    1 and 2 HF hadronic / electromagnetic candidates.
    """
    a = np.abs(np.asarray(pdgid)).astype(np.int64)
    out = np.full(a.shape, -1, np.int8)
    for idx, ids in enumerate(((211,), (130,), (22,), (11,), (13,), (1, 2))):
        out[np.isin(a, ids)] = idx
    return out


def species(jets: Jets) -> np.ndarray:
    """Species index (N, P) of every constituent, -1 on padding."""
    if "pdgId" in jets.constituent_names:
        s = species_from_pdgid(jets.c("pdgId"))
    else:
        from jetfm.io.jetclass import pdgid_from_flags

        s = species_from_pdgid(pdgid_from_flags(
            {k: jets.c(k) for k in ("isChargedHadron", "isNeutralHadron", "isPhoton",
                                    "isElectron", "isMuon")}, jets.c("charge")))
    return np.where(jets.mask, s, -1).astype(np.int8)


def species_counts(jets: Jets) -> dict[str, np.ndarray]:
    """Number of constituents of each species per jet: ``{name: (N,) int64}``."""
    s = species(jets)
    return {name: (s == i).sum(1).astype(np.int64) for i, name in enumerate(SPECIES)}


def species_flags(pdgid: np.ndarray) -> dict[str, np.ndarray]:
    """JetClass-style boolean flags (as float32) from pdgId."""
    s = species_from_pdgid(pdgid)
    return {"isChargedHadron": (s == 0).astype(np.float32),
            "isNeutralHadron": (s == 1).astype(np.float32),
            "isPhoton": (s == 2).astype(np.float32),
            "isElectron": (s == 3).astype(np.float32),
            "isMuon": (s == 4).astype(np.float32)}


# ------------------------------------------------------------------ OmniJet-alpha inputs
@dataclass(frozen=True)
class Preprocessing:
    """The OmniJet-alpha constituent transform (SCIENCE.md section 3).

    features = (ln(pT / GeV) - pt_shift, eta_scale * eta_rel, phi_scale * phi_rel), after dropping
    constituents with |eta_rel| >= max_rel or |phi_rel| >= max_rel, keeping the ``n_max`` of
    highest pT.
    """
    pt_shift: float = 1.8
    eta_scale: float = 3.0
    phi_scale: float = 3.0
    max_rel: float = 0.8
    n_max: int = 128

    names = ("log_pt", "eta_rel", "phi_rel")

    def to_dict(self) -> dict:
        return asdict(self)

    def forward(self, jets: Jets) -> tuple[np.ndarray, np.ndarray]:
        """Jets -> (features (N, n_max, 3) float32, mask (N, n_max) bool), pT ordered."""
        pt, _, _ = constituent_kinematics(jets)
        deta, dphi = relative_to_jet(jets)
        keep = jets.mask & (np.abs(deta) < self.max_rel) & (np.abs(dphi) < self.max_rel) & (pt > 0)
        key = np.where(keep, pt, -1.0)
        order = np.argsort(-key, axis=1, kind="stable")[:, : self.n_max]
        take = lambda a: np.take_along_axis(a, order, axis=1)  # noqa: E731
        mask = take(keep)
        pt_s = take(pt)
        feats = np.stack([np.log(np.where(mask, pt_s, 1.0)) - self.pt_shift,
                          self.eta_scale * take(deta), self.phi_scale * take(dphi)], axis=-1)
        feats = np.where(mask[..., None], feats, 0.0).astype(np.float32)
        n, p = mask.shape
        if p < self.n_max:  # pad to a fixed length
            feats = np.concatenate([feats, np.zeros((n, self.n_max - p, 3), np.float32)], 1)
            mask = np.concatenate([mask, np.zeros((n, self.n_max - p), bool)], 1)
        return feats, mask

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
