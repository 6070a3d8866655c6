"""``jetfm tokenizer report`` without the CLI: its numbers on the real AOJ jets against an
independent computation (NumPy for the codebook and the constituent and mass residuals, FastJet
for tau21 and tau32), and its report document."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest
from scipy.stats import entropy

from jetfm.io import read_jets
from jetfm.jets import Jets
from jetfm.omnijet.model import load_pretrained
from jetfm.train.report import tokenizer_report


def _half_width(x: np.ndarray) -> float:
    s = np.sort(x[np.isfinite(x)])
    q16, q84 = (np.interp(q * (len(s) - 1), np.arange(len(s)), s) for q in (0.16, 0.84))
    return (q84 - q16) / 2


def _four_vectors(feats: np.ndarray, mask: np.ndarray, prep) -> np.ndarray:
    """Massless (px, py, pz, E) (N, P, 4) float64 of preprocessed features, zero on padding."""
    f = feats.astype(np.float64)
    pt = np.exp(f[..., 0] + prep.pt_shift)
    eta, phi = f[..., 1] / prep.eta_scale, f[..., 2] / prep.phi_scale
    p4 = np.stack([pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta), pt * np.cosh(eta)], -1)
    return np.where(mask[..., None], p4, 0.0)


@pytest.fixture(scope="module")
def report(tokenizer, aoj_mini, tmp_path_factory):
    out = tmp_path_factory.mktemp("tokreport")
    return out, tokenizer_report(tokenizer, [str(aoj_mini)], str(out), max_jets=None,
                                 progress=False)


@pytest.fixture(scope="module")
def independent(tokenizer, aoj_mini):
    """Features, codes and decoded features of every jet of the real file, computed here."""
    model = load_pretrained(tokenizer)
    prep = model.preprocessing
    jets = read_jets(str(aoj_mini))
    feats, mask = prep.forward(jets)
    codes = model.tokenizer.encode_arrays(feats, mask)
    recon = model.tokenizer.decode_arrays(codes, mask)
    return model, prep, len(jets), feats, mask, codes, recon


def test_codebook_numbers(report, independent):
    _, rep = report
    model, _, n_jets, _, mask, codes, _ = independent
    used, counts = np.unique(codes[mask], return_counts=True)
    assert rep["n_jets"] == n_jets == 100
    assert rep["n_constituents"] == int(mask.sum()) == int(counts.sum())
    assert rep["codebook_size"] == model.codebook_size
    assert 1 < len(used) < model.codebook_size  # the check below can tell usage from nothing
    assert rep["codebook_usage"] == pytest.approx(len(used) / model.codebook_size, rel=1e-12)
    assert rep["perplexity"] == pytest.approx(np.exp(entropy(counts)), rel=1e-9)


def test_constituent_resolutions(report, independent):
    _, rep = report
    _, prep, _, feats, mask, _, recon = independent
    f, r = feats.astype(np.float64)[mask], recon.astype(np.float64)[mask]
    expected = {"pt_relative": np.expm1(r[:, 0] - f[:, 0]),
                "eta_rel": (r[:, 1] - f[:, 1]) / prep.eta_scale,
                "phi_rel": (r[:, 2] - f[:, 2]) / prep.phi_scale}
    for name, res in expected.items():
        got = rep["features"][name]
        assert got["n"] == len(res), name
        assert got["mean"] == pytest.approx(res.mean(), rel=1e-4, abs=1e-7), name
        assert got["std"] == pytest.approx(res.std(), rel=1e-4), name
        assert got["half_width_68"] == pytest.approx(_half_width(res), rel=1e-4), name
        assert got["std"] > 0, name  # an untrained tokenizer does not decode exactly


def test_jet_resolutions(report, independent):
    import awkward as ak

    fastjet = pytest.importorskip("fastjet")
    _, rep = report
    _, prep, _, feats, mask, _, recon = independent
    p_orig, p_rec = _four_vectors(feats, mask, prep), _four_vectors(recon, mask, prep)

    def mass(p4):
        s = p4.sum(1)
        return np.sqrt(np.clip(s[:, 3] ** 2 - (s[:, :3] ** 2).sum(1), 0, None))

    m_orig, m_rec = mass(p_orig), mass(p_rec)
    res = m_rec / m_orig - 1
    got = rep["jets"]["mass_relative"]
    assert got["n"] == len(res)
    assert got["mean"] == pytest.approx(res.mean(), rel=1e-3, abs=1e-6)
    assert got["half_width_68"] == pytest.approx(_half_width(res), rel=1e-3)

    def tau_ratios(p4):
        jets = Jets(p4, mask, np.zeros((len(mask), 0)), ("px", "py", "pz", "E"), ())
        m, n = jets.mask, jets.n_constituents
        arr = ak.zip({k: ak.unflatten(jets.c(k)[m].astype(np.float64), n)
                      for k in ("px", "py", "pz", "E")}, with_name="Momentum4D")
        cs = fastjet.ClusterSequence(arr, fastjet.JetDefinition(fastjet.kt_algorithm, 1000.0))
        t = ak.to_numpy(cs.njettiness(measure_definition="NormalizedMeasure",
                                      axes_definition="KT_Axes", njets=[1, 2, 3], beta=1.0,
                                      R0=0.8))
        with np.errstate(divide="ignore", invalid="ignore"):
            return {"tau21": np.where(t[:, 0] > 0, t[:, 1] / t[:, 0], 0.0),
                    "tau32": np.where(t[:, 1] > 0, t[:, 2] / t[:, 1], 0.0)}

    t_orig, t_rec = tau_ratios(p_orig), tau_ratios(p_rec)
    for name in ("tau21", "tau32"):
        res = t_rec[name] - t_orig[name]
        got = rep["jets"][name]
        assert got["n"] == len(res) == 100, name
        assert got["mean"] == pytest.approx(res.mean(), rel=1e-3, abs=1e-6), name
        assert got["std"] == pytest.approx(res.std(), rel=1e-3), name
        assert got["half_width_68"] == pytest.approx(_half_width(res), rel=1e-3), name


def test_report_files_read_verdict_figures_tables(report):
    out, rep = report
    assert json.loads((out / "report.json").read_text())["perplexity"] == rep["perplexity"]
    md = (out / "report.md").read_text()
    page = (out / "report.html").read_text()
    verdict = md[md.index("## Verdict"):md.index("## Figures")]
    assert f"uses {rep['codebook_usage']:.1%} of its codes" in verdict
    assert f"perplexity {rep['perplexity']:.0f} of {rep['codebook_size']}" in verdict
    assert f"{rep['features']['pt_relative']['half_width_68']:.3g} in pT" in verdict
    assert f"{rep['jets']['mass_relative']['half_width_68']:.3g} in jet mass" in verdict
    assert md.index("## Figures") < md.index("| quantity |")
    assert page.count("data:image/png;base64,") == len(rep["plots"]) == 3
    assert not re.search(r"src=['\"](?!data:)", page)
    assert page.count("<table>") == page.count("<details><summary>") >= 3
