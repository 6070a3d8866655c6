"""Distances between generated and reference jets, seeded and exactly reproducible.

Per observable (Aspen Open Jets, arXiv:2412.10504):

- :func:`kl_divergence`: quantile-binned KL(reference || generated), 50 bins whose edges sit at
  the reference quantiles 0.001 ... 0.999.
- :func:`w1`: the 1-D Wasserstein distance by the JetNet convention: ``num_batches`` (5) draws of
  ``num_samples`` (50 k) values with replacement from each sample, ``scipy.stats.
  wasserstein_distance`` on each draw, mean and standard deviation over draws.

The JetNet standard set for generative jet models (Kansal et al., arXiv:2211.10295):

- :func:`w1m` (jet mass), :func:`w1p` (constituent features, averaged), :func:`w1efp` (energy
  flow polynomials), :func:`fpd` (Frechet physics distance, extrapolated to infinite sample
  size) and :func:`kpd` (kernel physics distance: unbiased MMD^2 with a cubic polynomial kernel).
  :func:`jetnet_metrics` computes them all from two :class:`jetfm.Jets`.

Pitfalls of the reference library that this module avoids: every function returns a
:class:`Distance` (value and error, never a bare tuple where a scalar is documented); every draw
comes from ``numpy.random.default_rng(seed)`` so the same seed gives the same numbers; features
are read from :class:`~jetfm.Jets` by column name, so a mask column can never be read as a mass.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import linalg, stats

from jetfm.jets import Jets

KL_BINS = 50
KL_QUANTILES = (0.001, 0.999)
#: added to every bin's probability (dimensionless) before the KL sum, so an empty generated
#: bin gives a large but finite penalty
KL_EPS = 1e-6
W1_SAMPLES = 50_000
W1_BATCHES = 5


@dataclass(frozen=True)
class Distance:
    """A distance with its uncertainty (same units as the distance)."""
    value: float
    error: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)

    def __iter__(self):  # lets ``value, error = w1(...)`` read naturally
        return iter((self.value, self.error))


def _finite_1d(x, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64).ravel()
    a = a[np.isfinite(a)]
    if a.size == 0:
        raise ValueError(f"{name}: no finite values")
    return a


# --------------------------------------------------------------------------- KL
def quantile_edges(reference, n_bins: int = KL_BINS,
                   quantiles: tuple[float, float] = KL_QUANTILES) -> np.ndarray:
    """Bin edges at ``n_bins + 1`` equally spaced quantiles of ``reference`` between
    ``quantiles[0]`` and ``quantiles[1]``.

    Repeated edges (discrete observables such as the number of constituents) are merged, so the
    result may have fewer bins; at least one bin always remains.
    """
    ref = _finite_1d(reference, "reference")
    edges = np.unique(np.quantile(ref, np.linspace(quantiles[0], quantiles[1], n_bins + 1)))
    if edges.size < 2:  # a constant reference: one bin around the value
        edges = np.array([edges[0] - 0.5, edges[0] + 0.5])
    return edges


def binned_probabilities(x, edges: np.ndarray, overflow: bool = True) -> np.ndarray:
    """Fraction of ``x`` in each bin of ``edges``.

    With ``overflow`` values beyond the outer edges count in the outermost bins, so a generator
    that puts mass outside the reference range is penalised instead of silently renormalised.
    """
    a = _finite_1d(x, "sample")
    if overflow:
        a = np.clip(a, edges[0], edges[-1])
    counts, _ = np.histogram(a, bins=edges)
    return counts / max(counts.sum(), 1)


def kl_divergence(reference, generated, n_bins: int = KL_BINS,
                  quantiles: tuple[float, float] = KL_QUANTILES, eps: float = KL_EPS,
                  overflow: bool = True) -> float:
    """KL(reference || generated) of two 1-D samples in nats, on reference-quantile bins.

    The histograms are densities; multiplied by the bin widths they are the probabilities
    ``p_i`` (reference) and ``q_i`` (generated), to which ``eps`` is added before renormalising;
    KL = sum_i p_i ln(p_i / q_i). (Feeding the densities themselves to ``scipy.stats.entropy``,
    as is sometimes done, weights unequal bins by 1/width: wrong for quantile bins.)
    """
    edges = quantile_edges(reference, n_bins, quantiles)
    p = binned_probabilities(reference, edges, overflow) + eps
    q = binned_probabilities(generated, edges, overflow) + eps
    p, q = p / p.sum(), q / q.sum()
    return float(np.sum(p * np.log(p / q)))


# --------------------------------------------------------------------------- W1
def w1(reference, generated, num_samples: int = W1_SAMPLES, num_batches: int = W1_BATCHES,
       seed: int = 0) -> Distance:
    """Wasserstein-1 of two 1-D samples by the JetNet convention, seeded.

    Each of ``num_batches`` batches draws ``num_samples`` values with replacement from each
    sample; returns the mean and standard deviation of the batches' W1 (units of the input).
    """
    a = _finite_1d(reference, "reference")
    b = _finite_1d(generated, "generated")
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(num_batches):
        ia = rng.integers(0, a.size, num_samples)
        ib = rng.integers(0, b.size, num_samples)
        vals.append(stats.wasserstein_distance(a[ia], b[ib]))
    return Distance(float(np.mean(vals)), float(np.std(vals)))


def observable_distances(reference: Mapping[str, np.ndarray], generated: Mapping[str, np.ndarray],
                         names: Sequence[str] | None = None, seed: int = 0,
                         num_samples: int = W1_SAMPLES, num_batches: int = W1_BATCHES
                         ) -> dict[str, dict[str, float]]:
    """KL and W1 (mean, std) for each observable in both mappings (or ``names``).

    Returns ``{name: {"kl": ..., "w1": ..., "w1_std": ...}}``.
    """
    names = [n for n in (names or reference) if n in reference and n in generated]
    out = {}
    for k, name in enumerate(names):
        d = w1(reference[name], generated[name], num_samples, num_batches, seed=seed + k)
        out[name] = {"kl": kl_divergence(reference[name], generated[name]),
                     "w1": d.value, "w1_std": d.error}
    return out


# ------------------------------------------------------------------- JetNet set
def _sample_rows(n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, n, size)


def w1m(reference_mass, generated_mass, num_samples: int = W1_SAMPLES,
        num_batches: int = W1_BATCHES, seed: int = 0) -> Distance:
    """W1 of the jet mass distributions (GeV): a :class:`Distance`, never a tuple."""
    return w1(reference_mass, generated_mass, num_samples, num_batches, seed)


def w1p(reference: np.ndarray, reference_mask: np.ndarray, generated: np.ndarray,
        generated_mask: np.ndarray, num_samples: int = W1_SAMPLES, num_batches: int = W1_BATCHES,
        seed: int = 0) -> tuple[Distance, np.ndarray]:
    """W1 of each constituent feature, JetNet style, averaged over features.

    ``reference``/``generated``: ``(N, P, F)`` constituent features; masks ``(N, P)``. Each batch
    draws ``num_samples`` jets with replacement from each side and compares the pooled real
    constituents feature by feature. Returns (the feature average as a :class:`Distance`,
    per-feature means ``(F,)``).
    """
    rng = np.random.default_rng(seed)
    ref, gen = np.asarray(reference, np.float64), np.asarray(generated, np.float64)
    rm, gm = np.asarray(reference_mask, bool), np.asarray(generated_mask, bool)
    r, g = ref[rm], gen[gm]  # every real constituent once: (M_ref, F), (M_gen, F)
    per = np.zeros((num_batches, ref.shape[-1]))
    for b in range(num_batches):
        ir = _sample_rows(len(ref), num_samples, rng)
        ig = _sample_rows(len(gen), num_samples, rng)
        # the pooled constituents of the drawn jets, as weights: each constituent counts as
        # often as its jet was drawn. The same distribution as concatenating the draws, so the
        # same W1, without sorting num_samples x constituents values per feature
        wr = np.broadcast_to(np.bincount(ir, minlength=len(ref))[:, None], rm.shape)[rm]
        wg = np.broadcast_to(np.bincount(ig, minlength=len(gen))[:, None], gm.shape)[gm]
        for f in range(ref.shape[-1]):
            per[b, f] = stats.wasserstein_distance(r[:, f], g[:, f], wr, wg)
    return Distance(float(per.mean(1).mean()), float(per.mean(1).std())), per.mean(0)


# ------------------------------------------------------------ energy flow polynomials
def _mult(*edges: tuple[int, int]) -> tuple[tuple[int, int], ...]:
    return tuple(edges)


#: The 20 connected (prime) loopless multigraphs with 1 to 4 edges, as edge lists (a repeated
#: edge is a multi-edge). EFP_G = sum_{i_1..i_n} z_{i_1}...z_{i_n} prod_{(k,l) in G}
#: theta_{i_k i_l}, with kappa = 1 (z_i = pT_i / sum pT) and beta = 1 (theta_ij = Delta R_ij).
EFP_GRAPHS: dict[str, tuple[tuple[int, int], ...]] = {
    # degree 1
    "d1_edge": _mult((0, 1)),
    # degree 2
    "d2_double": _mult((0, 1), (0, 1)),
    "d2_path3": _mult((0, 1), (1, 2)),
    # degree 3
    "d3_triple": _mult((0, 1), (0, 1), (0, 1)),
    "d3_path3_double": _mult((0, 1), (0, 1), (1, 2)),
    "d3_triangle": _mult((0, 1), (1, 2), (2, 0)),
    "d3_path4": _mult((0, 1), (1, 2), (2, 3)),
    "d3_star4": _mult((0, 1), (0, 2), (0, 3)),
    # degree 4, 2 vertices
    "d4_quadruple": _mult((0, 1), (0, 1), (0, 1), (0, 1)),
    # degree 4, 3 vertices
    "d4_path3_triple": _mult((0, 1), (0, 1), (0, 1), (1, 2)),
    "d4_path3_double_double": _mult((0, 1), (0, 1), (1, 2), (1, 2)),
    "d4_triangle_double": _mult((0, 1), (0, 1), (1, 2), (2, 0)),
    # degree 4, 4 vertices
    "d4_path4_end_double": _mult((0, 1), (0, 1), (1, 2), (2, 3)),
    "d4_path4_middle_double": _mult((0, 1), (1, 2), (1, 2), (2, 3)),
    "d4_star4_double": _mult((0, 1), (0, 1), (0, 2), (0, 3)),
    "d4_square": _mult((0, 1), (1, 2), (2, 3), (3, 0)),
    "d4_paw": _mult((0, 1), (1, 2), (2, 0), (0, 3)),
    # degree 4, 5 vertices
    "d4_path5": _mult((0, 1), (1, 2), (2, 3), (3, 4)),
    "d4_star5": _mult((0, 1), (0, 2), (0, 3), (0, 4)),
    "d4_fork5": _mult((0, 1), (0, 2), (0, 3), (3, 4)),
}


def _efp_einsum(edges: tuple[tuple[int, int], ...]) -> tuple[str, list[tuple[str, int]]]:
    """einsum subscripts for one graph: operands are z (b, i) per vertex and theta^m (b, i, j)
    per distinct edge of multiplicity m."""
    letters = "ijklm"
    n_vert = 1 + max(max(e) for e in edges)
    counts: dict[tuple[int, int], int] = {}
    for e in edges:
        key = tuple(sorted(e))
        counts[key] = counts.get(key, 0) + 1
    terms = [("z", 1, "a" + letters[v]) for v in range(n_vert)]
    terms += [("t", m, "a" + letters[u] + letters[v]) for (u, v), m in sorted(counts.items())]
    spec = ",".join(t[2] for t in terms) + "->a"
    return spec, [(t[0], t[1]) for t in terms]


_EFP_PLANS = {name: _efp_einsum(g) for name, g in EFP_GRAPHS.items()}


def efps(pt: np.ndarray, eta: np.ndarray, phi: np.ndarray, mask: np.ndarray,
         graphs: Iterable[str] | None = None, chunk_size: int = 512) -> np.ndarray:
    """Energy flow polynomials (kappa = 1, beta = 1) of every jet: ``(N, G)`` float64.

    ``pt`` (GeV), ``eta``, ``phi`` (radians): ``(N, P)`` constituent kinematics (absolute or
    relative to the jet axis; only differences enter); ``mask`` ``(N, P)``. ``graphs`` selects
    names of :data:`EFP_GRAPHS` (default all 20, in that order). Jets are processed in chunks
    trimmed to the chunk's largest multiplicity.
    """
    names = list(graphs) if graphs is not None else list(EFP_GRAPHS)
    pt = np.where(mask, np.asarray(pt, np.float64), 0.0)
    eta, phi = np.asarray(eta, np.float64), np.asarray(phi, np.float64)
    mask = np.asarray(mask, bool)
    n = len(pt)
    out = np.zeros((n, len(names)))
    counts = mask.sum(1)
    order = np.argsort(counts, kind="stable")  # similar multiplicities share a chunk
    for lo in range(0, n, chunk_size):
        rows = order[lo:lo + chunk_size]
        p = max(int(counts[rows].max()), 1)
        # real constituents come first in a Jets, so [:p] keeps them all
        w = pt[rows, :p]
        z = w / np.maximum(w.sum(1, keepdims=True), 1e-300)
        de = eta[rows, :p, None] - eta[rows, None, :p]
        dp = phi[rows, :p, None] - phi[rows, None, :p]
        dp = (dp + np.pi) % (2 * np.pi) - np.pi
        theta = np.sqrt(de ** 2 + dp ** 2)
        powers = {1: theta, 2: theta ** 2}
        powers[3], powers[4] = powers[2] * theta, powers[2] ** 2
        for g, name in enumerate(names):
            spec, ops = _EFP_PLANS[name]
            arrays = [z if kind == "z" else powers[m] for kind, m in ops]
            out[rows, g] = np.einsum(spec, *arrays, optimize="greedy")
    return out


def jet_efps(jets: Jets, graphs: Iterable[str] | None = None) -> np.ndarray:
    """EFPs ``(N, G)`` of a :class:`Jets` from its constituents' (px, py, pz)."""
    from jetfm.physics.features import constituent_kinematics

    pt, eta, phi = constituent_kinematics(jets)
    return efps(pt, eta, phi, jets.mask, graphs)


def w1efp(reference_efps: np.ndarray, generated_efps: np.ndarray, num_samples: int = W1_SAMPLES,
          num_batches: int = W1_BATCHES, seed: int = 0) -> tuple[Distance, np.ndarray]:
    """W1 of each EFP ``(N, G)``, averaged over EFPs as JetNet does (raw, unnormalised values).

    Returns (average :class:`Distance` with the std over batches, per-EFP means ``(G,)``).
    """
    rng = np.random.default_rng(seed)
    a, b = np.asarray(reference_efps, np.float64), np.asarray(generated_efps, np.float64)
    per = np.zeros((num_batches, a.shape[1]))
    for k in range(num_batches):
        ia, ib = _sample_rows(len(a), num_samples, rng), _sample_rows(len(b), num_samples, rng)
        for g in range(a.shape[1]):
            per[k, g] = stats.wasserstein_distance(a[ia, g], b[ib, g])
    return Distance(float(per.mean(1).mean()), float(per.mean(1).std())), per.mean(0)


# -------------------------------------------------------------------- FPD and KPD
def _normalise(reference: np.ndarray, generated: np.ndarray):
    """Scale both feature sets by the reference's per-feature mean and std (features of very
    different size, like EFPs of different degree, then weigh alike)."""
    mu, sd = reference.mean(0), reference.std(0)
    sd = np.where(sd > 0, sd, 1.0)
    return (reference - mu) / sd, (generated - mu) / sd


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray,
                     sigma2: np.ndarray) -> float:
    """Frechet distance of two Gaussians: |mu1 - mu2|^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2))."""
    mu1, mu2 = np.atleast_1d(mu1), np.atleast_1d(mu2)
    s1, s2 = np.atleast_2d(sigma1), np.atleast_2d(sigma2)
    covmean = linalg.sqrtm(s1 @ s2)
    if not np.isfinite(covmean).all():  # nearly singular product: regularise
        off = np.eye(len(s1)) * 1e-6
        covmean = linalg.sqrtm((s1 + off) @ (s2 + off))
    covmean = np.real(covmean)
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def _frechet_of_samples(x: np.ndarray, y: np.ndarray) -> float:
    return frechet_distance(x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False))


def fpd(reference: np.ndarray, generated: np.ndarray, min_samples: int = 20_000,
        max_samples: int = 50_000, num_batches: int = 20, num_points: int = 10,
        normalise: bool = True, seed: int = 0) -> Distance:
    """Frechet physics distance of two feature sets ``(N, F)`` (JetNet uses EFPs), extrapolated
    to infinite sample size.

    For ``num_points`` sizes n between ``min_samples`` and ``max_samples`` the Frechet distance
    of ``num_batches`` draws of n rows (with replacement) is averaged; a straight line in 1/n
    is fitted and its intercept (n -> infinity) is the FPD, its standard error the error. The
    sizes are capped at the smaller sample's size (min = 40 % of max then), so small demo samples
    are not resampled far beyond what they hold.
    """
    x, y = np.asarray(reference, np.float64), np.asarray(generated, np.float64)
    if normalise:
        x, y = _normalise(x, y)
    cap = min(len(x), len(y))
    if max_samples > cap:
        max_samples, min_samples = cap, max(2 * x.shape[1] + 2, int(0.4 * cap))
    min_samples = min(min_samples, max_samples)
    rng = np.random.default_rng(seed)
    sizes = np.unique(np.linspace(min_samples, max_samples, num_points).astype(int))
    vals = []
    for n in sizes:
        vals.append(np.mean([_frechet_of_samples(x[rng.integers(0, len(x), n)],
                                                 y[rng.integers(0, len(y), n)])
                             for _ in range(num_batches)]))
    inv = 1.0 / sizes
    if len(sizes) < 3:  # cannot fit a line with an error: report the largest-n value
        return Distance(float(vals[-1]), float("nan"))
    fit = stats.linregress(inv, vals)
    return Distance(float(fit.intercept), float(fit.intercept_stderr))


def _mmd2_poly(x: np.ndarray, y: np.ndarray, degree: int = 3) -> float:
    """Unbiased MMD^2 with the kernel k(a, b) = (a.b / d + 1)^degree."""
    d = x.shape[1]
    kxx = (x @ x.T / d + 1) ** degree
    kyy = (y @ y.T / d + 1) ** degree
    kxy = (x @ y.T / d + 1) ** degree
    m, n = len(x), len(y)
    return float((kxx.sum() - np.trace(kxx)) / (m * (m - 1))
                 + (kyy.sum() - np.trace(kyy)) / (n * (n - 1)) - 2 * kxy.mean())


def kpd(reference: np.ndarray, generated: np.ndarray, num_batches: int = 10,
        batch_size: int = 5_000, normalise: bool = True, seed: int = 0,
        degree: int = 3) -> Distance:
    """Kernel physics distance: unbiased MMD^2 with a polynomial kernel of ``degree`` (cubic by
    default; JetNet 0.2.5 uses 4) between feature sets ``(N, F)``, over ``num_batches`` draws of
    ``batch_size`` rows with replacement.

    Returns the median over batches and, as error, half the central 68 % inter-quantile range
    (as JetNet). ``batch_size`` is capped at the smaller sample's size.
    """
    x, y = np.asarray(reference, np.float64), np.asarray(generated, np.float64)
    if normalise:
        x, y = _normalise(x, y)
    batch_size = max(2, min(batch_size, len(x), len(y)))
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(num_batches):
        ix, iy = rng.integers(0, len(x), batch_size), rng.integers(0, len(y), batch_size)
        vals.append(_mmd2_poly(x[ix], y[iy], degree))
    lo, hi = np.percentile(vals, [15.865, 84.135])
    return Distance(float(np.median(vals)), float((hi - lo) / 2))


# -------------------------------------------------------------------------- all of it
#: constituent features of W1P: relative pT and the coordinates relative to the jet axis
W1P_FEATURES = ("eta_rel", "phi_rel", "pt_rel")


def constituent_features(jets: Jets) -> np.ndarray:
    """``(N, P, 3)`` (eta_rel, phi_rel, pt_rel = pT / jet pT) of every constituent."""
    from jetfm.physics.features import constituent_kinematics, relative_to_jet
    from jetfm.physics.observables import jet_kinematics

    kin = constituent_kinematics(jets)
    deta, dphi = relative_to_jet(jets, kinematics=kin)
    jpt = jet_kinematics(jets)["pt"]
    ptrel = kin[0] / np.maximum(jpt, 1e-12)[:, None]
    return np.stack([deta, dphi, np.where(jets.mask, ptrel, 0.0)], -1)


def jetnet_metrics(reference: Jets, generated: Jets, seed: int = 0,
                   num_samples: int = W1_SAMPLES, num_batches: int = W1_BATCHES,
                   fpd_kw: dict | None = None, kpd_kw: dict | None = None) -> dict[str, float]:
    """The JetNet standard set between two :class:`Jets` (needs px, py, pz, E columns).

    Returns ``{"w1m", "w1m_err", "w1p", "w1p_err", "w1efp", "w1efp_err", "fpd", "fpd_err",
    "kpd", "kpd_err"}``; W1M in GeV, W1P in the units of :data:`W1P_FEATURES`, EFP-based values
    dimensionless. EFPs: :data:`EFP_GRAPHS`.
    """
    from jetfm.physics.observables import jet_kinematics

    out: dict[str, float] = {}
    m = w1m(jet_kinematics(reference)["mass"], jet_kinematics(generated)["mass"],
            num_samples, num_batches, seed)
    p, _ = w1p(constituent_features(reference), reference.mask, constituent_features(generated),
               generated.mask, num_samples, num_batches, seed + 1)
    er, eg = jet_efps(reference), jet_efps(generated)
    e, _ = w1efp(er, eg, num_samples, num_batches, seed + 2)
    f = fpd(er, eg, seed=seed + 3, **(fpd_kw or {}))
    k = kpd(er, eg, seed=seed + 4, **(kpd_kw or {}))
    for name, d in (("w1m", m), ("w1p", p), ("w1efp", e), ("fpd", f), ("kpd", k)):
        out[name], out[name + "_err"] = d.value, d.error
    return out


__all__ = ["Distance", "quantile_edges", "binned_probabilities", "kl_divergence", "w1",
           "observable_distances", "w1m", "w1p", "EFP_GRAPHS", "efps", "jet_efps", "w1efp",
           "frechet_distance", "fpd", "kpd", "W1P_FEATURES", "constituent_features",
           "jetnet_metrics"]
