"""``jetfm tokenizer report``: how well a tokenizer represents jets.

Numbers (``report.json``), plots (PNG) and ``report.md`` / ``report.html`` (verdict, figures,
tables) of
- codebook usage (fraction of codes used by the jets) and perplexity of the code distribution;
- per-feature resolution after encode + decode: residuals of ln pT, eta_rel, phi_rel (mean, std,
  and the 68 % half-width of the central interval), in physical units (pT relative, angles in
  radians);
- jet-level resolution: mass (relative), tau21 and tau32 (absolute) of the decoded jet against the
  same jet before tokenization (both after the preprocessing cuts, so only the tokenizer is judged).
"""
from __future__ import annotations

import json
import os

import numpy as np

from jetfm.io.output import write_text_atomic
from jetfm.report import Figure, Heading, Paragraph, Report, Table, pyplot, save_figure

JET_OBSERVABLES = ("mass", "tau21", "tau32")
#: report.json key of each jet observable's residual
JET_KEYS = {"mass": "mass_relative", "tau21": "tau21", "tau32": "tau32"}


def _spread(res: np.ndarray) -> dict:
    res = res[np.isfinite(res)]
    if res.size == 0:
        return {"mean": None, "std": None, "half_width_68": None, "n": 0}
    lo, hi = np.percentile(res, [16, 84])
    return {"mean": float(res.mean()), "std": float(res.std()),
            "half_width_68": float((hi - lo) / 2), "n": int(res.size)}


def tokenizer_report(model_dir: str, data, out: str, max_jets: int | None = 20_000,
                     progress: bool = True) -> dict:
    """Evaluate the tokenizer of ``model_dir`` on ``data`` files; writes ``out/report.json``,
    PNG plots and ``out/report.md`` / ``out/report.html``; returns the report dict."""
    from jetfm.omnijet.model import load_pretrained
    from jetfm.physics.observables import compute_observables
    from jetfm.train.data import load_features

    model = load_pretrained(model_dir)
    prep, tok = model.preprocessing, model.tokenizer
    feats, mask, prov = load_features(data, prep, max_jets, progress=progress)
    codes = tok.encode_arrays(feats, mask)
    recon = tok.decode_arrays(codes, mask)
    k = model.codebook_size
    counts = np.bincount(codes[mask] % k, minlength=k)
    p = counts / max(counts.sum(), 1)
    nz = p[p > 0]
    report: dict = {"model": os.path.abspath(model_dir), "data": prov, "n_jets": int(len(mask)),
                    "n_constituents": int(mask.sum()), "codebook_size": k,
                    "codebook_usage": float((counts > 0).mean()),
                    "perplexity": float(np.exp(-(nz * np.log(nz)).sum())),
                    "features": {}, "jets": {}}
    orig_j = prep.inverse(feats, mask)
    rec_j = prep.inverse(recon, mask)
    m = mask
    residuals = {
        "pt_relative": rec_j.c("pt")[m] / orig_j.c("pt")[m] - 1,
        "eta_rel": rec_j.c("eta_rel")[m] - orig_j.c("eta_rel")[m],
        "phi_rel": rec_j.c("phi_rel")[m] - orig_j.c("phi_rel")[m],
    }
    for name, r in residuals.items():
        report["features"][name] = _spread(r)
    obs_o, obs_r = compute_observables(orig_j), compute_observables(rec_j)
    jet_res = {}
    for name in JET_OBSERVABLES:
        if name not in obs_o:
            report["jets"][name] = {"missing": "not computed by jetfm.physics.observables"}
            continue
        a, b = np.asarray(obs_o[name], float), np.asarray(obs_r[name], float)
        r = b / a - 1 if name == "mass" else b - a
        ok = np.isfinite(r) & (a > 0 if name == "mass" else np.isfinite(a))
        jet_res[name] = (a[ok], b[ok], r[ok])
        report["jets"][JET_KEYS[name]] = _spread(r[ok])
    os.makedirs(out, exist_ok=True)
    report["plots"] = _plots(out, report, counts, residuals, jet_res)
    write_text_atomic(os.path.join(out, "report.json"), json.dumps(report, indent=1))
    tokenizer_document(report).write(out)
    return report


def _plots(out: str, report: dict, counts: np.ndarray, residuals: dict, jet_res: dict
           ) -> list[str]:
    plt = pyplot(hep_style=False)
    k = report["codebook_size"]
    plots = []
    # code usage
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(np.sort(counts)[::-1], drawstyle="steps-mid")
    ax.set_yscale("log")
    ax.set_xlabel("code rank")
    ax.set_ylabel("constituents")
    ax.set_title(f"codebook usage {report['codebook_usage']:.1%}, "
                 f"perplexity {report['perplexity']:.0f} of {k}")
    fig.tight_layout()
    plots.append(save_figure(fig, os.path.join(out, "codebook_usage.png"), dpi=90))
    # constituent features
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    for ax, (name, r) in zip(axes, residuals.items()):
        lim = np.nanpercentile(np.abs(r), 99) if r.size else 1
        ax.hist(r, bins=100, range=(-lim, lim), histtype="step")
        ax.set_xlabel(f"{name}: decoded - original" if name != "pt_relative"
                      else "pT decoded / original - 1")
        s = report["features"][name]
        ax.set_title(f"68% half-width {s['half_width_68']:.3g}" if s["n"] else "no data")
    fig.tight_layout()
    plots.append(save_figure(fig, os.path.join(out, "constituent_resolution.png"), dpi=90))
    # jet observables: distributions and residuals
    if jet_res:
        fig, axes = plt.subplots(2, len(jet_res), figsize=(4.5 * len(jet_res), 8), squeeze=False)
        for i, (name, (a, b, r)) in enumerate(jet_res.items()):
            hi = np.nanpercentile(a, 99.5) if a.size else 1
            bins = np.linspace(0, hi, 60)
            axes[0, i].hist(a, bins, histtype="step", label="original")
            axes[0, i].hist(b, bins, histtype="step", label="encode + decode")
            axes[0, i].set_xlabel(name + (" [GeV]" if name == "mass" else ""))
            axes[0, i].legend()
            lim = np.nanpercentile(np.abs(r), 99) if r.size else 1
            axes[1, i].hist(r, bins=80, range=(-lim, lim), histtype="step")
            axes[1, i].set_xlabel(f"{name} decoded / original - 1" if name == "mass"
                                  else f"{name} decoded - original")
        fig.tight_layout()
        plots.append(save_figure(fig, os.path.join(out, "jet_resolution.png"), dpi=90))
    return plots


def _num(x, spec: str = ".3g") -> str:
    return "n/a" if x is None else format(x, spec)


#: what each residual of the report is, for the verdict and the tables
RESIDUAL_LABELS = {"pt_relative": "pT (relative)", "eta_rel": "eta_rel (radians)",
                   "phi_rel": "phi_rel (radians)", "mass_relative": "jet mass (relative)",
                   "tau21": "tau21", "tau32": "tau32"}
FIGURE_CAPTIONS = {"codebook_usage.png": "Constituents per code, codes ordered by use",
                   "constituent_resolution.png": "Constituent residuals after encode + decode",
                   "jet_resolution.png": "Jet observables before and after encode + decode "
                                         "(top) and their residuals (bottom)"}


def tokenizer_document(report: dict) -> Report:
    """The report of :func:`tokenizer_report`'s numbers: verdict, figures, tables."""
    k = report["codebook_size"]
    spreads = {**report["features"], **{key: v for key, v in report["jets"].items()
                                        if "missing" not in v}}
    widths = ", ".join(f"{_num(s['half_width_68'])} in {RESIDUAL_LABELS.get(name, name)}"
                       for name, s in spreads.items())
    verdict = (f"**The {k}-code tokenizer uses {report['codebook_usage']:.1%} of its codes** on "
               f"{report['n_jets']} jets ({report['n_constituents']} constituents), perplexity "
               f"{report['perplexity']:.0f} of {k}. After encode + decode the 68 % half-widths "
               f"of the residuals are {widths}.")
    header = ["quantity", "mean", "std", "68 % half-width", "entries"]

    def rows(part: dict) -> list[list[str]]:
        return [[RESIDUAL_LABELS.get(name, name), _num(s["mean"], ".4g"), _num(s["std"], ".4g"),
                 _num(s["half_width_68"], ".4g"), str(s["n"])]
                for name, s in part.items() if "missing" not in s]

    details = [Heading("Resolution"),
               Table("Constituent residuals, decoded against original", header,
                     rows(report["features"])),
               Table("Jet observable residuals, decoded against original", header,
                     rows(report["jets"]))]
    details += [Paragraph(f"{name}: {v['missing']}.") for name, v in report["jets"].items()
                if "missing" in v]
    details.append(Table("Codebook", ["quantity", "value"],
                         [["codes", str(k)],
                          ["fraction of codes used", f"{report['codebook_usage']:.4g}"],
                          ["perplexity", f"{report['perplexity']:.4g}"],
                          ["jets", str(report["n_jets"])],
                          ["constituents", str(report["n_constituents"])]]))
    files = report["data"].get("files", [])
    details.append(Heading("Data"))
    details.append(Table("Files", ["file", "bytes"],
                         [[f["path"], str(f["bytes"])] if isinstance(f, dict) else [str(f), ""]
                          for f in files]))
    details.append(Paragraph(f"Tokenizer of `{report['model']}`; jets after its preprocessing "
                             "cuts, so the residuals judge the tokenizer alone."))
    return Report("jetfm tokenizer report", [verdict],
                  [Figure(p, FIGURE_CAPTIONS.get(os.path.basename(p), os.path.basename(p)))
                   for p in report["plots"]], details)


__all__ = ["tokenizer_report", "tokenizer_document", "JET_OBSERVABLES"]
