"""Settings of OmniJet-alpha's classification head (no torch here: the training config imports
it)."""
from __future__ import annotations

from dataclasses import dataclass

POOLINGS = ("attention", "mean")


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
        from jetfm.config import check_choice, check_range

        check_choice(self, "pooling", POOLINGS)
        check_range(self, "hidden", 1)
        check_range(self, "dropout", 0.0, 1.0, hi_open=True)
        check_range(self, "backbone_lr_scale", 0.0)
