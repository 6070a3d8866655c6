"""Streaming training data, two figures:

1. loader throughput (default): jets/s through jetfm's sharded streaming loader (read,
   OmniJet-alpha features, shuffle buffer, batches as tensors) against the raw h5py read of the
   same rows (the limit: decompressing the datasets and nothing else);
2. ``--training``: the data-loading share of a pre-training step at the ``small`` preset, streamed
   (`jetfm pretrain --streaming`: batches read and preprocessed by the loader, tokenized per
   batch by the frozen tokenizer inside the step) against the in-memory path (the default for
   small data: every jet read and tokenized up front, batches sliced from memory). The share is
   (time waiting for the next batch + time tokenizing) / (wait + step), over steady-state steps;
   the epoch start (the shuffle buffer filling) is given separately. A third row streams token
   files (``jetfm tokenize`` output) instead. Use a buffer and chunks smaller than the defaults
   (e.g. ``--buffer 4096 --chunk 1024``) so that the timed steps include several reads.

    python benchmarks/data_loading.py [--jets 80000] [--files 4] [--quick]
    python benchmarks/data_loading.py --training [--steps 60] [--workers 0 1] [--buffer 4096]
                                      [--chunk 1024] [--quick]

The files are copies of the real CMS jets of ../shared/data/real/aoj_mini_2016H, each copy
rotated in phi and scaled in pT (benchmarks/aoj_read.py's generator, so the compression ratio is
that of real data), cached in benchmarks/out/. The loader runs in this process (num_workers=0)
and with worker processes. The tokenizer of ``--training`` is a seeded untrained small-preset
tokenizer: its cost does not depend on its weights. On a shared machine the figures depend on
how many cores are free at the time: note ``uptime`` beside them.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import h5py

from jetfm.train.streaming import StreamingJets, StreamingLoader

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import best_of, emit  # noqa: E402
from aoj_read import make_file  # noqa: E402

CHUNK = 4096


def raw_read(paths: list[Path]) -> int:
    """Decompress every row of the datasets the loader uses, in chunks: the limit."""
    n = 0
    for p in paths:
        with h5py.File(p) as f:
            for a in range(0, f["PFCands"].shape[0], CHUNK):
                n += len(f["PFCands"][a:a + CHUNK])
                f["jet_kinematics"][a:a + CHUNK]
                f["event_info"][a:a + CHUNK]
    return n


def stream(paths: list[Path], workers: int, batch: int, buffer: int) -> int:
    ds = StreamingJets([str(p) for p in paths], chunk_size=CHUNK, buffer_size=buffer, seed=0,
                       batch_size=batch)
    n = 0
    for b in StreamingLoader(ds, num_workers=workers):
        n += len(b["index"])
    return n


def step_times(loader, module, steps: int, skip: int) -> dict:
    """Train ``module`` for ``skip + steps`` steps with Lightning (no validation, no
    checkpoints, no logger); returns seconds: ``first`` (epoch start to the first batch: the
    buffer filling), and over the last ``steps`` steps ``wait`` (end of one step to the start of
    the next: fetching the batch), ``step`` (the training step itself) and ``tokenize`` (the
    part of ``step`` spent tokenizing)."""
    import lightning.pytorch as L

    from jetfm.train.streaming import SetEpoch

    class Clock(L.Callback):
        def __init__(self):
            self.wait, self.step, self.tok, self.end, self.first = [], [], [], None, 0.0

        def on_train_epoch_start(self, trainer, pl_module):
            self.epoch_start = time.perf_counter()

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            t = time.perf_counter()
            if self.end is None:
                self.first = t - self.epoch_start
            else:
                self.wait.append(t - self.end)
            self.tok0 = getattr(pl_module, "tokenize_seconds", 0.0)
            self.t0 = t

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.end = time.perf_counter()
            self.step.append(self.end - self.t0)
            self.tok.append(getattr(pl_module, "tokenize_seconds", 0.0) - self.tok0)

    clock = Clock()
    trainer = L.Trainer(max_steps=skip + steps, accelerator="cpu", devices=1, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0,
                        use_distributed_sampler=False, callbacks=[clock, SetEpoch()])
    trainer.fit(module, loader)
    w = clock.wait[skip:]  # wait i precedes step i + 1
    return {"first": clock.first, "wait": sum(w), "step": sum(clock.step[skip + 1:]),
            "tokenize": sum(clock.tok[skip + 1:]), "steps": len(w),
            "epoch_steps": len(loader)}


def training_share(paths: list[Path], steps: int, workers: list[int], buffer: int,
                   chunk: int) -> None:
    """The ``--training`` figure: data share of a small-preset pre-training step, streamed
    (AOJ files tokenized per batch; token files) against the in-memory path."""
    import tempfile

    import torch

    from jetfm.io.tokens import write_tokens
    from jetfm.omnijet.config import load_omnijet_config
    from jetfm.omnijet.tokenizer import VQVAETokenizer
    from jetfm.train.data import SequenceDataset, load_features, make_loaders, streaming_loaders
    from jetfm.train.modules import BackboneModule

    cfg = load_omnijet_config("small")
    tc, prep = cfg.pretraining, cfg.preprocessing.build()
    torch.manual_seed(0)
    tok = VQVAETokenizer(cfg.tokenizer, prep).eval()
    files = [str(p) for p in paths]
    skip = max(3, steps // 6)
    rows, up_front = {}, {}

    def streamed(name: str, data: list[str], w: int) -> None:
        train, _, split, _ = streaming_loaders(data, prep, tc.batch_size, tc.val_fraction, 0,
                                               num_workers=w, buffer_size=buffer,
                                               chunk_size=chunk)
        torch.manual_seed(0)
        rows[name] = step_times(train, BackboneModule(cfg.backbone, tc, tokenizer=tok), steps,
                                skip)
        rows[name]["n_train"] = split["n_train"]

    for w in workers:
        streamed(f"streamed AOJ, {w} workers", files, w)
    # the in-memory path and the token file hold just the jets these steps need (reading and
    # tokenizing every jet up front is the in-memory path's cost, reported, not in the share)
    need = int((skip + steps + 2) * tc.batch_size / (1 - tc.val_fraction)) + 1
    t0 = time.perf_counter()
    feats, mask, _ = load_features(files, prep, max_jets=need, progress=False)
    seqs = tok.sequences(tok.encode_arrays(feats, mask), mask)
    up_front["read + tokenize"] = time.perf_counter() - t0
    del feats, mask
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        path = write_tokens(os.path.join(tmp, "tokens.h5"), seqs, tok.codebook_size)
        up_front["write token file"] = time.perf_counter() - t0
        streamed("streamed token file, 0 w.", [path], 0)
    train, _, _ = make_loaders(SequenceDataset, (seqs,), tc.val_fraction, tc.batch_size, 0)
    torch.manual_seed(0)
    base_name = "in memory (baseline)"
    rows[base_name] = step_times(train, BackboneModule(cfg.backbone, tc), steps, skip)

    def share(r: dict, tokenize: bool = True) -> float:
        return (r["wait"] + tokenize * r["tokenize"]) / (r["wait"] + r["step"])

    load = os.getloadavg()[0]
    n_jets = rows[f"streamed AOJ, {workers[0]} workers"]["n_train"]
    print(f"small preset pre-training on CPU, batch {tc.batch_size}, {len(files)} AOJ files "
          f"({n_jets} training jets), {steps} steps timed after {skip}; streaming: shuffle "
          f"buffer {buffer}, chunks of {chunk} jets; torch threads {torch.get_num_threads()}; "
          f"load average {load:.1f}")
    print(f"{'path':<28}{'step ms':>9}{'wait ms':>9}{'tokenize ms':>13}{'wait share':>12}"
          f"{'data share':>12}{'epoch start s':>15}")
    for name, r in rows.items():
        n = r["steps"]
        print(f"{name:<28}{1e3 * (r['step'] - r['tokenize']) / n:9.1f}"
              f"{1e3 * r['wait'] / n:9.1f}{1e3 * r['tokenize'] / n:13.1f}"
              f"{100 * share(r, False):11.1f}%{100 * share(r):11.1f}%{r['first']:15.2f}")
    print("step ms: the training step less tokenizing; wait: end of a step to the start of the "
          "next (fetching the batch); wait share = wait / (wait + step); data share = (wait + "
          "tokenize) / (wait + step); epoch start: until the first batch (the shuffle buffer "
          "filling). Up front, once, for the in-memory path or the token file: " + ", ".join(
              f"{k} {v:.1f} s for {need} jets" for k, v in up_front.items()))
    head = f"streamed AOJ, {workers[0]} workers"
    base = share(rows[base_name])
    emit("training_data_share", 100 * share(rows[head]), "% of step", 100 * base,
         share(rows[head]) / max(base, 1e-9), preset="small", batch=tc.batch_size,
         steps=steps, buffer=buffer, chunk=chunk, load_avg=round(load, 2),
         up_front_s={k: round(v, 2) for k, v in up_front.items()}, up_front_jets=need,
         paths={k: {"wait_share_pct": round(100 * share(r, False), 2),
                    "data_share_pct": round(100 * share(r), 2),
                    "step_ms": round(1e3 * r["step"] / r["steps"], 2),
                    "wait_ms": round(1e3 * r["wait"] / r["steps"], 2),
                    "tokenize_ms": round(1e3 * r["tokenize"] / r["steps"], 2),
                    "epoch_start_s": round(r["first"], 2)} for k, r in rows.items()})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jets", type=int, default=80_000, help="jets in all files together")
    ap.add_argument("--files", type=int, default=4)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--buffer", type=int, default=16_384, help="shuffle buffer (jets)")
    ap.add_argument("--training", action="store_true",
                    help="data-loading share of a small-preset pre-training step")
    ap.add_argument("--chunk", type=int, default=CHUNK, help="--training: jets per read")
    ap.add_argument("--steps", type=int, default=60, help="--training: steps timed")
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 1],
                    help="--training: data-loader workers to try (the first is the figure)")
    ap.add_argument("--quick", action="store_true", help="16 k jets, one repeat (--training: "
                    "12 steps, workers 0 only)")
    args = ap.parse_args()
    n = 16_000 if args.quick else args.jets
    repeats = 1 if args.quick else 3
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    out = HERE / "out"
    out.mkdir(exist_ok=True)
    per = n // args.files
    paths = [out / f"stream_{per}_{k}.h5" for k in range(args.files)]
    for k, p in enumerate(paths):
        if not p.exists():
            print(f"writing {per} jets to {p} ...", flush=True)
            make_file(p, per, seed=100 + k)
    total = per * args.files
    if args.training:
        training_share(paths, 12 if args.quick else args.steps,
                       [0] if args.quick else args.workers, args.buffer, args.chunk)
        return

    assert raw_read(paths) == total
    t_raw = best_of(lambda: raw_read(paths), repeats)
    rates = {}
    for workers in (0, 2):
        t0 = time.perf_counter()
        got = stream(paths, workers, args.batch, args.buffer)
        assert got == total, (got, total)  # every jet once (one process, remainder "drop")
        first = time.perf_counter() - t0
        t = min([first] + [best_of(lambda: stream(paths, workers, args.batch, args.buffer), 1)
                           for _ in range(repeats - 1)])
        rates[workers] = total / t
    raw = total / t_raw
    best_w = max(rates, key=rates.get)
    best = rates[best_w]
    print(f"{total} jets in {args.files} files, batch {args.batch}, shuffle buffer {args.buffer}")
    print(f"raw h5py read (limit)          : {raw:10.0f} jets/s")
    for w, r in rates.items():
        print(f"streaming loader, {w} workers    : {r:10.0f} jets/s ({r / raw:.2f} of the limit)")
    emit("data_loading", best, "jets/s", raw, best / raw, jets=total, files=args.files,
         workers=best_w, batch=args.batch, buffer=args.buffer,
         rate_workers0=round(rates[0], 1), rate_workers2=round(rates[2], 1),
         note="shared 2-core machine: noisy")


if __name__ == "__main__":
    main()
