"""Deterministic train/val/test split keyed on (run, lumi, event)."""
from __future__ import annotations

import numpy as np
import pytest

from jetfm.errors import InputError
from jetfm.io.aoj import ReadOptions, read_aoj, write_aoj
from jetfm.production.split import assign, event_hash, parse_fractions, split_aoj
from tests.conftest import AOJ_MINI


def _keys(paths) -> set:
    jets = read_aoj(paths, options=ReadOptions(sort_by_pt=False))
    return {(*map(int, e), round(float(pt), 3)) for e, pt in zip(jets.event_info, jets.j("pt"))}


def test_hash_is_uniform_and_seeded():
    rng = np.random.default_rng(1)
    ev = np.stack([rng.integers(270_000, 285_000, 200_000), rng.integers(1, 3000, 200_000),
                   rng.integers(0, 2 ** 40, 200_000)], axis=1)
    counts = np.bincount(assign(ev, (0.9, 0.05, 0.05)), minlength=3) / len(ev)
    np.testing.assert_allclose(counts, [0.9, 0.05, 0.05], atol=0.004)
    h0, h1 = event_hash(ev[:1000]), event_hash(ev[:1000], seed=1)
    assert (h0 == event_hash(ev[:1000])).all() and (h0 != h1).mean() > 0.99
    # consecutive event numbers (the common case) spread evenly as well
    seq = np.stack([np.full(100_000, 281693), np.full(100_000, 1401),
                    np.arange(100_000)], axis=1)
    assert abs((assign(seq, (0.5, 0.5, 0.0)) == 0).mean() - 0.5) < 0.01


def test_split_real_aoj_independent_of_file_order(tmp_path):
    jets = read_aoj(AOJ_MINI)
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    write_aoj(a, jets[:37])
    write_aoj(b, jets[37:])
    r1 = split_aoj([str(a), str(b)], str(tmp_path / "s1"), (0.6, 0.2, 0.2), progress=False)
    r2 = split_aoj([str(b), str(a)], str(tmp_path / "s2"), (0.6, 0.2, 0.2), jets_per_file=10,
                   progress=False)
    assert r1.counts == r2.counts and sum(r1.counts.values()) == len(jets)
    assert len(r2.files["train"]) == -(-r2.counts["train"] // 10)
    seen: dict = {}
    for name in ("train", "val", "test"):
        k1, k2 = _keys(r1.files[name]), _keys(r2.files[name])
        assert k1 == k2
        for run, lumi, event, _ in k1:  # an event's jets never straddle two splits
            assert seen.setdefault((run, lumi, event), name) == name
    # rows are copied unchanged
    train = read_aoj(r1.files["train"])
    src = read_aoj(AOJ_MINI)
    first = np.flatnonzero((src.event_info == train.event_info[0]).all(axis=1))[0]
    np.testing.assert_array_equal(np.nan_to_num(train.constituents[0], nan=-9),
                                  np.nan_to_num(src.constituents[first], nan=-9))


def test_bad_fractions():
    for bad in ("0.9,0.1", "0.5,0.6,-0.1", "a,b,c", "0.5,0.3,0.3"):
        with pytest.raises(InputError, match="--fractions"):
            parse_fractions(bad)
    assert parse_fractions("0.8, 0.1, 0.1") == (0.8, 0.1, 0.1)
