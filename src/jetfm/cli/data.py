"""Commands on jet files: ``inspect`` and ``observables``."""
from __future__ import annotations

import json

from jetfm.cli.argtypes import positive_int


def register(sub) -> None:
    p = sub.add_parser("inspect", help="summarise an AOJ .h5 or JetClass .root file")
    p.add_argument("file")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--max-jets", type=positive_int, default=None,
                   help="summarise only the first N jets (default: all, streamed)")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("observables", help="jet observables of every jet, one row per jet")
    p.add_argument("file")
    p.add_argument("-o", "--output", required=True, help="output .parquet (or .csv)")
    p.add_argument("--max-jets", type=positive_int, default=None)
    p.set_defaults(func=cmd_observables)


def cmd_inspect(args) -> int:
    from jetfm.io.summary import summarise

    info = summarise(args.file, max_jets=args.max_jets)
    if args.json:
        print(json.dumps(info))
        return 0
    print(f"{info['path']}")
    print(f"  format           {info['format']}")
    print(f"  jets             {info['n_jets']}")
    print(f"  constituents     min {info['constituents_min']}  mean "
          f"{info['constituents_mean']:.1f}  max {info['constituents_max']}")
    print(f"  jet pT [GeV]     {info['jet_pt_min']:.1f} .. {info['jet_pt_max']:.1f}")
    print("  species          " + ", ".join(f"{k} {v}" for k, v in info["species"].items()))
    if info.get("pdgId"):
        print("  pdgId            " + ", ".join(f"{k}: {v}" for k, v in info["pdgId"].items()))
    if info.get("labels"):
        print("  labels           " + ", ".join(f"{k}: {v}" for k, v in info["labels"].items()))
    if info.get("attrs"):
        print("  attributes       " + ", ".join(sorted(info["attrs"])))
    return 0


def cmd_observables(args) -> int:
    import pandas as pd

    from jetfm.errors import InputError, check_writable
    from jetfm.io import iter_jets
    from jetfm.io.output import atomic_output, refuse_overwrite
    from jetfm.physics.observables import compute_observables

    out = check_writable(args.output)
    refuse_overwrite(out, [args.file], option="-o output")
    frames = []
    seen = 0
    for jets in iter_jets(args.file, chunk_size=20_000,
                          **({"stop": args.max_jets} if args.max_jets else {})):
        frames.append(pd.DataFrame(compute_observables(jets)))
        seen += len(jets)
    if not frames:
        raise InputError("file holds no jets", args.file)
    df = pd.concat(frames, ignore_index=True)
    with atomic_output(out) as tmp:
        if out.endswith(".csv"):
            df.to_csv(tmp, index=False)
        else:
            df.to_parquet(tmp, index=False)
    print(f"{len(df)} jets, {df.shape[1]} observables -> {out}")
    return 0
