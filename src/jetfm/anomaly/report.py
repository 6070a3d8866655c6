"""The evaluation report: ``metrics.json``, ROC curves, the Z_m density plot, ``report.md`` and
``report.html`` (plots inline as base64 PNG)."""
from __future__ import annotations

import base64
import html
import json
import os

import numpy as np

from jetfm.anomaly.metrics import roc_curve
from jetfm.anomaly.scoring import MAIN_SCORES
from jetfm.errors import write_text_atomic
from jetfm.io.images import LABEL_NAMES, LABELS
from jetfm.io.output import atomic_output


def _savefig(fig, path: str) -> None:
    with atomic_output(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")


def plot_roc(path: str, bkg: dict, sig: dict, sig_labels: np.ndarray, metrics: dict) -> None:
    """One panel per signal: background FPR (log) against signal efficiency, main scores."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    procs = [LABEL_NAMES[int(l)] for l in sorted(set(sig_labels.tolist()))]
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
    _savefig(fig, path)
    plt.close(fig)


def plot_z_m(path: str, bkg: dict, sig: dict, sig_labels: np.ndarray) -> bool:
    """Density of Z_m for QCD and each signal (contours over a scatter); False without Z_m."""
    if "z_m0" not in bkg or "z_m1" not in bkg:
        return False
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy.stats import gaussian_kde

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
    _savefig(fig, path)
    plt.close(fig)
    return True


def metrics_table(metrics: dict) -> str:
    """Markdown table: per score, per signal, mean AUC and mean FPR@40 over mass points."""
    procs = sorted({p for v in metrics["scores"].values() for p in v})
    head = "| score | " + " | ".join(f"{p.upper()} AUC | {p.upper()} FPR@40" for p in procs) + " |"
    sep = "|---|" + "---|---|" * len(procs)
    rows = [head, sep]
    for name, per in metrics["scores"].items():
        cells = []
        for p in procs:
            if p in per:
                cells += [f"{per[p]['mean_auc']:.3f}", f"{per[p]['mean_fpr40']:.3f}"]
            else:
                cells += ["", ""]
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def mass_table(metrics: dict, proc: str, names) -> str:
    masses = None
    for n in names:
        if proc in metrics["scores"].get(n, {}):
            masses = list(metrics["scores"][n][proc]["masses"])
            break
    if not masses:
        return ""
    rows = ["| score | " + " | ".join(f"{m} GeV AUC / FPR@40" for m in masses) + " |",
            "|---|" + "---|" * len(masses)]
    for n in names:
        if proc in metrics["scores"].get(n, {}):
            r = metrics["scores"][n][proc]["masses"]
            rows.append(f"| {n} | " + " | ".join(f"{r[m]['auc']:.3f} / {r[m]['fpr40']:.3f}"
                                                   for m in masses) + " |")
    return "\n".join(rows)


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
    md = [f"# {title}", "",
          f"Background: {metrics['n_background']} QCD events; signal: "
          + ", ".join(f"{n} {p.upper()}" for p, n in metrics["n_signal"].items())
          + f". Input: `{metrics['input']}`.", ""]
    for k, v in metrics["models"].items():
        md.append(f"- `{k}` checkpoint: epoch {v['epoch']}, validation SSIM {v['valid_ssim']:.4f}")
    md += [""] + [f"Note: {n}" for n in metrics["notes"]] + ["",
           "## Mean over mass points (ROC AUC, background FPR at 40 % signal efficiency)", "",
           metrics_table(metrics), ""]
    for proc in metrics["n_signal"]:
        md += [f"## {proc.upper()} per mass point", "", mass_table(metrics, proc, names), ""]
    md += ["## ROC curves", "", "![ROC curves](roc.png)", ""]
    if has_zm:
        md += ["## Latent space", "", "![Z_m density](z_m_density.png)", ""]
    write_text_atomic(paths["md"], "\n".join(md))
    write_text_atomic(paths["html"], markdown_to_html("\n".join(md), out, title))
    if not has_zm:
        paths.pop("z_m")
    return paths


def markdown_to_html(md: str, folder: str, title: str) -> str:
    """The small Markdown subset written above -> standalone HTML with images inlined."""
    body, table = [], []

    def flush():
        if table:
            rows = [r for r in table if not set(r.replace("|", "").strip()) <= set("-: ")]
            cells = [[html.escape(c.strip()) for c in r.strip().strip("|").split("|")] for r in rows]
            out = ["<table>", "<tr>" + "".join(f"<th>{c}</th>" for c in cells[0]) + "</tr>"]
            out += ["<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in cells[1:]]
            body.append("\n".join(out + ["</table>"]))
            table.clear()

    for line in md.splitlines():
        if line.startswith("|"):
            table.append(line)
            continue
        flush()
        if line.startswith("## "):
            body.append(f"<h2>{html.escape(line[3:])}</h2>")
        elif line.startswith("# "):
            body.append(f"<h1>{html.escape(line[2:])}</h1>")
        elif line.startswith("!["):
            alt, src = line[2:].split("](")
            with open(os.path.join(folder, src.rstrip(")")), "rb") as fh:
                data = base64.b64encode(fh.read()).decode()
            body.append(f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">')
        elif line.strip():
            body.append(f"<p>{html.escape(line)}</p>")
    flush()
    style = ("body{font-family:sans-serif;max-width:1100px;margin:auto}table{border-collapse:"
             "collapse}td,th{border:1px solid #aaa;padding:2px 6px;font-size:12px}img{max-width:100%}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")
