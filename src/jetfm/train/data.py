"""Training data for OmniJet-alpha: jets from AOJ or JetClass files -> preprocessed features or
token sequences, a fixed train/validation split, and batch loaders that trim padding; or, for
data larger than memory, streamed loaders over AOJ / token files (:func:`streaming_loaders`,
chosen by :func:`use_streaming` against :func:`memory_budget`).

Batches:
- tokenizer: ``(x (B, P, 3) float32, mask (B, P) bool)`` with P the longest jet of the batch;
- backbone: ``seqs (B, L) int64`` (-1 padded) with L the longest sequence of the batch.
"""
from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from jetfm.errors import InputError
from jetfm.jets import Jets
from jetfm.physics.features import Preprocessing

#: the train/validation split does not depend on the run's seed: runs with different seeds
#: (or a resumed run) validate on the same jets
SPLIT_SEED = 20240318


def expand_data(data: str | os.PathLike | Sequence[str | os.PathLike]) -> list[str]:
    from jetfm.io.aoj import expand_paths

    paths = expand_paths(data)
    if not paths:
        raise InputError("no data files given")
    return paths


def file_provenance(paths: Sequence[str]) -> list[dict]:
    """What data a model saw: absolute path and size of each file."""
    return [{"path": os.path.abspath(p), "bytes": os.path.getsize(p)} for p in paths]


def load_features(data, prep: Preprocessing, max_jets: int | None = None,
                  chunk_size: int = 50_000, progress: bool = True):
    """Read jets from AOJ/JetClass files (streamed) -> ``(features (N, n_max, 3) float32,
    mask (N, n_max) bool, provenance dict)``. Reads at most ``max_jets`` jets in file order."""
    from jetfm.io import iter_jets

    paths = expand_data(data)
    feats, masks, n = [], [], 0
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=max_jets, unit="jet", desc="reading jets")
    try:
        for p in paths:
            kw = {} if max_jets is None else {"stop": max_jets - n}
            for jets in iter_jets(p, chunk_size, **kw):
                f, m = prep.forward(jets)
                feats.append(f)
                masks.append(m)
                n += len(jets)
                if bar is not None:
                    bar.update(len(jets))
            if max_jets is not None and n >= max_jets:
                break
    finally:
        if bar is not None:
            bar.close()
    if n == 0:
        raise InputError("the data files hold no jets", paths[0])
    prov = {"files": file_provenance(paths), "n_jets": n, "max_jets": max_jets}
    return np.concatenate(feats)[:max_jets], np.concatenate(masks)[:max_jets], prov


def jets_features(jets: Jets, prep: Preprocessing):
    """In-memory jets -> (features, mask, provenance)."""
    if len(jets) == 0:
        raise InputError("no jets given")
    f, m = prep.forward(jets)
    return f, m, {"files": list(jets.meta.get("source", [])) if isinstance(
        jets.meta.get("source"), list) else [], "n_jets": len(jets), "in_memory": True}


def split_indices(n: int, val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Fixed split of ``n`` items -> (train indices, validation indices), both sorted."""
    if n < 2:
        raise InputError(f"need at least 2 jets to train (one for validation), got {n}")
    n_val = min(n - 1, max(1, int(round(n * val_fraction))))
    perm = np.random.default_rng(SPLIT_SEED).permutation(n)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


class EpochSampler(Sampler[int]):
    """A fresh permutation each epoch from (seed, epoch): reproducible, also after a resume
    (Lightning calls :meth:`set_epoch`)."""

    def __init__(self, n: int, seed: int, shuffle: bool = True):
        self.n, self.seed, self.shuffle, self.epoch = n, int(seed), shuffle, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self):
        if not self.shuffle:
            order = np.arange(self.n)
        else:
            order = np.random.default_rng((self.seed, self.epoch)).permutation(self.n)
        rank, world = _rank_world()
        if world > 1:
            # DDP: rank r takes every world-th jet of the one global order (padded by wrapping
            # to equal lengths), so a step over W processes with batch B sees the same jets as
            # one process with batch W * B, whatever W, also after resuming on another W
            order = np.resize(order, len(self) * world)[rank::world]
        return iter(order.tolist())

    def __len__(self) -> int:
        return -(-self.n // _rank_world()[1])


def _rank_world() -> tuple[int, int]:
    """(rank, world size) of this process; (0, 1) outside torch.distributed."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class FeatureDataset(Dataset):
    """Preprocessed jets; a batch is trimmed to its longest jet."""

    def __init__(self, feats: np.ndarray, mask: np.ndarray):
        self.feats = torch.as_tensor(np.ascontiguousarray(feats, np.float32))
        self.mask = torch.as_tensor(np.ascontiguousarray(mask, bool))

    def __len__(self) -> int:
        return len(self.mask)

    def __getitem__(self, i):
        return self.__getitems__([i])

    def __getitems__(self, idx):
        idx = torch.as_tensor(idx)
        m = self.mask[idx]
        p = max(1, int(m.sum(1).max()))
        return self.feats[idx, :p], m[:, :p]


class SequenceDataset(Dataset):
    """Token sequences (N, L) int64, -1 padded; a batch is trimmed to its longest sequence."""

    def __init__(self, seqs: np.ndarray):
        self.seqs = torch.as_tensor(np.ascontiguousarray(seqs, np.int64))

    def __len__(self) -> int:
        return len(self.seqs)

    def __getitem__(self, i):
        return self.__getitems__([i])

    def __getitems__(self, idx):
        s = self.seqs[torch.as_tensor(idx)]
        return s[:, :int((s >= 0).sum(1).max())]


#: (sign of eta, sign of phi) of the reflections of :func:`reflect`, in the order used. (The
#: swap eta <-> phi is no symmetry of the jet mass: it changes the masses of real jets by up to
#: 4 %, the cosh of an eta difference against the cosine of a phi difference.)
REFLECTIONS = ((1, 1), (-1, -1), (-1, 1), (1, -1))


def reflect(feats: np.ndarray, mask: np.ndarray, copies: int) -> tuple[np.ndarray, np.ndarray]:
    """``copies`` reflections of preprocessed jets (features ``(ln pT, eta_rel, phi_rel)``
    scaled) stacked along the jet axis, the first being the jets themselves: (copies * N, P, 3)
    features and mask. Padding stays 0; the pT order is unchanged."""
    out = []
    for se, sp in REFLECTIONS[:copies]:
        f = feats.copy()
        f[..., 1] *= se
        f[..., 2] *= sp
        out.append(f)
    return np.concatenate(out), np.concatenate([mask] * copies)


def _identity(batch):
    return batch


def make_loaders(dataset_cls, arrays: tuple, val_fraction: float, batch_size: int, seed: int,
                 num_workers: int = 0, val_arrays: tuple | None = None
                 ) -> tuple[DataLoader, DataLoader, dict]:
    """Split ``arrays`` (same first axis) and build the train and validation loaders; with
    ``val_arrays`` (jets of separate validation files) all of ``arrays`` is for training."""
    if val_arrays is None:
        tr, va = split_indices(len(arrays[0]), val_fraction)
        train = dataset_cls(*[a[tr] for a in arrays])
        val = dataset_cls(*[a[va] for a in arrays])
    else:
        tr, va = arrays[0], val_arrays[0]
        train, val = dataset_cls(*arrays), dataset_cls(*val_arrays)
    kw = {"batch_size": batch_size, "collate_fn": _identity, "num_workers": num_workers,
          "persistent_workers": num_workers > 0}
    # resumable: a run killed mid-epoch continues with the batches it had not yet seen
    from jetfm.train.streaming import ResumableLoader

    return (ResumableLoader(train, sampler=EpochSampler(len(train), seed), drop_last=False, **kw),
            DataLoader(val, sampler=EpochSampler(len(val), seed, shuffle=False), **kw),
            {"n_train": len(tr), "n_val": len(va)})


# ------------------------------------------------------------------------------ streaming
#: default shuffle buffer and read chunk of streamed training (jets per data-loader worker)
STREAM_BUFFER = 16_384
STREAM_CHUNK = 4_096
#: the in-memory path holds, per constituent slot of every jet, the features (3 float32), the
#: mask (bool) and their train/validation copies (x 2), for the backbone also the codes and
#: the token sequences (int64, x 2): bytes per slot
_BYTES_PER_SLOT = {"tokenizer": 2 * 13, "backbone": 2 * 13 + 2 * 16}


def in_memory_bytes(n_jets: int, n_max: int, stage: str) -> int:
    """Estimated memory (bytes) the in-memory path needs for ``n_jets`` jets of up to ``n_max``
    constituents; ``stage`` is ``"tokenizer"`` or ``"backbone"``."""
    return int(n_jets) * int(n_max) * _BYTES_PER_SLOT[stage]


def memory_budget(budget_gb: float | None = None) -> int:
    """The memory (bytes) training data may take before they are streamed: ``budget_gb`` if
    given, else the environment variable ``JETFM_MEMORY_BUDGET_GB``, else a quarter of the
    machine's physical memory."""
    if budget_gb is None and os.environ.get("JETFM_MEMORY_BUDGET_GB"):
        budget_gb = float(os.environ["JETFM_MEMORY_BUDGET_GB"])
    if budget_gb is not None:
        if budget_gb <= 0:
            raise InputError(f"memory budget must be positive, got {budget_gb} GB")
        return int(budget_gb * 2 ** 30)
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 4


def hdf5_files(paths: Sequence[str]) -> list | None:
    """The streaming layout (kind, length, chunking) of each file if every file is an AOJ or a
    jetfm token file; None when one is not (a JetClass file: in-memory path only)."""
    from jetfm.train.streaming import _probe

    if not all(p.endswith((".h5", ".hdf5")) for p in paths):
        return None
    return [_probe(p) for p in paths]


def use_streaming(data, jets: Jets | None, streaming: bool | None, max_jets: int | None,
                  n_max: int, stage: str, budget_gb: float | None = None) -> bool:
    """Whether training streams its data: ``streaming`` if given (True needs AOJ or token
    files); automatically (None) when the files hold token sequences, or AOJ jets whose
    in-memory footprint (:func:`in_memory_bytes`, up to ``max_jets`` jets) exceeds
    :func:`memory_budget`. Jets given in memory never stream."""
    if jets is not None:
        if streaming:
            raise InputError("streaming reads files: give --data files, not jets in memory")
        return False
    if streaming is False:
        return False
    paths = expand_data(data)
    files = hdf5_files(paths)
    if files is None:
        if streaming:
            bad = next(p for p in paths if not p.endswith((".h5", ".hdf5")))
            raise InputError("streaming reads AOJ .h5 or jetfm token files only (train on "
                             "this file in memory, or write it as AOJ first)", bad)
        return False
    if streaming or any(f.kind == "tokens" for f in files):
        return True
    n = sum(f.n for f in files)
    n = n if max_jets is None else min(n, max_jets)
    return in_memory_bytes(n, n_max, stage) > memory_budget(budget_gb)


def streaming_loaders(data, prep: Preprocessing, batch_size: int, val_fraction: float,
                      seed: int, num_workers: int = 0, max_jets: int | None = None,
                      val_data=None, buffer_size: int | None = None,
                      chunk_size: int | None = None, pin_memory: bool = False):
    """Streamed training and validation loaders over AOJ (or token) files.

    Training: :class:`~jetfm.train.streaming.StreamingJets` over the first ``max_jets`` jets of
    ``data`` less the validation part, shuffled (a new block order each epoch; add
    :class:`~jetfm.train.streaming.SetEpoch` to the trainer), split across DDP ranks and
    workers, batches of ``batch_size``. Validation: the files ``val_data`` if given, else the
    units of jets that :func:`~jetfm.train.streaming.holdout_ranges` draws with
    :data:`SPLIT_SEED` (the same jets whatever the run's seed); streamed in file order, never
    shuffled, on several ranks padded to equal lengths (at most ranks - 1 jets counted twice).

    Returns ``(train_loader, val_loader, split, provenance)``; batches are dicts (``x``
    (B, n_max, 3) float32, ``mask`` (B, n_max) bool, ``index`` (B,) int64 global jet index,
    ``event`` (B, 3); token files: ``tokens`` (B, L) int64 and ``index``).
    """
    from jetfm.train.streaming import StreamingJets, StreamingLoader, holdout_ranges

    paths = expand_data(data)
    kw = {"batch_size": batch_size, "preprocessing": prep,
          "chunk_size": chunk_size or STREAM_CHUNK}
    probe = StreamingJets(paths, shuffle=False, stop=max_jets, **kw)
    n = probe.n_jets
    val_paths = None
    if val_data is not None:
        val_paths = expand_data(val_data)
        same = {os.path.realpath(p) for p in paths} & {os.path.realpath(p) for p in val_paths}
        if same:
            raise InputError("a validation file is also a training file", sorted(same)[0])
        train_r = None
        val = StreamingJets(val_paths, shuffle=False, remainder="pad", **kw)
        if val.kind != probe.kind:
            raise InputError("validation and training files are of different kinds "
                             f"({val.kind}, {probe.kind})", val_paths[0])
    else:
        train_r, val_r = holdout_ranges(n, val_fraction, SPLIT_SEED)
        val = StreamingJets(paths, shuffle=False, remainder="pad", stop=max_jets, ranges=val_r,
                            **kw)
    train = StreamingJets(paths, seed=seed, stop=max_jets, ranges=train_r, remainder="drop",
                          buffer_size=STREAM_BUFFER if buffer_size is None else buffer_size, **kw)
    lkw = {"num_workers": num_workers, "pin_memory": pin_memory}
    train_dl = StreamingLoader(train, **lkw)
    val_dl = DataLoader(val, batch_size=None, **lkw)
    split = {"n_train": train.n_jets, "n_val": val.n_jets}
    split["validation"] = ({"files": file_provenance(val_paths)} if val_paths else
                           {"rule": "holdout_ranges", "split_seed": SPLIT_SEED,
                            "val_fraction": val_fraction, "ranges": [list(r) for r in val_r]
                            if len(val_r) <= 64 else f"{len(val_r)} ranges"})
    prov = {"files": file_provenance(paths), "n_jets": n, "max_jets": max_jets,
            "kind": probe.kind, "streaming": {
                "buffer_size": train.buffer_size, "chunk_size": train.chunk_size,
                "num_workers": num_workers}}
    return train_dl, val_dl, split, prov
