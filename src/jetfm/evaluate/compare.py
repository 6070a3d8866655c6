"""Dataset comparison plots in the style of the AspenOpenJets paper's Figure 1.

:func:`plot_compare` reads two jet files of either format (AOJ .h5 or JetClass .root), and draws
normalised histograms of the constituent features (pT, eta_rel, phi_rel, d0, dz and their
significances), the jet observables (mass, tau21, tau32) and the mean number of constituents per
particle species, one PNG per quantity plus ``figure1.png`` with all panels, and writes
``summary.json`` (per quantity: entries, mean of each file, 1-Wasserstein distance).

Units: GeV, radians; d0 and dz in cm (JetClass files store mm and are converted).
"""
from __future__ import annotations

import json
import os

import numpy as np

from jetfm.errors import InputError
from jetfm.io.output import write_text_atomic
from jetfm.jets import Jets

#: constituent and jet quantities drawn, with axis label, binning and log-scale choices
QUANTITIES = {
    "constituent_pt": ("constituent $p_T$ [GeV]", np.geomspace(0.1, 1000, 61), True, True),
    "eta_rel": (r"constituent $\eta_{rel}$", np.linspace(-1, 1, 61), False, True),
    "phi_rel": (r"constituent $\phi_{rel}$", np.linspace(-1, 1, 61), False, True),
    "d0": ("constituent $d_0$ [cm]", np.linspace(-0.5, 0.5, 61), False, True),
    "dz": ("constituent $d_z$ [cm]", np.linspace(-1, 1, 61), False, True),
    "d0_significance": (r"$d_0 / \sigma(d_0)$", np.linspace(-50, 50, 61), False, True),
    "dz_significance": (r"$d_z / \sigma(d_z)$", np.linspace(-50, 50, 61), False, True),
    "jet_mass": ("jet mass [GeV]", np.linspace(0, 400, 51), False, False),
    "tau21": (r"$\tau_{21}$", np.linspace(0, 1.2, 49), False, False),
    "tau32": (r"$\tau_{32}$", np.linspace(0, 1.2, 49), False, False),
}
SPECIES_SHOWN = ("charged_hadron", "neutral_hadron", "photon", "electron", "muon")


def compare_quantities(jets: Jets, fmt: str) -> dict[str, np.ndarray]:
    """Flat arrays of every quantity in :data:`QUANTITIES` (constituent ones over all real
    constituents; track ones over charged constituents with track parameters)."""
    from jetfm.physics.features import constituent_kinematics, relative_to_jet
    from jetfm.physics.observables import jet_kinematics, nsubjettiness

    m = jets.mask
    pt, _, _ = constituent_kinematics(jets)
    deta, dphi = relative_to_jet(jets)
    out = {"constituent_pt": pt[m], "eta_rel": deta[m], "phi_rel": dphi[m]}
    scale = 0.1 if fmt == "jetclass" else 1.0  # JetClass (Delphes) stores mm
    track = m & np.isfinite(jets.c("d0")) & (jets.c("charge") != 0)
    d0, dz = jets.c("d0")[track] * scale, jets.c("dz")[track] * scale
    d0e, dze = jets.c("d0Err")[track] * scale, jets.c("dzErr")[track] * scale
    out["d0"], out["dz"] = d0, dz
    ok0, okz = d0e > 0, dze > 0
    out["d0_significance"] = d0[ok0] / d0e[ok0]
    out["dz_significance"] = dz[okz] / dze[okz]
    out["jet_mass"] = jet_kinematics(jets)["mass"]
    # from the constituents in both formats (not the stored tau columns), the same way for A and B
    taus = np.asarray(nsubjettiness(jets, n_max=3))
    for name, (num, den) in {"tau21": (1, 0), "tau32": (2, 1)}.items():
        ok = taus[:, den] > 0
        out[name] = taus[ok, num] / taus[ok, den]
    return {k: np.asarray(v, np.float64) for k, v in out.items()}


def species_means(jets: Jets) -> dict[str, float]:
    from jetfm.physics.features import species_counts

    counts = species_counts(jets)
    return {k: float(counts[k].mean()) for k in SPECIES_SHOWN}


def _load(path: str, max_jets: int | None) -> tuple[Jets, str]:
    from jetfm.io import detect_format, read_jets

    fmt = detect_format(path)
    jets = read_jets(path, 0, max_jets)
    if len(jets) == 0:
        raise InputError("file holds no jets", path)
    return jets, fmt


def plot_compare(file_a: str, file_b: str, out_dir: str, labels=None,
                 max_jets: int | None = None) -> dict:
    """Draw the comparison of two jet files into ``out_dir``; returns the summary dict."""
    import mplhep as hep
    from scipy.stats import wasserstein_distance

    from jetfm.errors import check_writable
    from jetfm.report import pyplot, save_figure

    check_writable(os.path.join(out_dir, "summary.json"))
    if max_jets is not None and max_jets < 1:
        raise InputError(f"--max-jets must be >= 1, got {max_jets}")
    (ja, fa), (jb, fb) = _load(file_a, max_jets), _load(file_b, max_jets)
    labels = list(labels) if labels else [os.path.basename(file_a), os.path.basename(file_b)]
    qa, qb = compare_quantities(ja, fa), compare_quantities(jb, fb)
    sa, sb = species_means(ja), species_means(jb)
    os.makedirs(out_dir, exist_ok=True)
    plt = pyplot()
    colors = ("#3f90da", "#e42536")
    summary: dict = {"files": [os.path.abspath(file_a), os.path.abspath(file_b)],
                     "formats": [fa, fb], "labels": labels, "n_jets": [len(ja), len(jb)],
                     "quantities": {}, "species_mean_per_jet": {labels[0]: sa, labels[1]: sb},
                     "plots": []}

    def draw(ax, name):
        xlabel, bins, logx, logy = QUANTITIES[name]
        for vals, lab, col in ((qa[name], labels[0], colors[0]), (qb[name], labels[1], colors[1])):
            if len(vals):
                h, _ = np.histogram(np.clip(vals, bins[0], bins[-1]), bins=bins, density=True)
                hep.histplot(h, bins, ax=ax, label=lab, color=col, lw=2)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("density")
        if logx:
            ax.set_xscale("log")
        if logy:
            ax.set_yscale("log")
        ax.legend(fontsize="small")

    def draw_species(ax):
        x = np.arange(len(SPECIES_SHOWN))
        ax.bar(x - 0.2, [sa[k] for k in SPECIES_SHOWN], 0.4, label=labels[0], color=colors[0])
        ax.bar(x + 0.2, [sb[k] for k in SPECIES_SHOWN], 0.4, label=labels[1], color=colors[1])
        ax.set_xticks(x, [k.replace("_", " ") for k in SPECIES_SHOWN], rotation=30, ha="right",
                      fontsize="small")
        ax.set_ylabel("mean constituents per jet")
        ax.legend(fontsize="small")

    for name in QUANTITIES:
        a, b = qa[name], qb[name]
        entry = {"entries": [int(len(a)), int(len(b))],
                 "mean": [float(a.mean()) if len(a) else None, float(b.mean()) if len(b) else None],
                 "w1": float(wasserstein_distance(a, b)) if len(a) and len(b) else None}
        summary["quantities"][name] = entry
        fig, ax = plt.subplots(figsize=(8, 7))
        fig.subplots_adjust(left=0.17, right=0.96, bottom=0.13, top=0.93)
        draw(ax, name)
        hep.cms.text("Open Data / Simulation", ax=ax, fontsize=14)
        # no tight cropping: it draws every figure twice (axis ticks dominate the cost)
        summary["plots"].append(save_figure(fig, os.path.join(out_dir, f"{name}.png"), dpi=80))
    fig, ax = plt.subplots(figsize=(8, 7))
    fig.subplots_adjust(left=0.17, right=0.96, bottom=0.25, top=0.93)
    draw_species(ax)
    summary["plots"].append(save_figure(fig, os.path.join(out_dir, "species.png"), dpi=80))

    names = list(QUANTITIES)
    fig, axes = plt.subplots(3, 4, figsize=(28, 20))
    fig.subplots_adjust(left=0.05, right=0.98, bottom=0.08, top=0.97, wspace=0.28, hspace=0.3)
    for ax, name in zip(axes.flat, names):
        draw(ax, name)
    draw_species(axes.flat[len(names)])
    for ax in axes.flat[len(names) + 1:]:
        ax.axis("off")
    summary["plots"].append(save_figure(fig, os.path.join(out_dir, "figure1.png"), dpi=60))
    write_text_atomic(os.path.join(out_dir, "summary.json"), json.dumps(summary, indent=2))
    return summary
