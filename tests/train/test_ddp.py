"""Distributed training on CPU (gloo, 2 processes): DDP with batch B per process follows the loss
curve of one process with batch 2B; a run killed midway and resumed (on the same or another
number of processes) ends where an uninterrupted run ends; streamed data are split between the
processes, every training jet once per epoch, and a killed streamed run resumes with the same
batches on each process.

Run as a script, this file is the training job the tests launch in subprocesses (Lightning's DDP
launcher re-runs the script once per extra process)::

    python tests/train/test_ddp.py OUT TOKENIZER_DIR DATA --devices 2 --batch 8 --steps 10
    python tests/train/test_ddp.py OUT TOKENIZER_DIR DATA --devices 2 --streaming
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
N_JETS = 71  # the quick preset holds 7 out for validation: 64 train jets, 4 steps of 16
STEPS = 12  # three epochs: the last checkpoint is written at the end of the last one
KILL = 7  # killed as step 7 starts: the newest checkpoint is the one after step 6


def _full_jets(path):
    """Real jets that fill all 32 constituent slots of the quick preset: every jet then has
    the same number of tokens, so the mean loss over two halves of a batch equals the mean
    over the whole batch and DDP must match one process exactly (up to rounding)."""
    from jetfm.io.aoj import read_aoj
    from jetfm.physics.features import Preprocessing

    jets = read_aoj(path)
    full = Preprocessing(n_max=32).forward(jets)[1].all(1)
    return jets[np.flatnonzero(full)[:N_JETS]]


def _job(argv=None) -> None:
    """One pre-training run through jetfm.train.api.pretrain, appending ``[global_step, loss]``
    of every batch (loss averaged over the processes) to OUT/losses.json as it goes."""
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("tokenizer")
    ap.add_argument("data")
    ap.add_argument("--devices", type=int, default=1)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=STEPS)
    ap.add_argument("--accumulate", type=int, default=1)
    ap.add_argument("--ckpt-every", type=int, default=3)
    ap.add_argument("--kill-at", type=int, default=-1,
                    help="kill every process (SIGKILL) when this optimiser step is to start")
    ap.add_argument("--streaming", action="store_true",
                    help="stream all jets of DATA (recording each process's jet indices)")
    args = ap.parse_args(argv)

    import lightning.pytorch as L
    import torch

    import jetfm.train.modules as modules
    from jetfm.train.api import pretrain

    class Record(L.Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            if trainer.global_step == args.kill_at:
                os.kill(os.getpid(), 9)  # a crash: no clean-up, no checkpoint
            self.step = trainer.global_step  # the optimiser step this batch counts towards
            if args.streaming:
                path = os.path.join(args.out, f"indices{trainer.global_rank}.json")
                old = json.load(open(path)) if os.path.exists(path) else []
                rec = [self.step, trainer.current_epoch, batch["index"].tolist()]
                json.dump(old + [rec], open(path, "w"))

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            # outputs["loss"] is divided by the accumulation factor
            loss = float(trainer.strategy.reduce(outputs["loss"].detach(), reduce_op="mean"))
            loss *= args.accumulate
            if trainer.is_global_zero:
                path = os.path.join(args.out, "losses.json")
                old = json.load(open(path)) if os.path.exists(path) else []
                json.dump(old + [[self.step, loss]], open(path, "w"))

    fit = modules.fit

    def fit_recording(*a, callbacks=None, **kw):
        return fit(*a, callbacks=[*(callbacks or []), Record()], **kw)

    modules.fit = fit_recording
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same arithmetic in this process and in the subprocesses
    data = {"data": [args.data], "streaming": True, "buffer_size": 32} if args.streaming else \
        {"data": [], "jets": _full_jets(args.data)}
    try:
        pretrain(out=args.out, tokenizer_dir=args.tokenizer, preset="quick", seed=7,
                 progress=False, **data, overrides=[
                     f"pretraining.devices={args.devices}",
                     f"pretraining.strategy={'ddp' if args.devices > 1 else 'auto'}",
                     f"pretraining.batch_size={args.batch}", f"pretraining.max_steps={args.steps}",
                     "pretraining.max_epochs=-1",
                     f"pretraining.ckpt_every_n_steps={args.ckpt_every}",
                     f"pretraining.accumulate_grad_batches={args.accumulate}"])
    finally:
        modules.fit = fit
        torch.set_num_threads(threads)


def _run(out, tok, *args, check=True):
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, __file__, str(out), str(tok), str(AOJ), *map(str, args)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(proc.stderr[-3000:])
    return proc


def _weights(out):
    import torch

    from jetfm.train.modules import latest_checkpoint

    path = os.path.join(out, "checkpoints", "last.ckpt")
    if not os.path.exists(path):
        path = latest_checkpoint(os.path.join(out, "checkpoints"))
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    from tests.conftest import AOJ_MINI as AOJ  # noqa: F401  (the data path in _run)

    _job()
    sys.exit(0)

from tests.conftest import AOJ_MINI as AOJ  # noqa: E402


def _max_diff(a, b):
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


def _diff_quantile(a, b, q: float) -> float:
    """The q-quantile of |a - b| over every weight of the two state dicts."""
    d = np.concatenate([(a[k].float() - b[k].float()).abs().flatten().numpy() for k in a])
    return float(np.quantile(d, q))


def _losses(out) -> dict[int, float]:
    """Loss per optimiser step (micro-batches of one step averaged; a step run again after a
    resume replaces the first record)."""
    recs = json.load(open(os.path.join(out, "losses.json")))
    steps: dict[int, list[float]] = {}
    last = None
    for step, loss in recs:
        if step != last and step in steps:
            steps[step] = []  # the step was redone after the resume
        steps.setdefault(step, []).append(loss)
        last = step
    return {k: float(np.mean(v)) for k, v in steps.items()}


@pytest.fixture(scope="module")
def reference(tokenizer, tmp_path_factory):
    """One process, batch 16, 12 steps without interruption (run in this process)."""
    out = tmp_path_factory.mktemp("ref")
    _job([str(out), tokenizer, str(AOJ)])
    return out


def test_killed_run_resumes_to_the_same_weights(reference, tokenizer, tmp_path):
    proc = _run(tmp_path, tokenizer, "--kill-at", KILL, check=False)
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert not os.path.exists(tmp_path / "model" / "config.json")  # it did not finish
    # the same job again (here, in this process) resumes from the step checkpoint
    _job([str(tmp_path), tokenizer, str(AOJ)])
    ref, got = _losses(reference), _losses(tmp_path)
    assert sorted(got) == list(range(STEPS))
    np.testing.assert_allclose([got[k] for k in range(STEPS)], [ref[k] for k in range(STEPS)],
                               rtol=1e-6)
    assert _max_diff(_weights(reference), _weights(tmp_path)) == 0.0


def _lightning_output(proc, run_dir) -> str:
    """What Lightning said: the terminal output, and its messages that training keeps in the
    run folder's log (jetfm.train.quiet) instead of the terminal."""
    log = os.path.join(run_dir, "logs", "lightning.log")
    text = open(log).read() if os.path.exists(log) else ""
    return proc.stdout + proc.stderr + text


def test_two_processes_match_one_with_double_batch_and_resume_on_one(reference, tokenizer,
                                                                     tmp_path):
    """DDP (gloo, 2 processes, batch 8 each) follows the 1-process batch-16 loss curve; killed
    midway, it resumes on 1 process with batch 16 and ends at the same weights."""
    proc = _run(tmp_path, tokenizer, "--devices", 2, "--batch", 8, "--kill-at", KILL,
                check=False)
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert "distributed_backend=gloo" in _lightning_output(proc, tmp_path)
    ref, two = _losses(reference), _losses(tmp_path)
    assert sorted(two) == list(range(KILL))
    np.testing.assert_allclose([two[k] for k in range(KILL)], [ref[k] for k in range(KILL)],
                               rtol=1e-4)
    _job([str(tmp_path), tokenizer, str(AOJ), "--batch", "16"])  # resumed on 1 process
    got = _losses(tmp_path)
    np.testing.assert_allclose([got[k] for k in range(STEPS)], [ref[k] for k in range(STEPS)],
                               rtol=1e-4)
    # the gradients are summed in another order, and Adam scales a weight's step by its own
    # gradient's size: a weight whose gradient is float noise can move by a fraction of the
    # learning rate either way. So: the typical weight equal to float precision (a wrong batch
    # or a lost optimiser state would move nearly all by about the learning rate), the rare
    # ones within a few steps (on a 2-core AMD EPYC: median 1.3e-7, 99.9 % 6.9e-4, max 2.2e-3)
    a, b = _weights(reference), _weights(tmp_path)
    assert _diff_quantile(a, b, 0.5) < 1e-5
    assert _diff_quantile(a, b, 0.999) < 2e-3
    assert _max_diff(a, b) < 1e-2


def _indices(out, rank) -> dict[int, tuple[int, list[int]]]:
    """optimiser step -> (epoch, global jet indices of the batch) of one process (a step run
    again after a resume replaces the first record)."""
    return {step: (epoch, idx) for step, epoch, idx in
            json.load(open(os.path.join(out, f"indices{rank}.json")))}


@pytest.mark.slow
def test_streaming_on_two_processes_and_resume_after_a_kill(tokenizer, tmp_path):
    """Streamed pre-training on 2 gloo processes, killed at the start of epoch 1 and resumed on
    2 processes: in each epoch the processes share out the training jets (none twice, none
    lost), the held-out validation jets never appear, and the step redone after the resume has
    the same batch on each process. Full size (--run-slow): also an uninterrupted run, whose
    batches and final weights the resumed run reproduces exactly."""
    from jetfm.omnijet.model import load_pretrained
    from tests.conftest import full_size

    run = tmp_path / "run"
    proc = _run(run, tokenizer, "--devices", 2, "--batch", 8, "--streaming", "--kill-at", KILL,
                check=False)
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert "distributed_backend=gloo" in _lightning_output(proc, run)
    before = [_indices(run, r) for r in (0, 1)]
    _run(run, tokenizer, "--devices", 2, "--batch", 8, "--streaming")
    prov = load_pretrained(str(run)).provenance["pretrain"]
    val = {i for a, b in prov["validation"]["ranges"] for i in range(a, b)}
    assert prov["n_train"] == 90 and len(val) == 10 and prov["training"]["devices"] == 2
    got = [_indices(run, r) for r in (0, 1)]
    assert sorted(got[0]) == sorted(got[1]) == list(range(STEPS))  # same steps on both
    for r in (0, 1):  # the steps run before the kill and again after it: the same batches
        assert all(got[r][k] == before[r][k] for k in before[r])
    for epoch in (0, 1):  # 6 steps of 8 per process and epoch (the last one 5)
        seen = [[i for e, idx in g.values() if e == epoch for i in idx] for g in got]
        assert len(seen[0]) == len(seen[1]) == 45 and not set(seen[0]) & set(seen[1])
        assert set(seen[0]) | set(seen[1]) == set(range(100)) - val
    if full_size():
        ref = tmp_path / "ref"
        _run(ref, tokenizer, "--devices", 2, "--batch", 8, "--streaming")
        assert [_indices(ref, r) for r in (0, 1)] == got
        assert _max_diff(_weights(ref), _weights(run)) == 0.0


def test_gradient_accumulation_matches_the_larger_batch(reference, tokenizer, tmp_path):
    _job([str(tmp_path), tokenizer, str(AOJ), "--batch", "8", "--accumulate", "2"])
    ref, got = _losses(reference), _losses(tmp_path)
    np.testing.assert_allclose([got[k] for k in range(STEPS)], [ref[k] for k in range(STEPS)],
                               rtol=1e-4)
    assert _max_diff(_weights(reference), _weights(tmp_path)) < 2e-3


def test_quantiser_stays_fp32_under_bf16_autocast(monkeypatch):
    import torch

    import jetfm.omnijet.quantizer as quantizer
    from jetfm.omnijet.config import load_omnijet_config
    from jetfm.omnijet.tokenizer import TokenizerConfig, VQVAETokenizer

    seen = []
    orig = quantizer.nearest_code
    monkeypatch.setattr(quantizer, "nearest_code",
                        lambda z, cb, *a: seen.append((z.dtype, cb.dtype)) or orig(z, cb, *a))
    cfg: TokenizerConfig = load_omnijet_config("quick").tokenizer
    torch.manual_seed(0)
    tok = VQVAETokenizer(cfg)
    x = torch.randn(4, 10, 3)
    mask = torch.ones(4, 10, dtype=torch.bool)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        recon, codes, loss, parts = tok(x, mask)
        assert tok.enc_in(x).dtype == torch.bfloat16  # the networks do run in bf16
    assert seen and all(d == (torch.float32, torch.float32) for d in seen)
    assert parts["vq_loss"].dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    assert tok.quantizer.codebook.grad is not None


def test_precision_auto_and_cli_flags(tmp_path, capsys):
    import torch

    from jetfm.cli import main
    from jetfm.train.modules import resolve_precision

    want = "bf16-mixed" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() \
        else "32-true"
    assert resolve_precision("auto", "auto") == want
    assert resolve_precision("auto", "cpu") == "32-true"
    assert resolve_precision("bf16-mixed", "cpu") == "bf16-mixed"
    rc = main(["pretrain", "--data", str(AOJ), "--tokenizer", str(tmp_path), "-o",
               str(tmp_path / "run"), "--devices", "0"])
    assert rc == 2 and "--devices: must be an integer from 1" in capsys.readouterr().err


def test_scale_flags_become_overrides():
    import argparse

    from jetfm.cli.models import _scale_overrides, _training_args

    p = argparse.ArgumentParser()
    _training_args(p, "data")
    args = p.parse_args(["--data", "x.h5", "-o", "run", "--devices", "4", "--nodes", "2",
                         "--accumulate-grad-batches", "2", "--precision", "bf16-mixed",
                         "--set", "pretraining.lr=1e-4"])
    assert _scale_overrides(args, "pretraining") == [
        "pretraining.lr=1e-4", "pretraining.devices=4", "pretraining.num_nodes=2",
        "pretraining.strategy=ddp", "pretraining.accelerator=auto",
        "pretraining.accumulate_grad_batches=2", "pretraining.precision=bf16-mixed"]
    plain = p.parse_args(["--data", "x.h5", "-o", "run"])
    assert _scale_overrides(plain, "pretraining") == []


# ------------------------------------------------------------------------- cluster recipes
CLUSTER = ROOT / "examples" / "cluster"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _recipe_env(**kw) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SLURM_", "TORCHELASTIC_", "PL_", "LOCAL_RANK", "RANK",
                                "WORLD_SIZE", "MASTER_", "NODE_RANK"))}
    env.update(PYTHONPATH=str(ROOT / "src"), OMP_NUM_THREADS="1", MASTER_PORT=str(_free_port()),
               **{k: str(v) for k, v in kw.items()})
    return env


def test_torchrun_recipe_two_cpu_processes(tokenizer, tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run(
        [str(CLUSTER / "torchrun.sh"), "pretrain", "--data", str(AOJ), "--tokenizer", tokenizer,
         "-o", str(out), "--preset", "quick", "--max-jets", "40", "--seed", "3",
         "--set", "pretraining.max_steps=3", "--set", "pretraining.batch_size=8"],
        cwd=tmp_path, env=_recipe_env(NPROC=2, PYTHON=sys.executable), capture_output=True,
        text=True, timeout=600)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    said = _lightning_output(proc, out)
    assert "Starting with 2 processes" in said and "distributed_backend=gloo" in said
    assert (out / "model" / "config.json").exists() and list(out.glob("logs/**/metrics.csv"))
    from jetfm.omnijet.model import load_pretrained

    model = load_pretrained(str(out / "model"))
    assert model.provenance["pretrain"]["steps"] == 3
    assert model.provenance["pretrain"]["training"]["devices"] == 2


FAKE_SRUN = """#!/bin/bash
# srun on one machine: SLURM_NTASKS tasks of the command, with the variables srun sets
if [ -n "${SRUN_DRY:-}" ]; then printf '%s\\n' "$@" > "$SRUN_DRY"; exit 0; fi
pids=()
for ((i = 0; i < SLURM_NTASKS; i++)); do
    SLURM_PROCID=$i SLURM_LOCALID=$i SLURM_NODEID=0 "$@" & pids+=($!)
done
rc=0
for p in "${pids[@]}"; do wait "$p" || rc=$?; done
exit $rc
"""


@pytest.mark.slow
def test_slurm_recipe_with_a_local_srun(tokenizer, tmp_path):
    """The batch script under a stand-in for srun. Quick: the command it launches; full size
    (--run-slow): two CPU tasks really train, ranked by SLURM's variables."""
    from tests.conftest import full_size

    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "srun").write_text(FAKE_SRUN)
    (bindir / "srun").chmod(0o755)
    out = tmp_path / "run"
    nodes, tasks = (1, 2) if full_size() else (2, 4)
    env = _recipe_env(
        PATH=f"{bindir}:{os.environ['PATH']}", SLURM_SUBMIT_DIR=tmp_path,
        JETFM=ROOT / ".venv" / "bin" / "jetfm", DATA=AOJ, TOKENIZER=tokenizer, OUT=out,
        PRESET="quick", SLURM_JOB_NAME="jetfm-test", SLURM_JOB_ID=4321, SLURM_NTASKS=nodes * tasks,
        SLURM_NTASKS_PER_NODE=tasks, SLURM_NNODES=nodes, SLURM_JOB_NUM_NODES=nodes,
        SLURM_NODELIST="127.0.0.1",
        EXTRA="--max-jets 40 --set pretraining.max_steps=2 --set pretraining.batch_size=8")
    if not full_size():
        env["SRUN_DRY"] = str(tmp_path / "argv.txt")
    proc = subprocess.run(["bash", str(CLUSTER / "slurm.sbatch")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    if not full_size():
        argv = (tmp_path / "argv.txt").read_text().split("\n")
        joined = " ".join(argv)
        assert argv[1] == "pretrain" and f"--devices {tasks} --nodes {nodes}" in joined
        assert f"--data {AOJ} " in joined and "--precision auto" in joined
        return
    assert (out / "model" / "config.json").exists()
    assert "Starting with 2 processes" in proc.stdout + proc.stderr


def _quantiser_worker(rank: int, world: int, port: int, out: str) -> None:
    """One DDP process: a quantiser trained on this process's own data."""
    import torch
    import torch.distributed as dist

    from jetfm.omnijet.quantizer import QuantizerConfig, VectorQuantizer

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world)
    torch.manual_seed(0)
    q = VectorQuantizer(QuantizerConfig(codebook_size=16, dim=4, replace_freq=2,
                                        kmeans_init=True)).train()
    gen = torch.Generator().manual_seed(100 + rank)  # different data on each process
    replaced = 0
    for step in range(6):
        # after the k-means step the data move away, so codes go unused and get replaced
        z = torch.randn(64, 4, generator=gen) * (1 + rank) + (8.0 if step else 0.0)
        replaced += q(z)[3]["replaced"]
    torch.save({"codebook": q.codebook.detach(), "unused": q.steps_unused, "replaced": replaced},
               os.path.join(out, f"q{rank}.pt"))
    dist.destroy_process_group()


def test_quantiser_codebooks_stay_equal_across_processes(tmp_path):
    """k-means initialisation and dead-code replacement change the codebook without gradients:
    under DDP every process must still hold the same codebook."""
    import torch
    import torch.multiprocessing as mp

    mp.spawn(_quantiser_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    a, b = (torch.load(tmp_path / f"q{r}.pt", weights_only=True) for r in (0, 1))
    assert a["replaced"] > 0 and a["replaced"] == b["replaced"]
    assert torch.equal(a["codebook"], b["codebook"]) and torch.equal(a["unused"], b["unused"])
