"""The report of the AOJ experiment: ``report.md`` and a self-contained ``report.html`` (figures
inline as base64 PNG), readable without running anything (:class:`jetfm.report.Report`).

In reading order: the verdict (computed from the numbers: does the fine-tuned arm beat the
from-scratch arm at the smallest D, by how much, and at the largest D; does the tokenizer or the
generator limit the fidelity), the figures (Figures 1 to 4 of the paper), then the tables per
target: the metric tables (seed mean and spread per D and arm), the JetNet set, the gamma table
(power-law exponents per observable), the tokenizer floor (distance between the raw and the
tokenized reference, the best a generator can do on the tokenized metric's raw counterpart); the
data, the models and how the run was made last.
"""
from __future__ import annotations

import math
import os
from collections.abc import Sequence

import numpy as np

from jetfm.report import Figure, Heading, Paragraph, Report, Table

#: a metric counts as improved when the fine-tuned mean is below the from-scratch mean by more
#: than the combined seed spread (sum in quadrature of the two standard deviations)
SIGNIFICANCE = 1.0
#: the geometric-median ratio scratch / fine-tuned above which the gain is called clear
CLEAR_RATIO = 1.1


def _fmt(x: float, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    if x == 0:
        return "0"
    if abs(x) >= 1e4 or abs(x) < 1e-3:
        return f"{x:.{digits - 1}e}"
    return f"{x:.{digits}g}"


def _pm(mean: float, err: float) -> str:
    if _fmt(mean) == "n/a":
        return "n/a"
    return f"{_fmt(mean)} ± {_fmt(err, 2)}"


# ----------------------------------------------------------------------------- verdict
def compare_arms(summary: Sequence[dict], target: str, d: int, reference: str = "tokenized",
                 metrics: Sequence[str] = ("kl", "w1")) -> list[dict]:
    """Per (observable, metric) at size ``d``: the two arms' seed means and spreads, the ratio
    scratch / pre-trained (> 1: pre-training helps) and whether the difference exceeds the
    combined seed spread."""
    sel = {(s["observable"], s["metric"], s["arm"]): s for s in summary
           if s["target"] == target and s["D"] == d and s["reference"] == reference
           and s["metric"] in metrics}
    out = []
    for (obs, metric, arm), pre in sel.items():
        if arm != "pretrained" or (obs, metric, "scratch") not in sel:
            continue
        scr = sel[(obs, metric, "scratch")]
        spread = math.hypot(pre["std"], scr["std"])
        ratio = scr["mean"] / pre["mean"] if pre["mean"] > 0 else math.inf
        out.append(dict(observable=obs, metric=metric, pretrained=pre["mean"],
                        pretrained_std=pre["std"], scratch=scr["mean"], scratch_std=scr["std"],
                        ratio=ratio,
                        better=scr["mean"] - pre["mean"] > SIGNIFICANCE * spread,
                        worse=pre["mean"] - scr["mean"] > SIGNIFICANCE * spread))
    return out


def verdict(summary: Sequence[dict], targets: Sequence[str]) -> dict:
    """The headline numbers: per target, at the smallest and the largest D, how many
    (observable, metric) pairs the fine-tuned arm wins beyond the seed spread, loses, and the
    median ratio scratch / fine-tuned (geometric: > 1 means pre-training helps)."""
    out = {}
    for t in targets:
        sizes = sorted({s["D"] for s in summary if s["target"] == t})
        if not sizes:
            continue
        entry = {}
        for label, d in (("smallest", sizes[0]), ("largest", sizes[-1])):
            cmp_ = compare_arms(summary, t, d)
            ratios = [c["ratio"] for c in cmp_ if math.isfinite(c["ratio"]) and c["ratio"] > 0]
            entry[label] = dict(D=d, n=len(cmp_), better=sum(c["better"] for c in cmp_),
                                worse=sum(c["worse"] for c in cmp_),
                                median_ratio=float(np.exp(np.median(np.log(ratios))))
                                if ratios else math.nan, details=cmp_)
        out[t] = entry
    return out


def verdict_text(v: dict) -> list[str]:
    """Sentences stating the verdict, from :func:`verdict`'s numbers."""
    lines = []
    for t, e in v.items():
        s, l_ = e["smallest"], e["largest"]
        # a claim needs a consistent win: more wins than losses, on at least a third of the
        # observable metrics, and a median ratio above 1
        helps = s["better"] > s["worse"] and 3 * s["better"] >= s["n"] and s["median_ratio"] > 1
        if helps:
            how = "helps" if s["median_ratio"] > CLEAR_RATIO else "helps only marginally"
            head = (f"**{t}: pre-training {how} at small D.** At D = {s['D']} the fine-tuned arm "
                    f"is better than the from-scratch arm beyond the seed spread on {s['better']} "
                    f"of {s['n']} observable metrics (worse on {s['worse']}); the from-scratch "
                    f"metrics are {s['median_ratio']:.2f} times the fine-tuned ones (geometric "
                    "median over observables and metrics).")
        else:
            head = (f"**{t}: pre-training does not help at D = {s['D']} in this run.** The "
                    f"fine-tuned arm is better beyond the seed spread on {s['better']} of "
                    f"{s['n']} observable metrics and worse on {s['worse']}; the median ratio "
                    f"scratch / fine-tuned is {s['median_ratio']:.2f}.")
        if l_["D"] != s["D"]:
            head += (f" At the largest D = {l_['D']}: better on {l_['better']}, worse on "
                     f"{l_['worse']}, median ratio {l_['median_ratio']:.2f}.")
        lines.append(head)
    return lines


# ------------------------------------------------------------------------------ tables
def metric_table(summary: Sequence[dict], target: str, metric: str,
                 reference: str = "tokenized") -> tuple[list[str], list[list[str]]]:
    from jetfm.evaluate.scan import ARMS, OBSERVABLES

    sel = [s for s in summary if s["target"] == target and s["metric"] == metric
           and s["reference"] == reference]
    sizes = sorted({s["D"] for s in sel})
    found = list(dict.fromkeys(s["observable"] for s in sel))
    obs = [o for o in OBSERVABLES if o in found] + [o for o in found if o not in OBSERVABLES]
    idx = {(s["observable"], s["arm"], s["D"]): s for s in sel}
    header = ["observable", "arm"] + [f"D = {d}" for d in sizes]
    rows = []
    for o in obs:
        for arm in ARMS:
            cells = [_pm(idx[(o, arm, d)]["mean"], idx[(o, arm, d)]["std"])
                     if (o, arm, d) in idx else "" for d in sizes]
            rows.append([o, arm] + cells)
    return header, rows


def jetnet_table(summary: Sequence[dict], target: str) -> tuple[list[str], list[list[str]]]:
    from jetfm.evaluate.scan import ARMS, JETNET_METRICS

    sel = {(s["metric"], s["arm"], s["D"]): s for s in summary
           if s["target"] == target and s["observable"] == "jet"}
    sizes = sorted({k[2] for k in sel})
    header = ["D", "arm"] + [m.upper() for m in JETNET_METRICS]
    rows = []
    for d in sizes:
        for arm in ARMS:
            rows.append([str(d), arm] + [_pm(sel[(m, arm, d)]["mean"], sel[(m, arm, d)]["std"])
                                         if (m, arm, d) in sel else "" for m in JETNET_METRICS])
    return header, rows


def gamma_table(fits: Sequence[dict], target: str, reference: str = "tokenized"
                ) -> tuple[list[str], list[list[str]]]:
    from jetfm.evaluate.scan import OBSERVABLES

    sel = {(f["observable"], f["metric"], f["arm"]): f for f in fits
           if f["target"] == target and f["reference"] == reference}
    found = list(dict.fromkeys(k[0] for k in sel))
    obs = [o for o in OBSERVABLES if o in found] + [o for o in found if o not in OBSERVABLES]
    header = ["observable", "gamma KL fine-tuned", "gamma KL scratch", "gamma W1 fine-tuned",
              "gamma W1 scratch"]
    rows = []
    for o in obs:
        cells = []
        for metric in ("kl", "w1"):
            for arm in ("pretrained", "scratch"):
                f = sel.get((o, metric, arm))
                cells.append(_pm(f["gamma"], f["gamma_err"]) if f else "")
        rows.append([o] + cells)
    return header, rows


def floor_distances(reference_npz: str, seed: int = 0) -> dict[str, dict[str, float]]:
    """KL and W1 between the raw and the tokenized held-out jets per observable: what the
    tokenizer alone costs."""
    from jetfm.evaluate.metrics import observable_distances

    z = np.load(reference_npz)
    raw = {k[4:]: z[k] for k in z.files if k.startswith("raw_")}
    tok = {k[10:]: z[k] for k in z.files if k.startswith("tokenized_")}
    return observable_distances(raw, tok, seed=seed)


def tokenizer_floor(reference_npz: str, seed: int = 0) -> tuple[list[str], list[list[str]]]:
    """The table of :func:`floor_distances`."""
    d = floor_distances(reference_npz, seed)
    return (["observable", "KL(raw || tokenized)", "W1(raw, tokenized)"],
            [[o, _fmt(v["kl"]), _pm(v["w1"], v["w1_std"])] for o, v in d.items()])


def floor_text(summary: Sequence[dict], target: str, floor: dict) -> str:
    """Whether the tokenizer or the generator limits the fidelity to the raw jets: the median
    over observables of KL(raw || tokenized) against the generator's KL to the tokenized
    reference (better arm, largest D)."""
    sizes = sorted({s["D"] for s in summary if s["target"] == target})
    gen = [min(s["mean"] for s in summary if s["target"] == target and s["D"] == sizes[-1]
               and s["metric"] == "kl" and s["reference"] == "tokenized"
               and s["observable"] == o) for o in floor
           if any(s["observable"] == o for s in summary if s["target"] == target)]
    f = float(np.median([v["kl"] for v in floor.values()]))
    g = float(np.median(gen)) if gen else math.nan
    who = ("the tokenizer's reconstruction error is the larger one: at this scale the tokenizer, "
           "not the generator, limits how close generated jets come to the raw jets"
           if f > g else "the generator's error is the larger one: the tokenizer is not the "
           "bottleneck")
    return (f"{target}: median KL over observables between raw and tokenized reference jets "
            f"{f:.3g} nats; generator against the tokenized reference at D = {sizes[-1]} "
            f"(better arm) {g:.3g} nats: {who}.")


# ----------------------------------------------------------------------------- report
FIGURE_CAPTIONS = {"figure1": "Figure 1: pre-training and target data per quantity",
                   "figure2": "Figure 2: constituent (eta, phi) occupancy of the pre-training data"}


def figure_caption(name: str) -> str:
    """The caption of a figure of :func:`build_report`'s ``figures`` by its name."""
    cap = next((c for k, c in FIGURE_CAPTIONS.items() if name.startswith(k)), None)
    if cap is None:
        t, _, kind = name.rpartition("_")
        cap = (f"{t}: generated vs reference histograms" if kind == "histograms" else
               f"{t}: {kind.upper()} against D with seed envelopes and power-law fits")
    return cap


def target_tables(scan_dir: str, summary: Sequence[dict], fits: Sequence[dict],
                  target: str) -> list[Table]:
    """The tables of one target: KL and W1 per observable (tokenized reference), KL against the
    raw reference, the JetNet set, the power-law exponents and the tokenizer floor."""
    tables = []
    for metric in ("kl", "w1"):
        h, r = metric_table(summary, target, metric)
        tables.append(Table(f"{metric.upper()} per observable (seed mean ± std, tokenized "
                            "reference)", h, r))
    h, r = metric_table(summary, target, "kl", reference="raw")
    tables.append(Table("KL against the raw reference (generator and tokenizer together)", h, r))
    h, r = jetnet_table(summary, target)
    if r:
        tables.append(Table("JetNet set against the raw reference (seed mean ± std)", h, r))
    h, r = gamma_table(fits, target)
    tables.append(Table("Power-law exponents gamma (metric = a D^-gamma)", h, r))
    ref_npz = os.path.join(scan_dir, "reference", f"{target}.npz")
    if os.path.exists(ref_npz):
        h, r = tokenizer_floor(ref_npz)
        tables.append(Table("Tokenizer floor: raw against tokenized reference", h, r))
    return tables


def scan_report(scan_dir: str, out_dir: str, figures: dict[str, str] | None = None,
                data: Sequence[dict] = (), models: dict | None = None,
                title: str = "jetfm: does pre-training on AspenOpenJets-like jets help?",
                notes: Sequence[str] = (), command: str = "",
                sections: Sequence[Report] = ()) -> Report:
    """The report of a D-scan folder (drawing its figures into ``out_dir/figures`` unless
    ``figures`` holds them).

    ``figures``: ``{name: png path}`` (Figure 1 and 2 under names starting with ``figure1`` /
    ``figure2``; the rest are the scan's); ``data``: one dict per dataset (``role``, ``file``,
    ``n_jets``, ``description``); ``models``: ``{name: {property: value}}``; ``notes``: paragraphs
    about the run (timing ...); ``sections``: reports added to this one (the classification
    scan's: its verdict joins the verdict, its figure the figures, its tables the tables).
    """
    import json

    from jetfm.evaluate.plots import scan_figures
    from jetfm.evaluate.scan import load_results

    res = load_results(scan_dir)
    targets = list(res["targets"])
    summary, fits = res["summary"], res["fits"]
    figures = dict(figures or {})
    if not any(k.endswith("_kl") for k in figures):
        figures.update(scan_figures(scan_dir, os.path.join(out_dir, "figures")))
    cfg = res["config"]
    rep = Report(title)
    if res.get("partial"):
        rep.verdict.append(f"**Partial results:** {res['cells_done']} of "
                           f"{res['cells_planned']} scan cells finished when this report was "
                           "written (the scan is still running or was interrupted).")
    rep.verdict += verdict_text(verdict(summary, targets))
    for t in targets:
        ref_npz = os.path.join(scan_dir, "reference", f"{t}.npz")
        if os.path.exists(ref_npz):
            rep.verdict.append(floor_text(summary, t, floor_distances(ref_npz)))
    rep.figures += [Figure(path, figure_caption(name)) for name, path in figures.items()]
    rep.details += [Heading("Method"), Paragraph(
        "Metrics compare generated jets with held-out target jets passed through the tokenizer "
        "and back (the tokenized reference), so that they judge the generator rather than the "
        "tokenizer; a difference counts when it exceeds "
        f"{SIGNIFICANCE:g} x the seed spreads added in quadrature. KL in nats (50 "
        "reference-quantile bins), W1 in the observable's units (GeV for pT and mass).")]
    for t in targets:
        rep.details += [Heading(f"Target: {t}"), *target_tables(scan_dir, summary, fits, t)]
    for section in sections:
        rep.add(section)
    rep.details.append(Heading("Data"))
    if data:
        rep.details.append(Table("Datasets", ["role", "file", "jets", "description"],
                                 [[d.get("role", ""), os.path.basename(str(d.get("file", ""))),
                                   str(d.get("n_jets", "")), d.get("description", "")]
                                  for d in data]))
    rep.details.append(Paragraph(
        f"Scan: sizes D = {cfg['sizes']}, {cfg['seeds']} seeds, each seed its own random subset "
        f"of D target jets; {cfg['n_reference']} held-out reference jets per target, "
        f"{cfg['n_generated']} generated jets per model; training preset `{cfg['preset']}`"
        + (f" with overrides `{' '.join(cfg['overrides'])}`" if cfg['overrides'] else "")
        + (f", at least {cfg['min_steps']} optimiser steps per training"
           if cfg["min_steps"] else "") + "."))
    if models:
        rep.details.append(Heading("Models"))
        rep.details += [Table(name, ["property", "value"],
                              [[str(k), v if isinstance(v, str) else json.dumps(v, default=str)]
                               for k, v in info.items()]) for name, info in models.items()]
    if notes or command:
        rep.details.append(Heading("Run"))
        rep.details += [Paragraph(n) for n in notes]
        if command:
            rep.details.append(Paragraph(f"Produced by `{command}`."))
    return rep


def build_report(scan_dir: str, out_dir: str, figures: dict[str, str] | None = None,
                 data: Sequence[dict] = (), models: dict | None = None,
                 title: str = "jetfm: does pre-training on AspenOpenJets-like jets help?",
                 notes: Sequence[str] = (), command: str = "",
                 sections: Sequence[Report] = ()) -> tuple[str, str]:
    """Write :func:`scan_report` as ``report.md`` and ``report.html`` into ``out_dir``; returns
    their paths."""
    return scan_report(scan_dir, out_dir, figures, data, models, title, notes, command,
                       sections).write(out_dir)


__all__ = ["build_report", "scan_report", "target_tables", "figure_caption", "verdict",
           "verdict_text", "compare_arms", "metric_table", "gamma_table", "jetnet_table",
           "tokenizer_floor", "floor_distances", "floor_text"]
