"""Streaming sharded data: every jet exactly once per epoch over ranks x workers, determinism,
epochs, bounded memory, mid-epoch resume, token files, bad input."""
import h5py
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from jetfm import InputError
from jetfm.io.aoj import read_aoj, write_aoj
from jetfm.physics.features import Preprocessing
from jetfm.train.streaming import (
    StreamingJets,
    StreamingLoader,
    _worker_skip,
    shard_range,
    streaming_loader,
)
from tests.conftest import AOJ_MINI

SIZES = (37, 100, 23)  # 160 jets: divisible by 1 and 2, not by 3


@pytest.fixture(scope="module")
def aoj_files(tmp_path_factory):
    """Three AOJ files cut from the real mini file; jet i of file k has event id 1000 k + i."""
    jets = read_aoj(AOJ_MINI)
    folder = tmp_path_factory.mktemp("stream")
    paths = []
    rng = np.random.default_rng(0)
    for k, n in enumerate(SIZES):
        part = jets[rng.choice(len(jets), n, replace=False) if n < len(jets) else slice(None)]
        part.event_info = part.event_info.copy()
        part.event_info[:, 2] = 1000 * k + np.arange(n)
        paths.append(str(write_aoj(folder / f"part{k}.h5", part)))
    return paths


ALL_EVENTS = sorted(1000 * k + i for k, n in enumerate(SIZES) for i in range(n))


def _events(ds, workers):
    loader = DataLoader(ds, batch_size=None, num_workers=workers)
    return [int(e) for b in loader for e in b["event"][:, 2]]


@pytest.mark.parametrize("world", [1, 2, 3])
@pytest.mark.parametrize("workers", [0, 1, 2])
def test_every_jet_exactly_once(aoj_files, world, workers):
    seen = []
    batches = []
    for rank in range(world):
        ds = StreamingJets(aoj_files, chunk_size=16, buffer_size=24, seed=3, rank=rank,
                           world_size=world, remainder="exact", batch_size=7)
        ev = _events(ds, workers)
        batches.append(-(-len(ev) // 7))
        seen += ev
    assert sorted(seen) == ALL_EVENTS  # none lost, none repeated
    assert len(set(seen)) == len(seen)


@pytest.mark.parametrize("mode", ["drop", "pad"])
def test_remainder_modes_give_equal_batch_counts(aoj_files, mode):
    world, workers = 3, 2  # 160 jets on 3 ranks: one left over
    per_rank, n_batches = [], []
    for rank in range(world):
        ds = StreamingJets(aoj_files, chunk_size=16, buffer_size=24, seed=1, rank=rank,
                           world_size=world, remainder=mode, batch_size=5)
        loader = StreamingLoader(ds, num_workers=workers)
        got = [b["event"][:, 2].tolist() for b in loader]
        assert len(loader) == len(got)
        n_batches.append(len(got))
        per_rank.append([e for b in got for e in b])
    assert len(set(n_batches)) == 1  # DDP needs the same number of steps on every rank
    flat = [e for r in per_rank for e in r]
    if mode == "drop":
        assert all(len(r) == 160 // 3 for r in per_rank)
        assert len(set(flat)) == len(flat) and len(ALL_EVENTS) - len(flat) == 160 % 3
    else:
        assert all(len(r) == -(-160 // 3) for r in per_rank)
        assert set(flat) == set(ALL_EVENTS) and len(flat) - len(set(flat)) == 3 - 160 % 3


def test_shard_range_modes():
    assert [shard_range(10, r, 3, "exact") for r in range(3)] == [(0, 3), (3, 6), (6, 10)]
    assert [shard_range(10, r, 3, "drop") for r in range(3)] == [(0, 3), (3, 6), (6, 9)]
    assert [shard_range(10, r, 3, "pad") for r in range(3)] == [(0, 4), (4, 8), (8, 12)]
    with pytest.raises(ValueError):
        shard_range(10, 0, 2, "round")


def test_deterministic_for_a_seed_and_epochs_differ(aoj_files):
    def order(seed, epoch):
        ds = StreamingJets(aoj_files, chunk_size=16, buffer_size=24, seed=seed, batch_size=8)
        ds.set_epoch(epoch)
        return _events(ds, 0)

    a = order(5, 0)
    assert a == order(5, 0)
    assert a != order(6, 0)
    b = order(5, 1)
    assert b != a and sorted(b) == sorted(a) == ALL_EVENTS
    # shuffled: far from the file order
    assert np.corrcoef(a, np.arange(len(a)))[0, 1] < 0.5
    # the same with workers, across two processes each time
    ds = StreamingJets(aoj_files, chunk_size=16, buffer_size=24, seed=5, batch_size=8)
    assert _events(ds, 2) == _events(ds, 2)


def test_features_match_preprocessing(aoj_files):
    pre = Preprocessing()
    ref = {}
    for p in aoj_files:
        jets = read_aoj(p)
        x, m = pre.forward(jets)
        for i in range(len(jets)):
            ref[int(jets.event_info[i, 2])] = (x[i], m[i])
    ds = StreamingJets(aoj_files, chunk_size=32, buffer_size=50, seed=0)
    n = 0
    for item in ds:  # single jets: x (128, 3), mask (128,)
        assert item["x"].shape == (128, 3) and item["mask"].dtype == torch.bool
        x, m = ref[int(item["event"][2])]
        np.testing.assert_array_equal(item["x"].numpy(), x)
        np.testing.assert_array_equal(item["mask"].numpy(), m)
        n += 1
    assert n == 160


def test_memory_bounded_by_buffer_and_chunk(aoj_files, monkeypatch):
    """The first jet comes out after reading only enough chunks to fill the buffer."""
    ds = StreamingJets(aoj_files, chunk_size=8, buffer_size=20, seed=0)
    reads = []
    orig = ds.read_piece
    monkeypatch.setattr(ds, "read_piece", lambda *a: reads.append(a) or orig(*a))
    next(iter(ds))
    assert sum(hi - lo for _, lo, hi, _ in reads) <= 20 + 8
    assert max(hi - lo for _, lo, hi, _ in reads) <= 8
    assert len(ds.pieces(0, 1)) >= 160 // 8


def test_no_shuffle_streams_in_file_order(aoj_files):
    ds = StreamingJets(aoj_files, chunk_size=16, shuffle=False, batch_size=50)
    assert _events(ds, 0) == [1000 * k + i for k, n in enumerate(SIZES) for i in range(n)]
    # a jet range (a split) of the concatenated files
    part = StreamingJets(aoj_files, shuffle=False, start=30, stop=50, batch_size=50)
    assert _events(part, 0) == list(range(30, 37)) + list(range(1000, 1013))
    assert part.n_jets == 20


@pytest.mark.parametrize("workers", [0, 2])
def test_loader_resumes_mid_epoch(aoj_files, workers):
    def loader():
        return streaming_loader(aoj_files, batch_size=6, num_workers=workers, seed=2,
                                chunk_size=16, buffer_size=24, world_size=2, rank=1)

    full = loader()
    full.dataset.set_epoch(1)
    ref = [b["index"].tolist() for b in full]
    first = loader()
    first.dataset.set_epoch(1)
    got = []
    for i, b in enumerate(first):
        got.append(b["index"].tolist())
        if i == 4:
            break
    state = first.state_dict()
    assert state == {"epoch": 1, "consumed": 5}
    second = loader()  # a fresh process after the crash
    second.load_state_dict(state)
    got += [b["index"].tolist() for b in second]
    assert got == ref
    # the next epoch starts from its beginning again
    assert len(list(second)) == len(ref)


def test_state_saved_at_the_end_of_an_epoch_starts_a_new_one(aoj_files):
    """Lightning restores the loader state of a checkpoint written after the last batch of an
    epoch (when training by max_steps): the next iteration is then a whole new epoch."""
    def loader():
        return streaming_loader(aoj_files, batch_size=16, seed=2, chunk_size=16, buffer_size=24)

    done = loader()
    n = len(list(done))
    assert done.state_dict() == {"epoch": 0, "consumed": n}
    again = loader()
    again.load_state_dict(done.state_dict())
    again.dataset.set_epoch(1)  # what SetEpoch does at the next epoch's start
    ref = loader()
    ref.dataset.set_epoch(1)
    assert [b["index"].tolist() for b in again] == [b["index"].tolist() for b in ref]


def test_worker_skip_round_robin():
    # workers with 3 and 2 items are read w0 w1 w0 w1 w0
    got = [_worker_skip(c, [3, 2]) for c in range(6)]
    assert [t for t, _ in got] == [[0, 0], [1, 0], [1, 1], [2, 1], [2, 2], [3, 2]]
    assert [w for _, w in got[:5]] == [0, 1, 0, 1, 0]


def test_token_files(tmp_path):
    paths = []
    for k, (n, length) in enumerate(((13, 6), (9, 8))):
        p = tmp_path / f"tok{k}.h5"
        seqs = np.full((n, length), -1, np.int32)
        seqs[:, 0] = 0
        seqs[:, 1] = 100 * k + np.arange(n) + 1  # the first code tags the sequence
        seqs[:, 2] = 513
        with h5py.File(p, "w") as f:
            f.create_dataset("tokens", data=seqs, chunks=(4, length))
            f.attrs.update({"format": "jetfm-tokens", "codebook_size": 512})
        paths.append(str(p))
    for world in (1, 2):
        seen = []
        for rank in range(world):
            ds = StreamingJets(paths, chunk_size=4, buffer_size=5, seed=0, rank=rank,
                               world_size=world, remainder="exact", batch_size=4)
            for b in DataLoader(ds, batch_size=None, num_workers=0):
                assert b["tokens"].shape[1] == 8 and b["tokens"].dtype == torch.int64
                seen += b["tokens"][:, 1].tolist()
        assert sorted(seen) == sorted([i + 1 for i in range(13)] + [101 + i for i in range(9)])


def test_bad_inputs(aoj_files, tmp_path):
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"not an hdf5 file at all")
    with pytest.raises(InputError, match="bad.h5"):
        StreamingJets([bad])
    with pytest.raises(InputError, match="no such|not found|exist"):
        StreamingJets([tmp_path / "missing.h5"])
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f.create_dataset("x", data=np.zeros(3))
    with pytest.raises(InputError, match="neither an AspenOpenJets"):
        StreamingJets([other])
    tok = tmp_path / "tok.h5"
    with h5py.File(tok, "w") as f:
        f.create_dataset("tokens", data=np.zeros((2, 3), np.int32))
        f.attrs["format"] = "jetfm-tokens"
    with pytest.raises(InputError, match="cannot mix"):
        StreamingJets([aoj_files[0], tok])
    with pytest.raises(InputError, match="empty jet range"):
        StreamingJets(aoj_files, start=500)
    with pytest.raises(ValueError, match="remainder"):
        StreamingJets(aoj_files, remainder="round")
    with pytest.raises(ValueError, match="persistent"):
        StreamingLoader(StreamingJets(aoj_files), num_workers=1, persistent_workers=True)


def test_lightning_epochs_and_ranks_through_setepoch(aoj_files, tmp_path):
    """In a Lightning fit, SetEpoch gives each epoch its own order of the same jets."""
    import lightning.pytorch as L

    from jetfm.train.streaming import SetEpoch

    class Tiny(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(3, 1)
            self.seen: dict[int, list[int]] = {}

        def training_step(self, batch, i):
            self.seen.setdefault(self.current_epoch, []).extend(batch["event"][:, 2].tolist())
            return self.lin(batch["x"]).pow(2).mean()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.01)

    ds = StreamingJets(aoj_files, chunk_size=16, buffer_size=24, seed=4, batch_size=20)
    module = Tiny()
    trainer = L.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_progress_bar=False,
                        enable_checkpointing=False, enable_model_summary=False,
                        default_root_dir=tmp_path, callbacks=[SetEpoch()])
    trainer.fit(module, StreamingLoader(ds, num_workers=1))
    e0, e1 = module.seen[0], module.seen[1]
    assert sorted(e0) == sorted(e1) == ALL_EVENTS
    assert e0 != e1


def test_gpu_benchmark_refuses_without_cuda():
    import subprocess
    import sys
    from pathlib import Path

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu.py"
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2 and "no CUDA device" in proc.stderr
