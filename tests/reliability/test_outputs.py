"""Single-file outputs: atomic, locked against a second writer, never an input of the command."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile

import h5py
import numpy as np
import pytest

from jetfm.cli import main
from jetfm.errors import InputError
from jetfm.io.output import (
    OutputLock,
    atomic_output,
    refuse_overwrite,
    save_npz_atomic,
    write_text_atomic,
)
from tests.conftest import AOJ_MINI


def _digest(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def _error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("jetfm: error: "), err
    return err[0]


def test_atomic_output_renames_on_success_and_removes_on_failure(tmp_path):
    out = tmp_path / "sub" / "a.txt"
    with atomic_output(out) as tmp:
        assert tmp == str(out) + ".partial" and os.path.exists(str(out) + ".lock")
        open(tmp, "w").write("first")
        assert not out.exists()
    assert out.read_text() == "first" and os.listdir(out.parent) == ["a.txt"]
    with pytest.raises(RuntimeError):
        with atomic_output(out, suffix=".png") as tmp:
            assert tmp.endswith(".partial.png")
            open(tmp, "w").write("half")
            raise RuntimeError("crash")
    # the old file is untouched; no working or lock file is left
    assert out.read_text() == "first" and os.listdir(out.parent) == ["a.txt"]


def test_folder_output_is_published_whole_or_removed(tmp_path):
    out = tmp_path / "export"
    out.mkdir()  # an empty folder is replaced
    with atomic_output(out, tmp=str(tmp_path / ".export.partial"), folder=True) as tmp:
        os.makedirs(os.path.join(tmp, "a"))
        open(os.path.join(tmp, "a", "f.txt"), "w").write("x")
        assert not (out / "a").exists()
    assert (out / "a" / "f.txt").read_text() == "x"
    with pytest.raises(RuntimeError):
        with atomic_output(tmp_path / "other", folder=True) as tmp:
            os.makedirs(os.path.join(tmp, "b"))
            raise RuntimeError("crash")
    assert sorted(os.listdir(tmp_path)) == ["export"]
    # a folder where a file writer expected its working file is never removed
    (tmp_path / "f.txt.partial").mkdir()
    with pytest.raises(IsADirectoryError):
        write_text_atomic(tmp_path / "f.txt", "x")
    assert (tmp_path / "f.txt.partial").is_dir()


def test_text_and_npz_writers(tmp_path):
    assert write_text_atomic(tmp_path / "m.json", "{}", fsync=True) == str(tmp_path / "m.json")
    arrays = {"a": np.arange(5.0), "b": np.array("meta")}
    for compressed in (True, False):
        path = save_npz_atomic(tmp_path / f"z{compressed}.npz", arrays, compressed=compressed)
        with np.load(path) as z:
            np.testing.assert_array_equal(z["a"], arrays["a"])
            assert str(z["b"]) == "meta"
        with zipfile.ZipFile(path) as zf:
            kinds = {i.compress_type for i in zf.infolist()}
        assert kinds == ({zipfile.ZIP_DEFLATED} if compressed else {zipfile.ZIP_STORED})
    assert sorted(os.listdir(tmp_path)) == ["m.json", "zFalse.npz", "zTrue.npz"]


_HOLDER = textwrap.dedent("""
    import sys
    from jetfm.io.output import atomic_output
    with atomic_output(sys.argv[1]) as tmp:
        open(tmp, "w").write("from the first writer")
        print("ready", flush=True)
        sys.stdin.readline()
""")


def test_second_writer_process_is_refused_and_first_file_intact(tmp_path):
    out = tmp_path / "out.txt"
    first = subprocess.Popen([sys.executable, "-c", _HOLDER, str(out)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert first.stdout.readline().strip() == "ready"
        with pytest.raises(InputError, match=rf"another jetfm process \(pid {first.pid}: "
                                             rf"-c {out}\)"):
            write_text_atomic(out, "from the second writer")
        assert open(str(out) + ".partial").read() == "from the first writer"
    finally:
        first.communicate("go\n", timeout=60)
    assert first.returncode == 0 and out.read_text() == "from the first writer"
    assert sorted(os.listdir(tmp_path)) == ["out.txt"]


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    out = tmp_path / "x.json"
    lock = tmp_path / "x.json.lock"
    lock.write_text(json.dumps({"pid": dead.pid, "host": os.uname().nodename}))
    write_text_atomic(out, "{}")
    assert out.read_text() == "{}" and not lock.exists()


def test_simulate_refuses_while_another_writes_and_never_touches_its_partial(tmp_path, capsys):
    """The failure of two `simulate` runs on one output: the second must not delete or rename
    the first one's working file."""
    out = tmp_path / "OUT.h5"
    partial = tmp_path / "OUT.h5.partial"
    with h5py.File(partial, "w") as f:  # the running writer's incomplete file
        f.create_dataset("PFCands", data=np.zeros((3, 2, 2), np.float32))
        f.attrs["resume_key"] = "another sample"
    before = _digest(partial)
    with OutputLock(str(out) + ".lock", str(out)):
        rc = main(["simulate", "aoj-like", "--jets", "40", "--seed", "1", "-o", str(out),
                   "--workers", "1", "--chunk-jets", "20", "--no-progress"])
        assert rc == 2
        assert f"another jetfm process (pid {os.getpid()}: " in _error(capsys)
    assert _digest(partial) == before and not out.exists()


@pytest.fixture()
def model_dir(tmp_path):
    """A quick-preset model folder (an untrained tokenizer: the commands stop before using it)."""
    from jetfm.omnijet.config import load_omnijet_config
    from jetfm.omnijet.model import OmniJetModel
    from jetfm.omnijet.tokenizer import VQVAETokenizer

    cfg = load_omnijet_config("quick")
    tok = VQVAETokenizer(cfg.tokenizer, cfg.preprocessing.build()).eval()
    return OmniJetModel(cfg, tokenizer=tok).save_pretrained(str(tmp_path / "run" / "model"))


def test_commands_refuse_to_overwrite_their_input(tmp_path, model_dir, capsys):
    aoj = tmp_path / "a.h5"
    shutil.copy(AOJ_MINI, aoj)
    events = tmp_path / "events.npz"
    np.savez(events, x=np.zeros(3))
    weights = os.path.join(model_dir, "model.safetensors")
    results = tmp_path / "results.json"
    results.write_text("{}")
    files = [aoj, events, weights, results]
    before = {f: _digest(f) for f in files}
    cases = [
        (["observables", str(aoj), "-o", str(aoj)], "is the input file"),
        (["tokenize", str(aoj), "-o", str(aoj), "--model", model_dir], "is the input file"),
        (["tokenize", str(aoj), "-o", os.path.join(model_dir, "tokens.h5"), "--model",
          model_dir], "inside the input model folder"),
        (["images", str(events), "-o", str(events)], "is the input file"),
        (["sample", "--model", model_dir, "-n", "5", "-o", weights],
         "inside the input model folder"),
        (["fit", str(results), "-o", str(results)], "is the input file"),
        (["tokenizer", "report", "--model", model_dir, "--data", str(aoj), "-o", model_dir],
         "is the input model folder"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        assert message in _error(capsys), argv
    assert {f: _digest(f) for f in files} == before
    assert not list(tmp_path.rglob("*.partial")) and not list(tmp_path.rglob("*.lock"))
    assert not os.path.exists(os.path.join(model_dir, "tokens.h5"))


def test_split_refuses_an_output_folder_holding_its_inputs(tmp_path, capsys):
    folder = tmp_path / "S"
    folder.mkdir()
    inputs = [folder / "train_0000.h5", folder / "val_0000.h5"]
    for p in inputs:
        shutil.copy(AOJ_MINI, p)
    assert main(["split", str(folder), "--out", str(folder), "--no-progress"]) == 2
    assert "lies where this run writes (train_0000.h5)" in _error(capsys)
    assert all(_digest(p) == _digest(AOJ_MINI) for p in inputs)
    # a file named like no output may stay in the output folder
    other = tmp_path / "T"
    other.mkdir()
    shutil.copy(AOJ_MINI, other / "jets.h5")
    assert main(["split", str(other / "jets.h5"), "--out", str(other), "--no-progress"]) == 0
    assert _digest(other / "jets.h5") == _digest(AOJ_MINI)
    assert (other / "split.json").exists()


def test_build_aoj_refuses_an_input_named_like_its_outputs(tmp_path, capsys):
    out = tmp_path / "built"
    out.mkdir()
    victim = out / "aoj_00000_0000_00.h5"
    shutil.copy(AOJ_MINI, victim)
    assert main(["build-aoj", str(victim), "--out", str(out), "--scheduler", "inline",
                 "--no-progress"]) == 2
    assert "lies where this run writes" in _error(capsys)
    assert _digest(victim) == _digest(AOJ_MINI)


def test_refuse_overwrite_follows_links(tmp_path):
    real = tmp_path / "data.h5"
    real.write_text("x")
    link = tmp_path / "link.h5"
    link.symlink_to(real)
    with pytest.raises(InputError, match="is the input file"):
        refuse_overwrite(link, [real])
    refuse_overwrite(tmp_path / "other.h5", [real])  # an unrelated output is fine


def test_inspect_refuses_a_file_with_fewer_jets_than_its_n_jets_attribute(tmp_path, capsys):
    from jetfm.io.aoj import read_aoj, write_aoj

    jets = read_aoj(AOJ_MINI)
    bad = write_aoj(tmp_path / "short.h5", jets, attrs={"n_jets": 4 * len(jets)})
    assert main(["inspect", bad]) == 2
    assert f"holds {len(jets)} jets but its n_jets attribute says {4 * len(jets)}" in \
        _error(capsys)
    good = write_aoj(tmp_path / "full.h5", jets, attrs={"n_jets": len(jets)})
    assert main(["inspect", "--json", good]) == 0
