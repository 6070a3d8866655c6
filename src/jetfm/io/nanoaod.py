"""CMS PFNano NanoAOD: AK8 jets (``FatJet``) with their PF candidates, read with uproot + awkward.

PFNano stores the jets' constituents in one of two flavours, both handled here:

- **index** (the flavour AspenOpenJets was built from): a link table ``FatJetPFCands_jetIdx``
  (the FatJet of the link, within the event) and ``FatJetPFCands_pFCandsIdx`` (the candidate,
  within the event's ``PFCands`` collection); the kinematics live in ``PFCands_*``.
- **inline**: ``FatJetPFCands_jetIdx`` plus the candidate kinematics copied into
  ``FatJetPFCands_pt, _eta, _phi, _mass, _charge, _pdgId, _d0, ...``.

Plain NanoAOD (no PF candidates) is refused with an :class:`InputError` naming the missing
branches. Reads are by entry range, so a large file can be processed in pieces.

A :class:`PFNanoChunk` keeps everything flat (NumPy arrays over jets and over candidate links of
the whole entry range) so that the selection and the gathering of constituents are plain
vectorised NumPy; :func:`chunk_to_jets` turns the selected jets into :class:`Jets` with the AOJ
columns: ``px, py, pz, E`` (GeV, from pt, eta, phi, mass), ``d0, d0Err, dz, dzErr`` (cm; NaN
for candidates without a track, neutral ones above all; the AOJ writer stores -1), ``charge``,
``pdgId``, ``puppiWeight``;
constituents sorted by pT (highest first), at most ``n_max``; ``nConstituents`` is the full count.
"""
from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from jetfm.errors import InputError, require_file
from jetfm.io.aoj import JET_COLUMNS, PFCANDS_COLUMNS, TRACK_COLUMNS
from jetfm.jets import Jets

INDEX, INLINE = "index", "inline"
#: candidate fields read from PFNano (both flavours use these names)
CAND_FIELDS = ("pt", "eta", "phi", "mass", "charge", "pdgId", "d0", "d0Err", "dz", "dzErr",
               "puppiWeight")
FATJET_FIELDS = ("pt", "eta", "phi", "mass", "msoftdrop", "jetId")
EVENT_FIELDS = ("run", "luminosityBlock", "event")
#: AOJ jet_tagging column -> FatJet branch; -1 in the output where a branch is absent (the older
#: inline PFNano has no ParticleNet; no PFNano version here stores particleNet_mass)
TAGGING_BRANCHES = {
    "tau1": "FatJet_tau1", "tau2": "FatJet_tau2", "tau3": "FatJet_tau3", "tau4": "FatJet_tau4",
    "PN_H4qvsQCD": "FatJet_particleNet_H4qvsQCD", "PN_HbbvsQCD": "FatJet_particleNet_HbbvsQCD",
    "PN_HccvsQCD": "FatJet_particleNet_HccvsQCD", "PN_QCD": "FatJet_particleNet_QCD",
    "PN_TvsQCD": "FatJet_particleNet_TvsQCD", "PN_WvsQCD": "FatJet_particleNet_WvsQCD",
    "PN_ZvsQCD": "FatJet_particleNet_ZvsQCD", "PN_mass": "FatJet_particleNet_mass",
}
#: optional FatJet fields read when present (rawFactor: 1 - raw pT / corrected pT)
FATJET_OPTIONAL = ("FatJet_rawFactor",)

_COMMON = tuple(f"FatJet_{f}" for f in FATJET_FIELDS) + EVENT_FIELDS + ("FatJetPFCands_jetIdx",)
REQUIRED_BRANCHES = {
    INDEX: _COMMON + ("FatJetPFCands_pFCandsIdx",) + tuple(f"PFCands_{f}" for f in CAND_FIELDS),
    INLINE: _COMMON + tuple(f"FatJetPFCands_{f}" for f in CAND_FIELDS),
}


@dataclass(frozen=True)
class PFNanoFile:
    """What :func:`inspect_pfnano` learnt about one file (without reading any basket)."""
    path: str
    flavour: str                 # "index" or "inline"
    n_events: int
    branches: frozenset
    size: int                    # bytes
    mtime_ns: int


def _events_tree(path: str):
    """The ``Events`` tree of ``path``. Opening a PFNano tree costs seconds (about 1800 branch
    descriptions to parse), so each process keeps the last few opened, keyed by path, size and
    modification time (of the real file, links resolved): the entry ranges of one file then share
    one open."""
    require_file(path)
    st = os.stat(path)
    return _open_tree(os.path.realpath(path), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=4)
def _open_tree(path: str, size: int, mtime_ns: int):
    import uproot

    try:
        f = uproot.open(path)
    except Exception as err:  # uproot raises many types for a file that is not ROOT
        raise InputError(f"cannot open as a ROOT file ({type(err).__name__}: {err})", path) from err
    try:
        return f["Events"]
    except Exception as err:
        f.close()
        raise InputError(f"no readable 'Events' tree: not a NanoAOD file, or a truncated one "
                         f"({type(err).__name__})", path) from err


def detect_flavour(branches: Sequence[str] | frozenset, path: str) -> str:
    """``"index"`` or ``"inline"`` from a file's branch names; InputError naming what is missing."""
    names = frozenset(branches)
    for flavour in (INDEX, INLINE):
        if all(b in names for b in REQUIRED_BRANCHES[flavour]):
            return flavour
    missing = {fl: [b for b in REQUIRED_BRANCHES[fl] if b not in names] for fl in (INDEX, INLINE)}
    if not any(b.startswith(("FatJetPFCands_", "PFCands_")) for b in names):
        others = [b for b in missing[INDEX] if not b.startswith(("FatJetPFCands_", "PFCands_"))]
        raise InputError(
            "plain NanoAOD without PF candidates, not PFNano: missing branches "
            "FatJetPFCands_jetIdx, FatJetPFCands_pFCandsIdx and PFCands_{pt,eta,phi,mass,...} "
            "(index flavour) or FatJetPFCands_{pt,eta,phi,mass,...} (inline flavour)"
            + (f"; also missing {', '.join(others)}" if others else ""), path)
    best = min((INDEX, INLINE), key=lambda fl: len(missing[fl]))
    raise InputError(f"incomplete PFNano ({best} flavour): missing branches "
                     + ", ".join(missing[best]), path)


def inspect_pfnano(path: str | os.PathLike) -> PFNanoFile:
    """Open ``path``, check it is PFNano and return its flavour and size. Raises InputError."""
    p = os.fspath(path)
    tree = _events_tree(p)
    branches = frozenset(tree.keys())
    flavour = detect_flavour(branches, p)
    n = int(tree.num_entries)
    st = os.stat(p)
    return PFNanoFile(p, flavour, n, branches, st.st_size, st.st_mtime_ns)


@dataclass
class PFNanoChunk:
    """An entry range of a PFNano file, flattened.

    ``events``: per-event arrays (E,) (run, luminosityBlock, event and any requested HLT_/Flag_
    branches). ``jet_counts``: (E,) FatJets per event. ``jets``: flat FatJet fields (J,) with
    J = jet_counts.sum() (pt, eta, phi, mass in GeV; msoftdrop; jetId; tagging branches present).
    ``cand_jet``: (C,) flat FatJet index of each candidate link (-1 for a dangling link).
    ``cands``: flat candidate fields (C,) as in :data:`CAND_FIELDS`.
    """
    path: str
    flavour: str
    entry_start: int
    n_events: int
    events: dict[str, np.ndarray]
    jet_counts: np.ndarray
    jets: dict[str, np.ndarray]
    cand_jet: np.ndarray
    cands: dict[str, np.ndarray]
    meta: dict = field(default_factory=dict)

    @property
    def jet_event(self) -> np.ndarray:
        """(J,) event index (within the chunk) of each FatJet."""
        return np.repeat(np.arange(self.n_events), self.jet_counts)

    @property
    def n_links(self) -> np.ndarray:
        """(J,) number of candidate links of each FatJet (its full constituent count)."""
        ok = self.cand_jet >= 0
        return np.bincount(self.cand_jet[ok], minlength=len(self.jets["pt"]))


def _flat(arr) -> tuple[np.ndarray, np.ndarray]:
    """Jagged awkward array -> (flat values, counts), straight from the layout's buffers (the
    generic ak.flatten/ak.num cost as much as decompressing a small basket)."""
    import awkward as ak

    layout = arr.layout
    if isinstance(layout, ak.contents.ListOffsetArray) and isinstance(
            layout.content, ak.contents.NumpyArray):
        off = np.asarray(layout.offsets)
        return np.asarray(layout.content.data)[off[0]:off[-1]], np.diff(off)
    return ak.to_numpy(ak.flatten(arr, axis=1)), ak.to_numpy(ak.num(arr, axis=1))


def read_pfnano(path: str | os.PathLike, entry_start: int = 0, entry_stop: int | None = None,
                event_branches: Sequence[str] = (), flavour: str | None = None) -> PFNanoChunk:
    """Read entries ``entry_start..entry_stop`` of a PFNano file.

    ``event_branches``: extra per-event branches to read (trigger bits, MET filters); the caller
    asks only for branches that exist (see :attr:`PFNanoFile.branches`).
    """
    p = os.fspath(path)
    tree = _events_tree(p)
    keys = frozenset(tree.keys())
    flavour = flavour or detect_flavour(keys, p)
    jet_extra = [b for b in (*TAGGING_BRANCHES.values(), *FATJET_OPTIONAL) if b in keys]
    names = list(dict.fromkeys((*REQUIRED_BRANCHES[flavour], *jet_extra, *event_branches)))
    missing = [b for b in names if b not in keys]
    if missing:
        raise InputError(f"missing branches {', '.join(missing)}", p)
    stop = tree.num_entries if entry_stop is None else min(entry_stop, tree.num_entries)
    try:
        arrs = tree.arrays(names, entry_start=entry_start, entry_stop=stop, how=dict)
    except Exception as err:
        raise InputError(f"cannot read entries {entry_start}..{stop}: corrupted or truncated "
                         f"data ({type(err).__name__}: {' '.join(str(err).split())[:200]})",
                         p) from err
    return _flatten_chunk(p, flavour, entry_start, stop - entry_start, arrs, event_branches)


def _flatten_chunk(path, flavour, start, n_events, arrs, event_branches) -> PFNanoChunk:
    events = {k: np.asarray(arrs[k]) for k in (*EVENT_FIELDS, *event_branches)}
    jets: dict[str, np.ndarray] = {}
    counts = np.zeros(n_events, np.int64)
    for name, arr in arrs.items():
        if name.startswith("FatJet_"):
            jets[name[len("FatJet_"):]], counts = _flat(arr)
    jet_offsets = np.concatenate([[0], np.cumsum(counts)])
    jet_idx, link_counts = _flat(arrs["FatJetPFCands_jetIdx"])
    link_event = np.repeat(np.arange(n_events), link_counts)
    # a link must point at an existing FatJet of its event; anything else is dangling (-1)
    ok = (jet_idx >= 0) & (jet_idx < counts[link_event])
    cand_jet = np.where(ok, jet_offsets[link_event] + jet_idx, -1).astype(np.int64)
    if flavour == INDEX:
        pf_idx, _ = _flat(arrs["FatJetPFCands_pFCandsIdx"])
        first, pf_counts = _flat(arrs["PFCands_pt"])
        pf_offsets = np.concatenate([[0], np.cumsum(pf_counts)])
        in_range = (pf_idx >= 0) & (pf_idx < pf_counts[link_event])
        cand_jet[~in_range] = -1
        gather = np.where(in_range, pf_offsets[link_event] + pf_idx, 0)
        cands = {f: (first if f == "pt" else _flat(arrs[f"PFCands_{f}"])[0])[gather]
                 for f in CAND_FIELDS}
    else:
        cands = {f: _flat(arrs[f"FatJetPFCands_{f}"])[0] for f in CAND_FIELDS}
    return PFNanoChunk(path, flavour, start, n_events, events, counts.astype(np.int64), jets,
                       cand_jet, cands)


def _gather(chunk: PFNanoChunk, jet_mask: np.ndarray, n_max: int):
    """The selected jets' constituents, flat and sorted: ``flat`` (L, 11) float32 AOJ columns
    (NaN track columns for candidates without a track), ``row`` (L,) jet row, ``pos`` (L,)
    slot within the jet (< n_max); the full counts (N,); the jet fields (N, 17) float32 in
    :data:`JET_COLUMNS` order; ``event_info`` (N, 3) int64."""
    sel = np.flatnonzero(jet_mask)
    n = len(sel)
    row_of_jet = np.full(len(jet_mask), -1, np.int64)
    row_of_jet[sel] = np.arange(n)
    link = np.flatnonzero(chunk.cand_jet >= 0)
    row = row_of_jet[chunk.cand_jet[link]]
    link, row = link[row >= 0], row[row >= 0]

    c = {f: chunk.cands[f][link].astype(np.float64) for f in CAND_FIELDS}
    pt = c["pt"]
    px, py = pt * np.cos(c["phi"]), pt * np.sin(c["phi"])
    pz = pt * np.sinh(c["eta"])
    e = np.sqrt(px * px + py * py + pz * pz + c["mass"] ** 2)
    cols = {"px": px, "py": py, "pz": pz, "E": e, "charge": c["charge"], "pdgId": c["pdgId"],
            "puppiWeight": c["puppiWeight"]}
    # no track (a neutral, or PFNano's -1 in all four columns): NaN in memory, -1 on disk
    no_track = (c["charge"] == 0) | np.all([c[k] == -1 for k in TRACK_COLUMNS], axis=0)
    for k in TRACK_COLUMNS:
        cols[k] = np.where(no_track, np.nan, c[k])
    flat = np.stack([cols[k] for k in PFCANDS_COLUMNS], axis=1).astype(np.float32)
    # sort key: pT from the stored float32 px, py, exactly as AOJ readers recompute it, so that
    # near-ties never come out in another order on reading
    key = np.hypot(flat[:, PFCANDS_COLUMNS.index("px")], flat[:, PFCANDS_COLUMNS.index("py")])
    order = np.lexsort((-key, row))  # by jet, then pT descending; lexsort is stable
    flat, row = flat[order], row[order]
    n_full = np.bincount(row, minlength=n)
    starts = np.cumsum(n_full) - n_full
    pos = np.arange(len(row)) - starts[row]
    take = pos < n_max
    flat, row, pos = flat[take], row[take], pos[take]

    j = chunk.jets
    fields = {"pt": j["pt"][sel], "eta": j["eta"][sel], "phi": j["phi"][sel],
              "nConstituents": n_full}
    msd = j["msoftdrop"][sel]
    fields["msoftdrop"] = np.where(np.isfinite(msd) & (msd >= 0), msd, -1.0)
    for col, branch in TAGGING_BRANCHES.items():
        name = branch[len("FatJet_"):]
        fields[col] = j[name][sel] if name in j else np.full(n, -1.0)
    jet = np.stack([np.asarray(fields[k], np.float32) for k in JET_COLUMNS], axis=1)
    ev_rows = chunk.jet_event[sel]
    ev = np.stack([chunk.events[k][ev_rows].astype(np.int64) for k in EVENT_FIELDS], axis=1)
    return flat, row, pos, n_full, jet.reshape(n, len(JET_COLUMNS)), ev.reshape(n, 3)


def chunk_to_jets(chunk: PFNanoChunk, jet_mask: np.ndarray, n_max: int = 150) -> Jets:
    """The FatJets where ``jet_mask`` (J,) is True as :class:`Jets` with the AOJ columns.

    Constituents: sorted by pT (highest first; ties keep the file's order), at most ``n_max``,
    padded to the largest count in the chunk (the AOJ writer pads to 150). Four-momenta are the
    candidates' own (not PUPPI-weighted), as in AOJ. Jet fields: :data:`jetfm.io.aoj.JET_COLUMNS`
    with ``nConstituents`` the full count (may exceed ``n_max``), ``msoftdrop`` -1 where undefined
    (negative or non-finite), tagging columns -1 where the file lacks the branch.
    ``event_info``: (N, 3) run, luminosityBlock, event.
    """
    flat, row, pos, n_full, jet, ev = _gather(chunk, jet_mask, n_max)
    n = len(jet)
    p = int(min(n_full.max(initial=0), n_max))
    cons = np.zeros((n, p, len(PFCANDS_COLUMNS)), np.float32)
    cons[row, pos] = flat
    mask = np.zeros((n, p), bool)
    mask[row, pos] = True
    return Jets(cons, mask, jet, PFCANDS_COLUMNS, JET_COLUMNS, ev,
                {"format": "pfnano", "flavour": chunk.flavour, "source": chunk.path})


def chunk_to_rows(chunk: PFNanoChunk, jet_mask: np.ndarray, n_max: int = 150
                  ) -> dict[str, np.ndarray]:
    """The same jets as :func:`chunk_to_jets`, straight in the stored AOJ layout (what
    :func:`jetfm.io.aoj.jets_to_rows` makes of them, without the padded intermediate):
    ``PFCands`` (N, 150, 11) with -1 for missing track values and zero padding,
    ``jet_kinematics`` (N, 4), ``jet_tagging`` (N, 13), ``event_info`` (N, 3)."""
    from jetfm.io.aoj import N_MAX

    flat, row, pos, _, jet, ev = _gather(chunk, jet_mask, min(n_max, N_MAX))
    np.nan_to_num(flat, copy=False, nan=-1.0)
    cands = np.zeros((len(jet), N_MAX, len(PFCANDS_COLUMNS)), np.float32)
    cands[row, pos] = flat
    np.nan_to_num(jet, copy=False, nan=-1.0)
    return {"PFCands": cands, "jet_kinematics": jet[:, :4], "jet_tagging": jet[:, 4:],
            "event_info": ev}
