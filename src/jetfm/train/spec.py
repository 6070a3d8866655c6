"""The values the training functions of :mod:`jetfm.train.api` pass between them.

:class:`DataSpec` is the training data of one stage (files or in-memory jets, the validation
files, the streaming options), :class:`RunSpec` the run (folder, preset and overrides, seed,
resume), :class:`Loaders` the data loaders built from a DataSpec, :class:`TrainResult` what a
training gives back: the exported model's directory and the model itself.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jetfm.jets import Jets
    from jetfm.omnijet.config import TrainConfig
    from jetfm.omnijet.model import OmniJetModel


@dataclass(frozen=True)
class DataSpec:
    """The training data of one stage.

    ``data``: AOJ/JetClass (or token) files, globs, ``.txt`` file lists; ``jets`` replaces them
    when given. ``max_jets``: at most this many training jets. ``val_data``: files to validate on
    instead of a held-out part of the training data. ``streaming`` (True, False, None: by the
    memory footprint), ``memory_budget_gb`` and ``buffer_size``: see
    :func:`jetfm.train.data.use_streaming` and :mod:`jetfm.train.streaming`."""
    data: Sequence[str] = ()
    jets: Jets | None = None
    max_jets: int | None = None
    val_data: Sequence[str] | None = None
    streaming: bool | None = None
    memory_budget_gb: float | None = None
    buffer_size: int | None = None

    def n_jets(self) -> int:
        """The number of in-memory training jets (after ``max_jets``)."""
        if self.jets is None:
            raise ValueError("the number of training jets is known for in-memory jets only")
        n = len(self.jets)
        return n if self.max_jets is None else min(n, self.max_jets)


@dataclass(frozen=True)
class RunSpec:
    """One training run: its folder ``out`` (config, checkpoints, logs, ``model/``), the preset
    and dotted ``overrides`` its config comes from, the seed, whether to resume from the folder's
    last checkpoint, the progress bar. ``min_steps`` > 0 raises the stage's ``max_epochs`` so
    that training still takes that many optimiser steps (:func:`with_min_steps`; in-memory jets
    only)."""
    out: str
    preset: str = "small"
    overrides: Sequence[str] = ()
    seed: int = 0
    resume: bool = True
    progress: bool = True
    min_steps: int = 0


@dataclass
class Loaders:
    """The training and validation loaders of one stage, the split (``n_train``, ``n_val``...),
    the provenance of the data, and ``kind``: None in memory, else ``"aoj"`` or ``"tokens"``
    (streamed)."""
    train: Any
    val: Any
    split: dict
    provenance: dict
    kind: str | None = None


@dataclass
class TrainResult:
    """A finished training: the exported model's directory and the model, as
    :func:`jetfm.omnijet.model.load_pretrained` would give it back (float32, on the CPU, in
    evaluation mode)."""
    model_dir: str
    model: OmniJetModel


def with_min_steps(tc: TrainConfig, n_jets: int, min_steps: int,
                   min_steps_per_epoch: int = 1) -> TrainConfig:
    """``tc`` with ``max_epochs`` raised so that training on ``n_jets`` jets (of which the
    ``val_fraction`` is held out) still takes ``min_steps`` optimiser steps, an epoch taking at
    least ``min_steps_per_epoch``; ``tc`` itself when ``min_steps`` <= 0."""
    if min_steps <= 0:
        return tc
    n_train = max(1, int(round(n_jets * (1 - tc.val_fraction))))
    steps_per_epoch = max(min_steps_per_epoch, math.ceil(n_train / tc.batch_size))
    epochs = max(tc.max_epochs, math.ceil(min_steps / steps_per_epoch))
    return dataclasses.replace(tc, max_epochs=epochs)


__all__ = ["DataSpec", "RunSpec", "Loaders", "TrainResult", "with_min_steps"]
