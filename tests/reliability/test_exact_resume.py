"""Exact resume: every training (tokenizer, pre-training, fine-tuning; in memory and streamed),
killed after a mid-epoch checkpoint and run again with the same call, ends with the weights of
an uninterrupted run, every tensor equal, and with the same log rows. One test kills a real
`jetfm` process with SIGKILL."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import jetfm.train.modules as modules
from jetfm.omnijet.model import load_pretrained
from jetfm.train import api
from jetfm.train.resume import keep_rows_before, step_seed
from tests.conftest import AOJ_MINI, full_size
from tests.train.conftest import tokenizer  # noqa: F401  (fixture: an untrained quick tokenizer)

ROOT = Path(__file__).resolve().parents[2]


class _Killed(Exception):
    pass


def _killer(step: int | None = None, validating_epoch: int | None = None):
    """Lightning callback: dies inside optimiser step ``step``, after its forward and backward
    (the quantiser's statistics and the step's log row already moved on in memory), or as the
    validation of epoch ``validating_epoch`` starts."""
    import lightning.pytorch as L

    class Kill(L.Callback):
        def on_after_backward(self, trainer, module):
            if trainer.global_step == step:
                raise _Killed(f"killed in step {step}")

        def on_validation_start(self, trainer, module):
            if trainer.current_epoch == validating_epoch:
                raise _Killed(f"killed in the validation of epoch {validating_epoch}")
    return Kill()


@pytest.fixture(scope="module")
def pretrained(tokenizer, tmp_path_factory):  # noqa: F811
    """A model with the quick tokenizer and a fresh backbone, to fine-tune."""
    from jetfm.omnijet.model import OmniJetModel

    tok = load_pretrained(tokenizer)
    torch.manual_seed(2)
    out = tmp_path_factory.mktemp("pre") / "model"
    return OmniJetModel(tok.config, tokenizer=tok.tokenizer, with_backbone=True).save_pretrained(
        str(out))


def _train(stage: str, out: Path, models: dict, streaming: bool, monkeypatch,
           killer=None) -> str:
    """One quick training of 2 epochs x 6 steps (90 training jets, batch 16), a step checkpoint
    every 3 steps, dropout on, dead codes replaced after 2 unused steps (the random numbers of a
    step matter), the tokenizer's learning rate warming up and cooling down; ``killer``: a
    callback that ends it."""
    section = {"tokenizer": "tokenizer_training", "pretrain": "pretraining",
               "finetune": "finetuning"}[stage]
    over = [f"{section}.batch_size=16", f"{section}.max_epochs=2",
            f"{section}.ckpt_every_n_steps=3", "tokenizer.dropout=0.1",
            "tokenizer.quantizer.replace_freq=2", "backbone.dropout=0.1"]
    kw = {"preset": "quick", "seed": 4, "overrides": over, "progress": False,
          "streaming": streaming, "buffer_size": 32 if streaming else None}
    if killer is not None:
        fit = modules.fit
        monkeypatch.setattr(modules, "fit", lambda *a, callbacks=None, **k: fit(
            *a, callbacks=[*(callbacks or []), killer], **k))
    try:
        if stage == "tokenizer":
            return api.train_tokenizer([str(AOJ_MINI)], str(out), **kw)
        if stage == "pretrain":
            return api.pretrain([str(AOJ_MINI)], str(out), models["tokenizer"], **kw)
        return api.finetune(models["pretrained"], [str(AOJ_MINI)], str(out), **kw)
    finally:
        monkeypatch.undo()


def _checkpoint_weights(run: Path) -> dict:
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    return ckpt["state_dict"]


def _step_checkpoint(run: Path) -> tuple[int, int]:
    ckpt = torch.load(run / "checkpoints" / "step.ckpt", map_location="cpu", weights_only=True)
    return ckpt["global_step"], ckpt["epoch"]


def _assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    differ = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differ, f"{len(differ)} of {len(a)} tensors differ: {differ[:5]}"


def _metrics(run: Path) -> str:
    files = sorted(run.glob("logs/version_*/metrics.csv"))
    assert len(files) == 1, files  # a resumed run continues the killed one's log
    return files[0].read_text()


#: run by default; the others under ``pytest --run-slow`` (the same code paths)
QUICK = {("tokenizer", True), ("pretrain", True), ("finetune", False)}


@pytest.mark.slow
@pytest.mark.parametrize("streaming", [False, True], ids=["memory", "streamed"])
@pytest.mark.parametrize("stage", ["tokenizer", "pretrain", "finetune"])
def test_killed_twice_and_resumed_equals_uninterrupted(stage, streaming, tokenizer,  # noqa: F811
                                                       pretrained, tmp_path, monkeypatch):
    """Killed as the first validation starts (the step checkpoint before it is one of the
    middle of epoch 0), resumed, killed again inside a step of epoch 1 (after a mid-epoch
    checkpoint, with steps logged after it), resumed to the end: the exported model and the
    last checkpoint equal the uninterrupted run's, every tensor, and the log holds the same
    rows, byte for byte, each step once."""
    if (stage, streaming) not in QUICK and not full_size():
        pytest.skip("the same code path as a quick case; runs under --run-slow")
    models = {"tokenizer": tokenizer, "pretrained": pretrained}
    run = tmp_path / "killed"
    ref = _train(stage, tmp_path / "straight", models, streaming, monkeypatch)
    with pytest.raises(_Killed):
        _train(stage, run, models, streaming, monkeypatch, _killer(validating_epoch=0))
    assert _step_checkpoint(run) == (3, 0)  # none after the epoch's last batch: validation
    with pytest.raises(_Killed):
        _train(stage, run, models, streaming, monkeypatch, _killer(step=11))
    assert _step_checkpoint(run) == (9, 1)  # 3 of epoch 1's 6 batches done
    assert ",10," in _metrics(run)  # steps after the checkpoint were logged
    got = _train(stage, run, models, streaming, monkeypatch)
    a, b = load_pretrained(ref), load_pretrained(got)
    part = "tokenizer" if stage == "tokenizer" else "backbone"
    _assert_same_weights(getattr(a, part).state_dict(), getattr(b, part).state_dict())
    _assert_same_weights(_checkpoint_weights(tmp_path / "straight"), _checkpoint_weights(run))
    prov = b.provenance["tokenizer" if stage == "tokenizer" else stage]
    assert prov["resumed_from"].endswith("step.ckpt") and prov["steps"] == 12
    assert _metrics(run) == _metrics(tmp_path / "straight")


def test_step_seeds_and_log_rows(tmp_path):
    """A batch's seed depends on (seed, epoch, batch, rank) only; resuming drops the log rows of
    the checkpoint's step and later and keeps the others byte for byte."""
    s = step_seed(1, 0, 5)
    assert s == step_seed(1, 0, 5) and 0 <= s < 2 ** 63
    assert len({s, step_seed(2, 0, 5), step_seed(1, 1, 5), step_seed(1, 0, 6),
                step_seed(1, 0, 5, rank=1)}) == 5
    path = tmp_path / "metrics.csv"
    rows = ["epoch,step,train_loss,val_loss\r\n", "0,0,1.5,\r\n", "0,1,1.25,\r\n",
            "0,1,,2.0\r\n", "1,2,1.0,\r\n", "1,3,0.5,\r\n"]
    path.write_bytes("".join(rows).encode())
    assert keep_rows_before(str(path), 2) == ["epoch", "step", "train_loss", "val_loss"]
    assert path.read_bytes() == "".join(rows[:4]).encode()


#: the SIGKILL test's training: 3 epochs of 23 batches, a checkpoint after every step
KILL_RUN = ["tokenizer_training.batch_size=4", "tokenizer_training.max_epochs=3",
            "tokenizer_training.ckpt_every_n_steps=1", "tokenizer.dropout=0.1",
            "tokenizer.quantizer.replace_freq=2"]


def test_sigkilled_process_resumes_with_the_same_command(tmp_path):
    """`jetfm tokenizer train` killed with SIGKILL at a random point after its first step
    checkpoint, then run again with the same command, ends with the weights (every tensor
    equal) and the log rows of the same training run without interruption (one thread each:
    the same sums)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), OMP_NUM_THREADS="1")
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "jetfm", "tokenizer", "train", "--data", str(AOJ_MINI),
           "-o", str(out), "--preset", "quick", "--seed", "6",
           *[a for o in KILL_RUN for a in ("--set", o)]]

    def start(log: str) -> subprocess.Popen:
        with open(tmp_path / f"{log}.err", "w") as err:  # a file: a full pipe would block
            return subprocess.Popen(cmd, cwd=ROOT, env=env, stderr=err,
                                    stdout=subprocess.DEVNULL)

    killed = start("killed")
    ckpt = out / "checkpoints" / "step.ckpt"
    # killed once its step checkpoint reaches a random step among the first 15 of 69. Each new
    # checkpoint is read while the process is stopped (SIGSTOP), so reading it cannot race the
    # training: a poll that read the file while training went on let a fast machine finish the
    # whole run (model written) before the kill
    target = int(np.random.default_rng().integers(1, 16))
    deadline = time.monotonic() + 240
    seen = None
    while killed.poll() is None and time.monotonic() < deadline:
        try:
            stamp = ckpt.stat().st_mtime_ns
        except FileNotFoundError:
            stamp = None
        if stamp is None or stamp == seen:
            time.sleep(0.002)
            continue
        killed.send_signal(signal.SIGSTOP)
        try:
            step = _step_checkpoint(out)[0]
        except (OSError, RuntimeError, EOFError):  # stopped within its rename: the next one
            step = -1
        seen = stamp
        if step >= target:
            break
        killed.send_signal(signal.SIGCONT)
    assert killed.poll() is None, "the training ended before it could be killed"
    killed.send_signal(signal.SIGKILL)  # stopped: it has not moved since the checkpoint read
    assert killed.wait(30) == -signal.SIGKILL
    assert not (out / "model" / "config.json").exists()
    resume_step = _step_checkpoint(out)[0]
    again = start("again")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:  # meanwhile, the uninterrupted run (in this process)
        ref = api.train_tokenizer([str(AOJ_MINI)], str(tmp_path / "straight"), preset="quick",
                                  seed=6, overrides=KILL_RUN, progress=False)
    finally:
        torch.set_num_threads(threads)
    assert again.wait(300) == 0, (tmp_path / "again.err").read_text()[-2000:]
    a, b = load_pretrained(ref), load_pretrained(str(out))
    assert b.provenance["tokenizer"]["resumed_from"] is not None
    _assert_same_weights(a.tokenizer.state_dict(), b.tokenizer.state_dict())
    _assert_same_weights(_checkpoint_weights(tmp_path / "straight"), _checkpoint_weights(out))
    # the same rows, each step once; a kill between a step checkpoint and the write of that
    # step's row (Lightning logs it after the checkpoint) loses that one row
    got, want = _metrics(out).splitlines(), _metrics(tmp_path / "straight").splitlines()
    lost = [r for r in want if r not in got]
    assert [r for r in want if r not in lost] == got
    assert all(r.split(",")[1] == str(resume_step - 1) for r in lost), lost
