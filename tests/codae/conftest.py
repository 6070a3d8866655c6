"""Fixtures of the anomaly-detection tests."""
from __future__ import annotations

import numpy as np
import pytest

from jetfm.io.images import read_image_file
from tests.conftest import DARK_IMAGES

SUP = DARK_IMAGES / "supervised"


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: on a shared 2-core machine two threads are many times slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _subset(src, dst, n):
    """The first n events of a real file, under its released name (masses from the name)."""
    ev = read_image_file(src)
    with open(dst, "wb") as fh:
        np.savez(fh, images=ev.images[:n], labels=ev.labels[:n].astype(np.float32),
                 masses=np.zeros(min(n, len(ev)), np.float32))
    return dst


@pytest.fixture(scope="module")
def real_subsets(tmp_path_factory):
    d = tmp_path_factory.mktemp("imgs")
    qcd = _subset(SUP / "train" / "qcd_gensim_110_6.npz", d / "qcd_gensim_110_6.npz", 96)
    bkg = _subset(SUP / "valid" / "qcd_gensim_110_2.npz", d / "qcd_gensim_110_2.npz", 40)
    sig = [_subset(SUP / "valid" / name, d / name, 20) for name in
           ("suep_gensim_h700_phi2_dp0p7_dt2_103_6.npz",
            "suep_gensim_h1000_phi2_dp0p7_dt2_103_1.npz",
            "svj_2100_91191_4.npz", "svj_4100_34155_4.npz")]
    return qcd, bkg, sig
