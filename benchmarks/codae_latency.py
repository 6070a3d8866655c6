"""CoDAE inference latency on CPU: the trigger question of the CoDAE paper.

Measures, for the paper's configuration (1.65 M parameters, one 72 x 58 occupancy image):

- Z_m score (small encoder only) per event at batch 1,
- full-reconstruction score (both encoders + decoder + BCE) per event at batch 1,
- Z_m and full-score throughput in images/s at batch 256,

side by side for: PyTorch eager (``torch.no_grad``, the module as written: the baseline),
TorchScript (trace + freeze + ``optimize_for_inference``, channels_last), and ONNX Runtime with
every graph optimisation on the graphs ``jetfm anomaly export`` writes, in fp32, fp16,
int8-dynamic and int8-static (calibrated on the benchmark's own sparse images). The paper's CPU
figures (TF-Lite fp16 at batch 1: about 3 ms for the small encoder, about 40 ms for the full
reconstruction) are the reference; goals: < 1 ms and < 10 ms.

Timings are medians of repeated calls after warm-up on ``--threads`` threads (default 1), as CPU
time of the process (``time.process_time``): on the shared development machine wall time also
counts the waits for a core; the wall-time medians are in the JSON line too. Weights are random
unless ``--model`` names a checkpoint folder: latency does not depend on the weights.

    python benchmarks/codae_latency.py [--quick] [--threads 1] [--model runs/real/codae]
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from _common import emit  # noqa: E402

from jetfm.codae.model import CoDAE, CoDAEConfig, n_parameters  # noqa: E402

PAPER_ZM_MS, PAPER_FULL_MS = 3.0, 40.0


def median_time(fn, repeats: int, warmup: int = 3) -> tuple[float, float]:
    """(median CPU seconds, median wall seconds) per call."""
    for _ in range(warmup):
        fn()
    cpu, wall = [], []
    for _ in range(repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - t0)
    return statistics.median(cpu), statistics.median(wall)


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


def onnx_variants(model: CoDAE, folder: str, calib: torch.Tensor) -> dict[str, dict[str, str]]:
    """Export the Z_m encoder and the full score graph once in fp32, then each precision."""
    from jetfm.codae.export import (
        PRECISIONS,
        FullGraph,
        ZmGraph,
        export_graph,
        output_names,
        quantise,
    )

    out: dict[str, dict[str, str]] = {}
    with torch.inference_mode(False):
        for name, module, outputs in (("zm", ZmGraph(model), ["z_m"]),
                                      ("full", FullGraph(model), output_names(True))):
            fp32 = os.path.join(folder, f"{name}.fp32.onnx")
            export_graph(module, fp32, outputs, calib[:2])
            out.setdefault("fp32", {})[name] = fp32
            for prec in PRECISIONS[1:]:
                path = os.path.join(folder, f"{name}.{prec}.onnx")
                shutil.copy(fp32, path)
                quantise(path, prec, calib.numpy())
                out.setdefault(prec, {})[name] = path
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats, batch 64 throughput")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--model", default=None, help="checkpoint folder (default: random weights)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.model:
        from jetfm.codae.checkpoint import from_pretrained

        model, _ = from_pretrained(args.model)
    else:
        model = CoDAE(CoDAEConfig()).eval()
    from jetfm.codae.runtime import session

    reps = 15 if args.quick else 60
    big = 64 if args.quick else 256
    big_reps = 2 if args.quick else 3
    x1 = (torch.rand(1, 1, 72, 58) < 0.07).float()
    xb = (torch.rand(big, 1, 72, 58) < 0.07).float()
    zm, full = ZmScore(model).eval(), FullScore(model).eval()

    def measure(zm_fn, full_fn, a1, ab) -> dict:
        r = {}
        for key, fn in (("zm", zm_fn), ("full", full_fn)):
            cpu, wall = median_time(lambda: fn(a1), reps)
            r[f"{key}_ms"], r[f"{key}_wall_ms"] = cpu * 1e3, wall * 1e3
            cpu, wall = median_time(lambda: fn(ab), big_reps, warmup=1)
            r[f"{key}_per_s"], r[f"{key}_wall_per_s"] = big / cpu, big / wall
        return r

    res = {}
    with torch.no_grad():  # the baseline: eager, autograd off, as written
        res["torch eager"] = measure(zm, full, x1, xb)
    zm_o, full_o = optimise(zm, x1), optimise(full, x1)
    x1c, xbc = x1.to(memory_format=torch.channels_last), xb.to(memory_format=torch.channels_last)
    with torch.inference_mode():
        # the optimised graphs compute the same scores
        torch.testing.assert_close(zm_o(x1c), zm(x1), rtol=1e-3, atol=1e-3)
        torch.testing.assert_close(full_o(x1c), full(x1), rtol=1e-3, atol=1e-2)
        res["TorchScript"] = measure(zm_o, full_o, x1c, xbc)
    with tempfile.TemporaryDirectory() as tmp:
        for prec, paths in onnx_variants(model, tmp, xb[:64]).items():
            s_zm, s_full = session(paths["zm"], args.threads), session(paths["full"], args.threads)
            with torch.no_grad():
                want_zm, want_full = zm(xb[:16]).numpy(), full(xb[:16]).numpy()
            got_zm = s_zm.run(["z_m"], {"x": xb[:16].numpy()})[0]
            got_full = s_full.run(["bce"], {"x": xb[:16].numpy()})[0]
            rel = max(float(np.abs(got_zm - want_zm).max() / np.abs(want_zm).max()),
                      float(np.abs(got_full - want_full).max() / np.abs(want_full).max()))
            if prec == "fp32":  # the exported graphs compute the same scores
                assert rel < 1e-4, rel
            r = measure(lambda a: s_zm.run(["z_m"], {"x": a}),
                        lambda a: s_full.run(["bce"], {"x": a}), x1.numpy(), xb.numpy())
            res[f"ORT {prec}"] = {**r, "max_rel_diff": rel}

    base = res["torch eager"]
    print(f"CoDAE ({n_parameters(model):,} parameters), CPU, {args.threads} thread(s), median "
          f"CPU time of {reps} calls (batch {big}: {big_reps}); shared machine: expect noise")
    print(f"{'':18s}{'Z_m ms':>9s}{'full ms':>9s}{f'Z_m/s b{big}':>12s}{f'full/s b{big}':>13s}"
          f"{'vs eager (Z_m, full)':>22s}{'max rel diff':>14s}")
    print(f"{'paper (TF-Lite)':18s}{PAPER_ZM_MS:9.2f}{PAPER_FULL_MS:9.2f}")
    for name, r in res.items():
        print(f"{name:18s}{r['zm_ms']:9.2f}{r['full_ms']:9.2f}{r['zm_per_s']:12.0f}"
              f"{r['full_per_s']:13.1f}{base['zm_ms'] / r['zm_ms']:11.1f}x"
              f"{base['full_ms'] / r['full_ms']:9.1f}x{r.get('max_rel_diff', 0):14.1e}")
    print(f"{'goal':18s}{'< 1':>9s}{'< 10':>9s}")
    best = res["ORT fp32"]
    emit("codae_latency", best["zm_ms"], "ms/event (Z_m score, batch 1, CPU, ONNX Runtime fp32)",
         PAPER_ZM_MS, PAPER_ZM_MS / best["zm_ms"], full_ms=round(best["full_ms"], 3),
         full_baseline_ms=PAPER_FULL_MS, full_ratio=round(PAPER_FULL_MS / best["full_ms"], 3),
         eager_zm_ms=round(base["zm_ms"], 3), eager_full_ms=round(base["full_ms"], 3),
         variants={k: {kk: round(vv, 4 if kk == "max_rel_diff" else 2) for kk, vv in v.items()}
                   for k, v in res.items()},
         throughput_batch=big, threads=args.threads, quick=args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
