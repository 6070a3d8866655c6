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
    add_residual_codes(tokenizer_dir, data, out, residual_codes=256, residual_leading=10,
                       seed=0, max_jets=None, jets=None) -> str

    STREAM: streaming=None, val_data=None, memory_budget_gb=None, buffer_size=None

``data`` is a list of AOJ or JetClass files (globs and ``.txt`` file lists work too);
``jets`` (a :class:`jetfm.Jets`) replaces ``data`` when given (then ``data`` may be ``[]``).
``out`` is a run folder: ``config.yaml`` (resolved config), ``checkpoints/`` (``last.ckpt``,
``best.ckpt``), ``logs/version_N/metrics.csv``, ``tensorboard/`` and ``model/``, the exported
model whose path every training function returns. A second call with the same ``out`` resumes
from the last checkpoint (``resume=False`` starts afresh); after a training that ended, with the
same training settings, it loads the best weights and trains nothing
(``checkpoints/finished.json``).

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

Each of them gathers its data arguments into one :class:`jetfm.train.spec.DataSpec` and its run
arguments into one :class:`jetfm.train.spec.RunSpec`, and calls its counterpart that takes
those and returns a :class:`jetfm.train.spec.TrainResult` (the model directory and the trained
:class:`OmniJetModel`, for callers that go on with the model in memory)::

    run_tokenizer(data: DataSpec, run: RunSpec) -> TrainResult
    run_pretrain(tokenizer_dir, data, run) -> TrainResult
    run_finetune(from_dir, data, run, freeze_backbone=False) -> TrainResult
    run_from_scratch(tokenizer_dir, data, run) -> TrainResult
"""
from __future__ import annotations

import dataclasses
import os
import shutil
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from jetfm.config import save_config
from jetfm.errors import InputError
from jetfm.jets import Jets
from jetfm.omnijet.config import OmniJetConfig, TrainConfig, load_omnijet_config
from jetfm.omnijet.model import OmniJetModel, load_pretrained
from jetfm.train.spec import DataSpec, Loaders, RunSpec, TrainResult, with_min_steps

__all__ = ["train_tokenizer", "add_residual_codes", "pretrain", "finetune", "train_from_scratch",
           "run_tokenizer", "run_pretrain", "run_finetune", "run_from_scratch"]


def _save_once(model: OmniJetModel, out: str, fit_info: dict) -> str:
    """Export the model to ``out/model``; in a multi-process (DDP) run only global rank 0
    writes, the other processes return the same path."""
    folder = os.path.join(out, "model")
    return model.save_pretrained(folder) if fit_info.get("global_rank", 0) == 0 else folder


def _finish(model: OmniJetModel, out: str, fit_info: dict) -> TrainResult:
    """Export the model (:func:`_save_once`), then bring it into the state
    :func:`load_pretrained` gives back (float32 on the CPU, evaluation mode), so sampling it in
    memory draws the same jets as sampling the exported directory."""
    folder = _save_once(model, out, fit_info)
    for mod in (model.tokenizer, model.backbone, model.classifier):
        if mod is not None:
            mod.to("cpu", torch.float32).eval()
    return TrainResult(folder, model)


def _start_run(out: str, cfg: OmniJetConfig, resume: bool) -> None:
    if not resume and os.path.isdir(os.path.join(out, "checkpoints")):
        shutil.rmtree(os.path.join(out, "checkpoints"))
    os.makedirs(out, exist_ok=True)
    save_config(cfg, out)


def _features(spec: DataSpec, prep, progress: bool):
    """The preprocessed features ``(feats, mask, provenance)`` of the spec's in-memory jets, or
    read from its files (at most ``max_jets`` in both cases)."""
    from jetfm.train.data import jets_features, load_features

    if spec.jets is not None:
        jets = spec.jets if spec.max_jets is None else spec.jets[:spec.max_jets]
        return jets_features(jets, prep)
    return load_features(spec.data, prep, spec.max_jets, progress=progress)


def _first_features(spec: DataSpec, prep, cap: int):
    """The preprocessed features ``(feats, mask)`` of the spec's first ``cap`` training jets
    (fewer with its ``max_jets``)."""
    n = cap if spec.max_jets is None else min(spec.max_jets, cap)
    feats, mask, _ = _features(dataclasses.replace(spec, max_jets=n), prep, progress=False)
    return feats, mask


def _loaders(stage: str, spec: DataSpec, prep, tc: TrainConfig, seed: int, progress: bool,
             tokenizer=None) -> Loaders:
    """The training and validation loaders of one stage, in memory or streamed (see
    :func:`jetfm.train.data.use_streaming`). ``stage``: ``"tokenizer"`` or ``"backbone"``
    (then ``tokenizer`` encodes the in-memory jets; streamed AOJ jets are encoded per batch by
    the module)."""
    from jetfm.train.data import (
        FeatureDataset,
        SequenceDataset,
        expand_data,
        hdf5_files,
        make_loaders,
        reflect,
        split_indices,
        streaming_loaders,
        use_streaming,
    )

    if use_streaming(spec.data, spec.jets, spec.streaming, spec.max_jets, prep.n_max, stage,
                     spec.memory_budget_gb):
        paths = expand_data(spec.data) + (expand_data(spec.val_data)
                                          if spec.val_data is not None else [])
        tokens = [f.path for f in hdf5_files(paths) or [] if f.kind == "tokens"]
        if tokens and stage == "tokenizer":
            raise InputError("the tokenizer trains on jets (AOJ files), not on token files",
                             tokens[0])
        _check_token_files(tokens, tokenizer)
        if stage == "backbone" and tc.augment > 1:
            raise InputError(f"augment = {tc.augment} (reflected copies of the training jets) "
                             "needs the jets in memory; streamed training takes augment = 1")
        train_dl, val_dl, split, prov = streaming_loaders(
            spec.data, prep, tc.batch_size, tc.val_fraction, seed, tc.num_workers,
            spec.max_jets, spec.val_data, spec.buffer_size,
            pin_memory=tc.accelerator != "cpu" and torch.cuda.is_available())
        return Loaders(train_dl, val_dl, split, prov, prov["kind"])
    feats, mask, prov = _features(spec, prep, progress)
    val = None
    if spec.val_data is not None:
        vf, vm, vprov = _features(DataSpec(spec.val_data), prep, progress)
        val = (vf, vm)
        prov["validation_files"] = vprov["files"]
    cls: type = FeatureDataset
    if stage == "tokenizer":
        arrays = (feats, mask)
    else:
        cls = SequenceDataset

        def seqs(f, m):
            return (tokenizer.sequences(tokenizer.encode_arrays(f, m), m),)

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
    return Loaders(train_dl, val_dl, split, prov)


def _check_token_files(paths: list[str], tokenizer) -> None:
    """Token files must come from a tokenizer with the same codebook size and residual codes."""
    import h5py

    from jetfm.io.tokens import check_token_layout

    for p in paths:
        with h5py.File(p, "r") as h:
            attrs = dict(h.attrs)
        check_token_layout(attrs, tokenizer, p)


def _stage_info(prov: dict, split: dict, fit_info: dict, seed: int, preset: str,
                overrides: Sequence[str], out: str, tc: TrainConfig, **extra) -> dict:
    return {"data": prov, **split, **fit_info, "seed": seed, "preset": preset,
            "overrides": list(overrides), "run_dir": os.path.abspath(out),
            "training": dataclasses.asdict(tc), **extra}


def _run_info(loaders: Loaders, fit_info: dict, run: RunSpec, tc: TrainConfig,
              **extra) -> dict:
    """The provenance of one stage (:func:`_stage_info`); ``min_steps`` when it was asked for."""
    if run.min_steps > 0:
        extra["min_steps"] = run.min_steps
    return _stage_info(loaders.provenance, loaders.split, fit_info, run.seed, run.preset,
                       run.overrides, run.out, tc, **extra)


def _with_min_steps(cfg: OmniJetConfig, section: str, data: DataSpec,
                    run: RunSpec) -> OmniJetConfig:
    """``cfg`` with the training section ``section`` taking at least ``run.min_steps`` steps."""
    if run.min_steps <= 0:
        return cfg
    tc: Any = with_min_steps(getattr(cfg, section), data.n_jets(), run.min_steps)
    return dataclasses.replace(cfg, **{section: tc})


def _data_spec(data, jets, max_jets, streaming, val_data, memory_budget_gb,
               buffer_size) -> DataSpec:
    return DataSpec(data=data, jets=jets, max_jets=max_jets, val_data=val_data,
                    streaming=streaming, memory_budget_gb=memory_budget_gb,
                    buffer_size=buffer_size)


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
    spec = _data_spec(data, jets, max_jets, streaming, val_data, memory_budget_gb, buffer_size)
    return run_tokenizer(spec, RunSpec(out, preset, overrides, seed, resume, progress)).model_dir


def run_tokenizer(data: DataSpec, run: RunSpec) -> TrainResult:
    """:func:`train_tokenizer` on a DataSpec and a RunSpec; returns the model too."""
    from jetfm.train.modules import TokenizerModule, fit

    cfg = _with_min_steps(load_omnijet_config(run.preset, run.overrides),
                          "tokenizer_training", data, run)
    _start_run(run.out, cfg, run.resume)
    prep = cfg.preprocessing.build()
    tc = cfg.tokenizer_training
    loaders = _loaders("tokenizer", data, prep, tc, run.seed, run.progress)
    torch.manual_seed(run.seed)
    module = TokenizerModule(cfg.tokenizer, prep, tc)
    info = fit(module, loaders.train, loaders.val, run.out, run.seed, run.resume,
               progress=run.progress, callbacks=_stream_callbacks(loaders.kind))
    prov = _run_info(loaders, info, run, tc)
    if cfg.tokenizer.residual_codes:
        prov["residual_codes"] = _fit_residuals(module.model, data, prep, run.seed)
    model = OmniJetModel(cfg, tokenizer=module.model, provenance={"tokenizer": prov})
    return _finish(model, run.out, info)


#: training jets the residual codebook is fitted to (at most; their leading constituents)
RESIDUAL_JETS = 20_000


def _fit_residuals(tok, data: DataSpec, prep, seed: int, backbone=None) -> dict:
    """Fit ``tok``'s residual codebook (:meth:`VQVAETokenizer.fit_residual_codebook`) to the
    first :data:`RESIDUAL_JETS` training jets; returns what it measured. A ``backbone`` (grown
    by :func:`jetfm.omnijet.backbone.with_residual_tokens`) gets its residual tokens' rows of
    the code table."""
    feats, mask = _first_features(data, prep, RESIDUAL_JETS)
    tok.to("cpu", torch.float32)
    codes = tok.encode_arrays(feats, mask, residual=False)  # for the fit and the table
    info = tok.fit_residual_codebook(feats, mask, seed=seed, codes=codes)
    info["n_jets"] = int(len(mask))
    if backbone is not None and backbone.cfg.code_features:
        from jetfm.omnijet.backbone import code_table

        # the residual tokens' rows (their offsets, scaled as the codes' rows were on these
        # jets; the table ignores the residual index, so the plain codes give it); the code
        # rows the backbone was trained with stay
        table = code_table(codes, feats, mask, tok.latent_codebook(), tok.residual_vectors())
        first, end = backbone._residual_range()
        with torch.no_grad():
            backbone.code_table[first:end] = torch.from_numpy(table[first:end])
    return info


def add_residual_codes(tokenizer_dir: str, data: Sequence[str], out: str,
                       residual_codes: int = 256, residual_leading: int = 10, seed: int = 0,
                       max_jets: int | None = None, jets: Jets | None = None) -> str:
    """A trained tokenizer plus a residual codebook (``tokenizer.residual_codes``, fitted to the
    jets ``data`` or ``jets``), exported to ``out/model``; returns that folder. The VQ-VAE is
    unchanged. A backbone of ``tokenizer_dir`` comes along with its vocabulary grown
    (:func:`jetfm.omnijet.backbone.with_residual_tokens`: the new tokens' rows fresh), to be
    fine-tuned; a classifier does not."""
    base = load_pretrained(tokenizer_dir)
    tok = base.tokenizer.with_residual_codes(residual_codes, residual_leading)
    cfg = dataclasses.replace(base.config, tokenizer=tok.cfg).resolved()
    spec = _data_spec(data, jets, max_jets, False, None, None, None)
    prov = dict(base.provenance.get("tokenizer", {}))
    backbone, prov_all = None, {"tokenizer": prov}
    if base.backbone is not None:
        from jetfm.omnijet.backbone import with_residual_tokens

        backbone = with_residual_tokens(base.backbone, cfg.backbone, seed).eval()
        prov_all.update({k: v for k, v in base.provenance.items()
                         if k in ("pretrain", "finetune", "scratch")})
    prov["residual_codes"] = _fit_residuals(tok, spec, base.preprocessing, seed, backbone)
    prov["residual_codes"]["from"] = os.path.abspath(tokenizer_dir)
    os.makedirs(out, exist_ok=True)
    save_config(cfg, out)
    model = OmniJetModel(cfg, tokenizer=tok.eval(), backbone=backbone, provenance=prov_all)
    return model.save_pretrained(os.path.join(out, "model"))


def _stream_callbacks(kind: str | None) -> list:
    """Streamed data need SetEpoch: a new block order every epoch."""
    from jetfm.train.streaming import SetEpoch

    return [] if kind is None else [SetEpoch()]


#: the training section of the config each backbone stage trains with
BACKBONE_SECTIONS = {"pretrain": "pretraining", "finetune": "finetuning",
                     "scratch": "finetuning"}


def _train_backbone(base: OmniJetModel, cfg: OmniJetConfig, stage: str, data: DataSpec,
                    run: RunSpec, init_state: dict | None = None, freeze_backbone: bool = False,
                    extra: dict | None = None) -> TrainResult:
    """Train the backbone of stage ``stage`` (:data:`BACKBONE_SECTIONS`) on the frozen tokenizer
    of ``base``: from ``init_state`` (fine-tuning) or fresh."""
    from jetfm.train.modules import BackboneModule, fit

    section = BACKBONE_SECTIONS[stage]
    cfg = _with_min_steps(cfg, section, data, run)
    tc = getattr(cfg, section)
    _start_run(run.out, cfg, run.resume)
    tok = base.tokenizer
    # base's, or with a new sequence order (prong_seeds): the tokenizer reads jets with it, and
    # token files are checked against it
    prep = tok.preprocessing = cfg.preprocessing.build()
    loaders = _loaders("backbone", data, prep, tc, run.seed, run.progress, tokenizer=tok)
    torch.manual_seed(run.seed)
    # streamed AOJ jets are tokenized per batch by the frozen tokenizer, on the training device
    module = BackboneModule(cfg.backbone, tc, freeze_backbone,
                            tokenizer=tok if loaders.kind == "aoj" else None)
    if init_state is not None:
        module.model.load_state_dict(init_state)
        if cfg.backbone.multiplicity:  # the multiplicities of the jets it is fine-tuned on
            module.model.multiplicity_counts.zero_()
    elif cfg.backbone.code_features:
        table = _code_table(tok, data, prep)
        if table.shape[1] != cfg.backbone.code_features:
            raise InputError(f"backbone.code_features must be {table.shape[1]} for this "
                             f"tokenizer (constituent features + latent size), got "
                             f"{cfg.backbone.code_features}")
        module.model.code_table.copy_(torch.from_numpy(table))
    info = fit(module, loaders.train, loaders.val, run.out, run.seed, run.resume,
               progress=run.progress, callbacks=_stream_callbacks(loaders.kind))
    prov_all = dict(base.provenance)
    prov_all[stage] = _run_info(loaders, info, run, tc, freeze_backbone=freeze_backbone,
                                **(extra or {}))
    model = OmniJetModel(cfg, tokenizer=tok, backbone=module.model.eval(), provenance=prov_all)
    return _finish(model, run.out, info)


#: training jets the code table of a fresh backbone is computed from (at most)
CODE_TABLE_JETS = 20_000


def _code_table(tok, data: DataSpec, prep) -> np.ndarray:
    """The code table (:func:`jetfm.omnijet.backbone.code_table`) from the first training jets."""
    from jetfm.omnijet.backbone import code_table
    from jetfm.train.data import expand_data, hdf5_files

    if data.jets is None and any(f.kind == "tokens"
                                 for f in hdf5_files(expand_data(data.data)) or []):
        raise InputError("a backbone with code features (backbone.code_features > 0) is first "
                         "trained on jets (AOJ or JetClass files), not on token files")
    feats, mask = _first_features(data, prep, CODE_TABLE_JETS)
    return code_table(tok.encode_arrays(feats, mask), feats, mask, tok.latent_codebook(),
                      tok.residual_vectors())


#: the one preprocessing setting a new backbone may choose over its tokenizer's: the order of
#: the constituents in its sequences (the tokenizer itself is blind to it)
ORDER_KEY = "preprocessing.prong_seeds"


def _with_tokenizer_of(base: OmniJetModel, preset: str, overrides: Sequence[str],
                       backbone_from_base: bool = False) -> OmniJetConfig:
    """The run's configuration with the tokenizer and preprocessing of ``base``; with
    ``backbone_from_base`` (fine-tuning) its backbone too, else (a new backbone) the sequence
    order (``preprocessing.prong_seeds``) may be set by ``overrides``."""
    cfg = load_omnijet_config(preset, overrides)
    prep = base.config.preprocessing
    if not backbone_from_base and any(o.split("=", 1)[0] == ORDER_KEY for o in overrides):
        prep = dataclasses.replace(prep, prong_seeds=cfg.preprocessing.prong_seeds)
    repl: dict[str, Any] = {"tokenizer": base.config.tokenizer, "preprocessing": prep}
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
    spec = _data_spec(data, jets, max_jets, streaming, val_data, memory_budget_gb, buffer_size)
    run = RunSpec(out, preset, overrides, seed, resume, progress)
    return run_pretrain(tokenizer_dir, spec, run).model_dir


def run_pretrain(tokenizer_dir: str, data: DataSpec, run: RunSpec) -> TrainResult:
    """:func:`pretrain` on a DataSpec and a RunSpec; returns the model too."""
    base = load_pretrained(tokenizer_dir)
    cfg = _with_tokenizer_of(base, run.preset, run.overrides)
    return _train_backbone(base, cfg, "pretrain", data, run,
                           extra={"tokenizer_dir": os.path.abspath(tokenizer_dir)})


def finetune(from_dir: str, data: Sequence[str], out: str, preset: str = "small",
             overrides: Sequence[str] = (), seed: int = 0, freeze_backbone: bool = False,
             max_jets: int | None = None, jets: Jets | None = None, resume: bool = True,
             progress: bool = True, streaming: bool | None = None,
             val_data: Sequence[str] | None = None, memory_budget_gb: float | None = None,
             buffer_size: int | None = None) -> str:
    """Fine-tune a pre-trained model: every weight of its backbone and head is loaded and every
    layer trained (``freeze_backbone``: only the head), with the ``finetuning`` settings; the
    tokenizer stays frozen. Returns the model directory. Streaming as in :func:`pretrain`."""
    spec = _data_spec(data, jets, max_jets, streaming, val_data, memory_budget_gb, buffer_size)
    run = RunSpec(out, preset, overrides, seed, resume, progress)
    return run_finetune(from_dir, spec, run, freeze_backbone).model_dir


def run_finetune(from_dir: str, data: DataSpec, run: RunSpec,
                 freeze_backbone: bool = False) -> TrainResult:
    """:func:`finetune` on a DataSpec and a RunSpec; returns the model too."""
    base = load_pretrained(from_dir)
    if base.backbone is None:
        raise InputError("model has no backbone to fine-tune (a tokenizer only?)", from_dir)
    cfg = _with_tokenizer_of(base, run.preset, run.overrides, backbone_from_base=True)
    return _train_backbone(base, cfg, "finetune", data, run,
                           init_state=base.backbone.state_dict(), freeze_backbone=freeze_backbone,
                           extra={"from_dir": os.path.abspath(from_dir)})


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
    spec = _data_spec(data, jets, max_jets, streaming, val_data, memory_budget_gb, buffer_size)
    run = RunSpec(out, preset, overrides, seed, resume, progress)
    return run_from_scratch(tokenizer_dir, spec, run).model_dir


def run_from_scratch(tokenizer_dir: str, data: DataSpec, run: RunSpec) -> TrainResult:
    """:func:`train_from_scratch` on a DataSpec and a RunSpec; returns the model too."""
    base = load_pretrained(tokenizer_dir)
    base = OmniJetModel(base.config, tokenizer=base.tokenizer,
                        provenance={"tokenizer": base.provenance.get("tokenizer", {})})
    cfg = _with_tokenizer_of(base, run.preset, run.overrides)
    return _train_backbone(base, cfg, "scratch", data, run,
                           extra={"tokenizer_dir": os.path.abspath(tokenizer_dir)})
