"""Anomaly scores of CoDAE and its baselines, and their evaluation per signal mass point.

Scores per event (larger = more anomalous, except the raw Z_m components whose sign is learnt):

============  ============================================================================
``z_m0/1``    the components of CoDAE's 2-dimensional latent Z_m (small encoder only)
``z_m_dist``  Mahalanobis distance of Z_m from the training QCD's Z_m (mean, covariance
              stored in the checkpoint): direction-free, needs no signal to orient it
``bce``       binary cross-entropy of the reconstruction, summed over pixels
``dice``      1 - Dice coefficient 2 sum(p x) / (sum p + sum x)
``mse/l1``    mean squared / absolute pixel error
``energy``    |sum p - sum x|: difference in summed "energy" (expected hits for occupancy)
``hits``      |#(p > 0.5) - #(x > 0)|: difference in hit count
============  ============================================================================

The plain auto-encoder's reconstruction scores carry the prefix ``ae_``. Physics baselines:
``n_tracks`` (the files' track multiplicity, when every file has it) and ``n_hits`` (number of
lit pixels of the input image, a multiplicity proxy that every file allows).

Metrics (arXiv:2306.12955): ROC AUC and background FPR at 40 % signal efficiency, per signal
mass point, and their mean over the mass points of each signal.
"""
from __future__ import annotations

import os

import numpy as np
import torch
import torch.nn.functional as F

from jetfm.codae.checkpoint import load_run_models
from jetfm.codae.data import model_inputs, read_for_input
from jetfm.codae.metrics import fpr_at_tpr, roc_auc
from jetfm.codae.model import CoDAE
from jetfm.errors import InputError
from jetfm.io.images import LABEL_NAMES


@torch.inference_mode()
def z_m(model: CoDAE, x: np.ndarray, batch: int = 256) -> np.ndarray:
    """Z_m (N, 2) of inputs x (N, C, 72, 58): the small encoder only."""
    model.eval()
    out = [model.z_m(torch.from_numpy(x[i:i + batch])) for i in range(0, len(x), batch)]
    return torch.cat(out).numpy() if out else np.zeros((0, model.cfg.z_dim), np.float32)


def z_m_reference(zm: np.ndarray) -> dict:
    """Mean and covariance of QCD Z_m (N, 2), for the Mahalanobis score."""
    cov = np.cov(zm.T) + 1e-9 * np.eye(zm.shape[1])
    return {"mean": zm.mean(0).tolist(), "cov": np.atleast_2d(cov).tolist()}


@torch.inference_mode()
def reconstruction_scores(model: CoDAE, x: np.ndarray, batch: int = 256,
                          prefix: str = "") -> dict[str, np.ndarray]:
    """Every reconstruction score (see the module docstring) for inputs x (N, C, 72, 58)."""
    model.eval()
    parts: dict[str, list] = {}
    for i in range(0, len(x), batch):
        xb = torch.from_numpy(x[i:i + batch])
        logits = model(xb)
        p = torch.sigmoid(logits)
        dims = (1, 2, 3)
        sp, sx = p.sum(dims), xb.sum(dims)
        vals = {
            "bce": F.binary_cross_entropy_with_logits(logits, xb, reduction="none").sum(dims),
            "dice": 1.0 - (2.0 * (p * xb).sum(dims) + 1e-6) / (sp + sx + 1e-6),
            "mse": ((p - xb) ** 2).mean(dims),
            "l1": (p - xb).abs().mean(dims),
            "energy": (sp - sx).abs(),
            "hits": ((p > 0.5).sum(dims) - (xb > 0).sum(dims)).abs().float(),
        }
        for k, v in vals.items():
            parts.setdefault(prefix + k, []).append(v.double().numpy())
    return {k: np.concatenate(v) for k, v in parts.items()}


def codae_scores(model: CoDAE, x: np.ndarray, reference: dict | None = None,
                 batch: int = 256) -> dict[str, np.ndarray]:
    """Z_m components (+ Mahalanobis distance when ``reference`` is given) and reconstruction
    scores of a conditional model; reconstruction scores only for a plain auto-encoder."""
    out: dict[str, np.ndarray] = {}
    if model.cfg.conditional:
        zm = z_m(model, x, batch).astype(np.float64)
        for j in range(zm.shape[1]):
            out[f"z_m{j}"] = zm[:, j]
        if reference is not None:
            d = zm - np.asarray(reference["mean"])
            inv = np.linalg.inv(np.asarray(reference["cov"]))
            out["z_m_dist"] = np.sqrt(np.einsum("ni,ij,nj->n", d, inv, d))
    prefix = "" if model.cfg.conditional else "ae_"
    out.update(reconstruction_scores(model, x, batch, prefix=prefix))
    return out


def all_scores(models: dict[str, tuple[CoDAE, dict]], ev, kind: str, energy_scale: float,
               batch: int = 256) -> dict[str, np.ndarray]:
    """Scores of every model and baseline for the events ``ev`` (EventImages)."""
    x = model_inputs(ev, kind, energy_scale)
    out: dict[str, np.ndarray] = {}
    for model, meta in models.values():
        out.update(codae_scores(model, x, meta.get("z_m_reference"), batch))
    out["n_hits"] = (x > 0).sum(axis=(1, 2, 3)).astype(np.float64)
    if ev.n_tracks is not None:
        out["n_tracks"] = ev.n_tracks.astype(np.float64)
    return out


def evaluate_scores(bkg: dict[str, np.ndarray], sig: dict[str, np.ndarray],
                    sig_labels: np.ndarray, sig_masses: np.ndarray,
                    tpr: float = 0.4) -> dict:
    """Per score, per signal process, per mass point: AUC, FPR@tpr and counts; plus the mean of
    each over the mass points. Scores missing on either side are skipped."""
    res: dict = {}
    for name in [k for k in sig if k in bkg]:
        per_score = {}
        for label in sorted(set(sig_labels.tolist())):
            proc = LABEL_NAMES[int(label)]
            rows = {}
            for mass in sorted(set(sig_masses[sig_labels == label].tolist())):
                sel = (sig_labels == label) & (sig_masses == mass)
                s = sig[name][sel]
                rows[f"{mass:g}"] = {"auc": roc_auc(bkg[name], s),
                                     "fpr40": fpr_at_tpr(bkg[name], s, tpr), "n": int(sel.sum())}
            per_score[proc] = {"masses": rows,
                               "mean_auc": float(np.mean([r["auc"] for r in rows.values()])),
                               "mean_fpr40": float(np.mean([r["fpr40"] for r in rows.values()]))}
        res[name] = per_score
    return res


def score_runs(runs: list, background, signal, batch: int = 256) -> tuple:
    """The models of ``runs`` (pooled), their input kind, and (events, scores) of the QCD
    ``background`` and of the ``signal`` files: ``(models, kind, (bev, bs), (sev, ss))``."""
    models = {}
    for r in runs:
        models.update(load_run_models(os.fspath(r)))
    inputs = {m.get("input", "track_occupancy") for _, m in models.values()}
    if len(inputs) > 1:
        raise InputError(f"the models read different inputs {sorted(inputs)}: evaluate them apart")
    meta = next(iter(models.values()))[1]
    kind, escale = meta.get("input", "track_occupancy"), meta.get("energy_scale", 1000.0)
    bev = read_for_input(background, kind, processes=["qcd"])
    sev = read_for_input(signal, kind, processes=["suep", "svj"])
    return (models, kind, (bev, all_scores(models, bev, kind, escale, batch)),
            (sev, all_scores(models, sev, kind, escale, batch)))


def evaluate(run: str | list[str], background, signal, out: str | None = None,
             batch: int = 256, title: str = "CoDAE anomaly detection") -> dict:
    """Score QCD ``background`` and ``signal`` files (files, folders, globs) with the models of
    ``run`` (one run or checkpoint folder, or several whose models are pooled); write
    ``metrics.json``, ``roc.png``, ``z_m_density.png`` and ``report.md/.html`` into ``out`` when
    given. Returns the metrics dict."""
    runs = [run] if isinstance(run, (str, os.PathLike)) else list(run)
    models, kind, (bev, bs), (sev, ss) = score_runs(runs, background, signal, batch)
    notes = []
    if "n_tracks" not in bs or "n_tracks" not in ss:
        notes.append("track multiplicity baseline unavailable: not every file carries "
                     "'n_tracks' (the released supervised/ files do not); n_hits (lit pixels) "
                     "stands in as the multiplicity baseline")
    metrics = {"runs": [os.path.abspath(r) for r in runs], "input": kind,
               "models": {k: {"epoch": m.get("epoch"), "valid_ssim": m.get("valid_ssim"),
                              "runtime": "onnxruntime" if m.get("format") == "onnx" else "torch",
                              "precision": m.get("precision", "fp32")}
                          for k, (_, m) in models.items()},
               "n_background": len(bev),
               "n_signal": {LABEL_NAMES[int(lab)]: int((sev.labels == lab).sum())
                            for lab in sorted(set(sev.labels.tolist()))},
               "background_files": bev.sources, "signal_files": sev.sources, "notes": notes,
               "scores": evaluate_scores(bs, ss, sev.labels, sev.masses)}
    if out is not None:
        from jetfm.codae.report import write_report

        write_report(out, metrics, bs, ss, sev.labels, title=title)
    return metrics
