"""The built-in samples: Pythia 8 events -> detector response -> anti-kT jets -> AOJ / JetClass
files.

A sample of N jets is cut into chunks of ``chunk_jets`` jets. Chunk k is generated with Pythia's
random stream re-initialised to a seed derived from (seed, k), so its jets depend only on the seed
and k: not on the number of workers, on which worker ran it, or on whether the run was resumed
(Pythia's state after ``rndm.init`` does not depend on the events generated before; checked in
``tests/simulate``). Workers (processes) each initialise Pythia once and generate chunks; the main
process writes them in order. A crash leaves the complete chunks (AOJ: in ``OUT.partial``, with the
number of complete chunks in its attributes; JetClass: ``.npz`` files in the sidecar folder
``OUT.chunks/``; :mod:`jetfm.io.staging`) and a rerun with the same arguments continues from there.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

import numpy as np

from jetfm.errors import InputError, check_writable
from jetfm.io.staging import ResumableAOJ, StagedJetClass
from jetfm.jets import Jets
from jetfm.simulate.detector import (
    CMS_LIKE,
    DELPHES_LIKE,
    DetectorParams,
    PuppiParams,
    detector_response,
    puppi_weights,
)
from jetfm.simulate.pythia import (
    AOJ_QCD,
    JETCLASS_QCD,
    JETCLASS_TOP,
    MINBIAS,
    EventGenerator,
    ProcessSettings,
    derive_seed,
    pythia_version,
    quiet_stdout,
)

#: constituent columns of simulated jets (the AOJ PFCands columns)
CONSTITUENT_COLUMNS = ("px", "py", "pz", "E", "d0", "d0Err", "dz", "dzErr", "charge", "pdgId",
                       "puppiWeight")
DEFAULT_CHUNK_JETS = 500
#: JetClass label index (into jetfm.io.jetclass.JETCLASS_LABELS) of each jetclass-like process
JETCLASS_LABEL = {"qcd": 0, "top": 8}


@dataclass(frozen=True)
class SampleSpec:
    """Everything that defines a simulated sample besides its size and seed.

    process: the Pythia process. detector: the detector response.
    jet_r: anti-kT radius; pt_min / pt_max (GeV), eta_max: jet selection on the detector-level jet.
    n_max: constituents kept per jet (highest pT first; 0 keeps all). ``nConstituents`` is the
        full count either way.
    pileup: mean number of pile-up interactions (Poisson) overlaid on each event; 0 = none.
    pileup_z_sigma: mm, spread of the pile-up vertices along the beam (the LHC luminous region).
    puppi: PUPPI-like weights (used only with pile-up; without it every weight is 1).
    top_match: keep only jets that contain a top quark, its b and both W daughters within
        Delta R < jet_r of the jet axis (the JetClass ``TTBar`` labelling); label: the JetClass
        label index stored in the jet field ``label`` (None: no label).
    jes: jet energy scale factor applied to the stored jet pT before the selection (1 = raw).
    """
    process: ProcessSettings
    detector: DetectorParams
    jet_r: float = 0.8
    pt_min: float = 300.0
    pt_max: float = math.inf
    eta_max: float = 2.5
    n_max: int = 150
    pileup: float = 0.0
    pileup_z_sigma: float = 35.0
    puppi: PuppiParams = field(default_factory=PuppiParams)
    top_match: bool = False
    label: int | None = None
    jes: float = 1.0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["pt_max"] = None if math.isinf(self.pt_max) else self.pt_max
        return d


def aoj_like_spec(pileup: float = 0.0) -> SampleSpec:
    """QCD multijets with the CMS-like response: anti-kT 0.8, pT > 300 GeV, |eta| < 2.5, 150 max."""
    return SampleSpec(AOJ_QCD, CMS_LIKE, pileup=pileup)


def jetclass_like_spec(process: str) -> SampleSpec:
    """JetClass-like top (t -> bqq') or QCD (Z -> nu nu + jets) jets with the Delphes-like
    response: anti-kT 0.8, 500 < pT < 1000 GeV, |eta| < 2, no pile-up."""
    if process not in JETCLASS_LABEL:
        raise InputError(f"unknown process '{process}': choose one of {', '.join(JETCLASS_LABEL)}")
    return SampleSpec(JETCLASS_TOP if process == "top" else JETCLASS_QCD, DELPHES_LIKE,
                      pt_min=500.0, pt_max=1000.0, eta_max=2.0, n_max=0,
                      top_match=process == "top", label=JETCLASS_LABEL[process])


# ------------------------------------------------------------------------------ clustering
_FASTJET_BANNER_SHOWN = False


def cluster_events(cands: dict[str, np.ndarray], n_events: int, r: float, pt_min: float
                   ) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """Anti-kT jets of each event of a candidate batch (weighted by ``puppiWeight``).

    Returns ``(event, four_momentum (4,) px py pz E, candidate indices)`` for every jet with
    pT > ``pt_min``, events in order, jets by decreasing pT.
    """
    import awkward as ak
    import fastjet

    w = cands["puppiWeight"]
    use = np.flatnonzero(w > 0)
    ev = cands["event"][use]
    counts = np.bincount(ev, minlength=n_events)
    flat = {k: cands[k][use] * w[use] for k in ("px", "py", "pz", "E")}
    arr = ak.unflatten(ak.zip(flat, with_name="Momentum4D"), counts)
    global _FASTJET_BANNER_SHOWN
    with contextlib.nullcontext() if _FASTJET_BANNER_SHOWN else quiet_stdout():
        # FastJet prints its banner to C stdout on the first clustering of a process
        cs = fastjet.ClusterSequence(arr, fastjet.JetDefinition(fastjet.antikt_algorithm, r))
        jets = cs.inclusive_jets(pt_min)
        cidx = cs.constituent_index(pt_min)
    _FASTJET_BANNER_SHOWN = True
    # bulk conversion: per-event awkward indexing costs ~0.3 ms a call
    n_jets = ak.to_numpy(ak.num(jets))
    p4 = np.stack([ak.to_numpy(ak.flatten(jets[k])) for k in ("px", "py", "pz", "E")], axis=1)
    n_con = ak.to_numpy(ak.flatten(ak.num(cidx, axis=2))).astype(np.int64)
    flat_idx = ak.to_numpy(ak.flatten(cidx, axis=None)).astype(np.int64)
    jet_event = np.repeat(np.arange(n_events), n_jets)
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    con_lo = np.r_[0, np.cumsum(n_con)[:-1]]
    out = []
    for e in np.unique(jet_event):
        js = np.flatnonzero(jet_event == e)
        js = js[np.argsort(-np.hypot(p4[js, 0], p4[js, 1]), kind="stable")]
        for j in js:
            idx = use[starts[e] + flat_idx[con_lo[j]:con_lo[j] + n_con[j]]]
            out.append((int(e), p4[j], idx))
    return out


def _delta_r(eta1, phi1, eta2, phi2):
    dphi = np.mod(np.asarray(phi1) - phi2 + np.pi, 2 * np.pi) - np.pi
    return np.hypot(np.asarray(eta1) - eta2, dphi)


def _top_matched(partons: list, eta: float, phi: float, r: float) -> bool:
    """True if some top quark, its b and all its W daughters lie within r of (eta, phi)."""
    tops = {role[3:] for _, role, _, _ in partons if role.startswith("top")}
    for t in tops:
        members = [(e, p) for _, role, e, p in partons
                   if role in (f"top{t}", f"b{t}", f"q{t}")]
        n_q = sum(1 for _, role, _, _ in partons if role == f"q{t}")
        if n_q < 2:
            continue
        if all(_delta_r(e, p, eta, phi) < r for e, p in members):
            return True
    return False


# ------------------------------------------------------------------------------ one chunk
class ChunkGenerator:
    """Generates chunks of one sample. Pythia is initialised once (seeded from the sample seed);
    every chunk re-seeds its random stream from (seed, chunk index)."""

    def __init__(self, spec: SampleSpec, seed: int):
        self.spec = spec
        self.seed = int(seed)
        self.gen = EventGenerator(spec.process, derive_seed(seed, 0, 0),
                                  keep_partons=spec.top_match)
        self.pu_gen = (EventGenerator(MINBIAS, derive_seed(seed, 0, 1))
                       if spec.pileup > 0 else None)

    def chunk(self, index: int, n_jets: int) -> Jets:
        """Exactly ``n_jets`` jets of chunk ``index`` (jets sorted by pT within each event)."""
        spec = self.spec
        self.gen.pythia.rndm.init(derive_seed(self.seed, index + 1, 0))
        if self.pu_gen is not None:
            self.pu_gen.pythia.rndm.init(derive_seed(self.seed, index + 1, 1))
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, index, 2]))
        parts: list[Jets] = []
        n_have = 0
        n_events = 0   # events generated in this chunk (the event number)
        jets_per_event = 1.0
        while n_have < n_jets:
            want = n_jets - n_have
            batch = int(min(64, max(1, math.ceil(want / max(jets_per_event, 0.05)))))
            jets, n_gen = self._batch(batch, rng, n_events, index)
            n_events += n_gen
            if len(jets):
                parts.append(jets[:want])
                n_have += min(len(jets), want)
            jets_per_event = max(n_have / max(n_events, 1), 0.05)
        out = Jets.concat(parts)
        if spec.n_max == 0:
            out = out.pad_to(max(int(out.n_constituents.max()), 1))
        # once per chunk: the vectorised clustering of the observables costs per merge step,
        # whatever the number of jets
        out = out.with_jet_fields(**substructure(out))
        out.meta["events_generated"] = n_events
        return out

    def _batch(self, n_events: int, rng: np.random.Generator, first_event: int, chunk: int):
        spec = self.spec
        plist, events, truth = [], [], []
        n_gen = 0
        for i in range(n_events):
            ev = self.gen.next()
            n_gen += 1
            if ev is None:
                continue
            k = len(events)
            p = ev.particles
            if self.pu_gen is not None:
                p = self._overlay(p, ev, rng)
            p["event"] = np.full(len(p["px"]), k, np.int64)
            plist.append(p)
            events.append(first_event + i + 1)
            truth.append(ev.partons)
        if not events:
            return _empty_jets(spec), n_gen
        particles = {k: np.concatenate([p[k] for p in plist]) for k in plist[0]}
        cands = detector_response(particles, rng, spec.detector)
        if spec.pileup > 0:
            cands["puppiWeight"] = puppi_weights(cands, spec.puppi)
        raw = cluster_events(cands, len(events), spec.jet_r, 0.8 * spec.pt_min / spec.jes)
        rows = []
        for e, p4, idx in raw:
            pt = float(np.hypot(p4[0], p4[1])) * spec.jes
            eta = float(np.arcsinh(p4[2] / max(np.hypot(p4[0], p4[1]), 1e-9)))
            phi = float(np.arctan2(p4[1], p4[0]))
            if not (spec.pt_min < pt < spec.pt_max and abs(eta) < spec.eta_max):
                continue
            if spec.top_match and not _top_matched(truth[e], eta, phi, spec.jet_r):
                continue
            rows.append((e, pt, eta, phi, float(p4[3]) * spec.jes, idx))
        return _to_jets(rows, cands, events, chunk, spec), n_gen

    def _overlay(self, p: dict, ev, rng: np.random.Generator) -> dict:
        """Add Poisson(pileup) minimum-bias interactions, each at its own vertex z, keeping their
        particles near the hard truth jets (the region the jets can reach)."""
        spec = self.spec
        n_pu = rng.poisson(spec.pileup)
        if n_pu == 0:
            return p
        axes = np.array([(t.y, t.phi) for t in ev.truth_jets])
        reach = spec.process.roi_radius if spec.process.roi_radius > 0 else 10.0
        extra = [p]
        for _ in range(n_pu):
            while not self.pu_gen.generate():
                pass
            q = self.pu_gen.all_final(eta_max=spec.eta_max + reach + 0.5)
            _, eta, phi = _eta_phi(q)
            near = np.zeros(len(eta), bool)
            for y, ph in axes:
                near |= _delta_r(eta, phi, y, ph) < reach
            q = {k: v[near] for k, v in q.items()}
            q["vz"] = q["vz"] + rng.normal(0.0, spec.pileup_z_sigma)
            q["pu"] = np.ones(len(q["px"]), bool)
            extra.append(q)
        return {k: np.concatenate([x[k] for x in extra]) for k in p}


def _eta_phi(p):
    pt = np.hypot(p["px"], p["py"])
    eta = np.arcsinh(np.divide(p["pz"], pt, out=np.zeros_like(pt), where=pt > 0))
    return pt, eta, np.arctan2(p["py"], p["px"])


def jet_field_names(spec: SampleSpec) -> tuple[str, ...]:
    names = ("pt", "eta", "phi", "energy", "msoftdrop", "nConstituents",
             "tau1", "tau2", "tau3", "tau4")
    return names + (("label",) if spec.label is not None else ())


def _empty_jets(spec: SampleSpec) -> Jets:
    return Jets(np.zeros((0, 1, len(CONSTITUENT_COLUMNS)), np.float32), np.zeros((0, 1), bool),
                np.zeros((0, len(jet_field_names(spec))), np.float32), CONSTITUENT_COLUMNS,
                jet_field_names(spec), np.zeros((0, 3), np.int64))


def _to_jets(rows, cands, events, chunk: int, spec: SampleSpec) -> Jets:
    """Selected jets -> Jets: constituents by decreasing pT (at most ``spec.n_max``), the full
    constituent count; the substructure fields are filled per chunk by :func:`substructure`."""
    if not rows:
        return _empty_jets(spec)
    counts = np.array([len(r[5]) for r in rows])
    p = int(counts.max()) if spec.n_max == 0 else min(int(counts.max()), spec.n_max)
    n = len(rows)
    cons = np.zeros((n, p, len(CONSTITUENT_COLUMNS)), np.float32)
    mask = np.zeros((n, p), bool)
    cpt = np.hypot(cands["px"], cands["py"])
    for i, (_, _, _, _, _, idx) in enumerate(rows):
        idx = idx[np.argsort(-cpt[idx], kind="stable")][:p]
        cons[i, :len(idx)] = np.stack([cands[k][idx] for k in CONSTITUENT_COLUMNS], axis=1)
        mask[i, :len(idx)] = True
    jet = {"pt": [r[1] for r in rows], "eta": [r[2] for r in rows], "phi": [r[3] for r in rows],
           "energy": [r[4] for r in rows], "nConstituents": counts}
    if spec.label is not None:
        jet["label"] = np.full(n, spec.label)
    names = jet_field_names(spec)
    jf = np.stack([np.asarray(jet.get(k, np.zeros(n)), np.float32) for k in names], axis=1)
    ev = np.stack([np.ones(n, np.int64), np.full(n, chunk + 1, np.int64),
                   np.array([events[r[0]] for r in rows], np.int64)], axis=1)
    return Jets(cons, mask, jf, CONSTITUENT_COLUMNS, names, ev)


def substructure(jets: Jets) -> dict[str, np.ndarray]:
    """Soft-drop mass (GeV; beta 0, z_cut 0.1) and tau1..tau4 (beta 1, R0 0.8, exclusive-kT
    axes) of each jet from its stored, PUPPI-weighted constituents."""
    from jetfm.physics import observables as obs

    w = jets.c("puppiWeight")
    if np.any(jets.mask & (w != 1.0)):
        scaled = {k: jets.c(k) * w for k in ("px", "py", "pz", "E")}
        jets = jets.with_constituent_columns(**scaled)
    taus = obs.nsubjettiness(jets)
    if isinstance(taus, dict):
        tau = {f"tau{k}": np.asarray(taus[f"tau{k}"]) for k in range(1, 5)}
    else:
        taus = np.asarray(taus)
        tau = {f"tau{k}": taus[:, k - 1] for k in range(1, 5)}
    return {"msoftdrop": np.asarray(obs.softdrop_mass(jets)), **tau}


# ------------------------------------------------------------------------------ driving
_WORKER: dict = {}


def _worker_chunk(args) -> tuple[int, Jets]:
    """One chunk, in whichever process runs it; Pythia is initialised once per process."""
    spec, seed, index, n = args
    if _WORKER.get("key") != (spec, seed):
        _WORKER["gen"] = ChunkGenerator(spec, seed)
        _WORKER["key"] = (spec, seed)
    return index, _WORKER["gen"].chunk(index, n)


def chunk_sizes(n_jets: int, chunk_jets: int) -> list[int]:
    n_chunks = math.ceil(n_jets / chunk_jets)
    return [min(chunk_jets, n_jets - k * chunk_jets) for k in range(n_chunks)]


def iter_chunks(spec: SampleSpec, n_jets: int, seed: int, workers: int = 1,
                chunk_jets: int = DEFAULT_CHUNK_JETS, start_chunk: int = 0
                ) -> Iterator[tuple[int, Jets]]:
    """(chunk index, Jets) for chunks ``start_chunk..``, in order, generated by ``workers``
    processes."""
    sizes = chunk_sizes(n_jets, chunk_jets)
    tasks = [(spec, int(seed), k, sizes[k]) for k in range(start_chunk, len(sizes))]
    if not tasks:
        return
    workers = max(1, min(int(workers), len(tasks)))
    if workers == 1:
        for t in tasks:
            yield _worker_chunk(t)
        return
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    with ctx.Pool(workers) as pool:
        yield from pool.imap(_worker_chunk, tasks)


def generate_jets(spec: SampleSpec, n_jets: int, seed: int, workers: int = 1,
                  chunk_jets: int = DEFAULT_CHUNK_JETS) -> Jets:
    """``n_jets`` simulated jets in memory (no file)."""
    _check_n(n_jets)
    return Jets.concat([j for _, j in iter_chunks(spec, n_jets, seed, workers, chunk_jets)])


def provenance(spec: SampleSpec, kind: str, n_jets: int, seed: int, chunk_jets: int) -> dict:
    """File attributes: generator, process, settings, detector, jet definition, seed."""
    from jetfm import __version__
    from jetfm.simulate.pythia import COMMON_SETTINGS

    return {
        "producer": f"jetfm {__version__} simulate {kind}",
        "generator": pythia_version(),
        "process": spec.process.name,
        "pythia_settings": json.dumps(list(COMMON_SETTINGS) + list(spec.process.settings)),
        "detector": spec.detector.name,
        "detector_params": json.dumps(spec.detector.to_dict()),
        "sample_spec": json.dumps(spec.to_dict()),
        "jet_definition": f"anti-kT R={spec.jet_r}, {spec.pt_min} < pT < {spec.pt_max} GeV, "
                          f"|eta| < {spec.eta_max}",
        "seed": int(seed),
        "n_jets": int(n_jets),
        "chunk_jets": int(chunk_jets),
        "pileup_mu": float(spec.pileup),
        "tagger_columns": "ParticleNet score and mass columns are -1: no tagger is simulated",
        "event_info": "run 1 = simulation; luminosityBlock = chunk index + 1; event = event "
                      "number within the chunk",
        "units": "GeV; d0/dz in " + spec.detector.ip_unit,
    }


def _resume_key(attrs: dict) -> str:
    keep = ("producer", "generator", "process", "pythia_settings", "detector_params",
            "sample_spec", "seed", "n_jets", "chunk_jets")
    return json.dumps({k: attrs[k] for k in keep}, sort_keys=True)


def _check_n(n_jets) -> None:
    if isinstance(n_jets, bool) or not isinstance(n_jets, (int, np.integer)) or n_jets < 1:
        raise InputError(f"number of jets must be an integer >= 1, got {n_jets!r}")


def _check_common(n_jets, seed, workers) -> int:
    _check_n(n_jets)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) \
            or not 0 <= seed <= 2**32 - 1:
        raise InputError(f"seed must be an integer from 0 to {2**32 - 1}, got {seed!r}")
    if workers is None:
        workers = os.cpu_count() or 1
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1:
        raise InputError(f"workers must be an integer >= 1, got {workers!r}")
    return int(workers)


def _progress(total: int, initial: int, enabled: bool, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="jet", desc=desc, disable=not enabled,
                dynamic_ncols=True, smoothing=0.1)


def _run(spec, kind, n_jets, seed, out, workers, chunk_jets, progress,
         sink_class: type[ResumableAOJ] | type[StagedJetClass], desc: str) -> str:
    """Generate the chunks not written yet into ``sink_class`` (:mod:`jetfm.io.staging`)."""
    if isinstance(chunk_jets, bool) or not isinstance(chunk_jets, (int, np.integer)) \
            or chunk_jets < 1:
        raise InputError(f"jets per chunk must be an integer >= 1, got {chunk_jets!r}")
    attrs = provenance(spec, kind, n_jets, seed, chunk_jets)
    sizes = chunk_sizes(n_jets, chunk_jets)
    sink = sink_class(out, attrs, _resume_key(attrs), sizes)
    done = sink.done
    bar = _progress(n_jets, sum(sizes[:done]), progress, desc)
    try:
        for k, jets in iter_chunks(spec, n_jets, seed, workers, chunk_jets, done):
            sink.add(k, jets)
            bar.update(len(jets))
    except BaseException:
        bar.close()
        sink.abort()
        raise
    bar.close()
    return sink.close()


def _check_out(out, suffixes: tuple[str, ...], what: str) -> str:
    out = check_writable(out)
    if not out.lower().endswith(suffixes):
        raise InputError(f"output must be a {what} file ({' or '.join(suffixes)})", out)
    return out


def simulate_aoj_like(n_jets: int, seed: int, out: str | os.PathLike, workers: int | None = None,
                      pileup: float = 0.0, chunk_jets: int = DEFAULT_CHUNK_JETS,
                      progress: bool = True, spec: SampleSpec | None = None) -> str:
    """Simulate ``n_jets`` AOJ-like QCD jets into the AOJ HDF5 file ``out``; returns its path.

    workers: processes (default: all cores). pileup: mean pile-up interactions per event (0: off).
    Deterministic for a given seed (whatever the number of workers); a rerun after a crash
    continues from the complete chunks of ``out.partial``.
    """
    workers = _check_common(n_jets, seed, workers)
    if not (isinstance(pileup, (int, float)) and 0 <= pileup < 1000):
        raise InputError(f"pile-up mean must be a number in [0, 1000), got {pileup!r}")
    out = _check_out(out, (".h5", ".hdf5"), "AOJ HDF5")
    spec = spec or aoj_like_spec(float(pileup))

    return _run(spec, "aoj-like", int(n_jets), int(seed), out, workers, chunk_jets, progress,
                ResumableAOJ, "aoj-like")


def simulate_jetclass_like(process: str, n_jets: int, seed: int, out: str | os.PathLike,
                           workers: int | None = None, chunk_jets: int = DEFAULT_CHUNK_JETS,
                           progress: bool = True) -> str:
    """Simulate ``n_jets`` JetClass-like jets of ``process`` ('top' or 'qcd') into the JetClass
    ROOT file ``out``; returns its path. Labels: jet field ``label`` (QCD 0, Tbqq 8)."""
    spec = jetclass_like_spec(process)
    workers = _check_common(n_jets, seed, workers)
    out = _check_out(out, (".root",), "JetClass ROOT")

    return _run(spec, "jetclass-like", int(n_jets), int(seed), out, workers, chunk_jets,
                progress, StagedJetClass, f"jetclass-like {process}")
