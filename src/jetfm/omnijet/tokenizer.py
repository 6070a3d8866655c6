"""The OmniJet-alpha tokenizer: a VQ-VAE over whole jets with NormFormer blocks.

Linear(3 -> width) -> ``enc_blocks`` NormFormer blocks -> Linear(width -> latent) -> vector
quantiser -> Linear(latent -> width) -> ``dec_blocks`` NormFormer blocks -> Linear(width -> 3).
Encoder and decoder attend over all constituents of a jet (bidirectional, key-padding mask), so
decoding needs the whole token sequence of a jet.

Feature tensors are ``(B, P, 3)`` float32 in the preprocessed space of
:class:`jetfm.physics.features.Preprocessing` (``ln pT/GeV - 1.8, 3 eta_rel, 3 phi_rel``) with a
``(B, P)`` bool mask. ``encode(Jets)`` / ``decode(codes, mask)`` convert to and from
:class:`jetfm.Jets`.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from jetfm.config import ConfigValueError, check_model_size, check_range, validate
from jetfm.jets import Jets
from jetfm.omnijet.quantizer import QuantizerConfig, VectorQuantizer
from jetfm.physics.features import Preprocessing


@dataclass
class TokenizerConfig:
    input_dim: int = 3
    width: int = 128
    enc_blocks: int = 4
    dec_blocks: int = 4
    heads: int = 8
    #: hidden width of the NormFormer MLP as a multiple of ``width``
    mlp_ratio: float = 1.0
    dropout: float = 0.1
    #: weight of the vq loss: loss = MSE(reconstruction) + alpha * vq_loss
    alpha: float = 10.0
    #: extra weight of a constituent's reconstruction error by its share of the jet's pT:
    #: w = (1 + pt_weight * n * pT / sum pT) / (1 + pt_weight), n the jet's constituents (so
    #: the mean weight is 1). 0: every constituent alike, as in OmniJet-alpha. The hardest
    #: constituents set the jet mass and the prongs, and are the rarest in feature space.
    pt_weight: float = 0.0
    #: a second, finer code for the ``residual_leading`` leading constituents of a jet:
    #: ``residual_codes`` vectors fitted by k-means, after the VQ-VAE's training, to what the
    #: decoder misses of them (their features minus the decoded ones); each of those
    #: constituents then takes two tokens, its code and its residual code. 0: none, one token
    #: per constituent as in OmniJet-alpha. The leading constituents set the jet's prongs, and
    #: the VQ-VAE's code resolves their angles to only about 0.05 rad (see
    #: ``benchmarks/tokenizer_resolution.py``)
    residual_codes: int = 0
    residual_leading: int = 10
    quantizer: QuantizerConfig = field(default_factory=QuantizerConfig)

    def validate(self) -> None:
        check_range(self, "input_dim", 3, 3)  # the three preprocessed features
        check_range(self, "width", 1, 8192)
        for key in ("enc_blocks", "dec_blocks"):
            check_range(self, key, 0, 64)
        check_range(self, "heads", 1, self.width)
        if self.width % self.heads:
            raise ConfigValueError("heads", f"{self.heads} heads do not divide the width "
                                            f"{self.width}")
        check_range(self, "mlp_ratio", 0.0, 64.0, lo_open=True)
        check_range(self, "dropout", 0.0, 1.0, hi_open=True)
        check_range(self, "alpha", 0.0)
        check_range(self, "pt_weight", 0.0, 1000.0)
        check_range(self, "residual_codes", 0, 65536)
        check_range(self, "residual_leading", 1, 4096)
        check_model_size("width", self.n_parameters())

    def n_parameters(self) -> int:
        """Parameters of the blocks and the codebook (the bulk of the model; for size bounds)."""
        w, hidden = self.width, max(1, int(round(self.width * self.mlp_ratio)))
        block = 4 * w * w + 2 * w * hidden
        return (self.enc_blocks + self.dec_blocks) * block + \
            self.quantizer.codebook_size * self.quantizer.dim + self.residual_codes * self.input_dim


class NormFormerBlock(nn.Module):
    """LN -> MHA -> LN -> + residual -> MLP(LN, Linear, SiLU, Dropout, Linear) -> + residual.

    The MLP's last layer starts at zero, so a fresh block is the identity plus attention.
    """

    def __init__(self, width: int, heads: int, mlp_ratio: float = 1.0, dropout: float = 0.1):
        super().__init__()
        hidden = max(1, int(round(width * mlp_ratio)))
        self.norm1 = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, dropout=dropout, batch_first=True)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, hidden), nn.SiLU(),
                                 nn.Dropout(dropout), nn.Linear(hidden, width))
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def _attention(self, h: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        """Multi-head self-attention with the weights of ``self.attn`` (nn.MultiheadAttention),
        computed directly with a broadcast (B, 1, 1, P) key mask: nn.MultiheadAttention expands
        the padding mask to (B, heads, P, P), which is many times slower on CPUs."""
        a = self.attn
        b, p, c = h.shape
        qkv = F.linear(h, a.in_proj_weight, a.in_proj_bias)
        q, k, v = qkv.view(b, p, 3, a.num_heads, c // a.num_heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=~pad[:, None, None, :],
                                           dropout_p=a.dropout if self.training else 0.0)
        return a.out_proj(y.transpose(1, 2).reshape(b, p, c))

    def forward(self, x: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        """x (B, P, W), pad (B, P) True for keys to ignore -> (B, P, W)."""
        h = self.norm1(x)
        h = self._attention(h, pad)
        x = x + self.norm2(h)
        return x + self.mlp(x)


def _key_padding(mask: torch.Tensor) -> torch.Tensor:
    """Key-padding mask (B, P) for attention; a jet without constituents attends to its padding
    (its outputs are zeroed anyway) instead of producing NaN."""
    return ~mask & mask.any(1, keepdim=True)


class VQVAETokenizer(nn.Module):
    """NormFormer VQ-VAE tokenizer (about 0.83 M parameters at the paper size)."""

    def __init__(self, cfg: TokenizerConfig | None = None,
                 preprocessing: Preprocessing | None = None):
        super().__init__()
        self.cfg = cfg = cfg or TokenizerConfig()
        self.preprocessing = preprocessing or Preprocessing()
        w, q = cfg.width, cfg.quantizer
        self.enc_in = nn.Linear(cfg.input_dim, w)
        self.enc_blocks = nn.ModuleList(NormFormerBlock(w, cfg.heads, cfg.mlp_ratio, cfg.dropout)
                                        for _ in range(cfg.enc_blocks))
        self.enc_out = nn.Linear(w, q.dim)
        self.quantizer = VectorQuantizer(q)
        self.dec_in = nn.Linear(q.dim, w)
        self.dec_blocks = nn.ModuleList(NormFormerBlock(w, cfg.heads, cfg.mlp_ratio, cfg.dropout)
                                        for _ in range(cfg.dec_blocks))
        self.dec_out = nn.Linear(w, cfg.input_dim)
        if cfg.residual_codes:
            self.register_buffer("residual_codebook",
                                 torch.zeros(cfg.residual_codes, cfg.input_dim))

    @property
    def codebook_size(self) -> int:
        return self.cfg.quantizer.codebook_size

    @property
    def residual_codes(self) -> int:
        return self.cfg.residual_codes

    def residual_vectors(self) -> np.ndarray | None:
        """(residual_codes, 3) float32: the residual codebook (offsets in the preprocessed
        features); None without residual codes."""
        if not self.cfg.residual_codes:
            return None
        return self.residual_codebook.detach().cpu().float().numpy()

    def latent_codebook(self) -> np.ndarray:
        """(codebook_size, dim) float32: the codes as the encoder sees them (affine applied)."""
        with torch.no_grad():
            return self.quantizer.effective_codebook().detach().cpu().numpy()

    # ---------------------------------------------------------------- tensors
    def encoder(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, P, 3) features -> (B, P, latent) continuous encoder outputs z_e."""
        h = self.enc_in(x)
        pad = _key_padding(mask)
        for blk in self.enc_blocks:
            h = blk(h, pad)
        return self.enc_out(h) * mask.unsqueeze(-1)

    def decoder(self, zq: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, P, latent) quantised latents -> (B, P, 3) reconstructed features (0 on padding)."""
        h = self.dec_in(zq)
        pad = _key_padding(mask)
        for blk in self.dec_blocks:
            h = blk(h, pad)
        return self.dec_out(h) * mask.unsqueeze(-1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor):
        """Returns ``(recon (B,P,3), codes (B,P) with -1 on padding, loss, parts)`` where
        loss = MSE over real constituents + alpha * vq_loss and ``parts`` holds the pieces and
        the quantiser statistics."""
        z = self.encoder(x, mask)
        zq, codes, vq_loss, stats = self.quantizer(z, mask)
        recon = self.decoder(zq, mask)
        m = mask.unsqueeze(-1).to(x.dtype)
        n = (m.sum() * x.shape[-1]).clamp_min(1)
        rec_loss = (((recon - x) ** 2) * m * self._loss_weights(x, mask)).sum() / n
        loss = rec_loss + self.cfg.alpha * vq_loss
        return recon, codes, loss, {"rec_loss": rec_loss, "vq_loss": vq_loss, **stats}

    def _loss_weights(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor | float:
        """Per-constituent weights (B, P, 1) of the reconstruction error (``cfg.pt_weight``).
        The first feature is ln pT plus a constant, so a softmax over a jet gives pT shares."""
        lam = self.cfg.pt_weight
        if not lam:
            return 1.0
        with torch.no_grad():
            share = torch.softmax(x[..., 0].masked_fill(~mask, -torch.inf), dim=1)
            share = torch.nan_to_num(share)  # jets without constituents
            n = mask.sum(1, keepdim=True).to(x.dtype)
            return ((1 + lam * n * share) / (1 + lam)).unsqueeze(-1)

    @torch.no_grad()
    def encode_features(self, x: torch.Tensor, mask: torch.Tensor,
                        residual: bool = True) -> torch.Tensor:
        """(B, P, 3), (B, P) -> codes (B, P) int64, -1 on padding; with residual codes the
        combined ones (:func:`jetfm.io.tokens.split_codes`) for the leading constituents
        (``residual=False``: the VQ-VAE's codes alone)."""
        z = self.encoder(x, mask)
        codes = torch.full(mask.shape, -1, dtype=torch.long, device=x.device)
        codes[mask] = self.quantizer.quantize(z[mask])
        if not (residual and self.cfg.residual_codes):
            return codes
        lead = self._leading(mask)
        resid = (x - self.decoder(self.quantizer.lookup(codes), mask))[lead]
        r = torch.cdist(resid.float(), self.residual_codebook).argmin(1)
        codes[lead] += self.codebook_size * (r + 1)
        return codes

    def _leading(self, mask: torch.Tensor) -> torch.Tensor:
        """The constituents (B, P) that get a residual code: the first ``residual_leading``."""
        lead = mask.clone()
        lead[:, self.cfg.residual_leading:] = False
        return lead

    @torch.no_grad()
    def decode_codes(self, codes: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """codes (B, P) int64 (ignored where mask is False) -> features (B, P, 3)."""
        codes = torch.where(mask, codes, torch.full_like(codes, -1))
        if not self.cfg.residual_codes:
            return self.decoder(self.quantizer.lookup(codes), mask)
        k = self.codebook_size
        r = torch.where(codes >= 0, codes // k - 1, -1)
        out = self.decoder(self.quantizer.lookup(torch.where(codes >= 0, codes % k, -1)), mask)
        has = r >= 0
        out[has] += self.residual_codebook[r[has]].to(out.dtype)
        return out

    def with_residual_codes(self, residual_codes: int, residual_leading: int) -> VQVAETokenizer:
        """A copy of this tokenizer (the same VQ-VAE weights) with an empty residual codebook of
        ``residual_codes`` vectors for the ``residual_leading`` leading constituents, to fit with
        :meth:`fit_residual_codebook`."""
        cfg = dataclasses.replace(self.cfg, residual_codes=residual_codes,
                                  residual_leading=residual_leading)
        validate(cfg, "tokenizer.")
        tok = VQVAETokenizer(cfg, self.preprocessing)
        state = {k: v for k, v in self.state_dict().items() if k != "residual_codebook"}
        missing, unexpected = tok.load_state_dict(state, strict=False)
        if unexpected or set(missing) - {"residual_codebook"}:
            raise ValueError(f"cannot copy the tokenizer (missing {missing}, unexpected "
                             f"{unexpected})")
        return tok.train(self.training)

    @torch.no_grad()
    def fit_residual_codebook(self, feats: np.ndarray, mask: np.ndarray, seed: int = 0,
                              iters: int = 30, max_points: int = 200_000,
                              codes: np.ndarray | None = None) -> dict:
        """Fit the residual codebook (``cfg.residual_codes`` vectors) by k-means (Lloyd's
        algorithm from a seeded random choice of points; an emptied cluster restarts at the point
        farthest from its centre) to the residuals of the leading constituents of the preprocessed
        jets ``feats`` (N, P, 3), ``mask`` (N, P): their features minus what the decoder gives
        for their codes (``codes``: those plain codes, ``encode_arrays(..., residual=False)``,
        when the caller has them already). Returns the rms residual before and after, per
        feature."""
        r_codes = self.cfg.residual_codes
        if not r_codes:
            raise ValueError("the tokenizer has no residual codes (tokenizer.residual_codes = 0)")
        mask = np.asarray(mask, bool)
        if codes is None:
            codes = self.encode_arrays(feats, mask, residual=False)
        dec = self.decode_arrays(codes, mask)  # plain codes: no residual vector added
        lead = self._leading(torch.as_tensor(mask)).numpy()
        pts = torch.as_tensor(np.asarray(feats, np.float32)[lead] - dec[lead])
        if len(pts) == 0:
            raise ValueError("no constituents to fit the residual codebook to")
        g = torch.Generator().manual_seed(seed)
        if len(pts) > max_points:
            pts = pts[torch.randperm(len(pts), generator=g)[:max_points]]
        centres = pts[torch.randint(len(pts), (r_codes,), generator=g)].clone()
        for _ in range(iters):
            dist = torch.cdist(pts, centres)
            near = dist.argmin(1)
            n = torch.bincount(near, minlength=r_codes)
            sums = torch.zeros_like(centres).index_add_(0, near, pts)
            centres = torch.where(n[:, None] > 0, sums / n.clamp_min(1)[:, None].float(), centres)
            empty = torch.nonzero(n == 0).flatten()
            if len(empty):
                far = dist.gather(1, near[:, None]).squeeze(1).topk(len(empty)).indices
                centres[empty] = pts[far]
        self.residual_codebook.copy_(centres.to(self.residual_codebook))
        after = pts - centres[torch.cdist(pts, centres).argmin(1)]
        return {"rms_before": pts.pow(2).mean(0).sqrt().tolist(),
                "rms_after": after.pow(2).mean(0).sqrt().tolist(), "n_points": len(pts)}

    # ------------------------------------------------------------------- jets
    def _device(self) -> torch.device:
        return next(self.parameters()).device

    def encode(self, jets: Jets, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
        """Jets -> (codes (N, n_max) int64 in [0, codebook_size) (combined ones with residual
        codes) with -1 on padding,
        mask (N, n_max) bool), after the OmniJet-alpha preprocessing (pT order, |rel| < 0.8)."""
        feats, mask = self.preprocessing.forward(jets)
        return self.encode_arrays(feats, mask, batch_size), mask

    def encode_arrays(self, feats: np.ndarray, mask: np.ndarray, batch_size: int = 256, *,
                      residual: bool = True) -> np.ndarray:
        """Preprocessed features (N, P, 3) and mask (N, P) -> codes (N, P) int64
        (:meth:`encode_features`)."""
        was = self.training
        self.eval()
        dev = self._device()
        out = np.full(mask.shape, -1, np.int64)
        try:
            for lo in range(0, len(mask), batch_size):
                m = mask[lo:lo + batch_size]
                p = max(1, int(m.sum(1).max())) if len(m) else 1  # trim trailing padding
                x = torch.as_tensor(feats[lo:lo + batch_size, :p], device=dev)
                c = self.encode_features(x, torch.as_tensor(m[:, :p], device=dev), residual)
                out[lo:lo + batch_size, :p] = c.cpu().numpy()
        finally:
            self.train(was)
        return out

    def decode_arrays(self, codes: np.ndarray, mask: np.ndarray,
                      batch_size: int = 256) -> np.ndarray:
        """codes (N, P), mask (N, P) -> preprocessed features (N, P, 3) float32."""
        was = self.training
        self.eval()
        dev = self._device()
        codes = np.asarray(codes, np.int64)
        mask = np.asarray(mask, bool)
        hi = self.codebook_size * (self.cfg.residual_codes + 1)
        if ((codes < 0) & mask).any() or (codes >= hi).any():
            raise ValueError(f"codes must lie in [0, {hi}) where mask is True")
        out = np.zeros(mask.shape + (self.cfg.input_dim,), np.float32)
        try:
            for lo in range(0, len(mask), batch_size):
                m = mask[lo:lo + batch_size]
                p = max(1, int(m.sum(1).max())) if len(m) else 1
                f = self.decode_codes(torch.as_tensor(codes[lo:lo + batch_size, :p], device=dev),
                                      torch.as_tensor(m[:, :p], device=dev))
                out[lo:lo + batch_size, :p] = f.cpu().numpy()
        finally:
            self.train(was)
        return out

    def sequences(self, codes: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Codes of :meth:`encode_arrays` -> token sequences
        (:func:`jetfm.io.tokens.codes_to_sequences`, with this tokenizer's residual codes)."""
        from jetfm.io.tokens import codes_to_sequences

        return codes_to_sequences(codes, mask, self.codebook_size, self.cfg.residual_codes)

    def decode(self, codes: np.ndarray, mask: np.ndarray, batch_size: int = 256) -> Jets:
        """codes (N, P) + mask (N, P) -> Jets with columns pt [GeV], eta_rel, phi_rel [rad] and
        massless px, py, pz, E [GeV] of a jet whose axis is at eta = phi = 0."""
        feats = self.decode_arrays(codes, mask, batch_size)
        return self.preprocessing.inverse(feats, mask)

