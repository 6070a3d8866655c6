"""Training data for OmniJet-alpha: jets from AOJ or JetClass files -> preprocessed features or
token sequences, a fixed train/validation split, and batch loaders that trim padding.

Batches:
- tokenizer: ``(x (B, P, 3) float32, mask (B, P) bool)`` with P the longest jet of the batch;
- backbone: ``seqs (B, L) int64`` (-1 padded) with L the longest sequence of the batch.
"""
from __future__ import annotations

import os
from typing import Sequence

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


def _identity(batch):
    return batch


def make_loaders(dataset_cls, arrays: tuple, val_fraction: float, batch_size: int, seed: int,
                 num_workers: int = 0) -> tuple[DataLoader, DataLoader, dict]:
    """Split ``arrays`` (same first axis) and build the train and validation loaders."""
    tr, va = split_indices(len(arrays[0]), val_fraction)
    train = dataset_cls(*[a[tr] for a in arrays])
    val = dataset_cls(*[a[va] for a in arrays])
    kw = {"batch_size": batch_size, "collate_fn": _identity, "num_workers": num_workers,
          "persistent_workers": num_workers > 0}
    # resumable: a run killed mid-epoch continues with the batches it had not yet seen
    from jetfm.train.streaming import ResumableLoader

    return (ResumableLoader(train, sampler=EpochSampler(len(train), seed), drop_last=False, **kw),
            DataLoader(val, sampler=EpochSampler(len(val), seed, shuffle=False), **kw),
            {"n_train": len(tr), "n_val": len(va)})
