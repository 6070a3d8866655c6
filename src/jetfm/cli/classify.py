"""Jet classification with OmniJet-alpha: ``classify train|evaluate|predict|scan``. Thin: parse,
call :mod:`jetfm.omnijet.classification` and :mod:`jetfm.evaluate.classification`, print."""
from __future__ import annotations

import argparse
import json
import os

from jetfm.cli.argtypes import nonneg_int, positive_int, seed


def _labels_args(p, required_data: bool = False) -> None:
    p.add_argument("--data", nargs="+", default=[], required=required_data, metavar="FILE",
                   help="files whose jets carry labels (JetClass label_* branches, JetClass-II "
                        "jet_label)")
    p.add_argument("--class", dest="classes", action="append", default=[],
                   metavar="NAME=FILE[,FILE]",
                   help="every jet of these files is of class NAME (AOJ, generated or any "
                        "file); repeat for each class")
    p.add_argument("--only", default=None, metavar="A,B",
                   help="keep only these classes of the labelled files")
    p.add_argument("--others", default=None, metavar="NAME",
                   help="with --only: give every other class this one name instead of "
                        "dropping its jets (e.g. --only QCD --others signal)")
    p.add_argument("--max-jets", type=positive_int, default=None, metavar="N",
                   help="read at most N jets of each file")


def parse_classes(items) -> dict[str, list[str]]:
    """``["top=a.root,b.root", "qcd=c.root"]`` -> ``{"top": [...], "qcd": [...]}``."""
    from jetfm.errors import InputError

    out: dict[str, list[str]] = {}
    for item in items or []:
        name, sep, files = item.partition("=")
        if not sep or not name or not files:
            raise InputError(f"--class '{item}' is not of the form NAME=FILE[,FILE]")
        if name in out:
            raise InputError(f"--class '{name}' given twice")
        out[name] = [f for f in files.split(",") if f]
    return out


def _label_kwargs(args) -> dict:
    from jetfm.errors import InputError

    if args.others and not args.only:
        raise InputError("--others needs --only (the classes kept under their own names)")
    only = [c for c in args.only.split(",") if c] if args.only else None
    return {"data": args.data, "classes": parse_classes(args.classes), "only": only,
            "others": args.others, "max_jets": args.max_jets}


def register(sub) -> None:
    cl = sub.add_parser("classify", help="jet classification: fine-tune the backbone as a "
                                         "tagger, evaluate, predict, D-scan")
    csub = cl.add_subparsers(dest="classify_command", metavar="ACTION", parser_class=type(cl))

    p = csub.add_parser("train", help="train a classifier on labelled jets")
    p.add_argument("--from", dest="from_dir", required=True,
                   help="model directory (or run folder) whose tokenizer reads the jets and "
                        "whose pre-trained backbone starts the classifier")
    arm = p.add_mutually_exclusive_group()
    arm.add_argument("--from-scratch", action="store_true",
                     help="a randomly initialised backbone (only the tokenizer of --from)")
    arm.add_argument("--freeze-backbone", action="store_true",
                     help="train only the pooling and the MLP head on the frozen backbone")
    _labels_args(p)
    p.add_argument("-o", "--out", required=True, help="run folder (the model goes to OUT/model)")
    p.add_argument("--preset", default="small",
                   help="its classifier and classification sections (paper, small, quick, or a "
                        "YAML file)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="e.g. --set classification.lr=1e-4 --set classifier.pooling=mean")
    p.add_argument("--seed", type=seed, default=0)
    p.add_argument("--no-resume", action="store_true",
                   help="start afresh instead of resuming from OUT/checkpoints")
    p.add_argument("--overwrite", action="store_true",
                   help="start afresh in a run folder started with other settings; without it "
                        "such a rerun is refused")
    p.set_defaults(func=cmd_train)

    p = csub.add_parser("evaluate", help="accuracy, ROC AUC and background rejection with "
                                         "bootstrap errors, ROC figure and report")
    p.add_argument("--model", required=True, help="classifier model directory or run folder")
    _labels_args(p)
    p.add_argument("-o", "--out", required=True, help="output folder (metrics.json, roc.png, "
                                                      "report.md/.html)")
    p.add_argument("--signal", default=None, help="signal class (default: the class that is "
                                                  "not the background)")
    p.add_argument("--background", default=None, help="background class (default: QCD, else "
                                                      "the first class)")
    p.add_argument("--bootstrap", type=nonneg_int, default=100, metavar="N",
                   help="bootstrap resamplings for the errors (0: none)")
    p.add_argument("--seed", type=seed, default=0)
    p.set_defaults(func=cmd_evaluate)

    p = csub.add_parser("predict", help="class probabilities of every jet of a file")
    p.add_argument("--model", required=True, help="classifier model directory or run folder")
    p.add_argument("--data", required=True, metavar="FILE", help="AOJ, JetClass or token file")
    p.add_argument("-o", "--output", required=True, help="output .parquet (or .csv)")
    p.add_argument("--max-jets", type=positive_int, default=None)
    p.set_defaults(func=cmd_predict)

    p = csub.add_parser("scan", help="pre-trained vs from-scratch classifiers and a BDT on "
                                     "high-level observables against the number of labelled "
                                     "jets D")
    p.add_argument("--from", dest="from_dir", required=True, help="pre-trained model directory")
    p.add_argument("--class", dest="classes", action="append", default=[], required=True,
                   metavar="NAME=FILE", help="one file of jets per class (e.g. --class "
                                             "top=top.root --class qcd=qcd.root)")
    p.add_argument("-o", "--out", required=True, help="scan folder")
    p.add_argument("--sizes", default=None, help="labelled jets D, comma separated "
                                                 "(default 100,1000,10000)")
    p.add_argument("--seeds", type=positive_int, default=None, help="seeds per D (default 3)")
    p.add_argument("--n-test", type=positive_int, default=None,
                   help="held-out test jets per class")
    p.add_argument("--arms", default=None, help="comma separated among pretrained, frozen, "
                                                "scratch (default all three)")
    p.add_argument("--no-baseline", action="store_true", help="skip the high-level BDT")
    p.add_argument("--signal", default=None, help="signal class (default: the second --class)")
    p.add_argument("--preset", default="small")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--seed", type=seed, default=0)
    p.set_defaults(func=cmd_scan)
    cl.set_defaults(func=lambda args: cl.print_help() or 0)


def cmd_train(args) -> int:
    from jetfm.cli.models import _resume, _training_run
    from jetfm.errors import InputError
    from jetfm.omnijet.classification import classify_train

    arm = "scratch" if args.from_scratch else "frozen" if args.freeze_backbone else "pretrained"
    kw = _label_kwargs(args)
    # the run folder remembers its data (labelled files, and every file of every class), its
    # classes, arm, seed and preset; a rerun with others is refused without --overwrite
    run = argparse.Namespace(**vars(args))
    run.data = list(args.data) + [f for fs in kw["classes"].values() for f in fs]
    run.val_data = None
    if not run.data:
        raise InputError("no labelled data: give --data files with labels, or --class "
                         "NAME=FILE for each class")
    with _training_run(run, "classify train", {"from": args.from_dir}, arm=arm,
                       classes=kw["classes"], only=kw["only"], others=kw["others"]):
        mdir = classify_train(args.from_dir, args.out, arm=arm, preset=args.preset,
                              overrides=args.overrides, seed=args.seed,
                              resume=_resume(args), **kw)
    with open(os.path.join(mdir, "config.json")) as fh:
        meta = json.load(fh)
    st = meta["provenance"]["classification"]
    print(f"classifier ({arm}) of classes {', '.join(meta['classes'])}: {st['n_train']} "
          f"training / {st['n_val']} validation jets, {st['epochs']} epochs, {st['steps']} "
          f"steps, best validation loss {st['best_val_loss']:.4f}")
    print(mdir)
    return 0


def cmd_evaluate(args) -> int:
    from jetfm.evaluate.classification import evaluate_classifier

    kw = _label_kwargs(args)
    if not kw["data"] and not kw["classes"]:
        from jetfm.errors import InputError

        raise InputError("no data to evaluate: give --data labelled files or --class NAME=FILE")
    m = evaluate_classifier(args.model, args.out, signal=args.signal,
                            background=args.background, seed=args.seed,
                            n_bootstrap=max(0, args.bootstrap), **kw)
    print(f"{m['n_jets']} jets: accuracy {m['accuracy']:.4f}, AUC {m['auc']:.4f}, rejection "
          f"at eps_S 0.3: {m['rejection_30']:.4g}, at 0.5: {m['rejection_50']:.4g} "
          f"({m['signal']} vs {m['background']})")
    print(os.path.join(args.out, "report.html"))
    return 0


def cmd_predict(args) -> int:
    from jetfm.evaluate.classification import predict_file
    from jetfm.io.output import refuse_overwrite

    refuse_overwrite(args.output, [args.data], option="-o output")
    n = predict_file(args.model, args.data, args.output, args.max_jets)
    print(f"{n} jets -> {args.output}")
    return 0


def cmd_scan(args) -> int:
    import dataclasses

    from jetfm.evaluate.classify_scan import ClassifyScanConfig, run_classify_scan
    from jetfm.evaluate.scan import parse_sizes

    cfg = ClassifyScanConfig(preset=args.preset, overrides=list(args.overrides), seed=args.seed,
                             baseline=not args.no_baseline)
    if args.sizes:
        cfg = dataclasses.replace(cfg, sizes=parse_sizes(args.sizes))
    if args.seeds is not None:
        cfg = dataclasses.replace(cfg, seeds=args.seeds)
    if args.n_test is not None:
        cfg = dataclasses.replace(cfg, n_test=args.n_test)
    if args.arms:
        cfg = dataclasses.replace(cfg, arms=[a for a in args.arms.split(",") if a])
    if args.signal:
        cfg = dataclasses.replace(cfg, signal=args.signal)
    from jetfm.errors import InputError
    from jetfm.evaluate.classify_scan import classify_report

    classes = parse_classes(args.classes)
    for name, files in classes.items():
        if len(files) != 1:
            raise InputError(f"--class {name}: the scan takes one file per class")
    run_classify_scan(args.from_dir, {k: v[0] for k, v in classes.items()}, args.out, cfg)
    for line in classify_report(args.out).verdict:
        print(line.replace("**", ""))
    print(os.path.join(args.out, "report.html"))
    return 0
