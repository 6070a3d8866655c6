"""`jetfm classify train|evaluate|predict|scan` end to end on the real JetClass-II and AOJ files,
and their one-line errors."""
import json
import os

import numpy as np
import pandas as pd
import pytest

from jetfm.cli import main
from tests.report.checks import assert_reads_verdict_figures_tables


def _run(capsys, *argv):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture(scope="module")
def trained(quick_model, jetclass2_root, tmp_path_factory):
    run = tmp_path_factory.mktemp("clf") / "run"
    rc = main(["classify", "train", "--from", quick_model, "--data", str(jetclass2_root),
               "--only", "QCD", "--others", "resonance", "-o", str(run), "--preset", "quick",
               "--seed", "2"])
    assert rc == 0
    return run


def test_train_evaluate_predict_on_the_real_jetclass2_file(trained, jetclass2_root, tmp_path,
                                                            capsys):
    import uproot

    with open(trained / "model" / "config.json") as fh:
        meta = json.load(fh)
    assert meta["has_classifier"] and meta["classes"] == ["QCD", "resonance"]
    assert (trained / "config.yaml").exists() and (trained / "checkpoints").is_dir()
    rc, out, _ = _run(capsys, "classify", "evaluate", "--model", trained, "--data",
                      jetclass2_root, "--only", "QCD", "--others", "resonance", "-o",
                      tmp_path / "ev", "--bootstrap", "20")
    assert rc == 0 and "AUC" in out
    m = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    with uproot.open(jetclass2_root) as f:
        raw = f["tree"]["jet_label"].array(library="np")
    n_qcd = int(((raw >= 161) & (raw <= 187)).sum())
    assert m["counts"] == {"QCD": n_qcd, "resonance": len(raw) - n_qcd}
    assert m["signal"] == "resonance" and m["background"] == "QCD"
    for k in ("accuracy", "auc", "auc_err", "rejection_30", "rejection_50", "rejection_30_err"):
        assert np.isfinite(m[k]), k
    for f in ("roc.png", "report.md", "report.html"):
        assert (tmp_path / "ev" / f).stat().st_size > 0
    md = (tmp_path / "ev" / "report.md").read_text()
    assert_reads_verdict_figures_tables(md, (tmp_path / "ev" / "report.html").read_text(), 1)
    assert f"**resonance against QCD:** ROC AUC {m['auc']:.4f} ± {m['auc_err']:.4f}" in md
    rc, _, _ = _run(capsys, "classify", "predict", "--model", trained, "--data", jetclass2_root,
                    "-o", tmp_path / "scores.parquet")
    assert rc == 0
    df = pd.read_parquet(tmp_path / "scores.parquet")
    assert list(df.columns) == ["jet_index", "p_QCD", "p_resonance"]
    assert len(df) == len(raw) and (df.jet_index.to_numpy() == np.arange(len(raw))).all()
    np.testing.assert_allclose(df.p_QCD + df.p_resonance, 1.0, rtol=1e-12)


def test_class_option_labels_unlabelled_files(quick_model, aoj_mini, jetclass2_root, tmp_path,
                                              capsys):
    rc, out, _ = _run(capsys, "classify", "train", "--from", quick_model, "--freeze-backbone",
                      "--class", f"aoj={aoj_mini}", "--class", f"jc2={jetclass2_root}",
                      "-o", tmp_path / "run", "--preset", "quick")
    assert rc == 0 and "(frozen)" in out and "aoj, jc2" in out


@pytest.mark.parametrize("argv, message", [
    (["--data", "{aoj}"], "carries no labels"),
    (["--class", "a={aoj}"], "at least 2 classes"),
    (["--data", "{jc2}", "--only", "Tbqq"], "not found"),
    (["--data", "{jc2}", "--others", "x"], "--others needs --only"),
    (["--class", "a"], "NAME=FILE"),
    (["--class", "a={empty}", "--class", "b={aoj}"], "empty"),
    # token files written by a tokenizer of another codebook
    (["--class", "a={aoj}", "--class", "b={tokens}"], "the model's tokenizer has 32"),
    ([], "no labelled data"),
])
def test_train_bad_input_is_one_line(quick_model, aoj_mini, jetclass2_root, tmp_path, capsys,
                                     argv, message):
    from jetfm.io.tokens import write_tokens

    empty = tmp_path / "empty.root"
    empty.write_bytes(b"")
    tokens = tmp_path / "other_tokens.h5"
    write_tokens(str(tokens), np.array([[0, 5, 65]], np.int64), 64)
    argv = [a.format(aoj=aoj_mini, jc2=jetclass2_root, empty=empty, tokens=tokens)
            for a in argv]
    rc, _, err = _run(capsys, "classify", "train", "--from", quick_model, "-o", tmp_path / "r",
                      "--preset", "quick", *argv)
    assert rc == 2
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "r" / "model").exists()


def test_evaluate_refuses_a_generator_and_unknown_classes(trained, quick_model, jetclass2_root,
                                                          tmp_path, capsys):
    rc, _, err = _run(capsys, "classify", "evaluate", "--model", quick_model, "--data",
                      jetclass2_root, "-o", tmp_path / "e")
    assert rc == 2 and "not a classifier" in err
    # without --only/--others the file holds classes the model does not know
    rc, _, err = _run(capsys, "classify", "evaluate", "--model", trained, "--data",
                      jetclass2_root, "-o", tmp_path / "e")
    assert rc == 2 and "does not know" in err


def test_scan_on_two_real_files(quick_model, aoj_mini, jetclass2_root, tmp_path, capsys):
    out = tmp_path / "scan"
    argv = ["classify", "scan", "--from", quick_model, "--class", f"aoj={aoj_mini}",
            "--class", f"jc2={jetclass2_root}", "-o", out, "--preset", "quick", "--sizes",
            "16,40", "--seeds", "1", "--n-test", "40", "--arms", "pretrained,scratch"]
    rc, stdout, _ = _run(capsys, *argv)
    assert rc == 0 and "D = 16" in stdout
    res = json.loads((out / "results.json").read_text())
    assert res["target"] == "jc2_vs_aoj"
    arms = {(s["arm"], s["D"]) for s in res["summary"] if s["metric"] == "auc"}
    assert arms == {(a, d) for a in ("pretrained", "scratch", "hlf_bdt", "hlf_bdt_tokenized")
                    for d in (16, 40)}
    # the real files are told apart by their jets' observables (other detector, pile-up)
    bdt = [s["mean"] for s in res["summary"] if s["arm"] == "hlf_bdt" and s["metric"] == "auc"]
    assert min(bdt) > 0.75
    for f in ("report.html", "figures/classify_vs_D.png", "results.csv"):
        assert (out / f).exists()
    assert not (out / "models").exists() or not os.listdir(out / "models")
    # a rerun reuses every finished cell
    before = (out / "results.json").read_text()
    for p in (out / "cells").iterdir():
        os.utime(p, (0, 0))
    rc, _, _ = _run(capsys, *argv)
    assert rc == 0
    assert json.loads((out / "results.json").read_text())["rows"] == json.loads(before)["rows"]
    assert all(p.stat().st_mtime == 0 for p in (out / "cells").iterdir())


def test_a_rerun_with_other_settings_is_refused(trained, quick_model, jetclass2_root, capsys):
    # the same command resumes; another seed or arm is refused without --overwrite
    base = ["classify", "train", "--from", quick_model, "--data", jetclass2_root, "--only",
            "QCD", "--others", "resonance", "-o", trained, "--preset", "quick"]
    rc, _, _ = _run(capsys, *base, "--seed", "2")
    assert rc == 0
    rc, _, err = _run(capsys, *base, "--seed", "3")
    assert rc == 2 and "--overwrite" in err and len(err.strip().splitlines()) == 1
    rc, _, err = _run(capsys, *base, "--seed", "2", "--from-scratch")
    assert rc == 2 and "--overwrite" in err


def test_scan_settings_are_checked_before_any_work(quick_model, aoj_mini, jetclass2_root,
                                                   tmp_path, capsys):
    rc, _, err = _run(capsys, "classify", "scan", "--from", quick_model, "--class",
                      f"aoj={aoj_mini}", "--class", f"jc2={jetclass2_root}", "-o",
                      tmp_path / "s", "--sizes", "2,40", "--arms", "pretrained")
    assert rc == 2 and "classification.sizes" in err and len(err.strip().splitlines()) == 1
    rc, _, err = _run(capsys, "classify", "scan", "--from", quick_model, "--class",
                      f"aoj={aoj_mini}", "--class", f"jc2={jetclass2_root}", "-o",
                      tmp_path / "s", "--arms", "pretrained,tuned")
    assert rc == 2 and "classification.arms" in err
