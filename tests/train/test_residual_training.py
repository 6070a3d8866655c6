"""A tokenizer with residual codes through the whole chain (quick preset, real files): trained
with them or given them afterwards, token files, pre-training, sampling."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from jetfm.cli import main
from jetfm.io import read_jets
from jetfm.io.tokens import read_tokens, split_codes
from jetfm.omnijet.model import load_pretrained, sample
from jetfm.train import api
from tests.conftest import AOJ_MINI, JETCLASS2_ROOT

ROOT = Path(__file__).resolve().parents[2]
RES = ["--set", "tokenizer.residual_codes=16", "--set", "tokenizer.residual_leading=4"]


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    root = tmp_path_factory.mktemp("residual")
    assert main(["tokenizer", "train", "--data", str(AOJ_MINI), "-o", str(root / "tok"),
                 "--preset", "quick", "--seed", "1", *RES]) == 0
    return root


def test_tokenizer_trained_with_residual_codes_fits_them(chain):
    tok_model = load_pretrained(str(chain / "tok"))
    info = tok_model.provenance["tokenizer"]["residual_codes"]
    assert np.all(np.array(info["rms_after"]) < np.array(info["rms_before"]))
    cfg = tok_model.config.backbone
    k = tok_model.codebook_size
    assert cfg.vocab_size == k + 16 + 2 and cfg.residual_codes == 16
    assert cfg.residual_leading == 4 and cfg.max_len == tok_model.preprocessing.n_max + 2 + 4
    codes, mask = tok_model.tokenizer.encode(read_jets(AOJ_MINI))
    res = split_codes(codes, k)[1]
    assert ((res >= 0) == (mask & (np.arange(mask.shape[1]) < 4))).all()


def test_token_files_pretraining_and_sampling(chain, tmp_path):
    tokens = tmp_path / "tokens.h5"
    assert main(["tokenize", str(AOJ_MINI), "-o", str(tokens), "--model",
                 str(chain / "tok")]) == 0
    seqs, attrs = read_tokens(tokens)
    tok = load_pretrained(str(chain / "tok")).tokenizer
    feats, mask = tok.preprocessing.forward(read_jets(AOJ_MINI))
    want = tok.sequences(tok.encode_arrays(feats, mask), mask)
    assert attrs["residual_codes"] == 16 and np.array_equal(seqs, want[:, :seqs.shape[1]])
    # pre-training on the token file and on the jets, with the code table
    for name, data in (("from_tokens", str(tokens)), ("from_jets", str(AOJ_MINI))):
        over = ["--set", "pretraining.max_epochs=1"]
        if name == "from_jets":
            over += ["--set", "backbone.code_features=7"]
        assert main(["pretrain", "--data", data, "--tokenizer", str(chain / "tok"),
                     "-o", str(tmp_path / name), "--preset", "quick", "--seed", "1",
                     *over]) == 0
    model = load_pretrained(str(tmp_path / "from_jets" / "model"))
    assert model.backbone.code_table.shape[0] == model.backbone.cfg.vocab_size
    # residual rows: the tokenizer's residual vectors in the code rows' units; stop row 0
    k, table = model.codebook_size, model.backbone.code_table.numpy()
    ratio = table[k + 1:-1, :3] / model.tokenizer.residual_vectors()
    assert np.all(ratio > 0) and np.allclose(ratio, ratio[:1], rtol=1e-4)
    assert not table[k + 1:-1, 3:].any() and not table[-1].any()
    jets = sample(str(tmp_path / "from_jets"), 40, seed=3, progress=False)
    assert len(jets) == 40 and jets.n_constituents.min() >= 3
    # benchmarks/residual_codes.py backbone: the cross-entropy of both kinds of places
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "residual_codes.py"),
                        "backbone", "--model", str(tmp_path / "from_jets"), "--jets",
                        str(AOJ_MINI), "--n", "60", "--n-generated", "30"],
                       capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert 0 < res["value"] < 2 * np.log(16) and set(res["cross_entropy"]) == {
        "code or stop", "residual"}
    assert set(res["rows"]) == {"held-out jets", "generated, residual codes sampled",
                                "generated, residual codes dropped"}
    # classification: both arms read the interleaved sequences (pre-trained and from scratch)
    for arm in ([], ["--from-scratch"]):
        out = tmp_path / ("clf" + "".join(arm))
        assert main(["classify", "train", "--from", str(tmp_path / "from_jets"), "--data",
                     str(JETCLASS2_ROOT), "--only", "QCD", "--others", "resonance", "-o",
                     str(out), "--preset", "quick", "--seed", "2", *arm]) == 0
        assert main(["classify", "predict", "--model", str(out), "--data", str(JETCLASS2_ROOT),
                     "-o", str(out / "p.csv")]) == 0
        assert (out / "p.csv").stat().st_size > 0


def test_residual_codes_added_to_a_trained_tokenizer(chain, tmp_path):
    plain = tmp_path / "plain"
    assert main(["tokenizer", "train", "--data", str(AOJ_MINI), "-o", str(plain),
                 "--preset", "quick", "--seed", "1"]) == 0
    out = api.add_residual_codes(str(plain), [str(AOJ_MINI)], str(tmp_path / "res"),
                                 residual_codes=16, residual_leading=4, seed=1)
    base, res = load_pretrained(str(plain)), load_pretrained(out)
    sd_b, sd_r = base.tokenizer.state_dict(), res.tokenizer.state_dict()
    assert set(sd_r) - set(sd_b) == {"residual_codebook"}
    assert all(torch.equal(sd_b[k], sd_r[k]) for k in sd_b)
    # the same VQ-VAE and the same fit as a tokenizer trained with the residual codes
    trained = load_pretrained(str(chain / "tok")).tokenizer
    assert torch.equal(trained.residual_codebook, res.tokenizer.residual_codebook)
    feats, mask = base.preprocessing.forward(read_jets(AOJ_MINI))
    c_plain = base.tokenizer.encode_arrays(feats, mask)
    c_res = res.tokenizer.encode_arrays(feats, mask)
    assert np.array_equal(np.where(mask, c_res % base.codebook_size, -1), c_plain)
    # the command does the same
    assert main(["tokenizer", "residuals", "--model", str(plain), "--data", str(AOJ_MINI),
                 "-o", str(tmp_path / "res_cli"), "--codes", "16", "--leading", "4",
                 "--seed", "1"]) == 0
    cli = load_pretrained(str(tmp_path / "res_cli"))
    assert torch.equal(cli.tokenizer.residual_codebook, res.tokenizer.residual_codebook)
    # a tokenizer of a model with a backbone: the backbone is not carried over
    assert cli.backbone is None
    err = (res.tokenizer.decode_arrays(c_res, mask) - feats)[:, :4][mask[:, :4]]
    err0 = (base.tokenizer.decode_arrays(c_plain, mask) - feats)[:, :4][mask[:, :4]]
    assert (err ** 2).mean() < (err0 ** 2).mean()


def test_a_pretrained_backbone_given_residual_codes_fine_tunes_and_samples(quick_model,
                                                                            tmp_path, capsys):
    """jetfm tokenizer residuals on a model with a backbone: the backbone comes along with its
    vocabulary grown, then fine-tunes and samples."""
    out = tmp_path / "res"
    assert main(["tokenizer", "residuals", "--model", quick_model, "--data", str(AOJ_MINI),
                 "-o", str(out), "--codes", "8", "--leading", "3"]) == 0
    assert "tokenizer and backbone" in capsys.readouterr().out
    base, res = load_pretrained(quick_model), load_pretrained(str(out))
    k = base.codebook_size
    assert res.backbone.cfg.vocab_size == k + 8 + 2 == res.backbone.embed.weight.shape[0]
    assert torch.equal(res.backbone.embed.weight[-1], base.backbone.embed.weight[-1])
    assert main(["finetune", "--from", str(out), "--data", str(AOJ_MINI), "-o",
                 str(tmp_path / "ft"), "--preset", "quick", "--set",
                 "finetuning.max_epochs=1"]) == 0
    jets = sample(str(tmp_path / "ft"), 20, seed=1, progress=False)
    assert len(jets) == 20


def test_residual_codes_added_to_a_backbone_with_the_code_table(tmp_path):
    """The grown backbone keeps its code rows and gets its residual tokens' rows: the fitted
    offsets scaled like its feature columns."""
    from jetfm.omnijet.backbone import JetGPT
    from jetfm.omnijet.config import load_omnijet_config
    from jetfm.omnijet.model import OmniJetModel
    from jetfm.omnijet.tokenizer import VQVAETokenizer

    cfg = load_omnijet_config("quick")
    width = 3 + cfg.tokenizer.quantizer.dim
    cfg = load_omnijet_config("quick", [f"backbone.code_features={width}"])
    torch.manual_seed(5)
    tok = VQVAETokenizer(cfg.tokenizer, cfg.preprocessing.build()).eval()
    backbone = JetGPT(cfg.resolved().backbone).eval()
    backbone.code_table.normal_()
    backbone.code_table[0] = backbone.code_table[-1] = 0
    src = OmniJetModel(cfg, tokenizer=tok, backbone=backbone).save_pretrained(
        str(tmp_path / "src" / "model"))
    out = api.add_residual_codes(src, [str(AOJ_MINI)], str(tmp_path / "res"),
                                 residual_codes=8, residual_leading=3)
    res = load_pretrained(out)
    k = res.codebook_size
    old, new = backbone.code_table.numpy(), res.backbone.code_table.numpy()
    assert np.array_equal(new[:k + 1], old[:k + 1]) and not new[-1].any()
    ratio = new[k + 1:-1, :3] / res.tokenizer.residual_vectors()
    assert np.all(ratio > 0) and np.allclose(ratio, ratio[:1], rtol=1e-4)
