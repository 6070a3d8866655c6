"""Fixtures shared by the training tests."""
import pytest


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    """Directory of a quick-preset tokenizer, untrained (its codes need not be good to test the
    data path and training)."""
    import torch

    from jetfm.omnijet.config import load_omnijet_config
    from jetfm.omnijet.model import OmniJetModel
    from jetfm.omnijet.tokenizer import VQVAETokenizer

    cfg = load_omnijet_config("quick")
    torch.manual_seed(1)
    tok = VQVAETokenizer(cfg.tokenizer, cfg.preprocessing.build()).eval()
    out = tmp_path_factory.mktemp("tok") / "model"
    return OmniJetModel(cfg, tokenizer=tok).save_pretrained(str(out))
