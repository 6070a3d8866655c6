"""Every option of the vector quantiser, and padding kept out of every statistic."""
import pytest
import torch

from jetfm.omnijet.quantizer import (
    QuantizerConfig,
    VectorQuantizer,
    _argmin_rows,
    kmeans_pp,
    nearest_code,
)


def _vq(**kw):
    base = dict(codebook_size=16, dim=2, kmeans_init=False, replace_freq=0, affine=False)
    base.update(kw)
    return VectorQuantizer(QuantizerConfig(**base))


def test_nearest_code_chunked_matches_brute_force():
    torch.manual_seed(0)
    z, cb = torch.randn(1000, 4), torch.randn(300, 4)
    brute = torch.cdist(z, cb).argmin(1)
    assert torch.equal(nearest_code(z, cb, chunk_size=7), brute)


@pytest.mark.parametrize("k", [1024, 1500, 8192])
def test_blocked_argmin_equals_argmin_with_ties(k):
    # large codebooks take the two-level argmin: same index as torch's, first one on ties
    g = torch.Generator().manual_seed(k)
    d = torch.randint(0, 50, (300, k), generator=g).float()  # many exact ties
    assert torch.equal(_argmin_rows(d), d.argmin(1))
    z, cb = torch.randn(700, 4, generator=g), torch.randn(k, 4, generator=g)
    assert torch.equal(nearest_code(z, cb), torch.cdist(z, cb).argmin(1))


def test_beta_convention_weights_codebook_and_commitment():
    vq = _vq(beta=0.9, sync_nu=0.0)
    z = torch.randn(4, 3, 2, requires_grad=True)
    zq, idx, loss, _ = vq(z)
    loss.backward()
    cb = vq.codebook.detach()[idx]
    # d loss / d z_e = (1 - beta) * 2 (z_e - z_q) / n ; codebook side carries beta
    n = z.numel()
    assert torch.allclose(z.grad, 0.1 * 2 * (z.detach() - cb) / n, atol=1e-6)
    g = torch.zeros_like(vq.codebook).index_add_(0, idx.flatten(),
                                                 (0.9 * 2 * (cb - z.detach()) / n).reshape(-1, 2))
    assert torch.allclose(vq.codebook.grad, g, atol=1e-6)


@pytest.mark.parametrize("nu", [0.0, 1.0])
def test_sync_straight_through(nu):
    vq = _vq(sync_nu=nu)
    z = torch.randn(8, 2, requires_grad=True)
    zq, idx, _, _ = vq(z)
    assert torch.allclose(zq, vq.codebook[idx])  # forward value is the code
    (zq * torch.arange(1, 3.0)).sum().backward()  # a "decoder" loss only
    assert torch.allclose(z.grad, torch.arange(1, 3.0).expand(8, 2))  # straight through
    cb_grad = vq.codebook.grad
    if nu == 0:
        assert cb_grad is None or torch.all(cb_grad == 0)
    else:
        assert cb_grad[idx].abs().sum() > 0


def test_affine_codebook_is_learnable_and_used():
    vq = _vq(affine=True)
    with torch.no_grad():
        vq.scale.fill_(2.0)
        vq.shift.fill_(0.5)
    assert torch.allclose(vq.effective_codebook(), vq.codebook * 2 + 0.5)
    z = torch.randn(10, 2)
    zq, idx, loss, _ = vq(z)
    assert torch.allclose(zq, vq.codebook[idx] * 2 + 0.5)
    loss.backward()
    assert vq.scale.grad.abs().sum() > 0 and vq.shift.grad.abs().sum() > 0


def test_dead_code_replacement_after_replace_freq_steps():
    torch.manual_seed(1)
    vq = _vq(replace_freq=3, replace_noise=0.0)
    with torch.no_grad():
        vq.codebook.zero_()
        vq.codebook[1:] = 100.0  # far away: only code 0 is ever used
    vq.train()
    z = torch.randn(64, 2) * 0.01
    for _ in range(2):
        _, _, _, st = vq(z)
        assert st["replaced"] == 0
    _, _, _, st = vq(z)  # third step without use: 15 dead codes replaced by encoder outputs
    assert st["replaced"] == 15
    new = vq.codebook.detach()[1:]
    d = torch.cdist(new, z).min(1).values
    assert torch.all(d < 1e-4)
    # no replacement when switched off
    vq2 = _vq(replace_freq=0)
    for _ in range(5):
        assert vq2(z)[3]["replaced"] == 0


def test_kmeans_pp_init_from_first_batch_only_real_points():
    torch.manual_seed(2)
    vq = _vq(kmeans_init=True, codebook_size=8)
    assert not bool(vq.initialised)
    z = torch.randn(4, 10, 2)
    mask = torch.zeros(4, 10, dtype=torch.bool)
    mask[:, :6] = True
    z[~mask] = 1e6  # padding must never become a code
    vq.train()
    vq(z, mask)
    assert bool(vq.initialised)
    cb = vq.codebook.detach()
    real = z[mask]
    assert torch.all(torch.cdist(cb, real).min(1).values < 1e-5)  # codes are data points
    before = cb.clone()
    vq(torch.randn(4, 10, 2), mask)  # later batches do not re-initialise
    assert torch.equal(vq.codebook.detach(), before)
    # k-means++ spreads centres: two tight clusters both get a centre
    pts = torch.cat([torch.randn(50, 2) * 0.01, torch.randn(50, 2) * 0.01 + 10])
    c = kmeans_pp(pts, 2)
    assert (c[:, 0] > 5).sum() == 1


def test_kmeans_lloyd_iterations_reach_cluster_means():
    torch.manual_seed(3)
    pts = torch.cat([torch.randn(200, 2) * 0.1, torch.randn(200, 2) * 0.1 + 5])
    c = kmeans_pp(pts, 2, iters=5)
    means = torch.stack([pts[:200].mean(0), pts[200:].mean(0)])
    assert torch.cdist(c, means).min(1).values.max() < 1e-4


def test_padding_excluded_from_loss_usage_and_perplexity():
    torch.manual_seed(4)
    vq = _vq(replace_freq=2)
    z = torch.randn(3, 5, 2)
    mask = torch.tensor([[1, 1, 0, 0, 0]] * 3, dtype=torch.bool)
    z_pad = z.clone()
    z_pad[~mask] = 50.0  # garbage in the padding
    vq.eval()
    out1 = vq(z, mask)
    out2 = vq(z_pad, mask)
    assert torch.allclose(out1[2], out2[2])  # loss
    assert torch.equal(out1[1][mask], out2[1][mask]) and torch.all(out2[1][~mask] == -1)
    assert out1[3]["perplexity"] == out2[3]["perplexity"]
    assert out1[3]["usage"] == out2[3]["usage"]
    assert torch.equal(out2[0][~mask], z_pad[~mask])  # padding passes through untouched
    # usage counters: only codes hit by real entries count as used
    vq.train()
    vq.steps_unused.zero_()
    _, idx, _, _ = vq(z_pad, mask)
    used = set(idx[mask].tolist())
    for k in range(16):
        assert (vq.steps_unused[k] == 0) == (k in used)
