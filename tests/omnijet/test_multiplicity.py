"""A backbone conditioned on the jet's multiplicity (``backbone.multiplicity``): p(N) from the
training jets' histogram, the constituents knowing how many are left, the stop exactly at N."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from jetfm.io.tokens import codes_to_sequences
from jetfm.omnijet.backbone import (
    BackboneConfig,
    JetGPT,
    generate,
    generate_reference,
    with_residual_tokens,
)

C, R, K = 6, 4, 3  # codes, residual codes, leading constituents with one


def _model(residual=False, **kw):
    torch.manual_seed(0)
    cfg = BackboneConfig(vocab_size=C + 2 + (R if residual else 0), dim=16, heads=2, ff_dim=32,
                         n_blocks=1, max_len=14 + (K if residual else 0), multiplicity=True,
                         residual_codes=R if residual else 0,
                         residual_leading=K if residual else 0, **kw)
    cfg.validate()
    m = JetGPT(cfg)
    with torch.no_grad():
        m.head.bias.normal_()
    return m


def _sequences(n_const, residual=False, seed=0):
    rng = np.random.default_rng(seed)
    p = max(n_const)
    codes = rng.integers(0, C, (len(n_const), p))
    mask = np.arange(p)[None] < np.asarray(n_const)[:, None]
    if residual:  # a residual index for the first K constituents: combined codes
        codes = codes + C * (1 + rng.integers(0, R, codes.shape)) * (np.arange(p) < K)
    codes = np.where(mask, codes, -1)
    return torch.tensor(codes_to_sequences(codes, mask, C, R if residual else 0))


@pytest.mark.parametrize("residual", [False, True])
def test_stop_allowed_exactly_after_the_last_constituent(residual):
    """The samplers' mask allows the stop at the stop's place only, and there nothing else;
    training keeps the plain next-token loss (the stop a target like any other)."""
    m = _model(residual).eval()
    n_const = [1, 2, 4, 7, 9]
    seqs = _sequences(n_const, residual)
    assert m.multiplicities(seqs).tolist() == n_const
    inp = seqs[:, :-1].clamp_min(0)
    logits = m(inp)  # with residual codes, the grammar's mask in them
    left = m.remaining_after(inp, m.multiplicities(seqs))
    masked = m.multiplicity_mask(logits, left)
    stop = m.cfg.stop_token
    for i in range(len(n_const)):
        real = int((seqs[i] >= 0).sum()) - 1  # targets: every token after the start
        allowed_stop = torch.isfinite(masked[i, :real, stop])
        assert allowed_stop.nonzero().flatten().tolist() == [real - 1]
        assert torch.isfinite(masked[i, real - 1, 1:]).sum() == 1  # (the start is never drawn)
        # every real target stays allowed
        tgt = seqs[i, 1:real + 1]
        assert torch.isfinite(masked[i, torch.arange(real), tgt]).all()
    tgt = seqs[:, 1:]
    valid = tgt >= 0
    assert torch.allclose(m.loss(seqs), F.cross_entropy(logits[valid], tgt[valid]), atol=1e-6)


def test_every_position_knows_how_many_constituents_are_left():
    """Two jets alike in their first tokens but of different multiplicity get different
    logits from the first position on; without the option they are the same."""
    m = _model().eval()
    a = torch.tensor([[0, 3, 4, C + 1, -1]])
    b = torch.tensor([[0, 3, 4, 5, C + 1]])
    la, lb = m(a.clamp_min(0)), m(b)
    assert not torch.allclose(la[0, 0], lb[0, 0])
    plain = JetGPT(BackboneConfig(vocab_size=C + 2, dim=16, heads=2, ff_dim=32, n_blocks=1,
                                  max_len=14)).eval()
    assert torch.allclose(plain(a.clamp_min(0))[0, :2], plain(b)[0, :2], atol=1e-6)


@pytest.mark.parametrize("residual", [False, True])
def test_samplers_draw_the_histogram_and_agree(residual):
    m = _model(residual)
    n_const = [2] * 30 + [5] * 60 + [8] * 10
    m.count_multiplicity(_sequences(n_const, residual))
    assert m.multiplicity_counts[[2, 5, 8]].tolist() == [30, 60, 10]
    assert m.multiplicity_counts.sum() == 100
    kw = dict(n=400, max_new=14 + (K if residual else 0), seed=3, batch_size=64)
    c1, m1 = generate(m, **kw)
    c2, m2 = generate_reference(m, **kw)
    assert torch.equal(c1, c2) and torch.equal(m1, m2)
    lengths = m1.sum(1)
    assert set(lengths.tolist()) == {2, 5, 8}
    assert m1.sum(1).eq(m.draw_multiplicity(400, seed=3)).all()
    frac = torch.bincount(lengths, minlength=9)[[2, 5, 8]].double() / 400
    assert torch.allclose(frac, torch.tensor([0.3, 0.6, 0.1], dtype=torch.float64), atol=0.07)
    # the multiplicities have a stream of their own: the same seed, the same draws
    assert torch.equal(m.draw_multiplicity(50, seed=3), m.draw_multiplicity(50, seed=3))
    assert not torch.equal(m.draw_multiplicity(50, seed=3), m.draw_multiplicity(50, seed=4))
    # a caller's multiplicity: one for all, or one per jet
    got = generate(m, **{**kw, "n": 8, "multiplicity": 6})[1].sum(1)
    assert got.eq(6).all()
    want = torch.tensor([1, 3, 4, 6, 7, 9, 2, 3])
    assert torch.equal(generate(m, **{**kw, "n": 8, "multiplicity": want})[1].sum(1), want)
    with pytest.raises(ValueError, match="multiplicity"):
        generate(m, **{**kw, "n": 8, "multiplicity": [3, 4]})
    with pytest.raises(ValueError, match="multiplicity"):
        generate(m, **{**kw, "n": 2, "multiplicity": 0})


def test_untrained_histogram_and_plain_backbone_refuse_clearly():
    with pytest.raises(ValueError, match="no multiplicity histogram"):
        generate(_model(), n=4, max_new=10)
    plain = JetGPT(BackboneConfig(vocab_size=C + 2, dim=16, heads=2, ff_dim=32, n_blocks=1,
                                  max_len=14))
    with pytest.raises(ValueError, match="without backbone.multiplicity"):
        generate(plain, n=4, max_new=10, multiplicity=3)


def test_residual_codes_added_keep_the_multiplicity_embedding():
    old = _model()
    old.count_multiplicity(_sequences([3, 4]))
    cfg = BackboneConfig(vocab_size=C + R + 2, dim=16, heads=2, ff_dim=32, n_blocks=1,
                         max_len=14 + K, multiplicity=True, residual_codes=R,
                         residual_leading=K)
    new = with_residual_tokens(old, cfg)
    assert cfg.max_multiplicity == old.cfg.max_multiplicity == 12
    assert torch.equal(new.remaining.weight, old.remaining.weight)
    assert torch.equal(new.multiplicity_counts, old.multiplicity_counts)
