"""CoDAE architecture: the paper's parameter count, shapes, conditioning, augmentation, images."""
from __future__ import annotations

import numpy as np
import torch

from jetfm.codae.data import augment
from jetfm.codae.model import CoDAE, CoDAEConfig, n_parameters
from jetfm.physics.images import event_images, fine_images, pooled_shape, sum_pool


def test_paper_parameter_count():
    m = CoDAE()
    # the reference Keras model: 612,032 + 270,594 + 763,841 = 1,646,467 (about 1.65 M)
    assert n_parameters(m.encoder) == 612_032
    assert n_parameters(m.mask_encoder) == 270_594
    assert n_parameters(m.decoder) == 763_841
    assert n_parameters(m) == 1_646_467
    ae = CoDAE(CoDAEConfig(conditional=False))
    assert ae.mask_encoder is None and n_parameters(ae) < n_parameters(m)


def test_shapes_and_conditioning():
    torch.manual_seed(0)
    m = CoDAE().eval()
    x = (torch.rand(2, 1, 72, 58) < 0.05).float()
    with torch.no_grad():
        assert m.encoder(x).shape == (2, 64, 5, 4)
        zm = m.z_m(x)
        assert zm.shape == (2, 2)
        p = m.reconstruct(x)
        assert p.shape == (2, 1, 72, 58) and 0 <= float(p.min()) and float(p.max()) <= 1
        # the decoder depends on Z_m: other Z_m, other reconstruction
        ze = m.encoder(x)
        assert not torch.allclose(m.decoder(ze, zm), m.decoder(ze, zm + 1.0))


def test_augment_is_a_symmetry():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(64, 1, 72, 58)
    y = augment(x, gen)
    assert y.shape == x.shape
    for i in range(64):  # each image is an eta flip and/or a roll by a multiple of 8 of itself
        ok = any(torch.equal(y[i], torch.roll(v, 8 * k, dims=1))
                 for v in (x[i], x[i].flip(2)) for k in range(9))
        assert ok
    assert not torch.equal(y, x)


def test_event_images_equal_pooled_fine_images():
    rng = np.random.default_rng(0)
    m, n = 5000, 4
    ev = rng.integers(0, n, m)
    eta = rng.uniform(-3, 3, m)
    phi = rng.uniform(-np.pi, np.pi, m)
    et = rng.exponential(2.0, m)
    ch = rng.integers(0, 3, m)
    img = event_images(ev, eta, phi, et, ch, n)
    assert img.shape == (n, 72, 58, 3) and pooled_shape() == (72, 58)
    np.testing.assert_allclose(img, sum_pool(fine_images(ev, eta, phi, et, ch, n)), rtol=1e-5,
                               atol=1e-4)
    inside = np.abs(eta) < 2.5
    np.testing.assert_allclose(img.sum(), et[inside].sum(), rtol=1e-5)
    # phi = pi and -pi are the same pixel row (cyclic); eta = -2.49 is the first column
    one = event_images([0, 0], [-2.49, -2.49], [np.pi - 1e-9, -np.pi], [1.0, 2.0], [0, 0], 1)
    assert one[0, 71, 0, 0] == 1.0 and one[0, 0, 0, 0] == 2.0
