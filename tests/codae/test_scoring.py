"""CoDAE scores outside the CLI: each score of codae_scores against an independent computation
on the real released detector images."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from jetfm.codae.data import model_inputs
from jetfm.codae.model import CoDAE, CoDAEConfig
from jetfm.codae.scoring import codae_scores, z_m_reference
from jetfm.io.images import read_images
from tests.conftest import DARK_IMAGES


@pytest.fixture(scope="module")
def inputs():
    ev = read_images(DARK_IMAGES / "supervised" / "valid")
    return model_inputs(ev, "occupancy", 1.0)[:12]


def _numpy_scores(model: CoDAE, x: np.ndarray) -> dict[str, np.ndarray]:
    """The reconstruction scores with NumPy from the model's logits, one event at a time."""
    out: dict[str, list] = {k: [] for k in ("bce", "dice", "mse", "l1", "energy", "hits")}
    with torch.no_grad():
        for xi in x:
            z = model(torch.from_numpy(xi[None])).double().numpy()[0]
            t = xi.astype(np.float64)
            p = 1.0 / (1.0 + np.exp(-z))
            # BCE with logits, the numerically stable form
            out["bce"].append(np.sum(np.maximum(z, 0) - z * t + np.log1p(np.exp(-np.abs(z)))))
            out["dice"].append(1 - (2 * np.sum(p * t) + 1e-6) / (p.sum() + t.sum() + 1e-6))
            out["mse"].append(np.mean((p - t) ** 2))
            out["l1"].append(np.mean(np.abs(p - t)))
            out["energy"].append(abs(p.sum() - t.sum()))
            out["hits"].append(abs(int((p > 0.5).sum()) - int((t > 0).sum())))
    return {k: np.asarray(v) for k, v in out.items()}


@pytest.mark.parametrize("conditional", [True, False])
def test_scores_equal_an_independent_computation(inputs, conditional):
    torch.manual_seed(4)
    cfg = dataclasses.replace(CoDAEConfig(), conditional=conditional)
    model = CoDAE(cfg).eval()
    x = np.ascontiguousarray(inputs, np.float32)
    ref = None
    if conditional:
        with torch.no_grad():
            zm = model.z_m(torch.from_numpy(x)).double().numpy()
        ref = z_m_reference(zm[:8])
    got = codae_scores(model, x, ref, batch=5)  # batches of 5: the split must not matter
    want = _numpy_scores(model, x)
    prefix = "" if conditional else "ae_"
    for k, v in want.items():
        np.testing.assert_allclose(got[prefix + k], v, rtol=2e-4, atol=1e-6, err_msg=k)
    if conditional:
        np.testing.assert_allclose(np.stack([got["z_m0"], got["z_m1"]], 1), zm, rtol=1e-5)
        d = zm - zm[:8].mean(0)
        inv = np.linalg.inv(np.cov(zm[:8].T) + 1e-9 * np.eye(2))
        np.testing.assert_allclose(got["z_m_dist"], np.sqrt(np.sum(d @ inv * d, 1)), rtol=1e-8)
    else:
        assert not any(k.startswith("z_m") for k in got)
