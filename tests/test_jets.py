import numpy as np
import pytest

from jetfm import InputError, Jets


def make(n=4, p=5, seed=0):
    rng = np.random.default_rng(seed)
    counts = rng.integers(1, p + 1, n)
    mask = np.arange(p)[None] < counts[:, None]
    cons = rng.normal(size=(n, p, 3)).astype(np.float32) * mask[..., None]
    jet = rng.normal(size=(n, 2)).astype(np.float32)
    return Jets(cons, mask, jet, ("px", "py", "pz"), ("pt", "eta"),
                event_info=np.arange(3 * n).reshape(n, 3))


def test_named_columns_and_slicing():
    j = make()
    assert j.c("py").shape == (4, 5) and np.array_equal(j.c("py"), j.constituents[..., 1])
    assert np.array_equal(j.j("eta"), j.jet[:, 1])
    sub = j[1:3]
    assert len(sub) == 2 and np.array_equal(sub.c("px"), j.c("px")[1:3])
    assert np.array_equal(sub.event_info, j.event_info[1:3])
    assert len(j[np.array([True, False, True, False])]) == 2
    assert len(j[2]) == 1 and len(j[-1]) == 1
    with pytest.raises(KeyError, match="no constituent column 'E'"):
        j.c("E")


def test_concat_pads_to_largest():
    a, b = make(3, 4, 1), make(2, 7, 2)
    c = Jets.concat([a, b])
    assert len(c) == 5 and c.n_max == 7
    assert np.array_equal(c.n_constituents, np.concatenate([a.n_constituents, b.n_constituents]))


def test_awkward_round_trip():
    j = make(6, 8)
    arr = j.to_awkward()
    assert len(arr) == 6 and list(arr.constituents.px[0]) == list(j.c("px")[0][j.mask[0]])
    back = Jets.from_awkward(arr, n_max=8)
    assert back.constituent_names == j.constituent_names and back.jet_names == j.jet_names
    np.testing.assert_array_equal(back.constituents, j.constituents)
    np.testing.assert_array_equal(back.mask, j.mask)
    np.testing.assert_array_equal(back.event_info, j.event_info)


def test_sort_by_keeps_padding_last():
    j = make(5, 6)
    s = j.sort_by(j.c("px"))
    assert np.array_equal(s.mask, j.mask)
    for i in range(5):
        v = s.c("px")[i][s.mask[i]]
        assert np.all(np.diff(v) <= 0)


def test_validation():
    j = make()
    j.validate()
    bad = make()
    bad.constituents[0, 0, 0] = np.nan
    with pytest.raises(InputError, match="non-finite values in constituent column 'px'"):
        bad.validate("f.h5")
    with pytest.raises(InputError, match="mask shape"):
        Jets(np.zeros((2, 3, 1)), np.zeros((2, 4), bool), np.zeros((2, 0)), ("a",), ())
    with pytest.raises(InputError, match="constituent names"):
        Jets(np.zeros((2, 3, 2)), np.zeros((2, 3), bool), np.zeros((2, 0)), ("a",), ())
    # NaN is a missing value only in the track columns
    ok = Jets(np.full((1, 1, 1), np.nan), np.ones((1, 1), bool), np.zeros((1, 0)), ("d0",), ())
    ok.validate()
    pad = make()
    pad.constituents[~pad.mask] = 1.0
    if (~pad.mask).any():
        with pytest.raises(InputError, match="padding"):
            pad.validate()


def test_with_columns():
    j = make()
    k = j.with_constituent_columns(E=np.ones(j.mask.shape)).with_jet_fields(mass=3.0)
    assert k.constituent_names[-1] == "E" and np.array_equal(k.c("E"), j.mask.astype(np.float32))
    assert np.all(k.j("mass") == 3.0)
    assert j.select_columns(["pz"], ["eta"]).constituent_names == ("pz",)
