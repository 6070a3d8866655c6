"""CoDAE training speed on CPU: images/s of a training step, fp32 (baseline) vs bf16 autocast.

For each preset (``codae_small``, and ``codae``, the paper's full width, unless ``--quick``) and
each model (CoDAE, plain AE) it runs the training loop's own step
(:func:`jetfm.codae.training.train_step`: augmentation excluded, forward, BCE, backward,
clip, AdamW) on real QCD images at the preset's batch size, and prints images/s side by side
for ``train.precision=fp32`` and ``bf16`` from the same initial weights, with the relative
difference of the losses after the timed steps. It also times the rest of an epoch (the
augmentation of one batch, the validation SSIM pass over 10 % of the images) to show what
dominates, and projects the paper's 30 epochs on ``--events`` QCD images (CoDAE + AE).

Timings are CPU time of the process on ``--threads`` threads (default 1; the development machine
is shared, so wall time also counts waits for a core); wall-time figures are in the JSON line.

    python benchmarks/codae_training.py --images ../shared/data/real/dark_showers_images [--quick]
"""
from __future__ import annotations

import argparse
import sys
import time

import torch
from _common import emit  # noqa: E402

from jetfm.codae.config import AnomalyConfig, model_config  # noqa: E402
from jetfm.codae.data import augment, model_inputs, read_for_input  # noqa: E402
from jetfm.codae.model import CoDAE  # noqa: E402
from jetfm.codae.training import derive_seed, train_step, validate  # noqa: E402
from jetfm.config import load_config  # noqa: E402


def timed(fn) -> tuple[float, float]:
    c0, t0 = time.process_time(), time.perf_counter()
    fn()
    return time.process_time() - c0, time.perf_counter() - t0


def run_steps(cfg, kind: str, x: torch.Tensor, precision: str, steps: int) -> dict:
    """Time ``steps`` training steps after one warm-up step, from seeded weights."""
    torch.manual_seed(derive_seed(1, 0))
    model = CoDAE(model_config(cfg, kind)).train()
    tc = cfg.train
    opt = torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay / tc.lr)
    bs = tc.batch_size
    batches = [x[(i * bs) % (len(x) - bs):][:bs] for i in range(steps + 1)]
    train_step(model, opt, batches[0], tc.clip_norm, precision)
    cpu = wall = 0.0
    loss = None
    for xb in batches[1:]:
        c0, t0 = time.process_time(), time.perf_counter()
        loss = train_step(model, opt, xb, tc.clip_norm, precision)
        cpu += time.process_time() - c0
        wall += time.perf_counter() - t0
    return {"images_per_s": steps * bs / cpu, "wall_images_per_s": steps * bs / wall,
            "loss": float(loss), "model": model}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", required=True, help="the dark_showers_images folder")
    ap.add_argument("--quick", action="store_true", help="codae_small only, 2 timed steps")
    ap.add_argument("--steps", type=int, default=4, help="timed steps per variant (default 4)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--events", type=int, default=1697,
                    help="QCD training images of the 30-epoch projection (default 1697: the real "
                         "released n_tracks/train + supervised/train)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    steps = 2 if args.quick else args.steps
    ev = read_for_input([f"{args.images}/n_tracks/train", f"{args.images}/supervised/train"],
                        "occupancy", processes=["qcd"])
    x = torch.from_numpy(model_inputs(ev, "occupancy"))
    presets = ["codae_small"] if args.quick else ["codae_small", "codae"]
    res: dict = {}
    print(f"CoDAE training step, CPU time, {args.threads} thread(s), {steps} steps after 1 "
          f"warm-up, {len(x)} real QCD images (occupancy); shared machine: expect noise")
    print(f"{'preset':12s}{'model':6s}{'batch':>6s}{'fp32 img/s':>12s}{'bf16 img/s':>12s}"
          f"{'speed-up':>10s}{'loss rel diff':>15s}")
    for preset in presets:
        cfg = load_config(AnomalyConfig, preset, ["data.input=occupancy"])
        for kind in ("codae", "ae"):
            r32 = run_steps(cfg, kind, x, "fp32", steps)
            r16 = run_steps(cfg, kind, x, "bf16", steps)
            rel = abs(r16["loss"] - r32["loss"]) / abs(r32["loss"])
            row = {"batch": cfg.train.batch_size, "fp32": r32["images_per_s"],
                   "bf16": r16["images_per_s"], "fp32_wall": r32["wall_images_per_s"],
                   "bf16_wall": r16["wall_images_per_s"], "loss_rel_diff": rel}
            if kind == "codae":  # the rest of an epoch, once per preset
                gen = torch.Generator().manual_seed(0)
                bs = cfg.train.batch_size
                row["augment_s_per_batch"] = timed(lambda: augment(x[:bs], gen))[0]
                n_valid = max(1, round(0.1 * len(x)))
                row["validate_s_per_epoch"] = timed(
                    lambda: validate(r32["model"], x[:n_valid], cfg.train.eval_batch_size))[0]
            res[f"{preset} {kind}"] = row
            print(f"{preset:12s}{kind:6s}{row['batch']:6d}{row['fp32']:12.1f}{row['bf16']:12.1f}"
                  f"{row['bf16'] / row['fp32']:9.2f}x{rel:15.1e}")
    n_train = round(0.9 * args.events)
    for preset in presets:
        a, b = res[f"{preset} codae"], res[f"{preset} ae"]
        for prec in ("fp32", "bf16"):
            minutes = 30 * n_train * (1 / a[prec] + 1 / b[prec]) / 60
            res[f"{preset} 30 epochs {prec} min"] = minutes
        epoch_step_s = n_train / a["fp32"]
        batches = -(-n_train // a["batch"])
        print(f"{preset}: per CoDAE epoch on {n_train} images: steps {epoch_step_s:.1f} s, "
              f"augmentation {batches * a['augment_s_per_batch']:.2f} s, validation SSIM "
              f"{a['validate_s_per_epoch']:.2f} s; 30 epochs CoDAE + AE: "
              f"{res[f'{preset} 30 epochs fp32 min']:.0f} min fp32, "
              f"{res[f'{preset} 30 epochs bf16 min']:.0f} min bf16 (CPU time, one thread)")
    head = res[f"{presets[-1]} codae"]
    emit("codae_training", head["bf16"], f"images/s ({presets[-1]} CoDAE training step, bf16)",
         head["fp32"], head["bf16"] / head["fp32"],
         rows={k: ({kk: round(vv, 5) for kk, vv in v.items()} if isinstance(v, dict)
                   else round(v, 2)) for k, v in res.items()},
         threads=args.threads, steps=steps, quick=args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
