"""Streaming, sharded training data: any number of AOJ (or token) files, read in chunks, shuffled
through a bounded buffer, split across DDP ranks and data-loader workers so that every jet is seen
exactly once per epoch.

How an epoch is laid out (identical on every rank, since it depends only on ``seed`` and the
epoch):

1. The jet range ``start..stop`` of the concatenated files is cut into *blocks* of about
   ``chunk_size`` jets that never cross a file boundary (rounded to the file's HDF5 chunk rows,
   so a block decompresses whole chunks only).
2. The block order is shuffled with ``numpy.random.default_rng((seed, epoch))``; this gives one
   virtual stream of all ``N`` jets.
3. Rank ``r`` of ``W`` takes a contiguous piece of that stream and splits it again, the same way,
   among its ``K`` data-loader workers (``torch.utils.data.get_worker_info``). Each worker reads
   only its own blocks, one at a time, preprocesses them, and passes them through a shuffle buffer
   of ``buffer_size`` jets (seeded by seed, epoch, rank and worker).

Memory is bounded by ``buffer_size + chunk_size`` jets per worker, whatever the total size.

When ``N`` is not divisible by ``W`` (``remainder``):

- ``"drop"`` (the default): every rank gets ``N // W`` jets; the last ``N mod W`` jets of the
  epoch's stream (fewer than ``W``, different ones every epoch since the block order changes) are
  skipped. Every rank then yields the same number of jets and, for the same ``num_workers`` and
  ``batch_size``, the same number of batches, as DDP requires (a rank with one batch more would
  wait forever in the gradient all-reduce).
- ``"pad"``: every rank gets ``ceil(N / W)`` jets; the stream wraps around, so the first
  ``W * ceil(N / W) - N`` jets are seen twice. Same batch counts on every rank.
- ``"exact"``: rank ``r`` gets jets ``floor(r N / W) .. floor((r + 1) N / W)``: every jet exactly
  once, but ranks may differ by one jet (and so by one batch): for evaluation, or one rank.

With ``world_size == 1`` all three modes are the same: every jet exactly once.

Each item is a dict of tensors. AOJ files give the OmniJet-alpha inputs
(:class:`jetfm.physics.features.Preprocessing`): ``x`` ``(P, 3)`` float32 (log pT - shift,
scaled eta_rel, scaled phi_rel), ``mask`` ``(P,)`` bool, ``event`` ``(3,)`` int64 (run, lumi,
event). Token files give ``tokens`` ``(L,)`` int64 (-1 padded). Both carry ``index``: the jet's
global index over the concatenated files. With ``batch_size`` set, the dataset yields whole
batches (a leading batch axis; use ``DataLoader(ds, batch_size=None)``), which is much faster than
collating single jets.

Epochs: call :meth:`StreamingJets.set_epoch` before iterating (Lightning does not call it on an
iterable dataset: add :class:`SetEpoch` to the trainer's callbacks). Do not use
``persistent_workers=True``: the workers would keep the epoch they started with.

Resuming mid-epoch: :class:`StreamingLoader` (a DataLoader) records how many batches it has
handed out, and Lightning stores that in its checkpoints (``state_dict``); after a restart it
skips exactly those batches, so a resumed run sees the same data as an uninterrupted one.
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from jetfm.errors import InputError
from jetfm.io.aoj import ReadOptions, expand_paths, read_aoj

# ``_probe``: also the name jetfm.train.data imports
from jetfm.io.sources import probe_source as _probe
from jetfm.io.tokens import read_token_rows
from jetfm.physics.features import Preprocessing

REMAINDER_MODES = ("drop", "pad", "exact")
#: the constituent columns the OmniJet-alpha features need (E gives the mask)
FEATURE_COLUMNS = ("px", "py", "pz", "E")


# ------------------------------------------------------------------------------ the plan
def shard_range(n: int, rank: int, world_size: int, remainder: str = "drop") -> tuple[int, int]:
    """Positions ``[a, b)`` of an ``n``-jet stream that shard ``rank`` of ``world_size`` reads.

    ``b`` may exceed ``n`` in ``"pad"`` mode (read modulo ``n``). See the module docstring."""
    if remainder not in REMAINDER_MODES:
        raise ValueError(f"remainder must be one of {REMAINDER_MODES}, got {remainder!r}")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} outside 0..{world_size - 1}")
    if remainder == "exact":
        return rank * n // world_size, (rank + 1) * n // world_size
    per = n // world_size if remainder == "drop" else -(-n // world_size)
    return rank * per, (rank + 1) * per


#: jets per hold-out unit at most: validation takes whole units of consecutive jets, so it reads
#: whole HDF5 chunks rather than scattered rows
HOLDOUT_UNIT = 1024


def holdout_ranges(n: int, val_fraction: float, seed: int, start: int = 0
                   ) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Split the jets ``start .. start + n`` into (training ranges, validation ranges).

    The jets are cut into units of ``u = min(HOLDOUT_UNIT, max(1, n // 50))`` consecutive jets
    (at least 50 units when there are 50 jets); ``round(val_fraction * units)`` of them (at
    least one, and at least one unit left for training) are drawn for validation by
    ``numpy.random.default_rng(seed)``. The rule depends only on ``n``, ``val_fraction`` and
    ``seed``, so every rank, every resume and every run with the same data holds out the same
    jets. Ranges are ``(lo, hi)`` global jet indices, sorted, adjacent units merged."""
    if n < 2:
        raise InputError(f"need at least 2 jets to train (one for validation), got {n}")
    unit = min(HOLDOUT_UNIT, max(1, n // 50))
    n_units = -(-n // unit)
    n_val = min(n_units - 1, max(1, int(round(n_units * val_fraction))))
    is_val = np.zeros(n_units, bool)
    is_val[np.random.default_rng(seed).permutation(n_units)[:n_val]] = True

    def merged(flag: bool) -> list[tuple[int, int]]:
        out: list[tuple[int, int]] = []
        for u in np.flatnonzero(is_val == flag):
            lo, hi = start + int(u) * unit, start + min(int(u + 1) * unit, n)
            if out and out[-1][1] == lo:
                out[-1] = (out[-1][0], hi)
            else:
                out.append((lo, hi))
        return out

    return merged(False), merged(True)


def _split(a: int, b: int, k: int, i: int) -> tuple[int, int]:
    """Part ``i`` of ``k`` near-equal contiguous parts of ``[a, b)``: depends only on b - a, so
    equal shards split into equal parts."""
    m = b - a
    return a + i * m // k, a + (i + 1) * m // k


@dataclass(frozen=True)
class StreamOptions:
    """How a :class:`StreamingJets` reads, orders and shards its jets.

    chunk_size: jets per read (rounded up to whole HDF5 chunks of the files).
    buffer_size: jets held by each worker's shuffle buffer (0: no buffer, block order only).
    shuffle: shuffle the block order and use the buffer; False streams in file order.
    seed: the same seed gives the same order (for the same world size and worker count).
    rank, world_size: this process's shard; default: torch.distributed if initialised, else 0, 1.
    remainder: ``"drop"`` (default), ``"pad"`` or ``"exact"``: see the module docstring.
    batch_size: yield batches of this many jets (the last one of each worker may be short)
        instead of single jets.
    start, stop: the global jet range to use (e.g. a train/validation split).
    ranges: global jet ranges ``[(lo, hi), ...]`` to use within ``start..stop`` (sorted, not
        overlapping), e.g. the training or the validation part of :func:`holdout_ranges`;
        default: all of ``start..stop``. A jet's ``index`` stays its global index.
    preprocessing, read_options: how AOJ jets become model inputs.
    """
    chunk_size: int = 4096
    buffer_size: int = 16384
    shuffle: bool = True
    seed: int = 0
    rank: int | None = None
    world_size: int | None = None
    remainder: str = "drop"
    batch_size: int | None = None
    start: int = 0
    stop: int | None = None
    ranges: Sequence[tuple[int, int]] | None = None
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    read_options: ReadOptions = ReadOptions(trim=True)

    def __post_init__(self) -> None:
        if self.remainder not in REMAINDER_MODES:
            raise ValueError(f"remainder must be one of {REMAINDER_MODES}, "
                             f"got {self.remainder!r}")
        if self.chunk_size < 1 or self.buffer_size < 0 or (
                self.batch_size is not None and self.batch_size < 1):
            raise ValueError("chunk_size and batch_size must be positive, buffer_size >= 0")


class StreamingJets(IterableDataset):
    """An iterable dataset over AOJ or jetfm token files, streamed in chunks (module docstring).

    paths: files, globs, or a ``.txt`` list of files (all AOJ, or all token files).
    options: a :class:`StreamOptions`; keywords (its field names) replace single fields of it,
    so ``StreamingJets(paths, seed=1, batch_size=64)`` works as well.
    """

    def __init__(self, paths, options: StreamOptions | None = None, **settings):
        super().__init__()
        opt = self.options = replace(options or StreamOptions(), **settings)
        files = [_probe(p) for p in expand_paths(paths)]
        if not files:
            raise InputError("no input files given")
        if len({f.kind for f in files}) > 1:
            raise InputError("cannot mix AOJ and token files in one dataset", files[0].path)
        self.files = files
        self.kind = files[0].kind
        self.seq_len = max(f.seq_len for f in files)
        self.chunk_size, self.buffer_size, self.shuffle, self.seed = (
            opt.chunk_size, opt.buffer_size, opt.shuffle, opt.seed)
        self.remainder, self.batch_size = opt.remainder, opt.batch_size
        self.preprocessing, self.read_options = opt.preprocessing, opt.read_options
        total = sum(f.n for f in files)
        self.start, self.stop = opt.start, total if opt.stop is None else min(opt.stop, total)
        if not 0 <= self.start < self.stop:
            raise InputError(f"empty jet range {opt.start}..{opt.stop} of {total} jets",
                             files[0].path)
        rs = [(self.start, self.stop)] if opt.ranges is None else [
            (max(int(a), self.start), min(int(b), self.stop)) for a, b in opt.ranges]
        self.ranges = [(a, b) for a, b in rs if a < b]
        if any(b0 > a1 for (_, b0), (a1, _) in zip(self.ranges[:-1], self.ranges[1:])):
            raise ValueError("ranges must be sorted and must not overlap")
        if not self.ranges:
            raise InputError(f"no jets in the ranges given within {opt.start}..{self.stop}",
                             files[0].path)
        self.blocks = self._make_blocks()  # (n_blocks, 4): file, lo, hi, global offset of lo
        self.epoch = 0
        self._skip_batches = 0  # set by StreamingLoader.load_state_dict for a mid-epoch resume

    # ---------------------------------------------------------------- layout
    def _make_blocks(self) -> np.ndarray:
        rows = []
        offset = 0
        starts = np.asarray([a for a, _ in self.ranges])
        ends = np.asarray([b for _, b in self.ranges])
        for i, f in enumerate(self.files):
            # blocks of whole HDF5 chunks, so no chunk is decompressed twice (unless the chunk
            # size asked for is smaller than one HDF5 chunk)
            c = max(f.chunk_rows, 1)
            step = c * math.ceil(self.chunk_size / c) if self.chunk_size >= c else self.chunk_size
            # only the ranges that meet this file (there may be 10^5 ranges and 10^3 files)
            first = int(np.searchsorted(ends, offset, side="right"))
            last = int(np.searchsorted(starts, offset + f.n, side="left"))
            for r0, r1 in self.ranges[first:last]:
                lo, hi = max(r0 - offset, 0), min(r1 - offset, f.n)
                if lo >= hi:
                    continue
                edges = sorted({lo, hi, *range((lo // step + 1) * step, hi, step)})
                rows += [(i, a, b, offset + a) for a, b in zip(edges[:-1], edges[1:])]
            offset += f.n
        return np.asarray(rows, np.int64).reshape(-1, 4)

    def __len__(self) -> int:
        """Jets (or batches, with ``batch_size``) this shard yields per epoch, for this process
        with no workers; progress bars only (DataLoader workers each batch their own part)."""
        a, b = shard_range(self.n_jets, *self.shard(), self.remainder)
        return b - a if self.batch_size is None else -(-(b - a) // self.batch_size)

    @property
    def n_jets(self) -> int:
        """Jets in the whole dataset (all shards): ``stop - start``, or the jets in ``ranges``."""
        return sum(b - a for a, b in self.ranges)

    def shard(self) -> tuple[int, int]:
        """(rank, world_size) of this process."""
        if self.options.world_size is not None:
            return (self.options.rank or 0), self.options.world_size
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return torch.distributed.get_rank(), torch.distributed.get_world_size()
        return 0, 1

    def set_epoch(self, epoch: int) -> None:
        """Use the block order and buffer seeds of ``epoch`` at the next iteration."""
        self.epoch = int(epoch)

    def epoch_stream(self, epoch: int | None = None) -> np.ndarray:
        """The epoch's block order: rows (file, lo, hi, global offset) in stream order."""
        e = self.epoch if epoch is None else epoch
        if not self.shuffle:
            return self.blocks
        order = np.random.default_rng((self.seed, e)).permutation(len(self.blocks))
        return self.blocks[order]

    def pieces(self, rank: int, world_size: int, worker: int = 0, n_workers: int = 1,
               epoch: int | None = None) -> list[tuple[int, int, int, int]]:
        """(file, lo, hi, global offset) row ranges that one worker of one rank reads, in order."""
        stream = self.epoch_stream(epoch)
        lengths = stream[:, 2] - stream[:, 1]
        ends = np.cumsum(lengths)
        n = int(ends[-1])
        a, b = shard_range(n, rank, world_size, self.remainder)
        a, b = _split(a, b, n_workers, worker)
        out = []
        for lo_pos, hi_pos in ((a, min(b, n)), (n, b)):  # the second only wraps in "pad" mode
            if hi_pos <= lo_pos:
                continue
            base = 0 if lo_pos < n else n
            lo_pos, hi_pos = lo_pos - base, hi_pos - base
            first = int(np.searchsorted(ends, lo_pos, side="right"))
            for j in range(first, len(stream)):
                s0 = int(ends[j] - lengths[j])
                if s0 >= hi_pos:
                    break
                f, lo, hi, g = (int(v) for v in stream[j])
                x0, x1 = max(lo_pos - s0, 0), min(hi_pos - s0, hi - lo)
                out.append((f, lo + x0, lo + x1, g + x0))
        return out

    # ---------------------------------------------------------------- reading
    def read_piece(self, file: int, lo: int, hi: int, offset: int) -> dict[str, np.ndarray]:
        """Rows ``lo..hi`` of one file as model inputs: arrays with a leading jet axis."""
        f = self.files[file]
        index = np.arange(offset, offset + hi - lo, dtype=np.int64)
        if f.kind == "tokens":
            return {"tokens": read_token_rows(f.path, lo, hi, self.seq_len), "index": index}
        jets = read_aoj(f.path, lo, hi, columns=FEATURE_COLUMNS, options=self.read_options,
                        chunk_size=hi - lo)
        x, mask = self.preprocessing.forward(jets)
        out = {"x": x, "mask": mask, "index": index}
        if jets.event_info is not None:
            out["event"] = jets.event_info
        return out

    def _arrays(self, rank: int, world: int, worker: int, n_workers: int
                ) -> Iterator[dict[str, np.ndarray]]:
        """This worker's jets, shuffled, as groups of arrays."""
        pieces = self.pieces(rank, world, worker, n_workers)
        if not self.shuffle or self.buffer_size == 0:
            for p in pieces:
                yield self.read_piece(*p)
            return
        rng = np.random.default_rng((self.seed, self.epoch, rank, worker, 1))
        buf: dict[str, np.ndarray] | None = None
        fill = 0
        for p in pieces:
            new = self.read_piece(*p)
            k = len(new["index"])
            if buf is None:
                buf = {key: np.empty((self.buffer_size, *v.shape[1:]), v.dtype)
                       for key, v in new.items()}
            take = min(k, self.buffer_size - fill)  # fill the buffer first
            for key in buf:
                buf[key][fill:fill + take] = new[key][:take]
            fill += take
            if take == k:
                continue
            rest = {key: v[take:] for key, v in new.items()}
            while len(rest["index"]):
                # evict random slots (emitted in random order) and put new jets in their place
                m = min(len(rest["index"]), self.buffer_size)
                slots = rng.choice(self.buffer_size, m, replace=False)
                yield {key: buf[key][slots].copy() for key in buf}
                for key in buf:
                    buf[key][slots] = rest[key][:m]
                rest = {key: v[m:] for key, v in rest.items()}
        if buf is not None and fill:
            order = rng.permutation(fill)
            yield {key: buf[key][:fill][order] for key in buf}

    def _batches(self, groups: Iterator[dict[str, np.ndarray]]) -> Iterator[dict[str, np.ndarray]]:
        """Regroup arrays into batches of ``batch_size`` (the last one may be short)."""
        bs = self.batch_size
        pending: list[dict[str, np.ndarray]] = []
        n = 0
        for g in groups:
            pending.append(g)
            n += len(g["index"])
            if n < bs:
                continue
            cat = {k: np.concatenate([p[k] for p in pending]) for k in g}
            full = n // bs * bs
            for i in range(0, full, bs):
                yield {k: v[i:i + bs] for k, v in cat.items()}
            pending = [{k: v[full:] for k, v in cat.items()}] if n > full else []
            n -= full
        if n:
            yield {k: np.concatenate([p[k] for p in pending]) for k in pending[0]}

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        # not a generator itself: the shard, worker and skip count are fixed right here (a
        # StreamingLoader sets the skip count just before and clears it just after)
        rank, world = self.shard()
        info = get_worker_info()
        worker, n_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        taken, nxt = _worker_skip(self._skip_batches, self._worker_batches(n_workers))
        # a fresh DataLoader asks worker 0 first; after a resume the uninterrupted run would ask
        # worker ``nxt`` next, so the workers take over the parts of the workers ``nxt`` ahead
        part = (worker + nxt) % n_workers
        return self._items(rank, world, part, n_workers, taken[part])

    def _items(self, rank: int, world: int, worker: int, n_workers: int, skip: int
               ) -> Iterator[dict[str, torch.Tensor]]:
        groups = self._arrays(rank, world, worker, n_workers)
        if self.batch_size is not None:
            for i, b in enumerate(self._batches(groups)):
                if i >= skip:
                    yield {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in b.items()}
            return
        i = 0
        for g in groups:
            for j in range(len(g["index"])):
                if i >= skip:
                    yield {k: torch.from_numpy(np.ascontiguousarray(v[j])) for k, v in g.items()}
                i += 1

    def _worker_batches(self, n_workers: int) -> list[int]:
        """Items (batches, or jets without ``batch_size``) each worker of this rank yields."""
        a, b = shard_range(self.n_jets, *self.shard(), self.remainder)
        per = [_split(a, b, n_workers, w) for w in range(n_workers)]
        bs = self.batch_size or 1
        return [-(-(hi - lo) // bs) for lo, hi in per]


def _worker_skip(consumed: int, per_worker: Sequence[int]) -> tuple[list[int], int]:
    """How many items of each worker were among the first ``consumed`` that a DataLoader handed
    out, and which worker it would ask next. A DataLoader takes items from its workers in turn
    (0, 1, ..., 0, 1, ...), passing over the exhausted ones; the main process (no workers) is
    worker 0 of 1."""
    k = len(per_worker)
    taken = [0] * k
    w = 0
    for _ in range(max(consumed, 0)):
        for _ in range(k):
            if taken[w] < per_worker[w]:
                break
            w = (w + 1) % k
        else:
            break  # every worker exhausted
        taken[w] += 1
        w = (w + 1) % k
    return taken, w


# ------------------------------------------------------------------------------ loader
class ResumableLoader(DataLoader):
    """A DataLoader that resumes mid-epoch: it counts the batches handed out in the current
    epoch, ``state_dict`` / ``load_state_dict`` carry that count (Lightning stores it in its
    checkpoints and restores it), and the first iteration after a restore skips them, so a run
    killed midway and resumed sees the same batches as an uninterrupted one.

    For a map-style dataset the sampler must give the same order again for the restored epoch
    (a seeded per-epoch sampler, e.g. ``jetfm.train.data.EpochSampler``; Lightning calls its
    ``set_epoch``), and the skipped batches are drawn and dropped. Takes DataLoader's arguments.
    """

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self._consumed = 0
        self._restored: dict | None = None

    def _start(self, restored: dict | None) -> int:
        """Prepare a new epoch's iteration; returns how many batches to draw and drop."""
        return 0 if restored is None else restored["consumed"]

    def _started(self) -> None:
        """Called once the underlying iterator exists."""

    def __iter__(self):
        restored, self._restored = self._restored, None
        drop = self._start(restored)
        self._consumed = 0 if restored is None else restored["consumed"]
        it = super().__iter__()
        self._started()
        for i, item in enumerate(it):
            if i < drop:
                continue
            self._consumed += 1
            yield item

    def state_dict(self) -> dict:
        return {"consumed": self._consumed}

    def load_state_dict(self, state: dict) -> None:
        # a state saved at the very end of an epoch leaves nothing to continue: the next
        # iteration is a new epoch, numbered by the trainer (Lightning restores such a state
        # when it trains by max_steps; continuing it would give one empty epoch and shift the
        # epoch numbers, hence the data order, of every later epoch)
        try:
            done = state.get("consumed", 0) >= len(self)
        except TypeError:  # no length
            done = False
        self._restored = None if done else dict(state)


class StreamingLoader(ResumableLoader):
    """A :class:`ResumableLoader` over a :class:`StreamingJets`: the state also holds the epoch,
    and after a restore each worker skips its own share of the consumed batches (resume with
    the same ``num_workers`` and world size). ``batch_size`` defaults to None (the dataset
    batches)."""

    def __init__(self, dataset: StreamingJets, **kw):
        kw.setdefault("batch_size", None)
        if kw.get("persistent_workers"):
            raise ValueError("persistent workers would keep the epoch they started with")
        super().__init__(dataset, **kw)

    def __len__(self) -> int:
        """Batches per epoch on this rank, exactly: each worker batches its own part."""
        per = self.dataset._worker_batches(max(self.num_workers, 1))
        if self.batch_size is None:
            return sum(per)
        return sum(-(-n // self.batch_size) for n in per)  # the loader batches single jets

    def _start(self, restored: dict | None) -> int:
        ds: StreamingJets = self.dataset
        if restored is not None:
            ds.set_epoch(restored["epoch"])
        # the workers copy the dataset, skip count included, when the iterator is made
        ds._skip_batches = 0 if restored is None else restored["consumed"]
        return 0

    def _started(self) -> None:
        self.dataset._skip_batches = 0

    def state_dict(self) -> dict:
        return {"epoch": self.dataset.epoch, "consumed": self._consumed}


def _lightning_callback_base():
    try:
        from lightning.pytorch import Callback
    except ImportError:  # Lightning is a dependency, but keep the dataset usable without it
        return object
    return Callback


class SetEpoch(_lightning_callback_base()):
    """Lightning callback: ``set_epoch(trainer.current_epoch)`` on every streaming training
    dataset before each epoch (Lightning does this only for samplers)."""

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        loaders = trainer.train_dataloader
        for dl in (loaders if isinstance(loaders, (list, tuple)) else
                   loaders.values() if isinstance(loaders, dict) else [loaders]):
            ds = getattr(dl, "dataset", None)
            if isinstance(ds, StreamingJets):
                if getattr(dl, "_restored", None) is None:  # not resuming mid-epoch
                    ds.set_epoch(trainer.current_epoch)


def streaming_loader(paths, *, batch_size: int, num_workers: int = 0, seed: int = 0,
                     pin_memory: bool = False, **kw) -> StreamingLoader:
    """A :class:`StreamingLoader` yielding batches of ``batch_size`` jets from ``paths``;
    other keywords go to :class:`StreamingJets`."""
    ds = StreamingJets(paths, batch_size=batch_size, seed=seed, **kw)
    return StreamingLoader(ds, num_workers=num_workers, pin_memory=pin_memory)


__all__ = ["StreamingJets", "StreamOptions", "StreamingLoader", "ResumableLoader", "SetEpoch",
           "streaming_loader",
           "shard_range", "holdout_ranges", "REMAINDER_MODES"]
