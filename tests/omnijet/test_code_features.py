"""The backbone's code table (code_features) and the reflected training copies (augment)."""
import numpy as np
import pytest
import torch

from jetfm.omnijet.backbone import BackboneConfig, JetGPT, code_table, generate, generate_reference
from jetfm.train.data import reflect


def _encoded(n=40, p=12, k=16, seed=0):
    rng = np.random.default_rng(seed)
    mask = np.arange(p)[None] < rng.integers(3, p + 1, n)[:, None]
    feats = rng.normal(size=(n, p, 3)).astype(np.float32) * mask[..., None]
    codes = np.where(mask, rng.integers(0, k - 2, (n, p)), -1)  # the last 2 codes unused
    return codes, feats, mask, rng.normal(size=(k, 4))


def test_code_table_rows_are_standardised_code_means():
    codes, feats, mask, latents = _encoded()
    k = len(latents)
    t = code_table(codes, feats, mask, latents)
    assert t.shape == (k + 2, 7) and t.dtype == np.float32
    assert not t[0].any() and not t[-1].any()  # start and stop
    rows = t[1:k + 1].astype(np.float64)
    np.testing.assert_allclose(rows.mean(0), 0, atol=1e-6)
    np.testing.assert_allclose(rows.std(0), 1, atol=1e-5)
    # undo the standardisation of the mean-feature columns with the raw per-code means
    raw = np.array([feats[mask][codes[mask] == c].mean(0) if (codes[mask] == c).any()
                    else feats[mask].mean(0) for c in range(k)])
    z = (raw - raw.mean(0)) / raw.std(0)
    np.testing.assert_allclose(rows[:, :3], z, rtol=1e-5, atol=1e-5)
    lz = (latents - latents.mean(0)) / latents.std(0)
    np.testing.assert_allclose(rows[:, 3:], lz, rtol=1e-5, atol=1e-5)


def _model(code_features=7, vocab=18, seed=0, fourier=0, kernel=0, anchors=16, first=1):
    torch.manual_seed(seed)
    m = JetGPT(BackboneConfig(vocab_size=vocab, dim=16, n_blocks=2, heads=2, ff_dim=32,
                              max_len=12, code_features=code_features,
                              fourier_features=fourier, kernel_heads=kernel,
                              kernel_anchors=anchors, kernel_from=first))
    if code_features:
        m.code_table.copy_(torch.randn(vocab, code_features))
        m.code_table[0] = m.code_table[-1] = 0  # start and stop, as code_table() writes them
    return m.eval()


def test_code_features_change_embedding_and_logits_and_train():
    m = _model()
    seqs = torch.tensor([[0, 3, 5, 2, 17], [0, 4, 17, -1, -1]])
    base = m(seqs.clamp_min(0))
    # the table reaches both the inputs and the output layer
    with torch.no_grad():
        m.code_table[3] += 1.0
    assert not torch.allclose(m(seqs.clamp_min(0)), base)
    w = m.output_weight()
    assert not torch.allclose(w, m.head.weight)
    loss = m.loss(seqs)
    loss.backward()
    assert m.feat_in[0].weight.grad.abs().sum() > 0
    assert m.feat_out[0].weight.grad.abs().sum() > 0
    assert "code_table" in m.state_dict()  # saved with the weights


def test_code_features_cached_sampler_equals_reference():
    m = _model()
    a = generate(m, 9, max_new=10, seed=3, batch_size=4)
    b = generate_reference(m, 9, max_new=10, seed=3, batch_size=4)
    assert torch.equal(a[0], b[0])


def test_without_code_features_the_model_is_the_reference_one():
    m = _model(code_features=0)
    assert not hasattr(m, "feat_in") and "code_table" not in m.state_dict()
    h = m.body(torch.tensor([[0, 2, 3]]))
    assert torch.equal(m.logits(h), m.head(h))


def test_fourier_features_are_a_gaussian_kernel_of_the_codes_angles():
    from jetfm.omnijet.backbone import FOURIER_MAX, FOURIER_MIN, fourier_frequencies

    w = fourier_frequencies(4096).double()
    # fixed: the same for every model (to float32 rounding: one run in many differed in a last bit)
    torch.testing.assert_close(w.float(), fourier_frequencies(4096), rtol=1e-6, atol=0)
    mag = w.norm(dim=1)
    assert FOURIER_MIN <= mag.min() and mag.max() <= FOURIER_MAX
    m = _model(fourier=2048)
    rows = m.code_table.double()
    m.fourier_freqs = w.float()
    phi = m._fourier(rows.float()).double()
    assert not phi[0].any() and not phi[-1].any()  # start and stop have no place
    # phi(x) . phi(y) / M = mean over frequencies of cos(w (x - y)): the kernel, independent of
    # where the pair lies; close codes score higher than distant ones
    x = rows[1:-1, 1:3]
    kern = phi[1:-1] @ phi[1:-1].T / 4096
    exact = torch.cos((x[:, None, :] - x[None, :, :]) @ w.T).mean(-1)
    torch.testing.assert_close(kern, exact, atol=1e-5, rtol=0)
    d = (x[:, None] - x[None]).norm(dim=-1)
    near, far = d < 0.05, d > 1.0
    assert kern[near].min() > 0.99 and kern[far].abs().max() < 0.3


def test_fourier_features_reach_both_ends_train_and_sample_as_the_reference():
    m = _model(fourier=8)
    seqs = torch.tensor([[0, 3, 5, 2, 17], [0, 4, 17, -1, -1]])
    base = m(seqs.clamp_min(0))
    with torch.no_grad():
        m.four_out.weight.zero_()
    assert not torch.allclose(m(seqs.clamp_min(0)), base)
    m.loss(seqs).backward()
    assert m.four_in.weight.grad.abs().sum() > 0
    # the per-token path (sampler) and the per-code path (training) embed alike
    tok = torch.tensor([[3, 5, 17]])
    full = m._code_embedding(m.code_table)[tok]
    torch.testing.assert_close(m._code_embedding(m.code_table[tok]), full)
    a = generate(m, 9, max_new=10, seed=3, batch_size=4)
    b = generate_reference(m, 9, max_new=10, seed=3, batch_size=4)
    assert torch.equal(a[0], b[0])
    assert "fourier_freqs" in m.state_dict()
    from jetfm.config import ConfigValueError
    with pytest.raises(ConfigValueError) as err:
        BackboneConfig(code_features=0, fourier_features=8).validate()
    assert err.value.key == "fourier_features"


def _kernel_model(anchors=3, first=1):
    m = _model(kernel=2, anchors=anchors, first=first)
    with torch.no_grad():  # gains away from their initial 0, so the kernels act
        m.kernel.gain.weight.normal_(0, 0.5)
        m.kernel.gain.bias.fill_(1.0)
    return m


def test_anchor_kernels_start_as_the_model_without_them():
    seqs = torch.tensor([[0, 3, 5, 2, 9, 17], [0, 4, 17, 0, 0, 0]])
    plain, kern = _model(), _model(kernel=2, anchors=3)
    missing, _ = kern.load_state_dict(plain.state_dict(), strict=False)
    assert missing and all(k.startswith("kernel.") for k in missing)
    torch.testing.assert_close(kern(seqs), plain(seqs))
    # ... and the gain is what learns first (the rest follows once the gains are not 0)
    kern.loss(seqs).backward()
    assert kern.kernel.gain.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("first", [1, 2, 3])
def test_anchor_kernel_bias_is_the_log_density_around_the_chosen_anchors(first):
    m = _kernel_model(anchors=3, first=first)
    tok = torch.tensor([[0, 3, 5, 17, 9, 4]])  # a stop token among the anchors is no anchor
    with torch.no_grad():
        h = m.body(tok)
        bias = (m(tok) - m.logits(h))[0].double()
    assert not bias[:first].any()  # positions before kernel_from are drawn without them
    xy = m.code_table[:, 1:3].double()
    w = m.kernel.log_width.exp().double()
    k = m.kernel
    for t in range(first, 6):
        anchors = [j for j in range(1, min(t, 3) + 1) if j != 3]  # position 3 holds the stop
        q = k.q(h[0, t]).view(2, -1).double()
        keys = k.k(h[0, anchors]).view(len(anchors), 2, -1).double()
        expect = torch.zeros(18, dtype=torch.float64)
        for head in range(2):
            a = torch.softmax(keys[:, head] @ q[head] / 4.0, 0)  # sqrt(KEY_DIM) = 4
            d2 = (xy[None] - xy[tok[0, anchors]][:, None]).square().sum(-1)
            kern = torch.exp(-d2 / (2 * w[head] ** 2))
            kern[:, 0] = 0  # the start token is never next
            kern[:, 17] = torch.sigmoid(k.stop_level[head]).double()  # the stop token's level
            dens = (a[:, None] * kern).sum(0)
            expect += k.gain(h[0, t]).double()[head] * torch.log(dens + 1e-3)
        torch.testing.assert_close(bias[t], expect, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("first", [1, 3])
def test_anchor_kernels_train_and_cached_sampler_equals_reference(first):
    m = _kernel_model(anchors=3, first=first)
    seqs = torch.tensor([[0, 3, 5, 2, 9, 17], [0, 4, 17, -1, -1, -1], [0, 6, 2, 8, 17, -1]])
    # the training loss (bias on the target positions only) is the full forward's
    inp, tgt = seqs[:, :-1].clamp_min(0), seqs[:, 1:]
    with torch.no_grad():
        full = torch.nn.functional.cross_entropy(m(inp)[tgt >= 0], tgt[tgt >= 0])
    torch.testing.assert_close(m.loss(seqs), full)
    m.loss(seqs).backward()
    for p in (m.kernel.q.weight, m.kernel.k.weight, m.kernel.log_width, m.kernel.gain.weight,
              m.kernel.stop_level):
        assert p.grad.abs().sum() > 0
    # more steps than anchors, and finished rows dropped from the state on the way
    a = generate(m, 9, max_new=10, seed=3, batch_size=4)
    b = generate_reference(m, 9, max_new=10, seed=3, batch_size=4)
    assert torch.equal(a[0], b[0])
    assert not torch.equal(a[0], generate(_model(), 9, max_new=10, seed=3, batch_size=4)[0])
    from jetfm.config import ConfigValueError
    with pytest.raises(ConfigValueError) as err:
        BackboneConfig(code_features=0, kernel_heads=2).validate()
    assert err.value.key == "kernel_heads"
    with pytest.raises(ConfigValueError) as err:
        BackboneConfig(code_features=7, kernel_heads=2, kernel_anchors=4,
                       kernel_from=5).validate()
    assert err.value.key == "kernel_from"


def test_anchor_kernels_after_a_prompt_match_the_full_forward():
    """A prompt fed at once (benchmarks/continuation.py) records its anchors like the steps."""
    m = _kernel_model(anchors=3)
    tok = torch.tensor([[0, 3, 5, 2, 9], [0, 4, 17, 8, 1]])
    nxt = torch.tensor([[7], [3]])
    state = m.new_state(2, 8)
    with torch.no_grad():
        got = m.next_logits(m.advance(tok, state, pos=0)[:, -1], state, 4)
        got2 = m.next_logits(m.advance(nxt, state, pos=5)[:, -1], state, 5)
        full = m(torch.cat([tok, nxt], 1))
    torch.testing.assert_close(got, full[:, 4])
    torch.testing.assert_close(got2, full[:, 5])


def test_reflect_keeps_observables_and_order():
    from jetfm.evaluate.scan import experiment_observables
    from jetfm.io import read_jets
    from jetfm.physics.features import Preprocessing
    from tests.conftest import AOJ_MINI

    jets = read_jets(AOJ_MINI, stop=50)
    prep = Preprocessing()
    feats, mask = prep.forward(jets)
    ref = experiment_observables(prep.inverse(feats, mask))
    f8, m8 = reflect(feats, mask, 4)
    assert f8.shape == (4 * len(feats),) + feats.shape[1:]
    np.testing.assert_array_equal(f8[:len(feats)], feats)
    np.testing.assert_array_equal(f8[..., 0], np.concatenate([feats[..., 0]] * 4))
    for c in range(4):
        part = slice(c * len(feats), (c + 1) * len(feats))
        obs = experiment_observables(prep.inverse(f8[part], m8[part]))
        for name in ("mass", "n_constituents", "tau21", "tau32", "d2"):
            np.testing.assert_allclose(obs[name], ref[name], rtol=1e-4, atol=1e-6,
                                       err_msg=f"{name}, reflection {c}")
    assert not np.array_equal(f8[len(feats):2 * len(feats)], feats)


@pytest.mark.parametrize("bad", [0, 3, 8])
def test_augment_takes_only_reflection_counts(bad):
    from jetfm.config import ConfigValueError
    from jetfm.omnijet.config import TrainConfig

    with pytest.raises(ConfigValueError) as err:
        TrainConfig(augment=bad).validate()
    assert err.value.key == "augment" and "1, 2 or 4" in str(err.value)


def test_top_p_keeps_the_nucleus_and_both_samplers_agree():
    from jetfm.omnijet.backbone import draw_tokens

    logits = torch.log(torch.tensor([[1e-9, 0.5, 0.3, 0.15, 0.05]]))
    seen = set()
    for u in torch.linspace(0, 0.999, 200):
        seen.add(int(draw_tokens(logits, u[None], top_p=0.8)))
    assert seen == {1, 2}  # 0.5 + 0.3 reach 0.8: the rest is cut
    seen = {int(draw_tokens(logits, u[None], top_p=0.81)) for u in torch.linspace(0, .999, 200)}
    assert seen == {1, 2, 3}
    assert {int(draw_tokens(logits, u[None], top_p=1e-6))
            for u in torch.linspace(0, .999, 50)} == {1}  # the likeliest always stays
    m = _model()
    a = generate(m, 9, max_new=10, seed=5, batch_size=4, top_p=0.7)
    b = generate_reference(m, 9, max_new=10, seed=5, batch_size=4, top_p=0.7)
    assert torch.equal(a[0], b[0])
    assert not torch.equal(a[0], generate(m, 9, max_new=10, seed=5, batch_size=4)[0])


def test_scratch_classifier_gets_the_code_table_of_its_own_jets(quick_model, jetclass2_root,
                                                                 tmp_path):
    """A from-scratch classifier with code features computes the table from its labelled
    sequences (decoded by the tokenizer); the pre-trained arm keeps the backbone's."""
    import dataclasses

    from jetfm.omnijet.classification import (
        labelled_code_table,
        labelled_sequences,
        train_classifier,
    )
    from jetfm.omnijet.model import OmniJetModel, load_pretrained

    quick = load_pretrained(quick_model)
    cfg = dataclasses.replace(quick.config, backbone=dataclasses.replace(
        quick.config.backbone, code_features=3 + quick.config.tokenizer.quantizer.dim))
    base = OmniJetModel(cfg, tokenizer=quick.tokenizer, backbone=JetGPT(cfg.backbone).eval())
    lab = labelled_sequences(base, [str(jetclass2_root)], only=["QCD"], others="resonance")
    table = labelled_code_table(base.tokenizer, lab.seqs)
    k = base.tokenizer.codebook_size
    assert table.shape == (k + 2, 3 + base.config.tokenizer.quantizer.dim)
    assert np.isfinite(table).all() and table[1:k + 1].std() > 0
    over = ["classification.max_epochs=1"]
    model = train_classifier(base, lab, str(tmp_path / "s"), "scratch", preset="quick",
                             overrides=over, seed=1, progress=False)
    from jetfm.train.data import split_indices

    tr, _ = split_indices(len(lab), model.config.classification.val_fraction)
    np.testing.assert_array_equal(model.classifier.body.code_table.numpy(),
                                  labelled_code_table(base.tokenizer, lab.seqs[tr]))
