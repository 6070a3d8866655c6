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

from typing import Mapping

import numpy as np

from jetfm.jets import Jets

FIDELITY_OBSERVABLES = ("msoftdrop", "mass", "tau21", "tau32", "d2", "n_constituents")
#: the top-quark window of the soft-drop mass (GeV)
TOP_WINDOW = (150.0, 190.0)
#: observables whose KL must stay within ``kl_floor_factor`` times the tokenizer floor
KL_CHECKED = ("mass", "tau21", "tau32", "d2", "n_constituents")


def fidelity_observables(jets: Jets) -> dict[str, np.ndarray]:
    """The observables of :data:`FIDELITY_OBSERVABLES` (and the scan's) of ``jets``."""
    from jetfm.evaluate.scan import experiment_observables
    from jetfm.physics.observables import softdrop_mass

    out = experiment_observables(jets)
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
