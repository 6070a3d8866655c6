"""Backbone training speed at the ``paper`` size: tokens/s of forward + backward + AdamW step,
and the model FLOP utilisation (MFU) against the machine's measured matrix-multiply peak.

    python benchmarks/training.py [--quick] [--batch 32] [--length 130] [--threads 1]

The batch is ``--batch`` full-length sequences (start + 128 codes + stop = 130 tokens, random
codes), so every token is a real one. Model FLOPs per step: 6 x (non-embedding parameters) x
tokens for the matmuls plus 12 x blocks x L^2 x dim per sequence for attention (the usual MFU
convention, full attention counted). The baseline is the measured float32 matmul rate of a large
square product: the ratio is the MFU. The machine is shared and noisy: best of the repeats.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit  # noqa: E402
from sampling import matmul_peak  # noqa: E402

from jetfm.omnijet.backbone import BackboneConfig, JetGPT  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="batch 8, 3 steps")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--length", type=int, default=130)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    batch, steps = (8, 3) if args.quick else (args.batch, args.steps)
    torch.manual_seed(0)
    cfg = BackboneConfig()
    model = JetGPT(cfg).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-2)
    seqs = torch.randint(1, cfg.vocab_size - 1, (batch, args.length))
    seqs[:, 0] = 0
    seqs[:, -1] = cfg.stop_token
    n_emb = model.embed.weight.numel()
    n_par = sum(p.numel() for p in model.parameters())
    tokens = batch * (args.length - 1)  # inputs per step (the last token is only a target)
    flops = (6 * (n_par - n_emb) * tokens
             + 12 * cfg.n_blocks * (args.length - 1) ** 2 * cfg.dim * batch)
    peak = matmul_peak()

    def step():
        loss = model.loss(seqs)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()

    step()  # warm-up (allocations, AdamW state)
    best = math.inf
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        best = min(best, time.perf_counter() - t0)
    tps = tokens / best
    achieved = flops / best
    print(f"paper backbone: {n_par / 1e6:.2f} M parameters, batch {batch} x {args.length} "
          f"tokens, {args.threads} threads")
    print(f"measured matmul peak: {peak / 1e9:.1f} GFLOP/s (float32, 768^3, best of 40)")
    print(f"training step: {best * 1e3:.0f} ms, {tps:,.0f} tokens/s, "
          f"{achieved / 1e9:.1f} GFLOP/s model FLOPs, MFU {achieved / peak:.0%} "
          f"(goal >= 40 %). Shared, noisy machine: best of {steps} steps.")
    emit("training_tokens_per_s", tps, "tokens/s", peak / 1e9, achieved / peak,
         batch=batch, length=args.length, threads=args.threads,
         achieved_gflops=round(achieved / 1e9, 2), baseline_unit="GFLOP/s matmul peak",
         ratio_meaning="MFU")


if __name__ == "__main__":
    main()
