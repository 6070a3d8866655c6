"""Bad input to every command: one line naming the option, key or file, exit code 2, no traceback,
and no output left behind. Each case runs ``jetfm.cli.main`` in-process on tiny inputs."""
from __future__ import annotations

import json
import os
import shutil

import h5py
import numpy as np
import pytest

from jetfm.cli import main
from tests.conftest import AOJ_MINI, DARK_IMAGES, PFNANO_INDEX

A = str(AOJ_MINI)
IMAGES = str(DARK_IMAGES / "supervised" / "valid")


def fails(argv, capsys, message, absent=()):
    """Run ``jetfm argv``: exit code 2, one stderr line holding ``message``, none of ``absent``
    (paths) exists afterwards, and no ``*.partial`` beside them."""
    rc = main([str(a) for a in argv])
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert message in err, err
    for p in absent:
        assert not os.path.exists(p), p
        folder = os.path.dirname(os.path.abspath(p))
        if os.path.isdir(folder):
            assert not [f for f in os.listdir(folder) if f.endswith(".partial")]
    return err


# ------------------------------------------------------------------ files the cases read
@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    out = {"blocker": d / "a_file"}
    out["blocker"].write_text("not a folder")
    # an AOJ file whose jet_kinematics dataset is a group
    shutil.copy(AOJ_MINI, d / "group.h5")
    with h5py.File(d / "group.h5", "a") as f:
        del f["jet_kinematics"]
        f.create_group("jet_kinematics")
    out["group"] = d / "group.h5"
    # an AOJ file whose jets hold no constituents
    from jetfm.io import read_jets
    from jetfm.io.aoj import write_aoj

    jets = read_jets(A, stop=5)
    jets.mask[:] = False
    write_aoj(d / "empty_jets.h5", jets)
    out["empty_jets"] = d / "empty_jets.h5"
    return out


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """An untrained quick-preset tokenizer + backbone model directory (its checks need no
    training)."""
    import torch

    from jetfm.omnijet.config import load_omnijet_config
    from jetfm.omnijet.model import OmniJetModel

    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("model") / "model"
    return OmniJetModel(load_omnijet_config("quick"), with_backbone=True).save_pretrained(str(d))


def edited_model(model, folder, edit_config=None, edit_weights=None):
    shutil.copytree(model, folder)
    if edit_config:
        meta = json.load(open(os.path.join(folder, "config.json")))
        edit_config(meta)
        with open(os.path.join(folder, "config.json"), "w") as fh:
            json.dump(meta, fh)  # NaN is written as NaN, as json.dump does
    if edit_weights:
        from safetensors.torch import load_file, save_file

        w = os.path.join(folder, "model.safetensors")
        tensors = load_file(w)
        edit_weights(tensors)
        save_file(tensors, w)
    return folder


# ------------------------------------------------------------------ CLI numbers
@pytest.mark.parametrize("argv, message", [
    (["split", A, "--jets-per-file", "0"], "argument --jets-per-file: must be an integer from 1"),
    (["split", A, "--jets-per-file", "-4"], "argument --jets-per-file"),
    (["split", A, "--seed", "-1"], "argument --seed: must be an integer from 0 to 4294967295"),
    (["simulate", "aoj-like", "--jets", "10", "--seed", "-1"], "argument --seed"),
    (["simulate", "aoj-like", "--jets", "10", "--seed", "100000000000000000000"],
     "argument --seed"),
    (["simulate", "aoj-like", "--jets", "100000000000000", "--seed", "1"], "argument --jets"),
    (["simulate", "aoj-like", "--jets", "1e14", "--seed", "1"], "argument --jets"),
    (["simulate", "dark-showers", "--signal", "qcd", "--events", "3", "--seed", "-1"],
     "argument --seed"),
    (["simulate", "aoj-like", "--jets", "10", "--seed", "1", "--pileup", "nan"],
     "argument --pileup"),
    (["images", A, "--pool", "0"], "argument --pool"),
    (["anomaly", "train", "--seed", "1", "--threads", "-2"], "argument --threads"),
    (["metrics", A, A, "--w1-samples", "0"], "argument --w1-samples"),
    (["metrics", A, A, "--seed", "4294967296"], "argument --seed"),
    (["sample", "--model", "m", "-n", "0"], "argument -n"),
    (["sample", "--model", "m", "-n", "5", "--temperature", "inf"], "argument --temperature"),
    (["sample", "--model", "m", "-n", "5", "--top-p", "0"], "argument --top-p"),
    (["sample", "--model", "m", "-n", "5", "--top-p", "1.5"], "argument --top-p"),
    (["tokenizer", "train", "--data", A, "--devices", "0"], "argument --devices"),
    (["tokenizer", "residuals", "--model", "m", "--data", A, "-o", "o", "--codes", "0"],
     "argument --codes"),
    (["scan", "--pretrained", "m", "--target", A, "--seeds", "0"], "argument --seeds"),
    (["demo", "--seed", "-3"], "argument --seed"),
    (["inspect", A, "--max-jets", "0"], "argument --max-jets"),
    (["classify", "evaluate", "--model", "m", "--data", A, "--seed", "-1"], "argument --seed"),
])
def test_bad_numbers(argv, message, tmp_path, capsys):
    out = tmp_path / "out"
    extra = {"split": ["--out", out], "simulate": ["-o", out], "images": ["-o", out],
             "sample": ["-o", out], "tokenizer": ["-o", out], "scan": ["--out", out],
             "demo": ["--out", out], "classify": ["-o", out]}.get(argv[0], [])
    fails(argv + extra, capsys, message, absent=[out])
    assert os.listdir(tmp_path) == []


# ------------------------------------------------------------------ config values
TOKENIZER = ["tokenizer", "train", "--data", A, "--preset", "quick"]


@pytest.mark.parametrize("extra, message", [
    (["--set", "tokenizer_training.max_epochs=-3"], "'tokenizer_training.max_epochs': must be"),
    (["--set", "tokenizer_training.max_epochs=0"], "'tokenizer_training.max_epochs'"),
    (["--set", "tokenizer_training.batch_size=0"], "'tokenizer_training.batch_size'"),
    (["--set", "tokenizer_training.batch_size=2.5"], "'tokenizer_training.batch_size'"),
    (["--set", "pretraining.augment=3"], "'pretraining.augment': must be 1, 2 or 4"),
    (["--set", "backbone.code_features=65"], "'backbone.code_features'"),
    (["--set", "backbone.fourier_features=8"], "'backbone.fourier_features': needs the code"),
    (["--set", "backbone.code_features=7", "--set", "backbone.fourier_features=2000"],
     "'backbone.fourier_features'"),
    (["--set", "backbone.kernel_heads=2"], "'backbone.kernel_heads': needs the code"),
    (["--set", "backbone.code_features=7", "--set", "backbone.kernel_anchors=0"],
     "'backbone.kernel_anchors'"),
    (["--set", "sampling.top_p=1.5"], "'sampling.top_p'"),
    (["--set", "tokenizer.pt_weight=-1"], "'tokenizer.pt_weight'"),
    (["--set", "tokenizer.residual_codes=-1"], "'tokenizer.residual_codes'"),
    (["--set", "tokenizer.residual_codes=16", "--set", "backbone.code_features=7",
      "--set", "backbone.kernel_heads=1"], "'backbone.kernel_heads': the anchor kernels take"),
    (["--set", "tokenizer_training.lr=nan"], "'tokenizer_training.lr': must be finite"),
    (["--set", "tokenizer_training.val_fraction=1.0"], "'tokenizer_training.val_fraction'"),
    (["--set", "tokenizer.quantizer.codebook_size=0"], "'tokenizer.quantizer.codebook_size'"),
    (["--set", "tokenizer.quantizer.codebook_size=100000000"],
     "'tokenizer.quantizer.codebook_size'"),
    (["--set", "tokenizer.heads=3"], "'tokenizer.heads': 3 heads do not divide"),
    (["--set", "tokenizer.width=-8"], "'tokenizer.width'"),
    (["--set", "backbone.n_blocks=100", "--set", "backbone.dim=8192"], "'backbone.dim': gives"),
    (["--set", "preprocessing.pt_shift=inf"], "'preprocessing.pt_shift'"),
    (["--set", "tokenizer=3"], "'tokenizer': must be a section"),
    (["--precision", "foo"], "'tokenizer_training.precision': must be one of"),
    (["--preset", A], "not a YAML config file"),
])
def test_bad_training_settings(extra, message, tmp_path, capsys):
    out = tmp_path / "run"
    fails(TOKENIZER + ["-o", out] + extra, capsys, message, absent=[out])


@pytest.mark.parametrize("sets, message", [
    (["data.valid_fraction=1.0"], "'data.valid_fraction'"),
    (["train.epochs=0"], "'train.epochs'"),
    (["train.lr=-1"], "'train.lr'"),
    (["model.enc_filters=[64,-2,128,256]"], "'model.enc_filters'"),
    (["model.enc_groups=3"], "'model.enc_groups': 3 groups do not divide"),
    (["data.roll_step=7"], "'data.roll_step'"),
    (["train.micro_batch=-4"], "'train.micro_batch'"),
    (["models=[codae,vae]"], "'models'"),
])
def test_bad_anomaly_settings(sets, message, tmp_path, capsys):
    fails(["anomaly", "train", "--config", "codae_quick", "--seed", "1", "--runs", tmp_path,
           "--train", IMAGES, "--set", *sets], capsys, message, absent=[tmp_path / "codae"])


@pytest.mark.parametrize("extra, message", [
    (["--sizes", "100,1"], "config key 'sizes'"),
    (["--sizes", "inf"], "sizes must be comma-separated integers"),
    (["--n-reference", "3"], "config key 'n_reference'"),
    (["--set", "finetuning.lr=0"], "'finetuning.lr'"),
])
def test_bad_scan_settings(extra, message, tmp_path, capsys):
    fails(["scan", "--pretrained", tmp_path, "--target", A, "--out", tmp_path / "scan",
           "--preset", "quick", *extra], capsys, message, absent=[tmp_path / "scan"])


@pytest.mark.parametrize("sets, message", [
    (["n_pretrain=0"], "config key 'n_pretrain'"),
    (["pileup=-1"], "config key 'pileup'"),
    (["model_overrides=[tokenizer.heads=3]"], "'tokenizer.heads'"),
])
def test_bad_demo_settings(sets, message, tmp_path, capsys):
    fails(["demo", "--preset", "quick", "--out", tmp_path / "demo",
           *[a for s in sets for a in ("--set", s)]], capsys, message,
          absent=[tmp_path / "demo"])


# ------------------------------------------------------------------ data files
def test_dataset_replaced_by_a_group(files, tmp_path, capsys):
    g = files["group"]
    for argv in (["inspect", g], ["metrics", A, g], ["split", g, "--out", tmp_path / "s"],
                 ["observables", g, "-o", tmp_path / "o.csv"]):
        fails(argv, capsys, "jet_kinematics is a group, expected a dataset")
    assert os.listdir(tmp_path) == []
    for mode in ("--streaming", "--in-memory"):  # after the reading progress bar, one line
        rc = main([str(a) for a in TOKENIZER[:3] + [g] + TOKENIZER[4:]]
                  + ["-o", str(tmp_path / "run"), mode])
        err = capsys.readouterr().err
        assert rc == 2 and "Traceback" not in err, err
        assert "jet_kinematics is a group, expected a dataset" in err.strip().splitlines()[-1]


def test_metrics_on_one_jet_or_empty_jets(files, capsys):
    fails(["metrics", A, A, "--max-jets", "1"], capsys, "at least 2 jets, got 1")
    fails(["metrics", A, files["empty_jets"]], capsys, "5 of 5 jets have no constituents")


# ------------------------------------------------------------------ build folders
def _manifest(folder, listed: str) -> None:
    """A build-aoj manifest with the CLI's default settings that lists ``listed`` as an
    output of a half-built input."""
    from jetfm.production.builder import MANIFEST, MANIFEST_FORMAT, _settings
    from jetfm.production.selection import AOJ_MET_FILTERS, AOJ_TRIGGERS, Selection

    sel = Selection(triggers=AOJ_TRIGGERS, met_filters=AOJ_MET_FILTERS)
    st = os.stat(PFNANO_INDEX)
    rec = {"id": 0, "status": "partial", "size": st.st_size, "mtime_ns": st.st_mtime_ns,
           "chunk_events": 20000,
           "chunks": {"0": {"outputs": [{"file": listed, "jets": 1}], "events": 1, "jets": 1}}}
    folder.mkdir()
    with open(folder / MANIFEST, "w") as fh:
        json.dump({"format": MANIFEST_FORMAT, "settings": _settings(sel, 2_200_000, "aoj"),
                   "next_id": 1, "inputs": {os.path.abspath(PFNANO_INDEX): rec},
                   "outputs": [listed]}, fh)


@pytest.mark.parametrize("listed", ["../victim.txt", "/ABS/victim.txt"])
def test_crafted_manifest_touches_nothing_outside(listed, tmp_path, capsys):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    build = tmp_path / "build"
    _manifest(build, listed.replace("/ABS", str(tmp_path)))
    fails(["build-aoj", PFNANO_INDEX, "--out", build, "--scheduler", "inline", "--no-progress"],
          capsys, "not an output file name of this folder")
    assert victim.read_text() == "keep me"
    fails(["split", build, "--no-progress"], capsys, "not an output file name of this folder",
          absent=[build / "split"])


def test_unreachable_scheduler(tmp_path, capsys, monkeypatch):
    import jetfm.production.builder as builder

    monkeypatch.setattr(builder, "SCHEDULER_TIMEOUT", "1s")
    fails(["build-aoj", PFNANO_INDEX, "--out", tmp_path / "b", "--scheduler",
           "tcp://127.0.0.1:9", "--no-progress"], capsys, "--scheduler tcp://127.0.0.1:9: cannot")


# ------------------------------------------------------------------ output folders and files
@pytest.mark.parametrize("argv, message", [
    (["build-aoj", PFNANO_INDEX, "--out", "{blocked}", "--scheduler", "inline"], "--out"),
    (["split", A, "--out", "{blocked}"], "--out"),
    (TOKENIZER + ["-o", "{blocked}"], "-o run folder"),
    (["anomaly", "train", "--config", "codae_quick", "--seed", "1", "--train", IMAGES,
      "--runs", "{blocker}"], "run folder"),
    (["tokenizer", "report", "--model", "{model}", "--data", A, "-o", "{blocked}"],
     "-o output folder"),
    (["tokenizer", "residuals", "--model", "{model}", "--data", A, "-o", "{blocked}"],
     "-o output folder"),
    (["demo", "--preset", "quick", "--out", "{blocked}"], "--out"),
    (["scan", "--pretrained", "{model}", "--target", A, "--out", "{blocked}"], "--out"),
])
def test_output_folder_cannot_be_made(argv, message, files, model, capsys):
    blocked = os.path.join(files["blocker"], "sub")
    fails([str(a).format(blocked=blocked, blocker=files["blocker"], model=model) for a in argv],
          capsys, message)
    assert files["blocker"].read_text() == "not a folder"


def test_missing_parent_folder_of_an_output_file(model, tmp_path, capsys):
    """-o in a folder that does not exist yet: the folder is made and the file written."""
    for argv, out in ((["observables", A, "--max-jets", "10"], tmp_path / "a" / "obs.csv"),
                      (["tokenize", A, "--model", model, "--max-jets", "10"],
                       tmp_path / "b" / "c" / "tok.h5")):
        assert main([str(a) for a in argv] + ["-o", str(out)]) == 0, capsys.readouterr().err
        assert out.is_file()


# ------------------------------------------------------------------ model directories
def _set(path, value):
    def edit(meta):
        node = meta
        *parents, leaf = path.split(".")
        for p in parents:
            node = node[p]
        if value is None:
            del node[leaf]
        else:
            node[leaf] = value
    return edit


@pytest.mark.parametrize("edit, message", [
    (_set("config.tokenizer", None), "lacks the section(s) tokenizer"),
    (_set("config", None), "lacks the section(s) preprocessing, tokenizer, backbone"),
    (_set("config.tokenizer.width", -16), "'tokenizer.width'"),
    (_set("config.backbone.heads", 5), "'backbone.heads': 5 heads do not divide"),
    (_set("config.tokenizer.quantizer.codebook_size", 2_000_000_000),
     "'tokenizer.quantizer.codebook_size'"),
    (_set("config.tokenizer.quantizer.codebook_size", 60000), "but the weights file holds"),
    (_set("config.preprocessing.pt_shift", float("nan")), "'preprocessing.pt_shift': must be "
                                                          "finite"),
])
def test_bad_model_config(edit, message, model, tmp_path, capsys):
    bad = edited_model(model, str(tmp_path / "m"), edit_config=edit)
    err = fails(["info", bad], capsys, message)
    assert "config.json" in err
    fails(["sample", "--model", bad, "-n", "3", "-o", tmp_path / "g.h5"], capsys, message,
          absent=[tmp_path / "g.h5"])


def test_too_many_jets_to_sample(model, tmp_path, capsys):
    fails(["sample", "--model", model, "-n", "1000000000", "-o", tmp_path / "g.h5"], capsys,
          "jets would take about", absent=[tmp_path / "g.h5"])


def test_non_finite_weights(model, tmp_path, capsys):
    def poison(t):
        t[next(k for k in t if k.startswith("backbone."))].view(-1)[0] = float("nan")
    bad = edited_model(model, str(tmp_path / "m"), edit_weights=poison)
    fails(["sample", "--model", bad, "-n", "3", "-o", tmp_path / "g.h5"], capsys,
          "non-finite weights", absent=[tmp_path / "g.h5"])


def test_generated_jets_are_checked():
    from jetfm.errors import InputError
    from jetfm.io import read_jets
    from jetfm.omnijet.model import check_generated

    jets = read_jets(A, stop=4)
    check_generated(jets, 3)
    jets.mask[1, 2:] = False
    with pytest.raises(InputError, match="1 jets with fewer than 3 constituents"):
        check_generated(jets, 3)
    jets = read_jets(A, stop=4)
    jets.constituents[0, 0, 0] = np.nan
    with pytest.raises(InputError, match="non-finite momenta"):
        check_generated(jets, 3)


def test_codae_checkpoint_config(tmp_path, capsys):
    import torch

    from jetfm.codae.checkpoint import save_pretrained
    from jetfm.codae.model import CoDAE, CoDAEConfig

    small = CoDAEConfig(enc_filters=[8, 8, 8, 8], mask_filters=[8, 8, 8, 8],
                        dec_filters=[8, 8, 8, 8], latent_channels=4)
    torch.manual_seed(0)
    good = save_pretrained(CoDAE(small), str(tmp_path / "codae"))
    meta = json.load(open(os.path.join(good, "config.json")))
    meta["model"]["latent_channels"] = -4
    json.dump(meta, open(os.path.join(good, "config.json"), "w"))
    fails(["anomaly", "evaluate", good, "--background", IMAGES, "--signal", IMAGES, "-o",
           tmp_path / "ev"], capsys, "'latent_channels'", absent=[tmp_path / "ev"])
    from safetensors.torch import load_file, save_file

    nan = save_pretrained(CoDAE(small), str(tmp_path / "nan"))
    state = load_file(os.path.join(nan, "model.safetensors"))
    next(iter(state.values())).view(-1)[0] = float("inf")
    save_file(state, os.path.join(nan, "model.safetensors"))
    fails(["anomaly", "evaluate", nan, "--background", IMAGES, "--signal", IMAGES, "-o",
           tmp_path / "ev"], capsys, "non-finite weights", absent=[tmp_path / "ev"])
