"""Tagger figures of merit against independent computations, and the high-level baseline."""
import numpy as np
import pytest
from scipy import stats

from jetfm.errors import InputError
from jetfm.evaluate.classification import (
    binary_metrics,
    classification_metrics,
    hlf_baseline,
    pick_signal_background,
    rejection_at,
    signal_score,
)


def _gauss(n=4000, shift=1.5, seed=0):
    rng = np.random.default_rng(seed)
    y = np.r_[np.ones(n, bool), np.zeros(n, bool)]
    s = np.r_[rng.normal(shift, 1, n), rng.normal(0, 1, n)]
    return y, s


def test_auc_is_the_mann_whitney_statistic():
    y, s = _gauss()
    u = stats.mannwhitneyu(s[y], s[~y]).statistic
    m = binary_metrics(y, s, n_bootstrap=0)
    assert m["auc"] == pytest.approx(u / (y.sum() * (~y).sum()), rel=1e-12)
    # the analytic AUC of two unit Gaussians a distance 1.5 apart
    assert m["auc"] == pytest.approx(stats.norm.cdf(1.5 / np.sqrt(2)), abs=0.01)


def test_rejection_at_signal_efficiency_counts_background_above_the_cut():
    y, s = _gauss(n=20000, seed=1)
    r, bound = rejection_at(y, s, 0.3)
    cut = np.quantile(s[y], 0.7)  # 30 % of the signal above
    assert not bound
    assert r == pytest.approx(1.0 / np.mean(s[~y] > cut), rel=0.05)
    # analytic: eps_B = 1 - Phi(cut) with cut = 1.5 + Phi^-1(0.7)
    assert r == pytest.approx(1 / stats.norm.sf(1.5 + stats.norm.ppf(0.7)), rel=0.08)


def test_perfect_separation_gives_a_bounded_rejection():
    y = np.r_[np.ones(50, bool), np.zeros(80, bool)]
    s = np.r_[np.linspace(2, 3, 50), np.linspace(0, 1, 80)]
    m = binary_metrics(y, s, n_bootstrap=0)
    assert m["auc"] == 1.0
    assert m["rejection_30"] == 80 and m["rejection_30_bound"]


def test_bootstrap_errors_are_seeded_and_shrink_with_more_jets():
    y, s = _gauss(n=300, seed=2)
    a = binary_metrics(y, s, n_bootstrap=50, seed=7)
    b = binary_metrics(y, s, n_bootstrap=50, seed=7)
    assert a == b
    big = binary_metrics(*_gauss(n=3000, seed=2), n_bootstrap=50, seed=7)
    assert 0 < big["auc_err"] < a["auc_err"]


def test_multiclass_score_and_class_choice():
    names = ["QCD", "Tbqq", "Wqq"]
    assert pick_signal_background(names) == (1, 0)
    assert pick_signal_background(names, signal="Wqq") == (2, 0)
    with pytest.raises(InputError, match="not one of"):
        pick_signal_background(names, signal="Hbb")
    p = np.array([[0.2, 0.6, 0.2], [0.5, 0.0, 0.5], [0.0, 0.0, 1.0]])
    np.testing.assert_allclose(signal_score(p, 1, 0), [0.75, 0.0, 0.5])
    m = classification_metrics(np.r_[p, p], np.array([1, 0, 2, 1, 0, 2]), names,
                               n_bootstrap=0)
    assert m["accuracy"] == 1.0 and m["signal"] == "Tbqq" and m["background"] == "QCD"
    assert m["n_signal"] == 2 and m["n_background"] == 2  # the Wqq jets are not in the ROC


def test_bad_scores_are_refused():
    with pytest.raises(InputError, match="one class is missing"):
        binary_metrics(np.ones(5, bool), np.arange(5.0))
    with pytest.raises(InputError, match="NaN"):
        binary_metrics(np.r_[True, False], np.array([np.nan, 1.0]))


def test_hlf_baseline_learns_a_separable_problem():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 6))
    y = (x[:, 1] + 0.3 * rng.normal(size=400) > 0).astype(int)
    clf = hlf_baseline(x[:300], y[:300], seed=1)
    m = binary_metrics(y[300:] == 1, clf.predict_proba(x[300:])[:, 1], n_bootstrap=0)
    assert m["auc"] > 0.9
    again = hlf_baseline(x[:300], y[:300], seed=1)
    np.testing.assert_array_equal(clf.predict_proba(x[300:]), again.predict_proba(x[300:]))


def test_hlf_features_on_real_jets(jetclass2_root):
    from jetfm.evaluate.classification import HLF_OBSERVABLES, hlf_features
    from jetfm.io import read_jets
    from jetfm.physics.observables import compute_observables

    jets = read_jets(jetclass2_root)
    f = hlf_features(jets)
    assert f.shape == (len(jets), len(HLF_OBSERVABLES)) and np.isfinite(f).all()
    obs = compute_observables(jets)
    for i, name in enumerate(HLF_OBSERVABLES):
        np.testing.assert_allclose(f[:, i], obs[name], rtol=1e-12, err_msg=name)
