"""Fast parametric detector response: stable particles -> particle-flow candidates.

Two parameter sets share one algorithm (:func:`detector_response`):

- :data:`CMS_LIKE` (:func:`cms_like_candidates`) stands in for CMS particle flow as stored in
  AspenOpenJets: fine ECAL granularity (photons are PF clusters of a few crystals), HF candidates
  (pdgId 1 and 2) beyond |eta| = 3, about 5 % of charged candidates without track details (as in
  the real files), impact parameters in cm.
- :data:`DELPHES_LIKE` (:func:`delphes_like_candidates`) stands in for the Delphes CMS card used to
  make JetClass: one tower granularity of 0.087 for both calorimeters (so photons of one tower
  merge), Delphes' tracking efficiencies and energy thresholds, no HF species, impact parameters
  in mm (the JetClass convention). Its difference from the CMS-like response is the simulated
  domain shift between AOJ and JetClass.

The algorithm, vectorised over a batch of events (the ``event`` field keeps them apart):

1. Tracking: charged particles with |eta| < ``tracker_eta_max``, pT > ``track_pt_min`` and a
   production vertex within ``track_max_vertex_r`` of the beam line are found with an efficiency
   depending on pT and eta; their pT is smeared; d0 and dz come from the true production vertex
   (straight-line point of closest approach to the beam line) plus Gaussian resolution, with the
   resolution stored as the uncertainty. Electrons and muons above their thresholds are identified
   with some efficiency, other tracks are charged hadrons (pdgId 211 * charge).
2. Calorimeters: every other visible particle deposits its energy in a calorimeter cell (charged
   ones after bending in the solenoid field: a particle too soft to reach the calorimeter deposits
   nothing); tracked charged hadrons and electrons deposit there too, but their energy is expected
   from the track. Cells sum the deposits, the sum is smeared with the calorimeter resolution, and
   the excess over the expected track energy becomes a photon (ECAL), a neutral hadron (HCAL) or
   an HF candidate when it passes an energy threshold and a significance cut, at the
   energy-weighted position of the neutral deposits. This is how particle flow (and Delphes'
   energy flow) makes neutral candidates; it also absorbs soft neutrals that overlap charged
   hadrons.
3. Neutral candidates carry NaN in d0, d0Err, dz and dzErr (the AOJ writer stores -1).

Units: GeV, radians; production vertices in mm (Pythia); impact parameters in cm (CMS-like) or mm
(Delphes-like), see ``DetectorParams.ip_unit``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np

#: output fields of :func:`detector_response`, each an ``(M,)`` array
CANDIDATE_FIELDS = ("px", "py", "pz", "E", "d0", "d0Err", "dz", "dzErr", "charge", "pdgId",
                    "puppiWeight", "event", "pu")

_INVISIBLE = np.array([12, 14, 16, 1000022, 1000012, 1000014, 1000016, 1000039])
_PION_MASS, _ELECTRON_MASS, _MUON_MASS = 0.13957, 0.000511, 0.10566


@dataclass(frozen=True)
class DetectorParams:
    """Every parameter of the parametric detector response. Defaults: CMS-like (2016).

    Energies in GeV, lengths as stated, angles in radians.
    """
    name: str = "cms_like"
    # ---------------------------------------------------------------- solenoid and tracker
    b_field: float = 3.8               # T; bends charged particles on their way to the calorimeters
    tracker_eta_max: float = 2.5       # tracker acceptance
    track_pt_min: float = 0.2          # no PF charged candidate below this (real AOJ: ~0.18 GeV)
    track_max_vertex_r: float = 300.0  # mm; particles born beyond this transverse radius leave
    #                                    too few hits (decays of K0S/Lambda late in the tracker)
    track_eff_pt: tuple[float, float] = (0.5, 1.0)  # GeV, edges of the efficiency pT bins
    track_eff_barrel: tuple[float, float, float] = (0.80, 0.93, 0.97)  # |eta| < 1.5, per pT bin
    track_eff_endcap: tuple[float, float, float] = (0.70, 0.85, 0.93)  # 1.5 < |eta| < 2.5
    track_pt_res: tuple[float, float] = (0.006, 1.5e-4)     # sigma(pT)/pT = a (+) b * pT [1/GeV]
    track_res_endcap_factor: float = 2.0   # resolution worse by this for |eta| > 1.5
    # ---------------------------------------------------------------- impact parameters
    ip_unit: str = "cm"                # unit of d0/dz in the output ("cm": AOJ, "mm": JetClass)
    d0_res: tuple[float, float] = (0.0015, 0.0035)  # cm: sigma = a (+) b / (pT sqrt(sin theta))
    dz_res: tuple[float, float] = (0.0025, 0.0040)  # cm: sigma = a (+) b / (pT sin(theta)^1.5)
    ip_err_spread: float = 0.35        # log-normal track-to-track spread of the IP uncertainty
    #                                    (hit pattern, missing layers); real AOJ d0Err spans
    #                                    1e-3..0.5
    no_track_details_frac: float = 0.055  # charged candidates stored without d0/dz (the -1
    #                                       sentinel): 5.5 % in the real AOJ file
    # ---------------------------------------------------------------- lepton identification
    electron_pt_min: float = 2.0
    electron_eff: float = 0.75         # PF electron id inside jets
    muon_pt_min: float = 3.0           # must reach the muon chambers
    muon_eff: float = 0.95
    # ---------------------------------------------------------------- calorimeters
    calo_eta_max: float = 3.0          # ECAL and HCAL acceptance; HF beyond, up to hf_eta_max
    endcap_eta: float = 1.479          # barrel / endcap boundary
    ecal_radius: float = 1.29          # m, transverse radius of the ECAL front face (barrel)
    ecal_z: float = 3.15               # m, |z| of the ECAL endcap face
    hcal_radius: float = 1.8           # m
    hcal_z: float = 3.9                # m
    hf_z: float = 11.2                 # m
    ecal_cell: tuple[float, float] = (0.0174, 0.025)   # crystal size (barrel, endcap), eta and phi
    ecal_cluster_cells: int = 3        # PF clusters of n x n crystals: photons closer than that
    #                                    become one candidate (tuned to the real photon
    #                                    multiplicity)
    hcal_cell: tuple[float, float] = (0.087, 0.087)    # HCAL tower size (barrel, endcap)
    hcal_cluster_cells: int = 2        # PF HCAL clusters span neighbouring towers: neutral hadrons
    #                                    closer than that become one candidate
    hf_cell: float = 0.175
    ecal_res: tuple[float, float, float] = (0.028, 0.12, 0.003)  # stochastic, noise, constant
    hcal_res: tuple[float, float, float] = (1.0, 0.0, 0.05)
    hf_res: tuple[float, float, float] = (1.5, 0.0, 0.10)
    photon_e_min: tuple[float, float] = (0.4, 1.0)     # PF photon energy threshold (barrel, endcap)
    neutral_e_min: tuple[float, float] = (0.8, 1.2)    # PF neutral hadron threshold (barrel,
    #                                                    endcap)
    hf_e_min: float = 5.0
    neutral_significance: float = 1.0  # excess over the track expectation must exceed this many
    #                                    standard deviations of the calorimeter resolution
    hf_species: bool = True            # HF candidates as pdgId 1 (hadronic) / 2 (EM); else 130 / 22

    def to_dict(self) -> dict:
        return asdict(self)

    def with_(self, **kw) -> DetectorParams:
        return replace(self, **kw)


CMS_LIKE = DetectorParams()

#: Delphes CMS card (as used for JetClass): towers of 0.087 for ECAL and HCAL, tracking
#: efficiencies of the card, ECAL threshold 0.5 GeV and significance 2, HCAL 1 GeV, no HF species,
#: impact parameters in mm, every charged candidate with track parameters.
DELPHES_LIKE = DetectorParams(
    name="delphes_like",
    track_pt_min=0.1,
    track_max_vertex_r=1000.0,
    track_eff_pt=(1.0, 1.0),
    track_eff_barrel=(0.70, 0.70, 0.95),
    track_eff_endcap=(0.60, 0.60, 0.85),
    track_pt_res=(0.01, 2.0e-4),
    ip_unit="mm",
    d0_res=(0.0010, 0.0030),
    dz_res=(0.0028, 0.0040),
    ip_err_spread=0.2,
    no_track_details_frac=0.0,
    electron_pt_min=10.0,
    electron_eff=0.85,
    muon_pt_min=10.0,
    muon_eff=0.95,
    ecal_cell=(0.087, 0.087),
    ecal_cluster_cells=1,
    hcal_cell=(0.087, 0.087),
    hcal_cluster_cells=1,
    ecal_res=(0.05, 0.25, 0.007),
    hcal_res=(1.5, 0.0, 0.05),
    photon_e_min=(0.5, 0.5),
    neutral_e_min=(1.0, 1.0),
    neutral_significance=2.0,
    hf_species=False,
)


# ------------------------------------------------------------------------------ helpers
def _quad(*terms):
    out = 0.0
    for t in terms:
        out = out + np.square(t)
    return np.sqrt(out)


def _pt_eta_phi(px, py, pz):
    pt = np.hypot(px, py)
    eta = np.arcsinh(np.divide(pz, pt, out=np.zeros_like(pz), where=pt > 0))
    return pt, eta, np.arctan2(py, px)


def _bend(phi, eta, pt, charge, radius, z_face, b_field):
    """phi at the calorimeter face of a particle from the beam line, and whether it gets there.

    The transverse path is the barrel radius or, in the endcaps, the radius where the track meets
    the endcap face; a helix of radius pT / (0.3 B) reaches radius r turned by asin(0.3 B r / 2 pT).
    """
    r = np.minimum(radius, z_face / np.maximum(np.abs(np.sinh(eta)), 1e-9))
    s = 0.3 * b_field * r / (2.0 * np.maximum(pt, 1e-9))
    reach = (charge == 0) | (s < 1.0)
    dphi = np.where(charge != 0, np.arcsin(np.clip(s, 0.0, 1.0)) * np.sign(charge), 0.0)
    return np.mod(phi - dphi + np.pi, 2 * np.pi) - np.pi, reach


def _resolution(e, res):
    a, b, c = res
    e = np.maximum(e, 1e-6)
    return e * _quad(a / np.sqrt(e), b / e, c)


def _empty(n: int = 0) -> dict[str, np.ndarray]:
    out = {k: np.zeros(n, np.float64) for k in CANDIDATE_FIELDS}
    out["event"] = np.zeros(n, np.int64)
    out["pu"] = np.zeros(n, bool)
    return out


# ------------------------------------------------------------------------------ response
def detector_response(particles: dict[str, np.ndarray], rng: np.random.Generator,
                      params: DetectorParams = CMS_LIKE) -> dict[str, np.ndarray]:
    """Particle-flow candidates of a batch of events.

    particles: ``(M,)`` arrays ``px, py, pz, E`` (GeV), ``pdgId``, ``charge``, ``vx, vy, vz``
        (production vertex, mm, relative to the primary vertex of the event), optional ``event``
        (int, default 0) and ``pu`` (bool, particle of a pile-up vertex, default False).
    rng: the random stream for efficiencies and smearing.
    Returns ``(C,)`` arrays :data:`CANDIDATE_FIELDS`: ``px, py, pz, E`` (GeV), ``d0, d0Err, dz,
    dzErr`` (``params.ip_unit``; NaN for neutral candidates), ``charge``, ``pdgId``,
    ``puppiWeight`` (1; see :func:`puppi_weights`), ``event``, ``pu``; sorted by event, then by
    decreasing pT.
    """
    p = params
    n = len(particles["px"])
    if n == 0:
        return _empty()
    px, py, pz, e = (np.asarray(particles[k], np.float64) for k in ("px", "py", "pz", "E"))
    pid = np.asarray(particles["pdgId"]).astype(np.int64)
    charge = np.asarray(particles["charge"], np.float64)
    event = np.asarray(particles.get("event", np.zeros(n, np.int64)), np.int64)
    pu = np.asarray(particles.get("pu", np.zeros(n, bool)), bool)
    vx, vy, vz = (np.asarray(particles.get(k, np.zeros(n)), np.float64) for k in ("vx", "vy", "vz"))

    apid = np.abs(pid)
    visible = ~np.isin(apid, _INVISIBLE)
    pt, eta, phi = _pt_eta_phi(px, py, pz)
    aeta = np.abs(eta)
    charged = (charge != 0) & visible
    barrel = aeta < 1.5

    # ---------------------------------------------------------------- tracking
    u = rng.random(n)
    pt_bin = np.searchsorted(np.asarray(p.track_eff_pt), pt)
    eff_b = np.asarray(p.track_eff_barrel)[pt_bin]
    eff_e = np.asarray(p.track_eff_endcap)[pt_bin]
    eff = np.where(barrel, eff_b, eff_e)
    r_prod = np.hypot(vx, vy)
    tracked = (charged & (aeta < p.tracker_eta_max) & (pt > p.track_pt_min)
               & (r_prod < p.track_max_vertex_r) & (u < eff))
    is_e = tracked & (apid == 11) & (pt > p.electron_pt_min) & (rng.random(n) < p.electron_eff)
    is_mu = tracked & (apid == 13) & (pt > p.muon_pt_min) & (rng.random(n) < p.muon_eff)

    t = np.flatnonzero(tracked)
    sig_pt = _quad(p.track_pt_res[0], p.track_pt_res[1] * pt[t]) * np.where(
        barrel[t], 1.0, p.track_res_endcap_factor)
    scale = np.clip(1.0 + sig_pt * rng.standard_normal(len(t)), 0.05, None)
    tpx, tpy, tpz = px[t] * scale, py[t] * scale, pz[t] * scale
    tpt = pt[t] * scale
    mass = np.where(is_e[t], _ELECTRON_MASS, np.where(is_mu[t], _MUON_MASS, _PION_MASS))
    te = np.sqrt(tpx ** 2 + tpy ** 2 + tpz ** 2 + mass ** 2)
    q = np.sign(charge[t])
    tpid = np.where(is_e[t], -11 * q, np.where(is_mu[t], -13 * q, 211 * q))

    # impact parameters from the production vertex (mm -> cm), straight-line approximation
    ptt = np.maximum(pt[t], 1e-9)
    d0_true = (-vx[t] * py[t] + vy[t] * px[t]) / ptt / 10.0
    dz_true = (vz[t] - (vx[t] * px[t] + vy[t] * py[t]) / ptt * pz[t] / ptt) / 10.0
    sin_t = 1.0 / np.cosh(eta[t])
    quality = np.exp(p.ip_err_spread * rng.standard_normal(len(t)))
    d0_err = _quad(p.d0_res[0], p.d0_res[1] / (tpt * np.sqrt(sin_t))) * quality
    dz_err = _quad(p.dz_res[0], p.dz_res[1] / (tpt * sin_t ** 1.5)) * quality
    d0 = d0_true + d0_err * rng.standard_normal(len(t))
    dz = dz_true + dz_err * rng.standard_normal(len(t))
    unit = {"cm": 1.0, "mm": 10.0}[p.ip_unit]
    d0, d0_err, dz, dz_err = d0 * unit, d0_err * unit, dz * unit, dz_err * unit
    if p.no_track_details_frac > 0:
        lost = rng.random(len(t)) < p.no_track_details_frac
        for a in (d0, d0_err, dz, dz_err):
            a[lost] = np.nan
    tracks = {"px": tpx, "py": tpy, "pz": tpz, "E": te, "d0": d0, "d0Err": d0_err, "dz": dz,
              "dzErr": dz_err, "charge": q, "pdgId": tpid.astype(np.float64),
              "puppiWeight": np.ones(len(t)), "event": event[t], "pu": pu[t]}

    # ---------------------------------------------------------------- calorimeter deposits
    # EM deposits: photons and electrons (a tracked electron's energy is expected from its track);
    # hadronic: every other visible particle except muons (minimum ionising)
    em = visible & ((apid == 22) | (apid == 11))
    had = visible & ~em & (apid != 13)
    expected = np.zeros(n)
    expected[t] = np.where(is_mu[t], 0.0, te)
    cands = [tracks]
    for kind in ("em", "had"):
        sel = np.flatnonzero(em if kind == "em" else had)
        if not len(sel):
            continue
        radius, z_face = (p.ecal_radius, p.ecal_z) if kind == "em" else (p.hcal_radius, p.hcal_z)
        in_hf = aeta[sel] >= p.calo_eta_max
        r_use = np.where(in_hf, 1e9, radius)  # the HF sits at |z| = hf_z
        z_use = np.where(in_hf, p.hf_z, z_face)
        cphi, reach = _bend(phi[sel], eta[sel], pt[sel], charge[sel], r_use, z_use, p.b_field)
        ok = reach & (aeta[sel] < 5.0)
        sel, cphi = sel[ok], cphi[ok]
        cands.append(_calorimeter(kind, sel, eta[sel], cphi, e[sel], expected[sel], event[sel],
                                  pu[sel], rng, p))
    out = {k: np.concatenate([c[k] for c in cands]) for k in CANDIDATE_FIELDS}
    cpt = np.hypot(out["px"], out["py"])
    order = np.lexsort((-cpt, out["event"]))
    return {k: v[order] for k, v in out.items()}


def _calorimeter(kind, sel, eta, phi, e, expected, event, pu, rng, p: DetectorParams):
    """Neutral candidates of one calorimeter system (``kind`` 'em' or 'had') from its deposits."""
    aeta = np.abs(eta)
    region = np.where(aeta >= p.calo_eta_max, 2, np.where(aeta >= p.endcap_eta, 1, 0))
    if kind == "em":
        size = np.select([region == 0, region == 1],
                         [p.ecal_cell[0] * p.ecal_cluster_cells,
                          p.ecal_cell[1] * p.ecal_cluster_cells], p.hf_cell)
    else:
        size = np.select([region == 0, region == 1],
                         [p.hcal_cell[0] * p.hcal_cluster_cells,
                          p.hcal_cell[1] * p.hcal_cluster_cells], p.hf_cell)
    nphi = np.round(2 * np.pi / size).astype(np.int64)
    ieta = np.floor(eta / size).astype(np.int64)
    iphi = np.floor((phi + np.pi) / (2 * np.pi) * nphi).astype(np.int64) % nphi
    key = ((event * 4 + region) * 131072 + (ieta + 65536)) * 4096 + iphi
    cells, inv = np.unique(key, return_inverse=True)
    nc = len(cells)
    e_dep = np.bincount(inv, e, nc)
    e_exp = np.bincount(inv, expected, nc)
    neutral_e = np.where(expected > 0, 0.0, e)
    e_neu = np.bincount(inv, neutral_e, nc)
    # position: energy-weighted centroid of the neutral deposits (of all if there are none)
    w = np.where(e_neu[inv] > 0, neutral_e, e)
    wsum = np.maximum(np.bincount(inv, w, nc), 1e-12)
    c_eta = np.bincount(inv, w * eta, nc) / wsum
    first = np.zeros(nc, np.int64)
    first[inv[::-1]] = np.arange(len(inv))[::-1]
    ref = phi[first]  # average phi relative to one member so the 2 pi wrap is harmless
    dphi = np.mod(phi - ref[inv] + np.pi, 2 * np.pi) - np.pi
    c_phi = ref + np.bincount(inv, w * dphi, nc) / wsum
    c_region = region[first]
    c_event = event[first]
    c_pu = np.bincount(inv, np.where(pu, e, 0.0), nc) > 0.5 * e_dep

    res = {"em": p.ecal_res, "had": p.hcal_res}[kind]
    sigma = np.where(c_region == 2, _resolution(e_dep, p.hf_res), _resolution(e_dep, res))
    e_meas = np.maximum(e_dep + sigma * rng.standard_normal(nc), 0.0)
    excess = e_meas - e_exp
    if kind == "em":
        thr = np.select([c_region == 0, c_region == 1], list(p.photon_e_min), p.hf_e_min)
    else:
        thr = np.select([c_region == 0, c_region == 1], list(p.neutral_e_min), p.hf_e_min)
    keep = (excess > thr) & (excess > p.neutral_significance * sigma)
    ce, ceta, cphi = excess[keep], c_eta[keep], c_phi[keep]
    reg = c_region[keep]
    cpt = ce / np.cosh(ceta)
    if kind == "em":
        pid = np.where(reg == 2, 2.0 if p.hf_species else 22.0, 22.0)
    else:
        pid = np.where(reg == 2, 1.0 if p.hf_species else 130.0, 130.0)
    m = len(ce)
    nan = np.full(m, np.nan)
    return {"px": cpt * np.cos(cphi), "py": cpt * np.sin(cphi), "pz": cpt * np.sinh(ceta),
            "E": ce, "d0": nan, "d0Err": nan.copy(), "dz": nan.copy(), "dzErr": nan.copy(),
            "charge": np.zeros(m), "pdgId": pid, "puppiWeight": np.ones(m),
            "event": c_event[keep], "pu": c_pu[keep]}


def cms_like_candidates(particles: dict[str, np.ndarray], rng: np.random.Generator,
                        params: DetectorParams = CMS_LIKE) -> dict[str, np.ndarray]:
    """CMS-like particle-flow candidates (see :func:`detector_response`; d0/dz in cm)."""
    return detector_response(particles, rng, params)


def delphes_like_candidates(particles: dict[str, np.ndarray], rng: np.random.Generator,
                            params: DetectorParams = DELPHES_LIKE) -> dict[str, np.ndarray]:
    """Delphes-like energy-flow candidates (see :func:`detector_response`; d0/dz in mm)."""
    return detector_response(particles, rng, params)


# ------------------------------------------------------------------------------ PUPPI
@dataclass(frozen=True)
class PuppiParams:
    """PUPPI-like pile-up weights (Bertolini et al., arXiv:1407.6013), simplified.

    Charged candidates take weight 1 (primary vertex) or 0 (pile-up vertex, by vertex
    association). A neutral candidate i gets alpha_i = log sum_j (pT_j / dR_ij)^2 over charged
    primary-vertex candidates j with r_min < dR_ij < r0 (0 without any); its weight is the chi2
    (1 d.o.f.) cumulative probability of (alpha_i - median)^2 / rms^2 when alpha_i > median, else
    0, with the median and RMS (about the median) of alpha over the charged pile-up candidates of
    the event. Events with fewer than two charged pile-up candidates keep weight 1.
    """
    r0: float = 0.4
    r_min: float = 0.01
    min_weight: float = 0.01     # weights below this are set to 0
    min_weighted_pt: float = 0.1  # GeV; neutral candidates with w * pT below this get weight 0

    def to_dict(self) -> dict:
        return asdict(self)


def _alpha(eta_i, phi_i, eta_j, phi_j, pt_j, r0, r_min):
    deta = eta_i[:, None] - eta_j[None, :]
    dphi = np.mod(phi_i[:, None] - phi_j[None, :] + np.pi, 2 * np.pi) - np.pi
    dr = np.hypot(deta, dphi)
    near = (dr > r_min) & (dr < r0)
    s = np.where(near, (pt_j[None, :] / np.maximum(dr, r_min)) ** 2, 0.0).sum(1)
    # no neighbour: alpha = 0, as in CMS's implementation
    return np.where(s > 0, np.log(np.maximum(s, 1e-300)), 0.0)


def puppi_weights(cands: dict[str, np.ndarray], params: PuppiParams = PuppiParams()) -> np.ndarray:
    """``(C,)`` PUPPI-like weights in [0, 1] for the candidates of :func:`detector_response`
    (uses their ``pu`` flag as vertex association for charged candidates)."""
    from scipy.stats import chi2

    w = np.ones(len(cands["px"]))
    if not len(w):
        return w
    charged = cands["charge"] != 0
    pt, eta, phi = _pt_eta_phi(cands["px"], cands["py"], cands["pz"])
    ev = cands["event"]
    bounds = np.flatnonzero(np.diff(ev)) + 1
    for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, len(ev)]):
        sl = slice(lo, hi)
        ch, pileup = charged[sl], cands["pu"][sl]
        w[sl][ch & pileup] = 0.0
        pv = ch & ~pileup
        puc = ch & pileup
        neu = ~ch
        if not neu.any():
            continue
        e_, p_, t_ = eta[sl], phi[sl], pt[sl]
        if puc.sum() < 2:  # no pile-up to learn from: neutrals keep weight 1
            continue
        a_pu = _alpha(e_[puc], p_[puc], e_[pv], p_[pv], t_[pv], params.r0, params.r_min)
        med = np.median(a_pu)
        rms = max(float(np.sqrt(np.mean((a_pu - med) ** 2))), 1e-3)
        a_n = _alpha(e_[neu], p_[neu], e_[pv], p_[pv], t_[pv], params.r0, params.r_min)
        x = np.where(a_n > med, (a_n - med) ** 2 / rms ** 2, 0.0)
        wn = chi2.cdf(x, 1)
        wn = np.where((wn < params.min_weight) | (wn * t_[neu] < params.min_weighted_pt), 0.0, wn)
        idx = np.flatnonzero(neu) + lo
        w[idx] = wn
    return w


#: a perfect detector: every visible particle is measured exactly (tracks for all charged
#: particles in the tracker, calorimeter cells without smearing or thresholds). Its only effects
#: are cell merging and the bending of charged particles outside the tracker. For truth-level
#: studies and for tests: it draws random numbers but its output does not depend on them.
IDEAL = DetectorParams(
    name="ideal", track_pt_min=0.0, track_max_vertex_r=1e12,
    track_eff_barrel=(1.0, 1.0, 1.0), track_eff_endcap=(1.0, 1.0, 1.0), track_pt_res=(0.0, 0.0),
    ip_err_spread=0.0, no_track_details_frac=0.0, electron_eff=1.0, muon_eff=1.0,
    ecal_res=(0.0, 0.0, 0.0), hcal_res=(0.0, 0.0, 0.0), hf_res=(0.0, 0.0, 0.0),
    photon_e_min=(0.0, 0.0), neutral_e_min=(0.0, 0.0), hf_e_min=0.0, neutral_significance=0.0)
