"""Conformance with the field's reference packages on the same real jets (AOJ 2016H and the
JetClass-II example): our EFPs against energyflow's ``EFPSet``, and W1M, W1P, W1EFP, FPD and KPD
against ``jetnet.evaluation`` (0.2.5). Both are dev dependencies; CI installs them.

Where JetNet's conventions differ, the test says how and compares what is comparable:

- JetNet draws from one unseeded module-level generator (``gen_metrics.rng``); the tests put a
  ``default_rng(seed)`` there. Its ``choice(n, size)`` draws the same indices as our
  ``integers(0, n, size)``, so W1M, W1P and W1EFP fed the same numbers agree to rounding.
- JetNet jets are ``[eta, phi, pt, (mass)]`` per constituent; a 4th column is read as the mass
  (so a mask column there would be a mass). Its ``w1m`` returns a tuple, even with
  ``return_std=False``.
- JetNet's EFPs are energyflow's unnormalised ones (``normed=None``) of the relative pT it is
  fed, ``z_i = pt_rel_i``; ours use ``z_i = pT_i / sum pT``: a factor ``(sum pt_rel)^n`` for a
  graph of ``n`` vertices. Its W1EFP uses the 5 prime EFPs with n = 4, d = 4; ours all 20 prime
  EFPs with d <= 4.
- FPD: JetNet divides the features by the reference's largest absolute value, ours standardises
  them; its sample sizes are regular in 1/N and its line fit keeps the intercept >= 0. With the
  same (already normalised) features and sample sizes both estimate the same extrapolation.
- KPD: JetNet's kernel is quartic, ours cubic by default (``kpd(degree=4)`` gives JetNet's);
  its error is half the 16.275-83.725 percentile range, ours half the 15.865-84.135 one
  (+-1 sigma of a Gaussian); its batches draw from ``default_rng(seed + 1000 i)``.
"""
from __future__ import annotations

import numpy as np
import pytest

from jetfm.evaluate import metrics as M
from jetfm.io import read_jets
from jetfm.physics.features import constituent_kinematics
from jetfm.physics.observables import jet_kinematics
from tests.conftest import AOJ_MINI, JETCLASS2_ROOT

pytestmark = pytest.mark.filterwarnings(
    "ignore:Recommended number of:RuntimeWarning")  # JetNet's advice for 50 000 jets

SEED = 11


@pytest.fixture(scope="module")
def samples(real_dir):
    return {"aoj": read_jets(AOJ_MINI), "jetclass2": read_jets(JETCLASS2_ROOT)}


@pytest.fixture(scope="module")
def jetnet():
    pytest.importorskip("jetnet")
    from jetnet import utils
    from jetnet.evaluation import gen_metrics

    return gen_metrics, utils


@pytest.fixture
def seeded(jetnet, monkeypatch):
    """JetNet's W1 functions draw from its module generator: seed it like ours."""
    gen_metrics, _ = jetnet

    def seed(value: int):
        monkeypatch.setattr(gen_metrics, "rng", np.random.default_rng(value))
    return seed


def _n_vertices(edges) -> int:
    return 1 + max(max(e) for e in edges)


# -------------------------------------------------------------------------- EFPs
@pytest.mark.parametrize("name", ["aoj", "jetclass2"])
def test_efps_equal_energyflow_efpset(samples, name):
    """Our 20 EFPs are energyflow's prime EFPs of degree 1 to 4 (hadronic measure, beta = 1,
    kappa = 1, normed), each to 1e-10 relative on every jet."""
    ef = pytest.importorskip("energyflow")
    jets = samples[name]
    pt, eta, phi = (np.asarray(a, np.float64) for a in constituent_kinematics(jets))
    ours = M.efps(pt, eta, phi, jets.mask)
    efpset = ef.EFPSet(("d<=", 4), ("p==", 1), measure="hadr", beta=1, kappa=1, normed=True,
                       coords="ptyphim")
    events = [np.stack([pt[i, m], eta[i, m], phi[i, m]], 1) for i, m in enumerate(jets.mask)]
    ref = efpset.batch_compute(events, n_jobs=1)
    specs = np.asarray(efpset.specs)  # per graph: n (vertices), e, d (edges), ...
    np.testing.assert_allclose(ref[:, specs[:, 2] == 0], 1, rtol=1e-12)  # empty graph: sum z
    matched = []
    for g, (graph, edges) in enumerate(M.EFP_GRAPHS.items()):
        close = [k for k in range(ref.shape[1])
                 if np.allclose(ours[:, g], ref[:, k], rtol=1e-10, atol=0)]
        assert len(close) == 1, (graph, close)
        k = close[0]
        assert (specs[k, 0], specs[k, 2]) == (_n_vertices(edges), len(edges)), graph
        np.testing.assert_allclose(ours[:, g], ref[:, k], rtol=1e-10, atol=0)
        matched.append(k)
    assert sorted(matched) == [k for k in range(ref.shape[1]) if specs[k, 2] > 0]


# ------------------------------------------------------------------- W1M, W1P, W1EFP
def _jetnet_format(jets, mass: bool) -> np.ndarray:
    """``(N, P, 3 or 4)`` [eta, phi, pt, (mass)] in float64, zero on padding."""
    px, py, pz, e = (jets.c(k).astype(np.float64) for k in ("px", "py", "pz", "E"))
    pt = np.hypot(px, py)
    eta = np.arcsinh(np.divide(pz, pt, out=np.zeros_like(pz), where=pt > 0))
    cols = [eta, np.arctan2(py, px), pt]
    if mass:
        cols.append(np.sqrt(np.clip(e ** 2 - px ** 2 - py ** 2 - pz ** 2, 0, None)))
    out = np.stack(cols, -1)
    out[~jets.mask] = 0
    return out


def test_w1m_matches_jetnet(samples, jetnet, seeded):
    """Jet masses agree to 2e-4 relative: constituent masses from the file's float32 (E, p) are
    clipped at 0 where rounding makes E < |p|, and JetNet rebuilds E from the mass. W1 moves by
    at most the largest mass difference (1-Lipschitz); on the same masses it is equal."""
    gen_metrics, utils = jetnet
    a, b = samples["aoj"], samples["jetclass2"]
    ja, jb = _jetnet_format(a, mass=True), _jetnet_format(b, mass=True)
    ours_m = [jet_kinematics(j)["mass"] for j in (a, b)]
    theirs_m = [utils.jet_features(j)["mass"] for j in (ja, jb)]
    for o, t in zip(ours_m, theirs_m):
        np.testing.assert_allclose(o, t, rtol=2e-4)
    dm = max(np.abs(o - t).max() for o, t in zip(ours_m, theirs_m))
    seeded(SEED)
    theirs = gen_metrics.w1m(ja, jb, num_eval_samples=5000, num_batches=5)
    assert isinstance(theirs, tuple)  # (mean, std), where ours is a Distance
    ours = M.w1m(*ours_m, num_samples=5000, num_batches=5, seed=SEED)
    assert abs(ours.value - theirs[0]) <= dm + 1e-12
    same = M.w1m(*theirs_m, num_samples=5000, num_batches=5, seed=SEED)
    assert same.value == pytest.approx(theirs[0], rel=1e-12)
    assert same.error == pytest.approx(theirs[1], rel=1e-9)


def test_w1p_matches_jetnet(samples, seeded, jetnet):
    """Per-feature W1 of (eta_rel, phi_rel, pt_rel), JetNet's feature order, on the same arrays
    and masks; ours averages the features (its error: the spread of the per-batch average,
    JetNet's: one spread per feature)."""
    gen_metrics, _ = jetnet
    a, b = samples["aoj"], samples["jetclass2"]
    fa, fb = M.constituent_features(a), M.constituent_features(b)
    assert np.all(fa[a.mask][:, 2] > 0)  # JetNet's exclude_zeros drops no real constituent
    seeded(SEED)
    means, stds = gen_metrics.w1p(fa, fb, a.mask, b.mask, num_eval_samples=3000, num_batches=4)
    ours, per_feature = M.w1p(fa, a.mask, fb, b.mask, num_samples=3000, num_batches=4,
                              seed=SEED)
    np.testing.assert_allclose(per_feature, means, rtol=1e-10)
    assert ours.value == pytest.approx(means.mean(), rel=1e-10)
    assert 0 < ours.error <= stds.max()  # averaging features cancels part of the spread


def test_w1efp_and_its_efps_match_jetnet(samples, seeded, jetnet):
    gen_metrics, utils = jetnet
    a, b = samples["aoj"], samples["jetclass2"]
    fa, fb = M.constituent_features(a), M.constituent_features(b)
    # JetNet's EFPs of the JetNet-format jets: z = pt_rel, unnormalised
    theirs_a = utils.efps(fa, efp_jobs=1)  # the n = 4, d = 4 prime set
    names = [n for n, e in M.EFP_GRAPHS.items() if len(e) == 4 and _n_vertices(e) == 4]
    assert theirs_a.shape[1] == len(names) == 5
    scale = (fa[..., 2] * a.mask).sum(1) ** 4
    ours_a = M.efps(fa[..., 2], fa[..., 0], fa[..., 1], a.mask, names) * scale[:, None]
    for g, name in enumerate(names):
        close = [k for k in range(5) if np.allclose(ours_a[:, g], theirs_a[:, k], rtol=1e-10)]
        assert len(close) == 1, name
    # the W1 part on the same EFPs: equal, draw for draw
    theirs_b = utils.efps(fb, efp_jobs=1)
    seeded(SEED)
    means, _ = gen_metrics.w1efp(fa, fb, num_eval_samples=3000, num_batches=4, efp_jobs=1)
    ours, per_efp = M.w1efp(theirs_a, theirs_b, num_samples=3000, num_batches=4, seed=SEED)
    np.testing.assert_allclose(per_efp, means, rtol=1e-10)
    assert ours.value == pytest.approx(means.mean(), rel=1e-10)


# ------------------------------------------------------------------------- FPD, KPD
@pytest.fixture(scope="module")
def efp_features(samples):
    """Our 20 EFPs of both samples, standardised by the AOJ sample's mean and std."""
    return M._normalise(M.jet_efps(samples["aoj"]), M.jet_efps(samples["jetclass2"]))


def test_frechet_distance_equals_jetnet(efp_features, jetnet):
    gen_metrics, _ = jetnet
    x, y = efp_features
    moments = (x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False))
    assert M.frechet_distance(*moments) == pytest.approx(
        gen_metrics._calculate_frechet_distance(*moments), rel=1e-8)


def test_fpd_agrees_with_jetnet_within_errors(efp_features, jetnet):
    """Same features (normalised once, here), same range of sample sizes; the extrapolations
    agree within their combined reported error."""
    gen_metrics, _ = jetnet
    x, y = efp_features
    kw = dict(min_samples=50, max_samples=100, num_batches=40, num_points=10)
    ours = M.fpd(x, y, normalise=False, seed=SEED, **kw)
    theirs = gen_metrics.fpd(x, y, normalise=False, seed=SEED, **kw)
    assert ours.value > 5 * ours.error  # two different samples: a clear distance
    assert abs(ours.value - theirs[0]) <= 3 * np.hypot(ours.error, theirs[1])


def test_kpd_kernel_equals_jetnet_and_quartic_kpd_agrees(efp_features, jetnet):
    gen_metrics, _ = jetnet
    x, y = efp_features
    for degree in (3, 4):
        assert M._mmd2_poly(x, y, degree) == pytest.approx(
            gen_metrics._mmd_poly_quadratic_unbiased(x, y, degree), rel=1e-10)
    n = 200
    ours = M.kpd(x, y, num_batches=n, batch_size=100, normalise=False, seed=SEED, degree=4)
    theirs = gen_metrics.kpd(x, y, num_batches=n, batch_size=100, normalise=False, seed=SEED)
    assert ours.value > 0 and theirs[0] > 0
    # the errors are the spread of single batches; a median of n has about 1.25 / sqrt(n) of it
    assert abs(ours.value - theirs[0]) <= 3 * 1.25 * np.hypot(ours.error, theirs[1]) / np.sqrt(n)
