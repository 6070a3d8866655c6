"""The OmniJet-alpha generative backbone: a GPT over token sequences, and its samplers.

Token sequences (see :mod:`jetfm.io.tokens`): ``[start] + [code + 1 ...] + [stop]`` with
start = 0, stop = codebook_size + 1, vocabulary = codebook_size + 2, padded with -1. Shapes:
``(B, L)`` int64.

Architecture (reference): Embedding(vocab, dim) -> ``n_blocks`` decoder blocks -> Linear(dim ->
vocab). Post-LN blocks ``x = LN(x + MHA(x)); x = LN(x + FF(x))`` with a ReLU feed-forward
``dim -> ff_dim -> dim``; no positional embedding (order enters only through the causal mask).
Options: ``pre_ln`` (``x = x + MHA(LN(x)); x = x + FF(LN(x))`` plus a final LN) and ``dropout``.

Two samplers that give identical tokens for the same model and seed:

- :func:`generate`: key/value cache, one new token per step, stops as soon as every sequence of
  the batch has emitted its stop token, drops finished sequences from the work.
- :func:`generate_reference`: the reference algorithm, recomputing the whole sequence every step,
  always ``max_new`` steps.

Both draw one uniform per sequence per step (inverse-CDF sampling) from a generator of their own
per batch, seeded from ``seed``, so finished sequences and early stopping never shift the random
stream. The start token is never sampled (it is invalid after position 0).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from jetfm.config import ConfigValueError, check_model_size, check_range
from jetfm.omnijet.quantizer import MAX_CODEBOOK

START = 0
#: mixed into a sampling seed for the multiplicity draws (their own random stream)
MULTIPLICITY_SEED = 0x6D756C74


@dataclass
class BackboneConfig:
    #: codebook_size + 2 (start, codes, stop)
    vocab_size: int = 8194
    dim: int = 256
    n_blocks: int = 3
    heads: int = 8
    ff_dim: int = 1024
    dropout: float = 0.0
    pre_ln: bool = False
    #: longest sequence the sampler builds: start + max constituents (+ stop)
    max_len: int = 130
    #: features per code in the code table (0: the reference's plain token embedding); see
    #: :class:`JetGPT`
    code_features: int = 0
    #: random Fourier features of each code's mean (eta_rel, phi_rel) (columns 1 and 2 of the
    #: code table, so it needs ``code_features >= 3``): ``fourier_features`` fixed frequencies,
    #: their sines and cosines entering the input embedding and the output layer through linear
    #: maps; see :class:`JetGPT`. 0: none
    fourier_features: int = 0
    #: anchor-kernel heads (needs ``code_features >= 3``): a constituent gets, added to the logit
    #: of each code, the log of a Gaussian kernel density (learned width per head) around the
    #: earlier ones among the first ``kernel_anchors`` (the hard ones) it attends to; see
    #: :class:`AnchorKernel`. 0: none
    kernel_heads: int = 0
    kernel_anchors: int = 16
    #: the first position whose logits the kernels move (position t draws constituent t + 1 and
    #: uses the anchors 1 .. min(t, kernel_anchors)): 1 moves every constituent after the first,
    #: ``kernel_anchors`` only the ones after the anchors
    kernel_from: int = 1
    #: the tokenizer's residual codes (set from it): tokens ``vocab_size - 1 - residual_codes``
    #: to ``vocab_size - 2`` are residual codes, and each of a jet's first ``residual_leading``
    #: constituents is its code's token followed by a residual one; the logits of every position
    #: allow only the kind of token its place takes (:meth:`JetGPT.grammar`). With the code
    #: table a residual token also carries its geometry: see :class:`JetGPT`
    residual_codes: int = 0
    residual_leading: int = 0
    #: with residual codes and the code table: a residual token enters as the refined
    #: constituent and its logit reads the output layer's Fourier map at the refined place (see
    #: :class:`JetGPT`); False: its table row is ignored (the models saved before this existed)
    residual_geometry: bool = True
    #: condition every position on how many constituents the jet has left to come (a learned
    #: embedding of that count added to the input), and learn the jet's multiplicity as a
    #: histogram of the training jets: the sampler draws a jet's multiplicity first, then its
    #: constituents, and the stop token comes exactly after the last one (see :class:`JetGPT`)
    multiplicity: bool = False

    @property
    def stop_token(self) -> int:
        return self.vocab_size - 1

    @property
    def max_multiplicity(self) -> int:
        """The most constituents a sequence holds (``max_len`` less start, stop and the
        residual tokens)."""
        return max(0, self.max_len - 2 - self.residual_leading)

    def validate(self) -> None:
        # codes, residual codes + start, stop
        check_range(self, "vocab_size", 3, MAX_CODEBOOK + 2 + self.residual_codes)
        check_range(self, "dim", 1, 8192)
        check_range(self, "n_blocks", 1, 128)
        check_range(self, "heads", 1, self.dim)
        if self.dim % self.heads:
            raise ConfigValueError("heads", f"{self.heads} heads do not divide the width "
                                            f"(dim) {self.dim}")
        check_range(self, "ff_dim", 1, 1 << 16)
        check_range(self, "dropout", 0.0, 1.0, hi_open=True)
        check_range(self, "max_len", 2, 4098)  # n_max bound + start, stop
        check_range(self, "code_features", 0, 64)
        check_range(self, "fourier_features", 0, 1024)
        if self.fourier_features and self.code_features < 3:
            raise ConfigValueError("fourier_features", "needs the code table's angles "
                                   f"(code_features >= 3), got code_features "
                                   f"{self.code_features}")
        check_range(self, "kernel_heads", 0, 16)
        check_range(self, "kernel_anchors", 1, 128)
        check_range(self, "kernel_from", 1, self.kernel_anchors)
        check_range(self, "residual_codes", 0, self.vocab_size - 3)
        check_range(self, "residual_leading", 0, self.max_len)
        if self.kernel_heads and self.residual_codes:
            raise ConfigValueError("kernel_heads", "the anchor kernels take one token per "
                                   "constituent: not with a tokenizer's residual codes")
        if self.kernel_heads and self.code_features < 3:
            raise ConfigValueError("kernel_heads", "needs the code table's angles "
                                   f"(code_features >= 3), got code_features "
                                   f"{self.code_features}")
        check_model_size("dim", self.n_parameters())

    def n_parameters(self) -> int:
        """Weights of the blocks, the embedding and the output head, without biases and norms:
        the bulk of the model (for size bounds)."""
        feats = self.code_features * (self.vocab_size + 2 * self.dim) + 2 * self.dim ** 2 \
            if self.code_features else 0
        feats += 4 * self.fourier_features * self.dim
        feats += self.kernel_heads * self.dim * (2 * AnchorKernel.KEY_DIM + 1)
        if self.multiplicity:
            feats += (self.max_multiplicity + 1) * self.dim
        return self.n_blocks * (4 * self.dim ** 2 + 2 * self.dim * self.ff_dim) + \
            2 * self.vocab_size * self.dim + feats


class DecoderBlock(nn.Module):
    def __init__(self, cfg: BackboneConfig):
        super().__init__()
        if cfg.dim % cfg.heads:
            raise ValueError(f"dim {cfg.dim} is not a multiple of heads {cfg.heads}")
        self.heads, self.pre_ln, self.p = cfg.heads, cfg.pre_ln, cfg.dropout
        self.qkv = nn.Linear(cfg.dim, 3 * cfg.dim)
        self.proj = nn.Linear(cfg.dim, cfg.dim)
        self.ln1 = nn.LayerNorm(cfg.dim)
        self.ln2 = nn.LayerNorm(cfg.dim)
        self.ff = nn.Sequential(nn.Linear(cfg.dim, cfg.ff_dim), nn.ReLU(),
                                nn.Linear(cfg.ff_dim, cfg.dim))
        self.drop = nn.Dropout(cfg.dropout)

    def attn(self, x: torch.Tensor, cache: tuple[torch.Tensor, torch.Tensor] | None,
             pos: int) -> torch.Tensor:
        """Causal self-attention of x (B, T, C). With a cache (k, v each (B, H, Lmax, C/H)) the
        new keys/values are written at ``pos .. pos+T`` and the queries attend to ``0 .. pos+T``."""
        b, t, c = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        if cache is not None:
            kc, vc = cache
            kc[:, :, pos:pos + t] = k
            vc[:, :, pos:pos + t] = v
            k, v = kc[:, :, :pos + t], vc[:, :, :pos + t]
            if t > 1 and pos > 0:
                raise ValueError("cached attention takes a prefix at pos 0 or one token a step")
        y = F.scaled_dot_product_attention(q, k, v, is_causal=t > 1,
                                           dropout_p=self.p if self.training else 0.0)
        return self.proj(y.transpose(1, 2).reshape(b, t, c))

    def forward(self, x: torch.Tensor, cache=None, pos: int = 0) -> torch.Tensor:
        if self.pre_ln:
            x = x + self.drop(self.attn(self.ln1(x), cache, pos))
            return x + self.drop(self.ff(self.ln2(x)))
        x = self.ln1(x + self.drop(self.attn(x, cache, pos)))
        return self.ln2(x + self.drop(self.ff(x)))


def _feature_mlp(n_in: int, dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, dim), nn.GELU(), nn.Linear(dim, dim))


#: range of the anchor kernels' initial widths, in standardised units of the code table's angles
#: (about 0.27 rad each): from the spread of a prong's constituents to the distance between prongs
KERNEL_WIDTHS = (0.15, 0.8)
#: density floor inside the log: far from every chosen anchor a code's logit drops by at most
#: ``gain * log(1 / KERNEL_EPS)``
KERNEL_EPS = 1e-3


class AnchorKernel(nn.Module):
    """Anchor-kernel heads: soft constituents drawn close to the hard ones.

    The first ``A = kernel_anchors`` constituents of a jet (the hardest: constituents come in
    decreasing pT) are its anchors. A position t from ``kernel_from`` on gets, from each head
    h, ``gain_h(h_t) * log(eps + sum_j a_tj k_h(c, x_j))`` added to the logit of every token c:
    attention weights a_tj over the anchors up to t (queries from the hidden state at t, keys
    from the hidden states at the anchors) and Gaussian kernels
    ``k_h(c, x_j) = exp(-|x_c - x_j|^2 / (2 w_h^2))`` of the distance between the code's mean
    angles x_c (columns 1 and 2 of the code table) and the anchor's, with a learned width
    w_h. The stop token's kernel is a learned level per head (its place is not an angle), the
    start token's 0. This is the exact kernel that the Fourier features approximate with a few
    random frequencies. The gains start at 0, so a new model starts as the one without the
    heads. ``kernel_from`` sets the first position moved: 1 (every constituent after the
    first) gave the best substructure but shorter, so lighter, jets; ``A`` (only the ones after
    the anchors) kept the mass but not tau21 (``benchmarks/RESULTS.md``). Cost per position and
    head: a product over the anchors and a log over the vocabulary."""

    KEY_DIM = 16

    def __init__(self, cfg: BackboneConfig):
        super().__init__()
        h = self.heads = cfg.kernel_heads
        self.q = nn.Linear(cfg.dim, h * self.KEY_DIM)
        self.k = nn.Linear(cfg.dim, h * self.KEY_DIM)
        self.gain = nn.Linear(cfg.dim, h)
        nn.init.zeros_(self.gain.weight)
        nn.init.zeros_(self.gain.bias)
        lo, hi = KERNEL_WIDTHS
        frac = torch.linspace(0, 1, h) if h > 1 else torch.full((1,), 0.5)
        self.log_width = nn.Parameter(math.log(lo) + frac * math.log(hi / lo))
        self.stop_level = nn.Parameter(torch.zeros(h))

    def keys(self, h: torch.Tensor) -> torch.Tensor:
        """Hidden states at anchors (B, A, dim) -> keys (B, H, A, KEY_DIM)."""
        b, a, _ = h.shape
        return self.k(h).view(b, a, self.heads, self.KEY_DIM).transpose(1, 2)

    def kernels(self, xy: torch.Tensor, table_xy: torch.Tensor) -> torch.Tensor:
        """Anchor angles (B, A, 2) and the codes' angles (vocab, 2) -> the kernel of every token
        around each anchor (B, H, A, vocab): 0 for the start token, the head's learned level
        (between 0 and 1) for the stop token, whose place in the jet is not an angle."""
        codes = table_xy[START + 1:-1]
        d2 = (xy.square().sum(-1, keepdim=True) + codes.square().sum(-1)
              - 2 * xy @ codes.T).clamp_min(0)  # (B, A, V - 2)
        inv = 0.5 * torch.exp(-2 * self.log_width)
        k = torch.exp(d2[:, None] * -inv[:, None, None])  # (B, H, A, V - 2)
        edge = k.new_zeros(*k.shape[:-1], 1)
        level = torch.sigmoid(self.stop_level)[:, None, None].expand_as(edge)
        return torch.cat([edge, k, level], -1)

    def bias(self, h: torch.Tensor, keys: torch.Tensor, kern: torch.Tensor,
             allowed: torch.Tensor, where: torch.Tensor | None = None) -> torch.Tensor:
        """Logit bias of the positions of B jets: hidden states h (B, T, dim), the jets'
        anchor keys (B, H, A, K) and kernels (B, H, A, V), which anchors each position may use
        (B, T, A) -> (B * T, V), or (N, V) for the N positions of the mask ``where`` (B, T)
        only; 0 at positions without an anchor. The densities are a batched product over the
        A anchors; the log and the sum over heads run on the asked positions only."""
        b, t, _ = h.shape
        q = self.q(h).view(b, t, self.heads, self.KEY_DIM).transpose(1, 2)
        s = (q @ keys.transpose(-1, -2)) / math.sqrt(self.KEY_DIM)  # (B, H, T, A)
        m = allowed[:, None]
        w = torch.softmax(s.masked_fill(~m, -1e9), -1) * m.to(s.dtype)
        g = self.gain(h) * allowed.any(-1, keepdim=True).to(h.dtype)  # (B, T, H)
        out = None
        for head in range(self.heads):  # one contiguous (B, T, V) density at a time
            dens = w[:, head] @ kern[:, head]
            gh = g[..., head:head + 1]
            dens, gh = (dens.reshape(b * t, -1), gh.reshape(b * t, 1)) if where is None else \
                (dens[where], gh[where])
            term = torch.log(dens + KERNEL_EPS)
            out = term * gh if out is None else torch.addcmul(out, term, gh)
        assert out is not None
        return out


class JetGPT(nn.Module):
    """GPT backbone (about 6.57 M parameters at the paper size, vocabulary 8194).

    With ``code_features = F > 0`` every token also carries what its code means: a fixed table
    ``code_table`` (vocab, F) (see :func:`code_table`: the mean constituent features of the
    code in the training jets and the code's latent vector) enters the input embedding through
    an MLP (``feat_in``) and the output layer through another (``feat_out``), whose output is
    added to the head's weight rows: ``logits = h . (W + feat_out(table))^T + b``. A code the
    training jets rarely show still gets the embedding and the logit of its neighbours in
    (pT, eta, phi), so the model learns where constituents lie rather than 8192 unrelated
    symbols.

    With ``fourier_features = M > 0`` each code's mean angles ``x`` (standardised columns 1
    and 2 of the table) also give 2 M random Fourier features ``phi(x) = [sin(w x), cos(w x)]``
    for M fixed frequencies ``w`` (directions uniform, magnitudes log-uniform in
    [:data:`FOURIER_MIN`, :data:`FOURIER_MAX`] per standardised unit, about 0.27 rad), which
    enter the embedding and the output layer through linear maps (``four_in``, ``four_out``).
    ``phi(x_c) . phi(x_j)`` approximates a sum of Gaussian kernels of the angular distance between
    codes c and j (Rahimi & Recht, 2007), so attention that gathers ``phi`` of earlier
    constituents lets the logits put a smooth bump of probability around each of them: the
    next soft constituent lands near the prongs the hard ones set, an operation a plain
    embedding learns slowly from few jets.

    With residual codes (:attr:`BackboneConfig.residual_codes`) and the code table, a residual
    token's table row holds its offset (the tokenizer's residual vector, in the table's
    standardised units; :func:`code_table`), and the token enters the embedding as the refined
    constituent: the row of the code before it plus its offset. With Fourier features its logit
    also gets the same Fourier term a code's logit gets, evaluated at that refined place
    (:meth:`JetGPT.residual_field`): the output layer's map of where the next constituent lies
    is read at 0.015 rad instead of a code's spread, and a backbone pre-trained without residual
    codes already has that map.

    With ``kernel_heads > 0`` the logits also get the exact kernel density around the jet's
    leading constituents (:class:`AnchorKernel`, ``kernel``); the sampler then keeps the
    anchors in its :class:`SamplerState` (:meth:`new_state`, :meth:`advance`,
    :meth:`next_logits`).

    With ``multiplicity`` the model is ``p(N) p(constituents | N)``: every position's input gets
    a learned embedding (``remaining``) of how many constituents of the jet are still to come,
    ``N`` less the codes fed so far (a residual token is no constituent of its own), so each
    constituent is drawn knowing how many softer ones will share the rest of the jet. Training
    keeps the plain next-token loss (the stop token a target like any other, learned from the
    count, so validation losses compare with an unconditioned backbone's, and no mask over the
    vocabulary costs a training step anything); the samplers allow the stop token exactly when
    none is left and a code only while one is (:meth:`multiplicity_mask`), so a jet has the N
    constituents it was drawn with. ``p(N)`` is the histogram of
    the training jets' multiplicities (``multiplicity_counts``, counted by
    :meth:`count_multiplicity` on every training batch, reset when fine-tuning starts): its
    maximum-likelihood estimate. The samplers draw ``N`` from it first (:meth:`draw_multiplicity`)
    or take the caller's."""

    def __init__(self, cfg: BackboneConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or BackboneConfig()
        self.embed = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(DecoderBlock(cfg) for _ in range(cfg.n_blocks))
        self.ln_f = nn.LayerNorm(cfg.dim) if cfg.pre_ln else nn.Identity()
        self.head = nn.Linear(cfg.dim, cfg.vocab_size)
        if cfg.code_features:
            self.register_buffer("code_table", torch.zeros(cfg.vocab_size, cfg.code_features))
            self.feat_in = _feature_mlp(cfg.code_features, cfg.dim)
            self.feat_out = _feature_mlp(cfg.code_features, cfg.dim)
        if cfg.fourier_features:
            self.register_buffer("fourier_freqs", fourier_frequencies(cfg.fourier_features))
            self.four_in = nn.Linear(2 * cfg.fourier_features, cfg.dim, bias=False)
            self.four_out = nn.Linear(2 * cfg.fourier_features, cfg.dim, bias=False)
            nn.init.normal_(self.four_in.weight, std=0.02)
            nn.init.normal_(self.four_out.weight, std=0.02)
        if cfg.kernel_heads:
            self.kernel = AnchorKernel(cfg)
        if cfg.multiplicity:
            self.remaining = nn.Embedding(cfg.max_multiplicity + 1, cfg.dim)
            nn.init.normal_(self.remaining.weight, std=0.02)
            self.register_buffer("multiplicity_counts",
                                 torch.zeros(cfg.max_multiplicity + 1, dtype=torch.float64))

    # ------------------------------------------------------------------ multiplicity
    def _is_constituent(self, tokens: torch.Tensor) -> torch.Tensor:
        """Tokens that start a constituent: the codes (not start, stop, residual or padding)."""
        return (tokens > START) & (tokens < self._residual_range()[0])

    def multiplicities(self, seqs: torch.Tensor) -> torch.Tensor:
        """Token sequences (B, L) (-1 padded) -> their numbers of constituents (B,)."""
        return self._is_constituent(seqs).sum(1)

    def remaining_after(self, tokens: torch.Tensor, left: torch.Tensor) -> torch.Tensor:
        """Tokens (B, T) fed after a point where ``left`` (B,) constituents were still to come
        -> how many are still to come after each of them (B, T)."""
        return left[:, None] - torch.cumsum(self._is_constituent(tokens).long(), 1)

    @torch.no_grad()
    def count_multiplicity(self, seqs: torch.Tensor) -> None:
        """Add the multiplicities of training sequences (B, L) to ``multiplicity_counts``."""
        if self.cfg.multiplicity:
            n = self.multiplicities(seqs).clamp(0, self.cfg.max_multiplicity)
            self.multiplicity_counts += torch.bincount(
                n, minlength=len(self.multiplicity_counts)).to(self.multiplicity_counts)

    def draw_multiplicity(self, n: int, seed: int = 0) -> torch.Tensor:
        """``n`` multiplicities (int64, CPU) drawn from the training jets' histogram, by
        inverse CDF from a generator of their own seeded from ``seed`` (the token draws of the
        samplers do not shift)."""
        counts = self.multiplicity_counts.detach().double().cpu()
        if not self.cfg.multiplicity or float(counts.sum()) <= 0:
            raise ValueError("this backbone has no multiplicity histogram (trained without "
                             "backbone.multiplicity, or not trained)")
        cdf = counts.cumsum(0)
        g = torch.Generator().manual_seed(int(seed) ^ MULTIPLICITY_SEED)
        u = torch.rand(n, generator=g, dtype=torch.float64) * cdf[-1]
        return torch.searchsorted(cdf, u[:, None], right=True).squeeze(1).clamp_max(
            len(counts) - 1)

    def multiplicity_mask(self, logits: torch.Tensor, left: torch.Tensor) -> torch.Tensor:
        """Logits (..., vocab) of positions after which ``left`` (...) constituents are still
        to come -> the same with the stop token forbidden while one is left and the codes
        forbidden when none is (residual tokens stay to the grammar)."""
        vocab = torch.arange(logits.shape[-1], device=logits.device)
        code = (vocab > START) & (vocab < self._residual_range()[0])
        forbid = torch.where((left <= 0)[..., None], code, vocab == self.cfg.stop_token)
        return logits.masked_fill(forbid, -math.inf)

    def _remaining_input(self, left: torch.Tensor) -> torch.Tensor:
        return self.remaining(left.clamp(0, self.cfg.max_multiplicity))

    def _fourier(self, rows: torch.Tensor) -> torch.Tensor:
        """Code-table rows (..., code_features) -> their Fourier features (..., 2 M); 0 for the
        start and stop tokens (their rows are 0), which have no place in the jet."""
        arg = rows[..., 1:3] @ self.fourier_freqs.T
        is_code = (rows != 0).any(-1, keepdim=True).to(rows.dtype)
        return torch.cat([torch.sin(arg), torch.cos(arg)], -1) * is_code

    def _code_embedding(self, rows: torch.Tensor) -> torch.Tensor:
        out = self.feat_in(rows)
        if self.cfg.fourier_features:
            out = out + self.four_in(self._fourier(rows))
        return out

    def _residual_range(self) -> tuple[int, int]:
        """The residual tokens: ``first`` to ``end - 1``."""
        end = self.cfg.vocab_size - 1
        return end - self.cfg.residual_codes, end

    def _is_residual(self, tokens: torch.Tensor) -> torch.Tensor:
        first, end = self._residual_range()
        return (tokens >= first) & (tokens < end)

    def _geometry(self) -> bool:
        c = self.cfg
        return bool(c.residual_codes and c.code_features and c.residual_geometry)

    def _field(self) -> bool:
        """Whether the residual tokens' logits get :meth:`residual_field`."""
        return bool(self.cfg.fourier_features) and self._geometry()

    def _table(self) -> torch.Tensor:
        """The code table as the layers read it: without residual geometry the residual rows
        count as 0."""
        if not self.cfg.residual_codes or self.cfg.residual_geometry:
            return self.code_table
        first, end = self._residual_range()
        keep = torch.ones(len(self.code_table), 1, device=self.code_table.device)
        keep[first:end] = 0
        return self.code_table * keep

    def embed_tokens(self, tokens: torch.Tensor, prev: torch.Tensor | None = None
                     ) -> torch.Tensor:
        """tokens (B, T) -> input embeddings (B, T, dim); ``prev`` (B,): the token before the
        first one (default the start token), which a residual token's place needs."""
        x = self.embed(tokens)
        if not self.cfg.code_features:
            return x
        table = self._table()
        if tokens.numel() > len(table):  # the MLP once per code, not per token
            x = x + self._code_embedding(table)[tokens]
        else:
            x = x + self._code_embedding(table[tokens])
        if self._geometry():
            where = self._is_residual(tokens).nonzero(as_tuple=True)
            if len(where[0]):
                first = torch.full_like(tokens[:, :1], START) if prev is None else prev[:, None]
                before = torch.cat([first, tokens[:, :-1]], 1)[where]
                res = self.code_table[tokens[where]]
                # the refined constituent in place of the offset alone
                x = x.index_put(where, self._code_embedding(res + self.code_table[before])
                                - self._code_embedding(res), accumulate=True)
        return x

    def residual_field(self, h: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """Hidden states (N, dim) of positions whose next token is a residual code, and the code
        tokens (N,) just fed there -> what each of the R residual tokens adds to its logit
        (N, R): the output layer's Fourier term ``h . four_out(phi(x))`` at the refined place
        ``x`` = code's mean angles + residual offset. Written as a rotation of ``h``'s Fourier
        coefficients by the code's phases (``phi(c + o)`` from ``phi(c)`` and ``phi(o)``), so it
        costs (N, 2M) x (2M, R) instead of R feature maps per row. 0 without Fourier features."""
        first, end = self._residual_range()
        if not self._field():
            return h.new_zeros(len(h), end - first)
        m = self.cfg.fourier_features
        u = h @ self.four_out.weight  # (N, 2M): h's coefficient of each sin and cos
        us, uc = u[:, :m], u[:, m:]
        arg = self.code_table[codes][:, 1:3] @ self.fourier_freqs.T
        sc, cc = torch.sin(arg), torch.cos(arg)
        # u_s sin(a + b) + u_c cos(a + b) = sin b (u_s cos a - u_c sin a) + cos b (...)
        rot = torch.cat([us * cc - uc * sc, us * sc + uc * cc], 1)
        off = self.code_table[first:end, 1:3] @ self.fourier_freqs.T
        return rot @ torch.cat([torch.sin(off), torch.cos(off)], 1).T

    def _add_residual_field(self, logits: torch.Tensor, h: torch.Tensor,
                            codes: torch.Tensor) -> torch.Tensor:
        first, end = self._residual_range()
        pad = logits.new_zeros(len(h), first)
        stop = logits.new_zeros(len(h), logits.shape[-1] - end)
        return logits + torch.cat([pad, self.residual_field(h, codes), stop], 1)

    def _residual_slot(self, target_pos: torch.Tensor) -> torch.Tensor:
        return (target_pos % 2 == 0) & (target_pos <= 2 * self.cfg.residual_leading)

    def body(self, tokens: torch.Tensor, caches=None, pos: int = 0,
             prev: torch.Tensor | None = None, left: torch.Tensor | None = None
             ) -> torch.Tensor:
        """tokens (B, T) -> hidden states (B, T, dim); ``prev``: see :meth:`embed_tokens`.
        With ``multiplicity``: ``left`` (B, T), the constituents still to come after each
        token; by default those of whole sequences (start to stop, or padded)."""
        x = self.embed_tokens(tokens, prev)
        if self.cfg.multiplicity:
            if left is None:
                left = self.remaining_after(tokens, self.multiplicities(tokens))
            x = x + self._remaining_input(left)
        x = self.drop(x)
        for i, blk in enumerate(self.blocks):
            x = blk(x, None if caches is None else caches[i], pos)
        return self.ln_f(x)

    def output_weight(self) -> torch.Tensor:
        """The (vocab, dim) weight of the next-token logits."""
        if not self.cfg.code_features:
            return self.head.weight
        table = self._table()
        w = self.head.weight + self.feat_out(table)
        if self.cfg.fourier_features:
            phi = self._fourier(table)
            if self._geometry():  # a residual's place is its code's: residual_field
                first, end = self._residual_range()
                phi = torch.cat([phi[:first], torch.zeros_like(phi[first:end]), phi[end:]])
            w = w + self.four_out(phi)
        return w

    def logits(self, h: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        """Hidden states (..., dim) -> next-token logits (..., vocab); ``weight``: a
        precomputed :meth:`output_weight` (the sampler computes it once)."""
        if not self.cfg.code_features:
            return self.head(h)
        return F.linear(h, self.output_weight() if weight is None else weight, self.head.bias)

    def grammar(self, target_pos: torch.Tensor) -> torch.Tensor:
        """With residual codes: the additive mask (..., vocab) (0 or -inf) of the tokens allowed
        at the given target positions (a position's index in the sequence, start = 0): the
        second token of each of the first ``residual_leading`` constituents (positions 2, 4, ..)
        is a residual code, every other token a code or the stop. Callers add it only when
        ``cfg.residual_codes``: without them every position allows every token."""
        first, end = self._residual_range()
        is_res = torch.zeros(self.cfg.vocab_size, dtype=torch.bool, device=target_pos.device)
        is_res[first:end] = True
        res_slot = self._residual_slot(target_pos)
        allowed = torch.where(res_slot[..., None], is_res, ~is_res)
        allowed[..., START] = False
        zero = torch.zeros((), device=target_pos.device)
        return torch.where(allowed, zero, torch.full((), -math.inf, device=target_pos.device))

    def _is_code(self, tokens: torch.Tensor) -> torch.Tensor:
        return (tokens > START) & (tokens < self.cfg.stop_token)

    def _anchor_state(self, tokens: torch.Tensor, h: torch.Tensor):
        """Anchor tokens (B, n) and their hidden states (B, n, dim) -> (keys, kernels, is code)."""
        xy = self.code_table[tokens][..., 1:3]
        return (self.kernel.keys(h), self.kernel.kernels(xy, self.code_table[:, 1:3]),
                self._is_code(tokens))

    def add_kernel_bias(self, logits: torch.Tensor, tokens: torch.Tensor, h: torch.Tensor,
                        where: torch.Tensor | None = None) -> torch.Tensor:
        """Add the anchor kernels' bias to the logits of a whole sequence (B, T) with hidden
        states h (B, T, dim): position t >= ``kernel_from`` gets it from the anchors at positions
        1 .. min(t, A), the ones before are unchanged. ``logits``: (B, T, vocab), or (N, vocab)
        for the N positions of the mask ``where`` (B, T) (row-major), changed in place."""
        c = self.cfg
        b, t = tokens.shape
        first, n = c.kernel_from, min(c.kernel_anchors, t - 1)
        if not c.kernel_heads or t <= first:
            return logits
        keys, kern, code = self._anchor_state(tokens[:, 1:n + 1], h[:, 1:n + 1])
        dev = tokens.device
        causal = torch.arange(first, t, device=dev)[:, None] >= torch.arange(1, n + 1,
                                                                               device=dev)
        allowed = causal[None] & code[:, None]  # (B, T - first, n)
        if where is None:
            bias = self.kernel.bias(h[:, first:], keys, kern, allowed).view(b, t - first, -1)
            return torch.cat([logits[:, :first], logits[:, first:] + bias], 1)
        late = where.clone()
        late[:, :first] = False
        rows = torch.nonzero(late[where]).squeeze(1)
        bias = self.kernel.bias(h[:, first:], keys, kern, allowed, where[:, first:])
        return logits.index_add_(0, rows, bias)

    def forward(self, tokens: torch.Tensor, multiplicity: torch.Tensor | None = None
                ) -> torch.Tensor:
        """tokens (B, T) int64 in [0, vocab) from the start on -> logits (B, T, vocab) for the
        next token. With ``multiplicity``: the jets' multiplicities (B,), by default the
        constituents in ``tokens`` (whole sequences)."""
        left = None  # by default body counts the constituents in ``tokens``
        if self.cfg.multiplicity and multiplicity is not None:
            left = self.remaining_after(tokens, multiplicity.to(tokens.device))
        h = self.body(tokens, left=left)
        out = self.add_kernel_bias(self.logits(h), tokens, h)
        if self.cfg.residual_codes:
            target = torch.arange(1, tokens.shape[1] + 1, device=tokens.device)
            out = out + self.grammar(target)
            at = torch.nonzero(self._residual_slot(target)).flatten()
            if len(at) and self._field():
                b, n = tokens.shape[0], len(at)
                rows = self._add_residual_field(out[:, at].reshape(b * n, -1),
                                                h[:, at].reshape(b * n, -1),
                                                tokens[:, at].reshape(-1))
                out = out.index_copy(1, at, rows.view(b, n, -1))
        return out

    def loss(self, seqs: torch.Tensor) -> torch.Tensor:
        """Mean next-token cross-entropy over the real targets of ``seqs`` (B, L), -1 padded.

        Padding is excluded from the loss: every real token after the start (codes and the stop
        token) is a target, padding positions are not. The reference pads with token 0 and counts
        those positions in its loss, a defect that rewards predicting padding after the stop.
        """
        inp = seqs[:, :-1].clamp_min(0)  # padding inputs only feed padding positions (causal)
        tgt = seqs[:, 1:]
        valid = tgt >= 0
        # the head (dim x vocab: most of the FLOPs with thousands of codes) only on positions
        # with a target: a batch is padded to its longest jet, about twice the mean length
        left = None
        if self.cfg.multiplicity:
            left = self.remaining_after(inp, self.multiplicities(seqs))
        h = self.body(inp, left=left)
        hv = h[valid]
        # in place: the head's backward does not need its output
        logits = self.add_kernel_bias(self.logits(hv), inp, h, valid)
        if self.cfg.residual_codes:  # nonzero synchronises a GPU: only where it is needed
            target = torch.nonzero(valid)[:, 1] + 1
            logits = logits + self.grammar(target)
            at = torch.nonzero(self._residual_slot(target)).flatten()
            if len(at) and self._field():
                logits = logits.index_copy(0, at, self._add_residual_field(
                    logits[at], hv[at], inp[valid][at]))
        return F.cross_entropy(logits, tgt[valid])

    def new_caches(self, batch: int, max_len: int, device=None, dtype=None):
        c = self.cfg
        hd = c.dim // c.heads
        p = next(self.parameters())
        kw = {"device": device or p.device, "dtype": dtype or p.dtype}
        return [(torch.empty(batch, c.heads, max_len, hd, **kw),
                 torch.empty(batch, c.heads, max_len, hd, **kw)) for _ in range(c.n_blocks)]

    def new_state(self, batch: int, max_len: int, device=None,
                  multiplicity: torch.Tensor | None = None) -> SamplerState:
        """An empty :class:`SamplerState` for ``batch`` sequences of up to ``max_len`` tokens;
        with ``multiplicity`` (the config's) the jets' multiplicities (batch,), required."""
        caches = self.new_caches(batch, max_len, device)
        c, dev = self.cfg, caches[0][0].device
        left = None
        if c.multiplicity:
            if multiplicity is None or len(multiplicity) != batch:
                raise ValueError("a backbone conditioned on the multiplicity samples "
                                 "with one multiplicity per sequence")
            left = torch.as_tensor(multiplicity, dtype=torch.long).to(dev)
        if not c.kernel_heads:
            return SamplerState(caches, left=left)
        kw = {"device": dev, "dtype": caches[0][0].dtype}
        a = c.kernel_anchors
        return SamplerState(caches,
                            torch.zeros(batch, c.kernel_heads, a, AnchorKernel.KEY_DIM, **kw),
                            torch.zeros(batch, c.kernel_heads, a, c.vocab_size, **kw),
                            torch.zeros(batch, a, dtype=torch.bool, device=dev), left=left)

    def advance(self, tokens: torch.Tensor, state: SamplerState, pos: int) -> torch.Tensor:
        """Feed tokens (B, T) at positions ``pos .. pos + T - 1`` (a prefix at pos 0, or one
        token a step) -> hidden states (B, T, dim); records the anchors among them and the
        last token (a residual token's place needs the code before it) and, with
        ``multiplicity``, the constituents still to come."""
        left = None
        if state.left is not None:
            left = self.remaining_after(tokens, state.left)
            state.left = left[:, -1]
        h = self.body(tokens, state.caches, pos, state.prev if pos else None, left)
        if self.cfg.residual_codes:
            state.prev = tokens[:, -1]
        if self.cfg.kernel_heads:
            lo, hi = max(pos, 1), min(pos + tokens.shape[1] - 1, self.cfg.kernel_anchors)
            if lo <= hi:
                sl = slice(lo - pos, hi - pos + 1)
                keys, kern, code = self._anchor_state(tokens[:, sl], h[:, sl])
                state.keys[:, :, lo - 1:hi] = keys
                state.kern[:, :, lo - 1:hi] = kern
                state.code[:, lo - 1:hi] = code
        return h

    def next_logits(self, h: torch.Tensor, state: SamplerState, pos: int,
                    weight: torch.Tensor | None = None) -> torch.Tensor:
        """The hidden state (B, dim) at position ``pos`` -> next-token logits (B, vocab), with
        the anchor kernels of the anchors recorded in ``state`` from ``kernel_from`` on, and
        the multiplicity's mask."""
        out = self.logits(h, weight)
        if state.left is not None:
            out = self.multiplicity_mask(out, state.left)
        if self.cfg.residual_codes:
            target = torch.tensor(pos + 1, device=h.device)
            out = out + self.grammar(target)
            if self._field() and state.prev is not None and bool(self._residual_slot(target)):
                out = self._add_residual_field(out, h, state.prev)
        if not self.cfg.kernel_heads or pos < self.cfg.kernel_from:
            return out
        n = min(pos, self.cfg.kernel_anchors)
        return out + self.kernel.bias(h[:, None], state.keys[:, :, :n], state.kern[:, :, :n],
                                      state.code[:, None, :n])


@dataclass
class SamplerState:
    """What the cached sampler keeps per sequence: the key/value caches of the blocks, with
    anchor-kernel heads the anchors' keys, kernels and whether each is a code, with residual
    codes the last token fed, and with ``multiplicity`` the constituents still to come."""
    caches: list
    keys: torch.Tensor | None = None
    kern: torch.Tensor | None = None
    code: torch.Tensor | None = None
    prev: torch.Tensor | None = None
    left: torch.Tensor | None = None

    def select(self, rows: torch.Tensor) -> SamplerState:
        """The state of the given rows only."""
        return SamplerState([(k[rows], v[rows]) for k, v in self.caches],
                            *(None if x is None else x[rows]
                              for x in (self.keys, self.kern, self.code, self.prev, self.left)))


def with_residual_tokens(model: JetGPT, cfg: BackboneConfig, seed: int = 0) -> JetGPT:
    """A backbone of ``cfg`` (``model``'s settings with a tokenizer's residual codes: R more
    tokens before the stop) holding ``model``'s weights: the rows of the start token and the
    codes as they are, the stop token's row moved to the end; the new tokens' rows of the
    embedding and the output layer start fresh, drawn from ``seed`` (their code-table rows at
    0: the caller sets them from :func:`code_table`). For fine-tuning a backbone pre-trained
    without residual codes on a tokenizer given them afterwards."""
    old = model.cfg
    grow = cfg.vocab_size - old.vocab_size
    if old.residual_codes or grow != cfg.residual_codes or grow <= 0:
        raise ValueError(f"a backbone of {old.vocab_size} tokens and "
                         f"{old.residual_codes} residual codes does not become one of "
                         f"{cfg.vocab_size} tokens and {cfg.residual_codes}")
    with torch.random.fork_rng(devices=[]):  # the same rows whatever ran before
        torch.manual_seed(seed)
        new = JetGPT(cfg)
    state = new.state_dict()
    for key, value in model.state_dict().items():
        if key not in state:
            raise ValueError(f"the new backbone has no '{key}'")
        into = state[key]
        if into.shape == value.shape:
            state[key] = value.clone()
        elif into.shape[1:] == value.shape[1:] and into.shape[0] == cfg.vocab_size:
            into = into.clone()
            into[:old.vocab_size - 1] = value[:-1]  # start and codes
            into[-1] = value[-1]  # the stop token
            state[key] = into
        else:
            raise ValueError(f"'{key}': {tuple(value.shape)} does not fit {tuple(into.shape)}")
    new.load_state_dict(state)
    return new.train(model.training)


#: range of the magnitudes of the Fourier frequencies, per standardised unit of the code table's
#: angles (one unit is about 0.8 in the preprocessed units, 0.27 rad): kernels from about 0.02
#: rad (the spread of a prong's constituents) to 0.3 rad (the distance between prongs)
FOURIER_MIN, FOURIER_MAX = 1.0, 16.0


def fourier_frequencies(m: int) -> torch.Tensor:
    """(m, 2) float32: the fixed frequencies of :class:`JetGPT`'s Fourier features, the same
    for every model (a fixed seed): uniform directions, log-uniform magnitudes."""
    g = torch.Generator().manual_seed(20071203)
    angle = torch.rand(m, generator=g, dtype=torch.float64) * 2 * math.pi
    mag = FOURIER_MIN * (FOURIER_MAX / FOURIER_MIN) ** torch.rand(m, generator=g,
                                                                   dtype=torch.float64)
    return torch.stack([mag * torch.cos(angle), mag * torch.sin(angle)], 1).float()


def code_table(codes: np.ndarray, feats: np.ndarray, mask: np.ndarray,
               latents: np.ndarray, residual_vectors: np.ndarray | None = None) -> np.ndarray:
    """The code table of :class:`JetGPT` (``code_features = C + D``): one row per token, float32
    (codebook_size + 2, C + D). The row of code k (token k + 1) holds the mean preprocessed
    features (C of them) of the training constituents the tokenizer maps to code k, then the
    code's latent vector (``latents`` (codebook_size, D)); a code no training constituent uses
    gets the mean of all constituents. Each column is standardised over the codes; the start
    and stop rows are 0.

    ``codes`` (N, P) int, ``feats`` (N, P, C), ``mask`` (N, P) bool: encoded training jets.
    With a tokenizer's residual codes, ``residual_vectors`` (R, C) (its residual codebook): the
    codes may be combined ones (their residual index is ignored) and the table has R more rows,
    before the stop row, holding each residual vector in the standardised units of the feature
    columns (divided by their spread over the codes; the latent columns 0): the offset the
    residual token moves its code's constituent by."""
    k = len(latents)
    c = np.asarray(codes)[mask].astype(np.int64) % max(k, 1)
    x = np.asarray(feats, np.float64)[mask]
    counts = np.bincount(c, minlength=k).astype(np.float64)
    sums = np.stack([np.bincount(c, weights=x[:, j], minlength=k) for j in range(x.shape[1])], 1)
    mean = np.where(counts[:, None] > 0, sums / np.maximum(counts, 1)[:, None],
                    x.mean(0) if len(x) else 0.0)
    rows = np.concatenate([mean, np.asarray(latents, np.float64)], 1)
    spread = np.where(rows.std(0) > 0, rows.std(0), 1.0)
    rows = (rows - rows.mean(0)) / spread
    r = 0 if residual_vectors is None else len(residual_vectors)
    table = np.zeros((k + r + 2, rows.shape[1]), np.float32)
    table[1:k + 1] = rows
    if r:
        n_feat = mean.shape[1]
        table[k + 1:k + r + 1, :n_feat] = np.asarray(residual_vectors, np.float64) / \
            spread[:n_feat]
    return table


# --------------------------------------------------------------------------- sampling
def draw_tokens(logits: torch.Tensor, u: torch.Tensor, temperature: float = 1.0,
                top_k: int | None = None, top_p: float | None = None) -> torch.Tensor:
    """Sample one token per row of ``logits`` (B, V) by inverse CDF with uniforms ``u`` (B,).

    temperature scales the logits; top_k keeps only the k most likely tokens; top_p (nucleus
    sampling) keeps the most likely tokens whose probabilities sum to at least top_p; the start
    token is excluded. Plain multinomial sampling is temperature 1, top_k and top_p None.
    """
    logits = logits.double() / max(float(temperature), 1e-8)
    logits[:, START] = -math.inf
    if top_k is not None and 0 < top_k < logits.shape[1]:
        kth = torch.topk(logits, top_k, dim=1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, -math.inf)
    if top_p is not None and top_p < 1.0:
        probs, order = torch.softmax(logits, dim=1).sort(dim=1, descending=True)
        # drop a token when the likelier ones already hold top_p (the likeliest always stays)
        drop = (probs.cumsum(1) - probs) >= top_p
        logits = logits.masked_fill(torch.zeros_like(drop).scatter(1, order, drop), -math.inf)
    cdf = torch.softmax(logits, dim=1).cumsum(1)
    idx = torch.searchsorted(cdf, (u.double() * cdf[:, -1]).unsqueeze(1), right=True)
    return idx.squeeze(1).clamp_max(logits.shape[1] - 1)


def _batch_generators(seed: int, n: int, batch_size: int, device) -> list[torch.Generator]:
    """One generator per batch, seeded from ``seed``: a batch's stream never depends on how many
    steps an earlier batch took."""
    base = torch.Generator().manual_seed(int(seed))
    seeds = torch.randint(0, 2 ** 62, (max(1, math.ceil(n / batch_size)),), generator=base)
    gens = []
    for s in seeds.tolist():
        g = torch.Generator(device=device)
        g.manual_seed(s)
        gens.append(g)
    return gens


def _multiplicities(model: JetGPT, n: int, seed: int, given) -> torch.Tensor | None:
    """The multiplicities the samplers condition on (None without ``multiplicity``): the
    caller's (one int for every jet, or n of them), else drawn from the model's histogram."""
    if not model.cfg.multiplicity:
        if given is not None:
            raise ValueError("this backbone was trained without backbone.multiplicity: it "
                             "cannot be given the jets' multiplicities")
        return None
    if given is None:
        return model.draw_multiplicity(n, seed)
    out = torch.as_tensor(given, dtype=torch.long).flatten()
    out = out.expand(n).clone() if out.numel() == 1 else out
    top = model.cfg.max_multiplicity
    if len(out) != n or bool(((out < 1) | (out > top)).any()):
        raise ValueError(f"multiplicity: one value or {n} values, each in 1..{top}")
    return out


def cut_at_stop(tokens: torch.Tensor, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Generated tokens (B, T) (start excluded) -> (codes (B, T) = token - 1 with -1 from the first
    stop on, mask (B, T)). A sequence without stop keeps all T tokens."""
    is_stop = tokens == stop
    before = torch.cumsum(is_stop.long(), dim=1) == 0
    codes = torch.where(before, tokens - 1, torch.full_like(tokens, -1))
    return codes, before


def tokens_to_codes(tokens: torch.Tensor, cfg: BackboneConfig
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Generated tokens (B, T) (start excluded) -> (codes (B, T), mask): :func:`cut_at_stop`,
    and with residual codes each residual token joined to the code before it (the combined
    codes of :func:`jetfm.io.tokens.split_codes`), the codes moved to the front, as
    :func:`jetfm.io.tokens.sequences_to_codes` reads token files."""
    if not cfg.residual_codes:
        return cut_at_stop(tokens, cfg.stop_token)
    from jetfm.io.tokens import sequences_to_codes

    k = cfg.vocab_size - 2 - cfg.residual_codes  # the tokenizer's codebook size
    codes, mask = sequences_to_codes(tokens.cpu().numpy(), k, residual_codes=cfg.residual_codes)
    return (torch.from_numpy(codes).to(tokens.device),
            torch.from_numpy(mask).to(tokens.device))


@dataclass
class SampleStats:
    """What a sampling run did: steps taken and model FLOPs spent (matmuls, 2 per MAC)."""
    steps: int = 0
    flops: float = 0.0


def _step_flops(cfg: BackboneConfig, rows: int, ctx: int, q_len: int = 1,
                head_len: int | None = None) -> float:
    """Matmul FLOPs of ``rows`` sequences each processing ``q_len`` new positions against ``ctx``
    keys, the head applied to ``head_len`` positions (default q_len)."""
    d, f = cfg.dim, cfg.ff_dim
    per_tok = 2 * (3 * d * d + d * d + 2 * d * f)
    attn = 2 * 2 * q_len * ctx * d  # q.k and p.v over ctx keys (per query, averaged by caller)
    # the anchor kernels: at most kernel_anchors anchors per position and head
    head = 2 * (d + cfg.kernel_heads * cfg.kernel_anchors) * cfg.vocab_size * \
        (q_len if head_len is None else head_len)
    return rows * (cfg.n_blocks * (per_tok * q_len + attn) + head)


@torch.no_grad()
def generate(model: JetGPT, n: int, max_new: int = 128, temperature: float = 1.0,
             top_k: int | None = None, seed: int = 0, batch_size: int = 512,
             progress: bool = False, stats: SampleStats | None = None,
             top_p: float | None = None, multiplicity=None):
    """Sample ``n`` token sequences with a key/value cache and early stop.

    Returns ``(codes (n, max_new) int64, -1 on padding, mask (n, max_new) bool)``: codebook
    indices (token - 1; combined ones with residual codes, :func:`tokens_to_codes`) of each jet
    up to its first stop token. Same seed and batch_size ->
    same codes, equal to :func:`generate_reference`. A backbone with ``multiplicity`` draws
    each jet's multiplicity from its histogram first, or takes ``multiplicity`` (one int, or
    ``n``).
    """
    mult = _multiplicities(model, n, seed, multiplicity)
    was = model.training
    model.eval()
    dev = next(model.parameters()).device
    cfg = model.cfg
    stop = cfg.stop_token
    out = torch.full((n, max_new), -1, dtype=torch.long)
    gens = _batch_generators(seed, n, batch_size, dev)
    weight = model.output_weight()  # the output layer's rows, once for every step and batch
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=n, unit="jet", desc="sampling")
    try:
        for bi, lo in enumerate(range(0, n, batch_size)):
            b = min(batch_size, n - lo)
            g = gens[bi]
            state = model.new_state(b, max_new, dev,
                                    None if mult is None else mult[lo:lo + b])
            rows = torch.arange(b, device=dev)  # original row of each active row
            tok = torch.full((b, 1), START, dtype=torch.long, device=dev)
            gen = torch.full((b, max_new), stop, dtype=torch.long, device=dev)
            done = torch.zeros(b, dtype=torch.bool, device=dev)
            for t in range(max_new):
                h = model.advance(tok, state, pos=t)
                logits = model.next_logits(h[:, -1], state, t, weight)
                u = torch.rand(b, generator=g, device=dev, dtype=torch.float64)[rows]
                nxt = draw_tokens(logits, u, temperature, top_k, top_p)
                gen[rows, t] = nxt
                if stats is not None:
                    stats.steps += 1
                    stats.flops += _step_flops(cfg, len(rows), t + 1)
                done |= nxt == stop
                if bool(done.all()):
                    break
                if int((~done).sum()) < 0.75 * len(rows):  # drop finished rows from the work
                    keep = torch.nonzero(~done).flatten()
                    rows, nxt, done = rows[keep], nxt[keep], done[keep]
                    state = state.select(keep)
                tok = nxt.unsqueeze(1)
            codes, _ = tokens_to_codes(gen, cfg)
            out[lo:lo + b] = codes.cpu()
            if bar is not None:
                bar.update(b)
    finally:
        model.train(was)
        if bar is not None:
            bar.close()
    return out, out >= 0


@torch.no_grad()
def generate_reference(model: JetGPT, n: int, max_new: int = 128, temperature: float = 1.0,
                       top_k: int | None = None, seed: int = 0, batch_size: int = 512,
                       stats: SampleStats | None = None, top_p: float | None = None,
                       multiplicity=None):
    """The reference sampler: the whole sequence recomputed every step (logits at every
    position, the last one used), always ``max_new`` steps, then each jet cut at its first stop.
    Same return value and random stream as :func:`generate`."""
    mult = _multiplicities(model, n, seed, multiplicity)
    was = model.training
    model.eval()
    dev = next(model.parameters()).device
    out = torch.full((n, max_new), -1, dtype=torch.long)
    gens = _batch_generators(seed, n, batch_size, dev)
    try:
        for bi, lo in enumerate(range(0, n, batch_size)):
            b = min(batch_size, n - lo)
            seq = torch.full((b, 1), START, dtype=torch.long, device=dev)
            for t in range(max_new):
                if mult is None:
                    logits = model(seq)[:, -1]
                else:
                    n_b = mult[lo:lo + b].to(dev)
                    logits = model.multiplicity_mask(model(seq, n_b)[:, -1],
                                                     model.remaining_after(seq, n_b)[:, -1])
                u = torch.rand(b, generator=gens[bi], device=dev, dtype=torch.float64)
                seq = torch.cat([seq, draw_tokens(logits, u, temperature, top_k, top_p)[:, None]],
                                1)
                if stats is not None:
                    stats.steps += 1
                    # every position attends to (t + 2) / 2 keys on average under the mask
                    stats.flops += _step_flops(model.cfg, b, (t + 2) / 2, q_len=t + 1)
            codes, _ = tokens_to_codes(seq[:, 1:], model.cfg)
            out[lo:lo + b] = codes.cpu()
    finally:
        model.train(was)
    return out, out >= 0
