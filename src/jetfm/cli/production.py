"""`jetfm build-aoj` (PFNano NanoAOD -> AOJ files, with Dask) and `jetfm split`."""
from __future__ import annotations

import json
import os
import sys

from jetfm.cli.argtypes import integer, nonneg_float, number, positive_int, seed, workers
from jetfm.errors import InputError, check_output_dir


def register(sub) -> None:
    p = sub.add_parser(
        "build-aoj", help="build AOJ .h5 files from CMS PFNano NanoAOD (parallel, resumable)",
        description="Select AK8 jets from PFNano NanoAOD as AspenOpenJets did (lumi JSON, "
                    "trigger OR, MET filters, pT > 300 GeV, |eta| < 2.5, jetId == 6) and write "
                    "AOJ files, a manifest and the cut flow into --out. Each Dask task writes "
                    "its own files, NAME_<input>_<chunk>_<k>.h5. Rerunning the same command "
                    "after a crash skips the inputs and chunks already done.")
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="PFNano .root files, globs, or .txt files listing them")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--lumi-json", metavar="FILE",
                   help="CMS certified-luminosity JSON (default: no lumi mask, reported)")
    p.add_argument("--triggers", default="aoj", metavar="LIST",
                   help="'aoj' (the 2016 JetHT list, default), 'none' (no trigger step), or "
                        "comma-separated HLT branch names (wildcards allowed)")
    p.add_argument("--met-filters", default="aoj", metavar="LIST",
                   help="'aoj' (default), 'none', or comma-separated Flag_ branch names")
    p.add_argument("--pt-min", type=nonneg_float, default=300.0,
                   help="FatJet pT cut in GeV (300)")
    p.add_argument("--eta-max", type=number(0.0, lo_open=True), default=2.5,
                   help="FatJet |eta| cut (2.5)")
    p.add_argument("--jet-id", type=integer(0, 7), default=6,
                   help="required FatJet_jetId value (6)")
    p.add_argument("--jets-per-file", type=positive_int, default=2_200_000,
                   help="at most N jets per output file (2200000, as AOJ); a task with more "
                        "jets writes several files")
    p.add_argument("--chunk-events", type=integer(1, 10**7), default=20_000,
                   help="events per Dask task; larger files are split into entry ranges")
    p.add_argument("--name", default="aoj",
                   help="output file prefix: NAME_<input>_<chunk>_<k>.h5 (input id, chunk number "
                        "within the input, file number within the chunk)")
    p.add_argument("--workers", type=workers, default=None,
                   help="local Dask worker processes (default: all cores)")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="use an existing Dask cluster (e.g. tcp://host:8786; its workers write "
                        "the outputs, so --out must be a shared folder at the same path); "
                        "'inline' runs everything in this process")
    p.add_argument("--strict", action="store_true",
                   help="stop at the first unreadable input instead of skipping it")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    p.set_defaults(func=_build)

    s = sub.add_parser("split", help="deterministic train/val/test split of AOJ files by event",
                       description="Assign every jet by a hash of (run, lumi, event): the split "
                                   "never depends on file order, and an event's jets stay "
                                   "together.")
    s.add_argument("dir", metavar="DIR",
                   help="a build-aoj output folder (or any folder of AOJ .h5 files), or one file")
    s.add_argument("--fractions", default="0.9,0.05,0.05", help="one per split, summing to 1")
    s.add_argument("--names", default="train,val,test", help="split names (file prefixes)")
    s.add_argument("--out", metavar="DIR", help="output folder (default DIR/split)")
    s.add_argument("--seed", type=seed, default=0, help="salt of the hash (a different split)")
    s.add_argument("--jets-per-file", type=positive_int, default=2_200_000)
    s.add_argument("--no-progress", action="store_true")
    s.set_defaults(func=_split)


def _list(text: str, default):
    if text.strip().lower() == "aoj":
        return default
    if text.strip().lower() == "none":
        return None
    names = tuple(t.strip() for t in text.split(",") if t.strip())
    if not names:
        raise InputError(f"empty list {text!r} (use 'none' to turn the step off)")
    return names


def _build(args) -> int:
    from jetfm.io.aoj import expand_paths
    from jetfm.io.output import RUN_LOCK, refuse_overwrite, run_folder
    from jetfm.production.builder import build_aoj
    from jetfm.production.manifest import BUILD_FILES, output_pattern
    from jetfm.production.selection import AOJ_MET_FILTERS, AOJ_TRIGGERS, Selection

    check_output_dir(args.out, "--out")
    sel = Selection(lumi_json=os.path.abspath(args.lumi_json) if args.lumi_json else None,
                    triggers=_list(args.triggers, AOJ_TRIGGERS),
                    met_filters=_list(args.met_filters, AOJ_MET_FILTERS),
                    pt_min=args.pt_min, abs_eta_max=args.eta_max, jet_id=args.jet_id)
    pattern = output_pattern(args.name)
    inputs = expand_paths(args.inputs) + ([args.lumi_json] if args.lumi_json else [])
    refuse_overwrite(args.out, inputs,
                     owned=lambda n: n in BUILD_FILES or n == RUN_LOCK or bool(pattern.match(n)),
                     option="--out folder")
    with run_folder(args.out, command="jetfm build-aoj"):
        res = build_aoj(args.inputs, args.out, sel, jets_per_file=args.jets_per_file,
                        chunk_events=args.chunk_events, name=args.name,
                        scheduler=args.scheduler, n_workers=args.workers, strict=args.strict,
                        progress=not args.no_progress)
    if args.json:
        print(json.dumps({"out": res.out_dir, "outputs": res.outputs, "events": res.events,
                          "jets": res.jets, "inputs_done": res.inputs_done,
                          "inputs_skipped": res.inputs_skipped, "failed": res.failed,
                          "seconds": round(res.seconds, 3), "workers": res.n_workers}))
    else:
        print(res.cutflow.to_markdown(sel))
        print(f"{res.inputs_done} input(s) built, {res.inputs_skipped} already done, "
              f"{len(res.failed)} failed; {res.events} events -> {res.jets} jets in "
              f"{res.seconds:.1f} s with {res.n_workers} worker(s)")
        print(f"outputs: {len(res.outputs)} file(s) in {res.out_dir} "
              "(manifest.json, cutflow.json, cutflow.md)")
    for err in res.failed.values():
        print(f"jetfm: warning: skipped {err}", file=sys.stderr)
    return 0


def _split(args) -> int:
    from jetfm.io.aoj import aoj_length
    from jetfm.io.output import RUN_LOCK, refuse_overwrite, run_folder
    from jetfm.production.manifest import output_files
    from jetfm.production.split import parse_fractions, series_pattern, split_aoj

    names = tuple(n.strip() for n in args.names.split(",") if n.strip())
    fractions = parse_fractions(args.fractions, len(names))
    if os.path.isfile(args.dir):
        inputs, base = [args.dir], os.path.dirname(os.path.abspath(args.dir))
    elif os.path.isdir(args.dir):
        inputs, base = output_files(args.dir), args.dir
    else:
        raise InputError("no such file or folder", args.dir)
    if not inputs:
        raise InputError("no AOJ .h5 files in the folder", args.dir)
    aoj_length(inputs)  # every input is an AOJ file, checked before anything is written
    out = check_output_dir(args.out or os.path.join(base, "split"), "--out")
    patterns = [series_pattern(n) for n in names]
    refuse_overwrite(out, inputs, option="--out folder",
                     owned=lambda n: n in ("split.json", RUN_LOCK)
                     or any(p.match(n) for p in patterns))
    with run_folder(out, command="jetfm split"):
        res = split_aoj(inputs, out, fractions, names, seed=args.seed,
                        jets_per_file=args.jets_per_file, progress=not args.no_progress)
    total = max(sum(res.counts.values()), 1)
    for n in names:
        print(f"{n}: {res.counts[n]} jets ({res.counts[n] / total:.4f}) in "
              f"{len(res.files[n])} file(s)")
    print(f"written to {out} (split.json)")
    return 0
