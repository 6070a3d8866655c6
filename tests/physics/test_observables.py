"""Jet observables against FastJet's own computation on real jets.

The reference is the `fastjet` Python package (FastJet 3.5 with fjcontrib) through its awkward
interface: a kT ClusterSequence with R = 1000 (so exclusive_jets(1) is the whole jet), then
``njettiness`` (contrib Nsubjettiness, ``KT_Axes``), ``exclusive_jets_energy_correlator``
(contrib EnergyCorrelatorD2) and ``exclusive_jets_softdrop_grooming`` (contrib SoftDrop, C/A
reclustering). Every contrib the issue names is exposed there, so no reference formula is
re-implemented in the tests.
"""
from __future__ import annotations

import awkward as ak
import numpy as np
import pandas as pd
import pytest

from jetfm.cli import main
from jetfm.errors import InputError
from jetfm.io.aoj import ReadOptions, read_aoj
from jetfm.io.jetclass import read_jetclass
from jetfm.jets import Jets
from jetfm.physics import observables as obs
from tests.conftest import AOJ_MINI, JETCLASS2_ROOT

fastjet = pytest.importorskip("fastjet")

#: the kernels follow FastJet operation by operation: only summation order differs
RTOL = 1e-10


class FastJetReference:
    """FastJet's numbers for every jet of a Jets, from the constituents' (px, py, pz, E)."""

    def __init__(self, jets: Jets):
        m, n = jets.mask, jets.n_constituents
        arr = ak.zip({k: ak.unflatten(jets.c(k)[m].astype(np.float64), n)
                      for k in ("px", "py", "pz", "E")}, with_name="Momentum4D")
        self.cs = fastjet.ClusterSequence(arr, fastjet.JetDefinition(fastjet.kt_algorithm, 1000.0))
        self.n = n

    def taus(self, measure="NormalizedMeasure", axes="KT_Axes", beta=1.0):
        return ak.to_numpy(self.cs.njettiness(measure_definition=measure, axes_definition=axes,
                                              njets=[1, 2, 3, 4], beta=beta, R0=0.8))

    def d2(self, beta=1.0):
        return ak.to_numpy(self.cs.exclusive_jets_energy_correlator(njets=1, func="d2", beta=beta))

    def softdrop(self, beta=0.0, zcut=0.1):
        # FastJet's m() is -sqrt(-m^2) where m^2 < 0 (rounding of one massless constituent);
        # jetfm gives 0 there
        return np.maximum(ak.to_numpy(self.cs.exclusive_jets_softdrop_grooming(
            njets=1, beta=beta, symmetry_cut=zcut, R0=0.8).msoftdrop), 0.0)

    def jet(self):
        j = self.cs.exclusive_jets(1)
        return {k: ak.to_numpy(ak.flatten(getattr(j, k))) for k in ("px", "py", "pz", "E")}


def assert_close(ours, ref, rtol=RTOL, atol=1e-9, what=""):
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    bad = np.abs(ours - ref) > rtol * np.abs(ref) + atol
    assert not bad.any(), (f"{what}: {bad.sum()} of {bad.size} differ, worst "
                           f"ours {ours[bad][:3]} fastjet {ref[bad][:3]}")


@pytest.fixture(scope="module", params=["aoj", "jetclass2"])
def real(request):
    jets = read_aoj(AOJ_MINI) if request.param == "aoj" else read_jetclass(JETCLASS2_ROOT)
    return request.param, jets, obs.compute_observables(jets), FastJetReference(jets)


def test_keys_are_the_contract():
    jets = read_aoj(AOJ_MINI, stop=5)
    out = obs.compute_observables(jets)
    assert tuple(out) == obs.OBSERVABLE_NAMES == (
        "pt", "eta", "phi", "mass", "n_constituents", "tau1", "tau2", "tau3", "tau4", "tau21",
        "tau32", "d2", "msoftdrop", "n_charged_hadron", "n_neutral_hadron", "n_photon",
        "n_electron", "n_muon", "n_hf")
    assert all(v.shape == (5,) and v.dtype == np.float64 for v in out.values())


def test_equal_to_fastjet_on_real_jets(real):
    name, jets, out, ref = real
    taus = ref.taus()
    for k in range(4):
        assert_close(out[f"tau{k + 1}"], taus[:, k], what=f"{name} tau{k + 1}")
    with np.errstate(divide="ignore", invalid="ignore"):
        assert_close(out["tau21"], np.nan_to_num(taus[:, 1] / taus[:, 0]), what="tau21")
        assert_close(out["tau32"], np.nan_to_num(taus[:, 2] / taus[:, 1]), what="tau32")
    assert_close(out["d2"], ref.d2(), what=f"{name} d2")
    # the same tree and FastJet's m^2 formula: the groomed masses are FastJet's to the bit
    assert_close(out["msoftdrop"], ref.softdrop(), rtol=0, atol=0, what=f"{name} msoftdrop")
    j = ref.jet()
    pt = np.hypot(j["px"], j["py"])
    assert_close(out["pt"], pt, what="pt")
    assert_close(out["eta"], np.arcsinh(j["pz"] / pt), atol=1e-6, what="eta")
    dphi = np.angle(np.exp(1j * (out["phi"] - np.arctan2(j["py"], j["px"]))))
    assert np.abs(dphi).max() < 1e-6
    m2 = j["E"] ** 2 - j["px"] ** 2 - j["py"] ** 2 - j["pz"] ** 2
    assert_close(out["mass"], np.sqrt(np.clip(m2, 0, None)), atol=1e-3, what="mass")
    assert np.array_equal(out["n_constituents"], jets.n_constituents)
    assert (out["tau1"] > 0).all()
    three = jets.n_constituents > 2  # JetClass-II has a jet of 2 constituents: tau2 = e3 = 0
    assert (out["tau21"][three] > 0).all() and (out["d2"][three] > 0).all()


def test_other_parameters_equal_to_fastjet(real):
    """The non-default settings take other code paths: unnormalised taus, beta != 1 in the
    N-subjettiness and D2 angles, and a soft-drop condition that depends on angle."""
    name, jets, _, ref = real
    assert_close(obs.nsubjettiness(jets, normalized=False), ref.taus("UnnormalizedMeasure"),
                 what=f"{name} unnormalised taus")
    assert_close(obs.nsubjettiness(jets, beta=2.0), ref.taus(beta=2.0), what="tau beta 2")
    assert_close(obs.d2(jets, beta=2.0), ref.d2(beta=2.0), what="d2 beta 2")
    assert_close(obs.softdrop_mass(jets, beta=1.0, zcut=0.2), ref.softdrop(1.0, 0.2),
                 rtol=0, atol=0, what="soft drop beta 1")


def _synthetic_jets(seed: int = 7) -> Jets:
    """Jets of 0 to 40 massive constituents spread over the whole azimuth (across the 2 pi
    seam), which forces the folded-distance path and every small-multiplicity edge case."""
    rng = np.random.default_rng(seed)
    counts = [0, 1, 2, 3, 4, 5, 7, 12, 25, 40, 40, 3]
    P = max(counts)
    cons = np.zeros((len(counts), P, 4), np.float32)
    mask = np.zeros((len(counts), P), bool)
    for r, n in enumerate(counts):
        pt = rng.exponential(20.0, n) + 0.5
        eta = rng.normal(0, 1.0, n)
        phi = rng.uniform(-np.pi, np.pi, n)
        m = rng.uniform(0, 0.5, n)
        px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
        e = np.sqrt(px ** 2 + py ** 2 + pz ** 2 + m ** 2)
        order = np.argsort(-pt)
        cons[r, :n] = np.stack([px, py, pz, e], 1)[order]
        mask[r, :n] = True
    return Jets(cons, mask, np.zeros((len(counts), 0)), ("px", "py", "pz", "E"), ())


def test_wide_and_tiny_jets_equal_to_fastjet():
    jets = _synthetic_jets()
    n = jets.n_constituents
    taus = obs.nsubjettiness(jets)
    some = n > 0
    ref = FastJetReference(jets[some])
    ref_taus = ref.taus()
    for k in range(4):
        # FastJet warns that fewer than N axes give "unpredictable" values: we define 0
        big = n[some] > k + 1
        assert_close(taus[some][big, k], ref_taus[big, k], what=f"tau{k + 1}")
        assert (taus[n <= k + 1, k] == 0).all()
    two = n[some] >= 2
    assert_close(obs.d2(jets)[some][two], ref.d2()[two], what="d2")
    assert (obs.d2(jets)[n < 2] == 0).all()
    assert_close(obs.softdrop_mass(jets)[some], ref.softdrop(), rtol=0, atol=0, what="soft drop")
    out = obs.compute_observables(jets)
    assert all(np.isfinite(out[k]).all() for k in obs.OBSERVABLE_NAMES[:13])
    assert out["msoftdrop"][0] == out["pt"][0] == out["tau21"][0] == 0.0
    # without pdgId or JetClass flags the species are unknown, not zero
    assert np.isnan(out["n_photon"]).all()


def test_species_counts_of_real_jets():
    out = obs.compute_observables(read_aoj(AOJ_MINI))
    # the pdgId census of the file (its README): 2745 charged hadrons, 1483 photons, ...
    assert out["n_charged_hadron"].sum() == 2745 and out["n_photon"].sum() == 1483
    assert out["n_neutral_hadron"].sum() == 340
    assert out["n_electron"].sum() == 13 and out["n_muon"].sum() == 4 and out["n_hf"].sum() == 0
    total = sum(out[f"n_{s}"] for s in ("charged_hadron", "neutral_hadron", "photon",
                                        "electron", "muon", "hf"))
    assert np.array_equal(total, out["n_constituents"])
    jc = obs.compute_observables(read_jetclass(JETCLASS2_ROOT))
    assert jc["n_charged_hadron"].sum() > 0 and jc["n_photon"].sum() > 0


def test_stored_cms_taus_are_one_pass_kt_on_puppi_candidates():
    """AOJ stores CMS's tau1..tau4: NormalizedMeasure(1, 0.8) with OnePass_KT_Axes on
    PUPPI-weighted candidates. FastJet with those settings reproduces them to ~0.1 % (float16-like
    storage precision), which pins down the convention. Our exclusive-kT axes skip the one-pass
    minimisation, so our taus are larger by 10-20 % but follow the stored ones jet by jet."""
    jets = read_aoj(AOJ_MINI, options=ReadOptions(puppi=True))
    stored = np.stack([jets.j(f"tau{k}") for k in range(1, 5)], 1)
    ref = FastJetReference(jets)
    one_pass = ref.taus(axes="OnePass_KT_Axes")
    assert np.median(np.abs(one_pass / stored - 1)) < 0.005
    ours = obs.nsubjettiness(jets)
    ratio = ours / stored
    assert (np.median(ratio, 0) > 1.0).all() and (np.median(ratio, 0) < 1.3).all()
    assert (ours >= one_pass * (1 - 1e-9)).mean() > 0.9  # minimisation can only lower tau
    for k in range(4):
        assert np.corrcoef(ours[:, k], stored[:, k])[0, 1] > 0.98


def test_stored_jetclass_taus():
    """JetClass-II's jet_tau1..4 are the same normalised measure with one-pass kT axes on the
    Delphes constituents: FastJet's one-pass values agree to ~3 % (median), ours (plain kT axes) are
    higher by ~10 % with correlation > 0.97."""
    jets = read_jetclass(JETCLASS2_ROOT)
    stored = np.stack([jets.j(f"tau{k}") for k in range(1, 5)], 1)
    ok = (stored > 0).all(1)
    one_pass = FastJetReference(jets).taus(axes="OnePass_KT_Axes")
    assert np.median(np.abs(one_pass[ok] / stored[ok] - 1)) < 0.05
    ours = obs.nsubjettiness(jets)
    assert np.array_equal(ours == 0, stored == 0)  # the same jets have too few constituents
    med = np.median(ours[ok] / stored[ok], 0)
    assert (med > 1.0).all() and (med < 1.25).all()
    for k in range(4):
        assert np.corrcoef(ours[:, k], stored[:, k])[0, 1] > 0.97


def test_threads_give_identical_numbers(monkeypatch):
    # small blocks, so that two threads share the jets many ways
    monkeypatch.setattr(obs, "BLOCK_JETS", 7)
    jets = read_aoj(AOJ_MINI)
    one, two = obs.compute_observables(jets), obs.compute_observables(jets, threads=2)
    for k in one:
        np.testing.assert_array_equal(two[k], one[k], err_msg=k)
    # a jet's numbers do not depend on the jets computed beside it
    part = obs.compute_observables(jets[37:41], threads=2)
    for k in part:
        np.testing.assert_array_equal(part[k], one[k][37:41], err_msg=k)


def test_bad_threads_or_columns_name_the_problem():
    jets = read_aoj(AOJ_MINI, stop=3)
    with pytest.raises(InputError, match="threads"):
        obs.compute_observables(jets, threads=0)
    with pytest.raises(InputError, match="px"):
        obs.d2(jets.select_columns(("pz", "E"), ()))
    broken = jets.constituents.copy()
    broken[1, 2, jets.constituent_names.index("py")] = np.nan
    nan_jets = Jets(broken, jets.mask, jets.jet, jets.constituent_names, jets.jet_names)
    with pytest.raises(InputError, match="1 of 3 jets have a non-finite .* jet 1"):
        obs.compute_observables(nan_jets)


def test_cli_writes_parquet(tmp_path, capsys):
    out = tmp_path / "obs.parquet"
    assert main(["observables", str(AOJ_MINI), "-o", str(out)]) == 0
    assert "100 jets" in capsys.readouterr().out
    df = pd.read_parquet(out)
    assert list(df.columns) == list(obs.OBSERVABLE_NAMES) and len(df) == 100
    ref = obs.compute_observables(read_aoj(AOJ_MINI))
    for k, v in ref.items():
        np.testing.assert_allclose(df[k].to_numpy(), v, rtol=1e-12, err_msg=k)
    assert not list(tmp_path.glob("*.partial"))


def test_cli_missing_input_writes_nothing(tmp_path, capsys):
    out = tmp_path / "obs.parquet"
    assert main(["observables", str(tmp_path / "nope.h5"), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "nope.h5" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
