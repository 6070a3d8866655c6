"""The AOJ event and jet selection, and its cut flow (events and jets after each step).

Steps, in order (Aspen Open Jets, arXiv:2412.10504), each configurable and on by default as in AOJ:

1. certified luminosity: a CMS golden JSON (off when none is given; the cut flow says so);
2. trigger: the logical OR of :data:`AOJ_TRIGGERS` (2016 JetHT single-jet, AK8, HT and
   dijet-average paths). A listed trigger whose branch is absent from a file is skipped and
   counted. **If no listed trigger exists in a file at all, every event of that file fails**
   (the OR of nothing is false: a file without the analysis triggers cannot be trusted to be
   the intended data) and the cut flow notes it; pass ``triggers=None`` (``--triggers none``)
   to drop the step, e.g. for simulation made without the trigger menu. Names may hold shell
   wildcards (``HLT_AK8PFJet*``), matched against the file's branches;
3. MET filters: the logical AND of :data:`AOJ_MET_FILTERS` (absent branches skipped, counted);
4. FatJet pT > 300 GeV; 5. |eta| < 2.5; 6. jetId == 6 (tight + lepton veto bits);
7. at least one PF candidate stored for the jet (an AOJ jet without constituents is useless).

Event steps count the events passing and all FatJets in them; jet steps count the jets passing
and the events with at least one such jet.
"""
from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import asdict, dataclass

import numpy as np

from jetfm.errors import InputError
from jetfm.io.nanoaod import PFNanoChunk
from jetfm.production.lumimask import LumiMask

#: 2016 JetHT primary-dataset paths of eras G and H (single jet, AK8 jet/HT with and without
#: trimmed mass, HT, dijet average): the trigger families AOJ ORed
AOJ_TRIGGERS: tuple[str, ...] = (
    *(f"HLT_PFJet{t}" for t in (40, 60, 80, 140, 200, 260, 320, 400, 450, 500)),
    *(f"HLT_AK8PFJet{t}" for t in (40, 60, 80, 140, 200, 260, 320, 400, 450, 500)),
    "HLT_AK8PFJet360_TrimMass30", "HLT_AK8PFJet400_TrimMass30",
    "HLT_AK8PFHT650_TrimR0p1PT0p03Mass50", "HLT_AK8PFHT700_TrimR0p1PT0p03Mass50",
    "HLT_AK8PFHT750_TrimMass50", "HLT_AK8PFHT800_TrimMass50",
    "HLT_AK8DiPFJet250_200_TrimMass30", "HLT_AK8DiPFJet280_200_TrimMass30",
    "HLT_AK8DiPFJet300_200_TrimMass30",
    *(f"HLT_PFHT{t}" for t in (125, 200, 250, 300, 350, 400, 475, 600, 650, 800, 900)),
    "HLT_PFHT650_WideJetMJJ900DEtaJJ1p5", "HLT_PFHT650_WideJetMJJ950DEtaJJ1p5",
    *(f"HLT_DiPFJetAve{t}" for t in (40, 60, 80, 140, 200, 260, 320, 400, 500)),
    *(f"HLT_DiPFJetAve{t}_HFJEC" for t in (60, 80, 100, 160, 220, 300)),
    "HLT_CaloJet500_NoJetID",
)
AOJ_MET_FILTERS: tuple[str, ...] = (
    "Flag_goodVertices", "Flag_globalSuperTightHalo2016Filter", "Flag_HBHENoiseFilter",
    "Flag_HBHENoiseIsoFilter", "Flag_EcalDeadCellTriggerPrimitiveFilter",
    "Flag_BadPFMuonFilter", "Flag_eeBadScFilter",
)
STEPS = ("all", "lumi", "trigger", "met_filters", "pt", "eta", "jet_id", "constituents")


@dataclass(frozen=True)
class Selection:
    """AOJ selection settings. ``triggers``/``met_filters`` None (or empty) turn a step off;
    ``lumi_json`` None turns the certified-luminosity step off. ``n_max``: constituents kept."""
    lumi_json: str | None = None
    triggers: tuple[str, ...] | None = AOJ_TRIGGERS
    met_filters: tuple[str, ...] | None = AOJ_MET_FILTERS
    pt_min: float = 300.0          # GeV
    abs_eta_max: float = 2.5
    jet_id: int = 6
    n_max: int = 150

    def to_dict(self) -> dict:
        d = asdict(self)
        for k in ("triggers", "met_filters"):
            d[k] = list(d[k]) if d[k] else None
        return d

    def labels(self) -> dict[str, str]:
        """Readable name of each cut-flow step."""
        return {
            "all": "all events",
            "lumi": "certified lumi sections" + ("" if self.lumi_json else " (off: no JSON)"),
            "trigger": "trigger OR" + ("" if self.triggers else " (off)"),
            "met_filters": "MET filters" + ("" if self.met_filters else " (off)"),
            "pt": f"FatJet pT > {self.pt_min:g} GeV",
            "eta": f"FatJet |eta| < {self.abs_eta_max:g}",
            "jet_id": f"FatJet jetId == {self.jet_id}",
            "constituents": ">= 1 PF candidate",
        }


def resolve(names: Iterable[str] | None, branches: Iterable[str]) -> tuple[list[str], list[str]]:
    """(present branches, absent names) for a trigger or filter list; wildcards expand over the
    file's branches (a pattern that matches nothing counts as absent)."""
    if not names:
        return [], []
    branches = sorted(branches)
    present: list[str] = []
    absent: list[str] = []
    have = set(branches)
    for n in names:
        if any(ch in n for ch in "*?["):
            hits = fnmatch.filter(branches, n)
            present.extend(hits) if hits else absent.append(n)
        elif n in have:
            present.append(n)
        else:
            absent.append(n)
    return list(dict.fromkeys(present)), absent


def event_branches(sel: Selection, branches: Iterable[str]) -> list[str]:
    """The per-event branches the selection needs from a file with ``branches``."""
    branches = list(branches)
    return resolve(sel.triggers, branches)[0] + resolve(sel.met_filters, branches)[0]


class CutFlow:
    """Events and jets after each step (:data:`STEPS`), summable over inputs, plus notes
    (absent trigger/filter branches and in how many inputs)."""

    def __init__(self, events: dict | None = None, jets: dict | None = None,
                 notes: dict | None = None, inputs: int = 0):
        self.events = {s: int((events or {}).get(s, 0)) for s in STEPS}
        self.jets = {s: int((jets or {}).get(s, 0)) for s in STEPS}
        self.notes = {"triggers_absent": {}, "met_filters_absent": {},
                      "inputs_without_any_trigger": 0, **(notes or {})}
        self.inputs = inputs

    def __iadd__(self, other: CutFlow) -> CutFlow:
        for s in STEPS:
            self.events[s] += other.events[s]
            self.jets[s] += other.jets[s]
        for k in ("triggers_absent", "met_filters_absent"):
            for name, n in other.notes[k].items():
                self.notes[k][name] = self.notes[k].get(name, 0) + n
        self.notes["inputs_without_any_trigger"] += other.notes["inputs_without_any_trigger"]
        self.inputs += other.inputs
        return self

    @classmethod
    def total(cls, flows: Iterable[CutFlow]) -> CutFlow:
        out = cls()
        for f in flows:
            out += f
        return out

    def to_dict(self) -> dict:
        return {"events": dict(self.events), "jets": dict(self.jets), "notes": self.notes,
                "inputs": self.inputs}

    @classmethod
    def from_dict(cls, d: dict) -> CutFlow:
        notes = {k: (dict(v) if isinstance(v, dict) else v) for k, v in d["notes"].items()}
        return cls(d["events"], d["jets"], notes, d.get("inputs", 0))

    def to_markdown(self, sel: Selection) -> str:
        labels = sel.labels()
        lines = ["| step | events | jets | jets / all |", "|---|---:|---:|---:|"]
        all_jets = max(self.jets["all"], 1)
        for s in STEPS:
            lines.append(f"| {labels[s]} | {self.events[s]} | {self.jets[s]} | "
                         f"{self.jets[s] / all_jets:.3f} |")
        notes = []
        if not sel.lumi_json:
            notes.append("No certified-luminosity JSON given: the lumi-mask step is off.")
        if self.notes["inputs_without_any_trigger"]:
            notes.append(f"{self.notes['inputs_without_any_trigger']} of {self.inputs} input(s) "
                         "hold none of the listed triggers: all their events fail the trigger "
                         "step (use --triggers none to drop it).")
        for k, what in (("triggers_absent", "trigger"), ("met_filters_absent", "MET filter")):
            if self.notes[k]:
                absent = ", ".join(f"{n} ({c})" for n, c in sorted(self.notes[k].items()))
                notes.append(f"Absent {what} branches skipped (number of inputs): {absent}.")
        return "\n".join(lines + [""] + [f"- {n}" for n in notes]) + "\n"


def apply_selection(chunk: PFNanoChunk, sel: Selection, branches: Iterable[str],
                    lumi: LumiMask | None = None) -> tuple[np.ndarray, CutFlow]:
    """(J,) bool mask of the selected FatJets of ``chunk`` and the chunk's cut flow.

    ``branches``: the file's branch names (to tell absent trigger/filter branches).
    The cut flow's notes are per file: add them once per input (the caller does).
    """
    if sel.lumi_json and lumi is None:
        raise InputError("a lumi JSON is configured but no LumiMask was given")
    branches = list(branches)
    ev = np.ones(chunk.n_events, bool)
    jet_event = chunk.jet_event
    events, jets = {}, {}

    def record_events(step):
        events[step] = int(ev.sum())
        jets[step] = int(ev[jet_event].sum())

    trig_present, trig_absent = resolve(sel.triggers, branches)
    filt_present, filt_absent = resolve(sel.met_filters, branches)
    unread = [b for b in trig_present + filt_present if b not in chunk.events]
    if unread:  # a caller error: read_pfnano(event_branches=event_branches(sel, branches))
        raise InputError(f"branches needed by the selection were not read: {unread[:3]}",
                         chunk.path)
    record_events("all")
    if lumi is not None:
        ev &= lumi(chunk.events["run"], chunk.events["luminosityBlock"])
    record_events("lumi")
    no_trigger = bool(sel.triggers) and not trig_present
    if sel.triggers:
        fired = np.zeros(chunk.n_events, bool)
        for name in trig_present:
            fired |= chunk.events[name].astype(bool)
        ev &= fired
    record_events("trigger")
    for name in filt_present:
        ev &= chunk.events[name].astype(bool)
    record_events("met_filters")

    j = chunk.jets
    jet = ev[jet_event]
    cuts = {"pt": j["pt"] > sel.pt_min, "eta": np.abs(j["eta"]) < sel.abs_eta_max,
            "jet_id": j["jetId"] == sel.jet_id, "constituents": chunk.n_links > 0}
    for step in ("pt", "eta", "jet_id", "constituents"):
        jet &= cuts[step]
        jets[step] = int(jet.sum())
        events[step] = int(np.unique(jet_event[jet]).size)
    notes = {"triggers_absent": {n: 1 for n in trig_absent},
             "met_filters_absent": {n: 1 for n in filt_absent},
             "inputs_without_any_trigger": int(no_trigger)}
    return jet, CutFlow(events, jets, notes)
