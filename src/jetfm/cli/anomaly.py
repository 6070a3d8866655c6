"""``jetfm images``, ``jetfm anomaly train|evaluate|export`` and ``jetfm simulate dark-showers``."""
from __future__ import annotations

import json
import os

from jetfm.cli.argtypes import integer, number, pileup, positive_int, seed


def register(sub) -> None:
    im = sub.add_parser("images", help="turn simulated dark-shower events (deposits .npz) into "
                        "72 x 58 whole-event images (.npz, the released CoDAE layout)")
    im.add_argument("events", nargs="+", help="event files from `jetfm simulate dark-showers`")
    im.add_argument("-o", "--output", required=True, help="output image file (.npz)")
    im.add_argument("--pool", type=positive_int, default=5,
                    help="sum-pooling factor (default 5: 72 x 58)")
    im.set_defaults(func=cmd_images)

    p = sub.add_parser("anomaly", help="CoDAE anomaly detection on event images")
    ss = p.add_subparsers(dest="anomaly_command", metavar="COMMAND", parser_class=type(p))
    t = ss.add_parser("train", help="train CoDAE and the plain auto-encoder on QCD images")
    t.add_argument("--train", nargs="+", default=None, metavar="PATH",
                   help="image files or folders (QCD events are used); sets data.train")
    t.add_argument("--config", default="codae", help="preset (codae, codae_small, codae_quick) "
                   "or YAML file (default codae: the paper's configuration)")
    t.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="config overrides, e.g. train.epochs=5 data.input=occupancy")
    t.add_argument("--seed", type=seed, required=True, help="random seed")
    t.add_argument("--name", default="codae", help="run folder name under --runs (default codae)")
    t.add_argument("--runs", default="runs", help="folder of run folders (default runs)")
    t.add_argument("--resume", action="store_true", help="continue from last_state.pt")
    t.add_argument("--overwrite", action="store_true",
                   help="start afresh in a run folder trained with other settings (without it "
                        "such a rerun is refused)")
    t.add_argument("--no-progress", action="store_true")
    _threads(t)
    t.set_defaults(func=cmd_train)

    e = ss.add_parser("evaluate", help="score QCD and signal images: AUC and FPR@40 per mass "
                      "point, ROC and Z_m plots, report")
    e.add_argument("run", nargs="+", help="training run folder(s) (with codae/ and/or ae/) or "
                   "checkpoint folder(s); their models are evaluated together")
    e.add_argument("--background", nargs="+", required=True, metavar="PATH",
                   help="image files/folders; their QCD events are the background")
    e.add_argument("--signal", nargs="+", required=True, metavar="PATH",
                   help="image files/folders; their SUEP and SVJ events are the signal")
    e.add_argument("-o", "--output", default=None, help="output folder (default RUN/eval)")
    e.add_argument("--title", default="CoDAE anomaly detection")
    _threads(e)
    e.set_defaults(func=cmd_evaluate)

    x = ss.add_parser("export", help="export a trained CoDAE/AE (full model and the Z_m encoder) "
                      "to ONNX for ONNX Runtime; `anomaly evaluate DIR` scores with the export")
    x.add_argument("--model", required=True, metavar="RUN",
                   help="training run folder (codae/, ae/) or one checkpoint folder")
    x.add_argument("--format", default="onnx", choices=["onnx"], help="export format (onnx)")
    x.add_argument("-o", "--output", required=True, metavar="DIR",
                   help="output folder (new or empty; written atomically)")
    x.add_argument("--precision", default="fp32",
                   help="fp32 (default), fp16, int8-dynamic or int8-static (needs --calibration)")
    x.add_argument("--calibration", nargs="+", default=None, metavar="PATH",
                   help="QCD image files/folders calibrating int8-static; their first 256 QCD "
                   "events also check the export against PyTorch")
    _threads(x)
    x.set_defaults(func=cmd_export)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _threads(p) -> None:
    p.add_argument("--threads", type=integer(0, 1024), default=0,
                   help="torch CPU threads (default: torch's "
                   "choice; 1 is much faster on a machine shared with other jobs)")


def _set_threads(args) -> None:
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)


def register_simulate(simulate_subparsers) -> None:
    """Add ``dark-showers`` to ``jetfm simulate``."""
    d = simulate_subparsers.add_parser(
        "dark-showers", help="QCD multijet, semi-visible-jet (SVJ) or SUEP-like events with "
        "Pythia 8's Hidden Valley, calorimeter/track deposits for `jetfm images`")
    d.add_argument("--signal", required=True, choices=["svj", "suep", "qcd"])
    d.add_argument("--mass", type=number(0.0, 1e5, lo_open=True), default=None,
                   help="mediator mass in GeV (default: 3100 SVJ, 400 SUEP; ignored for qcd)")
    d.add_argument("--events", type=positive_int, required=True, help="number of events")
    d.add_argument("--seed", type=seed, required=True)
    d.add_argument("--pileup", type=pileup, default=0.0, metavar="MU",
                   help="mean number of pile-up interactions (Poisson; default 0)")
    d.add_argument("--images", action="store_true",
                   help="write 72 x 58 images directly instead of deposits")
    d.add_argument("-o", "--output", required=True, help="output .npz")
    d.add_argument("--no-progress", action="store_true")
    d.set_defaults(func=cmd_simulate_dark_showers)


def cmd_images(args) -> int:
    from jetfm.io.output import refuse_overwrite
    from jetfm.simulate.dark_showers import deposits_to_images

    refuse_overwrite(args.output, args.events, option="-o output")
    out = deposits_to_images(args.events, args.output, pool=args.pool)
    print(json.dumps(out))
    return 0


def cmd_train(args) -> int:
    from jetfm.codae.config import AnomalyConfig
    from jetfm.codae.training import train
    from jetfm.config import load_config
    from jetfm.errors import check_output_dir

    overrides = list(args.set)
    if args.train:
        overrides.append("data.train=" + json.dumps(args.train))
    cfg = load_config(AnomalyConfig, args.config, overrides)
    _set_threads(args)
    out = os.path.join(args.runs, args.name)
    check_output_dir(out, "--runs/--name run folder")
    with _anomaly_run(out, cfg, args):
        summary = train(cfg, out, args.seed, progress=not args.no_progress,
                        resume=args.resume and not args.overwrite)
    print(json.dumps({"run": out, **{k: {kk: v[kk] for kk in ("parameters", "steps",
                                                              "best_valid_ssim", "epochs_run")}
                                     for k, v in summary["models"].items()}}))
    return 0


#: what a CoDAE training writes in its run folder
ANOMALY_RUN_ENTRIES = ("codae", "ae", "config.yaml", "train_summary.json")


def _anomaly_run(out: str, cfg, args):
    """Hold the run folder for the whole training; refuse training files it would overwrite
    and a rerun with other settings (without --overwrite)."""
    import dataclasses

    from jetfm.io.output import RUN_LOCK, RUN_RECORD, refuse_overwrite, run_folder

    train_files = [os.path.abspath(p) for p in cfg.data.train]
    settings = dataclasses.asdict(cfg)
    settings["data"]["train"] = train_files
    owned = set(ANOMALY_RUN_ENTRIES) | {RUN_LOCK, RUN_RECORD}
    refuse_overwrite(out, train_files, owned=owned.__contains__, option="run folder")
    return run_folder(out, {"config": settings, "seed": args.seed}, overwrite=args.overwrite,
                      fresh=("codae", "ae", "train_summary.json"), command="jetfm anomaly train",
                      started=lambda d: any(os.path.exists(os.path.join(d, m, "config.json"))
                                            for m in ("codae", "ae")))


def cmd_evaluate(args) -> int:
    from jetfm.codae.report import metrics_table
    from jetfm.codae.scoring import evaluate
    from jetfm.errors import check_output_dir

    _set_threads(args)
    out = check_output_dir(args.output or os.path.join(args.run[0], "eval"), "-o output folder")
    metrics = evaluate(args.run, args.background, args.signal, out, title=args.title)
    print(metrics_table(metrics))
    print(json.dumps({"output": out, "n_background": metrics["n_background"],
                      "n_signal": metrics["n_signal"]}))
    return 0


def cmd_export(args) -> int:
    from jetfm.codae.export import export_run

    _set_threads(args)
    res = export_run(args.model, args.output, args.precision, args.calibration)
    print(json.dumps({"output": args.output, "format": args.format, "precision": args.precision,
                      "models": {k: {"files": sorted(v["files"].values()),
                                     "check_max_rel_diff": v["check_max_rel_diff"]}
                                 for k, v in res.items()}}))
    return 0


def cmd_simulate_dark_showers(args) -> int:
    from jetfm.simulate.dark_showers import simulate_dark_showers

    out = simulate_dark_showers(args.signal, args.events, args.seed, args.output, mass=args.mass,
                                pileup=args.pileup, images=args.images,
                                progress=not args.no_progress)
    print(json.dumps(out))
    return 0
