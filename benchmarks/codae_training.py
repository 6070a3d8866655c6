"""CoDAE training speed on CPU: images/s of a training step, the former step against today's.

For each preset (``codae_small``, and ``codae``, the paper's full width, unless ``--quick``) and
each model (CoDAE, plain AE) it runs the training loop's own step
(:func:`jetfm.codae.training.train_step`: augmentation excluded, forward, BCE, backward,
clip, AdamW) on real QCD images at the preset's batch size, from the same initial weights, in
four variants side by side:

- ``fp32``: one pass over the whole batch in float32, default layout (the former default);
- ``bf16``: the same under bfloat16 autocast (the former ``train.precision=bf16``);
- ``fp32 mb``: float32, the batch in micro-batches of ``--micro-batch`` images;
- ``bf16 mb``: bfloat16, micro-batches, channels-last weights and images (today's paper preset).

It prints images/s and the relative difference of the losses after the timed steps (against
``fp32``), times the rest of an epoch (augmentation, the validation SSIM pass over 10 % of the
images) and projects the paper's 30 epochs on ``--events`` QCD images (CoDAE + AE).

Timings are CPU time of the process on ``--threads`` threads (default 1; the development machine
is shared, so wall time also counts waits for a core); wall-time figures are in the JSON line and
the 30-epoch projection is given in both.

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
from jetfm.codae.training import (  # noqa: E402
    derive_seed,
    make_optimizer,
    prepare_model,
    train_step,
    validate,
)
from jetfm.config import load_config  # noqa: E402


def timed(fn) -> tuple[float, float]:
    c0, t0 = time.process_time(), time.perf_counter()
    fn()
    return time.process_time() - c0, time.perf_counter() - t0


VARIANTS = {"fp32": ("fp32", 0), "bf16": ("bf16", 0), "fp32 mb": ("fp32", None),
            "bf16 mb": ("bf16", None)}


def run_steps(cfg, kind: str, x: torch.Tensor, precision: str, micro_batch: int,
              steps: int) -> dict:
    """Time ``steps`` training steps after one warm-up step, from seeded weights."""
    torch.manual_seed(derive_seed(1, 0))
    model = prepare_model(CoDAE(model_config(cfg, kind)).train(), precision)
    tc = cfg.train
    opt = make_optimizer(model, tc)
    bs = tc.batch_size
    batches = [x[(i * bs) % (len(x) - bs):][:bs] for i in range(steps + 1)]
    train_step(model, opt, batches[0], tc.clip_norm, precision, micro_batch)
    cpu = wall = 0.0
    loss = None
    for xb in batches[1:]:
        c0, t0 = time.process_time(), time.perf_counter()
        loss = train_step(model, opt, xb, tc.clip_norm, precision, micro_batch)
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
    ap.add_argument("--micro-batch", type=int, default=32,
                    help="images per pass of the micro-batched variants (default 32)")
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
    names = list(VARIANTS)
    print(f"{'preset':12s}{'model':6s}{'batch':>6s}"
          + "".join(f"{n + ' img/s':>14s}" for n in names)
          + f"{'gain':>7s}{'max loss rel diff':>19s}")
    for preset in presets:
        cfg = load_config(AnomalyConfig, preset, ["data.input=occupancy"])
        for kind in ("codae", "ae"):
            runs = {n: run_steps(cfg, kind, x, prec, args.micro_batch if mb is None else mb, steps)
                    for n, (prec, mb) in VARIANTS.items()}
            rel = max(abs(r["loss"] - runs["fp32"]["loss"]) / abs(runs["fp32"]["loss"])
                      for r in runs.values())
            row = {"batch": cfg.train.batch_size, "loss_rel_diff": rel}
            for n, r in runs.items():
                row[n] = r["images_per_s"]
                row[f"{n} wall"] = r["wall_images_per_s"]
            if kind == "codae":  # the rest of an epoch, once per preset
                gen = torch.Generator().manual_seed(0)
                bs = cfg.train.batch_size
                row["augment_s_per_batch"] = timed(lambda: augment(x[:bs], gen))[0]
                n_valid = max(1, round(0.1 * len(x)))
                for n in ("fp32", "bf16 mb"):
                    # the former validation: 256 images per pass; today's: eval_batch_size
                    prec = VARIANTS[n][0]
                    batch = 256 if n == "fp32" else cfg.train.eval_batch_size
                    row[f"validate_s_per_epoch {n}"] = timed(
                        lambda: validate(runs[n]["model"], x[:n_valid], batch, prec))[0]
            res[f"{preset} {kind}"] = row
            print(f"{preset:12s}{kind:6s}{row['batch']:6d}" + "".join(f"{row[n]:14.1f}"
                                                                     for n in names)
                  + f"{row['bf16 mb'] / row['fp32']:6.2f}x{rel:19.1e}")
    n_train = round(0.9 * args.events)
    for preset in presets:
        a, b = res[f"{preset} codae"], res[f"{preset} ae"]
        for n in names:
            res[f"{preset} 30 epochs {n} min"] = 30 * n_train * (1 / a[n] + 1 / b[n]) / 60
            res[f"{preset} 30 epochs {n} wall min"] = 30 * n_train * (
                1 / a[f"{n} wall"] + 1 / b[f"{n} wall"]) / 60
        batches = -(-n_train // a["batch"])
        print(f"{preset}: per CoDAE epoch on {n_train} images: steps {n_train / a['fp32']:.1f} s "
              f"fp32, {n_train / a['bf16 mb']:.1f} s bf16 mb; augmentation "
              f"{batches * a['augment_s_per_batch']:.2f} s; validation SSIM "
              f"{a['validate_s_per_epoch fp32']:.2f} s fp32, "
              f"{a['validate_s_per_epoch bf16 mb']:.2f} s bf16 mb")
        print(f"{preset}: 30 epochs CoDAE + AE, steps only: "
              + ", ".join(f"{n} {res[f'{preset} 30 epochs {n} min']:.0f} CPU-min "
                          f"({res[f'{preset} 30 epochs {n} wall min']:.0f} min wall)"
                          for n in names) + f" on {args.threads} thread(s)")
    head = res[f"{presets[-1]} codae"]
    emit("codae_training", head["bf16 mb"],
         f"images/s ({presets[-1]} CoDAE training step, bf16, micro-batches, channels-last)",
         head["fp32"], head["bf16 mb"] / head["fp32"],
         rows={k: ({kk: round(vv, 5) for kk, vv in v.items()} if isinstance(v, dict)
                   else round(v, 2)) for k, v in res.items()},
         threads=args.threads, steps=steps, micro_batch=args.micro_batch, quick=args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
