"""The classification D-scan: does generative pre-training help a tagger when labels are few?

For every number of labelled jets D and seed:

1. D jets are drawn from the training pools, D / n_classes per class (a seeded draw per class,
   the same jets for every arm and the baseline);
2. each arm of :data:`jetfm.omnijet.classification.ARMS` trains a classifier on them (early
   stopping on a fixed held-out fifth of the D jets);
3. the baseline, a gradient-boosted decision tree on the high-level observables
   (:func:`jetfm.evaluate.classification.hlf_baseline`), trains on the same jets; so does the
   same tree on the observables of the jets as the tokenizer gives them back (encoded and
   decoded): the information the transformer arms see, so the two trees tell how much of a
   gap to the baseline is the tokenizer's resolution and how much the learner's;
4. every classifier scores the fixed held-out test set (``n_test`` jets per class, never trained
   on): ROC AUC, background rejection at eps_S = 0.3 and 0.5, accuracy.

The test jets of a class file are the held-out reference of the generation scan with the same
seed and ``n_reference = n_test`` (:func:`jetfm.evaluate.scan.split_target`).

Result rows are the generation scan's long rows (``target`` = ``"<signal>_vs_<background>"``,
``arm`` (or ``hlf_bdt``, ``hlf_bdt_tokenized``), ``reference`` = ``"test"``,
``observable`` = ``"tagger"``, ``metric``, ``D``, ``seed``, ``value``, ``error``) with metrics
``auc``, ``rejection_30``, ``rejection_50``, ``accuracy`` and, for the power-law fits
``metric = a D^-gamma``, ``auc_deficit`` (1 - AUC) and ``inv_rejection_30`` (eps_B at
eps_S = 0.3).

Layout of the output folder: ``config.yaml``, ``cells/D<D>_seed<s>_<arm>.json`` (one per cell,
written last, so a finished cell is skipped on a rerun), ``models/`` (training runs, deleted after
scoring unless ``keep_models``), ``results.json``, ``results.csv``, ``figures/``, ``report.md``,
``report.html``.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from jetfm.errors import InputError
from jetfm.report import Figure, Paragraph, Report, Table

BASELINE = "hlf_bdt"
#: the same tree on the observables of the jets through the tokenizer and back
BASELINE_TOKENIZED = "hlf_bdt_tokenized"
METRICS = ("auc", "rejection_30", "rejection_50", "accuracy")
FIT_METRICS = ("auc_deficit", "inv_rejection_30")


@dataclass
class ClassifyScanConfig:
    """Settings of a classification D-scan (see the module docstring)."""
    #: labelled training jets D (all classes together)
    sizes: list[int] = field(default_factory=lambda: [100, 1000, 10_000])
    seeds: int = 3
    #: held-out test jets per class
    n_test: int = 2000
    arms: list[str] = field(default_factory=lambda: ["pretrained", "frozen", "scratch"])
    #: the gradient-boosted tree on high-level observables beside the arms
    baseline: bool = True
    #: the signal class (None: the second class given; the first is the background)
    signal: str | None = None
    #: training preset (its classifier and classification sections) and dotted overrides
    preset: str = "small"
    overrides: list[str] = field(default_factory=list)
    #: at least this many optimiser steps per training (more epochs at small D; early stopping
    #: still applies); 0: the preset's epochs
    min_steps: int = 0
    seed: int = 0
    keep_models: bool = False

    def validate(self) -> None:
        """Called where the config is loaded (:func:`jetfm.config.validate`)."""
        from jetfm.config import ConfigValueError, check_range
        from jetfm.omnijet.classification import ARMS

        if not self.sizes or any(isinstance(d, bool) or not isinstance(d, int) or d < 4
                                 for d in self.sizes):
            raise ConfigValueError("sizes", f"must be integers >= 4, got {self.sizes}")
        check_range(self, "seeds", 1)
        check_range(self, "n_test", 10)
        check_range(self, "min_steps", 0)
        bad = [a for a in self.arms if a not in ARMS]
        if bad or not (self.arms or self.baseline):
            raise ConfigValueError("arms", f"must be among {', '.join(ARMS)} (got {self.arms})")


def draw_labelled(pools: Sequence[np.ndarray], d: int, scan_seed: int, seed: int
                  ) -> list[np.ndarray]:
    """The training jets of one (D, seed) cell: ``d // n_classes`` indices from each class's
    pool (the remainder to the first classes), a seeded draw without replacement per class."""
    k = len(pools)
    out = []
    for ci, pool in enumerate(pools):
        n = d // k + (1 if ci < d % k else 0)
        rng = np.random.default_rng([scan_seed, d, seed, ci, 15485863])
        out.append(np.sort(rng.choice(pool, size=n, replace=False)))
    return out


def _cell_rows(metrics: dict, arm: str, d: int, seed: int, target: str) -> list[dict]:
    vals = {m: metrics[m] for m in METRICS}
    # 1 where no background jet of the test set passed: the rejection is only a lower bound
    for m in ("rejection_30", "rejection_50"):
        vals[m + "_bound"] = float(metrics[m + "_bound"])
    vals["auc_deficit"] = 1.0 - metrics["auc"]
    vals["inv_rejection_30"] = 1.0 / metrics["rejection_30"]
    return [dict(target=target, arm=arm, reference="test", observable="tagger", metric=m,
                 D=d, seed=seed, value=float(v), error=0.0) for m, v in vals.items()]


def _score(proba: np.ndarray, labels: np.ndarray, names: list[str], signal: int,
           background: int) -> dict:
    from jetfm.evaluate.classification import classification_metrics

    return classification_metrics(proba, labels, names, names[signal], names[background],
                                  n_bootstrap=0)


def run_classify_scan(pretrained: str, classes: Mapping[str, str], out: str,
                      cfg: ClassifyScanConfig | None = None, progress: bool = True) -> str:
    """Run (or resume) the classification scan; returns the path of ``results.json``.

    ``classes``: ``{class name: file}``, one AOJ or JetClass file per class (at least two); the
    first is the background unless ``cfg.signal`` names another order.
    """
    from tqdm.auto import tqdm

    from jetfm.config import save_config, validate
    from jetfm.evaluate.classification import hlf_baseline, hlf_features
    from jetfm.evaluate.scan import split_target
    from jetfm.io import read_jets
    from jetfm.omnijet.classification import (
        LabelledData,
        pad_sequences,
        predict_proba,
        train_classifier,
    )
    from jetfm.omnijet.model import load_pretrained
    from jetfm.seeding import derive_seed

    cfg = cfg or ClassifyScanConfig()
    validate(cfg, "classification.")  # also a config built in code, not loaded
    names = list(classes)
    if len(names) < 2:
        raise InputError("the classification scan needs at least two classes (--class "
                         "NAME=FILE for each)")
    if cfg.signal is not None and cfg.signal not in names:
        raise InputError(f"signal class '{cfg.signal}' is not one of {names}")
    background = 0 if cfg.signal != names[0] else 1
    signal = names.index(cfg.signal) if cfg.signal else 1
    target = f"{names[signal]}_vs_{names[background]}"
    model = load_pretrained(pretrained)
    if model.backbone is None and any(a != "scratch" for a in cfg.arms):
        raise InputError("model has no pre-trained backbone (a tokenizer only?)", pretrained)
    sizes = sorted({int(d) for d in cfg.sizes})
    os.makedirs(out, exist_ok=True)
    save_config(cfg, out)
    # every class: all jets tokenized once, the held-out test part, the training pool
    seqs, hlf, hlf_tok, test_idx, pools = [], [], [], [], []
    for name in names:
        path = classes[name]
        jets = read_jets(path)
        per_class = max(sizes) // len(names) + 1
        if len(jets) < cfg.n_test + per_class:
            raise InputError(f"class '{name}' has {len(jets)} jets; the scan needs n_test "
                             f"{cfg.n_test} + {per_class} for the largest D {max(sizes)}", path)
        feats, mask = model.preprocessing.forward(jets)
        codes = model.tokenizer.encode_arrays(feats, mask)
        seqs.append(model.tokenizer.sequences(codes, mask))
        hlf.append(hlf_features(jets) if cfg.baseline else None)
        hlf_tok.append(hlf_features(model.preprocessing.inverse(
            model.tokenizer.decode_arrays(codes, mask), mask)) if cfg.baseline else None)
        t, p = split_target(len(jets), cfg.n_test, cfg.seed)
        test_idx.append(t)
        pools.append(p)
    seqs = pad_sequences(seqs)
    test_seqs = np.concatenate([s[t] for s, t in zip(seqs, test_idx)])
    test_labels = np.concatenate([np.full(len(t), ci, np.int64) for ci, t in enumerate(test_idx)])
    features = {BASELINE: hlf, BASELINE_TOKENIZED: hlf_tok}
    test_hlf = {k: np.concatenate([h[t] for h, t in zip(v, test_idx)]) if cfg.baseline else None
                for k, v in features.items()}

    cell_dir = os.path.join(out, "cells")
    os.makedirs(cell_dir, exist_ok=True)
    arms = list(cfg.arms) + ([BASELINE, BASELINE_TOKENIZED] if cfg.baseline else [])
    cells = [(d, s, arm) for d in sizes for s in range(cfg.seeds) for arm in arms]
    rows: list[dict] = []
    timing: dict[str, float] = {}
    bar = tqdm(total=len(cells), desc="classification cells", disable=not progress, unit="cell")
    for d, s, arm in cells:
        res_file = os.path.join(cell_dir, f"D{d}_seed{s}_{arm}.json")
        if os.path.exists(res_file):
            with open(res_file) as fh:
                rows += json.load(fh)["rows"]
            bar.update(1)
            continue
        bar.set_postfix_str(f"D={d} seed={s} {arm}")
        picks = draw_labelled(pools, d, cfg.seed, s)
        labels = np.concatenate([np.full(len(p), ci, np.int64) for ci, p in enumerate(picks)])
        t0 = time.perf_counter()
        if arm in features:
            bdt = hlf_baseline(np.concatenate([h[p] for h, p in zip(features[arm], picks)]),
                               labels, seed=derive_seed(cfg.seed, d, s))
            proba = bdt.predict_proba(test_hlf[arm])
            info: dict = {"iterations": int(bdt.n_iter_)}
        else:
            data = LabelledData(np.concatenate([q[p] for q, p in zip(seqs, picks)]), labels,
                                names, {"n_jets": int(len(labels)), "D": d, "seed": s})
            run_dir = os.path.join(out, "models", f"D{d}_seed{s}_{arm}")
            m = train_classifier(model, data, run_dir, arm, cfg.preset, list(cfg.overrides),
                                 seed=derive_seed(cfg.seed, d, s), progress=False,
                                 min_steps=cfg.min_steps)
            proba = predict_proba(m, test_seqs)
            st = m.provenance["classification"]
            info = {"epochs": st["epochs"], "steps": st["steps"],
                    "best_val_loss": st["best_val_loss"]}
            if not cfg.keep_models:
                shutil.rmtree(run_dir, ignore_errors=True)
        seconds = time.perf_counter() - t0
        cell_rows = _cell_rows(_score(proba, test_labels, names, signal, background), arm, d, s,
                               target)
        _write_json(res_file, {"rows": cell_rows, "training": info, "seconds": seconds})
        timing[arm] = timing.get(arm, 0.0) + seconds
        rows += cell_rows
        bar.update(1)
    bar.close()
    return write_classify_results(out, rows, cfg, classes, pretrained, target, timing)


def _write_json(path: str, obj) -> None:
    from jetfm.io.output import write_text_atomic

    write_text_atomic(path, json.dumps(obj, indent=1, default=float))


def write_classify_results(out: str, rows: list[dict], cfg: ClassifyScanConfig,
                           classes: Mapping[str, str], pretrained: str, target: str,
                           timing: dict | None = None) -> str:
    """results.csv (long rows) and results.json (config, rows, seed summaries, fits)."""
    import pandas as pd

    from jetfm.evaluate.fits import aggregate, fit_results
    from jetfm.io.output import atomic_output

    with atomic_output(os.path.join(out, "results.csv")) as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False)
    path = os.path.join(out, "results.json")
    _write_json(path, {"config": dataclasses.asdict(cfg), "classes": dict(classes),
                       "target": target, "pretrained": os.path.abspath(pretrained),
                       "seconds_this_run": timing or {}, "rows": rows,
                       "summary": aggregate(rows),
                       "fits": fit_results([r for r in rows if r["metric"] in FIT_METRICS])})
    return path


def load_classify_results(path: str) -> dict:
    if os.path.isdir(path):
        path = os.path.join(path, "results.json")
    if not os.path.exists(path):
        raise InputError("no results.json (run `jetfm classify scan` first)", path)
    with open(path) as fh:
        data = json.load(fh)
    if not isinstance(data, dict) or "summary" not in data or "target" not in data:
        raise InputError("not a classification scan results.json", path)
    return data


# --------------------------------------------------------------------------- report
def _sel(summary, arm: str, metric: str, d: int) -> dict | None:
    return next((s for s in summary if s["arm"] == arm and s["metric"] == metric
                 and s["D"] == d), None)


def _rej(summary, arm: str, d: int, eff: str = "30") -> str:
    """Seed-mean rejection, marked as a lower bound where a seed's test set had no background
    jet left at that signal efficiency."""
    r = _sel(summary, arm, f"rejection_{eff}", d)
    b = _sel(summary, arm, f"rejection_{eff}_bound", d)
    return ("≥ " if b is not None and b["max"] > 0 else "") + f"{r['mean']:.3g}"


def classify_verdict(res: dict) -> list[str]:
    """Verdict sentences from the numbers: pre-trained vs from scratch at the smallest D (beyond
    the seed spread or not), and pre-trained vs the high-level baseline at the largest D."""
    summary = res["summary"]
    sizes = sorted({s["D"] for s in summary})
    arms = {s["arm"] for s in summary}
    out = []
    if {"pretrained", "scratch"} <= arms:
        d = sizes[0]
        p, q = _sel(summary, "pretrained", "auc", d), _sel(summary, "scratch", "auc", d)
        spread = math.hypot(p["std"], q["std"])
        diff = p["mean"] - q["mean"]
        word = ("beats" if diff > spread else "falls below" if -diff > spread
                else "is level with")
        out.append(f"**Classification ({res['target']}):** at the smallest D = {d} the "
                   f"fine-tuned pre-trained tagger {word} the one trained from scratch: AUC "
                   f"{p['mean']:.3f} ± {p['std']:.3f} against {q['mean']:.3f} ± {q['std']:.3f} "
                   f"(difference {diff:+.3f}, seed spread {spread:.3f}).")
    if "pretrained" in arms and BASELINE in arms:
        d = sizes[-1]
        p, b = _sel(summary, "pretrained", "auc", d), _sel(summary, BASELINE, "auc", d)
        word = "at least as good as" if p["mean"] >= b["mean"] else "below"
        line = (f"At the largest D = {d} the fine-tuned tagger is {word} the BDT on "
                f"high-level observables: AUC {p['mean']:.3f} against {b['mean']:.3f}, "
                f"rejection at 30 % signal efficiency {_rej(summary, 'pretrained', d)} against "
                f"{_rej(summary, BASELINE, d)}.")
        t = _sel(summary, BASELINE_TOKENIZED, "auc", d)
        if t is not None:
            line += (f" The same BDT on the observables of the tokenized jets (what the "
                     f"transformer sees) reaches AUC {t['mean']:.3f}.")
        out.append(line)
    return out


def classify_section(res: dict, figure: str | None) -> Report:
    """The report of a classification scan as a section of a bigger report: the verdict, the
    figure, the table of seed means and spreads per D and tagger."""
    from jetfm.evaluate.plots import CLASSIFY_STYLE

    summary = res["summary"]
    cfg = res["config"]
    rep = Report(f"Classification: {res['target']}", verdict=classify_verdict(res))
    if figure:
        rep.figures.append(Figure(figure, "AUC and background rejection at 30 % signal "
                                          "efficiency against D (bands: seed min-max)"))
    rep.details.append(Paragraph(
        f"Taggers trained on D labelled jets (D / {len(res['classes'])} per class; "
        f"{cfg['seeds']} seeds, each its own subset) and scored on {cfg['n_test']} held-out jets "
        f"per class; preset `{cfg['preset']}`. Arms: fine-tuned from the pre-trained backbone, "
        "frozen backbone with a trained head, the same architecture from scratch, and a "
        "gradient-boosted tree on jet mass, soft-drop mass, tau21, tau32, D2 and multiplicity."))
    header = ["D", "tagger", "AUC", "rejection at eps_S 0.3", "rejection at eps_S 0.5",
              "accuracy"]
    table = []
    for d in sorted({s["D"] for s in summary}):
        for arm, style in CLASSIFY_STYLE.items():
            cells = [_sel(summary, arm, m, d) for m in METRICS]
            if cells[0] is None:
                continue
            table.append([str(d), style["label"]] + [
                f"{c['mean']:.3f} ± {c['std']:.3f}" if m in ("auc", "accuracy")
                else f"{_rej(summary, arm, d, m[-2:])} ± {c['std']:.2g}"
                for m, c in zip(METRICS, cells)])
    rep.details.append(Table("Taggers per D (seed mean ± std)", header, table))
    rep.details.append(Paragraph(
        f"≥: no background jet of the {cfg['n_test']} test jets passed the cut in at least one "
        "seed; the rejection is then the number of test background jets, a lower bound."))
    fits = [f for f in res["fits"] if np.isfinite(f.get("gamma", np.nan))]
    if fits:
        rep.details.append(Paragraph(
            "Power-law fits a D^-gamma of 1 - AUC and of eps_B at 30 % signal efficiency: "
            + "; ".join(f"{f['arm']} {f['metric']} gamma = {f['gamma']:.2f} ± "
                        f"{f['gamma_err']:.2f}" for f in fits) + "."))
    return rep


def classify_report(scan_dir: str, out_dir: str | None = None) -> Report:
    """Draw the figure of a classification scan (into ``out_dir``, default ``scan_dir/figures``)
    and write the scan's own ``report.md`` / ``report.html``; returns the report as a section
    (:func:`classify_section`) for a bigger report."""
    from jetfm.evaluate.plots import figure_classify_scan

    res = load_classify_results(scan_dir)
    out_dir = out_dir or os.path.join(scan_dir, "figures")
    fig = figure_classify_scan(res["summary"], os.path.join(out_dir, "classify_vs_D.png"),
                               title=res["target"])
    section = classify_section(res, fig)
    Report(f"jetfm classify scan: {res['target']}", list(section.verdict),
           list(section.figures), list(section.details)).write(scan_dir)
    return section


__all__ = ["ClassifyScanConfig", "run_classify_scan", "load_classify_results",
           "classify_verdict", "classify_section", "classify_report", "draw_labelled",
           "BASELINE", "BASELINE_TOKENIZED", "METRICS"]
