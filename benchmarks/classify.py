"""Jet classification speed on the CPU: scoring jets/s of the OmniJet-alpha classifier (``jetfm
classify predict``) for the ``small`` and ``paper`` presets against the forward pass's FLOP limit
(the jets/s the model's matmul FLOPs would allow at the machine's matrix-multiply peak, measured
in the same run with the same threads), and training tokens/s (forward, backward and AdamW step).

    python benchmarks/classify.py [--quick] [--jets 4096] [--threads 1]

The models are seeded random networks of the presets' sizes (speed does not depend on the
weights); the jets are token sequences whose lengths are drawn from AOJ-like multiplicities
(20 to 72 constituents, mean 46). FLOPs count the real tokens only (start, codes, stop), so
compute spent on padding counts against the scorer. The last line is one JSON object.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import best_of, emit  # noqa: E402
from sampling import matmul_peak  # noqa: E402

from jetfm.omnijet.classifier import JetClassifier, classifier_flops  # noqa: E402
from jetfm.omnijet.config import load_omnijet_config  # noqa: E402


def sequences(n: int, vocab: int, seed: int = 0) -> torch.Tensor:
    """(n, 75) token sequences: start, 20..72 codes, stop, -1 padding."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(20, 73, n)
    seqs = np.full((n, 75), -1, np.int64)
    for i, k in enumerate(lengths):
        seqs[i, 0] = 0
        seqs[i, 1:k + 1] = rng.integers(1, vocab - 1, k)
        seqs[i, k + 1] = vocab - 1
    return torch.as_tensor(seqs)


def bench_preset(preset: str, n_jets: int, peak: float, repeats: int) -> dict:
    cfg = load_omnijet_config(preset)
    torch.manual_seed(0)
    clf = JetClassifier(cfg.backbone, cfg.classifier, 2).eval()
    seqs = sequences(n_jets, cfg.backbone.vocab_size)
    lengths = (seqs >= 0).sum(1).double()
    tokens, mean_len = float(lengths.sum()), float(lengths.mean())
    flops = classifier_flops(cfg.backbone, cfg.classifier, 2, tokens, mean_len)
    clf.predict_proba(seqs[:256])  # warm-up
    t = best_of(lambda: clf.predict_proba(seqs), repeats)
    # the same scorer in batches of 512: activations no longer fit the caches
    t512 = best_of(lambda: clf.predict_proba(seqs, batch_size=512), repeats)
    jets_s = n_jets / t
    limit = n_jets / (flops / peak)
    # training: batches of 64 jets, forward + backward (about 3x the forward FLOPs) + AdamW
    train = JetClassifier(cfg.backbone, cfg.classifier, 2).train()
    opt = torch.optim.AdamW(train.parameters(), lr=1e-4)
    labels = torch.randint(0, 2, (n_jets,), generator=torch.Generator().manual_seed(1))
    batch, steps = 64, max(4, min(32, n_jets // 64))

    def run_steps():
        for i in range(steps):
            s = seqs[i * batch:(i + 1) * batch]
            s = s[:, :int((s >= 0).sum(1).max())]
            loss = train.loss(s, labels[i * batch:(i + 1) * batch])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    run_steps()  # warm-up
    tt = best_of(run_steps, repeats)
    train_tokens = float(lengths[:steps * batch].sum())
    train_flops = 3 * classifier_flops(cfg.backbone, cfg.classifier, 2, train_tokens, mean_len)
    return {"preset": preset, "parameters": sum(p.numel() for p in clf.parameters()),
            "score_jets_per_s": jets_s, "score_jets_per_s_batch512": n_jets / t512,
            "flop_limit_jets_per_s": limit,
            "limit_over_achieved": limit / jets_s, "score_gflops": flops / t / 1e9,
            "train_tokens_per_s": train_tokens / tt,
            "train_fraction_of_peak": train_flops / tt / peak}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="1024 jets, one repeat")
    ap.add_argument("--jets", type=int, default=4096)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (the peak is measured with the same number)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    n = 1024 if args.quick else args.jets
    repeats = 1 if args.quick else 3
    peak = matmul_peak()
    print(f"matmul peak {peak / 1e9:.1f} GFLOP/s on {torch.get_num_threads()} threads")
    res = [bench_preset(p, n, peak, repeats) for p in ("small", "paper")]
    for r in res:
        print(f"{r['preset']:>6}: {r['parameters']:,} parameters; scoring "
              f"{r['score_jets_per_s']:,.0f} jets/s in batches of 64 "
              f"({r['score_jets_per_s_batch512']:,.0f} in batches of 512; "
              f"{r['score_gflops']:.1f} GFLOP/s), FLOP limit "
              f"{r['flop_limit_jets_per_s']:,.0f} jets/s: {r['limit_over_achieved']:.2f}x the "
              f"limit; training {r['train_tokens_per_s']:,.0f} tokens/s "
              f"({100 * r['train_fraction_of_peak']:.0f} % of peak)")
    worst = max(r["limit_over_achieved"] for r in res)
    emit("classify_scoring", res[0]["score_jets_per_s"], "jets/s",
         res[0]["flop_limit_jets_per_s"], res[0]["limit_over_achieved"],
         peak_gflops=peak / 1e9, threads=torch.get_num_threads(), worst_limit_ratio=worst,
         presets={r["preset"]: {k: (round(v, 4) if isinstance(v, float) else v)
                                for k, v in r.items()} for r in res})


if __name__ == "__main__":
    main()
