"""Metrics against cases with a known answer, against scipy, and for exact reproducibility."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats

from jetfm.evaluate import metrics as M
from jetfm.io import read_jets
from tests.conftest import AOJ_MINI


def test_kl_identical_is_zero_and_shift_grows():
    rng = np.random.default_rng(1)
    x = rng.normal(size=50_000)
    assert M.kl_divergence(x, x) == pytest.approx(0.0, abs=1e-12)
    k1 = M.kl_divergence(x, x + 0.5)
    k2 = M.kl_divergence(x, x + 1.0)
    assert 0 < k1 < k2


def test_kl_gaussians_matches_analytic():
    # KL(N(0,1) || N(mu,1)) = mu^2 / 2; binning over 99.8 % of the mass loses little
    rng = np.random.default_rng(2)
    mu = 0.5
    ref, gen = rng.normal(size=400_000), rng.normal(mu, 1.0, size=400_000)
    assert M.kl_divergence(ref, gen) == pytest.approx(mu ** 2 / 2, rel=0.1)


def test_kl_matches_scipy_entropy_on_bin_probabilities():
    rng = np.random.default_rng(3)
    ref, gen = rng.exponential(size=20_000), rng.exponential(1.3, size=20_000)
    edges = M.quantile_edges(ref)
    assert len(edges) == 51
    assert edges[0] == pytest.approx(np.quantile(ref, 0.001))
    p = M.binned_probabilities(ref, edges) + M.KL_EPS
    q = M.binned_probabilities(gen, edges) + M.KL_EPS
    assert M.kl_divergence(ref, gen) == pytest.approx(stats.entropy(p, q), rel=1e-12)


def test_kl_discrete_observable_merges_edges_and_penalises_overflow():
    ref = np.repeat([10, 11, 12], 1000).astype(float)
    edges = M.quantile_edges(ref)
    assert len(edges) == 3
    # generated mass far outside the reference range counts in the outer bins, not dropped
    assert M.kl_divergence(ref, ref + 100) > 3


def test_w1_matches_analytic_and_scipy_and_is_seeded():
    rng = np.random.default_rng(4)
    a = rng.normal(size=100_000)
    shifted = M.w1(a, a + 0.3, seed=7)
    assert shifted.value == pytest.approx(0.3, abs=0.01)
    wide = rng.normal(0, 2.0, size=100_000)
    # W1(N(0,1), N(0,4)) = |s1 - s2| sqrt(2/pi)
    assert M.w1(a, wide, seed=1).value == pytest.approx(math.sqrt(2 / math.pi), rel=0.03)
    # one batch drawing every value once in order equals scipy on the full samples when the
    # draw covers them: compare with scipy on the same resampled values
    r = np.random.default_rng(5)
    x, y = rng.normal(size=1000), rng.normal(size=800)
    ix, iy = r.integers(0, 1000, 50_000), r.integers(0, 800, 50_000)
    one = M.w1(x, y, num_batches=1, seed=5)
    assert one.value == stats.wasserstein_distance(x[ix], y[iy])
    assert M.w1(x, y, seed=3) == M.w1(x, y, seed=3)
    assert M.w1(x, y, seed=3) != M.w1(x, y, seed=4)
    assert M.w1(x, x, seed=0).value < 0.05
    value, error = M.w1(x, y)  # unpacks as (value, error), always scalars
    assert isinstance(value, float) and isinstance(error, float) and error > 0


def test_observable_distances_keys():
    rng = np.random.default_rng(6)
    ref = {"pt": rng.normal(500, 50, 5000), "mass": rng.normal(80, 10, 5000)}
    gen = {"pt": rng.normal(510, 50, 5000), "mass": rng.normal(80, 10, 5000), "extra": np.ones(3)}
    d = M.observable_distances(ref, gen, num_samples=5000, seed=1)
    assert set(d) == {"pt", "mass"}
    assert d["pt"]["w1"] == pytest.approx(10, abs=3)
    assert d == M.observable_distances(ref, gen, num_samples=5000, seed=1)


def _efp_brute(z, theta, edges):
    n_vert = 1 + max(max(e) for e in edges)
    total = 0.0
    for idx in itertools.product(range(len(z)), repeat=n_vert):
        term = np.prod([z[i] for i in idx])
        for u, v in edges:
            term *= theta[idx[u], idx[v]]
        total += term
    return total


def test_efps_match_brute_force_sum():
    rng = np.random.default_rng(8)
    n, p = 3, 5
    pt = rng.exponential(10, (n, p))
    eta, phi = rng.normal(0, 0.3, (n, p)), rng.normal(3.0, 0.3, (n, p))  # phi crosses pi
    mask = np.ones((n, p), bool)
    mask[1, 3:] = False
    got = M.efps(pt, eta, phi, mask)
    assert got.shape == (n, 20)
    for j in range(n):
        k = mask[j].sum()
        z = pt[j, :k] / pt[j, :k].sum()
        dphi = (phi[j, :k, None] - phi[j, None, :k] + np.pi) % (2 * np.pi) - np.pi
        theta = np.hypot(eta[j, :k, None] - eta[j, None, :k], dphi)
        for g, edges in enumerate(M.EFP_GRAPHS.values()):
            assert got[j, g] == pytest.approx(_efp_brute(z, theta, edges), rel=1e-10)


def test_efp_graphs_are_distinct_connected_multigraphs():
    assert len(M.EFP_GRAPHS) == 20  # 1 + 2 + 5 + 12 connected multigraphs of degree 1..4
    assert sorted(len(e) for e in M.EFP_GRAPHS.values()) == [1] + [2] * 2 + [3] * 5 + [4] * 12
    # invariant: the sorted degree sequence with edge multiplicities must differ between graphs
    # of the same vertex count and degree (true for this list), a cheap distinctness check
    rng = np.random.default_rng(0)
    pt, eta, phi = rng.exponential(1, (1, 6)), rng.normal(0, .3, (1, 6)), rng.normal(0, .3, (1, 6))
    vals = M.efps(pt, eta, phi, np.ones((1, 6), bool))[0]
    assert len(np.unique(np.round(vals, 12))) == 20


def test_frechet_gaussians_analytic():
    mu1, mu2 = np.array([0.0, 1.0]), np.array([1.0, -1.0])
    s1, s2 = np.diag([1.0, 4.0]), np.diag([9.0, 1.0])
    # diagonal: |dmu|^2 + sum (sigma1 - sigma2)^2
    assert M.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(5 + (1 - 3) ** 2 + (2 - 1) ** 2)
    assert M.frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0, abs=1e-10)


def test_fpd_extrapolates_to_analytic_and_kpd_detects_shift():
    rng = np.random.default_rng(9)
    x = rng.normal(size=(10_000, 3))
    y = rng.normal(size=(10_000, 3)) + np.array([0.5, 0, 0])
    f = M.fpd(x, y, min_samples=2000, max_samples=6000, num_batches=20, num_points=5,
              normalise=False, seed=1)
    # the extrapolation targets the Frechet distance of the full empirical samples
    assert f.value == pytest.approx(M._frechet_of_samples(x, y), abs=0.01)
    assert f.value == pytest.approx(0.25, abs=0.06)  # the analytic value, up to sample noise
    assert f.error < 0.02
    same = M.fpd(x, rng.normal(size=(10_000, 3)), min_samples=2000, max_samples=6000,
                 num_batches=20, num_points=5, normalise=False, seed=1)
    assert abs(same.value) < 3 * max(same.error, 2e-3)
    k_same = M.kpd(x, rng.normal(size=(10_000, 3)), batch_size=1000, seed=2)
    k_diff = M.kpd(x, y, batch_size=1000, seed=2)
    assert abs(k_same.value) < 3 * k_same.error + 1e-3
    assert k_diff.value > 10 * max(k_same.error, 1e-4)
    assert M.kpd(x, y, batch_size=1000, seed=2) == k_diff


def test_kpd_unbiased_mmd_matches_direct_sum():
    rng = np.random.default_rng(10)
    x, y = rng.normal(size=(30, 2)), rng.normal(0.3, 1, size=(25, 2))
    k = lambda a, b: (a @ b / 2 + 1) ** 3  # noqa: E731
    xx = sum(k(x[i], x[j]) for i in range(30) for j in range(30) if i != j) / (30 * 29)
    yy = sum(k(y[i], y[j]) for i in range(25) for j in range(25) if i != j) / (25 * 24)
    xy = sum(k(x[i], y[j]) for i in range(30) for j in range(25)) / (30 * 25)
    assert M._mmd2_poly(x, y) == pytest.approx(xx + yy - 2 * xy, rel=1e-10)


def test_jetnet_metrics_on_real_aoj_jets():
    jets = read_jets(AOJ_MINI)  # 100 real CMS jets
    ref, other = jets[:50], jets[50:]
    kw = dict(num_samples=2000, num_batches=2, fpd_kw=dict(num_batches=2, num_points=4),
              kpd_kw=dict(num_batches=3, batch_size=50))
    same = M.jetnet_metrics(ref, ref, seed=0, **kw)
    diff = M.jetnet_metrics(ref, other, seed=0, **kw)
    assert set(same) == {"w1m", "w1m_err", "w1p", "w1p_err", "w1efp", "w1efp_err", "fpd",
                         "fpd_err", "kpd", "kpd_err"}
    assert all(isinstance(v, float) for v in diff.values())
    assert diff == M.jetnet_metrics(ref, other, seed=0, **kw)
    assert 0 < diff["w1m"] < 50  # GeV: two halves of one sample of AK8 jets
    for key in ("w1m", "w1p", "w1efp", "fpd"):
        assert same[key] < diff[key]


def test_w1p_weights_equal_pooling_the_drawn_jets():
    """w1p weighs each constituent by its jet's draw count: the same W1 as pooling the draws."""
    from scipy import stats

    from jetfm.evaluate.metrics import w1p
    rng = np.random.default_rng(3)
    ref, gen = rng.normal(size=(80, 12, 3)), rng.normal(0.2, 1.3, size=(60, 15, 3))
    rm, gm = rng.random((80, 12)) < 0.7, rng.random((60, 15)) < 0.6
    draw = np.random.default_rng(7)
    per = np.zeros((4, 3))
    for b in range(4):
        ir, ig = draw.integers(0, 80, 500), draw.integers(0, 60, 500)
        r, g = ref[ir][rm[ir]], gen[ig][gm[ig]]
        per[b] = [stats.wasserstein_distance(r[:, f], g[:, f]) for f in range(3)]
    d, feats = w1p(ref, rm, gen, gm, num_samples=500, num_batches=4, seed=7)
    assert d.value == pytest.approx(per.mean(1).mean(), rel=1e-12)
    assert d.error == pytest.approx(per.mean(1).std(), rel=1e-9)
    assert np.allclose(feats, per.mean(0), rtol=1e-12)
