"""A summary of any jet file: format, counts, species, pT range (``jetfm inspect``)."""
from __future__ import annotations

import os
from typing import Any

import numpy as np

from jetfm.errors import InputError
from jetfm.io import detect_format, iter_jets
from jetfm.physics.features import SPECIES, species


def summarise(path: str | os.PathLike, max_jets: int | None = None) -> dict:
    """Stream a file once and return a JSON-ready summary."""
    path = os.fspath(path)
    fmt = detect_format(path)
    n = 0
    nmin, nmax, nsum = None, 0, 0
    ptmin, ptmax = np.inf, -np.inf
    sp = np.zeros(len(SPECIES) + 1, np.int64)
    pdg: dict[int, int] = {}
    labels: dict[int, int] = {}
    label_scheme = None
    kw = {"stop": max_jets} if max_jets else {}
    for jets in iter_jets(path, chunk_size=50_000, **kw):
        counts = jets.n_constituents
        n += len(jets)
        nmin = int(counts.min()) if nmin is None else min(nmin, int(counts.min()))
        nmax = max(nmax, int(counts.max()))
        nsum += int(counts.sum())
        if "pt" in jets.jet_names:
            pt = jets.j("pt")
            ptmin, ptmax = min(ptmin, float(pt.min())), max(ptmax, float(pt.max()))
        s = species(jets)[jets.mask]
        sp += np.bincount(s.astype(np.int64) + 1, minlength=len(SPECIES) + 1)
        if fmt == "aoj":
            ids, cnt = np.unique(jets.c("pdgId")[jets.mask].astype(np.int64), return_counts=True)
            for i, c in zip(ids, cnt):
                pdg[int(i)] = pdg.get(int(i), 0) + int(c)
        if "label" in jets.jet_names:
            label_scheme = jets.meta.get("label_scheme")
            ids, cnt = np.unique(jets.j("label").astype(np.int64), return_counts=True)
            for i, c in zip(ids, cnt):
                labels[int(i)] = labels.get(int(i), 0) + int(c)
    info: dict[str, Any] = {
        "path": path, "format": fmt, "n_jets": n,
        "constituents_min": nmin or 0, "constituents_mean": nsum / n if n else 0.0,
        "constituents_max": nmax,
        "jet_pt_min": float(ptmin) if n else 0.0, "jet_pt_max": float(ptmax) if n else 0.0,
        "species": {name: int(sp[i + 1]) for i, name in enumerate(SPECIES)},
    }
    if sp[0]:
        info["species"]["unknown"] = int(sp[0])
    if pdg:
        info["pdgId"] = {str(k): v for k, v in sorted(pdg.items())}
    if labels:
        from jetfm.io.jetclass import jetclass_class_name

        named: dict[str, int] = {}
        for k, v in sorted(labels.items()):
            name = jetclass_class_name(k, label_scheme or "jetclass")
            named[name] = named.get(name, 0) + v
        info["labels"] = named
    if fmt == "aoj":
        from jetfm.io.aoj import read_attrs

        attrs = read_attrs(path)
        info["attrs"] = {k: str(v) for k, v in attrs.items()}
        want = attrs.get("n_jets")
        if max_jets is None and want is not None and int(want) != n:
            raise InputError(f"incomplete file: it holds {n} jets but its n_jets attribute "
                             f"says {int(want)}", path)
    return info
