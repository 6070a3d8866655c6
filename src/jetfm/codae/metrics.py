"""Anomaly-detection metrics: ROC curve, ROC AUC, background FPR at a signal efficiency (FPR@40),
and SSIM in torch (the checkpoint-selection metric of the CoDAE paper).

Convention: a larger score means more signal-like; signal is the positive class.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score
from sklearn.metrics import roc_curve as _sk_roc_curve


def _scores(background, signal) -> tuple[np.ndarray, np.ndarray]:
    b = np.asarray(background, np.float64).ravel()
    s = np.asarray(signal, np.float64).ravel()
    if b.size == 0 or s.size == 0:
        raise ValueError("ROC needs at least one background and one signal score")
    if not (np.isfinite(b).all() and np.isfinite(s).all()):
        raise ValueError("scores must be finite")
    return b, s


def _labelled(background, signal) -> tuple[np.ndarray, np.ndarray]:
    """(labels, scores) for scikit-learn: signal first, labelled 1."""
    b, s = _scores(background, signal)
    return np.r_[np.ones(s.size), np.zeros(b.size)], np.r_[s, b]


def roc_auc(background, signal) -> float:
    """Area under the ROC curve = P(score_signal > score_background) + 0.5 P(equal)
    (scikit-learn's ``roc_auc_score``, exact with ties)."""
    return float(roc_auc_score(*_labelled(background, signal)))


def roc_curve(background, signal) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(fpr, tpr, thresholds)``: selecting ``score >= threshold`` for each distinct score, from
    the highest down, with (0, 0) first (threshold +inf); scikit-learn's ``roc_curve`` keeping
    every point. fpr and tpr are non-decreasing."""
    return _sk_roc_curve(*_labelled(background, signal), drop_intermediate=False)


def fpr_at_tpr(background, signal, tpr: float = 0.4) -> float:
    """Background false-positive rate at signal efficiency ``tpr`` (FPR@40 for 0.4), linearly
    interpolated along the ROC curve (where several points share that efficiency, the lowest
    FPR is taken)."""
    fpr, t, _ = roc_curve(background, signal)
    i = int(np.searchsorted(t, tpr, side="left"))  # first point with tpr >= target
    if i == 0:
        return 0.0
    if t[i] == tpr:
        return float(fpr[i])
    # between points i-1 and i
    w = (tpr - t[i - 1]) / (t[i] - t[i - 1])
    return float(fpr[i - 1] + w * (fpr[i] - fpr[i - 1]))


def _gaussian_window(size: int, sigma: float, dtype, device) -> torch.Tensor:
    x = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2.0
    g = torch.exp(-(x ** 2) / (2 * sigma ** 2))
    g = g / g.sum()
    return g[:, None] * g[None, :]


def ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0, window: int = 11,
         sigma: float = 1.5, k1: float = 0.01, k2: float = 0.03) -> torch.Tensor:
    """Structural similarity per image, (N, C, H, W) x2 -> (N,), averaged over channels and the
    'valid' positions of an 11x11 Gaussian window (sigma 1.5), as tf.image.ssim (Wang et al.
    2004). Identical images give 1."""
    if x.shape != y.shape or x.dim() != 4:
        raise ValueError(f"ssim needs two (N, C, H, W) tensors of one shape, got {tuple(x.shape)} "
                         f"and {tuple(y.shape)}")
    c = x.shape[1]
    w = _gaussian_window(window, sigma, x.dtype, x.device).expand(c, 1, window, window)
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2

    def blur(t):
        return F.conv2d(t, w, groups=c)

    mx, my = blur(x), blur(y)
    sxx = blur(x * x) - mx * mx
    syy = blur(y * y) - my * my
    sxy = blur(x * y) - mx * my
    lum = (2 * mx * my + c1) / (mx * mx + my * my + c1)
    cs = (2 * sxy + c2) / (sxx + syy + c2)
    return (lum * cs).mean(dim=(1, 2, 3))
