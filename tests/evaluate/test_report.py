"""Report and figures from a synthetic scan folder (known numbers, no training)."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from jetfm.cli import main
from jetfm.evaluate import plots
from jetfm.evaluate.report import build_report, verdict, verdict_text
from jetfm.evaluate.scan import ScanConfig, write_results
from tests.conftest import AOJ_MINI
from tests.report.checks import assert_reads_verdict_figures_tables


def _fake_scan(folder, pre_gain: float) -> str:
    """A scan folder whose fine-tuned arm's metrics are ``pre_gain`` times smaller at the
    smallest D and equal at the largest."""
    rng = np.random.default_rng(0)
    rows, sizes = [], [100, 1000, 10_000]
    for d in sizes:
        gain = pre_gain if d == sizes[0] else (1 + (pre_gain - 1) / 4 if d == sizes[1] else 1.0)
        for seed in range(3):
            for arm in ("pretrained", "scratch"):
                for obs in ("pt", "mass", "tau21"):
                    for metric, scale in (("kl", 0.5), ("w1", 10.0)):
                        v = scale * d ** -0.3 * (1 + 0.02 * rng.normal())
                        v = v / gain if arm == "pretrained" else v
                        for ref in ("raw", "tokenized"):
                            rows.append(dict(target="top", arm=arm, reference=ref,
                                             observable=obs, metric=metric, D=d, seed=seed,
                                             value=v, error=0.0))
    cfg = ScanConfig(sizes=sizes, seeds=3)
    os.makedirs(folder / "reference", exist_ok=True)
    np.savez(folder / "reference" / "top.npz", raw_pt=rng.normal(500, 50, 2000),
             tokenized_pt=rng.normal(505, 52, 2000), raw_mass=rng.gamma(5, 20, 2000),
             tokenized_mass=rng.gamma(5, 21, 2000), raw_tau21=rng.uniform(0, 1, 2000),
             tokenized_tau21=rng.uniform(0, 1, 2000))
    cells = folder / "cells" / "top"
    os.makedirs(cells, exist_ok=True)
    for arm in ("pretrained", "scratch"):
        for d in sizes:
            np.savez(cells / f"D{d}_seed0_{arm}.npz", pt=rng.normal(500, 60, 500),
                     mass=rng.gamma(5, 22, 500), tau21=rng.uniform(0, 1, 500))
    return write_results(str(folder), rows, cfg, {"top": "top.root"}, str(folder))


def test_verdict_says_helps_only_when_numbers_say_so(tmp_path):
    from jetfm.evaluate.scan import load_results

    for gain, word in ((2.0, "helps at small D"), (1.0, "does not help")):
        folder = tmp_path / f"g{gain}"
        res = load_results(_fake_scan(folder, gain))
        v = verdict(res["summary"], ["top"])
        text = " ".join(verdict_text(v))
        assert word in text
        if gain == 2.0:
            assert v["top"]["smallest"]["better"] == 6
            assert v["top"]["smallest"]["median_ratio"] == pytest.approx(2.0, rel=0.05)
            assert v["top"]["largest"]["better"] == 0


def test_report_md_and_selfcontained_html(tmp_path):
    folder = tmp_path / "scan"
    _fake_scan(folder, 2.0)
    fig2 = plots.figure2([str(AOJ_MINI)], str(tmp_path / "fig2.png"))
    md, html = build_report(str(folder), str(tmp_path / "rep"), figures={"figure2": fig2},
                            data=[{"role": "target top", "file": "top.root", "n_jets": 5,
                                   "description": "x"}],
                            models={"m": {"parameters": "tokenizer 10"}})
    text = open(md).read()
    for part in ("## Verdict", "pre-training helps at small D", "Power-law exponents",
                 "Tokenizer floor", "| pt | pretrained |", "Figure 2"):
        assert part in text
    # gamma of the scratch arm is the generated 0.3
    assert "0.3 ±" in text
    page = open(html).read()
    assert page.count("data:image/png;base64,") == 4  # figure 2 + histograms + KL + W1
    assert "<img src='data:" in page and "src='/" not in page and "src=\"/" not in page
    assert os.path.exists(tmp_path / "rep" / "figures" / "top_w1_vs_D.png")
    # the reader sees the answer, then the figures; the tables come last, collapsed
    assert_reads_verdict_figures_tables(text, page, n_figures=4)
    assert text.index("pre-training helps at small D") < text.index("Figure 2")


def _fake_classify_scan(folder) -> str:
    """A classification scan folder: the pre-trained tagger ahead at the smallest D, the
    baseline ahead at the largest."""
    from jetfm.evaluate.classify_scan import ClassifyScanConfig, write_classify_results

    rng = np.random.default_rng(1)
    auc = {"pretrained": (0.90, 0.93), "scratch": (0.85, 0.92), "hlf_bdt": (0.95, 0.97)}
    rows = []
    for arm, (lo, hi) in auc.items():
        for d, a in ((100, lo), (1000, hi)):
            for seed in range(2):
                v = a + 0.002 * rng.normal()
                vals = {"auc": v, "rejection_30": 1 / (1 - v) ** 2, "rejection_50": 1 / (1 - v),
                        "accuracy": v - 0.05, "rejection_30_bound": 0.0,
                        "rejection_50_bound": 0.0, "auc_deficit": 1 - v,
                        "inv_rejection_30": (1 - v) ** 2}
                rows += [dict(target="top_vs_qcd", arm=arm, reference="test",
                              observable="tagger", metric=m, D=d, seed=seed, value=x, error=0.0)
                         for m, x in vals.items()]
    os.makedirs(folder, exist_ok=True)
    cfg = ClassifyScanConfig(sizes=[100, 1000], seeds=2, n_test=500)
    return write_classify_results(str(folder), rows, cfg, {"qcd": "q.root", "top": "t.root"},
                                  "model", "top_vs_qcd")


def test_classification_section_joins_each_part_of_the_scan_report(tmp_path):
    from jetfm.evaluate.classify_scan import classify_report

    _fake_scan(tmp_path / "scan", 2.0)
    _fake_classify_scan(tmp_path / "cls")
    section = classify_report(str(tmp_path / "cls"), str(tmp_path / "rep" / "figures"))
    # the scan's own report
    own_md = (tmp_path / "cls" / "report.md").read_text()
    assert_reads_verdict_figures_tables(own_md, (tmp_path / "cls" / "report.html").read_text(),
                                        n_figures=1)
    assert "**Classification (top_vs_qcd):** at the smallest D = 100 the fine-tuned " \
           "pre-trained tagger beats the one trained from scratch" in own_md
    # as a section of the D-scan report
    md, html = build_report(str(tmp_path / "scan"), str(tmp_path / "rep"), sections=[section])
    text, page = open(md).read(), open(html).read()
    assert_reads_verdict_figures_tables(text, page, n_figures=4)
    verdict = text[text.index("## Verdict"):text.index("## Figures")]
    assert "pre-training helps at small D" in verdict
    assert "**Classification (top_vs_qcd):**" in verdict and "At the largest D = 1000" in verdict
    assert text.index("classify_vs_D.png") > text.index("top_w1_vs_D.png")
    assert text.index("## Target: top") < text.index("## Classification: top_vs_qcd")
    assert "| 1000 | BDT on high-level observables | 0.97" in text


def test_fit_cli(tmp_path, capsys):
    folder = tmp_path / "scan"
    _fake_scan(folder, 1.5)
    assert main(["fit", str(folder), "-o", str(tmp_path / "fits.json")]) == 0
    out = capsys.readouterr().out
    assert "scratch" in out and "0.300" in out
    fits = json.loads((tmp_path / "fits.json").read_text())
    assert {f["arm"] for f in fits} == {"pretrained", "scratch"}
