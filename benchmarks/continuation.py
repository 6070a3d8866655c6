"""Where a backbone loses the substructure: held-out jets continued from their leading tokens.

For a trained model folder and a file of jets it tokenizes the jets, gives the backbone the first
k tokens of each as a prompt, samples the rest at temperature 1, decodes, and prints per k the
medians of mass, tau21, tau32 and multiplicity, how close the soft constituents lie to the
hard ones (soft dR: the pT-weighted mean angular distance of every constituent after the 10th to
the nearest of the 10 leading ones) and how far the prongs open (prong dR: the same for the
4th to 10th constituents against the 3 leading ones). k = 0 is plain generation; "tokenized"
is the jets themselves through the tokenizer (what a perfect backbone would give). If tau32
stays far from the tokenized value even with the leading constituents given, the backbone
misplaces the soft ones.

A second table (``--leading``) follows tau32 as the jets grow: the medians of tau32, tau21, mass
and pT fraction of each jet's N leading constituents alone, for the raw jets, the tokenized ones
and the plain generation (k = 0, or the shortest prompt). Where tokenized and raw part, the
tokenizer loses the structure; where generated and tokenized part, the backbone does. A third
table, with it, gives how the three leading constituents lie: the quartiles of the distance
between the 1st and the 2nd (d12) and from the 3rd to the nearer of them (d3). In top jets the
two leading ones are often nearly collinear (one prong's core); a backbone that places them too
far apart blurs the prongs from the first constituents on.

    python benchmarks/continuation.py runs/demo_default/scan/.../model \\
        runs/demo_default/data/top.root [--n 600] [--k 0,3,10] [--leading 3,6,10,20]
"""
from __future__ import annotations

import argparse
import sys

import numpy as np
from _common import emit  # noqa: E402

from jetfm.evaluate.fidelity import TOP_WINDOW  # noqa: E402

#: constituents counted as the hard ones of a jet
N_HARD = 10


def continue_codes(backbone, tok, codes: np.ndarray, mask: np.ndarray, k: int, seed: int = 0,
                   max_new: int = 128, batch_size: int = 256):
    """Codes (N, P) of ``tok`` with their mask -> (codes (N, max_new), mask): each jet's first
    ``k`` constituents kept (their code and, with residual codes, residual tokens), the rest
    sampled at temperature 1 with the key/value cache. Jets with fewer than k constituents keep
    them all and are continued from there."""
    import torch

    from jetfm.omnijet.backbone import draw_tokens, tokens_to_codes

    cfg = backbone.cfg
    stop = cfg.stop_token
    seqs = tok.sequences(codes, mask)
    # the prompt's tokens: k codes, and a residual token for each of the first residual_leading
    kt = k + min(k, cfg.residual_leading if cfg.residual_codes else 0)
    if seqs.shape[1] < kt + 2:
        seqs = np.pad(seqs, ((0, 0), (0, kt + 2 - seqs.shape[1])), constant_values=-1)
    weight = backbone.output_weight()
    g = torch.Generator().manual_seed(seed)
    out_c, out_m = [], []
    backbone.eval()
    with torch.no_grad():
        for lo in range(0, len(seqs), batch_size):
            s = torch.as_tensor(seqs[lo:lo + batch_size, :kt + 1], dtype=torch.long)
            n = len(s)
            gen = torch.full((n, max_new), stop, dtype=torch.long)
            body = s[:, 1:]
            # a jet shorter than the prompt: its whole sequence, stop included, is the prompt
            gen[:, :kt] = torch.where(body >= 0, body, torch.full_like(body, stop))
            length = ((body >= 0) & (body != stop)).sum(1)
            # a backbone conditioned on the multiplicity continues each jet to its own
            mult = torch.as_tensor(mask[lo:lo + batch_size].sum(1)) if cfg.multiplicity else None
            state = backbone.new_state(n, max_new + 1, multiplicity=mult)
            tok_in = torch.cat([s[:, :1], gen[:, :kt]], 1)
            h = backbone.advance(tok_in, state, pos=0)
            # the hidden state after each jet's last prompt token
            last = h[torch.arange(n), length]
            done = length < kt  # a short jet: its prompt is the whole jet
            # rows continue in lockstep from position kt; a short prompt's row is done already
            for t in range(kt, max_new):
                nxt = draw_tokens(backbone.next_logits(last, state, t, weight),
                                  torch.rand(n, generator=g, dtype=torch.float64))
                nxt = torch.where(done, torch.full_like(nxt, stop), nxt)
                gen[:, t] = nxt
                done |= nxt == stop
                if bool(done.all()):
                    break
                last = backbone.advance(nxt[:, None], state, pos=t + 1)[:, -1]
            cc, m = tokens_to_codes(gen, cfg)
            out_c.append(cc.numpy())
            out_m.append(m.numpy())
    return np.concatenate(out_c), np.concatenate(out_m)


def pt_ordered(jets, first: int | None = None) -> tuple[np.ndarray, ...]:
    """(pT, eta, phi) of each jet's constituents in falling pT (the ``first`` leading ones, default
    all), pT 0 on padding; the angles relative to the jet: eta_rel, phi_rel of decoded jets,
    deta, dphi of raw JetClass ones."""
    pt = constituent_pt(jets)
    order = np.argsort(-pt, axis=1, kind="stable")[:, :first]
    rel = "eta_rel" in jets.constituent_names
    return tuple(np.take_along_axis(a, order, 1) for a in (
        pt, jets.c("eta_rel" if rel else "deta"), jets.c("phi_rel" if rel else "dphi")))


def soft_distance(jets, n_hard: int = N_HARD, upto: int | None = None) -> np.ndarray:
    """Per jet: the pT-weighted mean distance in (eta_rel, phi_rel) of the constituents after the
    ``n_hard``-th (pT order; up to the ``upto``-th, default all) to the nearest of the
    ``n_hard`` leading ones; NaN for jets with at most ``n_hard``."""
    pt, eta, phi = pt_ordered(jets)
    sl = slice(n_hard, upto)
    d = np.hypot(eta[:, sl, None] - eta[:, None, :n_hard],
                 phi[:, sl, None] - phi[:, None, :n_hard]).min(-1)
    w = pt[:, sl]
    tot = w.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(tot > 0, (w * d).sum(1) / tot, np.nan)


def constituent_pt(jets) -> np.ndarray:
    """(N, P) pT of each constituent, 0 on padding (a ``pt`` column or px, py)."""
    pt = jets.c("pt") if "pt" in jets.constituent_names else np.hypot(jets.c("px"), jets.c("py"))
    return np.where(jets.mask, pt, 0.0)


def leading_profile(jets, ns) -> dict:
    """Per N in ``ns``: the medians of tau32, tau21, mass of each jet's N leading (pT)
    constituents alone, and of the pT fraction they carry."""
    import dataclasses

    from jetfm.evaluate.fidelity import fidelity_observables

    pt = constituent_pt(jets)
    rank = np.argsort(np.argsort(-pt, 1, kind="stable"), 1, kind="stable")
    total = pt.sum(1)
    out = {}
    for n in ns:
        keep = jets.mask & (rank < n)
        obs = fidelity_observables(dataclasses.replace(jets, mask=keep))
        with np.errstate(invalid="ignore", divide="ignore"):
            frac = np.where(total > 0, np.where(keep, pt, 0).sum(1) / total, np.nan)
        out[n] = {"tau32": float(np.median(obs["tau32"])),
                  "tau21": float(np.median(obs["tau21"])),
                  "mass": float(np.median(obs["mass"])), "pt_fraction": float(np.nanmedian(frac))}
    return out


def leading_distances(jets) -> dict:
    """How the three leading (pT) constituents lie: per jet the distance in (eta_rel, phi_rel)
    between the 1st and the 2nd (``d12``) and from the 3rd to the nearer of them (``d3``);
    quartiles of each over the jets with at least three constituents. Two nearly collinear
    leading constituents (a prong's core) give the small tau21 of the three leading ones."""
    _, eta, phi = pt_ordered(jets, 3)
    ok = jets.mask.sum(1) >= 3
    d = lambda i, j: np.hypot(eta[ok, i] - eta[ok, j], phi[ok, i] - phi[ok, j])  # noqa: E731
    dist = {"d12": d(0, 1), "d3": np.minimum(d(2, 0), d(2, 1))}
    return {k: [float(q) for q in np.quantile(v, [0.25, 0.5, 0.75])] for k, v in dist.items()}


def summary(jets) -> dict:
    from jetfm.evaluate.fidelity import fidelity_observables

    obs = fidelity_observables(jets)
    out = {k: float(np.median(obs[k])) for k in ("mass", "tau21", "tau32", "n_constituents")}
    # the prongs of the jets with a top-like mass: a jet can have the mass without the prongs
    win = (obs["mass"] > TOP_WINDOW[0]) & (obs["mass"] < TOP_WINDOW[1])
    out["tau32_in_window"] = float(np.median(obs["tau32"][win])) if win.any() else float("nan")
    out["soft_distance"] = float(np.nanmedian(soft_distance(jets)))
    # the 4th to 10th constituents against the 3 leading ones: how far apart the prongs open
    out["prong_distance"] = float(np.nanmedian(soft_distance(jets, 3, N_HARD)))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", help="a jetfm model folder with a backbone")
    ap.add_argument("jets", help="a file of jets (AOJ .h5, JetClass .root/.parquet)")
    ap.add_argument("--n", type=int, default=600, help="the last N jets of the file")
    ap.add_argument("--k", default="0,1,3,5,10", help="prompt lengths, comma-separated")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--leading", default="3,6,10,20",
                    help="N of the leading-constituent table, comma-separated ('' : none)")
    args = ap.parse_args(argv)
    from jetfm.io import read_jets
    from jetfm.train.api import load_pretrained

    model = load_pretrained(args.model)
    if model.backbone is None:
        print(f"continuation.py: {args.model}: the model has no backbone", file=sys.stderr)
        return 2
    tok = model.tokenizer
    jets = read_jets(args.jets)
    jets = jets[max(0, len(jets) - args.n):]
    feats, mask = model.preprocessing.forward(jets)
    codes = tok.encode_arrays(feats, mask)

    def decode(c, m):
        p = max(1, int(m.sum(1).max()))
        return tok.decode(np.where(m, c, -1)[:, :p], m[:, :p])

    tokenized = decode(codes, mask)
    rows = {"raw": summary(jets), "tokenized": summary(tokenized)}
    max_new = model.config.sampling.max_new
    plain = None
    for k in sorted(int(x) for x in args.k.split(",")):
        c, m = continue_codes(model.backbone, tok, codes, mask, k, args.seed, max_new)
        keep = m.sum(1) >= 1
        made = decode(c[keep], m[keep])
        plain = (k, made) if plain is None else plain
        rows[f"first {k} given"] = summary(made)
    print(f"{len(jets)} jets of {args.jets}, continued by {args.model} at temperature 1")
    print(f"{'jets':22s}{'mass':>8s}{'tau21':>8s}{'tau32':>8s}{'mult.':>7s}{'soft dR':>9s}"
          f"{'prong dR':>10s}   tau32 of the jets of mass {TOP_WINDOW[0]:.0f}-{TOP_WINDOW[1]:.0f}")
    for name, r in rows.items():
        print(f"{name:22s}{r['mass']:8.1f}{r['tau21']:8.3f}{r['tau32']:8.3f}"
              f"{r['n_constituents']:7.0f}{r['soft_distance']:9.3f}{r['prong_distance']:10.3f}"
              f"{r['tau32_in_window']:10.3f}")
    profile = {}
    if args.leading and plain is not None:
        ns = [int(x) for x in args.leading.split(",")]
        sets = {"raw": jets, "tokenized": tokenized, f"first {plain[0]} given": plain[1]}
        profile = {name: leading_profile(j, ns) for name, j in sets.items()}
        print("\nthe N leading constituents alone: medians of tau32, tau21, mass [GeV] and "
              "pT fraction")
        print(f"{'N':>4s}" + "".join(f"{name:>30s}" for name in sets))
        for n in ns:
            print(f"{n:4d}" + "".join(
                f"{p[n]['tau32']:8.3f}{p[n]['tau21']:8.3f}{p[n]['mass']:7.0f}"
                f"{p[n]['pt_fraction']:7.2f}" for p in profile.values()))
        profile["distances"] = {name: leading_distances(j) for name, j in sets.items()}
        print("\nthe three leading constituents: quartiles (25, 50, 75 %) of the distance of the "
              "2nd to the 1st (d12) and of the 3rd to the nearer of them (d3)")
        for name, q in profile["distances"].items():
            print(f"{name:22s}" + "".join(f"  {k} " + " ".join(f"{x:.3f}" for x in q[k])
                                          for k in ("d12", "d3")))
    first = [k for k in rows if k not in ("raw", "tokenized")][-1]
    emit("continuation", rows[first]["tau32"], f"tau32 median, {first}",
         rows["tokenized"]["tau32"], rows[first]["tau32"] / rows["tokenized"]["tau32"],
         rows=rows, n_jets=len(jets), leading=profile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
