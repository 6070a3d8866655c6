"""Pythia 8 event generation for the built-in samples: process settings, seeding, and fast
extraction of the stable particles as NumPy arrays.

Event generation is the cost of every simulated sample, and reading a Pythia event particle by
particle from Python costs about a third of the generation itself. So each event is first
clustered at truth level in C++ (Pythia's ``SlowJet``, which runs fjcore's anti-kT) with a radius
larger than the analysis radius, and only the particles of the hard truth jets (the region of
interest, RoI) are copied to NumPy. An analysis jet (anti-kT, R = 0.8, on detector candidates)
contains particles up to about R from its axis, so with ``roi_radius`` = 1.2 it sees the same
particles as with the whole event; ``tests/simulate`` checks that. ``roi_radius = 0`` switches
the RoI off and copies every stable particle.

Particle arrays (:data:`PARTICLE_FIELDS`): ``dict[str, np.ndarray]`` of shape ``(M,)``:
``px, py, pz, E`` in GeV, ``pdgId`` (int), ``charge`` (units of e), ``vx, vy, vz`` the
production vertex in mm (Pythia's unit), ``event`` (int, the event index in a batch) and ``pu``
(bool, True for particles of a pile-up interaction).
"""
from __future__ import annotations

import contextlib
import functools
import math
import os
import sys
from dataclasses import asdict, dataclass, field

import numpy as np

from jetfm.seeding import derive_seed as _derive_seed

PARTICLE_FIELDS = ("px", "py", "pz", "E", "pdgId", "charge", "vx", "vy", "vz", "event", "pu")


@dataclass(frozen=True)
class ProcessSettings:
    """One generator configuration.

    name: the process name stored in file attributes.
    settings: Pythia ``readString`` lines (beyond the common ones in :data:`COMMON_SETTINGS`).
    truth_jet_ptmin: GeV; events whose hardest truth jet (radius ``roi_radius``, visible stable
        particles) is below this are skipped without detector simulation. Set well below the
        analysis threshold, since the detector-level jet pT scatters around the truth pT by about
        10 %.
    roi_radius: radius of the truth jets that define the region of interest (0 = whole event).
    roi_eta_max: |rapidity| limit of the truth jets that define the RoI (analysis jets have
        |eta| < 2.5; truth and detector axes agree within a few hundredths).
    particle_eta_max: |eta| limit of the particles read at all: a jet with |eta| < 2.5 and
        R = 0.8 holds none beyond 3.3 (0.1 of margin). Forward particles are numerous, so this
        saves clustering and copying.
    roi_neighbour_dr: truth jets with an axis this close to a hard one join the RoI. A particle
        within R = 0.8 of a hard jet A can only be taken by a softer jet B (anti-kT) if
        dR(p, B) < dR(p, A) pT_B / pT_A < 0.8, so B lies within 1.6 of A; and since a softer jet
        cannot sit inside A's cone (anti-kT jets of hard particles are cones), B must also hold
        at least about half of A's pT: only truth jets above 0.4 * truth_jet_ptmin are considered.
    """
    name: str
    settings: tuple[str, ...]
    truth_jet_ptmin: float
    roi_radius: float = 1.2
    roi_eta_max: float = 2.7
    particle_eta_max: float = 3.4
    roi_neighbour_dr: float = 1.6

    def to_dict(self) -> dict:
        return asdict(self)


#: applied to every process: 13 TeV pp, the Monash 2013 tune (Pythia's default, the basis of
#: CMS's CP5), multiparton interactions and hadronisation on (the defaults), quiet output.
COMMON_SETTINGS = (
    "Beams:eCM = 13000.",
    "Tune:pp = 14",
    "PartonLevel:MPI = on",
    "HadronLevel:all = on",
    "Next:numberCount = 0",
    "Next:numberShowEvent = 0",
    "Next:numberShowInfo = 0",
    "Next:numberShowProcess = 0",
    "Print:quiet = on",
    "Random:setSeed = on",
)

#: QCD multijets for the AOJ-like sample (jets with pT > 300 GeV). pTHatMin = 250 GeV keeps the
#: detector-level jet spectrum falling from 300 GeV with no turn-on above it (tests check the
#: spectrum falls), while few events are spent on jets that cannot pass.
AOJ_QCD = ProcessSettings(
    name="qcd_dijet",
    settings=("HardQCD:all = on", "PhaseSpace:pTHatMin = 250."),
    # detector-level R = 0.8 jet pT / RoI truth jet (R = 1.2) pT: median 0.99, 99 % below 1.10,
    # maximum 1.13 in 525 jets above 300 GeV; 250 GeV (a ratio of 1.2) loses none in practice
    truth_jet_ptmin=250.0,
)

#: t tbar with both W bosons decaying to quarks (JetClass ``TTBar``: t -> b q q').
JETCLASS_TOP = ProcessSettings(
    name="ttbar_allhad",
    settings=("Top:gg2ttbar = on", "Top:qqbar2ttbar = on", "PhaseSpace:pTHatMin = 400.",
              "24:onMode = off", "24:onIfAny = 1 2 3 4 5"),
    truth_jet_ptmin=420.0,  # 500 GeV / 1.2, as for AOJ_QCD
)

#: Z(-> nu nu) + jet (JetClass ``ZJetsToNuNu``): the recoiling parton shower is the QCD jet.
JETCLASS_QCD = ProcessSettings(
    name="zjets_nunu",
    settings=("WeakBosonAndParton:qqbar2gmZg = on", "WeakBosonAndParton:qg2gmZq = on",
              "WeakZ0:gmZmode = 2", "PhaseSpace:pTHatMin = 450.",
              "23:onMode = off", "23:onIfAny = 12 14 16"),
    truth_jet_ptmin=420.0,
)

#: minimum-bias interactions overlaid as pile-up
MINBIAS = ProcessSettings(name="minbias", settings=("SoftQCD:nonDiffractive = on",),
                          truth_jet_ptmin=0.0, roi_radius=0.0)

PROCESSES = {"aoj_qcd": AOJ_QCD, "top": JETCLASS_TOP, "qcd": JETCLASS_QCD, "minbias": MINBIAS}


#: a Pythia seed (1..9e8) derived from the user seed and a path (chunk index, stream):
#: :func:`jetfm.seeding.derive_seed` in its "pythia" convention
derive_seed = functools.partial(_derive_seed, convention="pythia")


def pythia_version() -> str:
    import importlib.metadata

    try:
        return "pythia8mc " + importlib.metadata.version("pythia8mc")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - installed from source
        return "pythia8mc"


def make_pythia(process: ProcessSettings, seed: int):
    """An initialised, quiet ``pythia8mc.Pythia`` for ``process`` with a Pythia seed."""
    import pythia8mc

    p = pythia8mc.Pythia("", False)
    for line in (*COMMON_SETTINGS, f"Random:seed = {int(seed)}", *process.settings):
        if not p.readString(line):
            raise RuntimeError(f"Pythia rejected setting '{line}'")
    if not p.init():
        raise RuntimeError(f"Pythia failed to initialise for process {process.name}")
    return p


@contextlib.contextmanager
def quiet_stdout():
    """Silence output written by C++ to file descriptor 1 (banners), then restore it."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


@dataclass
class TruthJet:
    """A truth-level jet of the RoI clustering: pT in GeV, rapidity, phi in radians."""
    pt: float
    y: float
    phi: float


@dataclass
class Event:
    """One generated event: its stable visible particles in the RoI (particle arrays without the
    ``event`` field), the hard truth jets, and the hard partons used for labelling
    (``partons``: list of ``(pdgId, role, eta, phi)``)."""
    particles: dict[str, np.ndarray]
    truth_jets: list[TruthJet]
    partons: list = field(default_factory=list)


class EventGenerator:
    """Generates events of one process and hands back their particles as arrays.

    ``next()`` returns an :class:`Event`, or None for an event with no truth jet above
    ``process.truth_jet_ptmin`` (nothing copied, nothing to simulate).
    """

    def __init__(self, process: ProcessSettings, seed: int, keep_partons: bool = False):
        import pythia8mc

        self.process = process
        self.pythia = make_pythia(process, seed)
        self.keep_partons = keep_partons
        self._species: dict[int, tuple[float, float]] = {}
        self.n_generated = 0
        self.n_failed = 0
        self._banner_pending = True
        r = process.roi_radius
        # anti-kT (power -1) over visible final-state particles (select = 2), true masses (2)
        self._slowjet = (pythia8mc.SlowJet(-1, r, process.truth_jet_ptmin * 0.4,
                                            process.particle_eta_max, 2, 2)
                         if r > 0 else None)

    def generate(self) -> bool:
        """Advance to the next event; False if Pythia failed (the caller just asks again)."""
        ok = self.pythia.next()
        self.n_generated += 1
        if not ok:
            self.n_failed += 1
        return ok

    def next(self) -> Event | None:
        while not self.generate():
            if self.n_failed > 1000:
                raise RuntimeError("Pythia failed to generate 1000 events")
        return self.current()

    def current(self) -> Event | None:
        ev = self.pythia.event
        proc = self.process
        if self._slowjet is None:
            idx = [i for i in range(ev.size()) if ev[i].isFinal()]
            truth = []
        else:
            sj = self._slowjet
            if self._banner_pending:  # fjcore prints its banner to C stdout on first use
                with quiet_stdout():
                    sj.analyze(ev)
                self._banner_pending = False
            else:
                sj.analyze(ev)
            truth = [TruthJet(sj.pT(j), sj.y(j), sj.phi(j)) for j in range(sj.sizeJet())]
            hard = [j for j, t in enumerate(truth)
                    if t.pt >= proc.truth_jet_ptmin and abs(t.y) < proc.roi_eta_max]
            if not hard:
                return None
            # RoI: the particles of the hard truth jets and of every jet whose axis lies within
            # roi_neighbour_dr of a hard one (anti-kT may hand such a jet particles that lie
            # within the analysis radius of the hard jet)
            keep = set(hard)
            for j, t in enumerate(truth):
                if j in keep:
                    continue
                for h in hard:
                    dphi = abs(t.phi - truth[h].phi)
                    dphi = min(dphi, 2 * math.pi - dphi)
                    if (t.y - truth[h].y) ** 2 + dphi ** 2 < proc.roi_neighbour_dr ** 2:
                        keep.add(j)
                        break
            idx = sorted(i for j in keep for i in sj.constituents(j))
            truth = [truth[h] for h in hard]
        particles = self._copy(ev, idx)
        partons = self._partons(ev) if self.keep_partons else []
        return Event(particles, truth, partons)

    def _copy(self, ev, idx) -> dict[str, np.ndarray]:
        # Calls into Pythia dominate this loop, so make as few as possible: the energy comes from
        # the (exact, zero-width) mass of the stable species, the vertex only for charged
        # particles, and y, z only when x is non-zero (prompt particles sit exactly at 0).
        # Unbound pybind methods called directly skip an attribute lookup per call (~15 %).
        import pythia8mc

        part = pythia8mc.Particle
        get, px, py, pz, pid_of = type(ev).__getitem__, part.px, part.py, part.pz, part.id
        x_of, y_of, z_of = part.xProd, part.yProd, part.zProd
        table = self._species
        rows = []
        append = rows.append
        for i in idx:
            q = get(ev, i)
            pid = pid_of(q)
            sp = table.get(pid)
            if sp is None:
                sp = table[pid] = self._species_entry(pid)
            if sp[0] != 0.0:
                x = x_of(q)
                if x != 0.0:
                    append((px(q), py(q), pz(q), pid, x, y_of(q), z_of(q)))
                    continue
            append((px(q), py(q), pz(q), pid, 0.0, 0.0, 0.0))
        a = np.array(rows, np.float64).reshape(-1, 7)
        pid = a[:, 3].astype(np.int32)
        uniq, inv = np.unique(pid, return_inverse=True)
        props = np.array([table[int(k)] for k in uniq], np.float64).reshape(-1, 2)[inv.ravel()]
        e = np.sqrt(a[:, 0] ** 2 + a[:, 1] ** 2 + a[:, 2] ** 2 + props[:, 1] ** 2)
        return {"px": a[:, 0], "py": a[:, 1], "pz": a[:, 2], "E": e, "pdgId": pid,
                "charge": props[:, 0].astype(np.float32), "vx": a[:, 4], "vy": a[:, 5],
                "vz": a[:, 6], "pu": np.zeros(len(pid), bool)}

    def _species_entry(self, pid: int) -> tuple[float, float]:
        """(charge, mass) of a stable species."""
        pd = self.pythia.particleData
        return float(pd.charge(pid)), float(pd.m0(pid))

    def all_final(self, eta_max: float) -> dict[str, np.ndarray]:
        """Every stable visible particle of the current event with |eta| < eta_max (used for
        pile-up, whose particles spread over the whole detector)."""
        ev = self.pythia.event
        idx = [i for i in range(ev.size())
               if ev[i].isFinal() and ev[i].isVisible() and abs(ev[i].eta()) < eta_max]
        return self._copy(ev, idx)

    def _partons(self, ev) -> list:
        """(pdgId, role, eta, phi) of each top quark (role 'top', its last copy), its b ('b')
        and the quarks from its W ('q'); roles are tagged with the top's index."""
        out = []
        for i in range(ev.size()):
            q = ev[i]
            if q.idAbs() != 6 or q.iBotCopyId() != i:
                continue
            out.append((q.id(), f"top{i}", q.eta(), q.phi()))
            for d in q.daughterList():
                dq = ev[d]
                if dq.idAbs() == 5:
                    b = ev[dq.iBotCopyId()]
                    out.append((b.id(), f"b{i}", b.eta(), b.phi()))
                elif dq.idAbs() == 24:
                    w = ev[dq.iBotCopyId()]
                    for wd in w.daughterList():
                        x = ev[wd]
                        out.append((x.id(), f"q{i}", x.eta(), x.phi()))
        return out
