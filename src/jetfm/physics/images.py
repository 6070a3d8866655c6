"""Whole-event (eta, phi) detector images, as in the CoDAE paper (arXiv:2306.12955).

A detector-level event is a list of deposits (eta, phi, ET, channel) with channel 0 = tracks (pT),
1 = ECAL (ET), 2 = HCAL (ET). They are binned on a fine grid of 360 phi x 286 eta pixels over
|eta| < 2.5 (pixels of 0.0175 in both), then sum-pooled 5 x 5 to 72 x 58 (the eta axis is padded
with zeros from 286 to 290 so that it divides by 5). Array axes are (phi, eta, channel), the
layout of the released images. Pure NumPy.
"""
from __future__ import annotations

import numpy as np

ETA_MAX = 2.5
N_ETA, N_PHI = 286, 360           # fine grid
POOL = 5
CHANNEL_NAMES = ("tracks", "ecal", "hcal")


def pooled_shape(pool: int = POOL) -> tuple[int, int]:
    """(phi, eta) pixels after ``pool`` x ``pool`` sum pooling: (72, 58) for 5."""
    return -(-N_PHI // pool), -(-N_ETA // pool)


def pixel_indices(eta: np.ndarray, phi: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fine-grid indices ``(iphi, ieta, inside)`` of deposits at (eta, phi [rad]); ``inside``
    marks |eta| < 2.5 (deposits beyond are dropped). phi wraps cyclically."""
    eta = np.asarray(eta, np.float64)
    phi = np.asarray(phi, np.float64)
    inside = np.abs(eta) < ETA_MAX
    ieta = np.clip(np.floor((eta + ETA_MAX) / (2 * ETA_MAX) * N_ETA), 0, N_ETA - 1).astype(np.int64)
    iphi = np.floor(np.mod(phi + np.pi, 2 * np.pi) / (2 * np.pi) * N_PHI).astype(np.int64) % N_PHI
    return iphi, ieta, inside


def _binned(event, eta, phi, et, channel, n_events, pool, n_channels):
    iphi, ieta, inside = pixel_indices(eta, phi)
    event = np.asarray(event, np.int64)
    channel = np.asarray(channel, np.int64)
    et = np.asarray(et, np.float64)
    if np.any((channel < 0) | (channel >= n_channels)):
        raise ValueError(f"channel indices must be in [0, {n_channels})")
    if np.any((event < 0) | (event >= n_events)):
        raise ValueError(f"event indices must be in [0, {n_events})")
    h, w = pooled_shape(pool)
    keep = inside & (et > 0)
    flat = ((event[keep] * h + iphi[keep] // pool) * w + ieta[keep] // pool) * n_channels \
        + channel[keep]
    out = np.bincount(flat, weights=et[keep], minlength=n_events * h * w * n_channels)
    return out.reshape(n_events, h, w, n_channels).astype(np.float32)


def event_images(event: np.ndarray, eta: np.ndarray, phi: np.ndarray, et: np.ndarray,
                 channel: np.ndarray, n_events: int, pool: int = POOL,
                 n_channels: int = 3) -> np.ndarray:
    """Deposits of many events (each an (M,) array; ``event`` in [0, n_events)) ->
    images (n_events, 72, 58, n_channels) float32 of summed ET [GeV], axes (phi, eta).
    Equal to :func:`sum_pool` of :func:`fine_images`, without building the fine grid."""
    return _binned(event, eta, phi, et, channel, n_events, pool, n_channels)


def fine_images(event, eta, phi, et, channel, n_events: int, n_channels: int = 3) -> np.ndarray:
    """The un-pooled images (n_events, 360, 286, n_channels)."""
    iphi, ieta, inside = pixel_indices(eta, phi)
    keep = inside & (np.asarray(et) > 0)
    out = np.zeros((n_events, N_PHI, N_ETA, n_channels), np.float64)
    np.add.at(out, (np.asarray(event)[keep], iphi[keep], ieta[keep], np.asarray(channel)[keep]),
              np.asarray(et, np.float64)[keep])
    return out.astype(np.float32)


def sum_pool(images: np.ndarray, pool: int = POOL) -> np.ndarray:
    """Sum-pool (N, H, W, C) by ``pool`` x ``pool``, zero-padding H and W up to multiples."""
    n, h, w, c = images.shape
    ph, pw = -(-h // pool) * pool, -(-w // pool) * pool
    padded = np.zeros((n, ph, pw, c), images.dtype)
    padded[:, :h, :w] = images
    return padded.reshape(n, ph // pool, pool, pw // pool, pool, c).sum(axis=(2, 4))
