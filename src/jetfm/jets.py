"""The one in-memory type of jetfm: padded jet constituents with named columns.

A :class:`Jets` holds ``N`` jets of at most ``P`` constituents each:

- ``constituents``: ``(N, P, F)`` float32, one named column per feature (``px``, ``py``, ``pz``,
  ``E`` in GeV, ``d0``/``dz`` in cm, ``charge``, ``pdgId``, ...). Padding rows are all zero.
- ``mask``: ``(N, P)`` bool, True for a real constituent. Real constituents come first.
- ``jet``: ``(N, K)`` float32, one named column per jet field (``pt``, ``eta``, ``phi``,
  ``msoftdrop``, ``tau1``, ``label``, ...).
- ``event_info``: optional ``(N, 3)`` int64 ``run, lumi, event``.
- ``meta``: free-form provenance (source files, generator settings) carried along.

Columns are always addressed by name (``jets.c("px")``, ``jets.j("pt")``), never by a bare index:
feature-order mix-ups are the most common defect in jet ML code.

Missing values: the d0/dz columns of neutral candidates are NaN in memory (the AOJ files store
the sentinel -1; the readers and writers translate). Only columns listed in
:data:`NULLABLE_COLUMNS` may hold NaN; anything else non-finite is rejected by :meth:`validate`.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from jetfm.errors import InputError

#: constituent columns in which NaN means "not measured" (no track for a neutral candidate)
NULLABLE_COLUMNS = frozenset({"d0", "d0Err", "dz", "dzErr"})

EVENT_INFO_NAMES = ("run", "lumi", "event")


@dataclass
class Jets:
    constituents: np.ndarray
    mask: np.ndarray
    jet: np.ndarray
    constituent_names: tuple[str, ...]
    jet_names: tuple[str, ...]
    event_info: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.constituents = np.asarray(self.constituents, dtype=np.float32)
        self.mask = np.asarray(self.mask, dtype=bool)
        self.jet = np.asarray(self.jet, dtype=np.float32)
        self.constituent_names = tuple(self.constituent_names)
        self.jet_names = tuple(self.jet_names)
        if self.jet.ndim == 1 and self.jet.size == 0:
            self.jet = self.jet.reshape(len(self.mask), 0)
        if self.event_info is not None:
            self.event_info = np.asarray(self.event_info, dtype=np.int64)
        self._check_shapes()
        self._cidx = {n: i for i, n in enumerate(self.constituent_names)}
        self._jidx = {n: i for i, n in enumerate(self.jet_names)}

    # ------------------------------------------------------------------ shape
    def _check_shapes(self) -> None:
        c, m, j = self.constituents, self.mask, self.jet
        if c.ndim != 3:
            raise InputError(f"constituents must be (N, P, F), got shape {c.shape}")
        if m.shape != c.shape[:2]:
            raise InputError(f"mask shape {m.shape} does not match constituents {c.shape[:2]}")
        if len(self.constituent_names) != c.shape[2]:
            raise InputError(
                f"{len(self.constituent_names)} constituent names for {c.shape[2]} columns")
        if len(set(self.constituent_names)) != len(self.constituent_names):
            raise InputError(f"duplicate constituent column names {self.constituent_names}")
        if j.ndim != 2 or j.shape[0] != c.shape[0]:
            raise InputError(f"jet fields must be (N={c.shape[0]}, K), got shape {j.shape}")
        if len(self.jet_names) != j.shape[1]:
            raise InputError(f"{len(self.jet_names)} jet field names for {j.shape[1]} columns")
        if len(set(self.jet_names)) != len(self.jet_names):
            raise InputError(f"duplicate jet field names {self.jet_names}")
        if self.event_info is not None and self.event_info.shape != (c.shape[0], 3):
            raise InputError(f"event_info must be (N, 3), got {self.event_info.shape}")

    def validate(self, source: str | None = None) -> Jets:
        """Raise :class:`InputError` on non-finite values or padding that is not zero.

        NaN is allowed only in :data:`NULLABLE_COLUMNS`; infinities nowhere.
        """
        cons = self.constituents
        # one pass over the array for the common case; details only when something is wrong
        finite = np.isfinite(cons).all(axis=(0, 1)) if cons.size else np.ones(0, bool)
        for i, name in enumerate(self.constituent_names):
            if finite[i]:
                continue
            col = cons[..., i]
            bad = np.isinf(col) if name in NULLABLE_COLUMNS else ~np.isfinite(col)
            if bad.any():
                n = int(bad.any(axis=1).sum())
                raise InputError(f"non-finite values in constituent column '{name}' of {n} jets",
                                 source)
        if not np.isfinite(self.jet).all():
            for name in self.jet_names:
                col = self.jet[:, self._jidx[name]]
                if (~np.isfinite(col)).any():
                    n = int((~np.isfinite(col)).sum())
                    raise InputError(f"non-finite values in jet field '{name}' of {n} jets",
                                     source)
        # padding must be all zero (NaN != 0, so NaN padding is caught too)
        if cons.size and ((cons != 0).any(axis=-1) & ~self.mask).any():
            raise InputError("padding constituents are not all zero", source)
        return self

    # --------------------------------------------------------------- columns
    def __len__(self) -> int:
        return self.constituents.shape[0]

    @property
    def n_max(self) -> int:
        """P, the padded number of constituents."""
        return self.constituents.shape[1]

    @property
    def n_constituents(self) -> np.ndarray:
        """(N,) int64 number of real constituents per jet."""
        return self.mask.sum(axis=1).astype(np.int64)

    def has(self, name: str) -> bool:
        return name in self._cidx or name in self._jidx

    def c(self, name: str) -> np.ndarray:
        """Constituent column ``name`` as an (N, P) view (zero on padding)."""
        try:
            return self.constituents[..., self._cidx[name]]
        except KeyError:
            raise KeyError(f"no constituent column '{name}'; "
                           f"have {self.constituent_names}") from None

    def j(self, name: str) -> np.ndarray:
        """Jet field ``name`` as an (N,) view."""
        try:
            return self.jet[:, self._jidx[name]]
        except KeyError:
            raise KeyError(f"no jet field '{name}'; have {self.jet_names}") from None

    constituent = c
    field = j

    def select_columns(self, constituents: Sequence[str] | None = None,
                       jet: Sequence[str] | None = None) -> Jets:
        """A copy with only the named columns, in the order given."""
        cn = tuple(constituents) if constituents is not None else self.constituent_names
        jn = tuple(jet) if jet is not None else self.jet_names
        return Jets(np.stack([self.c(n) for n in cn], axis=-1) if cn else
                    np.zeros(self.constituents.shape[:2] + (0,), np.float32),
                    self.mask.copy(),
                    np.stack([self.j(n) for n in jn], axis=-1) if jn else
                    np.zeros((len(self), 0), np.float32),
                    cn, jn, self.event_info, dict(self.meta))

    def with_constituent_columns(self, **cols: np.ndarray) -> Jets:
        """A copy with columns added or replaced; values on padding are set to zero."""
        names = list(self.constituent_names)
        arrs = [self.constituents[..., i] for i in range(len(names))]
        for name, val in cols.items():
            val = np.where(self.mask, np.asarray(val, np.float32), np.float32(0))
            if name in self._cidx:
                arrs[self._cidx[name]] = val
            else:
                names.append(name)
                arrs.append(val)
        return Jets(np.stack(arrs, axis=-1), self.mask.copy(), self.jet.copy(), tuple(names),
                    self.jet_names, self.event_info, dict(self.meta))

    def with_jet_fields(self, **cols: np.ndarray) -> Jets:
        """A copy with jet fields added or replaced."""
        names = list(self.jet_names)
        arrs = [self.jet[:, i] for i in range(len(names))]
        for name, val in cols.items():
            val = np.broadcast_to(np.asarray(val, np.float32), (len(self),))
            if name in self._jidx:
                arrs[self._jidx[name]] = val
            else:
                names.append(name)
                arrs.append(val)
        jet = np.stack(arrs, axis=-1) if arrs else np.zeros((len(self), 0), np.float32)
        return Jets(self.constituents.copy(), self.mask.copy(), jet, self.constituent_names,
                    tuple(names), self.event_info, dict(self.meta))

    # --------------------------------------------------------------- slicing
    def __getitem__(self, idx: Any) -> Jets:
        """Select jets: an int, a slice, an index array or a boolean mask over jets."""
        if isinstance(idx, (int, np.integer)):
            idx = slice(int(idx), int(idx) + 1 if int(idx) != -1 else None)
        return Jets(self.constituents[idx], self.mask[idx], self.jet[idx],
                    self.constituent_names, self.jet_names,
                    None if self.event_info is None else self.event_info[idx], dict(self.meta))

    def truncate(self, n_max: int) -> Jets:
        """Keep at most ``n_max`` constituents per jet (the leading ones in storage order)."""
        return Jets(self.constituents[:, :n_max], self.mask[:, :n_max], self.jet,
                    self.constituent_names, self.jet_names, self.event_info, dict(self.meta))

    def pad_to(self, n_max: int) -> Jets:
        """Zero-pad (or truncate) the constituent axis to exactly ``n_max``."""
        if n_max <= self.n_max:
            return self.truncate(n_max)
        n, p, f = self.constituents.shape
        c = np.zeros((n, n_max, f), np.float32)
        m = np.zeros((n, n_max), bool)
        c[:, :p], m[:, :p] = self.constituents, self.mask
        return Jets(c, m, self.jet, self.constituent_names, self.jet_names, self.event_info,
                    dict(self.meta))

    def sort_by(self, key: np.ndarray, descending: bool = True) -> Jets:
        """Re-order the constituents of each jet by ``key`` (N, P); padding stays last."""
        k = np.where(self.mask, key, -np.inf if descending else np.inf)
        order = np.argsort(-k if descending else k, axis=1, kind="stable")
        c = np.take_along_axis(self.constituents, order[..., None], axis=1)
        m = np.take_along_axis(self.mask, order, axis=1)
        return Jets(c, m, self.jet, self.constituent_names, self.jet_names, self.event_info,
                    dict(self.meta))

    @staticmethod
    def concat(parts: Iterable[Jets]) -> Jets:
        """Concatenate along jets; constituent axes are padded to the largest P."""
        parts = list(parts)
        if not parts:
            raise ValueError("nothing to concatenate")
        first = parts[0]
        for p in parts[1:]:
            if p.constituent_names != first.constituent_names or p.jet_names != first.jet_names:
                raise ValueError("cannot concatenate Jets with different columns")
        p_max = max(p.n_max for p in parts)
        parts = [p.pad_to(p_max) for p in parts]
        ev = None
        if all(p.event_info is not None for p in parts):
            ev = np.concatenate([p.event_info for p in parts])
        return Jets(np.concatenate([p.constituents for p in parts]),
                    np.concatenate([p.mask for p in parts]),
                    np.concatenate([p.jet for p in parts]),
                    first.constituent_names, first.jet_names, ev, dict(first.meta))

    # ------------------------------------------------------------ awkward
    def to_awkward(self):
        """An awkward Array of N records: each jet field, plus ``constituents``, a variable-length
        list of records with one field per constituent column (padding removed)."""
        import awkward as ak

        counts = self.n_constituents
        flat = self.constituents[self.mask]  # (total, F), order preserved since mask is leading
        parts = {n: ak.unflatten(flat[:, i], counts) for i, n in enumerate(self.constituent_names)}
        rec = {n: self.j(n) for n in self.jet_names}
        rec["constituents"] = ak.zip(parts, depth_limit=2) if parts else ak.unflatten(
            np.zeros(0), counts)
        if self.event_info is not None:
            for i, n in enumerate(EVENT_INFO_NAMES):
                rec[n] = self.event_info[:, i]
        return ak.zip(rec, depth_limit=1)

    @classmethod
    def from_awkward(cls, arr, n_max: int | None = None,
                     constituents_field: str = "constituents") -> Jets:
        """Inverse of :meth:`to_awkward`. Jets with more than ``n_max`` constituents keep the
        first ``n_max``."""
        import awkward as ak

        fields = [f for f in ak.fields(arr) if f not in (constituents_field, *EVENT_INFO_NAMES)]
        parts = arr[constituents_field]
        cnames = tuple(ak.fields(parts))
        counts = ak.to_numpy(ak.num(parts, axis=1))
        p = int(n_max if n_max is not None else (counts.max() if len(counts) else 0))
        cols = []
        for n in cnames:
            padded = ak.pad_none(parts[n], p, axis=1, clip=True)
            cols.append(ak.to_numpy(ak.fill_none(padded, 0.0)).astype(np.float32))
        n_jets = len(arr)
        cons = np.stack(cols, axis=-1) if cols else np.zeros((n_jets, p, 0), np.float32)
        mask = np.arange(p)[None, :] < np.minimum(counts, p)[:, None]
        jet = (np.stack([ak.to_numpy(arr[f]).astype(np.float32) for f in fields], axis=-1)
               if fields else np.zeros((n_jets, 0), np.float32))
        ev = None
        if all(n in ak.fields(arr) for n in EVENT_INFO_NAMES):
            ev = np.stack([ak.to_numpy(arr[n]).astype(np.int64) for n in EVENT_INFO_NAMES], -1)
        return cls(cons, mask, jet, cnames, tuple(fields), ev)

    def __repr__(self) -> str:
        return (f"Jets(n={len(self)}, P={self.n_max}, constituents={list(self.constituent_names)}, "
                f"jet={list(self.jet_names)})")
