import numpy as np

from jetfm.io.aoj import read_aoj
from jetfm.io.jetclass import read_jetclass
from jetfm.jets import Jets
from jetfm.physics.features import (
    SPECIES,
    Preprocessing,
    constituent_axis,
    relative_to_jet,
    species_counts,
    species_from_pdgid,
    wrap_phi,
)
from tests.conftest import AOJ_MINI, JETCLASS2_ROOT


def test_wrap_phi():
    x = np.array([0.0, np.pi, -np.pi, 3 * np.pi, -3.5, 7.0])
    w = wrap_phi(x)
    assert np.all(w > -np.pi) and np.all(w <= np.pi)
    np.testing.assert_allclose(np.cos(w), np.cos(x), atol=1e-12)
    assert w[2] == np.pi


def test_relative_coordinates_are_small_and_centered():
    jets = read_aoj(AOJ_MINI)
    deta, dphi = relative_to_jet(jets)
    m = jets.mask
    assert np.abs(deta[m]).max() < 1.2 and np.abs(dphi[m]).max() < 1.2
    # the pT-weighted mean offset from the constituent-sum axis is ~0
    pt = np.hypot(jets.c("px"), jets.c("py"))
    mean_deta = (pt * deta).sum(1) / pt.sum(1)
    assert np.abs(mean_deta).max() < 0.1 and np.median(np.abs(mean_deta)) < 0.01
    # the axis phi agrees with the stored jet phi up to PUPPI/JEC effects
    _, eta, phi = constituent_axis(jets)
    assert np.median(np.abs(wrap_phi(phi - jets.j("phi")))) < 0.02


def test_preprocessing_and_exact_inverse():
    pre = Preprocessing()
    jets = read_jetclass(JETCLASS2_ROOT)
    x, m = pre.forward(jets)
    assert x.shape == (100, 128, 3) and m.shape == (100, 128)
    assert (x[~m] == 0).all()
    back = pre.inverse(x, m)
    # the inverse gives back pT, eta_rel, phi_rel of every kept constituent
    pt = np.sort(np.hypot(jets.c("px"), jets.c("py")), axis=1)[:, ::-1]
    keep_all = m.sum(1) == jets.n_constituents  # jets where the |rel| < 0.8 cut dropped nothing
    np.testing.assert_allclose(back.c("pt")[keep_all], pt[keep_all], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(back.c("pt")[m], np.exp(x[..., 0][m] + 1.8), rtol=1e-6)
    np.testing.assert_allclose(3 * back.c("eta_rel")[m], x[..., 1][m], atol=1e-6)
    np.testing.assert_allclose(3 * back.c("phi_rel")[m], x[..., 2][m], atol=1e-6)
    # the cut |rel| < 0.8 and the 128 limit are applied
    assert (np.abs(x[..., 1:][m]) < 2.4).all()
    assert (np.diff(np.where(m, x[..., 0], -np.inf), axis=1)[m[:, 1:]] <= 0).all()


def test_species():
    ids = np.array([211, -211, 130, 22, 11, -13, 1, 2, 0, 5])
    s = species_from_pdgid(ids)
    assert [SPECIES[i] if i >= 0 else None for i in s] == [
        "charged_hadron", "charged_hadron", "neutral_hadron", "photon", "electron", "muon",
        "hf", "hf", None, None]
    c = species_counts(read_aoj(AOJ_MINI))
    assert c["charged_hadron"].sum() == 2745 and c["photon"].sum() == 1483
    assert c["neutral_hadron"].sum() == 340 and c["electron"].sum() == 13
    assert c["muon"].sum() == 4


def test_forward_in_blocks_is_bit_identical(monkeypatch):
    from jetfm.physics import features

    jets = read_aoj(AOJ_MINI)
    rng = np.random.default_rng(3)  # unsorted jets take the re-sorting path
    cons = jets.constituents.copy()
    for i in range(0, len(jets), 4):
        n = int(jets.mask[i].sum())
        cons[i, :n] = cons[i, :n][rng.permutation(n)]
    jets = Jets(cons, jets.mask, jets.jet, jets.constituent_names, jets.jet_names)
    pre = Preprocessing(n_max=64)
    whole = pre.forward(jets)
    monkeypatch.setattr(features, "FORWARD_BLOCK_JETS", 7)
    blocks = pre.forward(jets)
    for a, b in zip(whole, blocks):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert np.array_equal(a.view(np.uint8), b.view(np.uint8))


def _brute_force_seeds(f: np.ndarray, m: np.ndarray, seeds: int) -> list[int]:
    """The prong seeds of one pT-ordered jet, one constituent at a time (indices into f)."""
    n = int(m.sum())
    pt, x, y = np.exp(f[:n, 0].astype(np.float64)), f[:n, 1] / 3.0, f[:n, 2] / 3.0
    chosen = [0]
    while len(chosen) < min(seeds, n):
        score = [pt[i] * min((x[i] - x[j]) ** 2 + (y[i] - y[j]) ** 2 for j in chosen)
                 if i not in chosen else -1.0 for i in range(n)]
        chosen.append(int(np.argmax(score)))
    return chosen


def test_prong_seed_order_on_real_jets():
    """Real JetClass top-like jets: the same constituents, the prong seeds first (the leading
    one, then the kT-farthest from the seeds before, as a loop over constituents finds them),
    the rest in decreasing pT; 0 and 1 seed are the plain pT order."""
    jets = read_jetclass(JETCLASS2_ROOT)
    plain, pm = Preprocessing().forward(jets)
    for off in (0, 1):
        x, m = Preprocessing(prong_seeds=off).forward(jets)
        assert np.array_equal(x, plain) and np.array_equal(m, pm)
    x, m = Preprocessing(prong_seeds=3).forward(jets)
    assert np.array_equal(m, pm) and (x[~m] == 0).all()
    moved = 0
    for i in range(len(jets)):
        n = int(pm[i].sum())
        want = _brute_force_seeds(plain[i], pm[i], 3)
        rest = [j for j in range(n) if j not in want]
        np.testing.assert_array_equal(x[i, :n], plain[i, want + rest])
        moved += want != list(range(len(want)))
    assert moved > len(jets) // 2  # most jets' second prong is not their second constituent
    # the inverse gives the same jets, only the order differs
    a, b = Preprocessing().inverse(plain, pm), Preprocessing().inverse(x, m)
    np.testing.assert_allclose(a.c("pt").sum(1), b.c("pt").sum(1), rtol=1e-6)
    # a jet with fewer constituents than seeds, and an empty one
    few = np.zeros((2, 4, 3), np.float32)
    few[0, :2] = [[2.0, 0.1, 0.0], [1.0, -0.3, 0.2]]
    fm = np.zeros((2, 4), bool)
    fm[0, :2] = True
    from jetfm.physics.features import prong_seed_order
    y, ym = prong_seed_order(few, fm, 3)
    assert np.array_equal(y, few) and np.array_equal(ym, fm)


def test_prong_seeds_find_three_prongs():
    """Three well separated prongs, each a hard core with softer constituents: the seeds are
    one core per prong even though the second and third hardest constituents share the
    first prong."""
    rng = np.random.default_rng(0)
    axes = np.array([[0.0, 0.0], [1.2, 0.3], [-0.5, 1.1]])  # scaled units (3 x rad)
    cores = [60.0, 25.0, 20.0]
    rows = []
    for k, (ax, core) in enumerate(zip(axes, cores)):
        rows.append([np.log(core), *ax])
        for _ in range(4):
            soft = 0.6 * core if k == 0 else 0.2 * core
            rows.append([np.log(soft * rng.uniform(0.5, 1)), *(ax + rng.normal(0, 0.02, 2))])
    f = np.array(rows, np.float32)
    f = f[np.argsort(-f[:, 0], kind="stable")][None]
    m = np.ones(f.shape[:2], bool)
    from jetfm.physics.features import prong_seed_order
    y, _ = prong_seed_order(f, m, 3)
    assert np.exp(f[0, 1, 0]) < 60 and np.hypot(*(f[0, 1, 1:] - axes[0])) < 0.1  # same prong
    near = [int(np.argmin(np.hypot(*(axes - y[0, s, 1:]).T))) for s in range(3)]
    assert sorted(near) == [0, 1, 2]
    assert np.allclose(np.exp(y[0, :3, 0]), cores, rtol=1e-5)
