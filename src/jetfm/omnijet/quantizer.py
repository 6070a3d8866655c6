"""Vector quantiser of the OmniJet-alpha tokenizer: every trick of the reference as an option.

Shapes: ``z`` is ``(..., D)`` encoder outputs (D = latent dimension), ``mask`` is ``(...)`` bool,
True for a real constituent. Padded entries are never quantised into the loss, the code-usage
statistics, the k-means++ initialisation or the dead-code replacement pool; their output is the
unchanged input and their index is -1.

Options (all in :class:`QuantizerConfig`, each covered by ``tests/omnijet/test_quantizer.py``):

- Euclidean nearest code, computed in chunks of rows so 8192 codes x a large batch fit in memory.
- ``beta``: vq_loss = (1 - beta) |z_e - sg(z_q)|^2 + beta |sg(z_e) - z_q|^2 (the reference's
  convention: beta weighs the codebook term, 1 - beta the commitment term).
- ``sync_nu``: synchronised straight-through; the forward value is z_q, the encoder gets the
  decoder's gradient unchanged and the codebook gets ``sync_nu`` times it as well.
- ``affine``: a learnable per-dimension (scale, shift) applied to the whole codebook.
- ``replace_freq``: a code unused for that many training steps is replaced by a current encoder
  output plus small noise (0 switches it off).
- ``kmeans_init``: k-means++ seeding (plus ``kmeans_iters`` Lloyd steps) from the first batch.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from jetfm.config import check_range


def _distributed() -> bool:
    return (torch.distributed.is_available() and torch.distributed.is_initialized()
            and torch.distributed.get_world_size() > 1)


def _sync_from_rank0(t: torch.Tensor) -> None:
    """Copy process 0's values into ``t`` on every process (no-op outside DDP): codebook
    updates made without gradients (k-means init, dead-code replacement) would otherwise make
    the processes' codebooks drift apart."""
    if _distributed():
        torch.distributed.broadcast(t, src=0)


def _sum_over_ranks(t: torch.Tensor) -> None:
    if _distributed():
        torch.distributed.all_reduce(t)


#: the largest codebook a config may ask for: 8 times the paper's 8192 codes (the backbone's
#: embedding and output head grow with it)
MAX_CODEBOOK = 1 << 16


@dataclass
class QuantizerConfig:
    codebook_size: int = 8192
    dim: int = 4
    beta: float = 0.9
    sync_nu: float = 1.0
    affine: bool = True
    replace_freq: int = 20
    replace_noise: float = 0.01
    kmeans_init: bool = True
    kmeans_iters: int = 0
    chunk_size: int = 4096

    def validate(self) -> None:
        check_range(self, "codebook_size", 2, MAX_CODEBOOK)
        check_range(self, "dim", 1, 1024)
        check_range(self, "beta", 0.0, 1.0)
        for key in ("sync_nu", "replace_noise"):
            check_range(self, key, 0.0)
        check_range(self, "replace_freq", 0, 10**9)
        check_range(self, "kmeans_iters", 0, 1000)
        check_range(self, "chunk_size", 1, 1 << 24)


#: codebooks at least this large use the two-level argmin of :func:`nearest_code`
_BLOCKED_MIN_CODES = 1024
#: codes per block of the two-level argmin (measured best at 64 on x86 CPUs)
_BLOCK = 64
#: distance-matrix entries per chunk: about 4 MB of float32, so the matrix stays in cache
_CHUNK_ENTRIES = 1 << 20


def _argmin_rows(d: torch.Tensor) -> torch.Tensor:
    """``d.argmin(1)`` (first minimum on ties) of a (M, K) matrix, faster for large K.

    PyTorch's CPU argmin along rows is several times slower than a plain min (it does not
    vectorise); with thousands of codes it dominated a tokenizer training step. So: the minimum
    of each block of ``_BLOCK`` codes (a vectorised ``amin``), the first block holding the row
    minimum, then the argmin inside that block only. Same result as ``argmin`` (the first block
    with the minimum holds the first minimal index).
    """
    m, k = d.shape
    if k < _BLOCKED_MIN_CODES or d.device.type != "cpu":
        return d.argmin(1)
    pad = (-k) % _BLOCK
    if pad:
        d = torch.cat([d, d.new_full((m, pad), float("inf"))], 1)
    blocks = d.view(m, -1, _BLOCK)
    b = blocks.amin(2).argmin(1)
    inner = blocks[torch.arange(m, device=d.device), b].argmin(1)
    return b * _BLOCK + inner


def nearest_code(z: torch.Tensor, codebook: torch.Tensor, chunk_size: int = 4096) -> torch.Tensor:
    """Index of the nearest codebook row (Euclidean) for each row of ``z``.

    z: (M, D); codebook: (K, D) -> (M,) int64. Works in chunks of at most ``chunk_size`` rows
    (fewer for large codebooks, so the (chunk, K) distance matrix stays small and in cache).
    """
    c2 = (codebook * codebook).sum(1)  # (K,)
    out = torch.empty(z.shape[0], dtype=torch.long, device=z.device)
    if z.device.type == "cpu":
        chunk_size = max(1, min(chunk_size, _CHUNK_ENTRIES // max(1, codebook.shape[0])))
    for lo in range(0, z.shape[0], chunk_size):
        zc = z[lo:lo + chunk_size]
        # |z|^2 is constant per row, so argmin over |c|^2 - 2 z.c is enough
        d = torch.addmm(c2.unsqueeze(0), zc, codebook.t(), alpha=-2.0)
        out[lo:lo + chunk_size] = _argmin_rows(d)
    return out


def kmeans_pp(x: torch.Tensor, k: int, iters: int = 0,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """k-means++ seeding of ``k`` centres from points ``x`` (M, D), then ``iters`` Lloyd steps.

    With fewer distinct points than ``k``, the remaining centres are copies of drawn points
    plus tiny noise (they are dead codes the replacement will recycle).
    """
    m = x.shape[0]
    centres = torch.empty(k, x.shape[1], dtype=x.dtype, device=x.device)
    first = int(torch.randint(m, (1,), generator=generator, device="cpu"))
    centres[0] = x[first]
    d2 = ((x - centres[0]) ** 2).sum(1)
    for i in range(1, k):
        total = d2.sum()
        if total <= 0:  # every point coincides with a centre
            idx = torch.randint(m, (k - i,), generator=generator, device="cpu")
            noise = torch.randn(k - i, x.shape[1], generator=generator, device="cpu")
            centres[i:] = x[idx.to(x.device)] + 1e-3 * noise.to(x)
            break
        j = int(torch.multinomial((d2 / total).cpu().double(), 1, generator=generator))
        centres[i] = x[j]
        d2 = torch.minimum(d2, ((x - centres[i]) ** 2).sum(1))
    for _ in range(iters):
        assign = nearest_code(x, centres)
        sums = torch.zeros_like(centres).index_add_(0, assign, x)
        counts = torch.bincount(assign, minlength=k).to(x.dtype)
        used = counts > 0
        centres[used] = sums[used] / counts[used, None]
    return centres


class VectorQuantizer(nn.Module):
    """Codebook of ``codebook_size`` x ``dim`` with the options of :class:`QuantizerConfig`."""

    def __init__(self, cfg: QuantizerConfig):
        super().__init__()
        self.cfg = cfg
        k, d = cfg.codebook_size, cfg.dim
        self.codebook = nn.Parameter(torch.randn(k, d) / d ** 0.5)
        if cfg.affine:
            self.scale = nn.Parameter(torch.ones(d))
            self.shift = nn.Parameter(torch.zeros(d))
        # training statistics: not learnable, saved with the weights
        self.register_buffer("initialised", torch.tensor(not cfg.kmeans_init))
        self.register_buffer("steps_unused", torch.zeros(k, dtype=torch.long))

    # ----------------------------------------------------------------- codebook
    def effective_codebook(self) -> torch.Tensor:
        """(K, D) codes as seen by the encoder: the affine transform applied."""
        if self.cfg.affine:
            return self.codebook * self.scale + self.shift
        return self.codebook

    def _to_raw(self, z: torch.Tensor) -> torch.Tensor:
        """Invert the affine transform: raw codebook rows whose effective value is ``z``."""
        if self.cfg.affine:
            return (z - self.shift) / self.scale.clamp_min(1e-6)
        return z

    @torch.no_grad()
    def _kmeans_init(self, z: torch.Tensor) -> None:
        self.codebook.data.copy_(self._to_raw(
            kmeans_pp(z.detach().float(), self.cfg.codebook_size, self.cfg.kmeans_iters)))
        self.initialised.fill_(True)
        _sync_from_rank0(self.codebook.data)  # DDP: every process keeps the same codebook

    @torch.no_grad()
    def _update_usage(self, idx: torch.Tensor, z: torch.Tensor) -> int:
        """Count a training step; replace codes unused for ``replace_freq`` steps. Returns the
        number of codes replaced."""
        counts = torch.bincount(idx, minlength=self.cfg.codebook_size)
        _sum_over_ranks(counts)  # DDP: a code is used if any process used it
        used = counts > 0
        self.steps_unused += 1
        self.steps_unused[used] = 0
        if self.cfg.replace_freq <= 0:
            return 0
        dead = torch.nonzero(self.steps_unused >= self.cfg.replace_freq).flatten()
        if dead.numel() == 0:
            return 0
        if z.shape[0]:
            pick = torch.randint(z.shape[0], (dead.numel(),), device=z.device)
            new = z.detach()[pick] + self.cfg.replace_noise * torch.randn(
                dead.numel(), z.shape[1], device=z.device, dtype=z.dtype)
            self.codebook.data[dead] = self._to_raw(new).to(self.codebook.dtype)
        # DDP: the replacements of process 0 (dead is the same everywhere) go to every process
        _sync_from_rank0(self.codebook.data)
        self.steps_unused[dead] = 0
        return int(dead.numel())

    # ------------------------------------------------------------------ forward
    def quantize(self, z: torch.Tensor) -> torch.Tensor:
        """Nearest-code indices of (M, D) rows (no gradient, no statistics)."""
        return nearest_code(z.detach(), self.effective_codebook().detach(), self.cfg.chunk_size)

    def lookup(self, idx: torch.Tensor) -> torch.Tensor:
        """Code vectors (..., D) for indices (...); index -1 (padding) gives zeros."""
        cb = self.effective_codebook()
        out = cb[idx.clamp_min(0)]
        return out * (idx >= 0).unsqueeze(-1).to(out.dtype)

    def forward(self, z: torch.Tensor, mask: torch.Tensor | None = None):
        """Quantise ``z`` (..., D) where ``mask`` (...) is True.

        Returns ``(z_q, idx, vq_loss, stats)``: z_q (..., D) with the straight-through gradient,
        idx (...) int64 (-1 on padding), the scalar vq_loss over real entries only, and a dict
        with ``perplexity``, ``usage`` (fraction of codes used in this batch) and ``replaced``.
        """
        if torch.is_autocast_enabled(z.device.type):
            # mixed precision (bf16) for the networks around it, fp32 for the quantiser: code
            # distances and the codebook update are too coarse in bf16
            with torch.autocast(z.device.type, enabled=False):
                return self.forward(z.float(), mask)
        if mask is None:
            mask = torch.ones(z.shape[:-1], dtype=torch.bool, device=z.device)
        zv = z[mask]  # (M, D) real entries only
        if self.training and not bool(self.initialised) and zv.shape[0] > 0:
            self._kmeans_init(zv)
        cb = self.effective_codebook()
        idx_v = nearest_code(zv.detach(), cb.detach(), self.cfg.chunk_size)
        zq_v = cb[idx_v]
        beta = self.cfg.beta
        if zv.shape[0]:
            vq_loss = ((1 - beta) * F.mse_loss(zv, zq_v.detach())
                       + beta * F.mse_loss(zv.detach(), zq_v))
        else:
            vq_loss = z.sum() * 0.0
        nu = self.cfg.sync_nu
        # forward value z_q; d/dz = identity (straight through); d/dz_q = nu (synchronised)
        out_v = zv + (zq_v - zv).detach()
        if nu:
            out_v = out_v + nu * zq_v - (nu * zq_v).detach()
        out = z.masked_scatter(mask.unsqueeze(-1), out_v) if zv.shape[0] else z
        idx = torch.full(mask.shape, -1, dtype=torch.long, device=z.device)
        idx[mask] = idx_v
        counts = torch.bincount(idx_v, minlength=self.cfg.codebook_size).float()
        p = counts / counts.sum().clamp_min(1)
        stats = {"perplexity": torch.exp(-(p * torch.log(p.clamp_min(1e-12))).sum()).detach(),
                 "usage": (counts > 0).float().mean(), "replaced": 0}
        if self.training:
            stats["replaced"] = self._update_usage(idx_v, zv)
        return out, idx, vq_loss, stats
