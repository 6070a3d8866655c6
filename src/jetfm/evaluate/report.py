"""The report of the AOJ experiment: ``report.md`` and a self-contained ``report.html`` (figures
inline as base64 PNG), readable without running anything.

Sections: the verdict (computed from the numbers: does the fine-tuned arm beat the from-scratch
arm at the smallest D, by how much, and at the largest D), the data, the models, the metric
table (seed mean and spread per D and arm), the JetNet set, the gamma table (power-law exponents
per observable), the tokenizer floor (distance between the raw and the tokenized reference, the
best a generator can do on the tokenized metric's raw counterpart), and the figures.

The document is built once as a list of blocks and rendered to both formats, so they never
disagree.
"""
from __future__ import annotations

import base64
import html
import math
import os
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from jetfm.errors import write_text_atomic

#: a metric counts as improved when the fine-tuned mean is below the from-scratch mean by more
#: than the combined seed spread (sum in quadrature of the two standard deviations)
SIGNIFICANCE = 1.0
#: the geometric-median ratio scratch / fine-tuned above which the gain is called clear
CLEAR_RATIO = 1.1


@dataclass
class Block:
    kind: str  # "h1", "h2", "h3", "p", "table", "img", "code"
    text: str = ""
    header: Sequence[str] = ()
    rows: Sequence[Sequence[str]] = ()
    path: str = ""
    extra: dict = field(default_factory=dict)


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


# ----------------------------------------------------------------------------- render
def _md(blocks: Sequence[Block], rel_to: str) -> str:
    out = []
    for b in blocks:
        if b.kind in ("h1", "h2", "h3"):
            out.append("#" * int(b.kind[1]) + " " + b.text)
        elif b.kind == "p":
            out.append(b.text)
        elif b.kind == "code":
            out.append("```\n" + b.text + "\n```")
        elif b.kind == "table":
            out.append("| " + " | ".join(b.header) + " |")
            out[-1] += "\n|" + "---|" * len(b.header)
            for r in b.rows:
                out[-1] += "\n| " + " | ".join(r) + " |"
        elif b.kind == "img":
            out.append(f"![{b.text}]({os.path.relpath(b.path, rel_to)})\n\n*{b.text}*")
    return "\n\n".join(out) + "\n"


def _inline_md(text: str) -> str:
    """The little Markdown used in paragraphs (**bold**, `code`) as HTML."""
    import re

    t = html.escape(text)
    t = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", t)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", t)


def _html(blocks: Sequence[Block], title: str) -> str:
    css = ("body{font-family:sans-serif;max-width:1300px;margin:auto;padding:1em;color:#222}"
           "table{border-collapse:collapse;margin:1em 0;font-size:90%}"
           "td,th{border:1px solid #bbb;padding:3px 7px;text-align:right}"
           "th{background:#eee}td:first-child,td:nth-child(2){text-align:left}"
           "img{max-width:100%;border:1px solid #ddd}figcaption{font-style:italic}"
           "pre{background:#f4f4f4;padding:.6em;overflow-x:auto}")
    out = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
           f"</title><style>{css}</style></head><body>"]
    for b in blocks:
        if b.kind in ("h1", "h2", "h3"):
            out.append(f"<{b.kind}>{html.escape(b.text)}</{b.kind}>")
        elif b.kind == "p":
            out.append(f"<p>{_inline_md(b.text)}</p>")
        elif b.kind == "code":
            out.append(f"<pre>{html.escape(b.text)}</pre>")
        elif b.kind == "table":
            rows = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>"
                           for r in b.rows)
            head = "".join(f"<th>{html.escape(h)}</th>" for h in b.header)
            out.append(f"<table><tr>{head}</tr>{rows}</table>")
        elif b.kind == "img":
            with open(b.path, "rb") as fh:
                data = base64.b64encode(fh.read()).decode("ascii")
            out.append(f"<figure><img src='data:image/png;base64,{data}' "
                       f"alt='{html.escape(b.text)}'><figcaption>{html.escape(b.text)}"
                       "</figcaption></figure>")
    out.append("</body></html>")
    return "\n".join(out)


def build_report(scan_dir: str, out_dir: str, figures: dict[str, str] | None = None,
                 data: Sequence[dict] = (), models: dict | None = None,
                 title: str = "jetfm: does pre-training on AspenOpenJets-like jets help?",
                 notes: Sequence[str] = (), command: str = "",
                 verdict_lines: Sequence[str] = (),
                 sections: Sequence[Block] = ()) -> tuple[str, str]:
    """Write ``report.md`` and ``report.html`` into ``out_dir``; returns their paths.

    ``figures``: ``{name: png path}`` (Figure 1 and 2 under names starting with ``figure1`` /
    ``figure2``; the rest are the scan's); ``data``: one dict per dataset (``role``, ``file``,
    ``n_jets``, ``description``); ``models``: ``{name: {property: value}}``; ``notes``: paragraphs
    added after the verdict (the investigation when pre-training does not help, timing ...);
    ``verdict_lines``: further verdict paragraphs (the classification scan's); ``sections``:
    blocks placed after the verdict and notes (the classification scan's section).
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
    v = verdict(summary, targets)
    B = Block
    blocks: list[Block] = [B("h1", title)]
    if command:
        blocks.append(B("p", f"Produced by `{command}`."))
    if res.get("partial"):
        blocks.append(B("p", f"**Partial results:** {res['cells_done']} of "
                             f"{res['cells_planned']} scan cells finished when this report was "
                             "written (the scan is still running or was interrupted)."))
    blocks.append(B("h2", "Verdict"))
    blocks += [B("p", s) for s in verdict_text(v)]
    blocks += [B("p", s) for s in verdict_lines]
    blocks.append(B("p", "Metrics compare generated jets with held-out target jets passed "
                         "through the tokenizer and back (the tokenized reference), so that "
                         "they judge the generator rather than the tokenizer; a difference "
                         f"counts when it exceeds {SIGNIFICANCE:g} x the seed spreads added "
                         "in quadrature. KL in nats (50 reference-quantile bins), W1 in the "
                         "observable's units (GeV for pT and mass)."))
    for t in targets:
        ref_npz = os.path.join(scan_dir, "reference", f"{t}.npz")
        if os.path.exists(ref_npz):
            blocks.append(B("p", floor_text(summary, t, floor_distances(ref_npz))))
    blocks += [B("p", n) for n in notes]
    blocks += list(sections)
    blocks.append(B("h2", "Data"))
    if data:
        blocks.append(B("table", header=["role", "file", "jets", "description"],
                        rows=[[d.get("role", ""), os.path.basename(str(d.get("file", ""))),
                               str(d.get("n_jets", "")), d.get("description", "")]
                              for d in data]))
    blocks.append(B("p", f"Scan: sizes D = {cfg['sizes']}, {cfg['seeds']} seeds, each seed its "
                         f"own random subset of D target jets; {cfg['n_reference']} held-out "
                         f"reference jets per target, {cfg['n_generated']} generated jets per "
                         f"model; training preset `{cfg['preset']}`"
                         + (f" with overrides `{' '.join(cfg['overrides'])}`" if cfg['overrides']
                            else "")
                         + (f", at least {cfg['min_steps']} optimiser steps per training"
                            if cfg["min_steps"] else "") + "."))
    blocks.append(B("h2", "Models"))
    for name, info in (models or {}).items():
        blocks.append(B("h3", name))
        blocks.append(B("table", header=["property", "value"],
                        rows=[[str(k), v if isinstance(v, str) else json.dumps(v, default=str)]
                              for k, v in info.items()]))
    for t in targets:
        blocks.append(B("h2", f"Target: {t}"))
        for metric in ("kl", "w1"):
            h, r = metric_table(summary, t, metric)
            blocks += [B("h3", f"{metric.upper()} per observable (seed mean ± std, tokenized "
                               "reference)"), B("table", header=h, rows=r)]
        h, r = metric_table(summary, t, "kl", reference="raw")
        blocks += [B("h3", "KL against the raw reference (generator and tokenizer together)"),
                   B("table", header=h, rows=r)]
        h, r = jetnet_table(summary, t)
        if r:
            blocks += [B("h3", "JetNet set against the raw reference (seed mean ± std)"),
                       B("table", header=h, rows=r)]
        h, r = gamma_table(fits, t)
        blocks += [B("h3", "Power-law exponents gamma (metric = a D^-gamma)"),
                   B("table", header=h, rows=r)]
        ref_npz = os.path.join(scan_dir, "reference", f"{t}.npz")
        if os.path.exists(ref_npz):
            h, r = tokenizer_floor(ref_npz)
            blocks += [B("h3", "Tokenizer floor: raw against tokenized reference"),
                       B("table", header=h, rows=r)]
    blocks.append(B("h2", "Figures"))
    captions = {"figure1": "Figure 1: pre-training and target data per quantity",
                "figure2": "Figure 2: constituent (eta, phi) occupancy of the pre-training data"}
    for name, path in figures.items():
        cap = next((c for k, c in captions.items() if name.startswith(k)), None)
        if cap is None:
            t, _, kind = name.rpartition("_")
            cap = (f"{t}: generated vs reference histograms" if kind == "histograms" else
                   f"{t}: {kind.upper()} against D with seed envelopes and power-law fits")
        blocks.append(B("img", text=cap, path=path))
    return write_report(blocks, out_dir, title)


def write_report(blocks: Sequence[Block], out_dir: str, title: str) -> tuple[str, str]:
    """Render ``blocks`` to ``out_dir/report.md`` and a self-contained ``out_dir/report.html``
    (figures inline); returns their paths."""
    os.makedirs(out_dir, exist_ok=True)
    md_path, html_path = os.path.join(out_dir, "report.md"), os.path.join(out_dir, "report.html")
    write_text_atomic(md_path, _md(blocks, out_dir))
    write_text_atomic(html_path, _html(blocks, title))
    return md_path, html_path


__all__ = ["build_report", "write_report", "Block", "verdict", "verdict_text", "compare_arms", "metric_table",
           "gamma_table", "jetnet_table", "tokenizer_floor", "floor_distances", "floor_text"]
