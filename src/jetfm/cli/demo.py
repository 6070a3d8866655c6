"""``jetfm demo``: the main job, end to end, on the built-in data."""
from __future__ import annotations

import os

from jetfm.cli.argtypes import seed


def register(sub) -> None:
    p = sub.add_parser("demo", help="run the main job end to end on the built-in data")
    p.add_argument("--preset", default="default",
                   help="quick (the chain in miniature, for CI), default (the main job; measured "
                        "19 min wall on an idle 2-core machine), paper (GPU), or a YAML file")
    p.add_argument("--out", default=None, help="output folder (default runs/demo_<preset>)")
    p.add_argument("--seed", type=seed, default=0, help="seed of every stage (default 0)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="demo config override, e.g. scan.seeds=3 (repeatable)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--overwrite", action="store_true",
                   help="start afresh in a folder holding a demo of another configuration")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args) -> int:
    from jetfm.errors import check_output_dir
    from jetfm.pipelines.demo import run_demo

    preset = os.path.splitext(os.path.basename(args.preset))[0]
    out = args.out or os.path.join("runs", f"demo_{preset}")
    check_output_dir(out, "--out")
    report = run_demo(out=out, preset=args.preset, seed=args.seed,
                      overrides=tuple(args.overrides), progress=not args.no_progress,
                      overwrite=args.overwrite)
    print(os.path.abspath(report))
    return 0
