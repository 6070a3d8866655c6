"""Simulated samples: realism against the real CMS jets, the files, determinism, resuming.

Sizes are chosen for the test budget: on one core the aoj-like sample makes about 60 jets/s,
top about 13 and Z+jets about 20 jets/s.
"""
import json
from dataclasses import replace

import h5py
import numpy as np
import pytest

from jetfm.io import read_jets
from jetfm.io.aoj import read_attrs
from jetfm.physics.features import species_counts
from jetfm.physics.observables import jet_kinematics
from jetfm.simulate import (
    IDEAL,
    aoj_like_spec,
    generate_jets,
    simulate_aoj_like,
    simulate_jetclass_like,
)
from jetfm.simulate import samples as samples_mod
from jetfm.simulate.pythia import AOJ_QCD
from tests.conftest import AOJ_MINI, full_size

N_AOJ = 2000 if full_size() else 300
N_JETCLASS = 1000 if full_size() else 120


@pytest.fixture(scope="module")
def aoj_file(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim") / "aoj_like.h5"
    simulate_aoj_like(N_AOJ, 11, out, workers=1, chunk_jets=N_AOJ // 2, progress=False)
    return out


@pytest.fixture(scope="module")
def jetclass_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("jc")
    return {p: simulate_jetclass_like(p, N_JETCLASS, 5, d / f"{p}.root", workers=1,
                                      progress=False) for p in ("top", "qcd")}


def _fractions(jets):
    counts = species_counts(jets)
    total = jets.n_constituents.sum()
    return {k: counts[k].sum() / total for k in ("charged_hadron", "photon", "neutral_hadron")}


def test_aoj_like_matches_real_cms_jets(aoj_file):
    sim, real = read_jets(aoj_file), read_jets(AOJ_MINI)
    assert len(sim) == N_AOJ
    n_real = real.j("nConstituents").mean()          # 45.9 in the real file
    n_sim = sim.j("nConstituents").mean()
    assert abs(n_sim / n_real - 1) < 0.30, (n_sim, n_real)
    f_sim, f_real = _fractions(sim), _fractions(real)
    for k in f_real:
        assert abs(f_sim[k] - f_real[k]) < 0.10, (k, f_sim[k], f_real[k])
    # the jet pT spectrum falls from the 300 GeV threshold, as in AOJ
    pt = sim.j("pt")
    assert pt.min() > 300 and (np.abs(sim.j("eta")) < 2.5).all()
    h, _ = np.histogram(pt, bins=[300, 350, 400, 500])
    assert h[0] > h[1] > 0.5 * h[2]


def test_aoj_like_file_layout_and_provenance(aoj_file):
    with h5py.File(aoj_file) as f:
        assert set(f) == {"PFCands", "jet_kinematics", "jet_tagging", "event_info"}
        assert f["PFCands"].shape == (N_AOJ, 150, 11)
        tag = f["jet_tagging"][:]
        ev = f["event_info"][:]
        pf = f["PFCands"][:]
    assert (tag[:, 5:] == -1).all()                   # no tagger: documented -1
    mask = pf[..., 3] > 0
    assert (tag[:, 0] >= mask.sum(1)).all() and (mask.sum(1) <= 150).all()
    tau = tag[:, 1:5]
    # tau_N falls with N on average (exclusive-kT axes allow exceptions jet by jet)
    assert (tau >= 0).all() and (np.diff(tau.mean(0)) < 0).all()
    assert (tau[:, 1] <= tau[:, 0] + 1e-5).mean() > 0.9
    assert (ev[:, 0] == 1).all()                      # run 1 = simulation
    neutral = mask & (pf[..., 8] == 0)
    assert (pf[..., 4][neutral] == -1).all()          # neutral sentinels
    attrs = read_attrs(aoj_file)
    assert attrs["generator"].startswith("pythia8mc 8.317")
    assert attrs["seed"] == 11 and attrs["process"] == "qcd_dijet"
    assert json.loads(attrs["detector_params"])["name"] == "cms_like"
    assert "HardQCD:all = on" in json.loads(attrs["pythia_settings"])
    assert attrs["completed_chunks"] == 2
    # soft-drop mass never exceeds the constituent mass
    jets = read_jets(aoj_file)
    m = jet_kinematics(jets)["mass"]
    assert (jets.j("msoftdrop") <= m + 1e-2).all()


def test_jetclass_like_top_and_qcd(jetclass_files):
    top, qcd = read_jets(jetclass_files["top"]), read_jets(jetclass_files["qcd"])
    assert len(top) == len(qcd) == N_JETCLASS
    assert (top.j("label") == 8).all() and (qcd.j("label") == 0).all()
    for j in (top, qcd):
        assert (j.j("pt") > 500).all() and (j.j("pt") < 1000).all()
        assert (np.abs(j.j("eta")) < 2).all()
    assert 150 < np.median(top.j("msoftdrop")) < 190
    assert np.median(qcd.j("msoftdrop")) < 100
    tau32 = lambda j: np.mean(j.j("tau3") / j.j("tau2"))  # noqa: E731
    assert tau32(top) < tau32(qcd)
    # a different response from the aoj-like one: d0 stored in mm, no HF species
    assert np.nanmedian(top.c("d0Err")[top.mask & (top.c("charge") != 0)]) > 0.01


def test_same_seed_same_jets_whatever_the_workers_and_resume(tmp_path, monkeypatch):
    kw = dict(chunk_jets=20, progress=False)
    a = simulate_aoj_like(40, 3, tmp_path / "a.h5", workers=1, **kw)
    b = simulate_aoj_like(40, 3, tmp_path / "b.h5", workers=2, **kw)
    with h5py.File(a) as fa, h5py.File(b) as fb:
        for k in fa:
            np.testing.assert_array_equal(fa[k][:], fb[k][:])
    # a crash after the first chunk leaves it in c.h5.partial; the rerun continues from there
    real_iter = samples_mod.iter_chunks

    def crash_after_first(*args, **kwargs):
        for i, item in enumerate(real_iter(*args, **kwargs)):
            if i == 1:
                raise KeyboardInterrupt
            yield item

    monkeypatch.setattr(samples_mod, "iter_chunks", crash_after_first)
    with pytest.raises(KeyboardInterrupt):
        simulate_aoj_like(40, 3, tmp_path / "c.h5", workers=1, **kw)
    assert not (tmp_path / "c.h5").exists()
    with h5py.File(tmp_path / "c.h5.partial") as f:
        assert f.attrs["completed_chunks"] == 1 and f["PFCands"].shape[0] == 20
    started = []

    def record(*args, **kwargs):
        started.append(args[5] if len(args) > 5 else kwargs.get("start_chunk"))
        return real_iter(*args, **kwargs)

    monkeypatch.setattr(samples_mod, "iter_chunks", record)
    c = simulate_aoj_like(40, 3, tmp_path / "c.h5", workers=1, **kw)
    assert started == [1]
    with h5py.File(a) as fa, h5py.File(c) as fc:
        for k in fa:
            np.testing.assert_array_equal(fa[k][:], fc[k][:])
    # a different seed gives different jets
    d = generate_jets(aoj_like_spec(), 5, seed=4, chunk_jets=5)
    assert not np.allclose(d.j("pt"), read_jets(a, 0, 5).j("pt"))


def test_region_of_interest_sees_the_same_jets_as_the_whole_event():
    # with a perfect detector the jets depend only on the particles handed to it
    spec = replace(aoj_like_spec(), detector=IDEAL)
    whole = replace(spec, process=replace(AOJ_QCD, roi_radius=0.0, truth_jet_ptmin=0.0))
    a = generate_jets(spec, 40, seed=9, chunk_jets=40)
    b = generate_jets(whole, 40, seed=9, chunk_jets=40)
    ev_b, pt_b = b.event_info[:, 2], b.j("pt")
    exact = 0
    for e, pt in zip(a.event_info[:, 2], a.j("pt")):
        diff = np.abs(pt_b[ev_b == e] - pt)
        assert diff.size and diff.min() < 0.005 * pt, (e, pt)   # the same jet
        exact += diff.min() < 0.01                               # with the same particles
    assert exact >= 0.9 * len(a)


def test_jetclass_like_resumes_from_its_chunk_folder(tmp_path, monkeypatch):
    out = tmp_path / "qcd.root"
    real_iter = samples_mod.iter_chunks

    def crash_after_first(*args, **kwargs):
        for i, item in enumerate(real_iter(*args, **kwargs)):
            if i == 1:
                raise RuntimeError("simulated crash")
            yield item

    monkeypatch.setattr(samples_mod, "iter_chunks", crash_after_first)
    with pytest.raises(RuntimeError):
        simulate_jetclass_like("qcd", 16, 7, out, workers=1, chunk_jets=8, progress=False)
    assert not out.exists()
    assert sorted(p.name for p in (tmp_path / "qcd.root.chunks").iterdir()) == [
        "chunk_00000.npz", "sample.json"]
    monkeypatch.setattr(samples_mod, "iter_chunks", real_iter)
    simulate_jetclass_like("qcd", 16, 7, out, workers=1, chunk_jets=8, progress=False)
    assert not (tmp_path / "qcd.root.chunks").exists()
    again = generate_jets(samples_mod.jetclass_like_spec("qcd"), 16, seed=7, chunk_jets=8)
    np.testing.assert_allclose(read_jets(out).j("pt"), again.j("pt"), rtol=1e-6)
    import uproot

    with uproot.open(out) as f:
        prov = json.loads(str(f["provenance"]))
    assert prov["process"] == "zjets_nunu" and prov["seed"] == 7
    assert prov["detector"] == "delphes_like"


def test_pileup_overlay_with_puppi_weights(tmp_path):
    out = simulate_aoj_like(8, 2, tmp_path / "pu.h5", workers=1, pileup=10.0, progress=False)
    jets = read_jets(out)
    assert len(jets) == 8 and read_attrs(out)["pileup_mu"] == 10.0
    w = jets.c("puppiWeight")[jets.mask]
    neutral = (jets.c("charge") == 0)[jets.mask]
    assert (w > 0).all() and (w <= 1).all()
    assert (w[neutral] < 0.99).any()          # some pile-up-like neutrals are down-weighted
    assert (w[~neutral] == 1).all()           # charged pile-up is removed, primary kept whole
