"""The training step: micro-batches give the whole batch's step; channels-last bf16 weights
save and load like any others."""
from __future__ import annotations

import copy

import pytest
import torch

from jetfm.codae.checkpoint import from_pretrained, save_pretrained
from jetfm.codae.config import AnomalyConfig, model_config
from jetfm.codae.data import model_inputs, read_for_input
from jetfm.codae.model import CoDAE
from jetfm.codae.training import prepare_model, train_step
from jetfm.config import load_config
from tests.codae.conftest import SUP


@pytest.fixture(scope="module")
def images():
    ev = read_for_input([str(SUP / "train" / "qcd_gensim_110_6.npz")], "occupancy")
    return torch.from_numpy(model_inputs(ev, "occupancy")[:24])


def _grads(kind, x, micro_batch, precision="fp32"):
    """Loss and gradients of one step (lr 0, so the weights stay where they were), the model in
    the dtype of x."""
    cfg = load_config(AnomalyConfig, "codae_quick", [f"train.precision={precision}"])
    torch.manual_seed(3)
    model = CoDAE(model_config(cfg, kind)).to(x.dtype)
    model = prepare_model(model, precision).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    loss = train_step(model, opt, x, clip_norm=1e9, precision=precision, micro_batch=micro_batch)
    return float(loss), {n: p.grad.clone() for n, p in model.named_parameters()}


def _flat(grads: dict) -> torch.Tensor:
    return torch.cat([g.flatten() for g in grads.values()])


@pytest.mark.parametrize("kind", ["codae", "ae"])
def test_micro_batches_give_the_whole_batch_step(images, kind):
    # in float64, so that only the order of the sums differs: the same step to 1e-12
    x = images.double()
    loss, grads = _grads(kind, x, 0)
    for mb in (5, 8):  # uneven and even slices of the 24 real images
        loss_mb, grads_mb = _grads(kind, x, mb)
        assert loss_mb == pytest.approx(loss, rel=1e-12)
        assert _flat(grads_mb).sub(_flat(grads)).norm() <= 1e-12 * _flat(grads).norm()
    # a real step, not a vanishing one
    assert loss > 100 and float(_flat(grads).norm()) > 1.0
    # float32, as trained: the same step to rounding
    loss32, g32 = _grads(kind, images, 0)
    loss32_mb, g32_mb = _grads(kind, images, 8)
    assert loss32_mb == pytest.approx(loss32, rel=1e-5) and loss32 == pytest.approx(loss, rel=1e-5)
    assert _flat(g32_mb).sub(_flat(g32)).norm() <= 1e-3 * _flat(g32).norm()


def test_bf16_micro_batches_follow_fp32(images):
    loss32, g32 = _grads("codae", images, 0)
    loss16, g16 = _grads("codae", images, 8, "bf16")
    assert loss16 != loss32 and loss16 == pytest.approx(loss32, rel=1e-2)
    cos = torch.nn.functional.cosine_similarity(_flat(g32), _flat(g16), 0)
    assert 0.99 < float(cos) < 1.0


def test_channels_last_weights_round_trip(tmp_path, images):
    cfg = load_config(AnomalyConfig, "codae_quick")
    torch.manual_seed(0)
    model = CoDAE(model_config(cfg, "codae")).eval()
    ref = model(images)
    cl = prepare_model(copy.deepcopy(model), "bf16")
    conv = cl.encoder.body[1].a[0].weight  # a 3x3 kernel on 4 channels: the layouts differ
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    save_pretrained(cl, str(tmp_path / "m"), {"input": "occupancy"})
    loaded, _ = from_pretrained(str(tmp_path / "m"))
    assert torch.equal(loaded(images), ref)
