"""Generated top jets of several models against the held-out jets of several data files.

Each model samples jets at temperature 1 with each sampling seed; each sample is compared with
the held-out jets of each file, the same ones ``benchmarks/fidelity.py`` holds out of it (the same
``--n-reference`` and ``--seed``). The tokenized reference and the KL floor come from the first
model's tokenizer, so give models that share one. It tells a difference between two models from
the spread of one model's sampling seeds and of the held-out sets::

    python benchmarks/compare_models.py --model runs/long/finetune_A/model \\
        --model runs/long/finetune_B/model --data DATA16K/top.root --data DATA48K/top.root \\
        --seeds 2,12 --n-generated 2000

One line per model, seed and file: soft-drop mass median and fraction in 150-190 GeV (generated
/ reference), jet mass, tau21 and tau32 medians, multiplicity, and the KL of mass, tau21, tau32,
D2 and multiplicity; the last line is all of it as JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

KL_OBSERVABLES = ("mass", "tau21", "tau32", "d2", "n_constituents")


def held_out(path: str, tok_model, n_reference: int, n_floor: int, seed: int) -> dict:
    """The held-out jets of ``path`` (raw and through ``tok_model``'s tokenizer) and the floor:
    ``n_floor`` training-pool jets through it, as ``fidelity.py`` takes them."""
    from jetfm.evaluate.fidelity import held_out_sets
    from jetfm.evaluate.scan import split_target
    from jetfm.io import read_jets

    top = read_jets(path)
    ref_idx, pool = split_target(len(top), n_reference, seed)
    return held_out_sets(top[ref_idx], top[np.sort(pool)][-min(len(pool), n_floor):],
                         tok_model)


def row_line(model: str, seed: int, data: str, fid: dict) -> str:
    sd = fid["msoftdrop"]
    return (f"{model} seed {seed} vs {data}: soft-drop mass {sd['gen_median']:.1f}/"
            f"{sd['ref_median']:.1f} GeV, in 150-190 GeV {sd['gen_window']:.0%}/"
            f"{sd['ref_window']:.0%}, mass {fid['mass']['gen_median']:.1f}, tau21 "
            f"{fid['tau21']['gen_median']:.3f}, tau32 {fid['tau32']['gen_median']:.3f}/"
            f"{fid['tau32']['ref_median']:.3f}, constituents "
            f"{fid['n_constituents']['gen_median']:.0f}; KL "
            + ", ".join(f"{fid[k]['kl']:.3f}" for k in KL_OBSERVABLES))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", action="append", required=True, help="a model folder (repeat)")
    ap.add_argument("--data", action="append", required=True,
                    help="a top-jet file whose held-out jets are the reference (repeat)")
    ap.add_argument("--seeds", default="2", help="comma-separated sampling seeds (default 2, "
                                                 "fidelity.py's for --seed 0)")
    ap.add_argument("--n-generated", type=int, default=2000)
    ap.add_argument("--n-reference", type=int, default=800, help="held-out jets per file")
    ap.add_argument("--seed", type=int, default=0, help="the split's seed (fidelity.py --seed)")
    args = ap.parse_args(argv)
    try:
        seeds = [int(s) for s in args.seeds.split(",")]
    except ValueError:
        print(f"compare_models.py: --seeds {args.seeds!r}: not comma-separated integers",
              file=sys.stderr)
        return 2
    for path in args.model + args.data:
        if not os.path.exists(path):
            print(f"compare_models.py: {path}: no such file or folder", file=sys.stderr)
            return 2
    from jetfm.evaluate.fidelity import fidelity, fidelity_observables
    from jetfm.omnijet.model import sample_jets
    from jetfm.train.api import load_pretrained

    models = {m: load_pretrained(m) for m in args.model}
    first = models[args.model[0]]
    helds = {d: held_out(d, first, args.n_reference, args.n_generated, args.seed)
             for d in args.data}
    rows = []
    for name, model in models.items():
        for seed in seeds:
            gen = fidelity_observables(sample_jets(model, args.n_generated, seed=seed,
                                                   progress=False))
            for data, held in helds.items():
                fid = fidelity(held["raw"], gen, held["tokenized"], held["floor"],
                               seed=args.seed)
                print(row_line(name, seed, data, fid), flush=True)
                rows.append({"model": name, "seed": seed, "data": data, "fidelity": fid})
    print(json.dumps(rows, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
