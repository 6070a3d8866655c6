"""Configuration of OmniJet-alpha: model sizes, preprocessing, training, sampling and the
classification head.

Presets live in ``src/jetfm/configs/``: ``paper`` (the published sizes and hyper-parameters),
``small`` (CPU: trains tokenizer and backbone on 20 k jets on 2 cores in minutes) and ``quick``
(tests, seconds). ``load_omnijet_config("small", ["backbone.dim=64"])`` applies dotted overrides.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

from jetfm.config import (
    ConfigValueError,
    check_choice,
    check_range,
    from_dict,
    load_config,
    validate,
)
from jetfm.errors import InputError
from jetfm.omnijet.backbone import BackboneConfig
from jetfm.omnijet.tokenizer import TokenizerConfig
from jetfm.physics.features import Preprocessing

#: bounds of the sizes a config may ask for (far above the paper's: 128 constituents, batches of
#: a few hundred jets); larger values are typos that would allocate more than any machine holds
MAX_CONSTITUENTS = 4096
MAX_BATCH = 1 << 20
MAX_COUNT = 10**9
SCHEDULES = ("constant", "warmup_cooldown")
#: what :func:`jetfm.train.modules.resolve_precision` and Lightning accept here
PRECISIONS = ("32-true", "bf16-mixed", "16-mixed", "bf16-true", "64-true", "auto")
ACCELERATORS = ("cpu", "gpu", "cuda", "mps", "auto")
POOLINGS = ("attention", "mean")


@dataclass
class PreprocessingConfig:
    """Mirror of :class:`jetfm.physics.features.Preprocessing` (GeV, radians)."""
    pt_shift: float = 1.8
    eta_scale: float = 3.0
    phi_scale: float = 3.0
    max_rel: float = 0.8
    n_max: int = 128
    #: the order of a jet's constituents in the backbone's sequences: 0 (or 1) decreasing pT;
    #: S >= 2 first the S prong seeds (the leading constituent, then each time the one of
    #: largest pT * dR^2 to the seeds before it), then the rest in decreasing pT
    #: (:func:`jetfm.physics.features.prong_seed_order`). The tokenizer is blind to the order,
    #: so a tokenizer's model can be pre-trained with any
    prong_seeds: int = 0

    def build(self) -> Preprocessing:
        return Preprocessing(**dataclasses.asdict(self))

    def validate(self) -> None:
        for key in ("eta_scale", "phi_scale", "max_rel"):
            check_range(self, key, 0.0, lo_open=True)
        check_range(self, "n_max", 1, MAX_CONSTITUENTS)
        check_range(self, "prong_seeds", 0, 8)


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
    #: backbone trainings in memory: each training jet also enters reflected, as 1 (off), 2
    #: (eta, phi -> -eta, -phi) or 4 (every sign of eta and phi) copies. The jet observables
    #: (mass, N-subjettiness, D2, multiplicity) do not change under these reflections, so more
    #: distinct token sequences come at no cost in fidelity; the validation jets stay as they are
    augment: int = 1

    def validate(self) -> None:
        check_range(self, "batch_size", 1, MAX_BATCH)
        check_range(self, "lr", 0.0, 10.0, lo_open=True)
        check_range(self, "weight_decay", 0.0)
        check_range(self, "grad_clip", 0.0)
        check_range(self, "max_steps", 1, MAX_COUNT, allow=(-1,))
        # zero epochs would train nothing and still export a model; -1 (no epoch limit, as in
        # Lightning) only where max_steps ends the training
        check_range(self, "max_epochs", 1, MAX_COUNT,
                    allow=(-1,) if self.max_steps > 0 else ())
        check_choice(self, "schedule", SCHEDULES)
        check_range(self, "warmup_steps", 0, MAX_COUNT)
        check_range(self, "cooldown_fraction", 0.0, 1.0, hi_open=True)
        check_range(self, "patience", 0, MAX_COUNT)
        # all jets held out would leave none to train on
        check_range(self, "val_fraction", 0.0, 1.0, hi_open=True)
        check_range(self, "ckpt_every_n_steps", 0, MAX_COUNT)
        if isinstance(self.val_check_interval, float) and self.val_check_interval > 1.0:
            if not self.val_check_interval.is_integer():
                raise ConfigValueError("val_check_interval", "must be a fraction of an epoch "
                                       f"in (0, 1] or a whole number of batches, got "
                                       f"{self.val_check_interval!r}")
        check_range(self, "val_check_interval", 0.0, MAX_COUNT, lo_open=True)
        check_choice(self, "precision", PRECISIONS)
        check_choice(self, "accelerator", ACCELERATORS)
        for key in ("devices", "num_nodes"):
            check_range(self, key, 1, 1024)
        check_range(self, "accumulate_grad_batches", 1, MAX_BATCH)
        check_range(self, "num_workers", 0, 1024)
        check_range(self, "log_every_n_steps", 1, MAX_COUNT)
        if self.augment not in (1, 2, 4):
            raise ConfigValueError("augment", f"must be 1, 2 or 4, got {self.augment}")


@dataclass
class SamplingConfig:
    batch_size: int = 512
    temperature: float = 1.0
    top_k: int | None = None
    #: nucleus sampling: the likeliest tokens holding this probability (None: all)
    top_p: float | None = None
    #: tokens generated after the start token (the reference: 128)
    max_new: int = 128
    #: generated jets with fewer constituents are dropped (as the reference does)
    min_constituents: int = 3

    def validate(self) -> None:
        check_range(self, "batch_size", 1, MAX_BATCH)
        check_range(self, "temperature", 0.0, lo_open=True)
        check_range(self, "top_k", 1, allow=(None,))
        check_range(self, "top_p", 0.0, 1.0, lo_open=True, allow=(None,))
        check_range(self, "max_new", 1, MAX_CONSTITUENTS)
        check_range(self, "min_constituents", 1, MAX_CONSTITUENTS)


@dataclass
class ClassifierConfig:
    """The head that turns the backbone's per-token states into class logits.

    The backbone runs exactly as in generation (causal attention, no positional embedding), so a
    pre-trained backbone's weights mean the same thing here. Its hidden states over the real
    tokens of a jet (the constituent codes and the stop token, which has attended to the whole
    jet; not the start token, whose state is the same for every jet) are pooled, then an MLP
    gives ``n_classes`` logits: ``LayerNorm -> Linear(dim, hidden) -> GELU -> Dropout ->
    Linear(hidden, n_classes)``.
    """
    #: "attention": a learned query scores every real token, the softmax-weighted sum is the jet
    #: (initialised to the mean); "mean": the masked mean of the states
    pooling: str = "attention"
    hidden: int = 128
    dropout: float = 0.1
    #: learning rate of the backbone's weights relative to the head's when fine-tuning (layer-wise
    #: decay in its simplest form: 1 trains every weight alike)
    backbone_lr_scale: float = 1.0

    def validate(self) -> None:
        """Called where the config is loaded (:func:`jetfm.config.validate`)."""
        check_choice(self, "pooling", POOLINGS)
        check_range(self, "hidden", 1)
        check_range(self, "dropout", 0.0, 1.0, hi_open=True)
        check_range(self, "backbone_lr_scale", 0.0)


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

    def resolved(self) -> OmniJetConfig:
        """Derived sizes made consistent: vocabulary = codebook + residual codes + 2, sequence =
        n_max + 2 (+ the constituents with a residual code)."""
        k, t = self.tokenizer.quantizer.codebook_size, self.tokenizer
        lead = min(t.residual_leading, self.preprocessing.n_max) if t.residual_codes else 0
        bb = dataclasses.replace(self.backbone, vocab_size=k + t.residual_codes + 2,
                                 max_len=self.preprocessing.n_max + 2 + lead,
                                 residual_codes=t.residual_codes, residual_leading=lead)
        validate(bb, "backbone.")  # the derived sizes with the backbone's own settings
        if self.sampling.max_new > self.preprocessing.n_max + lead:
            raise InputError(f"sampling.max_new {self.sampling.max_new} exceeds "
                             f"preprocessing.n_max {self.preprocessing.n_max}"
                             + (f" + {lead} residual tokens" if lead else ""))
        return dataclasses.replace(self, backbone=bb)


def load_omnijet_config(preset: str = "small", overrides: Sequence[str] = ()) -> OmniJetConfig:
    """Preset name or YAML path, then ``a.b=value`` overrides -> resolved config."""
    return load_config(OmniJetConfig, preset, list(overrides)).resolved()


def config_from_dict(data: dict) -> OmniJetConfig:
    """A saved model's config. One saved before ``backbone.residual_geometry`` existed keeps the
    behaviour it was trained with (False)."""
    backbone = data.get("backbone")
    if isinstance(backbone, dict) and backbone.get("residual_codes") and \
            "residual_geometry" not in backbone:
        data = {**data, "backbone": {**backbone, "residual_geometry": False}}
    return from_dict(OmniJetConfig, data).resolved()
