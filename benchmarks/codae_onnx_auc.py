"""Do the ONNX exports of a trained CoDAE run keep its AUCs? PyTorch vs ONNX Runtime precisions.

Exports ``RUN`` (a training run folder with ``codae/`` and/or ``ae/``) with ``jetfm anomaly
export`` in each precision (int8-static calibrated on ``--calibration`` QCD images), scores the
same background and signal images with the PyTorch checkpoint and with each export, and prints
the mean AUC over mass points per signal for the main scores side by side, and the largest AUC
change from PyTorch. The last line is one JSON object.

    python benchmarks/codae_onnx_auc.py runs/real --background $R/supervised/valid \\
        --signal $R/supervised/train $R/supervised/valid --calibration $R/n_tracks/train
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile

import torch
from _common import emit  # noqa: E402

from jetfm.codae.export import PRECISIONS, export_run  # noqa: E402
from jetfm.codae.scoring import evaluate  # noqa: E402

SCORES = ("z_m_dist", "z_m0", "z_m1", "bce", "hits", "ae_bce")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run")
    ap.add_argument("--background", nargs="+", required=True)
    ap.add_argument("--signal", nargs="+", required=True)
    ap.add_argument("--calibration", nargs="+", required=True)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    res = {"torch": evaluate(args.run, args.background, args.signal)["scores"]}
    with tempfile.TemporaryDirectory() as tmp:
        for prec in PRECISIONS:
            out = os.path.join(tmp, prec)
            export_run(args.run, out, prec, args.calibration)
            res[f"onnx {prec}"] = evaluate(out, args.background, args.signal)["scores"]
    ref = res["torch"]
    names = [n for n in SCORES if n in ref]
    signals = sorted(ref[names[0]])
    cols = [f"{n} {s}" for n in names for s in signals]
    print(f"mean AUC over mass points; run {args.run}")
    print(f"{'':20s}" + "".join(f"{c:>15s}" for c in cols) + f"{'max |dAUC|':>12s}")
    delta = {}
    for key, sc in res.items():
        d = max(abs(sc[n][s]["mean_auc"] - ref[n][s]["mean_auc"]) for n in names for s in signals)
        # per mass point too: the largest change anywhere
        dm = max(abs(sc[n][s]["masses"][m]["auc"] - ref[n][s]["masses"][m]["auc"])
                 for n in names for s in signals for m in ref[n][s]["masses"])
        delta[key] = {"mean": d, "mass_point": dm}
        print(f"{key:20s}" + "".join(f"{sc[n][s]['mean_auc']:15.4f}" for n in names
                                     for s in signals) + f"{d:12.4f}")
    worst_fp32 = delta["onnx fp32"]["mass_point"]
    emit("codae_onnx_auc", worst_fp32, "max |AUC change| per mass point, ONNX fp32 vs PyTorch",
         0.0, 0.0, delta={k: {kk: round(vv, 5) for kk, vv in v.items()} for k, v in delta.items()},
         mean_auc={k: {f"{n} {s}": round(v[n][s]["mean_auc"], 4) for n in names for s in signals}
                   for k, v in res.items()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
