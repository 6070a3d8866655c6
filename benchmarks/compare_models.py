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
D2 and multiplicity; under it the peak's shape: the soft-drop mass quartiles, the fractions
below and above the window, and the tau32 median of the jets inside it (generated, then
reference and tokenized in brackets), and the jet pT's quartiles with the soft-drop mass median
of the softer and of the harder half of the jets. The last line is all of it as JSON.
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


def peak_shape(obs: dict) -> dict:
    """Where the soft-drop mass lies around the top window: its quartiles, the fractions below
    and at or above the window, and the tau32 median of the jets inside it (does a jet of the
    right mass have three prongs?); and what the width comes from: the jet pT's quartiles and
    the soft-drop mass median of the softer and the harder half of the jets (split at their pT
    median): a top quark's mass does not depend on its pT, so a generator whose opening angles
    do not shrink as 1/pT shows it as a mass that moves with the pT."""
    from jetfm.evaluate.fidelity import TOP_WINDOW as window

    x, t = np.asarray(obs["msoftdrop"]), np.asarray(obs["tau32"])
    pt = np.asarray(obs["pt"])
    inside = (x >= window[0]) & (x < window[1])
    q25, q50, q75 = (float(v) for v in np.percentile(x, [25, 50, 75]))
    hard = pt >= np.median(pt)
    return {"q25": q25, "median": q50, "q75": q75, "below": float(np.mean(x < window[0])),
            "above": float(np.mean(x >= window[1])),
            "tau32_in_window": float(np.median(t[inside])) if inside.any() else float("nan"),
            "pt_quartiles": [float(v) for v in np.percentile(pt, [25, 50, 75])],
            "median_softer_harder": [float(np.median(x[~hard])) if (~hard).any()
                                     else float("nan"), float(np.median(x[hard]))]}


def shape_line(shapes: dict) -> str:
    g, r, t = shapes["generated"], shapes["reference"], shapes["tokenized"]

    def q(s):
        return f"{s['q25']:.0f}/{s['median']:.0f}/{s['q75']:.0f}"

    def slash(values):
        return "/".join(f"{v:.0f}" for v in values)
    return (f"  soft-drop mass quartiles {q(g)} GeV (reference {q(r)}, tokenized {q(t)}); below "
            f"150 GeV {g['below']:.0%} ({r['below']:.0%}, {t['below']:.0%}), at or above 190 "
            f"{g['above']:.0%} ({r['above']:.0%}, {t['above']:.0%}); tau32 median of the jets "
            f"in 150-190 GeV {g['tau32_in_window']:.3f} ({r['tau32_in_window']:.3f}, "
            f"{t['tau32_in_window']:.3f})\n  jet pT quartiles {slash(g['pt_quartiles'])} GeV "
            f"(reference {slash(r['pt_quartiles'])}); soft-drop mass median of the softer / "
            f"harder half {slash(g['median_softer_harder'])} "
            f"({slash(r['median_softer_harder'])}, tokenized "
            f"{slash(t['median_softer_harder'])}) GeV")


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
                shapes = {"generated": peak_shape(gen), "reference": peak_shape(held["raw"]),
                          "tokenized": peak_shape(held["tokenized"])}
                print(row_line(name, seed, data, fid), flush=True)
                print(shape_line(shapes), flush=True)
                rows.append({"model": name, "seed": seed, "data": data, "fidelity": fid,
                             "peak": shapes})
    print(json.dumps(rows, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
