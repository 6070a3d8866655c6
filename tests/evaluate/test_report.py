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


def test_fit_cli(tmp_path, capsys):
    folder = tmp_path / "scan"
    _fake_scan(folder, 1.5)
    assert main(["fit", str(folder), "-o", str(tmp_path / "fits.json")]) == 0
    out = capsys.readouterr().out
    assert "scratch" in out and "0.300" in out
    fits = json.loads((tmp_path / "fits.json").read_text())
    assert {f["arm"] for f in fits} == {"pretrained", "scratch"}
