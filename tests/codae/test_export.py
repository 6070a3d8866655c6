"""ONNX export of a trained CoDAE/AE and scoring with ONNX Runtime: same scores as PyTorch."""
from __future__ import annotations

import json

import numpy as np
import pytest

from jetfm.cli import main
from jetfm.codae.checkpoint import load_run_models
from jetfm.codae.config import AnomalyConfig
from jetfm.codae.data import model_inputs, read_for_input
from jetfm.codae.runtime import load_onnx
from jetfm.codae.scoring import codae_scores
from jetfm.codae.training import train
from jetfm.config import load_config


@pytest.fixture(scope="module")
def tiny_run(real_subsets, tmp_path_factory):
    """CoDAE and AE of the quick preset after two steps on real QCD images."""
    qcd, _, _ = real_subsets
    out = tmp_path_factory.mktemp("run") / "r"
    cfg = load_config(AnomalyConfig, "codae_quick",
                      [f"data.train=[{qcd}]", "data.input=occupancy", "train.max_steps=2",
                       "train.batch_size=16"])
    train(cfg, str(out), seed=2, progress=False)
    return out


@pytest.fixture(scope="module")
def exported(tiny_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("exp") / "onnx"
    assert main(["anomaly", "export", "--model", str(tiny_run), "--format", "onnx",
                 "-o", str(out)]) == 0
    return out


def test_export_writes_both_models(exported):
    assert sorted(p.name for p in exported.iterdir()) == ["ae", "codae"]
    assert sorted(p.name for p in (exported / "codae").iterdir()) == ["config.json", "full.onnx",
                                                                     "z_m.onnx"]
    assert sorted(p.name for p in (exported / "ae").iterdir()) == ["config.json", "full.onnx"]
    meta = json.loads((exported / "codae" / "config.json").read_text())
    assert meta["format"] == "onnx" and meta["precision"] == "fp32"
    assert len(meta["z_m_reference"]["mean"]) == 2  # carried over from the checkpoint
    assert max(meta["check_max_rel_diff"].values()) < 1e-4
    assert not list(exported.parent.glob(".*partial"))


def test_onnx_scores_equal_pytorch(tiny_run, exported, real_subsets):
    _, bkg, sig = real_subsets
    x = model_inputs(read_for_input([bkg, *sig], "occupancy"), "occupancy")
    torch_models = load_run_models(str(tiny_run))
    onnx_models = load_run_models(str(exported))
    for kind in ("codae", "ae"):
        ref_meta = torch_models[kind][1].get("z_m_reference")
        want = codae_scores(torch_models[kind][0], x, ref_meta, batch=32)
        got = codae_scores(onnx_models[kind][0], x, onnx_models[kind][1].get("z_m_reference"),
                           batch=32)
        assert set(got) == set(want)
        for name in want:
            if name.endswith("hits"):  # a count of p > 0.5: equal unless a pixel sits at 0.5
                assert np.abs(got[name] - want[name]).max() <= 1, name
                continue
            np.testing.assert_allclose(got[name], want[name], rtol=1e-4,
                                       atol=1e-4 * np.abs(want[name]).max(), err_msg=name)


def test_evaluate_scores_with_the_export(exported, real_subsets, tmp_path, capsys):
    _, bkg, sig = real_subsets
    rc = main(["anomaly", "evaluate", str(exported), "--background", str(bkg), "--signal",
               *map(str, sig), "-o", str(tmp_path / "eval")])
    assert rc == 0
    m = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert m["models"]["codae"]["runtime"] == "onnxruntime"
    assert m["scores"]["bce"]["suep"]["mean_auc"] > 0.9  # as the PyTorch model (test_pipeline)


def test_one_checkpoint_in_half_precision(tiny_run, tmp_path):
    out = tmp_path / "half"
    assert main(["anomaly", "export", "--model", str(tiny_run / "ae"), "-o", str(out),
                 "--precision", "fp16"]) == 0
    _, meta = load_onnx(str(out / "ae"))
    assert meta["precision"] == "fp16" and meta["model_type"] == "ae"
    diff = meta["check_max_rel_diff"]
    # half, not full, precision (measured: logits 1.1e-2 of the largest, the BCE score 1.7e-4)
    assert 1e-6 < diff["full.bce"] < 1e-2 and 1e-6 < diff["full.logits"] < 5e-2


def test_export_bad_input(tiny_run, exported, tmp_path, capsys):
    cases = [
        (["--model", str(tmp_path / "none"), "-o", str(tmp_path / "a")], "no such run"),
        (["--model", str(tiny_run), "-o", str(exported)], "not an empty folder"),
        (["--model", str(exported), "-o", str(tmp_path / "b")], "already an ONNX export"),
        (["--model", str(tiny_run), "-o", str(tmp_path / "c"), "--precision", "int4"],
         "unknown --precision"),
        (["--model", str(tiny_run), "-o", str(tmp_path / "d"), "--precision", "int8-static"],
         "needs --calibration"),
    ]
    for args, msg in cases:
        rc = main(["anomaly", "export", *args])
        err = capsys.readouterr().err
        assert rc == 2 and msg in err and err.count("\n") == 1, (args, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing half-written
