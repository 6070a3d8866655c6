"""The evaluation report: ``metrics.json``, ROC curves, the Z_m density plot, ``report.md`` and
``report.html`` (plots inline as base64 PNG; :class:`jetfm.report.Report`): the verdict (the
best score per signal), the figures, then the tables of AUC and FPR@40 per score."""
from __future__ import annotations

import json
import os

import numpy as np

from jetfm.codae.metrics import roc_curve
from jetfm.io.images import LABEL_NAMES, LABELS
from jetfm.io.output import write_text_atomic
from jetfm.report import Figure, Heading, Paragraph, Report, Table, pyplot, save_figure

#: scores drawn in the ROC figure, when present
MAIN_SCORES = ("z_m_dist", "z_m0", "z_m1", "bce", "dice", "ae_bce", "n_hits", "n_tracks")


def plot_roc(path: str, bkg: dict, sig: dict, sig_labels: np.ndarray, metrics: dict) -> None:
    """One panel per signal: background FPR (log) against signal efficiency, main scores."""
    plt = pyplot(hep_style=False)
    procs = [LABEL_NAMES[int(lab)] for lab in sorted(set(sig_labels.tolist()))]
    fig, axes = plt.subplots(1, len(procs), figsize=(5.2 * len(procs), 4.4), squeeze=False)
    for ax, proc in zip(axes[0], procs):
        sel = sig_labels == LABELS[proc]
        for name in [s for s in MAIN_SCORES if s in bkg and s in sig]:
            fpr, tpr, _ = roc_curve(bkg[name], sig[name][sel])
            auc = metrics["scores"][name][proc]["mean_auc"]
            ax.plot(tpr, np.maximum(fpr, 1e-4), label=f"{name} (mean AUC {auc:.3f})")
        ax.plot([0, 1], [1e-4 + 0 * 0, 1], color="grey", lw=0.8, ls=":")
        ax.axvline(0.4, color="grey", lw=0.6, ls="--")
        ax.set_yscale("log")
        ax.set_ylim(1e-3, 1.05)
        ax.set_xlabel(f"{proc.upper()} efficiency (all mass points)")
        ax.set_ylabel("QCD false-positive rate")
        ax.set_title(proc.upper())
        ax.legend(fontsize=7, loc="lower right")
    save_figure(fig, path, dpi=110, tight=True)


def plot_z_m(path: str, bkg: dict, sig: dict, sig_labels: np.ndarray) -> bool:
    """Density of Z_m for QCD and each signal (contours over a scatter); False without Z_m."""
    if "z_m0" not in bkg or "z_m1" not in bkg:
        return False
    from scipy.stats import gaussian_kde

    plt = pyplot(hep_style=False)
    fig, ax = plt.subplots(figsize=(5.6, 4.8))
    sets = [("QCD", bkg["z_m0"], bkg["z_m1"], "tab:blue")]
    for label, color in ((1, "tab:red"), (2, "tab:green")):
        sel = sig_labels == label
        if sel.any():
            sets.append((LABEL_NAMES[label].upper(), sig["z_m0"][sel], sig["z_m1"][sel], color))
    allx = np.concatenate([s[1] for s in sets])
    ally = np.concatenate([s[2] for s in sets])
    lo_x, hi_x = np.percentile(allx, [0.5, 99.5])
    lo_y, hi_y = np.percentile(ally, [0.5, 99.5])
    gx, gy = np.meshgrid(np.linspace(lo_x, hi_x, 80), np.linspace(lo_y, hi_y, 80))
    for name, x, y, color in sets:
        ax.scatter(x, y, s=3, alpha=0.25, color=color)
        if len(x) > 3 and np.ptp(x) > 0 and np.ptp(y) > 0:
            dens = gaussian_kde(np.vstack([x, y]))(np.vstack([gx.ravel(), gy.ravel()]))
            ax.contour(gx, gy, dens.reshape(gx.shape), levels=4, colors=color, linewidths=1.0)
        ax.plot([], [], color=color, label=f"{name} ({len(x)})")
    ax.set_xlim(lo_x, hi_x)
    ax.set_ylim(lo_y, hi_y)
    ax.set_xlabel("$Z_m$[0]")
    ax.set_ylabel("$Z_m$[1]")
    ax.set_title("CoDAE latent space $Z_m$")
    ax.legend(fontsize=8)
    save_figure(fig, path, dpi=110, tight=True)
    return True


def _processes(metrics: dict) -> list[str]:
    return sorted({p for v in metrics["scores"].values() for p in v})


def score_table(metrics: dict) -> Table:
    """Per score, per signal: mean AUC and mean FPR@40 over the mass points."""
    procs = _processes(metrics)
    rows = []
    for name, per in metrics["scores"].items():
        cells = []
        for p in procs:
            cells += ([f"{per[p]['mean_auc']:.3f}", f"{per[p]['mean_fpr40']:.3f}"] if p in per
                      else ["", ""])
        rows.append([name] + cells)
    return Table("Mean over mass points (ROC AUC, background FPR at 40 % signal efficiency)",
                 ["score"] + [f"{p.upper()} {k}" for p in procs for k in ("AUC", "FPR@40")],
                 rows)


def metrics_table(metrics: dict) -> str:
    """:func:`score_table` in Markdown."""
    return score_table(metrics).markdown()


def mass_table(metrics: dict, proc: str, names) -> Table | None:
    """Per score: AUC and FPR@40 of ``proc`` at each mass point (None without mass points)."""
    masses = None
    for n in names:
        if proc in metrics["scores"].get(n, {}):
            masses = list(metrics["scores"][n][proc]["masses"])
            break
    if not masses:
        return None
    rows = []
    for n in names:
        if proc in metrics["scores"].get(n, {}):
            r = metrics["scores"][n][proc]["masses"]
            rows.append([n] + [f"{r[m]['auc']:.3f} / {r[m]['fpr40']:.3f}" for m in masses])
    return Table(f"{proc.upper()} per mass point", ["score"] + [f"{m} GeV AUC / FPR@40"
                                                               for m in masses], rows)


def verdict_lines(metrics: dict, names) -> list[str]:
    """Per signal: the score with the highest mean AUC over the mass points, with its FPR@40."""
    out = []
    for proc in _processes(metrics):
        have = [n for n in names if proc in metrics["scores"].get(n, {})]
        if not have:
            continue
        best = max(have, key=lambda n: metrics["scores"][n][proc]["mean_auc"])
        r = metrics["scores"][best][proc]
        out.append(f"**{proc.upper()}:** the best score is `{best}`, mean ROC AUC "
                   f"{r['mean_auc']:.3f} and background FPR {r['mean_fpr40']:.3f} at 40 % signal "
                   f"efficiency over the mass points ({', '.join(r['masses'])} GeV).")
    return out


def _num(x, spec: str) -> str:
    return "n/a" if x is None else format(x, spec)


def write_report(out: str, metrics: dict, bkg: dict, sig: dict, sig_labels: np.ndarray,
                 title: str = "CoDAE anomaly detection") -> dict:
    """Write every output of an evaluation into folder ``out``; returns the paths."""
    os.makedirs(out, exist_ok=True)
    paths = {"metrics": os.path.join(out, "metrics.json"), "roc": os.path.join(out, "roc.png"),
             "z_m": os.path.join(out, "z_m_density.png"), "md": os.path.join(out, "report.md"),
             "html": os.path.join(out, "report.html")}
    write_text_atomic(paths["metrics"], json.dumps(metrics, indent=2))
    plot_roc(paths["roc"], bkg, sig, sig_labels, metrics)
    has_zm = plot_z_m(paths["z_m"], bkg, sig, sig_labels)
    names = [s for s in MAIN_SCORES if s in metrics["scores"]]
    figures = [Figure(paths["roc"], "ROC curves")]
    if has_zm:
        figures.append(Figure(paths["z_m"], "Z_m density: the CoDAE latent space"))
    details = [Heading("Scores"), score_table(metrics)]
    details += [t for t in (mass_table(metrics, proc, names) for proc in metrics["n_signal"])
                if t is not None]
    details += [Heading("Data and models"), Paragraph(
        f"Background: {metrics['n_background']} QCD events; signal: "
        + ", ".join(f"{n} {p.upper()}" for p, n in metrics["n_signal"].items())
        + f". Input: `{metrics['input']}`.")]
    details.append(Table("Checkpoints", ["model", "epoch", "validation SSIM"],
                         [[f"{k}", str(v["epoch"]), _num(v["valid_ssim"], ".4f")]
                          for k, v in metrics["models"].items()]))
    details += [Paragraph(f"Note: {n}") for n in metrics["notes"]]
    Report(title, verdict_lines(metrics, names), figures, details).write(out)
    if not has_zm:
        paths.pop("z_m")
    return paths
