"""``jetfm simulate aoj-like|jetclass-like`` and ``jetfm plot-compare``."""
from __future__ import annotations

import json

from jetfm.cli.argtypes import integer, pileup, positive_int, seed, workers


def _common(p) -> None:
    p.add_argument("--jets", type=positive_int, required=True, metavar="N",
                   help="exact number of jets in the output")
    p.add_argument("--seed", type=seed, required=True,
                   help="random seed (same seed -> same jets, whatever --workers)")
    p.add_argument("-o", "--output", required=True, help="output file")
    p.add_argument("--workers", type=workers, default=None,
                   help="worker processes (default: all cores)")
    p.add_argument("--chunk-jets", type=integer(1, 100_000), default=None,
                   help="jets per chunk, the unit of work and of resuming (default 500)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def register(sub) -> None:
    p = sub.add_parser("simulate", help="make AOJ-like or JetClass-like jets (Pythia 8 + FastJet "
                       "+ a parametric detector response)")
    ss = p.add_subparsers(dest="sample", metavar="SAMPLE", parser_class=type(p))
    a = ss.add_parser("aoj-like", help="QCD multijets, CMS-like particle flow, AOJ .h5 format")
    _common(a)
    a.add_argument("--pileup", type=pileup, default=0.0, metavar="MU",
                   help="mean number of pile-up interactions per event, Poisson (default 0: off)")
    a.set_defaults(func=cmd_aoj_like)
    j = ss.add_parser("jetclass-like", help="top (t->bqq') or QCD (Z->nu nu + jets) jets, "
                      "Delphes-like response, JetClass .root format")
    j.add_argument("--process", required=True, help="top or qcd")
    _common(j)
    j.set_defaults(func=cmd_jetclass_like)
    from jetfm.cli.anomaly import register_simulate  # `jetfm simulate dark-showers`
    register_simulate(ss)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])

    c = sub.add_parser("plot-compare", help="compare two jet files (AOJ or JetClass) in the "
                       "style of the AspenOpenJets paper's Figure 1")
    c.add_argument("file_a")
    c.add_argument("file_b")
    c.add_argument("-o", "--output", required=True, help="output folder for PNGs and summary.json")
    c.add_argument("--labels", nargs=2, default=None, metavar=("A", "B"),
                   help="legend labels (default: the file names)")
    c.add_argument("--max-jets", type=positive_int, default=None,
                   help="use at most this many jets of each file")
    c.set_defaults(func=cmd_plot_compare)


def _chunk(args) -> dict:
    return {} if args.chunk_jets is None else {"chunk_jets": args.chunk_jets}


def cmd_aoj_like(args) -> int:
    from jetfm.simulate import simulate_aoj_like

    out = simulate_aoj_like(args.jets, args.seed, args.output, workers=args.workers,
                            pileup=args.pileup, progress=not args.no_progress, **_chunk(args))
    print(f"{args.jets} jets -> {out}")
    return 0


def cmd_jetclass_like(args) -> int:
    from jetfm.simulate import simulate_jetclass_like

    out = simulate_jetclass_like(args.process, args.jets, args.seed, args.output,
                                 workers=args.workers, progress=not args.no_progress,
                                 **_chunk(args))
    print(f"{args.jets} jets -> {out}")
    return 0


def cmd_plot_compare(args) -> int:
    from jetfm.evaluate.compare import plot_compare

    summary = plot_compare(args.file_a, args.file_b, args.output, labels=args.labels,
                           max_jets=args.max_jets)
    print(json.dumps({"output": args.output, "plots": summary["plots"]}))
    return 0
