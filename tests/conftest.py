"""Shared fixtures: the real data files beside the repository, and the slow-test switch."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"
AOJ_MINI = REAL / "aoj_mini_2016H" / "2016H_job0_mini.h5"
JETCLASS2_ROOT = REAL / "jetclass2_sophon_example" / "JetClassII_example.root"
JETCLASS2_PARQUET = REAL / "jetclass2_sophon_example" / "JetClassII_example.parquet"
PFNANO_INDEX = REAL / "pfnano_coffea_qcd" / "pfnano.root"
PFNANO_INLINE = REAL / "pfnano_cmsjet_2017mc" / "nano106X_on_mini106X_2017_mc_NANO.root"
NANOAOD_PLAIN = REAL / "nanoaod_cms_opendata_2015_ttbar" / "nanoAOD_2015_CMS_Open_Data_ttbar.root"
DARK_IMAGES = REAL / "dark_showers_images"


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true",
                     help="run slow end-to-end tests at full size (CI runs their quick presets)")


def pytest_configure(config):
    os.environ.setdefault("MPLBACKEND", "Agg")
    if config.getoption("--run-slow"):
        os.environ["JETFM_TEST_FULL"] = "1"


def full_size() -> bool:
    """True under ``pytest --run-slow``: slow tests run at full size instead of a quick preset."""
    return os.environ.get("JETFM_TEST_FULL") == "1"


@pytest.fixture(scope="session")
def real_dir() -> Path:
    if not REAL.is_dir():
        pytest.fail(f"real data folder not found at {REAL}")
    return REAL


@pytest.fixture(scope="session")
def aoj_mini(real_dir) -> Path:
    return AOJ_MINI


@pytest.fixture(scope="session")
def jetclass2_root(real_dir) -> Path:
    return JETCLASS2_ROOT


@pytest.fixture(scope="session")
def quick_model(tmp_path_factory):
    """Directory of a quick-preset model with tokenizer and backbone (untrained: the tests check
    data paths, shapes and training mechanics, not physics)."""
    import torch

    from jetfm.omnijet.backbone import JetGPT
    from jetfm.omnijet.config import load_omnijet_config
    from jetfm.omnijet.model import OmniJetModel
    from jetfm.omnijet.tokenizer import VQVAETokenizer

    cfg = load_omnijet_config("quick")
    torch.manual_seed(3)
    tok = VQVAETokenizer(cfg.tokenizer, cfg.preprocessing.build()).eval()
    out = tmp_path_factory.mktemp("omnijet") / "model"
    return OmniJetModel(cfg, tokenizer=tok, backbone=JetGPT(cfg.backbone).eval()
                        ).save_pretrained(str(out))
