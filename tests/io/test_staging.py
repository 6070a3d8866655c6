"""Resumable chunked outputs: what a crash leaves, what a rerun keeps, cuts or removes; the real
AOJ jets written in chunks come back unchanged."""
import json

import h5py
import numpy as np
import pytest

from jetfm import InputError
from jetfm.io.aoj import read_aoj
from jetfm.io.jetclass import read_jetclass
from jetfm.io.staging import ResumableAOJ, StagedJetClass
from tests.conftest import AOJ_MINI

SIZES = [40, 40, 20]


@pytest.fixture(scope="module")
def jets():
    out = read_aoj(AOJ_MINI)
    out.meta["events_generated"] = 7
    return out


def _chunk(jets, k):
    a = sum(SIZES[:k])
    part = jets[a:a + SIZES[k]]
    part.meta["events_generated"] = 10 + k
    return part


def test_aoj_resumes_after_the_complete_chunks(jets, tmp_path):
    out = str(tmp_path / "s.h5")
    w = ResumableAOJ(out, {"producer": "test"}, "key-1", SIZES)
    assert w.done == 0
    w.add(0, _chunk(jets, 0))
    w.add(1, _chunk(jets, 1))
    w.writer.append(_chunk(jets, 2)[:5])  # rows of a chunk the crash cut short
    w.abort()
    with h5py.File(out + ".partial") as f:
        assert f.attrs["completed_chunks"] == 2 and f["PFCands"].shape[0] == 85
        assert json.loads(f.attrs["events_per_chunk"]) == [10, 11]
    w = ResumableAOJ(out, {"producer": "test"}, "key-1", SIZES)
    assert w.done == 2 and len(w.writer) == 80  # the short chunk's rows are cut off
    w.add(2, _chunk(jets, 2))
    assert w.close() == out
    back = read_aoj(out)
    np.testing.assert_array_equal(back.event_info, jets.event_info)
    np.testing.assert_array_equal(back.constituents[back.mask], jets.constituents[jets.mask])
    with h5py.File(out) as f:
        assert f.attrs["events_generated"] == 33 and f.attrs["producer"] == "test"
        assert f.attrs["resume_key"] == "key-1"
    assert not (tmp_path / "s.h5.partial").exists() and not (tmp_path / "s.h5.lock").exists()


def test_aoj_of_another_job_is_started_afresh(jets, tmp_path):
    out = str(tmp_path / "s.h5")
    w = ResumableAOJ(out, {}, "key-1", SIZES)
    w.add(0, _chunk(jets, 0))
    w.abort()
    w = ResumableAOJ(out, {}, "key-2", SIZES)
    assert w.done == 0 and len(w.writer) == 0
    w.abort()


def test_second_writer_stops_and_touches_nothing(jets, tmp_path):
    out = str(tmp_path / "s.h5")
    w = ResumableAOJ(out, {}, "key-1", SIZES)
    w.add(0, _chunk(jets, 0))
    with pytest.raises(InputError, match="another jetfm process"):
        ResumableAOJ(out, {}, "key-2", SIZES)
    assert len(w.writer) == 40
    w.abort()


def test_jetclass_staging_resumes_from_its_chunk_folder(jets, tmp_path):
    out = str(tmp_path / "s.root")
    part = jets
    s = StagedJetClass(out, {"seed": 3}, "key-1", SIZES)
    s.add(0, _chunk(part, 0))
    s.abort()
    folder = tmp_path / "s.root.chunks"
    assert sorted(p.name for p in folder.iterdir()) == ["chunk_00000.npz", "sample.json"]
    s = StagedJetClass(out, {"seed": 3}, "key-1", SIZES)
    assert s.done == 1
    s.add(1, _chunk(part, 1))
    s.add(2, _chunk(part, 2))
    assert s.close() == out and not folder.exists()
    back = read_jetclass(out)
    assert len(back) == 100
    np.testing.assert_array_equal(back.n_constituents, jets.n_constituents)
    # the reader orders constituents of equal pT its own way: compare per-jet sums
    np.testing.assert_allclose(back.c("px").sum(1), jets.c("px").sum(1), rtol=1e-5, atol=1e-4)
    import uproot

    with uproot.open(out) as f:
        assert json.loads(str(f["provenance"])) == {"seed": 3}
    # another job's chunks are removed, not continued
    s = StagedJetClass(out, {}, "key-1", SIZES)
    s.add(0, _chunk(part, 0))
    s.abort()
    s = StagedJetClass(out, {}, "key-2", SIZES)
    assert s.done == 0 and sorted(p.name for p in folder.iterdir()) == ["sample.json"]
    s.abort()
