"""Dark-shower samples for anomaly detection: QCD multijet, semi-visible jets (SVJ) and a
SUEP-like signal with Pythia 8, a CMS-like detector response and whole-event images.

Processes (13 TeV pp, Monash tune, :data:`jetfm.simulate.pythia.COMMON_SETTINGS`):

- ``qcd``: QCD multijets (``HardQCD:all``, pTHatMin 150 GeV).
- ``svj``: a leptophobic Z' (Hidden Valley ``Zv``, id 4900023, mass M) from q qbar, decaying to a
  dark quark pair (4900101); the Hidden Valley module showers them (SU(2) dark QCD,
  ``HiddenValley:Ngauge = 2``, running coupling with Lambda_D = 20 GeV, ``probVector = 0.75``)
  and hadronises them into dark mesons of 20 GeV (4900111, 4900113). Each dark meson decays
  with probability ``1 - rinv`` to a quark pair that Pythia hadronises, and with probability
  ``rinv`` (0.3 by default) to a pair of stable dark-matter mesons (4900211) that escape: the
  "semi-visible" jets of Cohen, Lisanti, Lou (2015) as set up in the CMS searches.
- ``suep``: SUEP-like. The published SUEP samples use a dedicated thermal (Boltzmann) decay of the
  scalar mediator into hundreds of dark mesons, which Pythia 8 does not provide. This sample is an
  *approximation* built from Hidden Valley settings: a scalar (the Higgs boson slot, id 25, mass M,
  gluon fusion) decays to dark quarks of 1 GeV that shower with a large, fixed dark coupling
  (alpha_D = 0.7, SU(3)) down to 1.1 GeV and hadronise to 2 GeV dark mesons, which decay promptly
  to Standard-Model pairs (pi+ pi-, pi0 pi0, e+ e-, mu+ mu-: the decays of a 0.7 GeV dark photon
  that the published benchmark uses). The result has the SUEP signature (many soft, isotropic
  tracks) with fewer particles than a true thermal SUEP.

Detector response: :func:`jetfm.simulate.detector.cms_like_candidates` (tracking with
efficiencies and resolution, calorimeter clustering into photons and neutral hadrons), then per
event the image channels are filled from the candidates: tracks = pT of charged candidates from
the primary vertex (pile-up tracks removed, as the released images' pile-up-corrected tracks);
ECAL = ET of photons and electrons; HCAL = ET of neutral hadrons plus the charged hadrons'
(track) ET, which a hadron calorimeter tower would hold. Optional pile-up: Poisson(mu) minimum-
bias interactions over the whole event. Output: a *deposits* file (``jetfm images`` turns it into
images) or, with ``images=True``, the images directly in the released ``.npz`` layout.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from jetfm.errors import InputError, check_writable, require_file
from jetfm.io.images import LABELS, write_images
from jetfm.io.output import save_npz_atomic
from jetfm.physics.images import ETA_MAX, event_images, pooled_shape
from jetfm.simulate.pythia import MINBIAS, EventGenerator, ProcessSettings, derive_seed

DEFAULT_MASS = {"svj": 3100.0, "suep": 400.0, "qcd": 0.0}
#: keys of a deposits file (flat (M,) arrays + per-event (N,) arrays)
DEPOSIT_KEYS = ("dep_event", "dep_eta", "dep_phi", "dep_et", "dep_channel")
#: stable invisible particles: neutrinos and every Hidden Valley state
_INVISIBLE_ABS = (12, 14, 16)
_HV_MIN = 4_900_000


@dataclass(frozen=True)
class DarkShowerParams:
    """Signal model parameters (GeV)."""
    rinv: float = 0.3            # SVJ invisible fraction of dark-meson decays
    svj_dark_meson: float = 20.0
    svj_lambda: float = 20.0
    suep_dark_meson: float = 2.0
    suep_alpha: float = 0.7
    qcd_pthat_min: float = 150.0


def process_settings(signal: str, mass: float, p: DarkShowerParams = DarkShowerParams()
                     ) -> ProcessSettings:
    """The Pythia settings of one sample (whole event kept: ``roi_radius = 0``)."""
    if signal == "qcd":
        s = ("HardQCD:all = on", f"PhaseSpace:pTHatMin = {p.qcd_pthat_min}")
    elif signal == "svj":
        md, mq = p.svj_dark_meson, p.svj_dark_meson / 2.0
        s = ("HiddenValley:ffbar2Zv = on",
             f"4900023:m0 = {mass}", f"4900023:mMin = {mass - 1}", f"4900023:mMax = {mass + 1}",
             "4900023:mWidth = 0.01",
             # q qbar channels give the Z' its coupling to the colliding quarks (production);
             # only the dark-quark decay is left open
             "4900023:oneChannel = 1 0.982 102 4900101 -4900101",
             *(f"4900023:addChannel = 1 0.003 102 {q} -{q}" for q in (1, 2, 3, 4, 5, 6)),
             "4900023:onMode = off", "4900023:onIfAny = 4900101",
             "HiddenValley:Ngauge = 2", "HiddenValley:spinFv = 0", "HiddenValley:FSR = on",
             "HiddenValley:fragment = on", "HiddenValley:alphaOrder = 1",
             f"HiddenValley:Lambda = {p.svj_lambda}",
             f"HiddenValley:pTminFSR = {1.1 * p.svj_lambda}",
             "HiddenValley:probVector = 0.75",
             f"4900101:m0 = {mq}", f"4900111:m0 = {md}", f"4900113:m0 = {md}",
             f"4900211:m0 = {md / 2 - 0.01}", f"4900213:m0 = {md / 2 - 0.01}",
             f"4900111:oneChannel = 1 {1 - p.rinv} 91 -3 3",
             f"4900111:addChannel = 1 {p.rinv} 0 4900211 -4900211",
             f"4900113:oneChannel = 1 {(1 - p.rinv) / 5} 91 -1 1",
             f"4900113:addChannel = 1 {(1 - p.rinv) / 5} 91 -2 2",
             f"4900113:addChannel = 1 {(1 - p.rinv) / 5} 91 -3 3",
             f"4900113:addChannel = 1 {(1 - p.rinv) / 5} 91 -4 4",
             f"4900113:addChannel = 1 {(1 - p.rinv) / 5} 91 -5 5",
             f"4900113:addChannel = 1 {p.rinv} 0 4900213 -4900213",
             "4900211:mayDecay = off", "4900213:mayDecay = off")
    elif signal == "suep":
        md = p.suep_dark_meson
        s = ("HiggsSM:gg2H = on", f"25:m0 = {mass}", f"25:mMin = {mass - 1}",
             f"25:mMax = {mass + 1}", "25:mWidth = 0.01", "25:onMode = off",
             "25:addChannel = 1 1.0 102 4900101 -4900101",
             "HiddenValley:Ngauge = 3", "HiddenValley:spinFv = 0", "HiddenValley:FSR = on",
             "HiddenValley:fragment = on", "HiddenValley:alphaOrder = 0",
             f"HiddenValley:alphaFSR = {p.suep_alpha}", f"HiddenValley:Lambda = {md / 2}",
             f"HiddenValley:pTminFSR = {1.1 * md / 2}", "HiddenValley:probVector = 0.5",
             f"4900101:m0 = {md / 2}", f"4900111:m0 = {md}", f"4900113:m0 = {md}",
             "4900111:oneChannel = 1 0.40 0 211 -211",
             "4900111:addChannel = 1 0.15 0 111 111",
             "4900111:addChannel = 1 0.25 0 11 -11",
             "4900111:addChannel = 1 0.20 0 13 -13",
             "4900113:oneChannel = 1 0.40 0 211 -211",
             "4900113:addChannel = 1 0.15 0 111 111",
             "4900113:addChannel = 1 0.25 0 11 -11",
             "4900113:addChannel = 1 0.20 0 13 -13")
    else:
        raise InputError(f"unknown dark-shower sample '{signal}': expected svj, suep or qcd")
    return ProcessSettings(name=f"dark_showers_{signal}", settings=s, truth_jet_ptmin=0.0,
                           roi_radius=0.0)


def _visible(particles: dict) -> dict:
    pid = np.abs(np.asarray(particles["pdgId"]))
    keep = ~np.isin(pid, _INVISIBLE_ABS) & (pid < _HV_MIN)
    return {k: v[keep] for k, v in particles.items()}


def _eta_phi_pt(px, py, pz):
    pt = np.hypot(px, py)
    eta = np.arcsinh(np.divide(pz, pt, out=np.zeros_like(pt), where=pt > 0))
    return eta, np.arctan2(py, px), pt


def candidate_deposits(cands: dict) -> tuple[dict, np.ndarray]:
    """Detector candidates -> image deposits (eta, phi, ET, channel, event) and the per-candidate
    mask of pile-up-corrected tracks. Channels: 0 tracks, 1 ECAL, 2 HCAL (see module doc)."""
    eta, phi, pt = _eta_phi_pt(cands["px"], cands["py"], cands["pz"])
    pid = np.abs(cands["pdgId"]).astype(np.int64)
    charged = cands["charge"] != 0
    pu = cands["pu"].astype(bool)
    in_tracker = np.abs(eta) < ETA_MAX
    track = charged & ~pu & in_tracker
    ecal = (pid == 22) | (pid == 11)
    hcal = (pid == 130) | (pid == 211)
    parts = []
    for ch, sel in ((0, track), (1, ecal), (2, hcal)):
        parts.append((cands["event"][sel], eta[sel], phi[sel], pt[sel], np.full(sel.sum(), ch)))
    dep = {k: np.concatenate([p[i] for p in parts]) for i, k in enumerate(DEPOSIT_KEYS)}
    return dep, track


def simulate_events(signal: str, n_events: int, seed: int, mass: float | None = None,
                    pileup: float = 0.0, params: DarkShowerParams = DarkShowerParams(),
                    progress: bool = True) -> dict:
    """Generate ``n_events`` events -> deposits dict (:data:`DEPOSIT_KEYS` (M,) arrays) plus
    ``labels``, ``masses`` [GeV], ``n_tracks`` (N,) and ``meta``."""
    from tqdm import tqdm

    from jetfm.simulate.detector import cms_like_candidates

    if n_events < 1:
        raise InputError(f"--events must be >= 1, got {n_events}")
    if not 0 <= int(seed) <= 2**32 - 1:
        raise InputError(f"--seed must be from 0 to {2**32 - 1}, got {seed}")
    if pileup < 0:
        raise InputError(f"--pileup must be >= 0, got {pileup}")
    mass = DEFAULT_MASS[signal] if mass is None else float(mass)
    if signal != "qcd" and not mass > 0:
        raise InputError(f"--mass must be > 0 GeV for {signal}, got {mass}")
    proc = process_settings(signal, mass, params)
    gen = EventGenerator(proc, derive_seed(seed, 0, 0))
    pu_gen = EventGenerator(MINBIAS, derive_seed(seed, 0, 1)) if pileup > 0 else None
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 7]))
    deps, n_tracks = [], np.zeros(n_events, np.float32)
    batch: list[dict] = []

    def flush(first: int):
        if not batch:
            return
        particles = {k: np.concatenate([b[k] for b in batch]) for k in batch[0]}
        cands = cms_like_candidates(particles, rng)
        dep, track = candidate_deposits(cands)
        dep["dep_event"] = dep["dep_event"] + first
        np.add.at(n_tracks, cands["event"][track] + first, 1)
        deps.append(dep)
        batch.clear()

    first = 0
    for i in tqdm(range(n_events), desc=f"{signal} events", disable=not progress, unit="ev"):
        ev = gen.next()
        p = _visible(ev.particles)
        p["event"] = np.full(len(p["px"]), i - first, np.int64)
        parts = [p]
        for _ in range(rng.poisson(pileup) if pu_gen is not None else 0):
            while not pu_gen.generate():
                pass
            q = pu_gen.all_final(eta_max=ETA_MAX + 0.5)
            q["vz"] = q["vz"] + rng.normal(0.0, 35.0)  # mm: luminous region length
            q["pu"] = np.ones(len(q["px"]), bool)
            q["event"] = np.full(len(q["px"]), i - first, np.int64)
            parts.append(q)
        batch.append({k: np.concatenate([x[k] for x in parts]) for k in p})
        if len(batch) == 32:
            flush(first)
            first = i + 1
    flush(first)
    out = {k: np.concatenate([d[k] for d in deps]) for k in DEPOSIT_KEYS}
    out["dep_event"] = out["dep_event"].astype(np.int64)
    out["dep_channel"] = out["dep_channel"].astype(np.int8)
    out.update(labels=np.full(n_events, LABELS[signal], np.float32),
               masses=np.full(n_events, mass, np.float32), n_tracks=n_tracks)
    out["meta"] = {"mass_unit": "GeV", "signal": signal, "mass": mass, "events": n_events,
                   "seed": int(seed), "pileup": pileup, "params": params.__dict__,
                   "pythia": list(proc.settings),
                   "detector": "jetfm.simulate.detector.cms_like_candidates",
                   "failed_generations": gen.n_failed}
    return out


def write_deposits(path: str, events: dict) -> str:
    """Write a deposits file (see :func:`simulate_events`) atomically."""
    p = check_writable(path)
    arrays = {k: v for k, v in events.items() if k != "meta"}
    arrays["meta"] = np.array(json.dumps({**events["meta"], "kind": "deposits"}))
    return save_npz_atomic(p, arrays)


def read_deposits(path: str) -> dict:
    """Read a deposits file written by :func:`write_deposits`; InputError if it is not one."""
    p = require_file(path)
    try:
        with np.load(p, allow_pickle=False) as z:
            missing = [k for k in (*DEPOSIT_KEYS, "labels", "masses", "n_tracks", "meta")
                       if k not in z.files]
            if missing:
                raise InputError(f"not a dark-shower deposits file (missing {missing}); "
                                 "make one with `jetfm simulate dark-showers`", p)
            out = {k: np.asarray(z[k]) for k in z.files if k != "meta"}
            out["meta"] = json.loads(str(z["meta"]))
    except InputError:
        raise
    except Exception as err:  # a truncated or foreign file: one clear line
        raise InputError(f"not a readable deposits file ({err.__class__.__name__})", p) from err
    n = len(out["labels"])
    if len(out["dep_event"]) and (out["dep_event"].min() < 0 or out["dep_event"].max() >= n):
        raise InputError("deposit event indices out of range", p)
    for k in ("dep_eta", "dep_phi", "dep_et"):
        if not np.isfinite(out[k]).all():
            raise InputError(f"'{k}' holds NaN or infinite values", p)
    return out


def events_to_images(events: dict, pool: int = 5) -> np.ndarray:
    """Deposits -> (N, 72, 58, 3) images (for pool 5)."""
    return event_images(events["dep_event"], events["dep_eta"], events["dep_phi"],
                        events["dep_et"], events["dep_channel"], len(events["labels"]), pool)


def deposits_to_images(inputs, output: str, pool: int = 5) -> dict:
    """``jetfm images``: deposits files -> one image file (released layout, masses in GeV)."""
    if pool != 5:
        shape = pooled_shape(pool)
        raise InputError(f"--pool {pool} gives {shape[0]} x {shape[1]} images; the image format "
                         "(and CoDAE) uses 72 x 58, i.e. --pool 5")
    check_writable(output)
    imgs, labels, masses, ntr, metas = [], [], [], [], []
    for f in ([inputs] if isinstance(inputs, str) else inputs):
        ev = read_deposits(f)
        imgs.append(events_to_images(ev, pool))
        labels.append(ev["labels"])
        masses.append(ev["masses"])
        ntr.append(ev["n_tracks"])
        metas.append(ev["meta"])
    out = write_images(output, np.concatenate(imgs), np.concatenate(labels),
                       np.concatenate(masses), np.concatenate(ntr), meta={"sources": metas})
    return {"output": out, "events": int(sum(len(x) for x in labels))}


def simulate_dark_showers(signal: str, n_events: int, seed: int, output: str,
                          mass: float | None = None, pileup: float = 0.0, images: bool = False,
                          progress: bool = True) -> dict:
    """``jetfm simulate dark-showers``: generate and write deposits (or images)."""
    if signal not in DEFAULT_MASS:
        raise InputError(f"unknown dark-shower sample '{signal}': expected svj, suep or qcd")
    check_writable(output)
    ev = simulate_events(signal, n_events, seed, mass, pileup, progress=progress)
    if images:
        write_images(output, events_to_images(ev), ev["labels"], ev["masses"], ev["n_tracks"],
                     meta=ev["meta"])
    else:
        write_deposits(output, ev)
    return {"output": output, "signal": signal, "events": n_events,
            "mass": float(ev["masses"][0]), "mean_n_tracks": float(ev["n_tracks"].mean()),
            "kind": "images" if images else "deposits"}
