"""Settings of a CoDAE training run: the model's architecture (:class:`CoDAEConfig`), the data
and augmentation (:class:`DataConfig`), the optimisation (:class:`TrainConfig`) and which models
to train; presets in ``configs/codae*.yaml``."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from jetfm.codae.data import DataConfig, input_channels
from jetfm.codae.model import CoDAEConfig
from jetfm.config import ConfigValueError, check_choice, check_range
from jetfm.errors import InputError

MODEL_KINDS = ("codae", "ae")
PRECISIONS = ("fp32", "bf16")


@dataclass
class TrainConfig:
    batch_size: int = 128
    epochs: int = 30
    lr: float = 1e-3
    weight_decay: float = 1e-4        # decoupled, per step (not scaled by lr), as tfa.AdamW
    clip_norm: float = 1.0
    max_steps: int = 0                # stop after this many steps in all (0: no limit); tests
    eval_batch_size: int = 64         # validation images per forward pass
    precision: str = "fp32"           # fp32 | bf16: bfloat16 autocast of the forward pass (CPU)
    micro_batch: int = 32             # images per forward/backward pass within a batch (0: all)

    def validate(self) -> None:
        for key in ("batch_size", "eval_batch_size"):
            check_range(self, key, 1, 1 << 20)
        check_range(self, "epochs", 1, 10**6)  # zero epochs would train nothing
        check_range(self, "lr", 0.0, 10.0, lo_open=True)
        check_range(self, "weight_decay", 0.0)
        check_range(self, "clip_norm", 0.0, lo_open=True)
        check_range(self, "max_steps", 0, 10**9)
        check_range(self, "micro_batch", 0, 1 << 20)
        check_choice(self, "precision", PRECISIONS)


@dataclass
class AnomalyConfig:
    """Everything a training run needs; presets in configs/codae*.yaml."""
    model: CoDAEConfig = field(default_factory=CoDAEConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    models: list[str] = field(default_factory=lambda: ["codae", "ae"])

    def validate(self) -> None:
        if not self.models or any(m not in MODEL_KINDS for m in self.models):
            raise ConfigValueError("models", f"must be a non-empty list of {list(MODEL_KINDS)}, "
                                             f"got {self.models!r}")
        phi = self.model.image_shape[0]
        if self.data.roll_step and phi % self.data.roll_step:
            raise ConfigValueError("data.roll_step", f"{self.data.roll_step} does not divide the "
                                                     f"{phi} phi pixels of model.image_shape")


def model_config(cfg: AnomalyConfig, kind: str) -> CoDAEConfig:
    if kind not in MODEL_KINDS:
        raise InputError(f"unknown model '{kind}': expected one of {list(MODEL_KINDS)}")
    return dataclasses.replace(cfg.model, conditional=kind == "codae",
                               in_channels=input_channels(cfg.data.input))
