"""Jet observables computed from the constituents, vectorised over jets (pure NumPy).

Every function takes a :class:`jetfm.Jets` with ``px, py, pz, E`` columns and returns ``(N,)``
arrays. Units: GeV, radians.
"""
from __future__ import annotations

import numpy as np

from jetfm.jets import Jets
from jetfm.physics.features import pt_eta_phi


def jet_four_momentum(jets: Jets) -> np.ndarray:
    """(N, 4) float64 sum of the constituents' (px, py, pz, E)."""
    m = jets.mask
    return np.stack([np.where(m, jets.c(k), 0.0).astype(np.float64).sum(1)
                     for k in ("px", "py", "pz", "E")], axis=1)


def jet_kinematics(jets: Jets) -> dict[str, np.ndarray]:
    """pt, eta, phi, mass and number of constituents of the constituent sum."""
    p = jet_four_momentum(jets)
    pt, eta, phi = pt_eta_phi(p[:, 0], p[:, 1], p[:, 2])
    m2 = p[:, 3] ** 2 - (p[:, :3] ** 2).sum(1)
    return {"pt": pt, "eta": eta, "phi": phi, "mass": np.sqrt(np.clip(m2, 0, None)),
            "n_constituents": jets.n_constituents.astype(np.float64)}


def compute_observables(jets: Jets) -> dict[str, np.ndarray]:
    """All jet observables of jetfm, one ``(N,)`` array each."""
    return jet_kinematics(jets)
