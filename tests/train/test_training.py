"""Training end to end on real files (quick preset): API, CLI, resume after a crash, export."""
import json
import os

import h5py
import numpy as np
import pytest
import torch

from jetfm.cli import main
from jetfm.errors import InputError
from jetfm.io import read_jets
from jetfm.omnijet.config import load_omnijet_config
from jetfm.omnijet.model import OmniJetModel, load_pretrained, sample
from jetfm.train import api
from tests.conftest import AOJ_MINI, JETCLASS2_PARQUET, JETCLASS2_ROOT


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A quick tokenizer and pre-trained backbone, trained through the CLI."""
    root = tmp_path_factory.mktemp("omnijet")
    assert main(["tokenizer", "train", "--data", str(AOJ_MINI), "-o", str(root / "tok"),
                 "--preset", "quick", "--seed", "1"]) == 0
    assert main(["pretrain", "--data", str(AOJ_MINI), "--tokenizer", str(root / "tok"),
                 "-o", str(root / "pre"), "--preset", "quick", "--seed", "1"]) == 0
    return root


def test_save_load_round_trip_and_info(trained, tmp_path, capsys):
    m = load_pretrained(str(trained / "pre"))  # a run folder resolves to its model/
    assert m.backbone is not None and m.preprocessing.n_max == 32
    m.save_pretrained(str(tmp_path / "copy"))
    m2 = OmniJetModel.from_pretrained(str(tmp_path / "copy"))
    for a, b in ((m.tokenizer, m2.tokenizer), (m.backbone, m2.backbone)):
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    jets = read_jets(AOJ_MINI)
    c1, _ = m.tokenizer.encode(jets)
    c2, _ = m2.tokenizer.encode(jets)
    assert np.array_equal(c1, c2)
    assert main(["info", str(tmp_path / "copy")]) == 0
    text = capsys.readouterr().out
    assert "2016H_job0_mini.h5" in text and "pretrain" in text and "parameters" in text
    meta = json.load(open(tmp_path / "copy" / "config.json"))
    pretrain = meta["provenance"]["pretrain"]
    assert pretrain["n_train"] + pretrain["n_val"] == 100
    assert meta["config"]["preprocessing"]["pt_shift"] == 1.8


def test_bad_model_directories(trained, tmp_path, capsys):
    with pytest.raises(InputError, match="no such model directory"):
        load_pretrained(str(tmp_path / "nope"))
    d = tmp_path / "broken"
    d.mkdir()
    with pytest.raises(InputError, match="not a model directory"):
        load_pretrained(str(d))
    m = load_pretrained(str(trained / "tok"))
    m.save_pretrained(str(d))
    (d / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(InputError, match="corrupted weights"):
        load_pretrained(str(d))
    assert main(["sample", "--model", str(trained / "tok"), "-n", "5",
                 "-o", str(tmp_path / "x.h5")]) == 2  # a tokenizer only cannot sample
    assert "no backbone" in capsys.readouterr().err and not (tmp_path / "x.h5").exists()
    assert main(["sample", "--model", str(trained / "pre"), "-n", "0",
                 "-o", str(tmp_path / "x.h5")]) == 2
    assert main(["pretrain", "--data", str(tmp_path / "missing.h5"), "--tokenizer",
                 str(trained / "tok"), "-o", str(tmp_path / "r"), "--preset", "quick"]) == 2


def test_sample_writes_aoj_and_is_seeded(trained, tmp_path):
    out = tmp_path / "gen.h5"
    assert main(["sample", "--model", str(trained / "pre"), "-n", "40", "-o", str(out),
                 "--seed", "7", "--batch-size", "16"]) == 0
    jets = read_jets(out)
    assert len(jets) == 40 and jets.n_constituents.min() >= 3
    with h5py.File(out) as f:
        assert f["PFCands"].shape == (40, 150, 11) and f.attrs["seed"] == 7
    # px, py, pz, E of massless constituents around eta = phi = 0
    e = jets.c("E")[jets.mask]
    p = np.sqrt(sum(jets.c(k)[jets.mask] ** 2 for k in ("px", "py", "pz")))
    assert np.allclose(e, p, rtol=1e-4)
    a = sample(str(trained / "pre"), 30, seed=3, progress=False)
    b = sample(str(trained / "pre"), 30, seed=3, progress=False)
    c = sample(str(trained / "pre"), 30, seed=4, progress=False)
    assert np.array_equal(a.constituents, b.constituents)
    assert not np.array_equal(a.constituents, c.constituents)


def test_finetune_loads_every_weight_and_freeze(trained, tmp_path):
    base = load_pretrained(str(trained / "pre"))
    d = api.finetune(str(trained / "pre"), [str(JETCLASS2_ROOT)], str(tmp_path / "ft"),
                     preset="quick", seed=2, freeze_backbone=True, progress=False,
                     overrides=["finetuning.max_epochs=1"])
    ft = load_pretrained(d)
    sb, sf = base.backbone.state_dict(), ft.backbone.state_dict()
    for k in sb:
        same = torch.equal(sb[k], sf[k])
        assert same != k.startswith("head."), k  # only the head moved
    assert set(ft.provenance) == {"tokenizer", "pretrain", "finetune"}
    # unfrozen: every layer trains; the tokenizer never changes
    jets = read_jets(JETCLASS2_PARQUET)
    d2 = api.finetune(str(trained / "pre"), [], str(tmp_path / "ft2"), preset="quick", seed=2,
                      jets=jets, progress=False, overrides=["finetuning.max_epochs=1"])
    ft2 = load_pretrained(d2)
    sf2 = ft2.backbone.state_dict()
    assert all(not torch.equal(sb[k], sf2[k]) for k in sb if k.endswith("weight"))
    st, st2 = base.tokenizer.state_dict(), ft2.tokenizer.state_dict()
    assert all(torch.equal(st[k], st2[k]) for k in st)
    assert ft2.provenance["finetune"]["data"]["in_memory"]
    # the from-scratch arm: same tokenizer, fresh backbone
    d3 = api.train_from_scratch(str(trained / "pre"), [], str(tmp_path / "sc"), preset="quick",
                                seed=2, jets=jets, progress=False,
                                overrides=["finetuning.max_epochs=1"])
    sc = load_pretrained(d3)
    assert set(sc.provenance) == {"tokenizer", "scratch"}
    assert all(torch.equal(st[k], sc.tokenizer.state_dict()[k]) for k in st)


class _Crash(Exception):
    pass


def _crash_at_epoch(epoch):
    import lightning.pytorch as L

    class Crash(L.Callback):
        def on_train_epoch_start(self, trainer, module):
            if trainer.current_epoch == epoch:
                raise _Crash("simulated crash")
    return Crash()


def test_resume_after_crash_equals_uninterrupted_run(trained, tmp_path):
    from jetfm.io.tokens import codes_to_sequences
    from jetfm.train.data import SequenceDataset, make_loaders
    from jetfm.train.modules import BackboneModule, fit

    m = load_pretrained(str(trained / "tok"))
    codes, mask = m.tokenizer.encode(read_jets(AOJ_MINI))
    seqs = codes_to_sequences(codes, mask, m.codebook_size)
    cfg = load_omnijet_config("quick", ["pretraining.max_epochs=3"])

    def run(folder, crash=None):
        dl = make_loaders(SequenceDataset, (seqs,), 0.1, 16, seed=5)
        torch.manual_seed(5)
        mod = BackboneModule(cfg.backbone, cfg.pretraining)
        info = fit(mod, dl[0], dl[1], str(folder), 5, callbacks=[crash] if crash else None,
                   progress=False)
        return mod, info

    ref, ref_info = run(tmp_path / "straight")
    with pytest.raises(_Crash):
        run(tmp_path / "crashed", _crash_at_epoch(2))
    assert os.path.exists(tmp_path / "crashed" / "checkpoints" / "last.ckpt")
    res, info = run(tmp_path / "crashed")  # same folder: resumes from last.ckpt
    assert info["resumed_from"].endswith("last.ckpt")
    assert info["steps"] == ref_info["steps"] and info["epochs"] == ref_info["epochs"]
    for k, v in ref.state_dict().items():
        assert torch.equal(v, res.state_dict()[k]), k  # bit for bit (exact resume)


def test_a_finished_training_is_not_resumed(trained, tmp_path):
    """Run again with the same settings, a training that ended (here early-stopped, its
    last.ckpt epochs before the end) loads its best weights and trains nothing; other settings
    (more epochs) resume it."""
    from jetfm.io.tokens import codes_to_sequences
    from jetfm.train.data import SequenceDataset, make_loaders
    from jetfm.train.modules import FINISHED, BackboneModule, fit

    m = load_pretrained(str(trained / "tok"))
    codes, mask = m.tokenizer.encode(read_jets(AOJ_MINI))
    seqs = codes_to_sequences(codes, mask, m.codebook_size)

    def run(over, folder="run"):
        cfg = load_omnijet_config("quick", over)
        dl = make_loaders(SequenceDataset, (seqs,), 0.1, 16, seed=5)
        torch.manual_seed(5)
        mod = BackboneModule(cfg.backbone, cfg.pretraining)
        return mod, fit(mod, dl[0], dl[1], str(tmp_path / folder), 5, progress=False)

    # lr 0.3: the validation loss soon stops improving, so early stopping ends the run
    over = ["pretraining.max_epochs=12", "pretraining.patience=1", "pretraining.lr=0.3"]
    first, info = run(over)
    assert info["epochs"] < 12 and (tmp_path / "run" / "checkpoints" / FINISHED).is_file()
    rows = (tmp_path / "run" / "logs" / "version_0" / "metrics.csv").read_text()
    again, info2 = run(over)
    assert info2 == {**info, "resumed_from": info["checkpoint"]}
    assert (tmp_path / "run" / "logs" / "version_0" / "metrics.csv").read_text() == rows
    for k, v in first.state_dict().items():
        assert torch.equal(v, again.state_dict()[k]), k
    # other settings (one more epoch): trained on from the last checkpoint
    _, info3 = run(["pretraining.max_epochs=2", "pretraining.patience=0"], "more")
    _, info4 = run(["pretraining.max_epochs=3", "pretraining.patience=0"], "more")
    assert info4["resumed_from"] and info4["steps"] > info3["steps"]


def test_multiplicity_conditioned_backbone_trains_fine_tunes_and_samples(trained, tmp_path,
                                                                        capsys):
    """backbone.multiplicity: the histogram counts every training jet once per epoch, restarts
    on the fine-tuning jets, and ``jetfm sample --multiplicity`` gives jets of that many."""
    over = ["backbone.multiplicity=true", "pretraining.max_epochs=2"]
    d = api.pretrain([str(AOJ_MINI)], str(tmp_path / "pre"), str(trained / "tok"),
                     preset="quick", seed=1, progress=False, overrides=over)
    pre = load_pretrained(d)
    counts = pre.backbone.multiplicity_counts
    n_train = pre.provenance["pretrain"]["n_train"]
    assert counts.sum() == 2 * n_train
    n_max = pre.preprocessing.n_max
    want = np.minimum(read_jets(AOJ_MINI).n_constituents, n_max)
    assert counts.nonzero().max() <= n_max and counts[want.max()] > 0
    jets = read_jets(JETCLASS2_PARQUET)
    d2 = api.finetune(d, [], str(tmp_path / "ft"), preset="quick", seed=2, jets=jets,
                      progress=False, overrides=["finetuning.max_epochs=1"])
    ft = load_pretrained(d2)
    assert ft.backbone.multiplicity_counts.sum() == ft.provenance["finetune"]["n_train"]
    out = tmp_path / "gen.h5"
    assert main(["sample", "--model", d2, "-n", "20", "-o", str(out), "--multiplicity",
                 "9"]) == 0
    assert (read_jets(out).n_constituents == 9).all()
    with h5py.File(out) as f:
        assert f.attrs["multiplicity"] == 9
    drawn = sample(d2, 200, seed=1, progress=False).n_constituents
    assert len(np.unique(drawn)) > 5  # drawn per jet from the top jets' histogram
    # a multiplicity the model cannot give, or a model without the option: one line, exit 2
    assert main(["sample", "--model", d2, "-n", "5", "-o", str(tmp_path / "x.h5"),
                 "--multiplicity", str(n_max + 1)]) == 2
    assert main(["sample", "--model", str(trained / "pre"), "-n", "5", "-o",
                 str(tmp_path / "y.h5"), "--multiplicity", "9"]) == 2
    err = capsys.readouterr().err
    assert "multiplicity must be in" in err and "without backbone.multiplicity" in err
    assert not (tmp_path / "x.h5").exists() and not (tmp_path / "y.h5").exists()


def test_prong_seed_order_is_the_backbones_and_stays_with_it(trained, tmp_path, capsys):
    """preprocessing.prong_seeds: a new backbone may read its jets prong seeds first while its
    tokenizer's model on disk keeps the pT order; fine-tuning keeps the pre-trained order, token
    files record theirs and a backbone of another order refuses them."""
    from jetfm.physics.features import Preprocessing

    over = ["preprocessing.prong_seeds=3", "pretraining.max_epochs=1"]
    d = api.pretrain([str(AOJ_MINI)], str(tmp_path / "pre"), str(trained / "tok"),
                     preset="quick", seed=1, progress=False, overrides=over)
    pre = load_pretrained(d)
    assert pre.preprocessing.prong_seeds == 3 and pre.tokenizer.preprocessing.prong_seeds == 3
    assert load_pretrained(str(trained / "tok")).preprocessing.prong_seeds == 0
    jets = read_jets(AOJ_MINI)
    feats, mask = pre.preprocessing.forward(jets)
    want, _ = Preprocessing(n_max=pre.preprocessing.n_max, prong_seeds=3).forward(jets)
    assert np.array_equal(feats, want)
    # fine-tuning cannot change the order its backbone learned
    d2 = api.finetune(d, [], str(tmp_path / "ft"), preset="quick", seed=2,
                      jets=read_jets(JETCLASS2_PARQUET), progress=False,
                      overrides=["finetuning.max_epochs=1", "preprocessing.prong_seeds=0"])
    assert load_pretrained(d2).preprocessing.prong_seeds == 3
    gen = sample(d2, 10, seed=1, progress=False)
    pt = np.where(gen.mask, gen.c("pt"), 0.0)
    assert gen.n_constituents.min() > 0 and (np.diff(pt, axis=1)[gen.mask[:, 1:]] <= 0).all()
    # token files carry the order
    out = tmp_path / "tok.h5"
    assert main(["tokenize", str(AOJ_MINI), "-o", str(out), "--model", d]) == 0
    with h5py.File(out) as f:
        assert f.attrs["prong_seeds"] == 3
    with pytest.raises(InputError, match="prong_seeds = 3"):
        api.pretrain([str(out)], str(tmp_path / "pre2"), str(trained / "tok"), preset="quick",
                     seed=1, progress=False, overrides=["pretraining.max_epochs=1"])
    api.pretrain([str(out)], str(tmp_path / "pre3"), str(trained / "tok"), preset="quick",
                 seed=1, progress=False, overrides=over)
    # from the command line: one line, exit 2, no model (a refused token file leaves only the
    # run folder's record, as any refused training input does; a bad value not even that)
    assert main(["pretrain", "--data", str(out), "--tokenizer", str(trained / "tok"), "-o",
                 str(tmp_path / "x"), "--preset", "quick"]) == 2
    assert main(["pretrain", "--data", str(AOJ_MINI), "--tokenizer", str(trained / "tok"), "-o",
                 str(tmp_path / "y"), "--preset", "quick",
                 "--set", "preprocessing.prong_seeds=9"]) == 2
    err = capsys.readouterr().err
    assert "prong_seeds = 3, the model's is 0" in err and "prong_seeds': must be" in err
    assert not (tmp_path / "x" / "model").exists() and not (tmp_path / "y").exists()
