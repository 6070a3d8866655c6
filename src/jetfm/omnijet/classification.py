"""Jet classification with OmniJet-alpha: labelled data, training, scoring.

Three arms share one architecture (:class:`jetfm.omnijet.classifier.JetClassifier`) and one
frozen tokenizer, the one of the model they start from:

- ``pretrained``: the backbone body loaded from a pre-trained generative model, every weight
  trained (the backbone's learning rate scaled by ``classifier.backbone_lr_scale``);
- ``frozen``: the same start, only the pooling and the MLP head trained;
- ``scratch``: the same architecture, randomly initialised.

Labels come from the files or from the user:

- JetClass files carry one-hot ``label_*`` branches, JetClass-II files an integer ``jet_label``;
  each jet's class is its name (``QCD``, ``Tbqq``, ...; JetClass-II's labels 161..187 are
  ``QCD``, the others ``jetclass2:<label>``). ``only`` keeps some classes, ``others`` gives every
  other class one name (``only=["QCD"], others="resonance"``: QCD against the rest).
- Any file (AOJ, generated jets, JetClass, or jetfm token files of the same tokenizer) can be
  given a class by name: ``classes={"top": [files], "qcd": [files]}``, one class per set of files.

Training settings come from the preset's ``classification`` section and the head's from its
``classifier`` section. Jets are tokenized once, in memory (labelled sets are small by nature:
``max_jets`` bounds each file).

Python API::

    labelled_sequences(model, data=(), classes=None, only=None, others=None, max_jets=None)
        -> LabelledData(seqs (N, L) int64, labels (N,) int64, names, provenance)
    train_classifier(base, data: LabelledData, out, arm="pretrained", preset="small",
                     overrides=(), seed=0, resume=True, progress=True) -> OmniJetModel
    classify_train(from_dir, out, data=(), classes=None, ..., arm=...) -> model directory
    predict_proba(model, seqs) -> (N, n_classes) float64
"""
from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from jetfm.errors import InputError
from jetfm.train.data import SequenceDataset

ARMS = ("pretrained", "frozen", "scratch")
#: a training set smaller than this many batches is repeated within an epoch (each jet the same
#: number of times): validation, checkpoints and early stopping happen once per epoch, and with
#: a few labelled jets an epoch of one or two steps would spend most of its time on them and stop
#: after a handful of steps
MIN_STEPS_PER_EPOCH = 8


@dataclass
class LabelledData:
    """Token sequences (N, L) int64 (-1 padded) with integer labels (N,) into ``names``."""
    seqs: np.ndarray
    labels: np.ndarray
    names: list[str]
    provenance: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.labels)

    def counts(self) -> dict[str, int]:
        return {n: int((self.labels == i).sum()) for i, n in enumerate(self.names)}


# --------------------------------------------------------------------------- data
def _is_token_file(path: str) -> bool:
    if not path.endswith((".h5", ".hdf5")):
        return False
    import h5py

    from jetfm.io.tokens import FORMAT

    try:
        with h5py.File(path, "r") as h:
            return h.attrs.get("format") == FORMAT
    except OSError:
        return False


def file_sequences(model, path: str, max_jets: int | None = None
                   ) -> tuple[np.ndarray, list[str] | None]:
    """One file -> (token sequences (N, L) int64 through ``model``'s tokenizer, the class name of
    every jet from the file's labels, or None when it carries none).

    Token files must come from a tokenizer of the same codebook size (then they carry no
    labels)."""
    from jetfm.errors import require_file
    from jetfm.io import read_jets
    from jetfm.io.tokens import check_token_layout, read_tokens

    require_file(path)
    tok = model.tokenizer
    if _is_token_file(path):
        seqs, attrs = read_tokens(path)
        check_token_layout(attrs, tok, path)
        return seqs[:max_jets], None
    jets = read_jets(path, 0, max_jets)
    if len(jets) == 0:
        raise InputError("the file holds no jets", path)
    feats, mask = model.preprocessing.forward(jets)
    seqs = tok.sequences(tok.encode_arrays(feats, mask), mask)
    names = None
    if "label" in jets.jet_names:
        from jetfm.io.jetclass import jetclass_class_name

        scheme = jets.meta.get("label_scheme", "jetclass")
        names = [jetclass_class_name(int(v), scheme) for v in jets.j("label")]
        if "?" in names:
            raise InputError("jets without a valid label (no label_* branch set)", path)
    return seqs, names


def pad_sequences(parts: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Sequence arrays (N_i, L_i) -> the same arrays -1 padded to the longest L_i."""
    width = max(p.shape[1] for p in parts)
    return [np.pad(p, ((0, 0), (0, width - p.shape[1])), constant_values=-1) for p in parts]


def _class_order(names: set[str]) -> list[str]:
    """QCD (the usual background) first, then the other names sorted."""
    return sorted(names, key=lambda n: (n != "QCD", n))


def labelled_sequences(model, data: Sequence[str] = (),
                       classes: Mapping[str, Sequence[str]] | None = None,
                       only: Sequence[str] | None = None, others: str | None = None,
                       max_jets: int | None = None) -> LabelledData:
    """Labelled token sequences from ``data`` (files carrying labels) and/or ``classes``
    (``{name: files}``, the files' jets all of that class). See the module docstring."""
    from jetfm.train.data import expand_data, file_provenance

    parts, names_per_jet, files, n_labelled = [], [], [], 0
    for path in (expand_data(data) if data else []):
        seqs, names = file_sequences(model, path, max_jets)
        if names is None:
            raise InputError("the file carries no labels: give its class with "
                             "--class NAME=FILE", path)
        parts.append(seqs)
        names_per_jet += names
        files.append(path)
        n_labelled += len(names)
    order: list[str] = []
    for name, paths in (classes or {}).items():
        if not name or "=" in name:
            raise InputError(f"invalid class name '{name}'")
        order.append(name)
        for path in expand_data(paths):
            seqs, _ = file_sequences(model, path, max_jets)
            parts.append(seqs)
            names_per_jet += [name] * len(seqs)
            files.append(path)
    if not parts:
        raise InputError("no labelled data: give --data files with labels, or --class "
                         "NAME=FILE for each class")
    names_arr = np.asarray(names_per_jet, dtype=object)
    keep = np.ones(len(names_arr), bool)
    if only:  # applies to the labelled files' classes; the --class ones stay as they are
        from_files = np.arange(len(names_arr)) < n_labelled
        missing = [c for c in only if c not in set(names_arr[from_files])]
        if missing:
            raise InputError(f"class(es) {missing} not found; the labelled files hold "
                             f"{_class_order(set(names_arr[from_files]))}")
        inside = np.isin(names_arr, list(only)) | ~from_files
        if others:
            names_arr = np.where(inside, names_arr, others)
        else:
            keep = inside
    seqs = np.concatenate(pad_sequences(parts))[keep]
    names_arr = names_arr[keep]
    present = set(names_arr)
    names = [n for n in order if n in present] + _class_order(present - set(order))
    if len(names) < 2:
        raise InputError(f"classification needs at least 2 classes; the data hold only "
                         f"{names} (give --class NAME=FILE for another class, or --others)")
    lookup = {n: i for i, n in enumerate(names)}
    labels = np.array([lookup[n] for n in names_arr], np.int64)
    prov = {"files": file_provenance(files), "n_jets": int(len(labels)),
            "counts": {n: int((labels == i).sum()) for i, n in enumerate(names)},
            "max_jets_per_file": max_jets}
    return LabelledData(seqs, labels, names, prov)


class LabelledSequenceDataset(SequenceDataset):
    """(sequences, labels); a batch is ``(seqs (B, L) trimmed to its longest, labels (B,))``."""

    def __init__(self, seqs: np.ndarray, labels: np.ndarray):
        super().__init__(seqs)
        self.labels = torch.as_tensor(np.ascontiguousarray(labels, np.int64))

    def __getitems__(self, idx):
        return super().__getitems__(idx), self.labels[torch.as_tensor(idx)]


# --------------------------------------------------------------------------- training
def _module(classifier, tc, arm: str):
    """The Lightning module of one arm (built lazily: Lightning is imported only to train)."""
    from jetfm.train.modules import _Module

    class ClassifierModule(_Module):
        """Cross-entropy training of a :class:`JetClassifier`; logs loss and accuracy."""

        def __init__(self):
            super().__init__(tc)
            self.model = classifier
            self.frozen = arm == "frozen"
            if self.frozen:
                self.model.body.requires_grad_(False)

        def optimizer_groups(self):
            head = [p for p in self.model.head_parameters() if p.requires_grad]
            body = [p for p in self.model.body_parameters() if p.requires_grad]
            scale = self.model.cfg.backbone_lr_scale if arm == "pretrained" else 1.0
            groups = [{"params": head}]
            if body and scale > 0:
                groups.append({"params": body, "lr": tc.lr * scale})
            return groups

        def on_train_epoch_start(self) -> None:
            if self.frozen:  # the frozen body runs as in evaluation (no dropout)
                self.model.body.eval()

        def _step(self, batch, stage: str):
            seqs, labels = batch
            logits = self.model(seqs)
            loss = torch.nn.functional.cross_entropy(logits, labels)
            acc = (logits.argmax(1) == labels).float().mean()
            kw = {"batch_size": len(labels), "sync_dist": stage == "val"}
            self.log(f"{stage}_loss", loss, prog_bar=True, **kw)
            self.log(f"{stage}_acc", acc, prog_bar=stage == "val", **kw)
            return loss

        def training_step(self, batch, batch_idx):
            return self._step(batch, "train")

        def validation_step(self, batch, batch_idx):
            return self._step(batch, "val")

    return ClassifierModule()


def classifier_config(base, preset: str, overrides: Sequence[str]):
    """The base model's config with the preset's ``classifier`` and ``classification``
    sections: the tokenizer, preprocessing and backbone sizes always come from the base."""
    from jetfm.omnijet.config import load_omnijet_config

    pc = load_omnijet_config(preset, overrides)  # validated where loaded
    return dataclasses.replace(base.config, classifier=pc.classifier,
                               classification=pc.classification).resolved()


def labelled_code_table(tok, seqs: np.ndarray) -> np.ndarray:
    """The code table (:func:`jetfm.omnijet.backbone.code_table`) of a from-scratch classifier
    from its own training sequences: labelled jets arrive as tokens, so each code's mean
    features are those of the constituents the tokenizer decodes them to (a backbone trained
    on jets takes them from the jets' own constituents)."""
    from jetfm.io.tokens import sequences_to_codes
    from jetfm.omnijet.backbone import code_table

    codes, mask = sequences_to_codes(seqs, tok.codebook_size, residual_codes=tok.residual_codes)
    p = max(1, int(mask.sum(1).max()))
    codes, mask = codes[:, :p], mask[:, :p]
    return code_table(codes, tok.decode_arrays(codes, mask), mask, tok.latent_codebook(),
                      tok.residual_vectors())


def train_classifier(base, data: LabelledData, out: str, arm: str = "pretrained",
                     preset: str = "small", overrides: Sequence[str] = (), seed: int = 0,
                     resume: bool = True, progress: bool = True, extra: dict | None = None,
                     min_steps: int = 0):
    """Train one arm on labelled sequences; returns the :class:`OmniJetModel` (tokenizer and
    classifier) written to ``out/model``. ``base``: the model whose tokenizer (and, for the
    ``pretrained`` and ``frozen`` arms, backbone) is used. Early stopping on a fixed held-out
    ``classification.val_fraction`` of the jets; resumes from ``out/checkpoints``.
    ``min_steps`` > 0 raises ``classification.max_epochs`` so that training takes at least that
    many optimiser steps (:func:`jetfm.train.spec.with_min_steps`)."""
    from jetfm.omnijet.classifier import JetClassifier
    from jetfm.omnijet.model import OmniJetModel
    from jetfm.train.api import _save_once, _stage_info, _start_run
    from jetfm.train.data import make_loaders, split_indices
    from jetfm.train.modules import fit
    from jetfm.train.spec import with_min_steps

    if arm not in ARMS:
        raise InputError(f"unknown arm '{arm}' ({', '.join(ARMS)})")
    if arm != "scratch" and base.backbone is None:
        raise InputError("the model has no pre-trained backbone (a tokenizer only?): train "
                         "from scratch, or give a pre-trained model")
    cfg = classifier_config(base, preset, overrides)
    tc = with_min_steps(cfg.classification, len(data), min_steps, MIN_STEPS_PER_EPOCH)
    cfg = dataclasses.replace(cfg, classification=tc)
    _start_run(out, cfg, resume)
    tr, va = split_indices(len(data), tc.val_fraction)
    reps = max(1, math.ceil(MIN_STEPS_PER_EPOCH * tc.batch_size / len(tr)))
    train = (np.tile(data.seqs[tr], (reps, 1)), np.tile(data.labels[tr], reps))
    train_dl, val_dl, _ = make_loaders(LabelledSequenceDataset, train, tc.val_fraction,
                                       tc.batch_size, seed, tc.num_workers,
                                       val_arrays=(data.seqs[va], data.labels[va]))
    split = {"n_train": int(len(tr)), "n_val": int(len(va)), "repeats_per_epoch": reps}
    torch.manual_seed(seed)
    clf = JetClassifier(cfg.backbone, cfg.classifier, len(data.names))
    if arm != "scratch":
        clf.load_backbone(base.backbone.state_dict())
    elif cfg.backbone.code_features:
        clf.body.code_table.copy_(torch.from_numpy(
            labelled_code_table(base.tokenizer, data.seqs[tr])))
    module = _module(clf, tc, arm)
    info = fit(module, train_dl, val_dl, out, seed, resume, progress=progress)
    prov = {"tokenizer": base.provenance.get("tokenizer", {})}
    if arm != "scratch":
        prov.update({k: v for k, v in base.provenance.items() if k != "tokenizer"})
    if min_steps > 0:
        extra = {**(extra or {}), "min_steps": min_steps}
    prov["classification"] = _stage_info(data.provenance, split, info, seed, preset, overrides,
                                         out, tc, arm=arm, **(extra or {}))
    model = OmniJetModel(cfg, tokenizer=base.tokenizer, classifier=clf.eval(),
                         classes=list(data.names), provenance=prov)
    _save_once(model, out, info)
    return model


def classify_train(from_dir: str, out: str, data: Sequence[str] = (),
                   classes: Mapping[str, Sequence[str]] | None = None,
                   only: Sequence[str] | None = None, others: str | None = None,
                   arm: str = "pretrained", preset: str = "small",
                   overrides: Sequence[str] = (), seed: int = 0, max_jets: int | None = None,
                   resume: bool = True, progress: bool = True) -> str:
    """Files -> labelled sequences -> :func:`train_classifier`; returns the model directory."""
    from jetfm.omnijet.model import load_pretrained

    base = load_pretrained(from_dir)
    lab = labelled_sequences(base, data, classes, only, others, max_jets)
    train_classifier(base, lab, out, arm, preset, overrides, seed, resume, progress,
                     extra={"from_dir": os.path.abspath(from_dir)})
    return os.path.join(out, "model")


def require_classifier(model, folder: str):
    if model.classifier is None:
        raise InputError("not a classifier (train one with `jetfm classify train`)", folder)
    return model


def predict_proba(model, seqs: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Class probabilities (N, n_classes) float64 of token sequences (N, L)."""
    with torch.inference_mode():
        return model.classifier.predict_proba(torch.as_tensor(seqs), batch_size).numpy()


__all__ = ["ARMS", "LabelledData", "labelled_sequences", "file_sequences", "pad_sequences",
           "train_classifier",
           "classify_train", "predict_proba", "require_classifier", "classifier_config"]
