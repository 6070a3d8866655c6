"""Residual codes (``tokenizer.residual_codes``): what they buy the tokenizer, and what a backbone
makes of them.

``tokenizer``: for a trained tokenizer, residual codebooks of R vectors for the K leading
constituents (each ``K:R`` of ``--grid``) are fitted to the jets of ``--fit`` (the tokenizer's
training jets) and applied to held-out jets of ``--jets`` (the same held-out split as
``benchmarks/fidelity.py``). Printed per setting: the rms error of the leading constituents'
features (preprocessed units: ln pT, 3 eta_rel, 3 phi_rel) and the medians of mass, tau21 and
tau32 of the tokenized jets, beside the raw jets and the tokenizer without residual codes.

``backbone``: for a trained model, the mean next-token cross-entropy on held-out jets, split
into the code-or-stop places and, with residual codes, the residual places (against the entropy
of the residual tokens' own frequencies there: what a backbone that learned nothing about them
would score), and the medians of generated jets (temperature 1), decoded with their sampled
residual codes and without them. A model without residual codes gives the baseline.

    python benchmarks/residual_codes.py tokenizer --model runs/demo_default/tokenizer/model \\
        --fit runs/demo_default/data/aoj_like.h5 --jets runs/demo_default/data/top.root
    python benchmarks/residual_codes.py backbone --model MODEL --jets top.root
"""
from __future__ import annotations

import argparse
import sys

import numpy as np
from _common import emit  # noqa: E402


def _medians(prep, feats, mask) -> dict:
    from jetfm.evaluate.fidelity import fidelity_observables

    obs = fidelity_observables(prep.inverse(feats, mask))
    return {k: float(np.median(obs[k])) for k in ("mass", "tau21", "tau32")}


def _held_out(path: str, n: int, seed: int):
    from jetfm.evaluate.scan import split_target
    from jetfm.io import read_jets

    jets = read_jets(path)
    return jets[split_target(len(jets), min(n, len(jets)), seed)[0]]


def tokenizer_table(args) -> int:
    import torch

    from jetfm.io import read_jets
    from jetfm.train.api import load_pretrained

    model = load_pretrained(args.model)
    prep, tok = model.preprocessing, model.tokenizer
    if tok.residual_codes:
        print(f"residual_codes.py: {args.model}: the tokenizer has residual codes already; give "
              "the one without", file=sys.stderr)
        return 2
    fit_f, fit_m = prep.forward(read_jets(args.fit, stop=args.n_fit))
    feats, mask = prep.forward(_held_out(args.jets, args.n, args.seed))
    lead = mask.copy()
    lead[:, args.rms_leading:] = False

    def row(t) -> dict:
        dec = t.decode_arrays(t.encode_arrays(feats, mask), mask)
        rms = np.sqrt(((dec - feats)[lead] ** 2).mean(0))
        return {"rms": rms.round(4).tolist(), **_medians(prep, dec, mask)}

    rows = {"raw": {"rms": [0.0, 0.0, 0.0], **_medians(prep, feats, mask)},
            "tokenized, no residual codes": row(tok)}
    for item in args.grid.split(","):
        k, r = (int(x) for x in item.split(":"))
        torch.manual_seed(args.seed)
        res = tok.with_residual_codes(r, k)
        res.fit_residual_codebook(fit_f, fit_m, seed=args.seed)
        rows[f"residual codes: {r} for the {k} leading"] = row(res)
    print(f"{mask.shape[0]} held-out jets of {args.jets}; residual codes fitted to "
          f"{len(fit_m)} jets of {args.fit}; rms over the {args.rms_leading} leading "
          "constituents")
    print(f"{'jets':40s}{'rms ln pT':>10s}{'eta':>7s}{'phi':>7s}{'mass':>8s}{'tau21':>8s}"
          f"{'tau32':>8s}")
    for name, x in rows.items():
        print(f"{name:40s}{x['rms'][0]:10.3f}{x['rms'][1]:7.3f}{x['rms'][2]:7.3f}"
              f"{x['mass']:8.1f}{x['tau21']:8.3f}{x['tau32']:8.3f}")
    last = rows[list(rows)[-1]]
    emit("residual_codes", last["tau32"], "tau32 median, tokenized with residual codes",
         rows["tokenized, no residual codes"]["tau32"],
         last["tau32"] / rows["tokenized, no residual codes"]["tau32"], rows=rows)
    return 0


def backbone_table(args) -> int:
    import torch
    import torch.nn.functional as F

    from jetfm.omnijet.backbone import generate
    from jetfm.train.api import load_pretrained

    model = load_pretrained(args.model)
    prep, tok, bb = model.preprocessing, model.tokenizer, model.backbone
    if bb is None:
        print(f"residual_codes.py: {args.model}: the model has no backbone", file=sys.stderr)
        return 2
    k = tok.codebook_size
    feats, mask = prep.forward(_held_out(args.jets, args.n, args.seed))
    seqs = torch.as_tensor(tok.sequences(tok.encode_arrays(feats, mask), mask))
    with torch.no_grad():
        logits = bb(seqs[:, :-1].clamp_min(0))
    tgt = seqs[:, 1:]
    valid = tgt >= 0
    is_res = valid & (tgt > k) & (tgt < bb.cfg.stop_token)
    ce = {name: float(F.cross_entropy(logits[sel], tgt[sel])) if sel.any() else float("nan")
          for name, sel in (("code or stop", valid & ~is_res), ("residual", is_res))}
    freq = np.bincount(tgt[is_res].numpy() - k - 1, minlength=tok.residual_codes)
    p = freq[freq > 0] / max(freq.sum(), 1)
    entropy = float(-(p * np.log(p)).sum()) if len(p) else float("nan")
    codes, gmask = generate(bb, args.n_generated, model.config.sampling.max_new,
                            seed=args.seed + 2)
    codes, gmask = codes.numpy(), gmask.numpy()
    keep = gmask.sum(1) >= model.config.sampling.min_constituents
    codes, gmask = codes[keep], gmask[keep]
    width = max(1, int(gmask.sum(1).max()))
    codes, gmask = codes[:, :width], gmask[:, :width]
    rows = {"held-out jets": _medians(prep, feats, mask),
            "generated" + (", residual codes sampled" if tok.residual_codes else ""): _medians(
                prep, tok.decode_arrays(codes, gmask), gmask)}
    if tok.residual_codes:
        rows["generated, residual codes dropped"] = _medians(
            prep, tok.decode_arrays(np.where(gmask, codes % k, -1), gmask), gmask)
    print(f"{mask.shape[0]} held-out jets of {args.jets}, {len(codes)} generated by "
          f"{args.model}")
    print(f"cross-entropy per token: code or stop {ce['code or stop']:.3f} nats", end="")
    print(f", residual {ce['residual']:.3f} (the residual tokens' own entropy {entropy:.3f}, "
          f"log {tok.residual_codes} = {np.log(tok.residual_codes):.3f})"
          if tok.residual_codes else " (no residual codes)")
    print(f"{'jets':40s}{'mass':>8s}{'tau21':>8s}{'tau32':>8s}")
    for name, x in rows.items():
        print(f"{name:40s}{x['mass']:8.1f}{x['tau21']:8.3f}{x['tau32']:8.3f}")
    if tok.residual_codes:
        emit("residual_codes_backbone", ce["residual"], "nats per residual token", entropy,
             ce["residual"] / entropy, cross_entropy=ce, rows=rows)
    else:
        emit("residual_codes_backbone", ce["code or stop"], "nats per code or stop token",
             ce["code or stop"], 1.0, cross_entropy=ce, rows=rows)
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="mode", required=True)
    t = sub.add_parser("tokenizer", help="residual codebooks fitted to a tokenizer")
    t.add_argument("--model", required=True, help="a tokenizer (or model) folder")
    t.add_argument("--fit", required=True, help="jets to fit the residual codes to")
    t.add_argument("--jets", required=True, help="jets to measure on (a held-out split)")
    t.add_argument("--grid", default="10:256,10:1024,20:256,20:1024", help="K:R,... settings")
    t.add_argument("--n-fit", type=int, default=5000)
    t.add_argument("--rms-leading", type=int, default=10,
                   help="constituents the rms is taken over")
    b = sub.add_parser("backbone", help="a backbone on a tokenizer with residual codes")
    b.add_argument("--model", required=True, help="a model folder with a backbone")
    b.add_argument("--jets", required=True, help="jets to measure on (a held-out split)")
    b.add_argument("--n-generated", type=int, default=1000)
    for p in (t, b):
        p.add_argument("--n", type=int, default=800, help="held-out jets (default 800)")
        p.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    return tokenizer_table(args) if args.mode == "tokenizer" else backbone_table(args)


if __name__ == "__main__":
    sys.exit(main())
