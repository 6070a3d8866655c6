"""CoDAE inference latency on CPU: the trigger question of the CoDAE paper.

Measures, for the paper's configuration (1.65 M parameters, one 72 x 58 occupancy image):

- Z_m score (small encoder only) per event at batch 1,
- full-reconstruction score (both encoders + decoder + BCE) per event at batch 1,
- full-reconstruction throughput in images/s at batch 256,

each for a naive eager version (``torch.no_grad``, NCHW, the module as written) and the optimised
one (``torch.inference_mode``, TorchScript trace + freeze + ``optimize_for_inference``, which
folds and fuses ops for oneDNN, channels_last memory). Baselines: the paper's CPU figures
(TF-Lite fp16 at batch 1: about 3 ms for the small encoder, about 40 ms for the full
reconstruction) and the naive eager version measured here. Goals: < 1 ms and < 10 ms.

Timings are the median of repeated calls after warm-up, with ``--threads`` torch threads (default
1: the development machine is shared and noisy; say so when quoting numbers). Weights are random
unless ``--model`` names a checkpoint folder: latency does not depend on the weights.

    python benchmarks/codae_latency.py [--quick] [--threads 1] [--model runs/real_codae/codae]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from _common import emit  # noqa: E402

from jetfm.models.codae import CoDAE, CoDAEConfig, n_parameters  # noqa: E402

PAPER_ZM_MS, PAPER_FULL_MS = 3.0, 40.0


def median_time(fn, repeats: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


class ZmScore(torch.nn.Module):
    def __init__(self, model: CoDAE):
        super().__init__()
        self.enc = model.mask_encoder

    def forward(self, x):
        return self.enc(x)


class FullScore(torch.nn.Module):
    """Per-event BCE of the reconstruction (the full-reconstruction anomaly score)."""

    def __init__(self, model: CoDAE):
        super().__init__()
        self.model = model

    def forward(self, x):
        logits = self.model(x)
        return F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum((1, 2, 3))


def optimise(module: torch.nn.Module, example: torch.Tensor) -> torch.nn.Module:
    module = module.eval().to(memory_format=torch.channels_last)
    with torch.inference_mode(False), torch.no_grad():
        traced = torch.jit.trace(module, example.to(memory_format=torch.channels_last))
        frozen = torch.jit.optimize_for_inference(torch.jit.freeze(traced))
    return frozen


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats, batch 64 throughput")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--model", default=None, help="checkpoint folder (default: random weights)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.model:
        from jetfm.anomaly.training import from_pretrained

        model, _ = from_pretrained(args.model)
    else:
        model = CoDAE(CoDAEConfig()).eval()
    reps = 15 if args.quick else 60
    big = 64 if args.quick else 256
    x1 = (torch.rand(1, 1, 72, 58) < 0.03).float()
    xb = (torch.rand(big, 1, 72, 58) < 0.03).float()

    zm, full = ZmScore(model).eval(), FullScore(model).eval()
    res = {}
    with torch.no_grad():  # naive: eager, autograd off, as written
        res["zm_naive"] = median_time(lambda: zm(x1), reps) * 1e3
        res["full_naive"] = median_time(lambda: full(x1), reps) * 1e3
        res["tput_naive"] = big / median_time(lambda: full(xb), max(3, reps // 10), warmup=1)
    zm_o, full_o = optimise(zm, x1), optimise(full, x1)
    x1c, xbc = x1.to(memory_format=torch.channels_last), xb.to(memory_format=torch.channels_last)
    with torch.inference_mode():
        # the optimised graphs compute the same scores
        torch.testing.assert_close(zm_o(x1c), zm(x1), rtol=1e-3, atol=1e-3)
        torch.testing.assert_close(full_o(x1c), full(x1), rtol=1e-3, atol=1e-2)
        res["zm_opt"] = median_time(lambda: zm_o(x1c), reps) * 1e3
        res["full_opt"] = median_time(lambda: full_o(x1c), reps) * 1e3
        res["tput_opt"] = big / median_time(lambda: full_o(xbc), max(3, reps // 10), warmup=1)

    print(f"CoDAE ({n_parameters(model):,} parameters), CPU, {args.threads} thread(s), "
          f"median of {reps} calls; machine shared with other jobs: expect noise")
    print(f"{'':34s}{'naive eager':>14s}{'optimised':>12s}{'paper (TF-Lite)':>18s}{'goal':>8s}")
    print(f"{'Z_m score, batch 1 [ms/event]':34s}{res['zm_naive']:14.2f}{res['zm_opt']:12.2f}"
          f"{PAPER_ZM_MS:18.1f}{'< 1':>8s}")
    print(f"{'full score, batch 1 [ms/event]':34s}{res['full_naive']:14.2f}{res['full_opt']:12.2f}"
          f"{PAPER_FULL_MS:18.1f}{'< 10':>8s}")
    print(f"{f'full score, batch {big} [images/s]':34s}{res['tput_naive']:14.0f}"
          f"{res['tput_opt']:12.0f}")
    emit("codae_latency", res["zm_opt"], "ms/event (Z_m score, batch 1, CPU)", PAPER_ZM_MS,
         PAPER_ZM_MS / res["zm_opt"], zm_naive_ms=round(res["zm_naive"], 3),
         full_ms=round(res["full_opt"], 3), full_naive_ms=round(res["full_naive"], 3),
         full_baseline_ms=PAPER_FULL_MS, full_ratio=round(PAPER_FULL_MS / res["full_opt"], 3),
         images_per_s=round(res["tput_opt"], 1), images_per_s_naive=round(res["tput_naive"], 1),
         throughput_batch=big, threads=args.threads, quick=args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
