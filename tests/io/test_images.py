"""The .npz image reader/writer on the released CoDAE images, and its bad-input cases."""
from __future__ import annotations

import numpy as np
import pytest

from jetfm.errors import InputError
from jetfm.io.images import (
    CHANNELS_1,
    CHANNELS_3,
    parse_image_name,
    read_image_file,
    read_images,
    write_images,
)
from tests.conftest import DARK_IMAGES

NTRK = DARK_IMAGES / "n_tracks" / "train"
SUP = DARK_IMAGES / "supervised"


def test_parse_names():
    assert parse_image_name("suep_gensim_h400_phi2_dp0p7_dt2_103_1.npz") == ("suep", 400.0)
    assert parse_image_name("/a/b/svj_2100_34484_6.npz") == ("svj", 2100.0)
    assert parse_image_name("qcd_gensim_110_6.npz") == ("qcd", 0.0)
    assert parse_image_name("my_events.npz") is None


def test_read_real_three_channel_qcd():
    ev = read_images(NTRK)
    assert len(ev) == 1002  # README: 1002 QCD events in n_tracks/train
    assert ev.images.shape == (1002, 72, 58, 3) and ev.images.dtype == np.float32
    assert ev.channels == CHANNELS_3
    assert (ev.labels == 0).all() and (ev.masses == 0).all()
    assert ev.n_tracks.shape == (1002,) and ev.n_tracks.min() > 0
    # about 2 % of track pixels are lit (README: ~2.6 % of all pixels)
    assert 0.01 < (ev.images[..., 0] > 0).mean() < 0.04


def test_read_real_supervised_masses_from_names():
    ev = read_images(SUP / "valid")
    assert ev.channels == CHANNELS_1 and ev.n_tracks is None
    counts = {k: int((ev.labels == k).sum()) for k in (0, 1, 2)}
    assert counts == {0: 171, 1: 107, 2: 148}  # README table, supervised/valid
    assert sorted(set(ev.masses[ev.labels == 1].tolist())) == [125.0, 400.0, 700.0, 1000.0]
    assert sorted(set(ev.masses[ev.labels == 2].tolist())) == [2100.0, 3100.0, 4100.0]
    sig = read_images(SUP / "valid", processes=["svj"])
    assert len(sig) == 148 and (sig.labels == 2).all()


def test_supervised_channel_is_the_channel_sum():
    # the one-channel files' occupancy matches the 3-channel files' summed occupancy, not tracks
    three = read_images(NTRK, channels="sum")
    one = read_images(SUP / "train", processes=["qcd"])
    occ3 = (three.images > 0).mean()
    occ1 = (one.images > 0).mean()
    assert abs(occ3 - occ1) / occ1 < 0.1
    with pytest.raises(InputError, match="mix channel layouts"):
        read_images([NTRK, SUP / "train"], processes=["qcd"])


def test_write_read_roundtrip(tmp_path):
    rng = np.random.default_rng(1)
    img = (rng.random((5, 72, 58, 3)) < 0.03).astype(np.float32) * 3.0
    out = write_images(tmp_path / "sim.npz", img, [2] * 5, [3000.0] * 5, n_tracks=[1, 2, 3, 4, 5],
                       meta={"generator": "test"})
    assert not (tmp_path / "sim.npz.partial").exists()
    ev = read_image_file(out)
    np.testing.assert_array_equal(ev.images, img)
    assert (ev.masses == 3000.0).all() and (ev.labels == 2).all()
    np.testing.assert_array_equal(ev.n_tracks, [1, 2, 3, 4, 5])


def _save(path, **arrays):
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)
    return path


@pytest.mark.parametrize("case, match", [
    ("missing", "missing key"),
    ("shape", "has shape"),
    ("labels_len", "'labels' has shape"),
    ("nan", "NaN"),
    ("label_value", "values other than"),
    ("no_mass", "cannot tell the mediator mass"),
    ("name_label", "file name says"),
    ("garbage", "not a readable"),
])
def test_bad_input(tmp_path, case, match):
    good = dict(images=np.zeros((3, 72, 58, 1), np.float32), labels=np.zeros(3, np.float32),
                masses=np.zeros(3, np.float32))
    name = "qcd_gensim_1.npz"
    if case == "missing":
        good.pop("masses")
    elif case == "shape":
        good["images"] = np.zeros((3, 58, 72, 1), np.float32)
    elif case == "labels_len":
        good["labels"] = np.zeros(2, np.float32)
    elif case == "nan":
        good["images"][0, 1, 2, 0] = np.nan
    elif case == "label_value":
        good["labels"][0] = 7
    elif case == "no_mass":
        name = "events.npz"
    elif case == "name_label":
        good["labels"][:] = 1
    path = tmp_path / name
    if case == "garbage":
        path.write_bytes(b"PK\x03\x04 not really a zip")
    else:
        _save(path, **good)
    with pytest.raises(InputError, match=match) as err:
        read_image_file(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)
