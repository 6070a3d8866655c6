"""Scan logic without training: subsets, the held-out split, observables, bad input."""
from __future__ import annotations

import json

import numpy as np
import pytest

from jetfm.cli import main
from jetfm.errors import InputError
from jetfm.evaluate import scan as S
from jetfm.io import read_jets
from tests.conftest import AOJ_MINI, JETCLASS2_ROOT


def test_split_and_subsets_are_seeded_disjoint_and_fresh_per_seed():
    ref, pool = S.split_target(1000, 200, seed=3)
    assert len(ref) == 200 and len(pool) == 800
    assert not set(ref) & set(pool)
    assert np.array_equal(ref, S.split_target(1000, 200, seed=3)[0])
    a = S.draw_subset(pool, 100, scan_seed=0, seed=0)
    assert len(np.unique(a)) == 100 and set(a) <= set(pool)
    assert np.array_equal(a, S.draw_subset(pool, 100, 0, 0))  # both arms get the same subset
    assert not np.array_equal(a, S.draw_subset(pool, 100, 0, 1))  # each seed its own
    assert not np.array_equal(a, S.draw_subset(pool, 100, 1, 0))


def test_parse_sizes():
    assert S.parse_sizes("100,1000,1e4") == [100, 1000, 10_000]
    with pytest.raises(InputError):
        S.parse_sizes("100,many")


def test_experiment_observables_on_real_jets():
    jets = read_jets(AOJ_MINI)
    obs = S.experiment_observables(jets)
    assert list(obs)[:5] == ["pt", "eta", "phi", "mass", "n_constituents"]
    assert all(v.shape == (100,) and np.isfinite(v).all() for v in obs.values())
    assert 250 < np.median(obs["pt"]) < 700  # constituent sums of AK8 jets with pT > 300 GeV
    from jetfm.physics.features import Preprocessing

    framed = S.frame_observables(jets, Preprocessing())
    # the generator's frame keeps the jet mass (massless constituents, rel. coordinates kept)
    # up to the |rel| < 0.8 cut; the axis sits near eta = phi = 0
    assert np.median(np.abs(framed["eta"])) < 0.05
    assert np.median(np.abs(framed["mass"] - obs["mass"]) / obs["mass"]) < 0.1


def test_scan_bad_input_exit_2(tmp_path, capsys):
    rc = main(["scan", "--pretrained", str(tmp_path / "nomodel"), "--target",
               str(tmp_path / "missing.root"), "--out", str(tmp_path / "s")])
    assert rc == 2
    assert "missing.root" in capsys.readouterr().err
    rc = main(["scan", "--pretrained", str(tmp_path), "--target", str(JETCLASS2_ROOT),
               "--sizes", "1,x", "--out", str(tmp_path / "s")])
    assert rc == 2


def test_report_and_fit_bad_input_exit_2(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "results.json" in capsys.readouterr().err
    bad = tmp_path / "results.json"
    bad.write_text("{not json")
    assert main(["fit", str(bad)]) == 2
    bad.write_text(json.dumps({"x": 1}))
    assert main(["fit", str(bad)]) == 2
    assert not (tmp_path / "report.md").exists()


def test_metrics_command_on_real_files(capsys):
    rc = main(["metrics", str(AOJ_MINI), str(JETCLASS2_ROOT), "--json", "--w1-samples", "5000"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"pt", "mass", "n_constituents"} <= set(out["observables"])
    assert out["jetnet"]["w1m"] > 0


def test_partial_scan_results_from_finished_cells(tmp_path):
    from jetfm.config import save_config

    save_config(S.ScanConfig(sizes=[10, 20], seeds=1), str(tmp_path))
    cells = tmp_path / "cells" / "top"
    cells.mkdir(parents=True)
    rows = [dict(target="top", arm="pretrained", reference="tokenized", observable="pt",
                 metric="w1", D=10, seed=0, value=3.0, error=0.1)]
    (cells / "D10_seed0_pretrained.json").write_text(json.dumps({"rows": rows}))
    res = S.load_results(str(tmp_path))
    assert res["partial"] and res["cells_done"] == 1 and res["cells_planned"] == 4
    assert res["summary"][0]["mean"] == 3.0
