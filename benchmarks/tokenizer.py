"""Tokenizer speed at the ``paper`` size: jets/s to encode (jets -> codes) and to decode
(codes -> jets), against the naive way of the reference (every batch processed at the full
padded length of 128 constituents) on the same jets, in one run.

    python benchmarks/tokenizer.py [--quick] [--jets 4096] [--batch 256] [--threads 1]

Jets: the 100 real CMS jets of ../shared/data/real/aoj_mini_2016H repeated to ``--jets``. Our
encoder trims each batch to its longest jet (padding is masked anyway, so the codes are
identical: checked). The reference reports about 8 k jets/s (encode) and 25 k jets/s (decode) on
a GPU. The machine is shared and noisy: best of the repeats. (Named tokenizer.py: a
benchmarks/tokenize.py would shadow the standard library's ``tokenize`` for every script here.)
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import best_of, emit  # noqa: E402

from jetfm.io import read_jets  # noqa: E402
from jetfm.omnijet.quantizer import nearest_code  # noqa: E402
from jetfm.omnijet.tokenizer import VQVAETokenizer  # noqa: E402

REAL = Path(__file__).resolve().parents[2] / "shared/data/real/aoj_mini_2016H/2016H_job0_mini.h5"


def naive_encode(tok: VQVAETokenizer, feats: np.ndarray, mask: np.ndarray, batch: int):
    """Reference-style: the full padded length for every batch."""
    out = []
    for lo in range(0, len(mask), batch):
        x = torch.as_tensor(feats[lo:lo + batch])
        m = torch.as_tensor(mask[lo:lo + batch])
        out.append(tok.encode_features(x, m).numpy())
    return np.concatenate(out)


def naive_decode(tok: VQVAETokenizer, codes: np.ndarray, mask: np.ndarray, batch: int):
    out = []
    for lo in range(0, len(mask), batch):
        out.append(tok.decode_codes(torch.as_tensor(codes[lo:lo + batch]),
                                    torch.as_tensor(mask[lo:lo + batch])).numpy())
    return np.concatenate(out)


def plain_nearest(z: torch.Tensor, cb: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """The straightforward nearest code: (chunk, K) distances, then torch's argmin per row."""
    c2 = (cb * cb).sum(1)
    return torch.cat([torch.addmm(c2.unsqueeze(0), z[lo:lo + chunk], cb.t(), alpha=-2.0)
                      .argmin(1) for lo in range(0, len(z), chunk)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="1024 jets, one repeat")
    ap.add_argument("--jets", type=int, default=4096)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    n, reps = (1024, 1) if args.quick else (args.jets, 3)
    torch.manual_seed(0)
    tok = VQVAETokenizer().eval()  # paper size: 8192 codes, width 128, 4 + 4 blocks
    base = read_jets(REAL)
    feats, mask = tok.preprocessing.forward(base)
    idx = np.arange(n) % len(base)
    feats, mask = feats[idx], mask[idx]
    codes = tok.encode_arrays(feats, mask, args.batch)
    same = bool(np.array_equal(codes, naive_encode(tok, feats, mask, args.batch)))
    t_enc = best_of(lambda: tok.encode_arrays(feats, mask, args.batch), reps)
    t_dec = best_of(lambda: tok.decode_arrays(codes, mask, args.batch), reps)
    t_enc0 = best_of(lambda: naive_encode(tok, feats, mask, args.batch), reps)
    t_dec0 = best_of(lambda: naive_decode(tok, codes, mask, args.batch), reps)
    # the quantiser's nearest-code search alone: a training batch of 128 jets x 45 constituents
    z = torch.randn(5760, 4, generator=torch.Generator().manual_seed(1))
    cb = tok.quantizer.effective_codebook().detach()
    same_nc = bool(torch.equal(nearest_code(z, cb), plain_nearest(z, cb)))
    t_nc = best_of(lambda: nearest_code(z, cb), reps + 2)
    t_nc0 = best_of(lambda: plain_nearest(z, cb), reps + 2)
    print(f"nearest code, 5760 latents x {len(cb)} codes: ours {t_nc * 1e3:.1f} ms, plain "
          f"argmin {t_nc0 * 1e3:.1f} ms ({t_nc0 / t_nc:.2f}x); identical: {same_nc}")
    print(f"paper tokenizer, {n} real jets (mean {mask.sum(1).mean():.1f} constituents), "
          f"batch {args.batch}, {args.threads} threads; identical codes: {same}")
    print(f"encode: ours {n / t_enc:8.0f} jets/s   padded-128 baseline {n / t_enc0:8.0f} jets/s")
    print(f"decode: ours {n / t_dec:8.0f} jets/s   padded-128 baseline {n / t_dec0:8.0f} jets/s")
    print("reference on a GPU: about 8000 (encode) and 25000 (decode) jets/s. "
          f"Shared, noisy machine: best of {reps}.")
    emit("tokenize_encode_jets_per_s", n / t_enc, "jets/s", n / t_enc0, t_enc0 / t_enc,
         decode_jets_per_s=round(n / t_dec, 1), decode_baseline=round(n / t_dec0, 1),
         decode_ratio=round(t_dec0 / t_dec, 3), identical_codes=same, threads=args.threads,
         nearest_code_ms=round(t_nc * 1e3, 2), nearest_code_plain_ms=round(t_nc0 * 1e3, 2),
         nearest_code_ratio=round(t_nc0 / t_nc, 3))


if __name__ == "__main__":
    main()
