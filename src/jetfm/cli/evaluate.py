"""``jetfm scan | fit | report | metrics``: the AOJ experiment's D-scan and its evaluation."""
from __future__ import annotations

import os

from jetfm.cli.argtypes import nonneg_int, positive_int, seed


def register(sub) -> None:
    p = sub.add_parser("scan", help="fine-tuned vs from-scratch D-scan on target jets")
    p.add_argument("--pretrained", required=True, help="pre-trained model directory")
    p.add_argument("--target", required=True, action="append", metavar="[NAME=]FILE",
                   help="target jets (AOJ .h5 or JetClass .root); repeat for several targets")
    p.add_argument("--sizes", default="100,1000,10000", help="training-set sizes D (comma list)")
    p.add_argument("--seeds", type=positive_int, default=5, help="seeds per size (default 5)")
    p.add_argument("--out", required=True, help="output folder (resumes when it exists)")
    p.add_argument("--n-reference", type=positive_int, default=5000,
                   help="held-out reference jets")
    p.add_argument("--n-generated", type=positive_int, default=5000,
                   help="jets sampled per model")
    p.add_argument("--preset", default="small", help="training preset (quick, small, paper)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="training config override, e.g. finetuning.lr=1e-4 (repeatable)")
    p.add_argument("--min-steps", type=nonneg_int, default=0,
                   help="at least this many optimiser steps per training (small D)")
    p.add_argument("--w1-samples", type=positive_int, default=50_000,
                   help="W1 samples per batch")
    p.add_argument("--no-jetnet", action="store_true", help="skip W1M/W1P/W1EFP/FPD/KPD")
    p.add_argument("--keep-models", action="store_true", help="keep every trained model")
    p.add_argument("--seed", type=seed, default=0, help="scan seed (subsets, training, sampling)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--overwrite", action="store_true",
                   help="start afresh in a folder scanned with other settings (its cells, "
                        "models and results are removed); without it such a rerun is refused")
    p.set_defaults(func=cmd_scan)

    p = sub.add_parser("fit", help="power-law fits metric = a D^-gamma of a scan's results")
    p.add_argument("results", help="results.json of a scan (or its folder)")
    p.add_argument("-o", "--output", help="write the fits as JSON here")
    p.add_argument("--reference", default="tokenized", choices=("tokenized", "raw"))
    p.set_defaults(func=cmd_fit)

    p = sub.add_parser("report", help="report.md and report.html of a scan")
    p.add_argument("scan_dir", help="scan output folder")
    p.add_argument("--out", help="report folder (default: the scan folder)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("metrics", help="KL, W1 and the JetNet set between two jet files")
    p.add_argument("reference", help="reference jets (AOJ .h5 or JetClass .root)")
    p.add_argument("generated", help="generated jets (AOJ .h5 or JetClass .root)")
    p.add_argument("--max-jets", type=positive_int, default=20_000)
    p.add_argument("--w1-samples", type=positive_int, default=50_000,
                   help="W1 samples per batch")
    p.add_argument("--seed", type=seed, default=0)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_metrics)


def cmd_scan(args) -> int:
    import dataclasses

    from jetfm.errors import check_output_dir
    from jetfm.evaluate.scan import (
        SCAN_ENTRIES,
        ScanConfig,
        check_scan_config,
        parse_sizes,
        parse_targets,
        run_scan,
    )
    from jetfm.io.output import RUN_LOCK, RUN_RECORD, refuse_overwrite, run_folder

    check_output_dir(args.out, "--out")
    cfg = ScanConfig(sizes=parse_sizes(args.sizes), seeds=args.seeds,
                     n_reference=args.n_reference, n_generated=args.n_generated,
                     preset=args.preset, overrides=list(args.overrides),
                     min_steps=args.min_steps, seed=args.seed, w1_samples=args.w1_samples,
                     jetnet=not args.no_jetnet, keep_models=args.keep_models)
    check_scan_config(cfg)
    targets = {k: os.path.abspath(v) for k, v in parse_targets(args.target).items()}
    owned = set(SCAN_ENTRIES) | {RUN_LOCK, RUN_RECORD}
    refuse_overwrite(args.out, targets.values(), folders=[args.pretrained],
                     owned=owned.__contains__, option="--out folder")
    settings = {"pretrained": os.path.abspath(args.pretrained), "targets": targets,
                "config": dataclasses.asdict(cfg)}
    with run_folder(args.out, settings, overwrite=args.overwrite, fresh=SCAN_ENTRIES,
                    command="jetfm scan",
                    started=lambda d: os.path.isdir(os.path.join(d, "cells"))):
        path = run_scan(args.pretrained, args.target, args.out, cfg,
                        progress=not args.no_progress)
    print(os.path.abspath(path))
    return 0


def cmd_fit(args) -> int:
    import json

    from jetfm.evaluate.fits import fit_results
    from jetfm.evaluate.scan import load_results
    from jetfm.io.output import refuse_overwrite, write_text_atomic

    if args.output:
        src = args.results
        refuse_overwrite(args.output, [os.path.join(src, "results.json")
                                       if os.path.isdir(src) else src], option="-o output")
    fits = [f for f in fit_results(load_results(args.results)["rows"])
            if f["reference"] == args.reference or f["observable"] == "jet"]
    print(f"{'target':8} {'arm':10} {'metric':6} {'observable':15} {'gamma':>8} {'error':>7}"
          f" {'a':>10}")
    for f in fits:
        print(f"{f['target']:8} {f['arm']:10} {f['metric']:6} {f['observable']:15} "
              f"{f['gamma']:8.3f} {f['gamma_err']:7.3f} {f['a']:10.4g}")
    if args.output:
        write_text_atomic(args.output, json.dumps(fits, indent=1))
    return 0


def cmd_report(args) -> int:
    from jetfm.evaluate.fidelity import fidelity_section
    from jetfm.evaluate.report import build_report

    out = args.out or args.scan_dir
    # the generation-fidelity check, for scans that stored its arrays
    fid = fidelity_section(args.scan_dir, os.path.join(out, "figures"))
    md, html = build_report(args.scan_dir, out, command=f"jetfm report {args.scan_dir}",
                            sections=[fid] if fid is not None else [])
    print(os.path.abspath(md))
    print(os.path.abspath(html))
    return 0


def cmd_metrics(args) -> int:
    import json

    from jetfm.errors import InputError
    from jetfm.evaluate.metrics import jetnet_metrics, observable_distances
    from jetfm.evaluate.scan import experiment_observables
    from jetfm.io import read_jets

    ref = read_jets(args.reference, stop=args.max_jets)
    gen = read_jets(args.generated, stop=args.max_jets)
    for path, jets in ((args.reference, ref), (args.generated, gen)):
        if len(jets) < 2:  # no spread to compare: W1 and the Frechet distance are undefined
            raise InputError(f"metrics need at least 2 jets, got {len(jets)} (see --max-jets)",
                             path)
        empty = int((jets.mask.sum(1) == 0).sum())
        if empty:
            raise InputError(f"{empty} of {len(jets)} jets have no constituents; metrics need "
                             "at least one per jet", path)
    out = {"observables": observable_distances(experiment_observables(ref),
                                               experiment_observables(gen), seed=args.seed,
                                               num_samples=args.w1_samples),
           "jetnet": jetnet_metrics(ref, gen, seed=args.seed, num_samples=args.w1_samples)}
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"{'observable':15} {'KL':>10} {'W1':>12} {'W1 std':>10}")
    for name, d in out["observables"].items():
        print(f"{name:15} {d['kl']:10.4g} {d['w1']:12.4g} {d['w1_std']:10.3g}")
    for k in ("w1m", "w1p", "w1efp", "fpd", "kpd"):
        print(f"{k.upper():6} {out['jetnet'][k]:.4g} ± {out['jetnet'][k + '_err']:.2g}")
    return 0
