"""The public API of ``import jetfm``: read and write jets, observables, load a model, sample; the
heavy parts are imported on first use only."""
import subprocess
import sys

import h5py
import numpy as np
import pytest

import jetfm
from tests.conftest import AOJ_MINI, JETCLASS2_ROOT


def test_import_jetfm_stays_light():
    code = ("import sys, jetfm; heavy = [m for m in ('torch', 'h5py', 'uproot', 'numba', "
            "'jetfm.io', 'jetfm.omnijet', 'jetfm.physics') if m in sys.modules]; "
            "print(heavy); jetfm.load_model; print('torch' in sys.modules)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split("\n")[:2] == ["[]", "True"]  # nothing heavy until a name is used


def test_names():
    assert {"read_jets", "write_aoj", "load_model", "sample", "observables"} <= set(dir(jetfm))
    assert set(jetfm.__all__) <= set(dir(jetfm))
    with pytest.raises(AttributeError, match="no attribute 'read_jet'"):
        jetfm.read_jet  # noqa: B018


def test_read_write_real_jets(tmp_path):
    jets = jetfm.read_jets(AOJ_MINI)
    with h5py.File(AOJ_MINI, "r") as f:
        assert len(jets) == f["PFCands"].shape[0]
    assert jets.mask.any(1).all() and np.isfinite(jets.c("E")[jets.mask]).all()
    out = jetfm.write_aoj(tmp_path / "copy.h5", jets)
    back = jetfm.read_jets(out)
    assert back.constituent_names == jets.constituent_names and back.jet_names == jets.jet_names
    np.testing.assert_array_equal(back.mask, jets.mask)
    np.testing.assert_array_equal(back.constituents, jets.constituents)
    np.testing.assert_array_equal(back.jet, jets.jet)
    assert len(jetfm.read_jets(JETCLASS2_ROOT)) > 0  # JetClass too, told apart by its bytes


def test_observables_of_real_jets():
    jets = jetfm.read_jets(AOJ_MINI, stop=200)
    obs = jetfm.observables(jets)
    m = jets.mask
    px, py, pz, e = (np.where(m, jets.c(k), 0).astype(np.float64).sum(1)
                     for k in ("px", "py", "pz", "E"))
    np.testing.assert_allclose(obs["mass"], np.sqrt(np.clip(e**2 - px**2 - py**2 - pz**2, 0, None)),
                               rtol=1e-6, atol=1e-3)
    np.testing.assert_array_equal(obs["n_constituents"], m.sum(1))
    ok = obs["tau1"] > 0
    np.testing.assert_allclose(obs["tau21"][ok], obs["tau2"][ok] / obs["tau1"][ok], rtol=1e-6)


def test_load_model_and_sample(quick_model):
    from jetfm.omnijet.model import OmniJetModel

    model = jetfm.load_model(quick_model)
    assert isinstance(model, OmniJetModel) and model.backbone is not None
    assert not model.backbone.training  # loaded for inference
    a = jetfm.sample(quick_model, 12, seed=4, progress=False)
    b = jetfm.sample(quick_model, 12, seed=4, progress=False)
    assert len(a) == 12 and a.mask.sum(1).min() >= model.config.sampling.min_constituents
    np.testing.assert_array_equal(a.constituents, b.constituents)  # the seed decides
    # generated jets are measured like any other (the mass of their constituent sum)
    np.testing.assert_allclose(jetfm.observables(a)["mass"], a.j("mass"), rtol=1e-5, atol=1e-3)
