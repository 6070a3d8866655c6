"""Figures of merit of a jet tagger, and the physicist's classic baseline.

- :func:`binary_metrics`: ROC AUC and background rejection ``1 / eps_B`` at signal efficiencies
  ``eps_S`` (0.3 and 0.5 by default), from scikit-learn's ``roc_curve`` / ``roc_auc_score``, with
  bootstrap errors (jets resampled with replacement, seeded);
- :func:`classification_metrics`: accuracy (all classes) plus :func:`binary_metrics` of the
  signal against the background class on the score ``p_S / (p_S + p_B)``;
- :func:`hlf_baseline`: scikit-learn's ``HistGradientBoostingClassifier`` on the high-level
  observables of :data:`HLF_OBSERVABLES` (jet mass, soft-drop mass, tau21, tau32, D2,
  multiplicity; :mod:`jetfm.physics.observables`).

Rejection at ``eps_S`` is read off the ROC curve by linear interpolation of eps_B in eps_S.
Where no background jet passes (eps_B = 0, a test set too small for the tagger), the rejection is
reported as the number of background jets, marked as a lower bound (``rejection_<e>_bound``).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from jetfm.errors import InputError

#: the observables of the high-level baseline
HLF_OBSERVABLES = ("mass", "msoftdrop", "tau21", "tau32", "d2", "n_constituents")
EFFICIENCIES = (0.3, 0.5)


def _eff_key(eps: float) -> str:
    return f"{int(round(eps * 100))}"


def roc(y_signal: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(eps_S, eps_B) of the ROC curve (scikit-learn's ``roc_curve``: tpr, fpr)."""
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(np.asarray(y_signal, bool), np.asarray(score, np.float64))
    return tpr, fpr


def _rejection(tpr: np.ndarray, fpr: np.ndarray, n_bkg: int, eps_s: float
               ) -> tuple[float, bool]:
    eps_b = float(np.interp(eps_s, tpr, fpr))
    if eps_b <= 0:
        return float(n_bkg), True
    return 1.0 / eps_b, False


def rejection_at(y_signal: np.ndarray, score: np.ndarray, eps_s: float) -> tuple[float, bool]:
    """(1 / eps_B at signal efficiency eps_s, whether it is only a lower bound)."""
    tpr, fpr = roc(y_signal, score)
    return _rejection(tpr, fpr, int((~np.asarray(y_signal, bool)).sum()), eps_s)


def _point(y: np.ndarray, s: np.ndarray, effs: Sequence[float]) -> dict[str, float]:
    from sklearn.metrics import roc_auc_score

    out = {"auc": float(roc_auc_score(y, s))}
    tpr, fpr = roc(y, s)  # one curve for every efficiency (this runs per bootstrap sample)
    for e in effs:
        r, bound = _rejection(tpr, fpr, int((~y).sum()), e)
        out[f"rejection_{_eff_key(e)}"] = r
        out[f"rejection_{_eff_key(e)}_bound"] = bound
    return out


def binary_metrics(y_signal: np.ndarray, score: np.ndarray,
                   efficiencies: Sequence[float] = EFFICIENCIES, n_bootstrap: int = 100,
                   seed: int = 0) -> dict:
    """AUC and rejections of a signal-vs-background score, with bootstrap standard deviations
    (``<name>_err``) over ``n_bootstrap`` seeded resamplings of the jets (0: no errors)."""
    y = np.asarray(y_signal, bool)
    s = np.asarray(score, np.float64)
    if y.shape != s.shape or y.ndim != 1:
        raise InputError(f"labels {y.shape} and scores {s.shape} must be 1-D of equal length")
    if y.all() or not y.any():
        raise InputError("a ROC curve needs signal and background jets; one class is missing")
    if not np.isfinite(s).all():
        raise InputError("scores hold NaN or infinite values")
    out: dict = {**_point(y, s, efficiencies), "n_signal": int(y.sum()),
                 "n_background": int((~y).sum())}
    if n_bootstrap > 0:
        rng = np.random.default_rng([int(seed), 5779])
        boots: dict[str, list[float]] = {}
        for _ in range(n_bootstrap):
            i = rng.integers(0, len(y), len(y))
            if y[i].all() or not y[i].any():
                continue
            for k, v in _point(y[i], s[i], efficiencies).items():
                if not k.endswith("_bound"):
                    boots.setdefault(k, []).append(v)
        for k, vals in boots.items():
            out[f"{k}_err"] = float(np.std(vals, ddof=1)) if len(vals) > 1 else float("nan")
    return out


def signal_score(proba: np.ndarray, signal: int, background: int) -> np.ndarray:
    """``p_S / (p_S + p_B)``: the likelihood-ratio score of two classes of a multi-class
    output (for two classes, ``p_S``)."""
    p = np.asarray(proba, np.float64)
    den = p[:, signal] + p[:, background]
    return np.divide(p[:, signal], den, out=np.full(len(p), 0.5), where=den > 0)


def pick_signal_background(names: Sequence[str], signal: str | None = None,
                           background: str | None = None) -> tuple[int, int]:
    """Indices of the signal and background classes: the names given, else background ``QCD``
    (or the first class) and signal the first other class."""
    names = list(names)
    for n in (signal, background):
        if n is not None and n not in names:
            raise InputError(f"class '{n}' is not one of the model's classes {names}")
    b = names.index(background) if background else (names.index("QCD") if "QCD" in names
                                                    else 0)
    s = names.index(signal) if signal else next(i for i in range(len(names)) if i != b)
    if s == b:
        raise InputError(f"signal and background are the same class '{names[s]}'")
    return s, b


def classification_metrics(proba: np.ndarray, labels: np.ndarray, names: Sequence[str],
                           signal: str | None = None, background: str | None = None,
                           n_bootstrap: int = 100, seed: int = 0) -> dict:
    """Accuracy over every class, and :func:`binary_metrics` of signal vs background (jets of
    those two classes only)."""
    proba = np.asarray(proba, np.float64)
    labels = np.asarray(labels, np.int64)
    if len(proba) != len(labels) or len(labels) == 0:
        raise InputError(f"{len(proba)} scores for {len(labels)} labelled jets")
    s, b = pick_signal_background(names, signal, background)
    sel = (labels == s) | (labels == b)
    out = {"accuracy": float((proba.argmax(1) == labels).mean()), "n_jets": int(len(labels)),
           "classes": list(names), "signal": names[s], "background": names[b],
           "counts": {n: int((labels == i).sum()) for i, n in enumerate(names)}}
    out.update(binary_metrics(labels[sel] == s, signal_score(proba[sel], s, b),
                              n_bootstrap=n_bootstrap, seed=seed))
    return out


# --------------------------------------------------------------------------- baseline
def hlf_features(jets) -> np.ndarray:
    """High-level observables (N, 6) float64 of :data:`HLF_OBSERVABLES` from the constituents."""
    from jetfm.physics import observables as po

    kin = po.jet_kinematics(jets)
    tau21, tau32 = po.tau_ratios(po.nsubjettiness(jets, n_max=3))
    cols = {"mass": kin["mass"], "msoftdrop": po.softdrop_mass(jets), "tau21": tau21,
            "tau32": tau32, "d2": po.d2(jets), "n_constituents": jets.n_constituents}
    return np.stack([np.asarray(cols[k], np.float64) for k in HLF_OBSERVABLES], axis=1)


def hlf_baseline(x_train: np.ndarray, y_train: np.ndarray, seed: int = 0):
    """A fitted ``HistGradientBoostingClassifier`` (early stopping on an internal 20 %
    validation split where the set is large enough, seeded)."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    n = len(y_train)
    clf = HistGradientBoostingClassifier(
        max_iter=200, learning_rate=0.1, early_stopping=n >= 100, validation_fraction=0.2,
        n_iter_no_change=10, min_samples_leaf=max(2, min(20, n // 10)),
        random_state=int(seed) % (2 ** 32))
    return clf.fit(np.asarray(x_train, np.float64), np.asarray(y_train))


# --------------------------------------------------------------------------- commands
def _test_data(model, data, classes, only, others, max_jets):
    """Labelled sequences whose labels index the model's classes."""
    from jetfm.omnijet.classification import labelled_sequences

    lab = labelled_sequences(model, data, classes, only, others, max_jets)
    unknown = [n for n in lab.names if n not in model.classes]
    if unknown:
        raise InputError(f"the data hold class(es) {unknown} the model does not know "
                         f"(its classes: {model.classes}); use --only/--others to map them")
    remap = np.array([model.classes.index(n) for n in lab.names], np.int64)
    return lab.seqs, remap[lab.labels], lab


def evaluate_classifier(model_dir: str, out: str, data: Sequence[str] = (),
                        classes: dict | None = None, only: Sequence[str] | None = None,
                        others: str | None = None, signal: str | None = None,
                        background: str | None = None, max_jets: int | None = None,
                        seed: int = 0, n_bootstrap: int = 100) -> dict:
    """Score labelled files with a classifier and write ``out/metrics.json``, ``out/roc.png``
    and ``out/report.md`` / ``report.html``; returns the metrics."""
    import json
    import os

    from jetfm.evaluate.plots import figure_roc
    from jetfm.io.output import write_text_atomic
    from jetfm.omnijet.classification import predict_proba, require_classifier
    from jetfm.omnijet.model import load_pretrained
    from jetfm.report import Figure, Paragraph, Report, Table

    model = require_classifier(load_pretrained(model_dir), model_dir)
    seqs, labels, lab = _test_data(model, data, classes, only, others, max_jets)
    proba = predict_proba(model, seqs)
    m = classification_metrics(proba, labels, model.classes, signal, background, n_bootstrap,
                               seed)
    m.update(model=os.path.abspath(model_dir), data=lab.provenance, seed=seed,
             n_bootstrap=n_bootstrap)
    os.makedirs(out, exist_ok=True)
    s, b = model.classes.index(m["signal"]), model.classes.index(m["background"])
    sel = (labels == s) | (labels == b)
    tpr, fpr = roc(labels[sel] == s, signal_score(proba[sel], s, b))
    roc_png = figure_roc({f"{m['signal']} vs {m['background']} (AUC {m['auc']:.3f})":
                          (tpr, fpr)}, os.path.join(out, "roc.png"),
                         title=os.path.basename(os.path.abspath(model_dir)))
    write_text_atomic(os.path.join(out, "metrics.json"), json.dumps(m, indent=1))
    rows = [["accuracy", f"{m['accuracy']:.4f}", ""],
            ["ROC AUC", f"{m['auc']:.4f}", f"{m.get('auc_err', float('nan')):.4f}"]]
    rejections = []
    for e in EFFICIENCIES:
        k = f"rejection_{_eff_key(e)}"
        rows.append([f"rejection 1/eps_B at eps_S = {e:g}",
                     ("> " if m[k + "_bound"] else "") + f"{m[k]:.4g}",
                     f"{m.get(k + '_err', float('nan')):.3g}"])
        rejections.append(f"{rows[-1][1]} at eps_S = {e:g}")
    verdict = (f"**{m['signal']} against {m['background']}:** ROC AUC {m['auc']:.4f} ± "
               f"{m.get('auc_err', float('nan')):.4f}, background rejection 1/eps_B "
               + ", ".join(rejections) + f", accuracy {m['accuracy']:.4f} on {m['n_jets']} "
               "labelled jets.")
    Report("jetfm classify evaluate", [verdict],
           [Figure(roc_png, "background rejection against signal efficiency")],
           [Paragraph(f"Model `{model_dir}` (classes {', '.join(model.classes)}) on "
                      f"{m['n_jets']} labelled jets ("
                      + ", ".join(f"{k} {v}" for k, v in m["counts"].items())
                      + f"). Signal `{m['signal']}` against background `{m['background']}` "
                      f"on the score p_S / (p_S + p_B); errors: standard deviation over "
                      f"{n_bootstrap} bootstrap resamplings of the jets (seed {seed})."),
            Table("Metrics", ["metric", "value", "bootstrap error"], rows)]).write(out)
    return m


def predict_file(model_dir: str, path: str, output: str, max_jets: int | None = None) -> int:
    """Write one row per jet of ``path``: ``jet_index`` and ``p_<class>`` per class (Parquet, or
    CSV for a ``.csv`` name); returns the number of jets."""
    import pandas as pd

    from jetfm.io.output import atomic_output
    from jetfm.omnijet.classification import file_sequences, predict_proba, require_classifier
    from jetfm.omnijet.model import load_pretrained

    model = require_classifier(load_pretrained(model_dir), model_dir)
    seqs, _ = file_sequences(model, path, max_jets)
    proba = predict_proba(model, seqs)
    df = pd.DataFrame({"jet_index": np.arange(len(proba), dtype=np.int64),
                       **{f"p_{c}": proba[:, i] for i, c in enumerate(model.classes)}})
    with atomic_output(output) as tmp:
        if output.endswith(".csv"):
            df.to_csv(tmp, index=False)
        else:
            df.to_parquet(tmp, index=False)
    return len(df)


__all__ = ["binary_metrics", "classification_metrics", "rejection_at", "roc", "signal_score",
           "pick_signal_background", "hlf_features", "hlf_baseline", "HLF_OBSERVABLES",
           "EFFICIENCIES", "evaluate_classifier", "predict_file"]
