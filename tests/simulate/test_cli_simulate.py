"""`jetfm simulate` and `jetfm plot-compare` as a user meets them, bad input included."""
import json
import os

import pytest

from jetfm.cli import main
from tests.conftest import AOJ_MINI


def _fails_cleanly(args, capsys, folder):
    try:
        rc = main(args)
    except SystemExit as e:  # argparse's own errors
        rc = e.code
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert os.listdir(folder) == [], os.listdir(folder)
    return err


@pytest.mark.parametrize("args, message", [
    (["simulate", "jetclass-like", "--process", "higgs", "--jets", "5", "--seed", "1"],
     "unknown process"),
    (["simulate", "aoj-like", "--jets", "0", "--seed", "1"], "--jets: must be an integer from 1"),
    (["simulate", "aoj-like", "--jets", "-3", "--seed", "1"], "--jets: must be an integer from 1"),
    (["simulate", "aoj-like", "--jets", "5", "--seed", "1.5"], "--seed: must be an integer"),
    (["simulate", "jetclass-like", "--process", "top", "--jets", "5", "--seed", "x"],
     "--seed: must be an integer"),
    (["simulate", "aoj-like", "--jets", "five", "--seed", "1"], "--jets: must be an integer"),
    (["simulate", "aoj-like", "--jets", "5", "--seed", "1", "--workers", "0"], "workers"),
    (["simulate", "aoj-like", "--jets", "5", "--seed", "1", "--pileup", "-1"], "--pileup: must be"),
    (["simulate", "aoj-like", "--jets", "5", "--seed", "1", "--chunk-jets", "0"],
     "--chunk-jets: must be"),
])
def test_bad_arguments(args, message, tmp_path, capsys):
    ext = ".root" if "jetclass-like" in args else ".h5"
    err = _fails_cleanly(args + ["-o", str(tmp_path / f"out{ext}")], capsys, tmp_path)
    assert message in err


def test_unwritable_or_wrong_output(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    sub = tmp_path / "sub"
    sub.mkdir()
    err = _fails_cleanly(["simulate", "aoj-like", "--jets", "5", "--seed", "1", "-o",
                          str(blocker / "out.h5")], capsys, sub)
    assert "not writable" in err
    err = _fails_cleanly(["simulate", "aoj-like", "--jets", "5", "--seed", "1", "-o",
                          str(sub / "out.root")], capsys, sub)
    assert "AOJ HDF5" in err
    os.chmod(sub, 0o500)
    try:
        if os.access(sub, os.W_OK):
            pytest.skip("running as root: permissions are not enforced")
        err = _fails_cleanly(["simulate", "jetclass-like", "--process", "qcd", "--jets", "5",
                              "--seed", "1", "-o", str(sub / "out.root")], capsys, sub)
        assert "not writable" in err
    finally:
        os.chmod(sub, 0o700)


def test_simulate_and_plot_compare(tmp_path, capsys):
    out = tmp_path / "sim.root"
    assert main(["simulate", "jetclass-like", "--process", "qcd", "--jets", "30", "--seed", "2",
                 "-o", str(out), "--workers", "1", "--no-progress"]) == 0
    assert out.exists() and not (tmp_path / "sim.root.chunks").exists()
    capsys.readouterr()
    plots = tmp_path / "cmp"
    assert main(["plot-compare", str(AOJ_MINI), str(out), "-o", str(plots)]) == 0
    summary = json.loads((plots / "summary.json").read_text())
    assert summary["formats"] == ["aoj", "jetclass"] and summary["n_jets"] == [100, 30]
    for name in ("constituent_pt", "d0", "dz_significance", "jet_mass", "tau32", "species",
                 "figure1"):
        assert (plots / f"{name}.png").stat().st_size > 10_000
    q = summary["quantities"]
    assert q["jet_mass"]["entries"] == [100, 30] and q["constituent_pt"]["w1"] > 0
    sp = summary["species_mean_per_jet"]
    assert sp[os.path.basename(AOJ_MINI)]["photon"] == pytest.approx(14.83, abs=0.01)
