"""Residual codes: a second, finer token for each of a jet's leading constituents."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from jetfm.io import read_jets
from jetfm.io.tokens import (
    check_token_layout,
    codes_to_sequences,
    read_tokens,
    sequences_to_codes,
    split_codes,
    write_tokens,
)
from jetfm.omnijet.backbone import (
    BackboneConfig,
    JetGPT,
    generate,
    generate_reference,
    tokens_to_codes,
)
from jetfm.omnijet.quantizer import QuantizerConfig
from jetfm.omnijet.tokenizer import TokenizerConfig, VQVAETokenizer
from jetfm.physics.features import Preprocessing
from jetfm.train.modules import codes_to_sequences_t
from tests.conftest import AOJ_MINI

C, R, K = 16, 5, 3


def _combined(n=60, p=8, seed=0):
    """Random combined codes: the first K constituents with a residual index."""
    rng = np.random.default_rng(seed)
    mask = np.arange(p)[None] < rng.integers(0, p + 1, n)[:, None]
    codes = rng.integers(0, C, (n, p))
    res = rng.integers(0, R, (n, p))
    comb = np.where(np.arange(p)[None] < K, codes + C * (res + 1), codes)
    return np.where(mask, comb, -1), mask


def test_sequences_interleave_residual_tokens_and_round_trip():
    comb = np.array([[3 + C * 2, 1 + C * 5, 7, -1], [4 + C * 1, -1, -1, -1]])
    mask = comb >= 0
    seq = codes_to_sequences(comb, mask, C, R)
    stop = C + R + 1
    # code + 1, then the residual token C + 1 + r
    assert seq.tolist() == [[0, 4, C + 2, 2, C + 5, 8, stop], [0, 5, C + 1, stop, -1, -1, -1]]
    codes, m = sequences_to_codes(seq, C, 4, residual_codes=R)
    assert np.array_equal(m, mask) and np.array_equal(codes, comb)
    assert split_codes(comb, C)[1].tolist() == [[1, 4, -1, -1], [0, -1, -1, -1]]


def test_numpy_torch_and_sampler_layouts_agree():
    comb, mask = _combined()
    seq = codes_to_sequences(comb, mask, C, R)
    seq_t = codes_to_sequences_t(torch.tensor(comb), torch.tensor(mask), C, R).numpy()
    assert np.array_equal(seq, seq_t)
    cfg = BackboneConfig(vocab_size=C + R + 2, max_len=16, residual_codes=R, residual_leading=K)
    body = torch.tensor(seq[:, 1:])
    body = torch.where(body < 0, cfg.stop_token, body)
    codes, m = tokens_to_codes(body, cfg)
    p = mask.shape[1]
    assert np.array_equal(m.numpy()[:, :p], mask) and not m.numpy()[:, p:].any()
    assert np.array_equal(np.where(mask, codes.numpy()[:, :p], -1), comb)
    back, m2 = sequences_to_codes(seq, C, p, residual_codes=R)
    assert np.array_equal(back, comb) and np.array_equal(m2, mask)


def test_token_files_record_and_check_the_residual_codes(tmp_path):
    comb, mask = _combined()
    seq = codes_to_sequences(comb, mask, C, R)
    path = write_tokens(tmp_path / "t.h5", seq, C, residual_codes=R)
    got, attrs = read_tokens(path)
    assert np.array_equal(got, seq) and attrs["stop_token"] == C + R + 1

    class Tok:
        codebook_size, residual_codes = C, R
        preprocessing = Preprocessing()
    check_token_layout(attrs, Tok, path)
    Tok.residual_codes = 0
    with pytest.raises(Exception, match="5 residual codes"):
        check_token_layout(attrs, Tok, path)


def _model(**kw):
    torch.manual_seed(0)
    cfg = BackboneConfig(vocab_size=C + R + 2, dim=16, heads=2, ff_dim=32, n_blocks=1,
                         max_len=12 + K, residual_codes=R, residual_leading=K, **kw)
    cfg.validate()
    return JetGPT(cfg)


def test_grammar_allows_residual_tokens_exactly_in_their_places():
    m = _model()
    g = m.grammar(torch.arange(1, 10))
    res = torch.zeros(C + R + 2, dtype=torch.bool)
    res[C + 1:C + R + 1] = True
    for pos in range(1, 10):
        allowed = torch.isfinite(g[pos - 1])
        want = res if (pos % 2 == 0 and pos <= 2 * K) else ~res
        want = want.clone()
        want[0] = False  # never the start token
        assert torch.equal(allowed, want), pos


@pytest.mark.parametrize("fourier", [0, 4])
def test_loss_is_the_grammar_masked_cross_entropy_and_samplers_agree(fourier):
    m = _model(code_features=3, fourier_features=fourier)
    m.code_table.normal_()
    with torch.no_grad():
        m.head.bias.normal_()  # the residual tokens' logits far from uniform
    comb, mask = _combined(n=20)
    seqs = torch.tensor(codes_to_sequences(comb, mask, C, R))
    logits = m(seqs[:, :-1].clamp_min(0))
    tgt = seqs[:, 1:]
    valid = tgt >= 0
    want = F.cross_entropy(logits[valid], tgt[valid])
    assert torch.allclose(m.loss(seqs), want, atol=1e-6)
    # the cached sampler draws the same tokens as the reference, and every jet's first K
    # constituents (and only they) carry a residual index
    a = generate(m, 30, max_new=12, seed=2, batch_size=8)
    b = generate_reference(m, 30, max_new=12, seed=2, batch_size=8)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    codes, mask = a[0].numpy(), a[1].numpy()
    has = split_codes(codes, C)[1] >= 0
    pos = np.arange(codes.shape[1])[None]
    n = mask.sum(1, keepdims=True)
    # a jet cut by max_new inside a pair keeps its last code without residual
    complete = 2 * np.minimum(n, K) + np.maximum(n - K, 0) < 12
    assert np.array_equal(has[complete[:, 0]], (mask & (pos < K))[complete[:, 0]])


def test_residual_tokens_carry_their_place_in_and_out():
    """A residual token enters as the refined constituent (its code's row plus its offset) and
    its logit gets the output layer's Fourier term at that place: both against a naive
    computation, one token at a time."""
    m = _model(code_features=3, fourier_features=4).eval()
    m.code_table.normal_()
    m.code_table[0] = m.code_table[-1] = 0
    m.code_table[C + 1:C + R + 1] *= 0.1  # offsets
    seq = torch.tensor([[0, 3, C + 1 + 5, 7, C + 1 + 2, 4]])
    with torch.no_grad():
        emb = m.embed_tokens(seq)
        for t in range(seq.shape[1]):
            tok = int(seq[0, t])
            row = m.code_table[tok].clone()
            if C + 1 <= tok < C + R + 1:
                row += m.code_table[int(seq[0, t - 1])]
            want = m.embed.weight[tok] + m._code_embedding(row[None])[0]
            assert torch.allclose(emb[0, t], want, atol=1e-5), t
        h = torch.randn(3, 16)
        codes = torch.tensor([3, 7, 1])
        got = m.residual_field(h, codes)
        for i in range(3):
            for r in range(R):
                x = m.code_table[int(codes[i])] + m.code_table[C + 1 + r]
                want = h[i] @ m.four_out(m._fourier(x[None])[0])
                assert torch.allclose(got[i, r], want, atol=1e-4), (i, r)
        # the logits of the full forward at the residual places hold it, from the code fed there
        logits = m(seq)
        hs = m.body(seq)
        plain = m.logits(hs) + m.grammar(torch.arange(1, 7))
        for t in (1, 3):
            extra = logits[0, t, C + 1:C + R + 1] - plain[0, t, C + 1:C + R + 1]
            assert torch.allclose(extra, m.residual_field(hs[0, t:t + 1], seq[0, t:t + 1])[0],
                                  atol=1e-4)
        assert torch.equal(logits[0, 4], plain[0, 4])


def test_without_residual_geometry_the_residual_rows_are_ignored():
    """residual_geometry False (models saved before it existed, their residual rows 0): the
    same logits whatever the residual rows hold, and a saved config without the key loads so."""
    from jetfm.config import to_dict
    from jetfm.omnijet.config import config_from_dict, load_omnijet_config

    m = _model(code_features=3, fourier_features=4, residual_geometry=False).eval()
    m.code_table.normal_()
    m.code_table[0] = m.code_table[-1] = 0
    seq = torch.tensor([[0, 3, C + 1 + 5, 7, C + 1 + 2, 4]])
    with torch.no_grad():
        before = m(seq)
        m.code_table[C + 1:C + R + 1] = 0
        assert torch.allclose(m(seq), before, atol=1e-6)
    saved = to_dict(load_omnijet_config("quick", ["tokenizer.residual_codes=8"]).resolved())
    assert config_from_dict(saved).backbone.residual_geometry
    del saved["backbone"]["residual_geometry"]
    assert not config_from_dict(saved).backbone.residual_geometry
    saved["backbone"]["residual_codes"] = 0
    saved["tokenizer"]["residual_codes"] = 0
    assert config_from_dict(saved).backbone.residual_geometry


def test_kernel_heads_refuse_residual_codes():
    with pytest.raises(Exception, match="residual codes"):
        _model(code_features=3, kernel_heads=1)


def test_fitted_residual_codebook_refines_the_leading_constituents_of_real_jets():
    torch.manual_seed(0)
    cfg = TokenizerConfig(width=16, enc_blocks=1, dec_blocks=1, heads=2, residual_codes=32,
                          residual_leading=4,
                          quantizer=QuantizerConfig(codebook_size=16, dim=3))
    tok = VQVAETokenizer(cfg)
    jets = read_jets(AOJ_MINI)
    feats, mask = tok.preprocessing.forward(jets)
    info = tok.fit_residual_codebook(feats, mask, seed=0)
    assert np.all(np.array(info["rms_after"]) < 0.7 * np.array(info["rms_before"]))
    codes = tok.encode_arrays(feats, mask)
    code, res = split_codes(codes, 16)
    lead = mask & (np.arange(mask.shape[1])[None] < 4)
    assert ((res >= 0) == lead).all() and (code[mask] < 16).all()
    err = (tok.decode_arrays(codes, mask) - feats)[lead]
    plain = (tok.decode_arrays(code, mask) - feats)[lead]
    assert np.sqrt((err ** 2).mean()) < 0.7 * np.sqrt((plain ** 2).mean())
    # the constituents after the leading ones decode as without residual codes
    rest = mask & ~lead
    assert np.allclose(tok.decode_arrays(codes, mask)[rest], tok.decode_arrays(code, mask)[rest],
                       atol=1e-5)
    # the same seed fits the same codebook
    book = tok.residual_codebook.clone()
    tok.fit_residual_codebook(feats, mask, seed=0)
    assert torch.equal(book, tok.residual_codebook)


def test_a_backbone_without_residual_codes_carried_over():
    """with_residual_tokens: the start, code and stop rows keep their weights (the stop row
    moved to the end), everything else is the same, so from the start token the new backbone
    gives the old logits to every code and the stop."""
    from jetfm.omnijet.backbone import with_residual_tokens

    torch.manual_seed(0)
    old_cfg = BackboneConfig(vocab_size=C + 2, dim=16, heads=2, ff_dim=32, n_blocks=1,
                             max_len=12, code_features=3, fourier_features=4)
    old = JetGPT(old_cfg).eval()
    old.code_table.normal_()
    old.code_table[0] = 0
    old.code_table[-1] = 0
    cfg = BackboneConfig(vocab_size=C + R + 2, dim=16, heads=2, ff_dim=32, n_blocks=1,
                         max_len=12 + K, code_features=3, fourier_features=4,
                         residual_codes=R, residual_leading=K)
    new = with_residual_tokens(old, cfg)
    torch.rand(7)  # the global generator moved: the fresh rows are the seed's all the same
    assert torch.equal(with_residual_tokens(old, cfg).embed.weight, new.embed.weight)
    assert not torch.equal(with_residual_tokens(old, cfg, seed=1).head.weight, new.head.weight)
    assert torch.equal(new.embed.weight[:C + 1], old.embed.weight[:C + 1])
    assert torch.equal(new.embed.weight[-1], old.embed.weight[-1])
    assert torch.equal(new.head.bias[-1], old.head.bias[-1])
    assert not new.code_table[C + 1:].any()
    start = torch.zeros(1, 1, dtype=torch.long)
    keep = torch.cat([torch.arange(1, C + 1), torch.tensor([C + R + 1])])
    with torch.no_grad():
        assert torch.allclose(new(start)[0, 0, keep], old(start)[0, 0, 1:], atol=1e-6)
    with pytest.raises(ValueError):
        with_residual_tokens(new, cfg)  # it has residual codes already
