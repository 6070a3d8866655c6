"""The Python API of OmniJet-alpha training (stable; other modules build on it).

Exact signatures::

    train_tokenizer(data: list[str], out: str, preset="small", overrides=(), seed=0,
                    max_jets=None, resume=True, jets=None, progress=True, **STREAM) -> str
    pretrain(data, out, tokenizer_dir, preset="small", overrides=(), seed=0, max_jets=None,
             resume=True, jets=None, progress=True, **STREAM) -> str
    finetune(from_dir, data, out, preset="small", overrides=(), seed=0, freeze_backbone=False,
             max_jets=None, jets=None, resume=True, progress=True, **STREAM) -> str
    train_from_scratch(tokenizer_dir, data, out, preset="small", overrides=(), seed=0,
                       max_jets=None, jets=None, resume=True, progress=True, **STREAM) -> str

    STREAM: streaming=None, val_data=None, memory_budget_gb=None, buffer_size=None

``data`` is a list of AOJ or JetClass files (globs and ``.txt`` file lists work too);
``jets`` (a :class:`jetfm.Jets`) replaces ``data`` when given (then ``data`` may be ``[]``).
``out`` is a run folder: ``config.yaml`` (resolved config), ``checkpoints/`` (``last.ckpt``,
``best.ckpt``), ``logs/version_N/metrics.csv``, ``tensorboard/`` and ``model/``, the exported model whose
path every training function returns. A second call with the same ``out`` resumes from the last
checkpoint (``resume=False`` starts afresh).

Data larger than memory stream from the files (``streaming=True``, or automatically when the
jets would take more than ``memory_budget_gb``, default a quarter of the machine's memory):
read in chunks through a shuffle buffer of ``buffer_size`` jets per data-loader worker
(:mod:`jetfm.train.streaming`), validated on a fixed held-out part of the files
(:func:`jetfm.train.streaming.holdout_ranges`) or on ``val_data`` files, resumable mid-epoch,
sharded over DDP processes. Streamed AOJ jets are tokenized per batch for the backbone; token
files (``jetfm tokenize``) are read as they are.

Training settings come from the preset's sections: ``tokenizer_training`` (train_tokenizer),
``pretraining`` (pretrain), ``finetuning`` (finetune and train_from_scratch). The tokenizer (and,
for finetune, the backbone architecture) always come from the model loaded, so the pre-trained and
the from-scratch arm share one frozen tokenizer. Loading and sampling a trained model:
:mod:`jetfm.omnijet.model`.
"""
from __future__ import annotations

import dataclasses
import os
import shutil
from typing import Sequence

import numpy as np
import torch

from jetfm.config import save_config
from jetfm.errors import InputError
from jetfm.io.tokens import codes_to_sequences
from jetfm.jets import Jets
from jetfm.omnijet.config import OmniJetConfig, TrainConfig, load_omnijet_config
from jetfm.omnijet.model import OmniJetModel, load_pretrained

__all__ = ["train_tokenizer", "pretrain", "finetune", "train_from_scratch"]


def _save_once(model: OmniJetModel, out: str, fit_info: dict) -> str:
    """Export the model to ``out/model``; in a multi-process (DDP) run only global rank 0
    writes, the other processes return the same path."""
    folder = os.path.join(out, "model")
    return model.save_pretrained(folder) if fit_info.get("global_rank", 0) == 0 else folder


def _start_run(out: str, cfg: OmniJetConfig, resume: bool) -> None:
    if not resume and os.path.isdir(os.path.join(out, "checkpoints")):
        shutil.rmtree(os.path.join(out, "checkpoints"))
    os.makedirs(out, exist_ok=True)
    save_config(cfg, out)


def _features(data, jets: Jets | None, prep, max_jets: int | None, progress: bool):
    from jetfm.train.data import jets_features, load_features

    if jets is not None:
        return jets_features(jets if max_jets is None else jets[:max_jets], prep)
    return load_features(data, prep, max_jets, progress=progress)


def _loaders(stage: str, data, jets: Jets | None, prep, tc: TrainConfig, seed: int,
             max_jets: int | None, progress: bool, streaming: bool | None, val_data,
             memory_budget_gb: float | None, buffer_size: int | None, tokenizer=None):
    """The training and validation loaders of one stage, in memory or streamed (see
    :func:`jetfm.train.data.use_streaming`). ``stage``: ``"tokenizer"`` or ``"backbone"``
    (then ``tokenizer`` encodes the in-memory jets; streamed AOJ jets are encoded per batch by
    the module). Returns ``(train_dl, val_dl, split, provenance, kind)`` with ``kind`` None
    in memory, else ``"aoj"`` or ``"tokens"``."""
    from jetfm.train.data import (FeatureDataset, SequenceDataset, expand_data, hdf5_files,
                                  make_loaders, reflect, split_indices, streaming_loaders,
                                  use_streaming)

    if use_streaming(data, jets, streaming, max_jets, prep.n_max, stage, memory_budget_gb):
        paths = expand_data(data) + (expand_data(val_data) if val_data is not None else [])
        tokens = [f.path for f in hdf5_files(paths) if f.kind == "tokens"]
        if tokens and stage == "tokenizer":
            raise InputError("the tokenizer trains on jets (AOJ files), not on token files",
                             tokens[0])
        _check_token_files(tokens, 0 if tokenizer is None else tokenizer.codebook_size)
        if stage == "backbone" and tc.augment > 1:
            raise InputError(f"augment = {tc.augment} (reflected copies of the training jets) "
                             "needs the jets in memory; streamed training takes augment = 1")
        train_dl, val_dl, split, prov = streaming_loaders(
            data, prep, tc.batch_size, tc.val_fraction, seed, tc.num_workers, max_jets,
            val_data, buffer_size,
            pin_memory=tc.accelerator != "cpu" and torch.cuda.is_available())
        return train_dl, val_dl, split, prov, prov["kind"]
    feats, mask, prov = _features(data, jets, prep, max_jets, progress)
    val = None
    if val_data is not None:
        vf, vm, vprov = _features(val_data, None, prep, None, progress)
        val = (vf, vm)
        prov["validation_files"] = vprov["files"]
    if stage == "tokenizer":
        arrays, cls = (feats, mask), FeatureDataset
    else:
        cls, k = SequenceDataset, tokenizer.codebook_size

        def seqs(f, m):
            return (codes_to_sequences(tokenizer.encode_arrays(f, m), m, k),)

        if tc.augment > 1:  # reflected copies of the training jets only
            if val is None:
                tr, va = split_indices(len(feats), tc.val_fraction)
                val = (feats[va], mask[va])
                feats, mask = feats[tr], mask[tr]
            feats, mask = reflect(feats, mask, tc.augment)
            prov["augment"] = tc.augment
        arrays = seqs(feats, mask)
        if val is not None:
            val = seqs(*val)
    train_dl, val_dl, split = make_loaders(cls, arrays, tc.val_fraction, tc.batch_size, seed,
                                           tc.num_workers, val_arrays=val)
    return train_dl, val_dl, split, prov, None


def _check_token_files(paths: list[str], codebook_size: int) -> None:
    """Token files must come from a tokenizer with the same codebook size."""
    import h5py

    for p in paths:
        with h5py.File(p, "r") as h:
            k = int(h.attrs.get("codebook_size", -1))
        if k != codebook_size:
            raise InputError(f"token file of a codebook of {k} codes, the tokenizer has "
                             f"{codebook_size}", p)


def _stage_info(prov: dict, split: dict, fit_info: dict, seed: int, preset: str,
                overrides: Sequence[str], out: str, tc: TrainConfig, **extra) -> dict:
    return {"data": prov, **split, **fit_info, "seed": seed, "preset": preset,
            "overrides": list(overrides), "run_dir": os.path.abspath(out),
            "training": dataclasses.asdict(tc), **extra}


def train_tokenizer(data: Sequence[str], out: str, preset: str = "small",
                    overrides: Sequence[str] = (), seed: int = 0, max_jets: int | None = None,
                    resume: bool = True, jets: Jets | None = None, progress: bool = True,
                    streaming: bool | None = None, val_data: Sequence[str] | None = None,
                    memory_budget_gb: float | None = None,
                    buffer_size: int | None = None) -> str:
    """Train the VQ-VAE tokenizer on jets; returns the model directory (``out/model``).

    ``streaming``: True streams the AOJ files (memory bounded by the shuffle buffer of
    ``buffer_size`` jets per data-loader worker), False loads them into memory, None (default)
    streams when the in-memory footprint would exceed ``memory_budget_gb`` (default: a quarter
    of the machine's memory; :func:`jetfm.train.data.use_streaming`). ``val_data``: files to
    validate on instead of a held-out part of ``data``."""
    from jetfm.train.modules import TokenizerModule, fit

    cfg = load_omnijet_config(preset, overrides)
    _start_run(out, cfg, resume)
    prep = cfg.preprocessing.build()
    tc = cfg.tokenizer_training
    train_dl, val_dl, split, prov, kind = _loaders(
        "tokenizer", data, jets, prep, tc, seed, max_jets, progress, streaming, val_data,
        memory_budget_gb, buffer_size)
    torch.manual_seed(seed)
    module = TokenizerModule(cfg.tokenizer, prep, tc)
    info = fit(module, train_dl, val_dl, out, seed, resume, progress=progress,
               callbacks=_stream_callbacks(kind))
    model = OmniJetModel(cfg, tokenizer=module.model, provenance={
        "tokenizer": _stage_info(prov, split, info, seed, preset, overrides, out, tc)})
    return _save_once(model, out, info)


def _stream_callbacks(kind: str | None) -> list:
    """Streamed data need SetEpoch: a new block order every epoch."""
    from jetfm.train.streaming import SetEpoch

    return [] if kind is None else [SetEpoch()]


def _train_backbone(base: OmniJetModel, cfg: OmniJetConfig, stage: str, tc: TrainConfig,
                    data, out: str, preset: str, overrides: Sequence[str], seed: int,
                    max_jets: int | None, jets: Jets | None, resume: bool, progress: bool,
                    init_state: dict | None = None, freeze_backbone: bool = False,
                    extra: dict | None = None, stream: dict | None = None) -> str:
    from jetfm.train.modules import BackboneModule, fit

    _start_run(out, cfg, resume)
    tok = base.tokenizer
    train_dl, val_dl, split, prov, kind = _loaders(
        "backbone", data, jets, base.preprocessing, tc, seed, max_jets, progress,
        tokenizer=tok, **(stream or {"streaming": False, "val_data": None,
                                     "memory_budget_gb": None, "buffer_size": None}))
    torch.manual_seed(seed)
    # streamed AOJ jets are tokenized per batch by the frozen tokenizer, on the training device
    module = BackboneModule(cfg.backbone, tc, freeze_backbone,
                            tokenizer=tok if kind == "aoj" else None)
    if init_state is not None:
        module.model.load_state_dict(init_state)
    elif cfg.backbone.code_features:
        table = _code_table(tok, data, jets, base.preprocessing, max_jets)
        if table.shape[1] != cfg.backbone.code_features:
            raise InputError(f"backbone.code_features must be {table.shape[1]} for this "
                             f"tokenizer (constituent features + latent size), got "
                             f"{cfg.backbone.code_features}")
        module.model.code_table.copy_(torch.from_numpy(table))
    info = fit(module, train_dl, val_dl, out, seed, resume, progress=progress,
               callbacks=_stream_callbacks(kind))
    prov_all = {k: v for k, v in base.provenance.items()}
    prov_all[stage] = _stage_info(prov, split, info, seed, preset, overrides, out, tc,
                                  freeze_backbone=freeze_backbone, **(extra or {}))
    model = OmniJetModel(cfg, tokenizer=tok, backbone=module.model.eval(), provenance=prov_all)
    return _save_once(model, out, info)


#: training jets the code table of a fresh backbone is computed from (at most)
CODE_TABLE_JETS = 20_000


def _code_table(tok, data, jets: Jets | None, prep, max_jets: int | None) -> np.ndarray:
    """The code table (:func:`jetfm.omnijet.backbone.code_table`) from the first training jets."""
    from jetfm.omnijet.backbone import code_table
    from jetfm.train.data import expand_data, hdf5_files

    if jets is None and any(f.kind == "tokens" for f in hdf5_files(expand_data(data)) or []):
        raise InputError("a backbone with code features (backbone.code_features > 0) is first "
                         "trained on jets (AOJ or JetClass files), not on token files")
    n = CODE_TABLE_JETS if max_jets is None else min(max_jets, CODE_TABLE_JETS)
    feats, mask, _ = _features(data, jets, prep, n, progress=False)
    codes = tok.encode_arrays(feats, mask)
    with torch.no_grad():
        latents = tok.quantizer.effective_codebook().detach().cpu().numpy()
    return code_table(codes, feats, mask, latents)


def _with_tokenizer_of(base: OmniJetModel, preset: str, overrides: Sequence[str],
                       backbone_from_base: bool = False) -> OmniJetConfig:
    cfg = load_omnijet_config(preset, overrides)
    repl = {"tokenizer": base.config.tokenizer, "preprocessing": base.config.preprocessing}
    if backbone_from_base:
        repl["backbone"] = base.config.backbone
    return dataclasses.replace(cfg, **repl).resolved()


def pretrain(data: Sequence[str], out: str, tokenizer_dir: str, preset: str = "small",
             overrides: Sequence[str] = (), seed: int = 0, max_jets: int | None = None,
             resume: bool = True, jets: Jets | None = None, progress: bool = True,
             streaming: bool | None = None, val_data: Sequence[str] | None = None,
             memory_budget_gb: float | None = None, buffer_size: int | None = None) -> str:
    """Train the backbone from scratch on jets tokenized by the (frozen) tokenizer in
    ``tokenizer_dir``, with the ``pretraining`` settings; returns the model directory.

    ``data``: AOJ/JetClass files, or jetfm token files written by ``jetfm tokenize`` with this
    tokenizer (always streamed). Streaming (``streaming``, ``val_data``, ``memory_budget_gb``,
    ``buffer_size``) as in :func:`train_tokenizer`; streamed AOJ jets are tokenized on the fly,
    per batch, on the training device."""
    base = load_pretrained(tokenizer_dir)
    cfg = _with_tokenizer_of(base, preset, overrides)
    return _train_backbone(base, cfg, "pretrain", cfg.pretraining, data, out, preset, overrides,
                           seed, max_jets, jets, resume, progress,
                           extra={"tokenizer_dir": os.path.abspath(tokenizer_dir)},
                           stream=_stream_kw(streaming, val_data, memory_budget_gb, buffer_size))


def _stream_kw(streaming, val_data, memory_budget_gb, buffer_size) -> dict:
    return {"streaming": streaming, "val_data": val_data, "memory_budget_gb": memory_budget_gb,
            "buffer_size": buffer_size}


def finetune(from_dir: str, data: Sequence[str], out: str, preset: str = "small",
             overrides: Sequence[str] = (), seed: int = 0, freeze_backbone: bool = False,
             max_jets: int | None = None, jets: Jets | None = None, resume: bool = True,
             progress: bool = True, streaming: bool | None = None,
             val_data: Sequence[str] | None = None, memory_budget_gb: float | None = None,
             buffer_size: int | None = None) -> str:
    """Fine-tune a pre-trained model: every weight of its backbone and head is loaded and every
    layer trained (``freeze_backbone``: only the head), with the ``finetuning`` settings; the
    tokenizer stays frozen. Returns the model directory. Streaming as in :func:`pretrain`."""
    base = load_pretrained(from_dir)
    if base.backbone is None:
        raise InputError("model has no backbone to fine-tune (a tokenizer only?)", from_dir)
    cfg = _with_tokenizer_of(base, preset, overrides, backbone_from_base=True)
    return _train_backbone(base, cfg, "finetune", cfg.finetuning, data, out, preset, overrides,
                           seed, max_jets, jets, resume, progress,
                           init_state=base.backbone.state_dict(), freeze_backbone=freeze_backbone,
                           extra={"from_dir": os.path.abspath(from_dir)},
                           stream=_stream_kw(streaming, val_data, memory_budget_gb, buffer_size))


def train_from_scratch(tokenizer_dir: str, data: Sequence[str], out: str, preset: str = "small",
                       overrides: Sequence[str] = (), seed: int = 0,
                       max_jets: int | None = None, jets: Jets | None = None,
                       resume: bool = True, progress: bool = True,
                       streaming: bool | None = None, val_data: Sequence[str] | None = None,
                       memory_budget_gb: float | None = None,
                       buffer_size: int | None = None) -> str:
    """The from-scratch arm of a fine-tuning comparison: a fresh backbone (preset sizes) trained
    with the ``finetuning`` settings on the same frozen tokenizer (``tokenizer_dir`` may also
    be a pre-trained model: only its tokenizer is used). Returns the model directory."""
    base = load_pretrained(tokenizer_dir)
    base = OmniJetModel(base.config, tokenizer=base.tokenizer,
                        provenance={"tokenizer": base.provenance.get("tokenizer", {})})
    cfg = _with_tokenizer_of(base, preset, overrides)
    return _train_backbone(base, cfg, "scratch", cfg.finetuning, data, out, preset, overrides,
                           seed, max_jets, jets, resume, progress,
                           extra={"tokenizer_dir": os.path.abspath(tokenizer_dir)},
                           stream=_stream_kw(streaming, val_data, memory_budget_gb, buffer_size))
