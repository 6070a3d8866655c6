"""Power-law fits recover known exponents; errors behave as a weighted fit's should."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import curve_fit

from jetfm.evaluate.fits import aggregate, fit_power_law, fit_results


def test_exact_power_law_recovered():
    d = np.array([100, 1000, 10_000, 100_000])
    y = 3.0 * d ** -0.35
    fit = fit_power_law(d, y)
    assert fit.gamma == pytest.approx(0.35, abs=1e-12)
    assert fit.a == pytest.approx(3.0, rel=1e-10)
    assert fit.chi2 == pytest.approx(0, abs=1e-20)
    assert np.allclose(fit.predict(d), y)


def test_noisy_power_law_within_errors_and_matches_curve_fit():
    rng = np.random.default_rng(0)
    d = np.geomspace(100, 1e6, 5)
    true = 2.0 * d ** -0.3
    seeds = true[None, :] * np.exp(rng.normal(0, 0.05, (5, len(d))))
    mean, std = seeds.mean(0), seeds.std(0)
    fit = fit_power_law(d, mean, std)
    assert abs(fit.gamma - 0.3) < 4 * fit.gamma_err
    assert 0 < fit.gamma_err < 0.05
    # same fit as scipy's curve_fit of the straight line in log space with absolute sigma
    popt, pcov = curve_fit(lambda x, la, g: la - g * x, np.log(d), np.log(mean),
                           sigma=std / mean, absolute_sigma=True)
    assert fit.gamma == pytest.approx(popt[1], rel=1e-6)
    assert fit.gamma_err == pytest.approx(math.sqrt(pcov[1, 1]), rel=1e-6)


def test_single_seed_uses_scatter_and_bad_points_are_skipped():
    d = [100, 1000, 10_000, 100_000]
    y = [1.0, 0.5, 0.2, 0.1]
    fit = fit_power_law(d, y)
    assert fit.ndf == 2 and fit.gamma_err > 0
    two = fit_power_law([100, 1000, 5000], [1.0, 0.0, 0.1])  # a zero cannot enter ln
    assert two.n_points == 2 and math.isnan(two.gamma_err)
    with pytest.raises(ValueError):
        fit_power_law([100, 1000], [1.0, -1.0])


def test_aggregate_and_fit_results_on_long_rows():
    rows = []
    for arm, gamma in (("pretrained", 0.2), ("scratch", 0.4)):
        for d in (100, 1000, 10_000):
            for seed in range(3):
                rows.append(dict(target="top", arm=arm, reference="raw", observable="mass",
                                 metric="w1", D=d, seed=seed,
                                 value=5.0 * d ** -gamma * (1 + 0.01 * (seed - 1))))
    summ = aggregate(rows)
    assert len(summ) == 6 and all(s["n_seeds"] == 3 for s in summ)
    fits = {f["arm"]: f for f in fit_results(rows)}
    assert fits["pretrained"]["gamma"] == pytest.approx(0.2, abs=1e-3)
    assert fits["scratch"]["gamma"] == pytest.approx(0.4, abs=1e-3)
    assert fits["scratch"]["sizes"] == [100, 1000, 10_000]
