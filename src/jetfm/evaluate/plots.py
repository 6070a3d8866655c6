"""The figures of the AOJ experiment, in HEP style (mplhep).

- :func:`figure1`: pre-training data against the target data, per observable (the jet and
  constituent quantities of :mod:`jetfm.evaluate.compare` and the mean constituent count per
  species), any number of samples overlaid.
- :func:`figure2`: the (eta, phi) occupancy of the constituents of AOJ-format files, which shows
  the detector structure (barrel/endcap transitions at |eta| ~ 1.5, dead or masked cells).
- :func:`figure_histograms` (Figures 3/4, left): per target, generated against reference
  histograms of every observable for both arms at a few D.
- :func:`figure_scaling` (Figures 3/4, right): KL or W1 against D per observable, seed mean with
  the min-max envelope over seeds and the fitted power law for both arms.

Every function writes one PNG and returns its path. Units: GeV, radians.
"""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np

from jetfm.report.figures import pyplot, save_figure

ARM_STYLE = {"pretrained": dict(color="#e42536", label="fine-tuned (pre-trained)"),
             "scratch": dict(color="#3f90da", label="from scratch")}
SAMPLE_COLORS = ("#5790fc", "#f89c20", "#e42536", "#964a8b", "#9c9ca1", "#7a21dd")
OBS_LABELS = {"pt": r"jet $p_T$ [GeV]", "eta": r"jet $\eta$ (axis offset)",
              "phi": r"jet $\phi$ (axis offset)", "mass": "jet mass [GeV]",
              "n_constituents": "number of constituents", "tau21": r"$\tau_{21}$",
              "tau32": r"$\tau_{32}$", "d2": r"$D_2$"}


def d_axis(ax, sizes: Sequence[float], min_gap: float = 0.15) -> None:
    """A log x axis of training-set sizes D, labelled at the scan's ``sizes`` in plain numbers
    and nothing else: matplotlib's log formatter also labels minor ticks (2x10^2, 3x10^2, ...) on
    axes spanning about a decade, and those labels overlap. A size closer than ``min_gap``
    decades to the previous labelled one keeps its tick but not its label."""
    from matplotlib.ticker import FixedFormatter, FixedLocator, NullFormatter, NullLocator

    ax.set_xscale("log")
    ticks = sorted({float(d) for d in sizes if d > 0})
    labels, last = [], -np.inf
    for d in ticks:
        show = np.log10(d) - last >= min_gap
        labels.append(f"{d:g}" if show else "")
        last = np.log10(d) if show else last
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(FixedFormatter(labels))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_minor_formatter(NullFormatter())


def log_ticks(lo: float, hi: float) -> list[float]:
    """Tick values for a log axis from ``lo`` to ``hi`` (> 0): 1, 2, 5 x 10^k (only 10^k over
    more than three decades), or every m x 10^k when that leaves fewer than two, or three values
    rounded to two digits on a range narrower than that."""
    k0, k1 = int(np.floor(np.log10(lo))), int(np.ceil(np.log10(hi)))
    wide = np.log10(hi / lo) > 3
    for subs in (((1,) if wide else (1, 2, 5)), range(1, 10)):
        vals = [m * 10.0 ** k for k in range(k0, k1 + 1) for m in subs
                if lo <= m * 10.0 ** k <= hi]
        if len(vals) >= 2:
            return vals
    return sorted({float(f"{v:.2g}") for v in np.geomspace(lo, hi, 5)[1:-1]})


def log_y_axis(ax) -> None:
    """Log y axis labelled in plain numbers at :func:`log_ticks` of its range, minor labels
    off."""
    from matplotlib.ticker import FixedLocator, FormatStrFormatter, NullFormatter

    ax.set_yscale("log")
    lo, hi = ax.get_ylim()
    ax.yaxis.set_major_locator(FixedLocator(log_ticks(lo, hi)))
    ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_ylim(lo, hi)


def _grid(n: int, ncols: int = 4):
    nrows = max(1, int(np.ceil(n / ncols)))
    return nrows, min(n, ncols) if n else 1


def figure1(samples: Mapping[str, str], path: str, max_jets: int | None = 20_000) -> str:
    """Overlay the files in ``samples`` (``{label: file}``, AOJ or JetClass) per quantity."""
    import mplhep as hep

    from jetfm.evaluate.compare import QUANTITIES, SPECIES_SHOWN, compare_quantities, species_means
    from jetfm.io import detect_format, read_jets

    plt = pyplot()
    data = {}
    for label, f in samples.items():
        fmt = detect_format(f)
        jets = read_jets(f, stop=max_jets)
        data[label] = (compare_quantities(jets, fmt), species_means(jets))
    names = list(QUANTITIES)
    nrows, ncols = _grid(len(names) + 1)
    fig, axes = plt.subplots(nrows, ncols, figsize=(6.5 * ncols, 5.5 * nrows))
    axes = np.atleast_1d(axes).ravel()
    for ax, name in zip(axes, names):
        xlabel, bins, logx, logy = QUANTITIES[name]
        for k, (label, (q, _)) in enumerate(data.items()):
            vals = q.get(name, np.zeros(0))
            if len(vals):
                h, _ = np.histogram(np.clip(vals, bins[0], bins[-1]), bins=bins, density=True)
                hep.histplot(h, bins, ax=ax, label=label, color=SAMPLE_COLORS[k % 6], lw=2)
        ax.set_xlabel(xlabel, fontsize=16)
        ax.set_ylabel("density", fontsize=16)
        ax.set_xscale("log" if logx else "linear")
        ax.set_yscale("log" if logy else "linear")
        ax.legend(fontsize=11)
    ax = axes[len(names)]
    x = np.arange(len(SPECIES_SHOWN))
    width = 0.8 / max(len(data), 1)
    for k, (label, (_, sm)) in enumerate(data.items()):
        ax.bar(x + (k - (len(data) - 1) / 2) * width, [sm[s] for s in SPECIES_SHOWN], width,
               label=label, color=SAMPLE_COLORS[k % 6])
    ax.set_xticks(x, [s.replace("_", " ") for s in SPECIES_SHOWN], rotation=30, ha="right",
                  fontsize=12)
    ax.set_ylabel("mean constituents per jet", fontsize=16)
    ax.legend(fontsize=11)
    for ax in axes[len(names) + 1:]:
        ax.axis("off")
    fig.suptitle("Figure 1: pre-training and target data", fontsize=22)
    fig.subplots_adjust(left=0.05, right=0.99, bottom=0.08, top=0.93, wspace=0.3, hspace=0.35)
    return save_figure(fig, path, dpi=50)


def occupancy(files: Sequence[str], max_jets: int | None = 50_000, eta_bins: int = 100,
              phi_bins: int = 72) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Constituent counts in (eta, phi): ``(eta_bins, phi_bins)`` counts over |eta| < 3.3 and
    phi in (-pi, pi], with the bin edges."""
    from jetfm.io import read_jets
    from jetfm.physics.features import constituent_kinematics

    ee = np.linspace(-3.3, 3.3, eta_bins + 1)
    pe = np.linspace(-np.pi, np.pi, phi_bins + 1)
    h = np.zeros((eta_bins, phi_bins))
    for f in files:
        jets = read_jets(f, stop=max_jets)
        _, eta, phi = constituent_kinematics(jets)
        m = jets.mask
        h += np.histogram2d(eta[m], phi[m], bins=(ee, pe))[0]
    return h, ee, pe


def figure2(files: Sequence[str], path: str, max_jets: int | None = 50_000,
            title: str = "constituent occupancy") -> str:
    """(eta, phi) occupancy of the constituents of AOJ-format ``files`` (log colour scale)."""
    from matplotlib.colors import LogNorm

    plt = pyplot()
    h, ee, pe = occupancy(files, max_jets)
    fig, ax = plt.subplots(figsize=(11, 7))
    masked = np.ma.masked_equal(h.T, 0)
    im = ax.pcolormesh(ee, pe, masked, norm=LogNorm(vmin=1, vmax=max(h.max(), 2)),
                       cmap="viridis", shading="flat")
    fig.colorbar(im, ax=ax, label="constituents per bin")
    for x in (-2.5, -1.5, 1.5, 2.5):  # tracker acceptance and barrel/endcap transitions
        ax.axvline(x, color="w", lw=1, ls="--", alpha=0.7)
    ax.set_xlabel(r"constituent $\eta$")
    ax.set_ylabel(r"constituent $\phi$ [rad]")
    ax.set_title(f"Figure 2: {title}", fontsize=18)
    return save_figure(fig, path, dpi=70)


def _ref_bins(ref: np.ndarray, n: int = 40) -> np.ndarray:
    lo, hi = np.quantile(ref, [0.001, 0.999])
    if np.allclose(ref, np.round(ref)) and hi - lo < 200:  # integer-valued: one bin per value
        return np.arange(np.floor(lo) - 0.5, np.ceil(hi) + 1.5, max(1, int((hi - lo) // n) or 1))
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    pad = 0.05 * (hi - lo)
    return np.linspace(lo - pad, hi + pad, n + 1)


def figure_histograms(target: str, reference: Mapping[str, np.ndarray],
                      generated: Mapping[str, Mapping[int, Mapping[str, np.ndarray]]],
                      path: str, reference_label: str = "reference") -> str:
    """Generated against reference histograms: one row per D, one column per observable.

    ``reference``: ``{observable: (N,)}``; ``generated``: ``{arm: {D: {observable: (M,)}}}``.
    """
    import mplhep as hep

    plt = pyplot()
    obs = list(reference)
    sizes = sorted({d for arm in generated.values() for d in arm})
    nrows, ncols = max(1, len(sizes)), max(1, len(obs))
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 4.2 * nrows), squeeze=False)
    for i, d in enumerate(sizes):
        for j, name in enumerate(obs):
            ax = axes[i, j]
            bins = _ref_bins(reference[name])
            h, _ = np.histogram(np.clip(reference[name], bins[0], bins[-1]), bins, density=True)
            hep.histplot(h, bins, ax=ax, histtype="fill", color="#bbbbbb", label=reference_label)
            for arm, per_d in generated.items():
                if d in per_d and name in per_d[d]:
                    g = np.clip(per_d[d][name], bins[0], bins[-1])
                    hg, _ = np.histogram(g, bins, density=True)
                    hep.histplot(hg, bins, ax=ax, lw=2, **ARM_STYLE.get(arm, {"label": arm}))
            ax.set_xlabel(OBS_LABELS.get(name, name), fontsize=13)
            ax.tick_params(labelsize=10)
            if j == 0:
                ax.set_ylabel(f"D = {d}\ndensity", fontsize=14)
            if i == 0 and j == 0:
                ax.legend(fontsize=9)
    fig.suptitle(f"{target}: generated vs {reference_label} jets (first seed)", fontsize=20)
    fig.subplots_adjust(left=0.05, right=0.99, bottom=0.1, top=0.9, wspace=0.3, hspace=0.35)
    return save_figure(fig, path, dpi=55)


def figure_scaling(target: str, summary: Sequence[dict], fits: Sequence[dict], metric: str,
                   path: str, reference: str = "tokenized",
                   observables: Sequence[str] | None = None) -> str:
    """``metric`` against D per observable for both arms: seed mean (markers), min-max
    envelope over seeds (band) and the fitted power law a D^-gamma (line, gamma in the legend).

    ``summary``/``fits``: the ``summary`` and ``fits`` lists of a scan's results.json.
    """
    from jetfm.evaluate.scan import OBSERVABLES

    plt = pyplot()
    sel = [s for s in summary if s["target"] == target and s["metric"] == metric
           and s["reference"] == reference]
    found = list(dict.fromkeys(s["observable"] for s in sel))
    obs = list(observables or [o for o in OBSERVABLES if o in found]
               + [o for o in found if o not in OBSERVABLES])
    nrows, ncols = _grid(len(obs))
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.2 * ncols, 4.6 * nrows), squeeze=False)
    axes = axes.ravel()
    for ax, name in zip(axes, obs):
        for arm, style in ARM_STYLE.items():
            pts = sorted((s for s in sel if s["observable"] == name and s["arm"] == arm),
                         key=lambda s: s["D"])
            if not pts:
                continue
            d = np.array([p["D"] for p in pts], float)
            mean = np.array([p["mean"] for p in pts])
            ax.fill_between(d, [p["min"] for p in pts], [p["max"] for p in pts],
                            color=style["color"], alpha=0.25, lw=0)
            fit = next((f for f in fits if f["target"] == target and f["metric"] == metric
                        and f["reference"] == reference and f["observable"] == name
                        and f["arm"] == arm), None)
            label = style["label"]
            if fit and np.isfinite(fit.get("gamma", np.nan)):
                label += rf" $\gamma$={fit['gamma']:.2f}$\pm${fit['gamma_err']:.2f}"
                dd = np.geomspace(d.min(), d.max(), 50)
                ax.plot(dd, fit["a"] * dd ** -fit["gamma"], color=style["color"], lw=1.5)
            ax.plot(d, mean, "o", color=style["color"], label=label, ms=6)
        d_axis(ax, [s["D"] for s in sel if s["observable"] == name])
        if all(s["mean"] > 0 for s in sel if s["observable"] == name):
            log_y_axis(ax)
        ax.set_xlabel("training jets D", fontsize=13)
        ax.set_title(f"{metric.upper()}: {OBS_LABELS.get(name, name)}", fontsize=13)
        ax.tick_params(which="both", labelsize=9)
        ax.legend(fontsize=8, loc="best")
    for ax in axes[len(obs):]:
        ax.axis("off")
    fig.suptitle(f"{target}: {metric.upper()} against D ({reference} reference); markers: seed "
                 "mean, bands: seed min-max, lines: a D^-gamma fits", fontsize=16)
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.08, top=0.9, wspace=0.3, hspace=0.4)
    return save_figure(fig, path, dpi=60)


def scan_figures(scan_dir: str, out_dir: str | None = None, n_sizes: int = 3) -> dict[str, str]:
    """All Figures 3/4 of a scan folder: per target, histograms at up to ``n_sizes`` sizes and
    KL and W1 against D. Returns ``{figure name: path}``."""
    from jetfm.evaluate.scan import load_results

    res = load_results(scan_dir)
    out_dir = out_dir or os.path.join(scan_dir, "figures")
    figs: dict[str, str] = {}
    for target in res["targets"]:
        ref = np.load(os.path.join(scan_dir, "reference", f"{target}.npz"))
        ref_obs = {k[len("tokenized_"):]: ref[k] for k in ref.files if k.startswith("tokenized_")}
        sizes = sorted({r["D"] for r in res["rows"] if r["target"] == target})
        if len(sizes) > n_sizes:  # smallest, middle and largest
            sizes = [sizes[int(round(i))] for i in np.linspace(0, len(sizes) - 1, n_sizes)]
        gen: dict[str, dict[int, dict[str, np.ndarray]]] = {}
        for arm in ("pretrained", "scratch"):
            for d in sizes:
                f = os.path.join(scan_dir, "cells", target, f"D{d}_seed0_{arm}.npz")
                if os.path.exists(f):
                    z = np.load(f)
                    gen.setdefault(arm, {})[d] = {k: z[k] for k in z.files}
        figs[f"{target}_histograms"] = figure_histograms(
            target, ref_obs, gen, os.path.join(out_dir, f"{target}_histograms.png"),
            reference_label="reference (tokenized)")
        for metric in ("kl", "w1"):
            figs[f"{target}_{metric}"] = figure_scaling(
                target, res["summary"], res["fits"], metric,
                os.path.join(out_dir, f"{target}_{metric}_vs_D.png"))
    return figs


# ----------------------------------------------------------------------------- classification
#: the classification arms and the high-level baseline
CLASSIFY_STYLE = {**ARM_STYLE,
                  "frozen": {"color": "#964a8b", "label": "frozen backbone (head only)"},
                  "hlf_bdt": {"color": "#5f5f5f", "label": "BDT on high-level observables"},
                  "hlf_bdt_tokenized": {"color": "#b9ac70",
                                        "label": "BDT on observables of tokenized jets"}}


def figure_roc(curves: Mapping[str, tuple[np.ndarray, np.ndarray]], path: str,
               title: str = "") -> str:
    """Background rejection 1/eps_B (log) against signal efficiency eps_S, one line per
    ``{label: (eps_S, eps_B)}``, the usual tagger figure."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 6))
    for label, (tpr, fpr) in curves.items():
        ok = (fpr > 0) & (tpr > 0)
        ax.plot(tpr[ok], 1.0 / fpr[ok], lw=2, label=label)
    ax.plot([0.01, 1], [1 / 0.01, 1], "k:", lw=1, label="random")
    ax.set_yscale("log")
    ax.set_xlim(0, 1)
    ax.set_xlabel(r"signal efficiency $\epsilon_S$", fontsize=14)
    ax.set_ylabel(r"background rejection $1/\epsilon_B$", fontsize=14)
    ax.legend(fontsize=10)
    if title:
        ax.set_title(title, fontsize=13)
    fig.subplots_adjust(left=0.15, right=0.97, bottom=0.12, top=0.92)
    return save_figure(fig, path, dpi=70)


def figure_classify_scan(summary: Sequence[dict], path: str, title: str = "") -> str:
    """AUC and rejection at eps_S = 0.3 against D for every arm and the baseline: seed mean
    (markers and line) and min-max envelope over seeds (band)."""
    plt = pyplot()
    panels = [("auc", "ROC AUC"), ("rejection_30", r"rejection $1/\epsilon_B$ at $\epsilon_S$=0.3")]
    fig, axes = plt.subplots(1, 2, figsize=(12, 5))
    for ax, (metric, ylabel) in zip(axes, panels):
        for arm, style in CLASSIFY_STYLE.items():
            pts = sorted((s for s in summary if s["arm"] == arm and s["metric"] == metric),
                         key=lambda s: s["D"])
            if not pts:
                continue
            d = np.array([p["D"] for p in pts], float)
            ax.fill_between(d, [p["min"] for p in pts], [p["max"] for p in pts],
                            color=style["color"], alpha=0.2, lw=0)
            ax.plot(d, [p["mean"] for p in pts], "o-", color=style["color"], ms=6,
                    label=style["label"])
        d_axis(ax, [s["D"] for s in summary if s["metric"] == metric])
        if metric.startswith("rejection"):
            log_y_axis(ax)
        ax.set_xlabel("labelled training jets D", fontsize=13)
        ax.set_ylabel(ylabel, fontsize=13)
        ax.tick_params(which="both", labelsize=10)
        ax.legend(fontsize=9, loc="best")
    if title:
        fig.suptitle(title, fontsize=14)
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.13, top=0.88, wspace=0.28)
    return save_figure(fig, path, dpi=70)


__all__ = ["figure1", "figure2", "occupancy", "figure_histograms", "figure_scaling",
           "scan_figures", "figure_roc", "figure_classify_scan", "d_axis", "log_y_axis",
           "log_ticks"]
