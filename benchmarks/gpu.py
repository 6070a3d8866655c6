"""The GPU path at the ``paper`` size, on one CUDA device:

1. training: backbone (GPT) tokens/s with bf16 autocast + AdamW, and the model FLOP utilisation
   (MFU) against the GPU's bf16 matrix-multiply peak, measured here with a large matmul;
2. sampling: jets/s of the KV-cached sampler (``jetfm sample``) against the reference algorithm
   (whole sequence recomputed at each of 128 steps), same model, batch and seed;
3. data loading: the share of the training step spent waiting for data when the batches come
   from token files through the streaming loader (jetfm.train.streaming) instead of sitting on
   the GPU already; and the share (waiting + tokenizing) when they are streamed from AOJ files
   and tokenized per batch on the GPU by a paper-size tokenizer (``jetfm pretrain --streaming``).

    python benchmarks/gpu.py [--quick] [--batch 256] [--sample-batch 512] [--workers 4]
                             [--compile] [--no-record]

Results are printed, appended to benchmarks/RESULTS.md with the GPU's name (``--no-record``:
not), and the last line is one JSON object. Without a CUDA device it stops with exit code 2:
this is not part of the CPU test suite. ``--device cpu`` runs the same code on the CPU at a
tiny size in float32, to check the script itself; its figures mean nothing for a GPU and are not
recorded. Sampling runs in float32 (TF32 matmuls), as ``jetfm sample`` does; cached and
recomputed logits round differently, so "identical tokens" may be False on a GPU.

Model FLOPs per training step: 6 x (non-embedding parameters) x tokens + 12 x blocks x L^2 x dim
per sequence (attention), the usual MFU convention. The backbone is a seeded random
``paper``-size model (vocabulary 8194, dim 256, 3 blocks, 6.6 M parameters) on random
full-length sequences (start + 128 codes + stop), so every token is real. For sampling, the
stop-token bias is set so that a jet ends after about 1 / stop-prob tokens (AOJ jets have 46
constituents on average).
"""
from __future__ import annotations

import argparse
import datetime
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import emit  # noqa: E402

RESULTS = HERE / "RESULTS.md"


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def matmul_peak(dev: torch.device, n: int, repeats: int = 20) -> float:
    """Best measured bf16 matmul rate (FLOP/s) of an n x n x n product."""
    a = torch.randn(n, n, device=dev, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=dev, dtype=torch.bfloat16)
    for _ in range(3):
        torch.mm(a, b)
    sync(dev)
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.mm(a, b)
        sync(dev)
        best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 / best


def paper_backbone(dev: torch.device, stop_prob: float = 0.0):
    from jetfm.omnijet.backbone import JetGPT
    from jetfm.omnijet.config import load_omnijet_config

    cfg = load_omnijet_config("paper").backbone
    torch.manual_seed(0)
    model = JetGPT(cfg).to(dev)
    if stop_prob > 0:
        with torch.no_grad():  # logits of a random model are ~0: set p(stop) by the bias
            v = cfg.vocab_size
            model.head.bias[cfg.stop_token] = math.log(stop_prob * (v - 2) / (1 - stop_prob))
    return model


def random_sequences(n: int, length: int, cfg, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    seqs = rng.integers(1, cfg.vocab_size - 1, (n, length))
    seqs[:, 0] = 0
    seqs[:, -1] = cfg.stop_token
    return seqs


def train_flops(model, batch: int, length: int) -> float:
    cfg = model.cfg
    n_par = sum(p.numel() for p in model.parameters())
    n_emb = model.embed.weight.numel()
    tokens = batch * (length - 1)
    return 6 * (n_par - n_emb) * tokens + 12 * cfg.n_blocks * (length - 1) ** 2 * cfg.dim * batch


def make_step(model, dev: torch.device, compile_model: bool):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-2,
                            fused=dev.type == "cuda")
    loss_fn = torch.compile(model.loss) if compile_model else model.loss

    def step(seqs: torch.Tensor) -> None:
        # bf16 autocast for the backbone, as `--precision bf16-mixed` trains it (not in the
        # CPU check, where bf16 is emulated and very slow)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
            loss = loss_fn(seqs)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()

    return step


def bench_training(dev, batch: int, length: int, steps: int, compile_model: bool) -> dict:
    model = paper_backbone(dev).train()
    step = make_step(model, dev, compile_model)
    seqs = torch.as_tensor(random_sequences(batch, length, model.cfg), device=dev)
    for _ in range(3):  # warm-up: allocations, AdamW state, kernels (and compilation)
        step(seqs)
    sync(dev)
    t0 = time.perf_counter()
    for _ in range(steps):
        step(seqs)
    sync(dev)
    t = (time.perf_counter() - t0) / steps
    return {"step_s": t, "tokens_per_s": batch * (length - 1) / t,
            "flops_per_s": train_flops(model, batch, length) / t,
            "params": sum(p.numel() for p in model.parameters())}


def bench_data(dev, batch: int, length: int, steps: int, workers: int, compile_model: bool,
               t_pure: float) -> dict:
    """Training steps fed by the streaming loader from a token file on disk."""
    from jetfm.io.tokens import write_tokens
    from jetfm.train.streaming import StreamingJets, StreamingLoader

    model = paper_backbone(dev).train()
    step = make_step(model, dev, compile_model)
    n = batch * (steps + 3)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "tokens.h5")
        write_tokens(path, random_sequences(n, length, model.cfg, seed=1),
                     model.cfg.vocab_size - 2)
        ds = StreamingJets([path], batch_size=batch, seed=0, chunk_size=4 * batch,
                           buffer_size=8 * batch)
        loader = StreamingLoader(ds, num_workers=workers, pin_memory=dev.type == "cuda")
        it = iter(loader)
        for _ in range(3):  # warm-up, the workers started
            step(next(it)["tokens"].to(dev, non_blocking=True))
        sync(dev)
        waited = 0.0
        t0 = time.perf_counter()
        for _ in range(steps):
            w0 = time.perf_counter()
            seqs = next(it)["tokens"].to(dev, non_blocking=True)
            waited += time.perf_counter() - w0
            step(seqs)
        sync(dev)
        t = (time.perf_counter() - t0) / steps
        del it, loader
    return {"step_s": t, "waited_s": waited / steps,
            "share": max(0.0, (t - t_pure) / t), "waited_share": waited / steps / t}


def bench_stream_aoj(dev, batch: int, steps: int, workers: int, compile_model: bool) -> dict:
    """Training steps streamed from an AOJ file (copies of the real CMS jets), each batch
    tokenized on the device by a paper-size tokenizer (frozen, float32), as ``jetfm pretrain
    --streaming`` on AOJ files does. Seconds per step: ``waited`` in next(), ``tokenize``
    (synchronised, so it is timed), and the whole step."""
    from aoj_read import make_file

    from jetfm.omnijet.config import load_omnijet_config
    from jetfm.omnijet.tokenizer import VQVAETokenizer
    from jetfm.train.modules import BackboneModule
    from jetfm.train.streaming import StreamingJets, StreamingLoader

    cfg = load_omnijet_config("paper")
    prep = cfg.preprocessing.build()
    torch.manual_seed(0)
    tok = VQVAETokenizer(cfg.tokenizer, prep).to(dev).eval()
    model = paper_backbone(dev).train()
    step = make_step(model, dev, compile_model)
    # only its per-batch tokenization is used: the same code as in training
    module = BackboneModule(cfg.backbone, cfg.pretraining, tokenizer=tok)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "aoj.h5"
        make_file(path, batch * (steps + 4), seed=1)
        ds = StreamingJets([str(path)], batch_size=batch, seed=0, chunk_size=4 * batch,
                           buffer_size=8 * batch, preprocessing=prep)
        loader = StreamingLoader(ds, num_workers=workers, pin_memory=dev.type == "cuda")
        it = iter(loader)

        def sequences(b: dict) -> torch.Tensor:
            return module.sequences({k: b[k].to(dev, non_blocking=True) for k in ("x", "mask")})

        for _ in range(3):  # warm-up, the workers started
            step(sequences(next(it)))
        sync(dev)
        waited = tokenizing = 0.0
        t0 = time.perf_counter()
        for _ in range(steps):
            w0 = time.perf_counter()
            b = next(it)
            w1 = time.perf_counter()
            seqs = sequences(b)
            sync(dev)
            w2 = time.perf_counter()
            waited, tokenizing = waited + w1 - w0, tokenizing + w2 - w1
            step(seqs)
        sync(dev)
        t = (time.perf_counter() - t0) / steps
        del it, loader
    return {"step_s": t, "waited_s": waited / steps, "tokenize_s": tokenizing / steps,
            "share": (waited + tokenizing) / steps / t}


def bench_sampling(dev, batch: int, max_new: int, stop_prob: float) -> dict:
    from jetfm.omnijet.backbone import SampleStats, generate, generate_reference

    model = paper_backbone(dev, stop_prob).eval()
    kw = dict(n=batch, max_new=max_new, seed=0, batch_size=batch)

    def timed(fn):
        fn(SampleStats())  # warm-up
        sync(dev)
        st = SampleStats()
        t0 = time.perf_counter()
        out = fn(st)
        sync(dev)
        return time.perf_counter() - t0, out, st

    # float32 (TF32 matmuls on the GPU), as `jetfm sample` runs it
    t_ours, (c1, m1), _ = timed(lambda st: generate(model, stats=st, **kw))
    t_ref, (c2, m2), _ = timed(lambda st: generate_reference(model, stats=st, **kw))
    return {"ours": batch / t_ours, "reference": batch / t_ref,
            "identical": bool(torch.equal(c1.cpu(), c2.cpu())),
            "mean_length": float(m1.sum(1).float().mean())}


def record(lines: list[str]) -> None:
    """Append a section to benchmarks/RESULTS.md (created with a title if missing)."""
    head = "" if RESULTS.exists() else "# Benchmark results\n\nMeasured figures, newest last.\n"
    with open(RESULTS, "a") as fh:
        fh.write(head + "\n" + "\n".join(lines) + "\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="fewer steps, sampling batch 64, peak from a 4096^3 matmul")
    ap.add_argument("--device", default="cuda", help="cuda (default) or cuda:N; cpu: a check "
                    "of the script at a tiny size")
    ap.add_argument("--batch", type=int, default=256, help="training batch (the paper's: 256)")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--sample-batch", type=int, default=512, help="the reference's batch: 512")
    ap.add_argument("--stop-prob", type=float, default=1 / 46)
    ap.add_argument("--workers", type=int, default=4, help="data-loader workers")
    ap.add_argument("--compile", action="store_true", help="torch.compile the training step")
    ap.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    args = ap.parse_args()

    dev = torch.device(args.device)
    cpu_check = dev.type == "cpu"
    if not cpu_check and not torch.cuda.is_available():
        print("benchmarks/gpu.py: no CUDA device found (torch.cuda.is_available() is False); "
              "run it on a machine with an NVIDIA GPU and a CUDA build of torch "
              f"(this torch: {torch.__version__})", file=sys.stderr)
        return 2
    length = 130  # start + 128 codes + stop
    if cpu_check:
        batch, steps, sample_batch, max_new, peak_n = 4, 2, 4, 16, 512
    elif args.quick:
        batch, steps, sample_batch, max_new, peak_n = args.batch, 10, 64, 128, 4096
    else:
        batch, steps, sample_batch, max_new, peak_n = (args.batch, args.steps, args.sample_batch,
                                                       128, 8192)
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        name = torch.cuda.get_device_name(dev)
    else:
        name = "CPU (script check only)"

    peak = matmul_peak(dev, peak_n)
    print(f"device: {name}; bf16 matmul peak {peak / 1e12:.1f} TFLOP/s ({peak_n}^3)")
    tr = bench_training(dev, batch, length, steps, args.compile)
    mfu = tr["flops_per_s"] / peak
    print(f"training (paper backbone, {tr['params'] / 1e6:.2f} M parameters, batch {batch} x "
          f"{length}, {'float32' if cpu_check else 'bf16 autocast'}"
          f"{', compiled' if args.compile else ''}): "
          f"{tr['step_s'] * 1e3:.1f} ms/step, {tr['tokens_per_s']:,.0f} tokens/s, "
          f"{tr['flops_per_s'] / 1e12:.2f} TFLOP/s, MFU {mfu:.1%} (goal >= 35 %)")
    workers = 0 if cpu_check else args.workers
    data = bench_data(dev, batch, length, steps, workers, args.compile, tr["step_s"])
    print(f"fed from token files by the streaming loader ({workers} workers): "
          f"{data['step_s'] * 1e3:.1f} ms/step; data loading {data['share']:.1%} of the step "
          f"(waiting in next(): {data['waited_share']:.1%}) (goal < 10 %)")
    aoj = bench_stream_aoj(dev, batch, steps, workers, args.compile)
    print(f"streamed from AOJ files, tokenized per batch on the device ({workers} workers): "
          f"{aoj['step_s'] * 1e3:.1f} ms/step (real jets: shorter sequences); waiting "
          f"{aoj['waited_s'] * 1e3:.1f} ms + tokenizing {aoj['tokenize_s'] * 1e3:.1f} ms = "
          f"{aoj['share']:.1%} of the step (goal < 10 %)")
    sa = bench_sampling(dev, sample_batch, max_new, args.stop_prob)
    speedup = sa["ours"] / sa["reference"]
    print(f"sampling (batch {sample_batch}, {max_new} steps, mean length "
          f"{sa['mean_length']:.1f}): ours {sa['ours']:,.1f} jets/s, reference recompute "
          f"{sa['reference']:,.1f} jets/s: {speedup:.1f}x (goal >= 20x); identical tokens: "
          f"{sa['identical']}")

    if not cpu_check and not args.no_record:
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
        record([f"## GPU path on {name} ({stamp}, `benchmarks/gpu.py"
                f"{' --quick' if args.quick else ''}{' --compile' if args.compile else ''}`)",
                "",
                "| figure | value | baseline | ratio |", "|---|---|---|---|",
                f"| training tokens/s (paper backbone, batch {batch}, bf16) | "
                f"{tr['tokens_per_s']:,.0f} | bf16 matmul peak {peak / 1e12:.1f} TFLOP/s | "
                f"MFU {mfu:.1%} |",
                f"| sampling jets/s (batch {sample_batch}) | {sa['ours']:,.1f} | reference "
                f"{sa['reference']:,.1f} | {speedup:.1f}x |",
                f"| data loading share of step ({workers} workers) | {data['share']:.1%} | "
                f"step on GPU-resident data {tr['step_s'] * 1e3:.1f} ms | "
                f"{data['step_s'] / tr['step_s']:.2f}x |",
                f"| data share of step, streamed AOJ tokenized per batch ({workers} workers) | "
                f"{aoj['share']:.1%} | step {aoj['step_s'] * 1e3:.1f} ms (real jets) | "
                f"wait {aoj['waited_s'] * 1e3:.1f} ms, tokenize {aoj['tokenize_s'] * 1e3:.1f} ms |",
                "", f"torch {torch.__version__}, CUDA {torch.version.cuda}."])
        print(f"appended to {RESULTS}")
    emit("gpu_training_tokens_per_s", tr["tokens_per_s"], "tokens/s", peak / 1e12, mfu,
         device=name, baseline_unit="TFLOP/s bf16 matmul peak", ratio_meaning="MFU",
         batch=batch, compiled=args.compile, sampling_jets_per_s=round(sa["ours"], 2),
         sampling_reference_jets_per_s=round(sa["reference"], 2),
         sampling_speedup=round(speedup, 2), identical_tokens=sa["identical"],
         data_loading_share=round(data["share"], 4),
         data_waited_share=round(data["waited_share"], 4),
         aoj_streamed_data_share=round(aoj["share"], 4))
    return 0


if __name__ == "__main__":
    sys.exit(main())
