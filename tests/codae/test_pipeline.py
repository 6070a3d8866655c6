"""A short training run on the real released images, evaluation, report, reproducibility, CLI."""
from __future__ import annotations

import json

import pytest

from jetfm.cli import main
from jetfm.codae.checkpoint import from_pretrained
from jetfm.codae.config import AnomalyConfig
from jetfm.codae.training import train
from jetfm.config import load_config
from tests.report.checks import assert_reads_verdict_figures_tables


def _cfg(qcd):
    return load_config(AnomalyConfig, "codae_quick",
                       [f"data.train=[{qcd}]", "data.input=occupancy", "train.max_steps=2",
                        "train.batch_size=16"])


def test_train_is_seeded_and_checkpoints(real_subsets, tmp_path):
    qcd, _, _ = real_subsets
    cfg = _cfg(qcd)
    s1 = train(cfg, str(tmp_path / "a"), seed=5, progress=False)
    s2 = train(cfg, str(tmp_path / "b"), seed=5, progress=False)
    h1 = json.loads((tmp_path / "a" / "codae" / "history.json").read_text())
    h2 = json.loads((tmp_path / "b" / "codae" / "history.json").read_text())
    assert h1 == h2 and h1["epochs"][0]["steps"] == 2
    assert s1["models"]["codae"]["best_valid_ssim"] == s2["models"]["codae"]["best_valid_ssim"]
    model, meta = from_pretrained(str(tmp_path / "a" / "codae"))
    assert meta["model_type"] == "codae" and meta["input"] == "occupancy"
    assert len(meta["z_m_reference"]["mean"]) == 2
    assert (tmp_path / "a" / "ae" / "model.safetensors").exists()
    assert (tmp_path / "a" / "config.yaml").exists()
    # the resolved config reloads as a preset
    again = load_config(AnomalyConfig, str(tmp_path / "a" / "config.yaml"))
    assert again.data.input == "occupancy" and again.train.max_steps == 2


def test_cli_train_evaluate_report(real_subsets, tmp_path, capsys):
    qcd, bkg, sig = real_subsets
    rc = main(["anomaly", "train", "--train", str(qcd), "--config", "codae_quick", "--set",
               "data.input=occupancy", "train.max_steps=2", "train.batch_size=16", "--seed", "1",
               "--name", "r", "--runs", str(tmp_path), "--no-progress"])
    assert rc == 0
    out = tmp_path / "eval"
    rc = main(["anomaly", "evaluate", str(tmp_path / "r"), "--background", str(bkg), "--signal",
               *map(str, sig), "-o", str(out)])
    assert rc == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["n_background"] == 40 and m["n_signal"] == {"suep": 40, "svj": 40}
    for name in ("z_m0", "z_m1", "z_m_dist", "bce", "dice", "mse", "l1", "energy", "hits",
                 "ae_bce", "n_hits"):
        suep = m["scores"][name]["suep"]
        assert set(suep["masses"]) == {"700", "1000"}
    # SUEP 700/1000 GeV light up many more pixels than QCD: even two training steps give
    # reconstruction scores that follow the occupancy (measured: SUEP AUC 0.95 to 0.97, SVJ 0.66
    # to 0.85, the same as the lit-pixel count n_hits); a broken score or sign falls far below
    for name in ("bce", "mse", "hits", "ae_bce", "n_hits"):
        assert m["scores"][name]["suep"]["mean_auc"] > 0.9, name
        assert m["scores"][name]["svj"]["mean_auc"] > 0.65, name
        assert m["scores"][name]["suep"]["mean_fpr40"] < 0.1, name
    # dice and the energy difference fall with occupancy: the other direction
    for name in ("dice", "energy"):
        assert m["scores"][name]["suep"]["mean_auc"] < 0.1, name
    assert "n_tracks" not in m["scores"] and m["notes"]  # supervised files carry no n_tracks
    for f in ("roc.png", "z_m_density.png", "report.md", "report.html"):
        assert (out / f).stat().st_size > 0
    md, page = (out / "report.md").read_text(), (out / "report.html").read_text()
    assert_reads_verdict_figures_tables(md, page, n_figures=2)
    best = max(("z_m0", "z_m1", "z_m_dist", "bce", "dice", "ae_bce", "n_hits"),
               key=lambda n: m["scores"][n]["suep"]["mean_auc"])
    assert (f"**SUEP:** the best score is `{best}`, mean ROC AUC "
            f"{m['scores'][best]['suep']['mean_auc']:.3f}") in md


def test_limits_benchmark_on_real_images(real_subsets, tmp_path):
    """benchmarks/codae_limits.py: the AUCs of the evaluation, and each score's rank correlation
    with the occupancy (n_hits with itself: 1)."""
    import subprocess
    import sys
    from pathlib import Path

    from jetfm.codae.scoring import evaluate

    qcd, bkg, sig = real_subsets
    train(_cfg(qcd), str(tmp_path / "r"), seed=2, progress=False)
    root = Path(__file__).resolve().parents[2]
    r = subprocess.run([sys.executable, str(root / "benchmarks" / "codae_limits.py"),
                        str(tmp_path / "r"), "--background", str(bkg), "--signal",
                        *map(str, sig)], capture_output=True, text=True, timeout=600,
                       env={**__import__("os").environ, "PYTHONPATH": str(root / "src")})
    assert r.returncode == 0, r.stderr[-2000:]
    rows = json.loads(r.stdout.strip().splitlines()[-1])["rows"]
    m = evaluate(str(tmp_path / "r"), [bkg], sig)["scores"]
    for name in ("bce", "z_m_dist", "n_hits"):
        assert rows[name]["auc"] == pytest.approx(
            [round(m[name][p]["mean_auc"], 4) for p in ("suep", "svj")], abs=1e-4), name
    assert rows["n_hits"]["rho_n_hits_qcd"] == 1.0
    # after two steps the reconstruction error is mostly the occupancy (measured rho 0.9+)
    assert rows["bce"]["rho_n_hits_qcd"] > 0.5


def test_cli_bad_input(real_subsets, tmp_path, capsys):
    qcd, bkg, sig = real_subsets
    rc = main(["anomaly", "evaluate", str(tmp_path / "nothing"), "--background", str(bkg),
               "--signal", str(sig[0])])
    assert rc == 2 and "no such run" in capsys.readouterr().err
    # the paper's track occupancy needs the 3-channel files: one clear line, exit 2
    rc = main(["anomaly", "train", "--train", str(qcd), "--config", "codae_quick", "--seed", "1",
               "--runs", str(tmp_path), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "needs 3-channel images" in err and err.count("\n") == 1


def test_resume_replays_the_uninterrupted_run(real_subsets, tmp_path):
    qcd, _, _ = real_subsets
    base = [f"data.train=[{qcd}]", "data.input=occupancy", "train.max_steps=0",
            "train.batch_size=48", "models=[codae]"]
    whole = load_config(AnomalyConfig, "codae_quick", base + ["train.epochs=2"])
    train(whole, str(tmp_path / "whole"), seed=3, progress=False)
    first = load_config(AnomalyConfig, "codae_quick", base + ["train.epochs=1"])
    train(first, str(tmp_path / "split"), seed=3, progress=False)  # "crash" after epoch 1
    s = train(whole, str(tmp_path / "split"), seed=3, progress=False, resume=True)
    h_whole = json.loads((tmp_path / "whole" / "codae" / "history.json").read_text())
    h_split = json.loads((tmp_path / "split" / "codae" / "history.json").read_text())
    assert len(h_whole["epochs"]) == 2 and h_split == h_whole
    assert s["models"]["codae"]["steps"] == 4


def test_bf16_training_follows_fp32(real_subsets, tmp_path, capsys):
    qcd, _, _ = real_subsets
    base = [f"data.train=[{qcd}]", "data.input=occupancy", "train.max_steps=3",
            "train.batch_size=16", "models=[codae]"]
    hist = {}
    for prec in ("fp32", "bf16"):
        cfg = load_config(AnomalyConfig, "codae_quick", base + [f"train.precision={prec}"])
        train(cfg, str(tmp_path / prec), seed=4, progress=False)
        hist[prec] = json.loads((tmp_path / prec / "codae" / "history.json").read_text())
    a, b = hist["fp32"]["epochs"][0], hist["bf16"]["epochs"][0]
    assert a["steps"] == b["steps"] == 3
    # the same training to bfloat16 rounding (benchmarks/codae_training.py: about 1e-4
    # relative after a few steps), not a copy of the fp32 numbers
    for key in ("train_loss", "valid_loss"):
        assert a[key] != b[key] and abs(a[key] - b[key]) < 1e-2 * abs(a[key]), key
    rc = main(["anomaly", "train", "--train", str(qcd), "--config", "codae_quick", "--set",
               "data.input=occupancy", "train.precision=fp8", "--seed", "1", "--runs",
               str(tmp_path / "bad"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "train.precision" in err and err.count("\n") == 1
    assert not (tmp_path / "bad").exists()
