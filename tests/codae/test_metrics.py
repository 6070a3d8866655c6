"""ROC AUC, FPR@40 and SSIM against known answers and hand-computed cases."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import mannwhitneyu

from jetfm.codae.metrics import fpr_at_tpr, roc_auc, roc_curve, ssim


def test_auc_known_answers():
    assert roc_auc([0, 1, 2], [3, 4, 5]) == 1.0
    assert roc_auc([3, 4, 5], [0, 1, 2]) == 0.0
    assert roc_auc([1, 1, 1], [1, 1]) == 0.5
    # hand case: pairs (s, b) with s > b: 2>1, 4>1, 4>3 -> 3 of 4, no ties
    assert roc_auc([1, 3], [2, 4]) == pytest.approx(0.75)
    # a tie counts one half: s=2 vs b in {1, 2}: (1 + 0.5) / 2
    assert roc_auc([1, 2], [2]) == pytest.approx(0.75)


def test_auc_matches_mann_whitney():
    rng = np.random.default_rng(3)
    b = rng.normal(0, 1, 300).round(1)  # rounding makes ties
    s = rng.normal(0.5, 1, 200).round(1)
    u = mannwhitneyu(s, b, alternative="two-sided").statistic
    assert roc_auc(b, s) == pytest.approx(u / (len(s) * len(b)), abs=1e-12)
    # the trapezoid area of the ROC curve is the same number
    fpr, tpr, _ = roc_curve(b, s)
    assert np.trapezoid(tpr, fpr) == pytest.approx(roc_auc(b, s), abs=1e-12)


def test_roc_curve_hand_case():
    fpr, tpr, thr = roc_curve([1, 3], [2, 4])
    np.testing.assert_allclose(tpr, [0, 0.5, 0.5, 1.0, 1.0])
    np.testing.assert_allclose(fpr, [0, 0, 0.5, 0.5, 1.0])
    np.testing.assert_allclose(thr, [np.inf, 4, 3, 2, 1])


def test_roc_curve_counts_every_threshold():
    # the curve as the selection "score >= t" counted by hand at each distinct score, highest
    # first, after (0, 0) at +inf: every point kept, ties included
    rng = np.random.default_rng(11)
    b = rng.normal(0, 1, 150).round(1)
    s = rng.normal(0.7, 1, 90).round(1)
    t = np.unique(np.r_[b, s])[::-1]
    fpr, tpr, thr = roc_curve(b, s)
    np.testing.assert_array_equal(thr, np.r_[np.inf, t])
    np.testing.assert_allclose(fpr, np.r_[0, [(b >= x).mean() for x in t]], atol=1e-15)
    np.testing.assert_allclose(tpr, np.r_[0, [(s >= x).mean() for x in t]], atol=1e-15)


def test_fpr_at_40_hand_cases():
    # 10 signal events 1..10 and 10 background 0.5..9.5: cutting at score >= 7 keeps signal 7..10
    # (40 %) and background 7.5, 8.5, 9.5 (30 %)
    s = np.arange(1, 11, dtype=float)
    b = s - 0.5
    assert fpr_at_tpr(b, s, 0.4) == pytest.approx(0.3)
    assert fpr_at_tpr(b, s + 100, 0.4) == 0.0          # perfectly separated
    assert fpr_at_tpr(b + 100, s, 0.4) == pytest.approx(1.0)
    # interpolation along a tie: signal 3, 2, 0, 0 and background 2, 1 give the ROC points
    # (fpr, tpr) = (0, 0.25) after 3 and (0.5, 0.5) after the tie at 2; 40 % is 0.6 of the way
    assert fpr_at_tpr([2, 1], [3, 2, 0, 0], 0.4) == pytest.approx(0.6 * 0.5)
    # a horizontal step: signal 4, 3, 2, 1 and background 3.5, 2.5: the curve reaches
    # tpr 0.25 at fpr 0, runs to fpr 0.5, then rises to tpr 0.5: FPR@40 = 0.5
    assert fpr_at_tpr([3.5, 2.5], [4, 3, 2, 1], 0.4) == pytest.approx(0.5)


def test_ssim_identical_and_constant():
    x = (torch.rand(3, 1, 72, 58, generator=torch.Generator().manual_seed(0)) < 0.05).float()
    torch.testing.assert_close(ssim(x, x), torch.ones(3))
    # constant images a, b: sigma = 0, so SSIM = (2ab + C1) / (a^2 + b^2 + C1)
    a, b, c1 = 0.2, 0.6, 0.01 ** 2
    xa = torch.full((1, 1, 20, 20), a, dtype=torch.float64)
    xb = torch.full((1, 1, 20, 20), b, dtype=torch.float64)
    want = (2 * a * b + c1) / (a * a + b * b + c1)
    assert float(ssim(xa, xb)) == pytest.approx(want, rel=1e-10)


def test_ssim_hand_case_structure():
    # x constant a, y = a + d * checkerboard over an 11x11 image (one window position):
    # mu_y = a + d * mean(w * cb), sigma_xy = 0 -> SSIM = lum * C2 / (sigma_y^2 + C2)
    a, d = 0.5, 0.1
    cb = (torch.arange(11)[:, None] + torch.arange(11)[None, :]) % 2 * 2 - 1
    y = (a + d * cb.double())[None, None]
    x = torch.full_like(y, a)
    g = torch.exp(-((torch.arange(11.0, dtype=torch.float64) - 5) ** 2) / (2 * 1.5 ** 2))
    w = g[:, None] * g[None, :]
    w = w / w.sum()
    my = float((w * y[0, 0]).sum())
    vy = float((w * y[0, 0] ** 2).sum()) - my ** 2
    c1, c2 = 1e-4, 9e-4
    want = (2 * a * my + c1) / (a * a + my * my + c1) * c2 / (vy + c2)
    assert float(ssim(x, y)) == pytest.approx(want, rel=1e-9)
