"""Training sources: an AOJ file and a token file told apart, with their length and chunking;
token rows read padded; anything else refused with one line."""
import h5py
import numpy as np
import pytest

from jetfm import InputError
from jetfm.io.sources import probe_source
from jetfm.io.tokens import read_token_rows, write_tokens
from tests.conftest import AOJ_MINI


def test_real_aoj_file():
    src = probe_source(str(AOJ_MINI))
    with h5py.File(AOJ_MINI) as f:
        chunks = f["PFCands"].chunks
    assert (src.kind, src.n, src.seq_len) == ("aoj", 100, 0)
    assert src.chunk_rows == (chunks[0] if chunks else 1)


def test_token_file_and_its_rows(tmp_path):
    seqs = np.full((10, 6), -1, np.int64)
    for i in range(10):
        seqs[i, :i % 5 + 2] = np.arange(i % 5 + 2)
    path = write_tokens(tmp_path / "t.h5", seqs, codebook_size=8)
    src = probe_source(path)
    assert (src.kind, src.n, src.seq_len) == ("tokens", 10, 6)
    np.testing.assert_array_equal(read_token_rows(path, 3, 7), seqs[3:7])
    wide = read_token_rows(path, 0, 2, seq_len=9)
    assert wide.shape == (2, 9) and (wide[:, 6:] == -1).all()


def test_other_files_are_refused(tmp_path):
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f.create_dataset("x", data=np.zeros(3))
    with pytest.raises(InputError, match="neither an AspenOpenJets"):
        probe_source(str(other))
    text = tmp_path / "t.h5"
    text.write_text("no HDF5")
    with pytest.raises(InputError, match="not a readable HDF5 file"):
        probe_source(str(text))
    with pytest.raises(InputError, match="cannot read tokens"):
        read_token_rows(str(text), 0, 1)
