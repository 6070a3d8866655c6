"""What exact resume costs per training batch, against the training step it rides on, in one run.

    python benchmarks/resume_overhead.py [--quick] [--batch 128] [--steps 5]

Per batch, exact resume (:mod:`jetfm.train.resume`) seeds torch, NumPy and ``random`` from
(seed, epoch, batch, rank) and writes the step's CSV log row at once (Lightning's default keeps
rows in memory and writes every 100), and flushes TensorBoard's events before each batch.
Measured: the seeding call (and the same seeding through ``torch.manual_seed``, which visits
every device type), the CSV row written at once against the same row buffered (Lightning's
default), TensorBoard's events flushed each batch against the logger's own flushing, and, as
the baseline, one ``small``-preset tokenizer training step (forward, backward, AdamW) on a batch
of real CMS jets (the 100 of ../shared/data/real/aoj_mini_2016H repeated). Best of the repeats
(the machine is shared).
"""
from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import best_of, emit  # noqa: E402

from jetfm.io import read_jets  # noqa: E402
from jetfm.omnijet.config import load_omnijet_config  # noqa: E402
from jetfm.omnijet.tokenizer import VQVAETokenizer  # noqa: E402
from jetfm.train.resume import seed_all, step_seed  # noqa: E402

REAL = Path(__file__).resolve().parents[2] / "shared/data/real/aoj_mini_2016H/2016H_job0_mini.h5"
#: the values of one tokenizer log row
ROW = {"train_loss": 1.0, "train_rec_loss": 0.5, "train_vq_loss": 0.05, "train_perplexity": 20.0,
       "train_usage": 0.8, "epoch": 0}


def per_call(fn, n: int, repeats: int) -> float:
    """Seconds per call of ``fn(i)``, best of ``repeats`` loops of ``n`` calls."""
    return best_of(lambda: [fn(i) for i in range(n)], repeats) / n


def row_seconds(kind: str, at_once: bool, n: int, repeats: int) -> float:
    """Seconds per logged row of Lightning's CSV or TensorBoard logger (``kind``), the row
    written out at once (exact resume) or left to the logger's own flushing."""
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    times = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            logger = (CSVLogger(tmp, name="logs", flush_logs_every_n_steps=1 if at_once else 100)
                      if kind == "csv" else TensorBoardLogger(tmp, name="tb"))
            t0 = time.perf_counter()
            for step in range(n):
                logger.log_metrics(ROW, step)
                if at_once and kind == "tb":
                    logger.save()  # jetfm.train.resume.FlushLogs, before each batch
            logger.save()
            times.append((time.perf_counter() - t0) / n)
            logger.finalize("success")
    return min(times)


def step_seconds(batch: int, steps: int) -> float:
    """Seconds of one small-preset tokenizer training step (best of ``steps``)."""
    cfg = load_omnijet_config("small")
    prep = cfg.preprocessing.build()
    jets = read_jets(REAL)
    reps = -(-batch // len(jets))
    feats, mask = prep.forward(type(jets).concat([jets] * reps)[:batch])
    x, m = torch.as_tensor(feats), torch.as_tensor(mask)
    p = int(m.sum(1).max())
    x, m = x[:, :p], m[:, :p]
    torch.manual_seed(0)
    model = VQVAETokenizer(cfg.tokenizer, prep).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def step():
        _, _, loss, _ = model(x, m)
        opt.zero_grad()
        loss.backward()
        opt.step()
    step()  # k-means initialisation of the codebook happens in the first step
    return best_of(step, steps)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer calls and steps")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=5)
    args = ap.parse_args()
    n, repeats, steps = (500, 3, 2) if args.quick else (5000, 5, args.steps)
    seed = per_call(lambda i: seed_all(step_seed(1, 0, i)), n, repeats)
    seed_plain = per_call(lambda i: (torch.manual_seed(s := step_seed(1, 0, i)),
                                     np.random.seed(s % 2 ** 32), random.seed(s)), n, repeats)
    row_now, row_buffered = (row_seconds("csv", b, n // 5, repeats) for b in (True, False))
    tb_now, tb_buffered = (row_seconds("tb", b, n // 5, repeats) for b in (True, False))
    step = step_seconds(args.batch, steps)
    extra = seed + row_now - row_buffered + tb_now - tb_buffered
    print(f"per batch: seeding {seed * 1e6:.1f} us (with torch.manual_seed: "
          f"{seed_plain * 1e6:.1f} us), CSV row written at once "
          f"{row_now * 1e6:.1f} us (buffered: {row_buffered * 1e6:.1f} us), TensorBoard "
          f"events flushed each batch {tb_now * 1e6:.1f} us (left to the logger: "
          f"{tb_buffered * 1e6:.1f} us)")
    print(f"small-preset tokenizer step, batch {args.batch}, {torch.get_num_threads()} threads: "
          f"{step * 1e3:.1f} ms; exact resume adds {extra * 1e6:.1f} us = "
          f"{100 * extra / step:.4f} % of it")
    emit("resume_overhead", extra * 1e3, "ms per batch", step * 1e3, extra / step,
         percent_of_step=round(100 * extra / step, 5), seed_us=round(seed * 1e6, 2),
         seed_torch_manual_seed_us=round(seed_plain * 1e6, 2),
         csv_row_now_us=round(row_now * 1e6, 2),
         csv_row_buffered_us=round(row_buffered * 1e6, 2), tb_row_now_us=round(tb_now * 1e6, 2),
         tb_row_buffered_us=round(tb_buffered * 1e6, 2), batch=args.batch,
         threads=torch.get_num_threads(), quick=args.quick,
         numpy=np.__version__, torch=torch.__version__)


if __name__ == "__main__":
    main()
