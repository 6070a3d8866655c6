"""``jetfm demo`` end to end (quick preset; the default preset under ``pytest --run-slow``), and
the scan's resume and reproducibility on the demo's own models."""
from __future__ import annotations

import json
import os
import shutil

import pytest

from jetfm.cli import main
from jetfm.errors import InputError
from tests.conftest import full_size

# the quick demo takes about 3 minutes of CPU; on a shared, loaded machine the wall time can be
# several times longer than the suite-wide 900 s timeout
pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]
PRESET = "default" if full_size() else "quick"


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    from jetfm.pipelines.demo import run_demo

    out = tmp_path_factory.mktemp("demo") / "run"
    report = run_demo(out=str(out), preset=PRESET, seed=0, progress=False)
    assert report == str(out / "report.html")
    return out


def test_demo_produces_report_with_verdict_and_gammas(demo_dir):
    md = (demo_dir / "report.md").read_text()
    assert "## Verdict" in md and ("pre-training helps" in md or "does not help" in md)
    # the verdict states what the scan's numbers say, recomputed here from results.json
    from jetfm.evaluate.report import verdict
    from jetfm.evaluate.scan import load_results

    res = load_results(str(demo_dir / "scan"))
    v = verdict(res["summary"], res["targets"])
    verdict_md = md.split("## Figures")[0]
    for t, e in v.items():
        # the rule: more wins than losses, wins on at least a third of the pairs, median ratio
        # scratch / fine-tuned above 1, at the smallest D
        s = e["smallest"]
        helps = (s["better"] > s["worse"] and 3 * s["better"] >= s["n"]
                 and s["median_ratio"] > 1)
        assert (f"**{t}: pre-training helps" in verdict_md) == helps, (t, s)
        assert (f"**{t}: pre-training does not help" in verdict_md) == (not helps), (t, s)
        assert f"on {s['better']} of {s['n']} observable metrics" in verdict_md
    assert md.count("Power-law exponents gamma") == 2  # top and qcd
    for t in ("top", "qcd"):
        assert f"## Target: {t}" in md
        assert (demo_dir / "figures" / f"{t}_kl_vs_D.png").exists()
        assert (demo_dir / "figures" / f"{t}_fidelity.png").exists()
        # the fidelity check of the fine-tuned arm at the largest D, in the verdict
        assert f"**{t}, fine-tuned arm at D = " in md.split("## Figures")[0]
    assert "KL floor" in md
    html = (demo_dir / "report.html").read_text()
    # figures 1, 2, 3 per target, the fidelity check per target and the classification scan's
    assert html.count("data:image/png;base64,") == 11
    res = json.loads((demo_dir / "scan" / "results.json").read_text())
    cfg = res["config"]
    n_cells = len(res["targets"]) * len(cfg["sizes"]) * cfg["seeds"] * 2
    cells = {(r["target"], r["D"], r["seed"], r["arm"]) for r in res["rows"]}
    assert len(cells) == n_cells
    # every observable of the experiment, against both references
    obs = {r["observable"] for r in res["rows"] if r["metric"] == "kl"}
    assert {"pt", "eta", "phi", "mass", "n_constituents"} <= obs
    assert {r["reference"] for r in res["rows"]} == {"raw", "tokenized"}
    assert {r["metric"] for r in res["rows"] if r["observable"] == "jet"} == {
        "w1m", "w1p", "w1efp", "fpd", "kpd"}
    with open(demo_dir / "scan" / "results.csv") as fh:
        assert fh.readline().strip() == "target,arm,reference,observable,metric,D,seed,value,error"
        assert sum(1 for _ in fh) == len(res["rows"])


def test_rerun_is_cached_and_prints_report_path_last(demo_dir, capsys):
    rc = main(["demo", "--preset", PRESET, "--out", str(demo_dir), "--no-progress"])
    assert rc == 0
    captured = capsys.readouterr()
    assert captured.out.strip().splitlines()[-1] == os.path.abspath(demo_dir / "report.html")
    assert "pre-train the backbone: cached" in captured.err


def test_other_config_in_same_folder_is_refused(demo_dir, capsys):
    rc = main(["demo", "--preset", PRESET, "--out", str(demo_dir), "--seed", "1"])
    assert rc == 2
    assert "another configuration" in capsys.readouterr().err
    with pytest.raises(InputError):
        from jetfm.pipelines.demo import load_demo_config

        load_demo_config(PRESET, ("targets=[top,wz]",))


def test_interrupted_scan_resumes_and_reproduces_numbers(demo_dir):
    """Delete one finished cell: a rerun recomputes only it, with the same numbers."""
    from jetfm.evaluate.scan import ScanConfig, load_results, run_scan

    res = load_results(str(demo_dir / "scan"))
    cfg = ScanConfig(**res["config"])
    cell = demo_dir / "scan" / "cells" / "top" / f"D{cfg.sizes[0]}_seed0_scratch.json"
    before = json.loads(cell.read_text())["rows"]
    others = {p: p.stat().st_mtime_ns for p in cell.parent.glob("*.json") if p != cell}
    cell.unlink()
    shutil.rmtree(demo_dir / "scan" / "models", ignore_errors=True)
    run_scan(res["pretrained"], res["targets"], str(demo_dir / "scan"), cfg, progress=False)
    after = json.loads(cell.read_text())["rows"]
    assert {p: p.stat().st_mtime_ns for p in others} == others  # nothing else recomputed
    assert len(after) == len(before)
    for a, b in zip(after, before):
        assert (a["observable"], a["metric"]) == (b["observable"], b["metric"])
        assert a["value"] == pytest.approx(b["value"], rel=1e-6, abs=1e-9)


def test_classification_scan_in_the_report(demo_dir):
    """The demo's classification scan: every arm and the baseline at every D and seed, tested on
    the held-out jets of both targets; its section and verdict in the report."""
    res = json.loads((demo_dir / "classify" / "results.json").read_text())
    cfg = res["config"]
    assert res["target"] == "top_vs_qcd"
    cells = {(r["arm"], r["D"], r["seed"]) for r in res["rows"]}
    assert cells == {(a, d, s) for a in cfg["arms"] + ["hlf_bdt", "hlf_bdt_tokenized"]
                     for d in cfg["sizes"]
                     for s in range(cfg["seeds"])}
    for r in res["rows"]:
        if r["metric"] == "auc":
            assert 0.0 <= r["value"] <= 1.0
    md = (demo_dir / "report.md").read_text()
    assert "## Classification: top_vs_qcd" in md
    verdict = md[md.index("## Verdict"):md.index("## Classification")]
    assert "**Classification (top_vs_qcd):** at the smallest D" in verdict
    assert (demo_dir / "figures" / "classify_vs_D.png").exists()


def test_interrupted_classification_scan_reproduces_its_numbers(demo_dir):
    """Delete one finished cell of each kind: a rerun recomputes only them, with the same AUC."""
    from jetfm.evaluate.classify_scan import ClassifyScanConfig, run_classify_scan

    res = json.loads((demo_dir / "classify" / "results.json").read_text())
    cfg = ClassifyScanConfig(**res["config"])
    cell_dir = demo_dir / "classify" / "cells"
    d = cfg.sizes[0]
    cells = [cell_dir / f"D{d}_seed0_{a}.json" for a in ("pretrained", "hlf_bdt")]
    before = [json.loads(c.read_text())["rows"] for c in cells]
    others = {p: p.stat().st_mtime_ns for p in cell_dir.glob("*.json") if p not in cells}
    for c in cells:
        c.unlink()
    run_classify_scan(res["pretrained"], res["classes"], str(demo_dir / "classify"), cfg,
                      progress=False)
    assert {p: p.stat().st_mtime_ns for p in others} == others
    for c, rows in zip(cells, before):
        after = json.loads(c.read_text())["rows"]
        assert [(r["metric"], r["value"]) for r in after] == [(r["metric"], r["value"])
                                                              for r in rows]


def test_report_command_adds_the_fidelity_check(demo_dir, tmp_path):
    out = tmp_path / "rep"
    assert main(["report", str(demo_dir / "scan"), "--out", str(out)]) == 0
    md = (out / "report.md").read_text()
    verdict = md.split("## Figures")[0]
    for t in ("top", "qcd"):
        assert f"**{t}, fine-tuned arm at D = " in verdict
        assert (out / "figures" / f"{t}_fidelity.png").exists()
    assert "medians, W1 and KL(reference || generated)" in md


def test_model_summary_names_the_backbone_options():
    from jetfm.pipelines.demo import model_summary

    desc = {"config": {"tokenizer": {"width": 64, "enc_blocks": 2, "dec_blocks": 2,
                                     "quantizer": {"codebook_size": 2048, "dim": 4}},
                       "backbone": {"dim": 128, "n_blocks": 2, "heads": 8, "ff_dim": 512,
                                    "code_features": 0, "fourier_features": 0},
                       "preprocessing": {"n_max": 128}},
            "parameters": {"backbone": 10}}
    plain = model_summary(desc)["backbone"]
    assert plain == "GPT, dim 128, 2 blocks, 8 heads, feed-forward 512"
    desc["config"]["backbone"].update(code_features=7, fourier_features=32)
    full = model_summary(desc)["backbone"]
    assert full.startswith(plain) and "code table of 7" in full and "32 Fourier" in full
    assert "anchor-kernel" not in full
    desc["config"]["backbone"].update(kernel_heads=2, kernel_anchors=10)
    assert model_summary(desc)["backbone"] == full + (", 2 anchor-kernel heads over the "
                                                      "leading 10 constituents")
