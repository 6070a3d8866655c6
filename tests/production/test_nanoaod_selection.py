"""PFNano reading (both flavours), the AOJ selection and its cut flow, the lumi mask: on the real
files, checked against direct uproot + awkward computations."""
from __future__ import annotations

import json

import awkward as ak
import numpy as np
import pytest

from jetfm.cli import main
from jetfm.errors import InputError
from jetfm.io.nanoaod import _events_tree, chunk_to_jets, inspect_pfnano, read_pfnano
from jetfm.production.lumimask import LumiMask
from jetfm.production.selection import (
    AOJ_MET_FILTERS,
    AOJ_TRIGGERS,
    CutFlow,
    Selection,
    apply_selection,
    event_branches,
)
from tests.conftest import NANOAOD_PLAIN, PFNANO_INDEX, PFNANO_INLINE

FILES = {"index": PFNANO_INDEX, "inline": PFNANO_INLINE}


@pytest.fixture(scope="module")
def chunks():
    out = {}
    for flavour, path in FILES.items():
        info = inspect_pfnano(path)
        assert info.flavour == flavour
        out[flavour] = (info, read_pfnano(path, event_branches=event_branches(Selection(),
                                                                               info.branches)))
    return out


def _direct_selection(path) -> tuple[ak.Array, ak.Array]:
    """Selected-jet mask (events x jets) straight from uproot, and the events array."""
    t = _events_tree(str(path))  # the same uproot tree, opened once (seconds) per session
    keys = set(t.keys())
    trig = [b for b in AOJ_TRIGGERS if b in keys]
    filt = [b for b in AOJ_MET_FILTERS if b in keys]
    a = t.arrays(["FatJet_pt", "FatJet_eta", "FatJet_jetId", "FatJetPFCands_jetIdx", *trig, *filt])
    ev = np.zeros(len(a), bool)
    for b in trig:
        ev |= ak.to_numpy(a[b])
    for b in filt:
        ev &= ak.to_numpy(a[b])
    jet = (a.FatJet_pt > 300) & (abs(a.FatJet_eta) < 2.5) & (a.FatJet_jetId == 6)
    return jet & ev, a


@pytest.mark.parametrize("flavour", ["index", "inline"])
def test_selected_jets_match_direct_uproot_count(chunks, flavour):
    info, chunk = chunks[flavour]
    mask, flow = apply_selection(chunk, Selection(), info.branches)
    direct, a = _direct_selection(FILES[flavour])
    assert mask.sum() == ak.sum(direct) == flow.jets["constituents"]
    np.testing.assert_array_equal(mask, ak.to_numpy(ak.flatten(direct)))
    jets = chunk_to_jets(chunk, mask)
    # full constituent count = number of links of the jet, counted directly
    idx = a.FatJetPFCands_jetIdx
    local = ak.local_index(a.FatJet_pt)
    counts = ak.sum(idx[:, None, :] == local[:, :, None], axis=-1)
    np.testing.assert_array_equal(jets.j("nConstituents"),
                                  ak.to_numpy(ak.flatten(counts[direct])))
    np.testing.assert_allclose(jets.j("pt"), ak.to_numpy(ak.flatten(a.FatJet_pt[direct])))
    assert (jets.n_constituents == np.minimum(jets.j("nConstituents"), 150)).all()


@pytest.mark.parametrize("flavour", ["index", "inline"])
def test_constituents_sorted_sentinels_and_tagging(chunks, flavour):
    info, chunk = chunks[flavour]
    mask, _ = apply_selection(chunk, Selection(), info.branches)
    jets = chunk_to_jets(chunk, mask)
    pt = np.hypot(jets.c("px"), jets.c("py"))
    assert (np.diff(np.where(jets.mask, pt, -1), axis=1) <= 1e-4).all()
    neutral = jets.mask & (jets.c("charge") == 0)
    assert neutral.any() and np.isnan(jets.c("d0")[neutral]).all()
    # charged candidates carry a track, except those PFNano stores without (-1 in all four)
    assert np.isfinite(jets.c("dz")[jets.mask & ~neutral]).mean() > 0.8
    assert set(np.unique(np.abs(jets.c("pdgId")[jets.mask]))) <= {1, 2, 11, 13, 22, 130, 211}
    assert (jets.j("tau1") >= 0).all() and (jets.j("PN_mass") == -1).all()
    has_pn = flavour == "index"  # the older inline PFNano carries no ParticleNet
    assert ((jets.j("PN_QCD") >= 0).all() if has_pn else (jets.j("PN_QCD") == -1).all())
    assert jets.event_info.shape == (len(jets), 3) and (jets.event_info[:, 0] == 1).all()


def test_index_flavour_gathers_the_pointed_candidates(chunks):
    """The first jet's constituents are PFCands[pFCandsIdx] of its links, as uproot sees them."""
    a = _events_tree(str(PFNANO_INDEX)).arrays(
        ["FatJetPFCands_jetIdx", "FatJetPFCands_pFCandsIdx", "PFCands_pt", "PFCands_pdgId"],
        entry_stop=1)
    links = a.FatJetPFCands_jetIdx[0] == 0
    want = a.PFCands_pt[0][a.FatJetPFCands_pFCandsIdx[0][links]]
    order = np.argsort(-ak.to_numpy(want), kind="stable")
    info, chunk = chunks["index"]
    jets = chunk_to_jets(chunk, np.arange(len(chunk.jets["pt"])) == 0)
    got = np.hypot(jets.c("px"), jets.c("py"))[0][jets.mask[0]]
    np.testing.assert_allclose(got, ak.to_numpy(want)[order], rtol=1e-5)
    np.testing.assert_array_equal(jets.c("pdgId")[0][jets.mask[0]],
                                  ak.to_numpy(a.PFCands_pdgId[0][a.FatJetPFCands_pFCandsIdx[0]
                                                                 [links]])[order])


@pytest.mark.parametrize("flavour", ["index", "inline"])
def test_constituent_sum_matches_fatjet(chunks, flavour):
    """PUPPI-weighted constituents add up to the raw (uncorrected) FatJet; unweighted ones to
    about 0.9 of the corrected pT, as AOJ documents."""
    info, chunk = chunks[flavour]
    mask, _ = apply_selection(chunk, Selection(), info.branches)
    jets = chunk_to_jets(chunk, mask)
    assert (jets.j("nConstituents") <= 150).all()  # no truncation: sums are complete
    w = jets.c("puppiWeight")
    px, py, pz, e = ((jets.c(k) * w).sum(1) for k in ("px", "py", "pz", "E"))
    raw = 1 - chunk.jets["rawFactor"][mask]
    ratio = np.hypot(px, py) / (jets.j("pt") * raw)
    assert np.abs(ratio - 1).max() < 0.02, np.percentile(ratio, [0, 50, 100])
    mass = np.sqrt(np.maximum(e ** 2 - px ** 2 - py ** 2 - pz ** 2, 0))
    mratio = mass / (chunk.jets["mass"][mask] * raw)
    assert np.abs(np.median(mratio) - 1) < 0.01 and np.abs(mratio - 1).max() < 0.05
    assert np.abs(np.arcsinh(pz / np.hypot(px, py)) - jets.j("eta")).max() < 0.01
    unweighted = np.hypot(jets.c("px").sum(1), jets.c("py").sum(1)) / jets.j("pt")
    assert 0.85 < np.median(unweighted) < 0.97 and (unweighted > 0.7).all()


def test_cutflow_numbers_index_file(chunks):
    info, chunk = chunks["index"]
    _, flow = apply_selection(chunk, Selection(), info.branches)
    # 10 events, 24 FatJets; Flag_EcalDeadCellTriggerPrimitiveFilter fails one 2-jet event;
    # 21 jets pass pT and |eta| (README), two of them in the vetoed event
    assert flow.events["all"] == 10 and flow.jets["all"] == 24
    assert flow.events["trigger"] == 10
    assert flow.events["met_filters"] == 9 and flow.jets["met_filters"] == 22
    assert flow.jets["jet_id"] == flow.jets["constituents"] == 19
    assert flow.notes["inputs_without_any_trigger"] == 0
    assert "HLT_PFHT900" in flow.notes["triggers_absent"]
    assert "HLT_AK8PFJet400" not in flow.notes["triggers_absent"]
    md = flow.to_markdown(Selection())
    assert "| FatJet pT > 300 GeV |" in md and "lumi-mask step is off" in md
    again = CutFlow.from_dict(json.loads(json.dumps(flow.to_dict())))
    again += flow
    assert again.jets["constituents"] == 38


def test_no_listed_trigger_fails_every_event_and_none_turns_it_off(chunks):
    info, chunk = chunks["inline"]
    sel = Selection(triggers=("HLT_NotInThisMenu",))
    mask, flow = apply_selection(chunk, sel, info.branches)
    assert not mask.any() and flow.events["trigger"] == 0
    assert flow.notes["inputs_without_any_trigger"] == 1
    assert "hold none of the listed triggers" in flow.to_markdown(sel)
    mask, flow = apply_selection(chunk, Selection(triggers=None), info.branches)
    assert flow.events["trigger"] == flow.events["lumi"] == 100
    # wildcards expand over the file's branches
    wild = Selection(triggers=("HLT_AK8PFJet*",))
    with pytest.raises(InputError, match="not read"):
        apply_selection(chunk, wild, info.branches)
    chunk = read_pfnano(PFNANO_INLINE, event_branches=event_branches(wild, info.branches))
    mask_w, _ = apply_selection(chunk, wild, info.branches)
    assert 0 < mask_w.sum() <= mask.sum()


def test_lumi_mask(tmp_path, chunks):
    spec = {"1": [[5, 9], [1, 3], [8, 20]], "17740": [[100, 200]], "300000": [[1, 1]]}
    (tmp_path / "golden.json").write_text(json.dumps(spec))
    lm = LumiMask.from_json(tmp_path / "golden.json")
    assert lm.ranges[1] == [(1, 3), (5, 20)]  # sorted and merged
    rng = np.random.default_rng(0)
    run = rng.choice([1, 2, 17740, 300000], 2000)
    lumi = rng.integers(0, 250, 2000)
    naive = np.array([any(a <= lu <= b for a, b in spec.get(str(r), []))
                      for r, lu in zip(run, lumi)])
    np.testing.assert_array_equal(lm(run, lumi), naive)
    # on the real MC file (run 1, lumi 17740): certify it or not
    info, chunk = chunks["inline"]
    (tmp_path / "mc.json").write_text(json.dumps({"1": [[17740, 17740]]}))
    sel = Selection(lumi_json=str(tmp_path / "mc.json"))
    _, flow = apply_selection(chunk, sel, info.branches, LumiMask.from_json(sel.lumi_json))
    assert flow.events["lumi"] == 100
    _, flow = apply_selection(chunk, sel, info.branches, lm)
    assert flow.events["lumi"] == 0 and flow.jets["constituents"] == 0
    for bad in ("[1, 2]", "{\"1\": [[5, 2]]}", "{\"x\": [[1, 2]]}", "not json"):
        (tmp_path / "bad.json").write_text(bad)
        with pytest.raises(InputError, match="bad.json"):
            LumiMask.from_json(tmp_path / "bad.json")


def test_plain_nanoaod_refused(tmp_path, capsys):
    with pytest.raises(InputError, match="plain NanoAOD without PF candidates.*"
                                         "FatJetPFCands_jetIdx.*PFCands_"):
        inspect_pfnano(NANOAOD_PLAIN)
    rc = main(["build-aoj", str(NANOAOD_PLAIN), "--out", str(tmp_path / "out"),
               "--scheduler", "inline"])
    err = capsys.readouterr().err
    assert rc == 2 and "not PFNano" in err and "FatJetPFCands_pFCandsIdx" in err
    assert "Traceback" not in err and not list((tmp_path / "out").glob("*.h5"))
    (tmp_path / "junk.root").write_bytes(b"not a root file at all" * 10)
    with pytest.raises(InputError, match="junk.root: cannot open as a ROOT file"):
        inspect_pfnano(tmp_path / "junk.root")


@pytest.mark.parametrize("path", [PFNANO_INDEX, PFNANO_INLINE])
def test_rows_straight_from_the_chunk_equal_the_writers_rows(path):
    """The builder writes chunk_to_rows; it must equal what the AOJ writer makes of the Jets."""
    from jetfm.io.aoj import jets_to_rows
    from jetfm.io.nanoaod import chunk_to_rows

    info = inspect_pfnano(path)
    chunk = read_pfnano(path, event_branches=event_branches(Selection(), info.branches))
    mask, _ = apply_selection(chunk, Selection(), info.branches)
    want, got = jets_to_rows(chunk_to_jets(chunk, mask)), chunk_to_rows(chunk, mask)
    assert mask.sum() > 10
    for k in want:
        assert got[k].dtype == want[k].dtype
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)
