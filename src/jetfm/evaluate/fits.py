"""Power-law fits of a metric against the training-set size D: ``metric = a * D^-gamma``.

The fit is a weighted least-squares straight line in log space, ln(metric) = ln(a) - gamma ln(D),
on the seed means at each D, with the seed spread (standard deviation over seeds) as the
uncertainty: sigma_ln = std / mean. With uncertainties from several seeds the parameter errors are
the absolute ones of the weighted fit (as ``scipy.optimize.curve_fit(absolute_sigma=True)``); with
a single seed per D (no spread) the points are weighed alike and the errors come from the scatter
about the line (``absolute_sigma=False``), NaN when the line goes through every point.

Scan results are "long" rows (see :mod:`jetfm.evaluate.scan`): ``target, arm, reference,
observable, metric, D, seed, value``; :func:`aggregate` makes the seed summaries and
:func:`fit_results` the fits per (target, arm, reference, observable, metric).
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

#: a seed spread below this fraction of the mean is floored to it (a fit weight must be finite)
MIN_RELATIVE_ERROR = 1e-3

GROUP_KEYS = ("target", "arm", "reference", "observable", "metric")


@dataclass(frozen=True)
class PowerLawFit:
    """``metric = a * D^-gamma`` with 1-sigma errors; chi2 over ndf of the log-space fit."""
    a: float
    a_err: float
    gamma: float
    gamma_err: float
    chi2: float
    ndf: int
    n_points: int

    def predict(self, d) -> np.ndarray:
        return self.a * np.asarray(d, np.float64) ** (-self.gamma)

    def to_dict(self) -> dict:
        return asdict(self)


def fit_power_law(d: Sequence[float], mean: Sequence[float],
                  err: Sequence[float] | None = None) -> PowerLawFit:
    """Fit ``mean = a * d^-gamma``; ``err`` is the seed spread at each D (same units as mean).

    Points with a non-positive or non-finite mean cannot enter a log-space fit and are skipped.
    Needs at least two distinct D; raises ValueError otherwise.
    """
    d = np.asarray(d, np.float64)
    y = np.asarray(mean, np.float64)
    e = np.zeros_like(y) if err is None else np.asarray(err, np.float64)
    ok = np.isfinite(y) & (y > 0) & np.isfinite(d) & (d > 0)
    d, y, e = d[ok], y[ok], e[ok]
    if len(np.unique(d)) < 2:
        raise ValueError("a power-law fit needs positive metric values at two or more sizes D")
    x = np.log(d)
    ly = np.log(y)
    have_sigma = bool(np.any(e > 0))
    sig = np.maximum(np.where(np.isfinite(e), e, 0.0) / y, MIN_RELATIVE_ERROR) if have_sigma \
        else np.ones_like(y)
    w = 1.0 / sig ** 2
    design = np.stack([np.ones_like(x), -x], axis=1)  # parameters (ln a, gamma)
    cov = np.linalg.inv(design.T @ (design * w[:, None]))
    params = cov @ (design.T @ (w * ly))
    resid = ly - design @ params
    chi2 = float(np.sum(w * resid ** 2))
    ndf = len(y) - 2
    if not have_sigma:  # no seed spread: errors from the scatter about the line
        cov = cov * (chi2 / ndf) if ndf > 0 else cov * math.nan
    ln_a, gamma = params
    a = math.exp(ln_a)
    return PowerLawFit(a=a, a_err=a * math.sqrt(cov[0, 0]), gamma=float(gamma),
                       gamma_err=float(math.sqrt(cov[1, 1])), chi2=chi2, ndf=ndf,
                       n_points=len(y))


def aggregate(rows: Iterable[dict]) -> list[dict]:
    """Seed summaries of long result rows: one dict per (target, arm, reference, observable,
    metric, D) with ``mean``, ``std`` (over seeds, ddof 0), ``min``, ``max``, ``n_seeds``."""
    groups: dict[tuple, list[float]] = {}
    for r in rows:
        key = tuple(r[k] for k in GROUP_KEYS) + (int(r["D"]),)
        groups.setdefault(key, []).append(float(r["value"]))
    out = []
    for key in sorted(groups, key=lambda k: tuple(str(x) for x in k[:-1]) + (k[-1],)):
        v = np.asarray(groups[key])
        v = v[np.isfinite(v)]
        entry = dict(zip(GROUP_KEYS + ("D",), key))
        entry.update(mean=float(v.mean()) if v.size else math.nan,
                     std=float(v.std()) if v.size else math.nan,
                     min=float(v.min()) if v.size else math.nan,
                     max=float(v.max()) if v.size else math.nan, n_seeds=int(v.size))
        out.append(entry)
    return out


def fit_results(rows: Iterable[dict]) -> list[dict]:
    """Power-law fits on the seed summaries, one dict per (target, arm, reference, observable,
    metric) with the keys of :class:`PowerLawFit` (NaN where a fit is impossible) and the sizes
    used."""
    summary = aggregate(rows)
    groups: dict[tuple, list[dict]] = {}
    for s in summary:
        groups.setdefault(tuple(s[k] for k in GROUP_KEYS), []).append(s)
    out = []
    for key, pts in groups.items():
        entry = dict(zip(GROUP_KEYS, key))
        pts = sorted(pts, key=lambda p: p["D"])
        try:
            fit = fit_power_law([p["D"] for p in pts], [p["mean"] for p in pts],
                                [p["std"] for p in pts])
            entry.update(fit.to_dict())
        except ValueError:
            entry.update({f: math.nan for f in ("a", "a_err", "gamma", "gamma_err", "chi2")},
                         ndf=0, n_points=0)
        entry["sizes"] = [p["D"] for p in pts]
        out.append(entry)
    return out


__all__ = ["PowerLawFit", "fit_power_law", "aggregate", "fit_results", "GROUP_KEYS"]
