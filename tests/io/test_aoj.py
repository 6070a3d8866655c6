import h5py
import numpy as np
import pytest

from jetfm import InputError
from jetfm.io.aoj import (
    PFCANDS_COLUMNS,
    AOJWriter,
    ReadOptions,
    aoj_length,
    iter_aoj,
    read_aoj,
    write_aoj,
)
from tests.conftest import AOJ_MINI, PFNANO_INDEX, PFNANO_INLINE


def test_reads_real_aoj_file():
    jets = read_aoj(AOJ_MINI)
    assert len(jets) == 100 and jets.n_max == 150
    n = jets.n_constituents
    assert n.min() == 10 and n.max() == 90 and abs(n.mean() - 45.9) < 0.05
    # nConstituents column equals the mask count in this file
    np.testing.assert_array_equal(jets.j("nConstituents"), n)
    # sorted by pT, padding last
    pt = np.hypot(jets.c("px"), jets.c("py"))
    for i in range(len(jets)):
        assert np.all(np.diff(pt[i][jets.mask[i]]) <= 1e-4)
    assert np.all(jets.event_info[:, 0] == 281693)
    # neutral sentinels -> NaN, charged tracks keep their values
    pid = np.abs(jets.c("pdgId"))
    neutral = jets.mask & np.isin(pid, (22, 130))
    assert np.isnan(jets.c("d0")[neutral]).all()
    charged = jets.mask & (pid == 211)
    assert np.isfinite(jets.c("d0")[charged]).mean() > 0.9
    # constituent-sum pT is about 0.9 of the stored jet pT (un-weighted candidates)
    ratio = np.hypot(jets.c("px").sum(1), jets.c("py").sum(1)) / jets.j("pt")
    assert 0.8 < np.median(ratio) < 1.05


def test_resorts_unsorted_files(tmp_path):
    with h5py.File(AOJ_MINI) as f:
        data = {k: f[k][:] for k in f}
    rng = np.random.default_rng(0)
    shuffled = data["PFCands"].copy()
    for i in range(len(shuffled)):
        perm = rng.permutation(150)  # padding interleaved too
        shuffled[i] = shuffled[i][perm]
    out = tmp_path / "shuffled.h5"
    with h5py.File(out, "w") as f:
        for k, v in data.items():
            f.create_dataset(k, data=shuffled if k == "PFCands" else v)
    a, b = read_aoj(AOJ_MINI), read_aoj(out)
    np.testing.assert_array_equal(a.mask, b.mask)
    # same pT order (candidates with tied pT may swap), same candidates
    np.testing.assert_array_equal(np.hypot(a.c("px"), a.c("py")), np.hypot(b.c("px"), b.c("py")))
    np.testing.assert_allclose(np.nansum(a.constituents, 1), np.nansum(b.constituents, 1),
                               rtol=1e-5, atol=1e-3)


def test_options_puppi_and_hf(tmp_path):
    plain = read_aoj(AOJ_MINI)
    w = read_aoj(AOJ_MINI, options=ReadOptions(puppi=True))
    assert w.c("E").sum() < plain.c("E").sum()
    # plant HF candidates and check they are dropped
    with h5py.File(AOJ_MINI) as f:
        data = {k: f[k][:] for k in f}
    data["PFCands"][:, 0, 9] = 1.0
    out = tmp_path / "hf.h5"
    with h5py.File(out, "w") as f:
        for k, v in data.items():
            f.create_dataset(k, data=v)
    hf = read_aoj(out, options=ReadOptions(drop_hf=True))
    assert np.array_equal(hf.n_constituents, plain.n_constituents - 1)
    assert not np.isin(np.abs(hf.c("pdgId")[hf.mask]), (1, 2)).any()


def test_slices_columns_and_streaming():
    full = read_aoj(AOJ_MINI)
    part = read_aoj(AOJ_MINI, start=10, stop=35, columns=["px", "E", "pt", "nConstituents"])
    assert len(part) == 25 and part.constituent_names == ("px", "E")
    assert part.jet_names == ("pt", "nConstituents")
    np.testing.assert_array_equal(part.c("E"), full.c("E")[10:35])
    chunks = list(iter_aoj([AOJ_MINI, AOJ_MINI], chunk_size=30, start=90, stop=130))
    assert [len(c) for c in chunks] == [10, 30]
    np.testing.assert_array_equal(chunks[1].c("px"), full.c("px")[:30])
    assert aoj_length([AOJ_MINI, AOJ_MINI]) == 200


def test_writer_round_trip_and_layout(tmp_path):
    jets = read_aoj(AOJ_MINI)
    out = tmp_path / "copy.h5"
    write_aoj(out, jets, attrs={"generator": "test"})
    with h5py.File(out) as f, h5py.File(AOJ_MINI) as ref:
        for k in ref:
            assert f[k].shape == ref[k].shape and f[k].dtype == ref[k].dtype
            assert f[k].maxshape[0] is None and f[k].chunks[1:] == f[k].shape[1:]
        for k in ("PFCands", "jet_kinematics", "jet_tagging"):
            assert f[k].compression == "gzip"
        # sentinels restored on write: the bytes equal the original (already pT sorted)
        np.testing.assert_array_equal(f["PFCands"][:], ref["PFCands"][:])
        np.testing.assert_array_equal(f["event_info"][:], ref["event_info"][:])
        assert f.attrs["generator"] == "test"
    back = read_aoj(out)
    np.testing.assert_array_equal(np.nan_to_num(back.constituents, nan=-7),
                                  np.nan_to_num(jets.constituents, nan=-7))


def test_writer_appends_and_is_atomic(tmp_path):
    jets = read_aoj(AOJ_MINI)
    out = tmp_path / "app.h5"
    with AOJWriter(out) as w:
        w.append(jets[:40])
        assert not out.exists() and (tmp_path / "app.h5.partial").exists()
        w.append(jets[40:])
    assert aoj_length(out) == 100 and not (tmp_path / "app.h5.partial").exists()
    with pytest.raises(RuntimeError):
        with AOJWriter(tmp_path / "crash.h5") as w:
            w.append(jets[:10])
            raise RuntimeError("boom")
    assert not (tmp_path / "crash.h5").exists()
    with AOJWriter(tmp_path / "crash.h5", resume=True) as w:
        assert len(w) == 10
        w.append(jets[10:20])
    assert aoj_length(tmp_path / "crash.h5") == 20


@pytest.mark.parametrize("case", ["missing", "text", "truncated", "no_dataset", "bad_shape",
                                  "nan"])
def test_bad_input(tmp_path, case):
    p = tmp_path / "bad.h5"
    if case == "text":
        p.write_text("hello")
    elif case == "truncated":
        p.write_bytes(AOJ_MINI.read_bytes()[:60_000])
    elif case in ("no_dataset", "bad_shape", "nan"):
        with h5py.File(AOJ_MINI) as f:
            data = {k: f[k][:] for k in f}
        if case == "no_dataset":
            del data["jet_tagging"]
        elif case == "bad_shape":
            data["PFCands"] = data["PFCands"][..., :10]
        else:
            data["PFCands"][3, 2, PFCANDS_COLUMNS.index("px")] = np.nan
        with h5py.File(p, "w") as f:
            for k, v in data.items():
                f.create_dataset(k, data=v)
    expect = {"missing": "no such file", "text": "not an HDF5 file",
              "truncated": "corrupted or truncated", "no_dataset": "missing dataset",
              "bad_shape": "shape", "nan": "non-finite"}[case]
    with pytest.raises(InputError, match=expect) as err:
        read_aoj(p)
    assert str(p) in str(err.value) and "\n" not in str(err.value)


# ---------------------------------------------------------------------------------------------
# The reader before it was compiled and blocked for speed, in NumPy, kept as the reference:
# every option and storage layout must give the same Jets to the bit.
def _reference_rows_to_jets(cands, kin, tag, ev, opts, columns, source):
    from jetfm.io.aoj import JET_COLUMNS, TRACK_COLUMNS
    from jetfm.jets import Jets

    ci = {n: i for i, n in enumerate(PFCANDS_COLUMNS)}
    cnames, jnames = PFCANDS_COLUMNS, JET_COLUMNS
    if columns is not None:
        cnames = tuple(c for c in columns if c in PFCANDS_COLUMNS)
        jnames = tuple(c for c in columns if c in JET_COLUMNS)
    mask = cands[..., ci["E"]] > 0
    if opts.drop_hf:
        mask &= np.abs(cands[..., ci["pdgId"]]) >= 11
    if opts.puppi:
        w = cands[..., ci["puppiWeight"]].copy()
        for k in ("px", "py", "pz", "E"):
            cands[..., ci[k]] *= w
        mask &= cands[..., ci["E"]] > 0
    if opts.trim:
        used = np.flatnonzero(mask.any(axis=0))
        p = int(used[-1]) + 1 if used.size else 0
        cands, mask = cands[:, :p], mask[:, :p]
    sort_key = None
    if opts.sort_by_pt or opts.drop_hf or opts.puppi:
        sort_key = np.hypot(cands[..., ci["px"]], cands[..., ci["py"]])
    if cnames != PFCANDS_COLUMNS:
        cands = cands[..., [ci[c] for c in cnames]]
        ci = {n: i for i, n in enumerate(cnames)}
    cands = np.ascontiguousarray(cands, dtype=np.float32)
    np.multiply(cands, mask[..., None], out=cands)
    tracks = [k for k in TRACK_COLUMNS if k in ci]
    if opts.missing_as_nan and tracks:
        sentinel = mask.copy()
        for k in tracks:
            sentinel &= cands[..., ci[k]] == -1.0
        if sentinel.any():
            for k in tracks:
                np.copyto(cands[..., ci[k]], np.float32(np.nan), where=sentinel)
    jet = np.concatenate([kin, tag], axis=1).astype(np.float32)
    if jnames != JET_COLUMNS:
        jet = jet[:, [JET_COLUMNS.index(c) for c in jnames]]
    jets = Jets(cands, mask, jet, cnames, jnames, ev, {"format": "aoj", "source": source})
    if sort_key is not None:
        key = np.where(jets.mask, sort_key, -1.0)
        unsorted = (np.diff(key, axis=1) > 0).any(axis=1)
        if unsorted.any():
            fixed = jets[unsorted].sort_by(sort_key[unsorted])
            jets.constituents[unsorted] = fixed.constituents
            jets.mask[unsorted] = fixed.mask
    return jets


def _copies(tmp_path):
    """The real file, and copies of it: each jet's constituent slots permuted (padding
    interleaved) in two thirds of the jets; and its rows under the storage layouts the reader
    decompresses itself (HDF5 chunks of whole jets: deflate, shuffle + deflate, no filter) or
    through h5py (contiguous; the original's small chunks); and the jets of the real PFNano files
    as the AOJ builder writes them (chunks of 512 jets)."""
    with h5py.File(AOJ_MINI) as f:
        data = {k: f[k][:] for k in f}
    rng = np.random.default_rng(1)
    shuffled = data["PFCands"].copy()
    for i in range(len(shuffled)):
        if i % 3:  # a third of the jets stay sorted
            shuffled[i] = shuffled[i][rng.permutation(150)]
    layouts = {"shuffled": {"compression": "gzip"},
               "deflate": {"compression": "gzip", "chunks": (16, 150, 11)},
               "shuffle_deflate": {"compression": "gzip", "shuffle": True, "chunks": (32, 150, 11)},
               "plain_chunks": {"chunks": (7, 150, 11)},
               "contiguous": {}}
    paths = [AOJ_MINI]
    for name, kw in layouts.items():
        out = tmp_path / f"{name}.h5"
        with h5py.File(out, "w") as f:
            for k, v in data.items():
                v = shuffled if k == "PFCands" and name != "deflate" else v
                f.create_dataset(k, data=v, **(kw if k == "PFCands" else {}))
        paths.append(out)
    # real CMS jets of other origins: the PFNano files, as the AOJ builder stores them
    from jetfm.io.nanoaod import chunk_to_rows, read_pfnano

    for i, src in enumerate((PFNANO_INDEX, PFNANO_INLINE)):
        chunk = read_pfnano(src)
        out = tmp_path / f"pfnano_{i}.h5"
        with AOJWriter(out, lock=False) as w:
            w.append_rows(chunk_to_rows(chunk, np.ones(len(chunk.jet_event), bool)))
        paths.append(out)
    return paths


@pytest.mark.parametrize("block", [512, 7])
def test_reader_equals_reference_bit_for_bit(tmp_path, monkeypatch, block):
    import jetfm.io.aoj as aoj

    monkeypatch.setattr(aoj, "BLOCK_JETS", block)
    cases = [(ReadOptions(), None), (ReadOptions(trim=True), ("px", "py", "pz", "E")),
             (ReadOptions(puppi=True, drop_hf=True), None),
             (ReadOptions(puppi=True, trim=True), ("E", "py", "puppiWeight", "d0")),
             (ReadOptions(sort_by_pt=False, missing_as_nan=False), ("dz", "E", "pt", "tau2")),
             (ReadOptions(trim=True), ("d0", "px", "py", "dzErr", "charge"))]
    for path in _copies(tmp_path):
        with h5py.File(path) as f:
            rows = [f[k][:] for k in ("PFCands", "jet_kinematics", "jet_tagging", "event_info")]
        for (opts, cols), (lo, hi) in zip(cases * 2, [(0, 100)] * len(cases) + [(3, 61)] * 6):
            ref = _reference_rows_to_jets(rows[0][lo:hi].copy(), *(r[lo:hi] for r in rows[1:]),
                                          opts, cols, str(path))
            got = read_aoj(path, lo, hi, options=opts, columns=cols, chunk_size=23)
            assert got.constituent_names == ref.constituent_names
            assert got.jet_names == ref.jet_names
            assert got.constituents.flags.c_contiguous
            for a, b in ((got.constituents, ref.constituents), (got.mask, ref.mask),
                         (got.jet, ref.jet), (got.event_info, ref.event_info)):
                assert a.dtype == b.dtype and a.shape == b.shape
                # bit for bit, NaN included
                assert np.array_equal(np.ascontiguousarray(a).view(np.uint8),
                                      np.ascontiguousarray(b).view(np.uint8)), (path, opts, cols)


def test_chunks_never_written_read_as_padding(tmp_path):
    """A resizable dataset whose last chunk was never written holds its fill value (zeros):
    empty jets, as h5py reads them."""
    jets = read_aoj(AOJ_MINI, stop=20)
    out = tmp_path / "gap.h5"
    write_aoj(out, jets)
    with h5py.File(out, "a") as f:
        for ds in f.values():
            ds.resize(2000, axis=0)  # 1488 more rows: the chunk of rows 1536.. is never written
    back = read_aoj(out, start=10, stop=2000, chunk_size=700)
    assert len(back) == 1990 and not back.mask[10:].any()
    np.testing.assert_array_equal(back.constituents[:10], read_aoj(out, 10, 20).constituents)


def test_nan_in_pfcands_names_the_column(tmp_path):
    with h5py.File(AOJ_MINI) as f:
        data = {k: f[k][:] for k in f}
    data["PFCands"][60, 3, PFCANDS_COLUMNS.index("charge")] = np.nan
    data["PFCands"][70, 0, PFCANDS_COLUMNS.index("charge")] = np.inf
    bad = tmp_path / "nan.h5"
    with h5py.File(bad, "w") as f:
        for k, v in data.items():
            f.create_dataset(k, data=v)
    # the neutral sentinels (-1 -> NaN) are no non-finite input; the planted ones are
    with pytest.raises(InputError, match=r"PFCands column 'charge' \(2 entries\)"):
        read_aoj(bad)
    assert read_aoj(bad, columns=("px", "d0")).c("d0").shape == (100, 150)
