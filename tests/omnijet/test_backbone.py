"""GPT backbone: architecture, padding-free loss, and the cached sampler against the reference."""
import pytest
import torch
import torch.nn.functional as F

from jetfm.omnijet.backbone import BackboneConfig, JetGPT, SampleStats, generate, generate_reference


def _gpt(vocab=10, **kw):
    torch.manual_seed(0)
    kw = {"n_blocks": 2, **kw}
    return JetGPT(BackboneConfig(vocab_size=vocab, dim=16, heads=2, ff_dim=32, **kw))


def test_paper_size_parameter_count():
    n = sum(p.numel() for p in JetGPT().parameters())
    assert abs(n - 6.57e6) < 0.02e6


@pytest.mark.parametrize("pre_ln", [False, True])
def test_causal_without_positional_embedding(pre_ln):
    m = _gpt(pre_ln=pre_ln).eval()
    a = torch.tensor([[0, 3, 4, 5, 1]])
    b = torch.tensor([[0, 3, 4, 7, 2]])
    la, lb = m(a), m(b)
    assert torch.allclose(la[:, :3], lb[:, :3], atol=1e-6)  # the future never leaks
    assert not torch.allclose(la[:, 3], lb[:, 3])
    # no positional embedding: with one block, the last position sees its prefix as a set
    one = _gpt(pre_ln=pre_ln, n_blocks=1).eval()
    c = torch.tensor([[0, 4, 3, 5]])
    assert torch.allclose(one(a[:, :4])[:, -1], one(c)[:, -1], atol=1e-5)
    assert isinstance(m.ln_f, torch.nn.LayerNorm) == pre_ln


def test_loss_counts_only_real_tokens():
    m = _gpt().eval()
    stop = m.cfg.stop_token
    seqs = torch.tensor([[0, 3, 4, stop, -1, -1], [0, 5, stop, -1, -1, -1]])
    logits = m(seqs[:, :-1].clamp_min(0))
    manual = []
    for i, n in enumerate([3, 2]):  # real targets: codes and the stop token
        manual.append(F.cross_entropy(logits[i, :n], seqs[i, 1:n + 1], reduction="none"))
    expect = torch.cat(manual).mean()
    assert torch.allclose(m.loss(seqs), expect, atol=1e-6)
    # more padding changes nothing
    longer = torch.cat([seqs, torch.full((2, 5), -1)], 1)
    assert torch.allclose(m.loss(longer), expect, atol=1e-6)


@pytest.mark.parametrize("temperature,top_k,batch", [(1.0, None, 64), (0.7, 3, 25), (1.3, None, 7)])
def test_cached_sampler_equals_reference(temperature, top_k, batch):
    m = _gpt(vocab=8, dropout=0.1)
    kw = dict(n=64, max_new=20, temperature=temperature, top_k=top_k, seed=11, batch_size=batch)
    s_fast, s_ref = SampleStats(), SampleStats()
    c1, m1 = generate(m, stats=s_fast, **kw)
    c2, m2 = generate_reference(m, stats=s_ref, **kw)
    assert torch.equal(c1, c2) and torch.equal(m1, m2)
    lengths = m1.sum(1)
    assert lengths.min() < 20 and (lengths < 20).any()  # some jets stopped early
    assert (c1[m1] >= 0).all() and (c1[m1] < 6).all()
    assert s_fast.flops < s_ref.flops
    # the seed decides: same seed same codes, another seed other codes
    assert torch.equal(generate(m, **kw)[0], c1)
    assert not torch.equal(generate(m, **{**kw, "seed": 12})[0], c1)
    assert m.training  # mode restored


def test_top_k_restricts_tokens():
    m = _gpt(vocab=12)
    codes, mask = generate(m, n=32, max_new=10, top_k=1, seed=0)
    # greedy: every jet is the same sequence
    assert (codes == codes[0]).all()


def test_float64_equivalence_long_sequences():
    m = _gpt(vocab=40).double()
    kw = dict(n=16, max_new=60, seed=5, batch_size=16)
    assert torch.equal(generate(m, **kw)[0], generate_reference(m, **kw)[0])


def test_early_stop_when_every_jet_has_stopped():
    m = _gpt(vocab=8)
    with torch.no_grad():
        m.head.bias[m.cfg.stop_token] = 3.0  # stops are likely: every jet ends well before 50
    s_fast, s_ref = SampleStats(), SampleStats()
    kw = dict(n=40, max_new=50, seed=3, batch_size=40)
    c1, m1 = generate(m, stats=s_fast, **kw)
    c2, _ = generate_reference(m, stats=s_ref, **kw)
    assert torch.equal(c1, c2)
    assert s_ref.steps == 50 and s_fast.steps == int(m1.sum(1).max()) + 1 < 50
