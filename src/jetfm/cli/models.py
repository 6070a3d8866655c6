"""OmniJet-alpha commands: ``tokenizer train|report``, ``tokenize``, ``pretrain``, ``finetune``,
``sample``, ``info``. Thin: parse, call :mod:`jetfm.train.api`, print."""
from __future__ import annotations

import contextlib
import json
import os

from jetfm.cli.argtypes import integer, number, positive_float, positive_int, seed, workers


def _training_args(p, data_help: str) -> None:
    p.add_argument("--data", nargs="+", required=True, metavar="FILE", help=data_help)
    p.add_argument("-o", "--out", required=True, help="run folder (the model goes to OUT/model)")
    p.add_argument("--preset", default="small", help="paper, small, quick, or a YAML file")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set pretraining.max_epochs=3")
    p.add_argument("--seed", type=seed, default=0)
    p.add_argument("--max-jets", type=positive_int, default=None, help="use at most N jets")
    p.add_argument("--no-resume", action="store_true",
                   help="start afresh instead of resuming from OUT/checkpoints/last.ckpt")
    p.add_argument("--overwrite", action="store_true",
                   help="start afresh in a run folder started with other settings (its "
                        "checkpoints and model are removed); without it such a rerun is refused")
    s = p.add_argument_group("data larger than memory")
    m = s.add_mutually_exclusive_group()
    m.add_argument("--streaming", dest="streaming", action="store_true", default=None,
                   help="stream the AOJ (or token) files in chunks through a shuffle buffer "
                        "instead of loading them; default: automatic, when the jets would take "
                        "more than the memory budget (token files always stream)")
    m.add_argument("--in-memory", dest="streaming", action="store_false",
                   help="load all jets into memory whatever their size")
    s.add_argument("--val-data", nargs="+", default=None, metavar="FILE",
                   help="validate on these files instead of a held-out part of --data")
    s.add_argument("--memory-budget", type=positive_float, default=None, metavar="GB",
                   help="stream when the in-memory data would exceed GB (default: "
                        "$JETFM_MEMORY_BUDGET_GB, else a quarter of this machine's memory)")
    s.add_argument("--buffer-size", type=integer(1, 1 << 20), default=None, metavar="JETS",
                   help="shuffle buffer per data-loader worker when streaming (default 16384)")
    g = p.add_argument_group("scale out (Lightning DDP; see examples/cluster/)")
    g.add_argument("--devices", type=workers, default=None,
                   help="processes (GPUs) per node; with --devices or --nodes the accelerator "
                        "defaults to auto (GPU if present) and the strategy to ddp")
    g.add_argument("--nodes", type=workers, default=None, help="number of nodes")
    g.add_argument("--strategy", default=None, help="Lightning strategy: ddp (default when "
                   "distributed), ddp_find_unused_parameters_true, auto")
    g.add_argument("--accelerator", default=None, help="cpu, gpu or auto")
    g.add_argument("--accumulate-grad-batches", type=positive_int, default=None, metavar="K",
                   help="one optimiser step every K batches")
    g.add_argument("--precision", default=None,
                   help="32-true, bf16-mixed (bf16 autocast, quantiser in fp32) or auto "
                        "(bf16-mixed on a GPU with bf16, else 32-true)")


#: what a training run writes (or removes) in its run folder
RUN_ENTRIES = ("checkpoints", "model", "logs", "tensorboard", "config.yaml")


def _run_started(out: str) -> bool:
    """The folder holds a checkpoint or an exported model of an earlier run."""
    ckpt = os.path.join(out, "checkpoints")
    return (os.path.isdir(ckpt) and bool(os.listdir(ckpt))) or \
        os.path.exists(os.path.join(out, "model", "config.json"))


@contextlib.contextmanager
def _training_run(args, stage: str, models: dict[str, str], **extra):
    """Hold the run folder ``args.out`` for the whole training: refuse an output that would
    overwrite an input, a second run on the same folder, and a rerun with other settings
    (without --overwrite)."""
    from jetfm.io.output import (
        RUN_LOCK,
        RUN_RECORD,
        contents_digest,
        refuse_overwrite,
        run_folder,
    )
    from jetfm.train.data import expand_data

    def files(data):
        return None if data is None else [os.path.abspath(p) for p in expand_data(data)]

    settings = {"stage": stage, "data": files(args.data), "val_data": files(args.val_data),
                "seed": args.seed, "max_jets": args.max_jets,
                "preset": os.path.abspath(args.preset) if os.path.isfile(args.preset)
                else args.preset, "overrides": list(args.overrides),
                **{k: os.path.abspath(v) for k, v in models.items()}, **extra}
    inputs = settings["data"] + (settings["val_data"] or [])
    # the files' contents too: a data file rewritten under the same name is other data
    settings["data_contents"] = contents_digest(inputs)
    owned = set(RUN_ENTRIES) | {RUN_LOCK, RUN_RECORD}
    refuse_overwrite(args.out, inputs,
                     folders=models.values(), owned=owned.__contains__, option="-o run folder")
    with run_folder(args.out, settings, overwrite=args.overwrite or args.no_resume,
                    fresh=("checkpoints", "model"), started=_run_started,
                    command=f"jetfm {stage}"):
        yield


def _resume(args) -> bool:
    return not (args.no_resume or args.overwrite)


def _stream_kwargs(args) -> dict:
    """The streaming flags as keyword arguments of the training functions."""
    _check_positive(args.memory_budget, "--memory-budget")
    _check_positive(args.buffer_size, "--buffer-size")
    return {"streaming": args.streaming, "val_data": args.val_data,
            "memory_budget_gb": args.memory_budget, "buffer_size": args.buffer_size}


def _scale_overrides(args, section: str) -> list[str]:
    """The scale-out flags as config overrides of ``section`` (after the --set ones)."""
    out = list(args.overrides)
    distributed = args.devices is not None or args.nodes is not None
    vals = {"devices": args.devices, "num_nodes": args.nodes,
            "strategy": args.strategy or ("ddp" if distributed else None),
            "accelerator": args.accelerator or ("auto" if distributed else None),
            "accumulate_grad_batches": args.accumulate_grad_batches, "precision": args.precision}
    for key, val in vals.items():
        if val is not None:
            if key in ("devices", "num_nodes", "accumulate_grad_batches"):
                _check_positive(val, "--" + key.replace("_", "-"))
            out.append(f"{section}.{key}={val}")
    return out


def register(sub) -> None:
    tok = sub.add_parser("tokenizer", help="train or evaluate the VQ-VAE tokenizer")
    tsub = tok.add_subparsers(dest="tokenizer_command", metavar="ACTION",
                              parser_class=type(tok))
    p = tsub.add_parser("train", help="train the tokenizer on AOJ/JetClass files")
    _training_args(p, "AOJ .h5 or JetClass .root/.parquet files (globs, .txt lists)")
    p.set_defaults(func=cmd_tokenizer_train)
    p = tsub.add_parser("report", help="codebook usage, perplexity and resolution of a tokenizer")
    p.add_argument("--model", required=True, help="model directory")
    p.add_argument("--data", nargs="+", required=True, metavar="FILE")
    p.add_argument("-o", "--out", required=True, help="output folder (report.json, PNG plots)")
    p.add_argument("--max-jets", type=positive_int, default=20_000)
    p.set_defaults(func=cmd_tokenizer_report)
    p = tsub.add_parser("residuals", help="give a trained tokenizer residual codes: a second, "
                                          "finer token for each jet's leading constituents")
    p.add_argument("--model", required=True, help="model directory with the tokenizer")
    p.add_argument("--data", nargs="+", required=True, metavar="FILE",
                   help="jets to fit the residual codes to (the tokenizer's training jets)")
    p.add_argument("-o", "--out", required=True, help="output folder (the model goes to OUT/model)")
    p.add_argument("--codes", type=positive_int, default=256, help="residual codes (default 256)")
    p.add_argument("--leading", type=positive_int, default=10,
                   help="leading constituents that get one (default 10)")
    p.add_argument("--seed", type=seed, default=0)
    p.add_argument("--max-jets", type=positive_int, default=None)
    p.set_defaults(func=cmd_tokenizer_residuals)
    tok.set_defaults(func=lambda args: tok.print_help() or 0)

    p = sub.add_parser("tokenize", help="jets -> token sequences (HDF5, jetfm-tokens format)")
    p.add_argument("input", help="AOJ or JetClass file")
    p.add_argument("-o", "--output", required=True, help="output .h5")
    p.add_argument("--model", required=True, help="model directory with the tokenizer")
    p.add_argument("--max-jets", type=positive_int, default=None)
    p.set_defaults(func=cmd_tokenize)

    p = sub.add_parser("pretrain", help="train the generative backbone on tokenized jets")
    _training_args(p, "AOJ/JetClass files, or token files of `jetfm tokenize`, to pre-train on")
    p.add_argument("--tokenizer", required=True, help="model directory of a trained tokenizer")
    p.set_defaults(func=cmd_pretrain)

    p = sub.add_parser("finetune", help="fine-tune a pre-trained backbone (every layer)")
    _training_args(p, "AOJ/JetClass files of the target jets")
    p.add_argument("--from", dest="from_dir", required=True, help="pre-trained model directory")
    p.add_argument("--freeze-backbone", action="store_true",
                   help="train only the output head; embedding and blocks stay frozen")
    p.add_argument("--from-scratch", action="store_true",
                   help="ignore the backbone weights of --from (keep its tokenizer): the "
                        "from-scratch baseline")
    p.set_defaults(func=cmd_finetune)

    p = sub.add_parser("sample", help="generate jets and write them in AOJ format")
    p.add_argument("--model", required=True, help="model directory")
    p.add_argument("-n", type=positive_int, required=True, help="number of jets")
    p.add_argument("-o", "--output", required=True, help="output AOJ .h5")
    p.add_argument("--seed", type=seed, default=0)
    p.add_argument("--batch-size", type=positive_int, default=None)
    p.add_argument("--temperature", type=positive_float, default=None,
                   help="default 1 (plain multinomial)")
    p.add_argument("--top-k", type=positive_int, default=None,
                   help="sample among the k likeliest tokens")
    p.add_argument("--top-p", type=number(0.0, 1.0, lo_open=True), default=None,
                   help="nucleus sampling: among the likeliest tokens holding this probability")
    p.add_argument("--multiplicity", type=positive_int, default=None, metavar="N",
                   help="every jet with N constituents (models trained with "
                        "backbone.multiplicity; default: drawn from their training jets)")
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("info", help="what a model is: sizes, parameters, training data")
    p.add_argument("model", help="model directory (or run folder)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_info)


def _check_positive(value, name: str) -> None:
    from jetfm.errors import InputError

    if value is not None and value <= 0:
        raise InputError(f"{name} must be positive, got {value}")


def _check_run(args, section: str) -> None:
    """Refuse bad settings before the run folder is touched: a folder that cannot be made, and
    any invalid config value of the preset with its overrides (one line naming the key)."""
    from jetfm.errors import check_output_dir
    from jetfm.omnijet.config import load_omnijet_config

    check_output_dir(args.out, "-o run folder")
    load_omnijet_config(args.preset, _scale_overrides(args, section))


def cmd_tokenizer_train(args) -> int:
    from jetfm.train.api import train_tokenizer

    _check_positive(args.max_jets, "--max-jets")
    _check_run(args, "tokenizer_training")
    with _training_run(args, "tokenizer", {}):
        d = train_tokenizer(args.data, args.out, args.preset,
                            _scale_overrides(args, "tokenizer_training"), args.seed,
                            args.max_jets, resume=_resume(args), **_stream_kwargs(args))
    print(f"tokenizer -> {d}")
    return 0


def cmd_pretrain(args) -> int:
    from jetfm.train.api import pretrain

    _check_positive(args.max_jets, "--max-jets")
    _check_run(args, "pretraining")
    with _training_run(args, "pretrain", {"tokenizer": args.tokenizer}):
        d = pretrain(args.data, args.out, args.tokenizer, args.preset,
                     _scale_overrides(args, "pretraining"), args.seed,
                     args.max_jets, resume=_resume(args), **_stream_kwargs(args))
    print(f"pre-trained model -> {d}")
    return 0


def cmd_finetune(args) -> int:
    from jetfm.errors import InputError
    from jetfm.train.api import finetune, train_from_scratch

    _check_positive(args.max_jets, "--max-jets")
    if args.from_scratch and args.freeze_backbone:
        raise InputError("--freeze-backbone and --from-scratch exclude each other")
    _check_run(args, "finetuning")
    with _training_run(args, "scratch" if args.from_scratch else "finetune",
                       {"from": args.from_dir}, freeze_backbone=args.freeze_backbone):
        if args.from_scratch:
            d = train_from_scratch(args.from_dir, args.data, args.out, args.preset,
                                   _scale_overrides(args, "finetuning"),
                                   args.seed, args.max_jets, resume=_resume(args),
                                   **_stream_kwargs(args))
        else:
            d = finetune(args.from_dir, args.data, args.out, args.preset,
                         _scale_overrides(args, "finetuning"), args.seed,
                         args.freeze_backbone, args.max_jets, resume=_resume(args),
                         **_stream_kwargs(args))
    print(f"fine-tuned model -> {d}")
    return 0


def cmd_sample(args) -> int:
    import time

    import numpy as np

    from jetfm.errors import check_writable
    from jetfm.io.aoj import write_aoj
    from jetfm.io.output import refuse_overwrite
    from jetfm.omnijet.model import sample

    _check_positive(args.n, "-n")
    _check_positive(args.batch_size, "--batch-size")
    _check_positive(args.temperature, "--temperature")
    _check_positive(args.top_k, "--top-k")
    out = check_writable(args.output)
    refuse_overwrite(out, folders=[args.model], option="-o output")
    t0 = time.perf_counter()
    jets = sample(args.model, args.n, args.seed, args.batch_size, args.temperature, args.top_k,
                  top_p=args.top_p, multiplicity=args.multiplicity)
    dt = time.perf_counter() - t0
    attrs = {"generator": jets.meta["generator"], "model": jets.meta["model"],
             "seed": args.seed, "batch_size": jets.meta["batch_size"],
             "temperature": jets.meta["temperature"], "top_k": jets.meta["top_k"],
             "top_p": jets.meta["top_p"], "multiplicity": jets.meta["multiplicity"]}
    # generated constituents carry no species: charge 0 and pdgId 0 ("unknown"); the track
    # columns get the writer's neutral defaults (-1)
    zeros = np.zeros(jets.mask.shape, np.float32)
    write_aoj(out, jets.with_constituent_columns(charge=zeros, pdgId=zeros), attrs)
    print(f"{len(jets)} jets in {dt:.1f} s ({len(jets) / dt:.0f} jets/s) -> {out}")
    return 0


def cmd_info(args) -> int:
    from jetfm.omnijet.model import describe

    info = describe(args.model)
    if args.json:
        print(json.dumps(info))
        return 0
    cfg = info["config"]
    q = cfg["tokenizer"]["quantizer"]
    t, b = cfg["tokenizer"], cfg["backbone"]
    print(f"{os.path.abspath(args.model)}: OmniJet-alpha ({info['format']} v{info['version']})")
    print(f"  tokenizer   NormFormer VQ-VAE, width {t['width']}, {t['enc_blocks']}+"
          f"{t['dec_blocks']} blocks, codebook {q['codebook_size']} x {q['dim']}: "
          f"{info['parameters']['tokenizer']:,} parameters")
    if t.get("residual_codes"):
        print(f"              + {t['residual_codes']} residual codes for the "
              f"{t['residual_leading']} leading constituents")
    if info["has_backbone"]:
        print(f"  backbone    GPT {'pre' if b['pre_ln'] else 'post'}-LN, dim {b['dim']}, "
              f"{b['n_blocks']} blocks, {b['heads']} heads, vocabulary {b['vocab_size']}: "
              f"{info['parameters']['backbone']:,} parameters")
    else:
        print("  backbone    none (tokenizer only)")
    p = cfg["preprocessing"]
    print(f"  inputs      ln(pT/GeV) - {p['pt_shift']}, {p['eta_scale']} eta_rel, "
          f"{p['phi_scale']} phi_rel; |rel| < {p['max_rel']}; up to {p['n_max']} constituents")
    for stage, s in info["provenance"].items():
        files = ", ".join(os.path.basename(f["path"]) for f in s.get("data", {}).get("files", []))
        files = files or ("jets given in memory" if s.get("data", {}).get("in_memory") else "?")
        val = s.get("best_val_loss")
        files += " (streamed)" if s.get("data", {}).get("streaming") else ""
        print(f"  {stage:<11} {s.get('n_train', '?')} train / {s.get('n_val', '?')} val jets "
              f"from {files}; {s.get('epochs', '?')} epochs, {s.get('steps', '?')} steps, "
              f"best val loss {'?' if val is None else f'{val:.4f}'}, seed {s.get('seed')}")
    return 0


#: jets read and encoded at a time by ``jetfm tokenize``
TOKENIZE_CHUNK = 20_000


def cmd_tokenize(args) -> int:
    import numpy as np
    from tqdm import tqdm

    from jetfm.errors import InputError, check_writable
    from jetfm.io import count_jets, iter_jets
    from jetfm.io.output import refuse_overwrite
    from jetfm.io.tokens import write_tokens
    from jetfm.omnijet.model import load_pretrained

    _check_positive(args.max_jets, "--max-jets")
    out = check_writable(args.output)
    refuse_overwrite(out, [args.input], folders=[args.model], option="-o output")
    model = load_pretrained(args.model)
    n = count_jets(args.input)
    n = n if args.max_jets is None else min(n, args.max_jets)
    # read and encode in chunks: only the token sequences of the whole file stay in memory
    # (int32, at most 0.5 kB per jet; write_tokens briefly holds them as int64), not the jets
    # themselves (6.6 kB per AOJ jet)
    parts = []
    with tqdm(total=n, unit="jet", desc="tokenizing") as bar:
        for jets in iter_jets(args.input, TOKENIZE_CHUNK, stop=n):
            codes, mask = model.tokenizer.encode(jets)
            s = model.tokenizer.sequences(codes, mask)
            parts.append(s[:, :int((s >= 0).sum(1).max())].astype(np.int32))
            bar.update(len(jets))
    if not parts:
        raise InputError("the file holds no jets", args.input)
    seqs = np.full((sum(len(p) for p in parts), max(p.shape[1] for p in parts)), -1, np.int32)
    row = 0
    for p in parts:
        seqs[row:row + len(p), :p.shape[1]] = p
        row += len(p)
    del parts
    write_tokens(out, seqs, model.codebook_size,
                 {"source": os.path.abspath(args.input), "model": os.path.abspath(args.model)},
                 residual_codes=model.tokenizer.residual_codes,
                 prong_seeds=model.preprocessing.prong_seeds)
    print(f"{len(seqs)} jets, {int((seqs >= 0).sum())} tokens -> {out}")
    return 0


def cmd_tokenizer_residuals(args) -> int:
    from jetfm.errors import check_output_dir
    from jetfm.io.output import refuse_overwrite
    from jetfm.train.api import add_residual_codes

    check_output_dir(args.out, "-o output folder")
    refuse_overwrite(args.out, args.data, folders=[args.model], option="-o output folder")
    d = add_residual_codes(args.model, args.data, args.out, args.codes, args.leading, args.seed,
                           args.max_jets)
    from jetfm.omnijet.model import load_pretrained

    model = load_pretrained(d)
    info = model.provenance["tokenizer"]["residual_codes"]
    print(f"{args.codes} residual codes for the {args.leading} leading constituents: rms error "
          f"of their features {_fmt(info['rms_before'])} -> {_fmt(info['rms_after'])}")
    print(("model (tokenizer and backbone, to fine-tune)" if model.backbone is not None
           else "tokenizer") + f" -> {d}")
    return 0


def _fmt(values) -> str:
    return "(" + ", ".join(f"{v:.3f}" for v in values) + ")"


def cmd_tokenizer_report(args) -> int:
    from jetfm.errors import check_output_dir
    from jetfm.io.output import refuse_overwrite
    from jetfm.train.report import tokenizer_report

    _check_positive(args.max_jets, "--max-jets")
    check_output_dir(args.out, "-o output folder")
    refuse_overwrite(args.out, args.data, folders=[args.model], option="-o output folder")
    res = tokenizer_report(args.model, args.data, args.out, args.max_jets)
    print(json.dumps({k: v for k, v in res.items() if not isinstance(v, dict)}, indent=1))
    print(f"report -> {args.out}")
    return 0
