"""``jetfm demo``: the main job, end to end, on the built-in data."""
from __future__ import annotations

import os


def register(sub) -> None:
    p = sub.add_parser("demo", help="run the main job end to end on the built-in data")
    p.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args) -> int:
    from jetfm.pipelines.demo import run_demo

    report = run_demo(out=args.out)
    print(os.path.abspath(report))
    return 0
