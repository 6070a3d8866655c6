"""Model inputs from event images, and the paper's augmentation.

Inputs (``DataConfig.input``):

- ``track_occupancy`` (the paper's default): ``images[..., tracks] > 0`` -> (N, 1, 72, 58) in
  {0, 1};
  needs 3-channel files.
- ``occupancy``: any energy in the pixel (channel sum > 0). The released ``supervised/`` files
  hold only the channel sum, so this is the binary input that works on every released file.
- ``energy``: the 3 channels' ET as ``log1p(E / 1 GeV) / log1p(energy_scale)`` clipped to
  [0, 1] (a sigmoid output needs targets in [0, 1]) -> (N, 3, 72, 58).

Augmentation (training only): eta flips with probability 1/2 and cyclic phi rolls by a multiple
of ``roll_step`` pixels (8 in the paper: 9 positions around the 72 phi pixels). Both are
symmetries of a whole-event image of a pp collision.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from jetfm.config import check_choice, check_range
from jetfm.errors import InputError
from jetfm.io.images import CHANNELS_3, EventImages, read_images

INPUTS = ("track_occupancy", "occupancy", "energy")


@dataclass
class DataConfig:
    """Which files, which input and how to augment."""
    train: list[str] = field(default_factory=list)   # files/folders/globs; only QCD is used
    input: str = "track_occupancy"                    # track_occupancy | occupancy | energy
    valid_fraction: float = 0.1                       # QCD held out for SSIM checkpoint choice
    energy_scale: float = 1000.0                      # GeV mapped to 1 by the energy input
    flip_eta: bool = True
    roll_step: int = 8                                # phi pixels per roll; 0 disables rolls

    def validate(self) -> None:
        check_choice(self, "input", INPUTS)
        # no training events (1) or no validation events (0) to choose the checkpoint by
        check_range(self, "valid_fraction", 0.0, 1.0, lo_open=True, hi_open=True)
        check_range(self, "energy_scale", 0.0, lo_open=True)
        check_range(self, "roll_step", 0, 4096)


def input_channels(kind: str) -> int:
    return 3 if kind == "energy" else 1


def read_for_input(spec, kind: str, processes=None) -> EventImages:
    """Read image files in the channel layout an input needs (channel sums for ``occupancy``)."""
    if kind not in INPUTS:
        raise InputError(f"unknown input '{kind}': expected one of {list(INPUTS)}")
    return read_images(spec, processes=processes, channels="sum" if kind == "occupancy" else "auto")


def model_inputs(ev: EventImages, kind: str, energy_scale: float = 1000.0) -> np.ndarray:
    """(N, 72, 58, C) images -> (N, C', 72, 58) float32 model inputs in [0, 1]."""
    if kind not in INPUTS:
        raise InputError(f"unknown input '{kind}': expected one of {list(INPUTS)}")
    img = ev.images
    if kind in ("track_occupancy", "energy") and ev.channels != CHANNELS_3:
        raise InputError(f"input '{kind}' needs 3-channel images (tracks, ECAL, HCAL) but "
                         f"{ev.sources[0] if ev.sources else 'the images'} hold(s) channels "
                         f"{list(ev.channels)}: use data.input=occupancy for channel-sum files")
    if kind == "track_occupancy":
        x = (img[..., :1] > 0).astype(np.float32)
    elif kind == "occupancy":
        x = (img.sum(-1, keepdims=True) > 0).astype(np.float32)
    else:
        x = np.clip(np.log1p(img) / np.log1p(energy_scale), 0.0, 1.0).astype(np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def augment(x: torch.Tensor, gen: torch.Generator, flip_eta: bool = True,
            roll_step: int = 8) -> torch.Tensor:
    """Random eta flips and cyclic phi rolls, per image. x (N, C, 72 phi, 58 eta)."""
    n, _, h, _ = x.shape
    if flip_eta:
        flip = torch.rand(n, generator=gen) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
    if roll_step > 0:
        if h % roll_step:
            raise ValueError(f"phi size {h} is not a multiple of the roll step {roll_step}")
        shifts = torch.randint(0, h // roll_step, (n,), generator=gen) * roll_step
        out = x.clone()
        for s in shifts.unique().tolist():
            sel = shifts == s
            out[sel] = torch.roll(x[sel], s, dims=2)
        x = out
    return x


def split_valid(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded (train_idx, valid_idx) split of n events; at least one event in each part."""
    if n < 2:
        raise InputError(f"need at least 2 QCD events to train, got {n}")
    perm = np.random.default_rng(seed).permutation(n)
    k = min(max(1, int(round(fraction * n))), n - 1)
    return np.sort(perm[k:]), np.sort(perm[:k])
