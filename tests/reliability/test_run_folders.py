"""Run folders: one run at a time, and a rerun only with the settings they were started with."""
from __future__ import annotations

import hashlib
import json
import os

import pytest

from jetfm.cli import main
from jetfm.errors import InputError
from jetfm.io.output import RUN_LOCK, RUN_RECORD, OutputLock, run_folder
from tests.conftest import AOJ_MINI, DARK_IMAGES, JETCLASS2_ROOT

QUICK_TOK = ["--preset", "quick", "--max-jets", "200", "--set", "tokenizer_training.max_steps=2"]


def _error(capsys) -> str:
    err = [line for line in capsys.readouterr().err.strip().splitlines()
           if line.startswith("jetfm")]
    assert len(err) == 1 and err[0].startswith("jetfm: error: "), err
    return err[0]


def _digest(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def _provenance(run) -> dict:
    with open(os.path.join(run, "model", "config.json")) as fh:
        return json.load(fh)["provenance"]


@pytest.fixture(scope="module")
def tok_run(tmp_path_factory):
    """A quick tokenizer run folder (two steps on real AOJ jets)."""
    run = str(tmp_path_factory.mktemp("runs") / "tok")
    assert main(["tokenizer", "train", "--data", str(AOJ_MINI), "-o", run, *QUICK_TOK]) == 0
    return run


def test_rerun_with_other_seed_or_data_is_refused_and_keeps_the_model(tok_run, capsys):
    weights = os.path.join(tok_run, "model", "model.safetensors")
    before = _digest(weights)
    capsys.readouterr()
    for extra, what in ((["--data", str(AOJ_MINI), "--seed", "5"], "(seed)"),
                        (["--data", str(JETCLASS2_ROOT)], "(data, data_contents)")):
        assert main(["tokenizer", "train", "-o", tok_run, *QUICK_TOK, *extra]) == 2
        err = _error(capsys)
        assert f"started with other settings {what}" in err and "--overwrite" in err
    assert _digest(weights) == before
    assert json.load(open(os.path.join(tok_run, RUN_RECORD)))["settings"]["seed"] == 0


def test_second_training_on_a_held_folder_stops_at_once(tok_run, capsys):
    before = open(os.path.join(tok_run, RUN_RECORD)).read()
    capsys.readouterr()
    with OutputLock(os.path.join(tok_run, RUN_LOCK), tok_run):
        assert main(["tokenizer", "train", "--data", str(AOJ_MINI), "-o", tok_run,
                     *QUICK_TOK]) == 2
        assert f"another jetfm process (pid {os.getpid()}: " in _error(capsys)
    assert open(os.path.join(tok_run, RUN_RECORD)).read() == before


def test_finetune_into_its_own_model_folder_is_refused(tok_run, capsys):
    weights = os.path.join(tok_run, "model", "model.safetensors")
    before = _digest(weights)
    capsys.readouterr()
    for src in (tok_run, os.path.join(tok_run, "model")):
        assert main(["finetune", "--from", src, "--data", str(AOJ_MINI), "-o", tok_run,
                     "--preset", "quick"]) == 2
        assert "input model folder" in _error(capsys)
    assert _digest(weights) == before


def test_same_settings_resume_and_overwrite_starts_afresh(tok_run, capsys):
    # same settings: resumes (the two steps are done: nothing more is trained)
    assert main(["tokenizer", "train", "--data", str(AOJ_MINI), "-o", tok_run,
                 *QUICK_TOK]) == 0
    prov = _provenance(tok_run)["tokenizer"]
    assert prov["seed"] == 0 and prov["steps"] == 2
    weights = os.path.join(tok_run, "model", "model.safetensors")
    seed0 = _digest(weights)
    # --overwrite: other settings start afresh (new weights, not the old checkpoint's)
    assert main(["tokenizer", "train", "--data", str(AOJ_MINI), "-o", tok_run, "--seed", "5",
                 "--overwrite", *QUICK_TOK]) == 0
    prov = _provenance(tok_run)["tokenizer"]
    assert prov["seed"] == 5 and prov["steps"] == 2 and _digest(weights) != seed0
    assert json.load(open(os.path.join(tok_run, RUN_RECORD)))["settings"]["seed"] == 5
    assert not os.path.exists(os.path.join(tok_run, RUN_LOCK))


def test_run_folder_settings_and_fresh_entries(tmp_path):
    run = str(tmp_path / "r")
    with run_folder(run, {"seed": 1, "data": ["a"]}, fresh=("ckpt",)):
        os.makedirs(os.path.join(run, "ckpt"))
    # nothing done under the first settings yet: other settings simply replace them
    with run_folder(run, {"seed": 2, "data": ["a"]}, started=lambda d: False):
        pass
    with pytest.raises(InputError, match=r"other settings \(data, seed\)"):
        with run_folder(run, {"seed": 3, "data": ["b"]}, fresh=("ckpt",)):
            pass
    assert os.path.isdir(os.path.join(run, "ckpt"))
    with run_folder(run, {"seed": 3, "data": ["b"]}, overwrite=True, fresh=("ckpt",)):
        assert not os.path.exists(os.path.join(run, "ckpt"))
    with run_folder(run, {"seed": 3, "data": ["b"]}):  # same settings: accepted
        assert os.path.exists(os.path.join(run, RUN_LOCK))
    assert not os.path.exists(os.path.join(run, RUN_LOCK))


def test_extra_ranks_of_a_distributed_run_do_not_lock(tmp_path, monkeypatch):
    run = str(tmp_path / "ddp")
    with run_folder(run, {"seed": 1}):
        monkeypatch.setenv("LOCAL_RANK", "1")
        with run_folder(run, {"seed": 1}):  # rank 1 re-runs the command: no second lock
            pass


def test_demo_scan_and_build_stop_on_a_held_folder(tmp_path, capsys):
    out = tmp_path / "held"
    out.mkdir()
    commands = [["demo", "--preset", "quick", "--out", str(out), "--no-progress"],
                ["scan", "--pretrained", str(tmp_path / "model"), "--target",
                 str(JETCLASS2_ROOT), "--out", str(out), "--no-progress"],
                ["build-aoj", str(AOJ_MINI), "--out", str(out), "--no-progress"],
                ["split", str(AOJ_MINI), "--out", str(out), "--no-progress"]]
    with OutputLock(str(out / RUN_LOCK), str(out)):
        for argv in commands:
            assert main(argv) == 2, argv
            assert f"another jetfm process (pid {os.getpid()}: " in _error(capsys), argv
    assert os.listdir(out) == []


def test_scan_output_in_its_model_folder_is_refused(tmp_path, capsys):
    model = tmp_path / "pre" / "model"
    model.mkdir(parents=True)
    assert main(["scan", "--pretrained", str(model), "--target", str(JETCLASS2_ROOT),
                 "--out", str(model), "--no-progress"]) == 2
    assert "is the input model folder" in _error(capsys)
    assert os.listdir(model) == []


def test_anomaly_rerun_with_other_settings_is_refused(tmp_path, capsys):
    import numpy as np

    from jetfm.io.images import read_image_file

    ev = read_image_file(DARK_IMAGES / "supervised" / "train" / "qcd_gensim_110_6.npz")
    qcd = tmp_path / "qcd_gensim_110_6.npz"
    with open(qcd, "wb") as fh:
        np.savez(fh, images=ev.images[:64], labels=ev.labels[:64].astype(np.float32),
                 masses=np.zeros(64, np.float32))
    base = ["anomaly", "train", "--train", str(qcd), "--config", "codae_quick", "--runs",
            str(tmp_path / "runs"), "--name", "a", "--no-progress", "--set",
            "data.input=occupancy", "train.max_steps=1", "train.batch_size=16", "models=[ae]"]
    assert main(base + ["--seed", "1"]) == 0
    capsys.readouterr()
    assert main(base + ["--seed", "2"]) == 2
    assert "other settings (seed)" in _error(capsys)
    assert main(base + ["--seed", "2", "--overwrite"]) == 0
    assert json.load(open(tmp_path / "runs" / "a" / "train_summary.json"))["seed"] == 2


def test_data_rewritten_under_the_same_name_is_other_data(tmp_path, capsys):
    """A run folder records a digest of its data files' contents: a file rewritten with other
    jets under the same name is refused like other data; a record of an earlier version (no
    digest) resumes and gains one."""
    import shutil

    from jetfm.io import read_jets
    from jetfm.io.aoj import write_aoj

    data = str(tmp_path / "aoj.h5")
    shutil.copyfile(AOJ_MINI, data)
    run = str(tmp_path / "tok")
    assert main(["tokenizer", "train", "--data", data, "-o", run, *QUICK_TOK]) == 0
    record = os.path.join(run, RUN_RECORD)
    first = json.load(open(record))["settings"]["data_contents"]
    weights = os.path.join(run, "model", "model.safetensors")
    before = _digest(weights)
    # an earlier version's record, without the digest: the same command resumes
    rec = json.load(open(record))
    del rec["settings"]["data_contents"]
    json.dump(rec, open(record, "w"))
    assert main(["tokenizer", "train", "--data", data, "-o", run, *QUICK_TOK]) == 0
    assert json.load(open(record))["settings"]["data_contents"] == first
    # the same name, other jets
    os.remove(data)
    write_aoj(data, read_jets(AOJ_MINI)[:150])
    capsys.readouterr()
    assert main(["tokenizer", "train", "--data", data, "-o", run, *QUICK_TOK]) == 2
    err = _error(capsys)
    assert "started with other settings (data_contents)" in err and "--overwrite" in err
    assert _digest(weights) == before
    assert json.load(open(record))["settings"]["data_contents"] == first


def test_contents_digest_reads_size_head_and_tail(tmp_path):
    from jetfm.io.output import contents_digest

    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    body = os.urandom(3 << 20)
    a.write_bytes(body)
    b.write_bytes(body)
    assert contents_digest([str(a)]) == contents_digest([str(b)])
    b.write_bytes(body[:-1] + bytes([body[-1] ^ 1]))  # the last byte
    assert contents_digest([str(a)]) != contents_digest([str(b)])
    b.write_bytes(body + b"x")  # one byte longer
    assert contents_digest([str(a)]) != contents_digest([str(b)])
    assert contents_digest([str(a), str(b)]) != contents_digest([str(b), str(a)])
    small = tmp_path / "s.bin"
    small.write_bytes(b"jets")
    assert contents_digest([str(small)]) != contents_digest([str(small)] * 2)


def test_missing_data_file_is_one_line_and_no_run_folder(tmp_path, capsys):
    run = tmp_path / "tok"
    assert main(["tokenizer", "train", "--data", str(tmp_path / "gone.h5"), "-o", str(run),
                 *QUICK_TOK]) == 2
    assert "gone.h5: no such file" in _error(capsys)
    assert not run.exists()
