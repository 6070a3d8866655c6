"""The CLI as a user meets it: `jetfm --version`, `inspect`, and bad input (one line, exit 2)."""
import json
import subprocess
import sys

import h5py
import numpy as np
import pytest

from jetfm.cli import main
from tests.conftest import AOJ_MINI, JETCLASS2_ROOT, PFNANO_INDEX


def run(*args):
    return subprocess.run([sys.executable, "-m", "jetfm", *map(str, args)],
                          capture_output=True, text=True)


def test_version():
    r = run("--version")
    assert r.returncode == 0 and r.stdout.startswith("jetfm ")


def test_inspect_json(capsys):
    assert main(["inspect", "--json", str(AOJ_MINI)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["format"] == "aoj" and info["n_jets"] == 100
    assert abs(info["constituents_mean"] - 45.9) < 0.05
    assert info["pdgId"]["22"] == 1483 and info["species"]["neutral_hadron"] == 340
    assert main(["inspect", "--json", str(JETCLASS2_ROOT)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["format"] == "jetclass" and info["n_jets"] == 100
    assert info["labels"]["QCD"] == 21


def test_inspect_text(capsys):
    assert main(["inspect", str(AOJ_MINI)]) == 0
    out = capsys.readouterr().out
    assert "jets             100" in out and "mean 45.9" in out


def _bad_files(tmp_path):
    files = {}
    files["missing"] = tmp_path / "missing.h5"
    (tmp_path / "text.h5").write_text("just text")
    files["other_format"] = tmp_path / "text.h5"
    (tmp_path / "trunc.h5").write_bytes(AOJ_MINI.read_bytes()[:50_000])
    files["truncated_h5"] = tmp_path / "trunc.h5"
    (tmp_path / "trunc.root").write_bytes(JETCLASS2_ROOT.read_bytes()[:100_000])
    files["truncated_root"] = tmp_path / "trunc.root"
    with h5py.File(AOJ_MINI) as f:
        data = {k: f[k][:] for k in f}
    with h5py.File(tmp_path / "nods.h5", "w") as f:
        for k, v in data.items():
            if k != "PFCands":
                f.create_dataset(k, data=v)
    files["missing_dataset"] = tmp_path / "nods.h5"
    with h5py.File(tmp_path / "shape.h5", "w") as f:
        for k, v in data.items():
            f.create_dataset(k, data=v[:50] if k == "jet_kinematics" else v)
    files["wrong_shape"] = tmp_path / "shape.h5"
    nan = data["PFCands"].copy()
    nan[0, 0, 0] = np.nan
    with h5py.File(tmp_path / "nan.h5", "w") as f:
        for k, v in data.items():
            f.create_dataset(k, data=nan if k == "PFCands" else v)
    files["nan"] = tmp_path / "nan.h5"
    files["missing_branch"] = PFNANO_INDEX
    return files


@pytest.mark.parametrize("case", ["missing", "other_format", "truncated_h5", "truncated_root",
                                  "missing_dataset", "wrong_shape", "nan", "missing_branch"])
def test_bad_input_one_line_exit_2(tmp_path, case):
    path = _bad_files(tmp_path)[case]
    out = tmp_path / "obs.parquet"
    for args in (["inspect", path], ["observables", path, "-o", out]):
        r = run(*args)
        assert r.returncode == 2, (case, args, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and str(path) in lines[0] and "Traceback" not in r.stderr
        assert not out.exists() and not (tmp_path / "obs.parquet.partial").exists()


def test_debug_shows_traceback(tmp_path):
    r = run("--debug", "inspect", tmp_path / "nope.h5")
    assert r.returncode != 0 and "Traceback" in r.stderr


def test_observables_cli(tmp_path):
    out = tmp_path / "obs.csv"
    assert main(["observables", str(AOJ_MINI), "-o", str(out)]) == 0
    import pandas as pd

    df = pd.read_csv(out)
    assert len(df) == 100 and {"pt", "mass", "n_constituents"} <= set(df.columns)
