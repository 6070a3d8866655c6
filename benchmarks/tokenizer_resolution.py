"""Which constituents the tokenizer's substructure loss comes from.

For a trained model (or tokenizer) folder and a file of jets it prints the rms error of the
tokenized features (ln pT - shift, 3 eta_rel, 3 phi_rel: the preprocessed units) by pT rank, and
the medians of mass, tau21 and tau32 of hybrid jets: the k leading constituents as they are and
the rest through the tokenizer, each feature alone through it, and the jets with Gaussian noise of
a given rms on the angles. It tells how fine the tokenizer must resolve which constituents for a
substructure target (e.g. the tau32 median within 0.08 of the reference's).

    python benchmarks/tokenizer_resolution.py runs/demo_default/tokenizer/model \\
        runs/demo_default/data/top.root [--n 800]
"""
from __future__ import annotations

import argparse
import sys

import numpy as np
from _common import emit  # noqa: E402

RANKS = ((0, 3), (3, 10), (10, 30), (30, 128))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", help="a jetfm model or tokenizer folder")
    ap.add_argument("jets", help="a file of jets (AOJ .h5, JetClass .root/.parquet)")
    ap.add_argument("--n", type=int, default=800,
                    help="the last N jets of the file (default 800)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    import torch

    from jetfm.evaluate.fidelity import fidelity_observables
    from jetfm.io import read_jets
    from jetfm.train.api import load_pretrained

    torch.manual_seed(args.seed)
    model = load_pretrained(args.model)
    prep, tok = model.preprocessing, model.tokenizer
    jets = read_jets(args.jets)
    jets = jets[max(0, len(jets) - args.n):]
    feats, mask = prep.forward(jets)
    dec = tok.decode_arrays(tok.encode_arrays(feats, mask), mask)

    def medians(x: np.ndarray) -> dict:
        obs = fidelity_observables(prep.inverse(x, mask))
        return {k: float(np.median(obs[k])) for k in ("mass", "tau21", "tau32")}

    print(f"{len(jets)} jets of {args.jets} through {args.model}")
    print("rms error of the tokenized features (preprocessed units) by pT rank:")
    rms = {}
    for lo, hi in RANKS:
        sel = mask.copy()
        sel[:, :lo] = False
        sel[:, hi:] = False
        r = np.sqrt(((dec - feats)[sel] ** 2).mean(0))
        rms[f"{lo}-{hi}"] = r.round(4).tolist()
        print(f"  ranks {lo:3d}-{hi:<3d}  ln pT {r[0]:.3f}  eta {r[1]:.3f}  phi {r[2]:.3f}")
    rows = {"raw": medians(feats), "tokenized": medians(dec)}
    for k in (3, 10, 30):
        h = dec.copy()
        h[:, :k] = feats[:, :k]
        rows[f"leading {k} exact, rest tokenized"] = medians(h)
    for i, name in enumerate(("ln pT", "eta", "phi")):
        h = feats.copy()
        h[..., i] = dec[..., i]
        rows[f"only {name} tokenized"] = medians(h)
    rng = np.random.default_rng(args.seed)
    for sigma in (0.12, 0.06):
        h = feats.copy()
        h[..., 1:] += rng.normal(0.0, sigma, h[..., 1:].shape).astype(h.dtype)
        rows[f"exact + Gaussian {sigma} on both angles"] = medians(h)
    print(f"{'jets':44s}{'mass':>8s}{'tau21':>8s}{'tau32':>8s}")
    for name, m in rows.items():
        print(f"{name:44s}{m['mass']:8.1f}{m['tau21']:8.3f}{m['tau32']:8.3f}")
    emit("tokenizer_resolution", rows["tokenized"]["tau32"], "tau32 median, tokenized",
         rows["raw"]["tau32"], rows["tokenized"]["tau32"] / rows["raw"]["tau32"],
         rms=rms, rows=rows, n_jets=len(jets))
    return 0


if __name__ == "__main__":
    sys.exit(main())
