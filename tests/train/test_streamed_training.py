"""Streamed training (`--streaming`): the training commands read the real AOJ file in chunks
instead of loading it, hold out a fixed validation part that never enters training, tokenize
per batch for the backbone (or read token files), resume mid-epoch with the same batches, and
keep memory bounded by the shuffle buffer."""
import json
import tracemalloc

import numpy as np
import pytest
import torch

import jetfm.train.modules as modules
from jetfm.cli import main
from jetfm.errors import InputError
from jetfm.io.aoj import read_aoj, write_aoj
from jetfm.omnijet.model import load_pretrained
from jetfm.train import api
from jetfm.train.data import (
    in_memory_bytes,
    load_features,
    memory_budget,
    streaming_loaders,
    use_streaming,
)
from jetfm.train.streaming import holdout_ranges
from tests.conftest import AOJ_MINI, JETCLASS2_ROOT


class _Crash(Exception):
    pass


class Recorder:
    """Lightning callback (made lazily): global jet indices of every training batch, per
    optimiser step, and of every validation batch; optionally crashes as step ``crash_at``
    is to start (a killed run: no checkpoint written)."""

    def __new__(cls, crash_at: int = -1):
        import lightning.pytorch as L

        class _Rec(L.Callback):
            def __init__(self):
                self.train, self.val, self.epochs = [], [], []

            def on_train_batch_start(self, trainer, module, batch, batch_idx):
                if trainer.global_step == crash_at:
                    raise _Crash()
                self.train.append((trainer.global_step, batch["index"].tolist()))
                self.epochs.append(trainer.current_epoch)

            def on_validation_batch_start(self, trainer, module, batch, batch_idx,
                                          dataloader_idx=0):
                self.val.append(batch["index"].tolist())

        return _Rec()


def _recording(monkeypatch, rec):
    fit = modules.fit
    monkeypatch.setattr(modules, "fit",
                        lambda *a, callbacks=None, **kw: fit(*a, callbacks=[*(callbacks or []),
                                                                            rec], **kw))


def _sets(ranges) -> set[int]:
    return {i for a, b in ranges for i in range(a, b)}


def test_holdout_ranges_fixed_disjoint_and_complete():
    for n, frac in ((100, 0.1), (1001, 0.2), (5_000_000, 0.01), (2, 0.5)):
        tr, va = holdout_ranges(n, frac, seed=7)
        t, v = _sets(tr) if n < 10 ** 6 else None, _sets(va) if n < 10 ** 6 else None
        n_val = sum(b - a for a, b in va)
        assert sum(b - a for a, b in tr) + n_val == n
        if t is not None:
            assert not t & v and t | v == set(range(n))
        assert 0 < n_val < n and abs(n_val - frac * n) <= max(1024, 0.02 * n)
        assert holdout_ranges(n, frac, seed=7) == (tr, va)  # the same jets every time
    # validation takes whole units of consecutive jets (1024 at most)
    tr, va = holdout_ranges(5_000_000, 0.01, seed=7)
    assert all((b - a) % 1024 == 0 for a, b in va)


def test_streamed_pretraining_holds_out_validation(tokenizer, tmp_path, monkeypatch, capsys):
    """Pre-training streamed from the real file: every training jet once per epoch, the
    validation jets (checked by global index) never in a training batch; provenance says so."""
    rec = Recorder()
    _recording(monkeypatch, rec)
    d = api.pretrain([str(AOJ_MINI)], str(tmp_path / "run"), tokenizer, preset="quick", seed=3,
                     streaming=True, progress=False,
                     overrides=["pretraining.batch_size=16", "pretraining.max_epochs=2"])
    prov = load_pretrained(d).provenance["pretrain"]
    val_ranges = prov["validation"]["ranges"]
    val = _sets(val_ranges)
    assert prov["n_val"] == len(val) == 10 and prov["n_train"] == 90
    assert prov["data"]["streaming"]["buffer_size"] == 16384 and prov["data"]["n_jets"] == 100
    assert prov["data"]["files"][0]["path"] == str(AOJ_MINI)
    seen = {e: [i for (_, idx), ep in zip(rec.train, rec.epochs) if ep == e for i in idx]
            for e in (0, 1)}
    for idx in seen.values():
        assert sorted(idx) == sorted(set(range(100)) - val)  # each training jet exactly once
    assert seen[0] != seen[1]  # a new order every epoch
    assert {i for b in rec.val for i in b} == val
    assert prov["steps"] == 2 * 6 and prov["best_val_loss"] is not None
    assert main(["info", d]) == 0
    assert "90 train / 10 val jets from 2016H_job0_mini.h5 (streamed)" in capsys.readouterr().out
    # the same validation jets whatever the run's seed
    tr2, va2 = holdout_ranges(100, 0.1, prov["validation"]["split_seed"])
    assert [list(r) for r in va2] == val_ranges


def test_per_batch_tokenization_equals_pretokenized(tokenizer):
    """The codes the module computes per batch equal those of `jetfm tokenize` (encode_arrays +
    codes_to_sequences), so streamed and in-memory training see the same sequences."""
    from jetfm.io.tokens import codes_to_sequences
    from jetfm.omnijet.config import load_omnijet_config

    m = load_pretrained(tokenizer)
    cfg = load_omnijet_config("quick")
    feats, mask, _ = load_features([str(AOJ_MINI)], m.preprocessing, progress=False)
    want = codes_to_sequences(m.tokenizer.encode_arrays(feats, mask), mask, m.codebook_size)
    mod = modules.BackboneModule(cfg.backbone, cfg.pretraining, tokenizer=m.tokenizer)
    sel = np.arange(20, 52)
    got = mod.sequences({"x": torch.as_tensor(feats[sel]), "mask": torch.as_tensor(mask[sel])})
    w = want[sel]
    w = w[:, :int((w >= 0).sum(1).max())]
    assert np.array_equal(got.numpy(), w)
    assert not any(p.requires_grad for p in m.tokenizer.parameters())
    assert "_tokenizer" not in dict(mod.named_children())  # not trained, not in checkpoints
    assert not any(k.startswith("_tokenizer") for k in mod.state_dict())


def test_resume_after_a_kill_continues_with_the_same_batches(tokenizer, tmp_path, monkeypatch):
    over = ["pretraining.batch_size=8", "pretraining.max_epochs=2",
            "pretraining.ckpt_every_n_steps=3"]
    kw = {"preset": "quick", "seed": 5, "streaming": True, "progress": False,
          "overrides": over, "buffer_size": 32}
    ref = Recorder()
    _recording(monkeypatch, ref)
    api.pretrain([str(AOJ_MINI)], str(tmp_path / "straight"), tokenizer, **kw)
    monkeypatch.undo()
    n_steps = len(ref.train)  # 90 training jets: 12 batches per epoch
    assert n_steps == 24
    kill = 17  # mid-epoch 1: the newest checkpoint is the one after step 14 (15 steps done)
    first = Recorder(crash_at=kill)
    _recording(monkeypatch, first)
    with pytest.raises(_Crash):
        api.pretrain([str(AOJ_MINI)], str(tmp_path / "killed"), tokenizer, **kw)
    monkeypatch.undo()
    assert not (tmp_path / "killed" / "model" / "config.json").exists()
    again = Recorder()
    _recording(monkeypatch, again)
    d = api.pretrain([str(AOJ_MINI)], str(tmp_path / "killed"), tokenizer, **kw)
    assert again.train[0][0] == 15 and again.epochs[0] == 1
    assert again.train == ref.train[15:]  # the same batches, in the same order
    a = load_pretrained(str(tmp_path / "straight")).backbone.state_dict()
    b = load_pretrained(d).backbone.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def big_file(tmp_path_factory):
    """20 000 real jets (the 100 of the mini file, 200 times) in one AOJ file."""
    jets = read_aoj(AOJ_MINI)
    big = type(jets).concat([jets] * 200)
    return write_aoj(tmp_path_factory.mktemp("big") / "big.h5", big)


def test_memory_bounded_by_the_buffer(big_file):
    """Streaming an epoch of 20 000 jets (buffer 256, chunks 256) allocates a small multiple of
    buffer + chunk, far below what the in-memory path holds for the same jets."""
    from jetfm.physics.features import Preprocessing

    prep = Preprocessing(n_max=128)
    buf = chunk = 256
    tracemalloc.start()
    try:
        train, val, split, _ = streaming_loaders([str(big_file)], prep, 128, 0.1, seed=0,
                                                 buffer_size=buf, chunk_size=chunk)
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        n = sum(len(b["index"]) for b in train) + sum(len(b["index"]) for b in val)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert n == 20_000 and split["n_train"] == 18_000
    raw_per_jet = 150 * 11 * 4 + 150 * 4  # one AOJ row as read (float32) + its E column
    bound = 4 * (buf + chunk) * (raw_per_jet + in_memory_bytes(1, 128, "tokenizer"))
    full = in_memory_bytes(20_000, 128, "tokenizer")
    assert peak < bound and peak < full / 8, (peak, bound, full)  # measured: 4.4 MiB, 63 MiB


def test_automatic_choice_and_bad_inputs(tokenizer, tmp_path, capsys):
    n_max = 32
    assert not use_streaming([str(AOJ_MINI)], None, None, None, n_max, "backbone")
    tiny = in_memory_bytes(99, n_max, "backbone") / 2 ** 30  # 99 jets fit, 100 do not
    assert use_streaming([str(AOJ_MINI)], None, None, None, n_max, "backbone", tiny)
    assert not use_streaming([str(AOJ_MINI)], None, None, 99, n_max, "backbone", tiny)
    assert not use_streaming([str(AOJ_MINI)], None, False, None, n_max, "backbone", tiny)
    assert not use_streaming([str(JETCLASS2_ROOT)], None, None, None, n_max, "backbone", tiny)
    with pytest.raises(InputError, match="AOJ .h5 or jetfm token files"):
        use_streaming([str(JETCLASS2_ROOT)], None, True, None, n_max, "backbone")
    with pytest.raises(InputError, match="not jets in memory"):
        use_streaming([], read_aoj(AOJ_MINI), True, None, n_max, "backbone")
    assert memory_budget(2.0) == 2 * 2 ** 30 and memory_budget() > 0
    # the CLI streams on its own when the data exceed --memory-budget
    out = tmp_path / "auto"
    assert main(["pretrain", "--data", str(AOJ_MINI), "--tokenizer", tokenizer, "-o", str(out),
                 "--preset", "quick", "--memory-budget", str(tiny),
                 "--set", "pretraining.max_epochs=1"]) == 0
    prov = json.load(open(out / "model" / "config.json"))["provenance"]["pretrain"]
    assert "streaming" in prov["data"] and prov["n_train"] == 90
    capsys.readouterr()
    for bad, msg in ((["--memory-budget", "0"], "--memory-budget: must be a finite number > 0"),
                     (["--streaming", "--val-data", str(AOJ_MINI)], "also a training file"),
                     (["--streaming", "--buffer-size", "-1"], "--buffer-size: must be")):
        assert main(["pretrain", "--data", str(AOJ_MINI), "--tokenizer", tokenizer,
                     "-o", str(tmp_path / "bad"), "--preset", "quick", *bad]) == 2
        assert msg in capsys.readouterr().err
    assert not (tmp_path / "bad" / "model").exists()


def test_token_files_and_separate_validation_files(tokenizer, tmp_path, capsys, monkeypatch):
    """`jetfm tokenize` output as pre-training data (always streamed), validated on the token
    file of other jets (--val-data); a token file of another codebook is refused."""
    from jetfm.io.tokens import write_tokens

    jets = read_aoj(AOJ_MINI)
    write_aoj(tmp_path / "a.h5", jets[:80])
    write_aoj(tmp_path / "b.h5", jets[80:])
    for name in ("a", "b"):
        assert main(["tokenize", str(tmp_path / f"{name}.h5"),
                     "-o", str(tmp_path / f"{name}.tok.h5"), "--model", tokenizer]) == 0
    # tokenize reads in chunks: the same sequences as one chunk
    from jetfm.cli import models as cli_models
    from jetfm.io.tokens import read_tokens

    monkeypatch.setattr(cli_models, "TOKENIZE_CHUNK", 7)
    assert main(["tokenize", str(tmp_path / "a.h5"), "-o", str(tmp_path / "a7.tok.h5"),
                 "--model", tokenizer]) == 0
    assert np.array_equal(read_tokens(tmp_path / "a7.tok.h5")[0],
                          read_tokens(tmp_path / "a.tok.h5")[0])
    out = tmp_path / "run"
    assert main(["pretrain", "--data", str(tmp_path / "a.tok.h5"), "--val-data",
                 str(tmp_path / "b.tok.h5"), "--tokenizer", tokenizer, "-o", str(out),
                 "--preset", "quick", "--set", "pretraining.max_epochs=1"]) == 0
    prov = json.load(open(out / "model" / "config.json"))["provenance"]["pretrain"]
    assert prov["data"]["kind"] == "tokens" and prov["n_train"] == 80 and prov["n_val"] == 20
    assert prov["validation"]["files"][0]["path"].endswith("b.tok.h5")
    # --val-data also on the in-memory path
    assert main(["pretrain", "--data", str(tmp_path / "a.h5"), "--val-data",
                 str(tmp_path / "b.h5"), "--in-memory", "--tokenizer", tokenizer,
                 "-o", str(tmp_path / "mem"), "--preset", "quick",
                 "--set", "pretraining.max_epochs=1"]) == 0
    prov = json.load(open(tmp_path / "mem" / "model" / "config.json"))["provenance"]["pretrain"]
    assert prov["n_train"] == 80 and prov["n_val"] == 20 and "streaming" not in prov["data"]
    assert prov["data"]["validation_files"][0]["path"].endswith("b.h5")
    write_tokens(tmp_path / "other.h5", np.array([[0, 5, 9, -1]]), codebook_size=7)
    capsys.readouterr()
    assert main(["pretrain", "--data", str(tmp_path / "other.h5"), "--tokenizer", tokenizer,
                 "-o", str(tmp_path / "r2"), "--preset", "quick"]) == 2
    assert "tokenizer with 7 codes, the model's tokenizer has 32" in capsys.readouterr().err
    assert main(["tokenizer", "train", "--data", str(tmp_path / "a.tok.h5"),
                 "-o", str(tmp_path / "r3"), "--preset", "quick"]) == 2
    assert "not on token files" in capsys.readouterr().err


def test_streamed_tokenizer_training_on_the_real_file(tmp_path):
    d = api.train_tokenizer([str(AOJ_MINI)], str(tmp_path / "tok"), preset="quick", seed=2,
                            streaming=True, progress=False)
    prov = load_pretrained(d).provenance["tokenizer"]
    assert prov["n_train"] == 90 and prov["n_val"] == 10
    assert prov["data"]["kind"] == "aoj" and np.isfinite(prov["best_val_loss"])
