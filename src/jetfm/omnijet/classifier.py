"""OmniJet-alpha's second task: the GPT backbone, without its next-token head, as a jet classifier.

Input: token sequences ``(B, L)`` int64 as the backbone is trained on (``[start] + [code + 1 ...]
+ [stop]``, -1 padded; :mod:`jetfm.io.tokens`). Output: logits ``(B, n_classes)``.

The backbone (token embedding and decoder blocks) runs exactly as in generation, so a
pre-trained backbone's weights load unchanged (every key but ``head.*``). Its states at the real
tokens after the start (the constituent codes and the stop token, which has attended to the
whole jet under the causal mask) are pooled (:class:`jetfm.omnijet.config.ClassifierConfig`)
and an MLP gives the logits. Padding never enters: it follows the real tokens, so the causal mask
keeps it out of every real state, and the pooling masks it.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from jetfm.omnijet.backbone import BackboneConfig, JetGPT
from jetfm.omnijet.config import ClassifierConfig


class JetClassifier(nn.Module):
    """Backbone body + pooling + MLP head. Sub-modules: ``body`` (a :class:`JetGPT` whose
    next-token head is removed), ``query`` (attention pooling), ``head``."""

    def __init__(self, backbone: BackboneConfig, cfg: ClassifierConfig, n_classes: int):
        super().__init__()
        if n_classes < 2:
            raise ValueError(f"a classifier needs at least 2 classes, got {n_classes}")
        self.cfg, self.n_classes = cfg, n_classes
        self.body = JetGPT(backbone)
        self.body.head = nn.Identity()  # the next-token head is not used: no weights for it
        if backbone.kernel_heads:  # nor are its anchor kernels
            del self.body.kernel
        dim = backbone.dim
        # zero query: uniform weights, the masked mean, at initialisation
        self.query = nn.Parameter(torch.zeros(dim)) if cfg.pooling == "attention" else None
        self.head = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, cfg.hidden), nn.GELU(),
                                  nn.Dropout(cfg.dropout), nn.Linear(cfg.hidden, n_classes))

    def load_backbone(self, state: dict[str, torch.Tensor]) -> None:
        """Load a pre-trained :class:`JetGPT` state dict (its ``head.*`` and ``kernel.*``, the
        next-token head and its anchor kernels, are dropped)."""
        self.body.load_state_dict({k: v for k, v in state.items()
                                   if not k.startswith(("head.", "kernel."))}, strict=True)

    def body_parameters(self):
        return self.body.parameters()

    def head_parameters(self):
        return [p for n, p in self.named_parameters() if not n.startswith("body.")]

    def pool(self, h: torch.Tensor, seqs: torch.Tensor) -> torch.Tensor:
        """States (B, L, dim) and sequences (B, L) -> one vector per jet (B, dim)."""
        m = seqs >= 0
        m[:, 0] = False  # the start token's state is the same for every jet
        mf = m.to(h.dtype)
        if self.query is None:
            return (h * mf.unsqueeze(-1)).sum(1) / mf.sum(1, keepdim=True).clamp_min(1.0)
        scores = (h @ self.query) / math.sqrt(h.shape[-1])
        w = torch.softmax(scores.masked_fill(~m, float("-inf")), dim=1)
        return (w.unsqueeze(-1) * h).sum(1)

    def forward(self, seqs: torch.Tensor) -> torch.Tensor:
        """seqs (B, L) int64, -1 padded -> logits (B, n_classes)."""
        h = self.body.body(seqs.clamp_min(0))
        return self.head(self.pool(h, seqs))

    def loss(self, seqs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self(seqs), labels)

    @torch.no_grad()
    def predict_proba(self, seqs: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
        """Class probabilities (N, n_classes) float64 of sequences (N, L), in eval mode.

        Batches of 64 keep a batch's activations in the CPU caches: 1.5 to 1.6 times the jets/s
        of batches of 512 on one core (``benchmarks/classify.py``).

        Jets are batched by length (sorted, then put back in their order), each batch trimmed
        to its longest sequence, so little compute goes to padding (padding never changes a
        jet's result beyond rounding)."""
        was = self.training
        self.eval()
        dev = next(self.parameters()).device
        out = torch.zeros(len(seqs), self.n_classes, dtype=torch.float64)
        order = torch.argsort((seqs >= 0).sum(1), stable=True)
        try:
            for lo in range(0, len(seqs), batch_size):
                idx = order[lo:lo + batch_size]
                s = seqs[idx]
                s = s[:, :max(1, int((s >= 0).sum(1).max()))].to(dev)
                out[idx] = torch.softmax(self(s).double(), dim=1).cpu()
        finally:
            self.train(was)
        return out


def classifier_flops(backbone: BackboneConfig, cfg: ClassifierConfig, n_classes: int,
                     tokens: float, mean_len: float) -> float:
    """Matmul FLOPs (2 per multiply-add) of scoring: ``tokens`` positions in all, each attending
    to ``mean_len / 2`` keys on average under the causal mask, plus the pooling and the MLP per
    jet (``tokens / mean_len`` jets)."""
    d, f = backbone.dim, backbone.ff_dim
    per_tok = 2 * (3 * d * d + d * d + 2 * d * f) + 2 * 2 * d * (mean_len / 2)
    jets = tokens / max(mean_len, 1.0)
    head = 2 * (d * cfg.hidden + cfg.hidden * n_classes) + 2 * d * mean_len
    return backbone.n_blocks * per_tok * tokens + head * jets
