"""Generation fidelity: how close generated jets are to held-out reference jets, observable by
observable, in the numbers a physicist checks first.

For each observable of :data:`FIDELITY_OBSERVABLES` (soft-drop mass, jet mass, tau21, tau32, D2,
number of constituents), :func:`fidelity` gives the reference and generated medians, W1 and
KL(reference || generated), and, for the soft-drop mass, the fraction of jets in the top window
150-190 GeV. The reference is compared in the generator's frame (``raw``, see
:func:`jetfm.evaluate.scan.reference_sets`). The *tokenizer floor* is the KL between the
reference and other jets of the same kind (the training jets) passed through the tokenizer and
back: what a backbone that learned its training jets perfectly would still show, the
tokenizer's loss and the statistical noise of the sample sizes together (the same jets through
the tokenizer would have no noise: the multiplicity, which the tokenizer keeps, would get a
floor of 0). A generator is judged against what its tokenizer and sample sizes allow.

:func:`check_targets` applies the acceptance targets of the default demo: jet-mass median within
8 %, tau32 median within 0.08, and the KL of mass, tau21, tau32, D2 and multiplicity each at
most twice the tokenizer floor.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from jetfm.jets import Jets

FIDELITY_OBSERVABLES = ("msoftdrop", "mass", "tau21", "tau32", "d2", "n_constituents")
#: the top-quark window of the soft-drop mass (GeV)
TOP_WINDOW = (150.0, 190.0)
#: observables whose KL must stay within ``kl_floor_factor`` times the tokenizer floor
KL_CHECKED = ("mass", "tau21", "tau32", "d2", "n_constituents")


def fidelity_observables(jets: Jets, observables: Mapping[str, np.ndarray] | None = None
                         ) -> dict[str, np.ndarray]:
    """The observables of :data:`FIDELITY_OBSERVABLES` (and the scan's) of ``jets``;
    ``observables``: the scan's, when they are already computed (only the soft-drop mass is
    added then)."""
    from jetfm.evaluate.scan import experiment_observables
    from jetfm.physics.observables import softdrop_mass

    out = dict(experiment_observables(jets) if observables is None else observables)
    out["msoftdrop"] = softdrop_mass(jets)
    return out


def window_fraction(x: np.ndarray, window: tuple[float, float] = TOP_WINDOW) -> float:
    x = np.asarray(x)
    return float(np.mean((x >= window[0]) & (x < window[1]))) if x.size else float("nan")


def fidelity(reference: Mapping[str, np.ndarray], generated: Mapping[str, np.ndarray],
             tokenized: Mapping[str, np.ndarray] | None = None,
             floor: Mapping[str, np.ndarray] | None = None, seed: int = 0,
             w1_samples: int = 20_000, w1_batches: int = 5) -> dict[str, dict[str, float]]:
    """``{observable: {ref_median, gen_median, w1, w1_std, kl, kl_floor?, ...}}``.

    ``reference``: observables of the held-out jets in the generator's frame; ``tokenized``:
    of the same jets through the tokenizer and back (gives ``tok_median``); ``floor``: of other
    jets of the kind through the tokenizer and back, as many as generated (gives ``kl_floor``).
    The soft-drop mass also gets ``ref_window`` / ``gen_window`` (/ ``tok_window``): the
    fractions of jets in :data:`TOP_WINDOW`.
    """
    from jetfm.evaluate.metrics import kl_divergence, w1

    out: dict[str, dict[str, float]] = {}
    for k, name in enumerate(FIDELITY_OBSERVABLES):
        if name not in reference or name not in generated:
            continue
        ref, gen = np.asarray(reference[name]), np.asarray(generated[name])
        d = w1(ref, gen, w1_samples, w1_batches, seed=seed + k)
        row = {"ref_median": float(np.median(ref)), "gen_median": float(np.median(gen)),
               "w1": d.value, "w1_std": d.error, "kl": kl_divergence(ref, gen)}
        if tokenized is not None and name in tokenized:
            tok = np.asarray(tokenized[name])
            row["tok_median"] = float(np.median(tok))
        if floor is not None and name in floor:
            row["kl_floor"] = kl_divergence(ref, np.asarray(floor[name]))
        if name == "msoftdrop":
            row["ref_window"] = window_fraction(ref)
            row["gen_window"] = window_fraction(gen)
            if tokenized is not None and name in tokenized:
                row["tok_window"] = window_fraction(tokenized[name])
        out[name] = row
    return out


def check_targets(fid: Mapping[str, Mapping[str, float]], mass_rel: float = 0.08,
                  tau32_abs: float = 0.08, kl_floor_factor: float = 2.0) -> dict[str, dict]:
    """Each acceptance target: ``{name: {"value", "limit", "met"}}`` (see the module doc)."""
    out: dict[str, dict] = {}
    m = fid.get("mass")
    if m:
        rel = abs(m["gen_median"] / m["ref_median"] - 1.0)
        out["mass median"] = {"value": rel, "limit": mass_rel, "met": rel <= mass_rel}
    t = fid.get("tau32")
    if t:
        diff = abs(t["gen_median"] - t["ref_median"])
        out["tau32 median"] = {"value": diff, "limit": tau32_abs, "met": diff <= tau32_abs}
    for name in KL_CHECKED:
        r = fid.get(name)
        if r and "kl_floor" in r:
            ratio = r["kl"] / max(r["kl_floor"], 1e-12)
            out[f"KL {name} / floor"] = {"value": ratio, "limit": kl_floor_factor,
                                         "met": ratio <= kl_floor_factor}
    return out


def check_long_targets(fid: Mapping[str, Mapping[str, float]], msoftdrop_gev: float = 5.0,
                       window: float = 0.5, tau32_abs: float = 0.05) -> dict[str, dict]:
    """The targets of a long training recipe, stricter than :func:`check_targets`: soft-drop
    mass median within ``msoftdrop_gev`` of the reference's, at least ``window`` of the
    generated jets with a soft-drop mass in 150-190 GeV, tau32 median within ``tau32_abs``.
    Same entries as :func:`check_targets`; the window's also has ``"at_least": True`` (its
    limit is a floor)."""
    out: dict[str, dict] = {}
    sd = fid.get("msoftdrop")
    if sd:
        diff = abs(sd["gen_median"] - sd["ref_median"])
        out["soft-drop mass median [GeV]"] = {"value": diff, "limit": msoftdrop_gev,
                                              "met": diff <= msoftdrop_gev}
        out["fraction in 150-190 GeV"] = {"value": sd["gen_window"], "limit": window,
                                          "met": sd["gen_window"] >= window, "at_least": True}
    t = fid.get("tau32")
    if t:
        diff = abs(t["gen_median"] - t["ref_median"])
        out["tau32 median"] = {"value": diff, "limit": tau32_abs, "met": diff <= tau32_abs}
    return out


def fidelity_lines(fid: Mapping[str, Mapping[str, float]]) -> list[str]:
    """A plain-text table: one line per observable."""
    lines = [f"{'observable':<15}{'ref med':>9}{'tok med':>9}{'gen med':>9}{'W1':>9}"
             f"{'KL':>8}{'floor':>8}"]
    for name, r in fid.items():
        lines.append(f"{name:<15}{r['ref_median']:>9.3g}{r.get('tok_median', np.nan):>9.3g}"
                     f"{r['gen_median']:>9.3g}{r['w1']:>9.3g}{r['kl']:>8.3f}"
                     f"{r.get('kl_floor', np.nan):>8.3f}")
    sd = fid.get("msoftdrop")
    if sd:
        lines.append(f"soft-drop mass in {TOP_WINDOW[0]:.0f}-{TOP_WINDOW[1]:.0f} GeV: reference "
                     f"{sd['ref_window']:.0%}, tokenized {sd.get('tok_window', np.nan):.0%}, "
                     f"generated {sd['gen_window']:.0%}")
    return lines


def held_out_sets(ref_jets: Jets, floor_jets: Jets, model) -> dict[str, dict[str, np.ndarray]]:
    """What generated jets are compared with (:func:`fidelity`): the observables of the held-out
    jets ``ref_jets`` in the generator's frame (``raw``) and through ``model``'s tokenizer and
    back (``tokenized``), and of ``floor_jets`` (other jets of the target, as many as generated)
    through it (``floor``)."""
    from jetfm.evaluate.scan import frame_and_tokenized, reference_sets

    sets = {k: fidelity_observables(j, obs) for k, (j, obs) in
            reference_sets(ref_jets, model).items()}
    sets["floor"] = fidelity_observables(frame_and_tokenized(floor_jets, model)[1])
    return sets


# ------------------------------------------------------------------------- in a D-scan
def reference_arrays(refs: Mapping[str, tuple], floor_jets: Jets, model) -> dict[str, np.ndarray]:
    """What the D-scan stores for the fidelity check beside its reference observables: the
    soft-drop masses of the raw and tokenized held-out jets (``fid_raw_msoftdrop``,
    ``fid_tokenized_msoftdrop``) and the observables of ``floor_jets`` (training-pool jets, as
    many as a cell generates) through the tokenizer and back (``floor_<observable>``)."""
    from jetfm.evaluate.scan import frame_and_tokenized
    from jetfm.physics.observables import softdrop_mass

    out = {f"fid_{r}_msoftdrop": softdrop_mass(jets) for r, (jets, _) in refs.items()}
    tok = frame_and_tokenized(floor_jets, model)[1]
    out.update({f"floor_{k}": v for k, v in fidelity_observables(tok).items()})
    return out


def scan_fidelity(scan_dir: str, target: str, arm: str = "pretrained",
                  d: int | None = None) -> dict | None:
    """The fidelity of one arm of a D-scan at size ``d`` (default: the largest), its seeds'
    generated jets pooled: ``{"D", "seeds", "fidelity", "targets", "observables"}``, or None
    when the scan folder lacks the arrays (a scan of an older version)."""
    import glob
    import os

    ref_file = os.path.join(scan_dir, "reference", f"{target}.npz")
    if not os.path.exists(ref_file):
        return None
    z = np.load(ref_file)
    if "fid_raw_msoftdrop" not in z.files:
        return None
    sets = {}
    for name in ("raw", "tokenized", "floor"):
        pre = "floor_" if name == "floor" else f"{name}_"
        sets[name] = {k[len(pre):]: z[k] for k in z.files if k.startswith(pre)}
    for name in ("raw", "tokenized"):
        sets[name]["msoftdrop"] = z[f"fid_{name}_msoftdrop"]
    cells = sorted(glob.glob(os.path.join(scan_dir, "cells", target, f"D*_seed*_{arm}.npz")))
    sizes = sorted({int(os.path.basename(c)[1:].split("_")[0]) for c in cells})
    if not sizes:
        return None
    d = sizes[-1] if d is None else d
    parts = [np.load(c) for c in cells if os.path.basename(c).startswith(f"D{d}_seed")]
    if not parts or any("msoftdrop" not in p.files for p in parts):
        return None
    gen = {k: np.concatenate([p[k] for p in parts]) for k in FIDELITY_OBSERVABLES}
    fid = fidelity(sets["raw"], gen, sets["tokenized"], sets["floor"])
    return {"D": d, "seeds": len(parts), "fidelity": fid, "targets": check_targets(fid),
            "observables": {"reference": sets["raw"], "tokenized": sets["tokenized"],
                            "generated": gen}}


OBS_AXIS = {"msoftdrop": "soft-drop mass [GeV]", "mass": "jet mass [GeV]", "tau21": r"$\tau_{21}$",
            "tau32": r"$\tau_{32}$", "d2": "$D_2$", "n_constituents": "constituents"}


def figure_fidelity(target: str, res: Mapping, path: str) -> str:
    """Histograms of the six observables: held-out reference jets, the same through the
    tokenizer, and generated jets (temperature 1)."""
    from jetfm.report.figures import pyplot, save_figure

    plt = pyplot()
    obs = res["observables"]
    fig, axes = plt.subplots(1, len(FIDELITY_OBSERVABLES), figsize=(4.2 * 6, 3.8))
    style = {"reference": dict(histtype="stepfilled", color="#bbbbbb", label="reference"),
             "tokenized": dict(histtype="step", color="#5f5f5f", ls="--", lw=1.5,
                               label="reference through the tokenizer"),
             "generated": dict(histtype="step", color="#e42536", lw=2,
                               label=f"generated (fine-tuned, D = {res['D']})")}
    for ax, name in zip(axes, FIDELITY_OBSERVABLES):
        ref = obs["reference"][name]
        lo, hi = np.quantile(ref, [0.002, 0.998])
        if name == "n_constituents":
            bins = np.arange(np.floor(lo) - 0.5, np.ceil(hi) + 1.5, max(1, round((hi - lo) / 40)))
        else:
            span = hi - lo
            bins = np.linspace(lo - 0.1 * span, hi + 0.1 * span, 41)
        for key, st in style.items():
            ax.hist(np.clip(obs[key][name], bins[0], bins[-1]), bins, density=True, **st)
        if name == "msoftdrop":
            for edge in TOP_WINDOW:
                ax.axvline(edge, color="k", lw=0.8, ls=":")
        ax.set_xlabel(OBS_AXIS[name], fontsize=12)
    axes[0].set_ylabel("density", fontsize=12)
    axes[0].legend(fontsize=8, loc="upper left")
    fig.suptitle(f"{target}: generated and held-out jets at temperature 1", fontsize=14)
    fig.tight_layout()
    return save_figure(fig, path, dpi=60)


def fidelity_section(scan_dir: str, fig_dir: str, targets: list[str] | None = None):
    """The fidelity check of a D-scan as a report section: per target, the fine-tuned arm at
    the largest D against the held-out jets (verdict line, histograms, table); None when the
    scan holds none of it."""
    import os

    from jetfm.report.document import Figure, Paragraph, Report, Table

    ref_dir = os.path.join(scan_dir, "reference")
    if targets is None and not os.path.isdir(ref_dir):
        return None
    targets = targets or sorted(os.listdir(ref_dir))
    rep = Report("Generation fidelity (temperature 1)")
    for t in targets:
        t = t.removesuffix(".npz")
        res = scan_fidelity(scan_dir, t)
        if res is None:
            continue
        tg = res["targets"]
        met = [k for k, v in tg.items() if v["met"]]
        missed = [f"{k} {v['value']:.3g} (limit {v['limit']:g})" for k, v in tg.items()
                  if not v["met"]]
        fid = res["fidelity"]
        sd = fid.get("msoftdrop", {})
        rep.verdict.append(
            f"**{t}, fine-tuned arm at D = {res['D']}** ({res['seeds']} seeds pooled, "
            f"temperature 1): jet-mass median {fid['mass']['gen_median']:.0f} GeV against "
            f"{fid['mass']['ref_median']:.0f} GeV, tau32 median {fid['tau32']['gen_median']:.2f} "
            f"against {fid['tau32']['ref_median']:.2f}, soft-drop mass in 150-190 GeV "
            f"{sd.get('gen_window', float('nan')):.0%} against {sd.get('ref_window', 0):.0%} "
            f"({sd.get('tok_window', float('nan')):.0%} through the tokenizer). Targets met: "
            f"{len(met)} of {len(tg)}" + (f"; missed: {', '.join(missed)}." if missed else "."))
        path = figure_fidelity(t, res, os.path.join(fig_dir, f"{t}_fidelity.png"))
        rep.figures.append(Figure(path, f"{t}: the six observables of the fidelity check, "
                                        "generated against held-out jets (dotted: 150-190 GeV)"))
        rows = [[name, f"{r['ref_median']:.3g}", f"{r.get('tok_median', float('nan')):.3g}",
                 f"{r['gen_median']:.3g}", f"{r['w1']:.3g}", f"{r['kl']:.3f}",
                 f"{r.get('kl_floor', float('nan')):.3f}"] for name, r in fid.items()]
        rep.details.append(Table(
            f"{t}: medians, W1 and KL(reference || generated), fine-tuned arm at D = {res['D']}",
            ["observable", "reference median", "tokenized median", "generated median", "W1",
             "KL", "KL floor"], rows))
    if not rep.verdict:
        return None
    rep.details.append(Paragraph(
        "The KL floor is the KL between the reference and training jets of the same kind passed "
        "through the tokenizer and back, as many as generated: what a generator that learned "
        "its training jets perfectly would still show (the tokenizer's loss and the sample "
        "sizes' noise). Targets: jet-mass median within 8 %, tau32 median within 0.08, KL of "
        "mass, tau21, tau32, D2 and multiplicity at most twice the floor."))
    return rep
