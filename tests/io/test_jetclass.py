import numpy as np
import pytest
import uproot

from jetfm import InputError
from jetfm.io.jetclass import JETCLASS_LABELS, read_jetclass, write_jetclass
from jetfm.physics.features import constituent_kinematics, wrap_phi
from tests.conftest import JETCLASS2_ROOT, PFNANO_INDEX


def test_reads_real_jetclass2_file():
    jets = read_jetclass(JETCLASS2_ROOT)
    assert len(jets) == 100 and jets.n_max == 128
    n = jets.n_constituents
    assert n.min() == 2 and n.max() == 82 and abs(n.mean() - 45.3) < 0.05
    assert jets.meta["label_scheme"] == "jetclass2"
    lab = jets.j("label")
    assert ((lab >= 161) & (lab <= 187)).sum() == 21
    np.testing.assert_array_equal(jets.j("nConstituents"), n)
    # deta is the plain eta - jet_eta (sign flip undone), dphi the wrapped difference
    _, eta, phi = constituent_kinematics(jets)
    m = jets.mask
    deta_true = eta - jets.j("eta")[:, None]
    assert np.abs(jets.c("deta") - deta_true)[m].max() < 2e-3
    dphi_true = wrap_phi(phi - jets.j("phi")[:, None])
    assert np.abs(jets.c("dphi") - dphi_true)[m].max() < 2e-3
    neg = jets.j("eta") < 0
    assert neg.any() and (~neg).any()
    # species from the flags: every constituent has exactly one species
    pid = np.abs(jets.c("pdgId"))[m]
    assert np.isin(pid, (211, 130, 22, 11, 13)).all()


def test_jetclass_write_round_trip(tmp_path):
    jets = read_jetclass(JETCLASS2_ROOT)
    # as JetClass (one-hot labels): use a label in range for the ten classes
    jets1 = jets.with_jet_fields(label=np.arange(len(jets)) % 10)
    out = tmp_path / "TTBar_000.root"
    write_jetclass(out, jets1)
    with uproot.open(out) as f:
        keys = set(f["tree"].keys())
        assert {"part_px", "part_deta", "part_isPhoton", "jet_sdmass", *JETCLASS_LABELS} <= keys
        raw = f["tree"].arrays(["part_deta", "jet_eta"], library="np")
    ref = uproot.open(JETCLASS2_ROOT)["tree"].arrays(["part_deta"], library="np")
    # written part_deta carries the JetClass sign convention again
    for i in range(len(jets)):
        np.testing.assert_allclose(raw["part_deta"][i], ref["part_deta"][i][:128], atol=1e-6)
    back = read_jetclass(out)
    assert back.meta["label_scheme"] == "jetclass"
    np.testing.assert_array_equal(back.j("label"), jets1.j("label"))
    np.testing.assert_array_equal(back.mask, jets.mask)
    np.testing.assert_allclose(np.nan_to_num(back.constituents), np.nan_to_num(jets.constituents),
                               atol=1e-6)
    out2 = tmp_path / "jc2.root"
    write_jetclass(out2, jets, label_scheme="jetclass2")
    np.testing.assert_array_equal(read_jetclass(out2).j("label"), jets.j("label"))


def test_bad_input(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        read_jetclass(tmp_path / "nope.root")
    txt = tmp_path / "x.root"
    txt.write_text("not root")
    with pytest.raises(InputError, match="not a ROOT file"):
        read_jetclass(txt)
    with pytest.raises(InputError, match="no TTree 'tree'"):
        read_jetclass(PFNANO_INDEX)
    trunc = tmp_path / "trunc.root"
    trunc.write_bytes(JETCLASS2_ROOT.read_bytes()[:150_000])
    with pytest.raises(InputError, match=r"trunc\.root: .*(corrupted|truncated)"):
        read_jetclass(trunc)
    nobranch = tmp_path / "nobranch.root"
    with uproot.recreate(nobranch) as f:
        f["tree"] = {"jet_pt": np.ones(3, np.float32)}
    with pytest.raises(InputError, match="missing branch"):
        read_jetclass(nobranch)


def test_parquet_matches_root():
    from jetfm.io import count_jets, read_jets
    from tests.conftest import JETCLASS2_PARQUET

    a, b = read_jetclass(JETCLASS2_ROOT), read_jets(JETCLASS2_PARQUET)
    assert count_jets(JETCLASS2_PARQUET) == 100
    np.testing.assert_array_equal(a.mask, b.mask)
    np.testing.assert_array_equal(np.nan_to_num(a.constituents), np.nan_to_num(b.constituents))
    np.testing.assert_array_equal(a.jet, b.jet)
