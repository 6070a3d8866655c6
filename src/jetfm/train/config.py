"""Configuration of OmniJet-alpha: model sizes, preprocessing, training and sampling.

Presets live in ``src/jetfm/configs/``: ``paper`` (the published sizes and hyper-parameters),
``small`` (CPU: trains tokenizer and backbone on 20 k jets on 2 cores in minutes) and ``quick``
(tests, seconds). ``load_omnijet_config("small", ["backbone.dim=64"])`` applies dotted overrides.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Sequence

from jetfm.config import from_dict, load_config
from jetfm.errors import InputError
from jetfm.models.backbone import BackboneConfig
from jetfm.models.tokenizer import TokenizerConfig
from jetfm.omnijet.config import ClassifierConfig
from jetfm.physics.features import Preprocessing


@dataclass
class PreprocessingConfig:
    """Mirror of :class:`jetfm.physics.features.Preprocessing` (GeV, radians)."""
    pt_shift: float = 1.8
    eta_scale: float = 3.0
    phi_scale: float = 3.0
    max_rel: float = 0.8
    n_max: int = 128

    def build(self) -> Preprocessing:
        return Preprocessing(**dataclasses.asdict(self))


@dataclass
class TrainConfig:
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-2
    grad_clip: float = 5.0
    max_epochs: int = 50
    #: stop after this many optimiser steps (-1: epochs decide)
    max_steps: int = -1
    #: "constant", or "warmup_cooldown": linear warm-up over warmup_steps, constant, then a
    #: linear cool-down to zero over the last cooldown_fraction of the planned steps
    schedule: str = "constant"
    warmup_steps: int = 0
    cooldown_fraction: float = 0.0
    #: early stopping on validation loss: epochs without improvement (0: off)
    patience: int = 5
    #: fraction of the jets held out for validation (a fixed split, independent of the seed)
    val_fraction: float = 0.1
    #: also checkpoint every this many steps (0: only at each validation), for crash recovery
    ckpt_every_n_steps: int = 0
    #: validations per epoch as Lightning's val_check_interval (1.0: once per epoch)
    val_check_interval: float = 1.0
    #: Lightning precision: "32-true", "bf16-mixed" (bf16 autocast; the quantiser stays fp32),
    #: or "auto" (bf16-mixed on a GPU that supports it, else 32-true)
    precision: str = "32-true"
    accelerator: str = "cpu"
    devices: int = 1
    num_nodes: int = 1
    strategy: str = "auto"
    #: one optimiser step every this many batches (gradient accumulation)
    accumulate_grad_batches: int = 1
    num_workers: int = 0
    log_every_n_steps: int = 20


@dataclass
class SamplingConfig:
    batch_size: int = 512
    temperature: float = 1.0
    top_k: int | None = None
    #: tokens generated after the start token (the reference: 128)
    max_new: int = 128
    #: generated jets with fewer constituents are dropped (as the reference does)
    min_constituents: int = 3


@dataclass
class OmniJetConfig:
    preprocessing: PreprocessingConfig = field(default_factory=PreprocessingConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    tokenizer_training: TrainConfig = field(default_factory=lambda: TrainConfig(
        batch_size=512, schedule="warmup_cooldown", warmup_steps=500, cooldown_fraction=0.2))
    pretraining: TrainConfig = field(default_factory=TrainConfig)
    finetuning: TrainConfig = field(default_factory=TrainConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    #: the classification head and its training (``jetfm classify train``)
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    classification: TrainConfig = field(default_factory=lambda: TrainConfig(
        batch_size=64, lr=5e-4, max_epochs=30, patience=5, val_fraction=0.2))

    def resolved(self) -> "OmniJetConfig":
        """Derived sizes made consistent: vocabulary = codebook + 2, sequence = n_max + 2."""
        k = self.tokenizer.quantizer.codebook_size
        bb = dataclasses.replace(self.backbone, vocab_size=k + 2,
                                 max_len=self.preprocessing.n_max + 2)
        if self.sampling.max_new > self.preprocessing.n_max:
            raise InputError(f"sampling.max_new {self.sampling.max_new} exceeds "
                             f"preprocessing.n_max {self.preprocessing.n_max}")
        return dataclasses.replace(self, backbone=bb)


def load_omnijet_config(preset: str = "small", overrides: Sequence[str] = ()) -> OmniJetConfig:
    """Preset name or YAML path, then ``a.b=value`` overrides -> resolved config."""
    return load_config(OmniJetConfig, preset, list(overrides)).resolved()


def config_from_dict(data: dict) -> OmniJetConfig:
    return from_dict(OmniJetConfig, data).resolved()
