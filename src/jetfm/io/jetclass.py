"""JetClass (and JetClass-II) ROOT files: reader and writer with the JetClass branch names.

A JetClass file holds a TTree ``tree`` with jagged ``part_*`` branches, per-jet ``jet_*`` branches
and either one-hot ``label_*`` branches (JetClass) or one integer ``jet_label`` (JetClass-II).

Conventions applied on reading (and undone on writing):

- ``part_deta`` is stored sign-flipped for jets with eta < 0 (``part_deta = sign(jet_eta) *
  (eta - jet_eta)``). In memory the ``deta`` column is the plain ``eta - jet_eta``.
- The species flags become a ``pdgId`` column as well (211 * charge, 130, 22, -11 * charge,
  -13 * charge), so AOJ and JetClass jets share species code.
- Neutral candidates carry NaN (missing) in ``d0``/``d0Err``/``dz``/``dzErr``; JetClass stores 0.
- The label is one jet field ``label``: the index into :data:`JETCLASS_LABELS` for JetClass, the
  raw ``jet_label`` for JetClass-II (``meta["label_scheme"]`` says which).
- ``aux_*``, ``genpart_*`` and ``genjet_*`` branches are never read (never train on them).
"""
from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np

from jetfm.errors import InputError, check_writable, require_file
from jetfm.io.output import atomic_output
from jetfm.jets import Jets
from jetfm.physics.features import FLAG_COLUMNS, pdgid_from_flags, relative_to_jet, species_flags

TREE = "tree"
#: JetClass branch -> jetfm column
PART_BRANCHES = {
    "part_px": "px", "part_py": "py", "part_pz": "pz", "part_energy": "E",
    "part_deta": "deta", "part_dphi": "dphi",
    "part_d0val": "d0", "part_d0err": "d0Err", "part_dzval": "dz", "part_dzerr": "dzErr",
    "part_charge": "charge",
    "part_isChargedHadron": "isChargedHadron", "part_isNeutralHadron": "isNeutralHadron",
    "part_isPhoton": "isPhoton", "part_isElectron": "isElectron", "part_isMuon": "isMuon",
}
JET_BRANCHES = {
    "jet_pt": "pt", "jet_eta": "eta", "jet_phi": "phi", "jet_energy": "energy",
    "jet_sdmass": "msoftdrop", "jet_nparticles": "nConstituents",
    "jet_tau1": "tau1", "jet_tau2": "tau2", "jet_tau3": "tau3", "jet_tau4": "tau4",
}
#: JetClass's ten classes, in the order of their one-hot branches
JETCLASS_LABELS = ("label_QCD", "label_Hbb", "label_Hcc", "label_Hgg", "label_H4q",
                   "label_Hqql", "label_Zqq", "label_Wqq", "label_Tbqq", "label_Tbl")
#: the JetClass file-name prefix of each class
JETCLASS_PROCESSES = ("ZJetsToNuNu", "HToBB", "HToCC", "HToGG", "HToWW4Q", "HToWW2Q1L",
                      "ZToQQ", "WToQQ", "TTBar", "TTBarLep")
#: JetClass-II: labels 161..187 are QCD
JETCLASS2_QCD_RANGE = (161, 187)
TRACK_COLUMNS = ("d0", "d0Err", "dz", "dzErr")
CONSTITUENT_COLUMNS = tuple(PART_BRANCHES.values()) + ("pdgId",)
N_MAX = 128


def _open_tree(path: str):
    import uproot

    require_file(path)
    try:
        f = uproot.open(path)
    except Exception as err:  # uproot raises many types for non-ROOT or damaged files
        with open(path, "rb") as fh:
            magic = fh.read(4)
        if magic != b"root":
            raise InputError("not a ROOT file (expected a JetClass .root file)", path) from err
        raise InputError(f"corrupted or truncated ROOT file ({type(err).__name__}: {err})",
                         path) from err
    if TREE not in f:
        f.close()
        raise InputError(f"no TTree '{TREE}': not a JetClass file (has {list(f.keys())[:5]})",
                         path)
    tree = f[TREE]
    have = set(tree.keys())
    missing = [b for b in ("part_px", "part_py", "part_pz", "part_energy") if b not in have]
    if missing:
        f.close()
        raise InputError(f"missing branch(es) {', '.join(missing)}: not a JetClass file", path)
    return f, tree


def jetclass_length(path: str | os.PathLike) -> int:
    path = os.fspath(path)
    if _is_parquet(require_file(path)):
        import pyarrow.parquet as pq

        return int(pq.read_metadata(path).num_rows)
    f, tree = _open_tree(path)
    with f:
        return int(tree.num_entries)


def _arrays_to_jets(arrs, have: set[str], n_max: int, source: str) -> Jets:
    import awkward as ak

    n = len(arrs["part_px"])
    counts = ak.to_numpy(ak.num(arrs["part_px"], axis=1))
    mask = np.arange(n_max)[None, :] < np.minimum(counts, n_max)[:, None]

    def pad(arr) -> np.ndarray:
        arr = ak.values_astype(arr, np.float32)
        return ak.to_numpy(ak.fill_none(ak.pad_none(arr, n_max, axis=1, clip=True), 0.0))

    cols: dict[str, np.ndarray] = {}
    for b, name in PART_BRANCHES.items():
        cols[name] = pad(arrs[b]) if b in have else np.zeros((n, n_max), np.float32)
    jet: dict[str, np.ndarray] = {}
    for b, name in JET_BRANCHES.items():
        if b in have:
            jet[name] = ak.to_numpy(arrs[b]).astype(np.float32)
    meta = {"format": "jetclass", "source": source}
    if "jet_label" in have:
        jet["label"] = ak.to_numpy(arrs["jet_label"]).astype(np.float32)
        meta["label_scheme"] = "jetclass2"
    elif any(b in have for b in JETCLASS_LABELS):
        onehot = np.stack([ak.to_numpy(arrs[b]).astype(np.float32) if b in have else
                           np.zeros(n, np.float32) for b in JETCLASS_LABELS], axis=1)
        jet["label"] = np.where(onehot.max(1) > 0, onehot.argmax(1), -1).astype(np.float32)
        meta["label_scheme"] = "jetclass"
    if "eta" in jet:  # undo the sign flip of part_deta for jets with eta < 0
        sign = np.where(jet["eta"] < 0, -1.0, 1.0).astype(np.float32)
        cols["deta"] = cols["deta"] * sign[:, None]
    cols["pdgId"] = pdgid_from_flags(cols, cols["charge"])
    neutral = mask & (cols["charge"] == 0)
    for k in TRACK_COLUMNS:
        cols[k] = np.where(neutral, np.nan, cols[k]).astype(np.float32)
    cons = np.stack([np.where(mask, cols[k], 0) for k in CONSTITUENT_COLUMNS], axis=-1)
    jets = Jets(cons, mask, np.stack(list(jet.values()), axis=1) if jet else
                np.zeros((n, 0), np.float32), CONSTITUENT_COLUMNS, tuple(jet), None, meta)
    # JetClass stores constituents by pT already; make it a guarantee
    return jets.sort_by(jets.c("px") ** 2 + jets.c("py") ** 2)


def _is_parquet(path: str) -> bool:
    with open(path, "rb") as fh:
        return fh.read(4) == b"PAR1"


def _iter_parquet(path: str, chunk_size: int, start: int, stop: int | None, n_max: int,
                  validate: bool) -> Iterator[Jets]:
    """JetClass columns stored as Parquet (as JetClass-II ships its examples)."""
    import awkward as ak
    import pyarrow.parquet as pq

    try:
        have = set(pq.read_schema(path).names)
    except Exception as err:
        raise InputError(f"corrupted or truncated Parquet file ({type(err).__name__})",
                         path) from err
    missing = [b for b in ("part_px", "part_py", "part_pz", "part_energy") if b not in have]
    if missing:
        raise InputError(f"missing column(s) {', '.join(missing)}: not a JetClass file", path)
    wanted = [b for b in (*PART_BRANCHES, *JET_BRANCHES, "jet_label", *JETCLASS_LABELS)
              if b in have]
    try:
        arrs = ak.from_parquet(path, columns=wanted)
    except Exception as err:
        raise InputError(f"cannot read: corrupted or truncated data ({type(err).__name__})",
                         path) from err
    stop = len(arrs) if stop is None else min(stop, len(arrs))
    for a in range(start, stop, chunk_size):
        jets = _arrays_to_jets(arrs[a:min(a + chunk_size, stop)], have, n_max, path)
        if validate:
            jets.validate(path)
        yield jets


def iter_jetclass(path: str | os.PathLike, chunk_size: int = 50_000, start: int = 0,
                  stop: int | None = None, n_max: int = N_MAX,
                  validate: bool = True) -> Iterator[Jets]:
    """Stream jets of one JetClass file (ROOT, or Parquet with the same column names) in
    chunks, padded to ``n_max`` constituents."""
    path = os.fspath(path)
    require_file(path)
    if _is_parquet(path):
        yield from _iter_parquet(path, chunk_size, start, stop, n_max, validate)
        return
    f, tree = _open_tree(path)
    have = set(tree.keys())
    wanted = [b for b in (*PART_BRANCHES, *JET_BRANCHES, "jet_label", *JETCLASS_LABELS)
              if b in have]
    with f:
        stop = tree.num_entries if stop is None else min(stop, tree.num_entries)
        for a in range(start, stop, chunk_size):
            b = min(a + chunk_size, stop)
            try:
                arrs = tree.arrays(wanted, entry_start=a, entry_stop=b, library="ak")
            except Exception as err:
                raise InputError(f"cannot read entries {a}..{b}: corrupted or truncated data "
                                 f"({type(err).__name__})", path) from err
            jets = _arrays_to_jets(arrs, have, n_max, path)
            if validate:
                jets.validate(path)
            yield jets


def read_jetclass(path: str | os.PathLike, start: int = 0, stop: int | None = None,
                  n_max: int = N_MAX, validate: bool = True) -> Jets:
    """Read a JetClass ROOT file (or a slice of it) into one :class:`Jets`."""
    parts = list(iter_jetclass(path, 1 << 30, start, stop, n_max, validate))
    if not parts:
        raise InputError("no jets in the requested range", path)
    return parts[0]


def jets_to_branches(jets: Jets, label_scheme: str = "jetclass") -> dict[str, object]:
    """JetClass branches for ``jets`` (jagged ``part_*`` as awkward arrays, float32)."""
    import awkward as ak

    counts = jets.n_constituents
    m = jets.mask
    cols: dict[str, np.ndarray] = {}
    for name in ("px", "py", "pz", "E"):
        cols[name] = jets.c(name)
    jet_eta = jets.j("eta") if "eta" in jets.jet_names else None
    if "deta" in jets.constituent_names:
        deta, dphi = jets.c("deta"), jets.c("dphi")
    else:
        jet_phi = jets.j("phi") if "phi" in jets.jet_names else None
        deta, dphi = relative_to_jet(jets, jet_eta, jet_phi)
    if jet_eta is not None:
        deta = deta * np.where(jet_eta < 0, -1.0, 1.0)[:, None]
    cols["deta"], cols["dphi"] = deta, dphi
    for k in TRACK_COLUMNS:
        cols[k] = (np.nan_to_num(jets.c(k), nan=0.0) if k in jets.constituent_names
                   else np.zeros(m.shape, np.float32))
    cols["charge"] = jets.c("charge") if "charge" in jets.constituent_names else np.zeros(m.shape)
    if all(k in jets.constituent_names for k in FLAG_COLUMNS):
        for k in FLAG_COLUMNS:
            cols[k] = jets.c(k)
    else:
        cols.update(species_flags(jets.c("pdgId")))
    out: dict[str, object] = {}
    for b, name in PART_BRANCHES.items():
        flat = np.asarray(cols[name], np.float32)[m]
        out[b] = ak.unflatten(flat, counts)
    for b, name in JET_BRANCHES.items():
        if name in jets.jet_names:
            out[b] = jets.j(name).astype(np.float32)
        elif name == "nConstituents":
            out[b] = counts.astype(np.float32)
    if "label" in jets.jet_names:
        lab = jets.j("label").astype(np.int64)
        if label_scheme == "jetclass2":
            out["jet_label"] = lab.astype(np.int32)
        else:
            for i, b in enumerate(JETCLASS_LABELS):
                out[b] = (lab == i).astype(np.float32)
    return out


def write_jetclass(path: str | os.PathLike, jets: Jets, label_scheme: str = "jetclass",
                   chunk_size: int = 100_000) -> str:
    """Write ``jets`` as a JetClass ROOT file (TTree ``tree``), atomically."""
    import uproot

    path = check_writable(path)
    with atomic_output(path) as tmp, uproot.recreate(tmp) as f:
        for a in range(0, max(len(jets), 1), chunk_size):
            branches = jets_to_branches(jets[a:a + chunk_size], label_scheme)
            if a == 0:
                f[TREE] = branches
            else:
                f[TREE].extend(branches)
    return path


def jetclass_class_name(label: int, scheme: str = "jetclass") -> str:
    """Human-readable class of an integer label."""
    if scheme == "jetclass2":
        lo, hi = JETCLASS2_QCD_RANGE
        return "QCD" if lo <= label <= hi else f"jetclass2:{label}"
    return JETCLASS_LABELS[label][len("label_"):] if 0 <= label < len(JETCLASS_LABELS) else "?"
