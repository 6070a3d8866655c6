"""What the backbone's code table costs: a training step (forward, backward, AdamW) and a cached
sampling step of the demo's backbone (`small` sizes, 2048 codes) with ``code_features = 7``,
with ``fourier_features = 32`` on top, and with one anchor-kernel head on top of that
(``kernel_heads = 1``, 16 anchors, every position), against the same backbone without any,
interleaved, best of the repeats.

    python benchmarks/code_features.py [--quick] [--threads 1]

Batches are ``--batch`` sequences of ``--length`` tokens (random codes, every token real).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import best_interleaved, emit  # noqa: E402

from jetfm.omnijet.backbone import BackboneConfig, JetGPT, generate  # noqa: E402


def _model(code_features: int, vocab: int, fourier: int = 0, kernel: int = 0) -> JetGPT:
    torch.manual_seed(0)
    m = JetGPT(BackboneConfig(vocab_size=vocab, dim=128, n_blocks=2, heads=8, ff_dim=512,
                              code_features=code_features, fourier_features=fourier,
                              kernel_heads=kernel))
    if code_features:
        m.code_table.copy_(torch.randn(vocab, code_features))
        m.code_table[0] = m.code_table[-1] = 0  # start and stop
    return m


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--length", type=int, default=56)
    ap.add_argument("--codes", type=int, default=2048)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    vocab = args.codes + 2
    g = torch.Generator().manual_seed(1)
    seqs = torch.randint(1, vocab - 1, (args.batch, args.length), generator=g)
    seqs[:, 0], seqs[:, -1] = 0, vocab - 1
    models = {"plain": _model(0, vocab), "code_features": _model(7, vocab),
              "fourier": _model(7, vocab, 32), "kernel": _model(7, vocab, 32, 1)}
    opts = {k: torch.optim.AdamW(m.parameters(), lr=1e-4) for k, m in models.items()}

    def step(name: str) -> None:
        opts[name].zero_grad(set_to_none=True)
        models[name].loss(seqs).backward()
        opts[name].step()

    def sample(name: str) -> None:
        generate(models[name], 64, max_new=48, seed=0, batch_size=64)

    repeats = 3 if args.quick else 7
    for k in models:  # warm-up
        step(k)
        sample(k)
    keys = [(what, k) for k in models for what in ("train", "sample")]
    fns = {"train": step, "sample": sample}
    # interleaved: the machine's noise hits every model alike
    times = best_interleaved([lambda w=w, k=k: fns[w](k) for w, k in keys], repeats)
    best = dict(zip(keys, times))
    tokens = args.batch * (args.length - 1)
    for what in ("train", "sample"):
        p, c, f, k = (best[(what, k)] for k in ("plain", "code_features", "fourier", "kernel"))
        print(f"{what:6s} step: plain {p * 1e3:8.1f} ms, code_features {c * 1e3:8.1f} ms "
              f"({100 * (c / p - 1):+.1f} %), + fourier_features {f * 1e3:8.1f} ms "
              f"({100 * (f / p - 1):+.1f} %), + kernel_heads {k * 1e3:8.1f} ms "
              f"({100 * (k / p - 1):+.1f} %)")
    p, c = best[("train", "plain")], best[("train", "code_features")]
    emit("code_features_train_step", tokens / c, "tokens/s", tokens / p, p / c,
         sample_ratio=round(best[("sample", "plain")] / best[("sample", "code_features")], 4),
         fourier_train_ratio=round(p / best[("train", "fourier")], 4),
         fourier_sample_ratio=round(best[("sample", "plain")] / best[("sample", "fourier")], 4),
         kernel_train_ratio=round(p / best[("train", "kernel")], 4),
         kernel_sample_ratio=round(best[("sample", "plain")] / best[("sample", "kernel")], 4),
         threads=args.threads)


if __name__ == "__main__":
    main()
