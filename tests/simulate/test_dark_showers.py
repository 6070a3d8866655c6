"""Simulated dark showers: Pythia 8 Hidden Valley events -> deposits -> images."""
from __future__ import annotations

import numpy as np
import pytest

from jetfm.cli import main
from jetfm.errors import InputError
from jetfm.io.images import read_image_file
from jetfm.simulate.dark_showers import (
    DEPOSIT_KEYS,
    process_settings,
    read_deposits,
    simulate_dark_showers,
)


def test_svj_events_to_images_cli(tmp_path, capsys):
    dep = tmp_path / "svj.npz"
    rc = main(["simulate", "dark-showers", "--signal", "svj", "--mass", "2100", "--events", "3",
               "--seed", "4", "-o", str(dep), "--no-progress"])
    assert rc == 0
    ev = read_deposits(str(dep))
    assert set(DEPOSIT_KEYS) <= set(ev) and (ev["labels"] == 2).all()
    assert ev["meta"]["pythia"][0] == "HiddenValley:ffbar2Zv = on"
    img = tmp_path / "svj_images.npz"
    assert main(["images", str(dep), "-o", str(img)]) == 0
    im = read_image_file(img)  # a name without the released pattern: masses from meta (GeV)
    assert im.images.shape == (3, 72, 58, 3) and (im.masses == 2100).all()
    assert (im.n_tracks > 10).all()
    # every pile-up-free track deposit is one counted track; all ET lies in |eta| < 2.5
    lit = (im.images[..., 0] > 0).sum(axis=(1, 2))
    assert (lit <= im.n_tracks).all() and (lit > 0).all()
    in_acc = np.abs(ev["dep_eta"]) < 2.5
    np.testing.assert_allclose(im.images.sum(), ev["dep_et"][in_acc].sum(), rtol=1e-4)
    # same seed, same events
    again = tmp_path / "again.npz"
    assert main(["simulate", "dark-showers", "--signal", "svj", "--mass", "2100", "--events", "3",
                 "--seed", "4", "-o", str(again), "--no-progress"]) == 0
    np.testing.assert_array_equal(read_deposits(str(again))["dep_et"], ev["dep_et"])


def test_settings_and_bad_input(tmp_path, capsys):
    suep = process_settings("suep", 400.0).settings
    assert "25:addChannel = 1 1.0 102 4900101 -4900101" in suep
    with pytest.raises(InputError):
        process_settings("wimp", 1.0)
    with pytest.raises(InputError, match="events must be"):
        simulate_dark_showers("qcd", 0, 1, str(tmp_path / "x.npz"))
    bad = tmp_path / "bad.npz"
    with open(bad, "wb") as fh:
        np.savez(fh, images=np.zeros((1, 72, 58, 3)))
    rc = main(["images", str(bad), "-o", str(tmp_path / "o.npz")])
    assert rc == 2 and "not a dark-shower deposits file" in capsys.readouterr().err
    assert not (tmp_path / "o.npz").exists()
