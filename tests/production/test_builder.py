"""build-aoj end to end on the real PFNano files with Dask: per-task output files written by the
workers, manifest, cut flow, failed inputs, determinism over worker counts and chunking, resume
after a hard kill."""
from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import textwrap
import urllib.request

import h5py
import numpy as np
import pytest

from jetfm.cli import main
from jetfm.errors import InputError
from jetfm.io.aoj import DATASETS, read_aoj
from jetfm.io.nanoaod import _events_tree, chunk_to_jets, inspect_pfnano, read_pfnano
from jetfm.production.builder import build_aoj
from jetfm.production.selection import Selection, apply_selection, event_branches
from tests.conftest import PFNANO_INDEX, PFNANO_INLINE

JETS_PER_FILE = 60
N_INDEX, N_INLINE = 19, 133  # jets passing the AOJ selection (see test_nanoaod_selection)


def datasets(folder) -> dict[str, dict[str, np.ndarray]]:
    """Every dataset of every AOJ file of a build folder, by file name."""
    out = {}
    for fn in sorted(os.listdir(folder)):
        if fn.endswith(".h5"):
            with h5py.File(os.path.join(folder, fn), "r") as f:
                out[fn] = {k: f[k][:] for k in DATASETS}
    return out


def assert_same_outputs(a, b) -> None:
    """The same AOJ files holding the same data. (Not always the same bytes: once in about a
    dozen runs HDF5 placed a chunk index at another file address, data equal.)"""
    da, db = datasets(a), datasets(b)
    assert list(da) == list(db) and da
    for fn in da:
        for k in DATASETS:
            np.testing.assert_array_equal(da[fn][k], db[fn][k], err_msg=f"{fn}/{k}")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("inputs")
    data = PFNANO_INLINE.read_bytes()
    (d / "truncated.root").write_bytes(data[: len(data) // 2])  # an unreadable input
    return [str(PFNANO_INDEX), str(d / "truncated.root"), str(PFNANO_INLINE)]


@pytest.fixture(scope="module")
def built(dask_client, inputs, tmp_path_factory):
    out = tmp_path_factory.mktemp("built_2workers")
    # 40 events per task: the 100-event file is three tasks, written back in order
    res = build_aoj(inputs, str(out), client=dask_client, jets_per_file=JETS_PER_FILE,
                    chunk_events=40, progress=False, log=lambda m: None)
    return out, res


def test_outputs_manifest_and_cutflow(built, inputs):
    out, res = built
    assert res.n_workers == 2 and res.inputs_done == 2 and res.jets == N_INDEX + N_INLINE
    assert list(res.failed) == [inputs[1]] and "truncated" in res.failed[inputs[1]]
    # one file per task (input id, chunk), a second one where a chunk holds more than 60 jets
    names = [os.path.basename(p) for p in res.outputs]
    assert names == ["aoj_00000_0000_00.h5", "aoj_00002_0000_00.h5", "aoj_00002_0000_01.h5",
                     "aoj_00002_0001_00.h5", "aoj_00002_0002_00.h5"]
    assert sorted(os.listdir(out)) == sorted(names + ["cutflow.json", "cutflow.md",
                                                      "manifest.json"])
    man = json.loads((out / "manifest.json").read_text())
    assert list(man["inputs"]) == inputs and man["outputs"] == names  # input order
    assert [r["id"] for r in man["inputs"].values()] == [0, 1, 2]
    rows = []
    for path in inputs[::2]:
        rec = man["inputs"][path]
        assert rec["status"] == "done" and rec["size"] == os.path.getsize(path)
        assert rec["sha256"] == hashlib.sha256(open(path, "rb").read()).hexdigest()
        assert sum(o["jets"] for o in rec["outputs"]) == rec["jets"]
        rows += [(o["file"], o["jets"]) for o in rec["outputs"]]
    assert man["inputs"][inputs[0]]["events"] == 10 and man["inputs"][inputs[2]]["jets"] == N_INLINE
    # the manifest's rows are the files' rows; no file holds more than --jets-per-file
    for fn, n in rows:
        with h5py.File(out / fn, "r") as f:
            assert f["PFCands"].shape[0] == n <= JETS_PER_FILE
    assert man["inputs"][inputs[1]]["status"] == "failed"
    flow = json.loads((out / "cutflow.json").read_text())
    assert flow["total"]["jets"]["constituents"] == N_INDEX + N_INLINE
    assert flow["total"]["events"]["all"] == 110 and flow["total"]["inputs"] == 2
    md = (out / "cutflow.md").read_text()
    assert "| FatJet jetId == 6 | 95 | 152 |" in md and "truncated.root" in md


def test_written_jets_equal_direct_reading(built):
    """What the Dask build wrote (through the AOJ writer and reader) equals the jets gathered
    in this process straight from each file."""
    out, res = built
    got = read_aoj(res.outputs)
    want = []
    for path in (PFNANO_INDEX, PFNANO_INLINE):
        info = inspect_pfnano(path)
        chunk = read_pfnano(path, event_branches=event_branches(Selection(), info.branches))
        want.append(chunk_to_jets(chunk, apply_selection(chunk, Selection(), info.branches)[0]))
    want_c = np.concatenate([w.pad_to(150).constituents for w in want])
    np.testing.assert_allclose(got.constituents, want_c, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(got.event_info, np.concatenate([w.event_info for w in want]))
    np.testing.assert_array_equal(got.jet, np.concatenate([w.jet for w in want]))
    with h5py.File(res.outputs[0], "r") as f:  # on disk: 150 slots, neutral sentinels -1
        cands = f["PFCands"][:]
        assert cands.shape[1:] == (150, 11)
        neutral = (cands[..., 3] > 0) & (cands[..., 8] == 0)
        assert neutral.any() and (cands[neutral][:, [4, 5, 6, 7]] == -1).all()


def test_one_worker_gives_the_same_files_and_other_chunking_the_same_jets(
        built, inputs, dask_client, tmp_path):
    out, res2 = built
    one = sorted(dask_client.scheduler_info()["workers"])[:1]
    res = build_aoj(inputs, str(tmp_path / "one"), client=dask_client, workers=one,
                    jets_per_file=JETS_PER_FILE, chunk_events=40, progress=False,
                    log=lambda m: None)
    assert res.n_workers == 1 and res.jets == N_INDEX + N_INLINE
    assert_same_outputs(out, tmp_path / "one")
    # one task per input: other files, the same jets in the same order
    res = build_aoj(inputs, str(tmp_path / "whole"), client=dask_client,
                    jets_per_file=JETS_PER_FILE, chunk_events=100_000, progress=False,
                    log=lambda m: None)
    assert len(res.outputs) == 4  # 19 | 60 + 60 + 13
    a, b = read_aoj(res2.outputs), read_aoj(res.outputs)
    for x, y in ((a.constituents, b.constituents), (a.jet, b.jet), (a.event_info, b.event_info)):
        np.testing.assert_array_equal(x, y)


def test_rerun_skips_done_inputs_and_refuses_other_settings(built, inputs, dask_client):
    out, _ = built
    before = datasets(out)
    res = build_aoj(inputs, str(out), client=dask_client, jets_per_file=JETS_PER_FILE,
                    progress=False, log=lambda m: None)
    assert res.inputs_skipped == 2 and res.jets == 0 and list(res.failed) == [inputs[1]]
    after = datasets(out)
    assert list(before) == list(after)
    for fn in before:
        np.testing.assert_array_equal(before[fn]["PFCands"], after[fn]["PFCands"])
    with pytest.raises(InputError, match="other settings.*jets_per_file"):
        build_aoj(inputs, str(out), client=dask_client, jets_per_file=61, progress=False)
    with pytest.raises(InputError, match="truncated.root"):
        build_aoj(inputs[1:], str(out), client=dask_client, jets_per_file=JETS_PER_FILE,
                  strict=True, progress=False)


KILLER = textwrap.dedent("""
    import os, sys
    from jetfm.production import builder
    builder.SAVE_EVERY_S = 0  # a save after every task: the kill lands between two tasks
    calls = [0]
    save = builder.Manifest.save
    def dying_save(self):  # a hard kill just before the n-th save: files written, not recorded
        calls[0] += 1
        if calls[0] == int(sys.argv[3]):
            os._exit(137)
        save(self)
    builder.Manifest.save = dying_save
    builder.build_aoj(sys.argv[4:], sys.argv[2], scheduler=sys.argv[1], jets_per_file=5,
                      chunk_events=4, progress=False)
""")


def test_kill_midway_then_rerun_equals_uninterrupted(dask_client, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    files = []
    for name in ("a.root", "b.root"):  # two inputs of 10 events: chunks of 4, 4, 2 events
        os.symlink(PFNANO_INDEX, src / name)
        files.append(str(src / name))
    ref = tmp_path / "ref"
    build_aoj(files, str(ref), scheduler="inline", jets_per_file=5, chunk_events=4,
              progress=False)
    out = tmp_path / "out"
    # save 1 records the input ids, saves 2 and 3 two finished tasks; the third task's files
    # are written when the driver dies
    proc = subprocess.run([sys.executable, "-c", KILLER, dask_client.scheduler.address,
                           str(out), "4", *files], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 137, proc.stderr[-2000:]
    man = json.loads((out / "manifest.json").read_text())
    assert {r["status"] for r in man["inputs"].values()} <= {"new", "partial"}  # none done
    recorded = {o["file"] for r in man["inputs"].values()
                for ch in r.get("chunks", {}).values() for o in ch["outputs"]}
    assert sum(len(r.get("chunks", {})) for r in man["inputs"].values()) == 2
    on_disk = {fn for fn in os.listdir(out) if fn.endswith(".h5")}
    assert recorded < on_disk <= set(os.listdir(ref))  # unrecorded files of the third task
    stray = out / "aoj_00001_0002_00.h5.0123abcd.partial"  # as a write cut by a crash leaves
    stray.write_bytes(b"half")
    res = build_aoj(files, str(out), client=dask_client, jets_per_file=5, chunk_events=4,
                    progress=False, log=lambda m: None)
    assert res.inputs_skipped == 0 and res.inputs_done == 2 and res.jets == 2 * N_INDEX
    assert not list(out.glob("*.partial"))
    assert_same_outputs(ref, out)
    assert json.loads((out / "cutflow.json").read_text())["total"] == \
        json.loads((ref / "cutflow.json").read_text())["total"]
    assert json.loads((out / "manifest.json").read_text())["outputs"] == \
        json.loads((ref / "manifest.json").read_text())["outputs"]


def test_cli_build_and_split(dask_client, tmp_path, capsys):
    out = tmp_path / "cli"
    rc = main(["build-aoj", str(PFNANO_INDEX), "--out", str(out), "--scheduler",
               dask_client.scheduler.address, "--triggers", "HLT_AK8PFJet4*",
               "--met-filters", "none", "--no-progress", "--json"])
    out_err = capsys.readouterr()
    summary = json.loads(out_err.out.strip().splitlines()[-1])
    assert rc == 0 and summary["jets"] == 21 and summary["workers"] == 2
    # the printed dashboard address answers (bokeh serves it)
    link = re.search(r"Dask dashboard: (http\S+)", out_err.err).group(1)
    with urllib.request.urlopen(link, timeout=30) as page:
        assert page.status == 200 and b"Dask" in page.read()
    rc = main(["split", str(out), "--fractions", "0.5,0.25,0.25", "--no-progress"])
    assert rc == 0 and "train:" in capsys.readouterr().out
    rec = json.loads((out / "split" / "split.json").read_text())
    assert sum(rec["counts"].values()) == 21 and rec["fractions"] == [0.5, 0.25, 0.25]
    rc = main(["split", str(out), "--fractions", "0.5,0.6,0.1"])
    assert rc == 2 and "sum to 1" in capsys.readouterr().err


def test_corrupted_basket_is_reported_and_skipped_or_stops_strict(tmp_path):
    """A file that opens but whose data cannot be decompressed fails in its task; the build
    reports it and carries on (or stops with strict), and records it for the next run."""
    # the tree opened (and cached) by earlier tests
    branch = _events_tree(str(PFNANO_INLINE))["FatJetPFCands_pt"]
    seek, size = int(branch.member("fBasketSeek")[0]), int(branch.member("fBasketBytes")[0])
    data = bytearray(PFNANO_INLINE.read_bytes())
    data[seek + size // 2: seek + size // 2 + 64] = bytes(range(64))
    bad = tmp_path / "corrupt.root"
    bad.write_bytes(bytes(data))
    messages = []
    res = build_aoj([str(bad)], str(tmp_path / "out"), scheduler="inline", progress=False,
                    log=messages.append)
    assert res.jets == 0 and res.outputs == [] and "corrupted" in res.failed[str(bad)]
    assert any("corrupt.root" in m and "DecompressionError" in m for m in messages)
    man = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert man["inputs"][str(bad)]["status"] == "failed"
    with pytest.raises(InputError, match="corrupt.root: cannot read entries"):
        build_aoj([str(bad)], str(tmp_path / "strict"), scheduler="inline", strict=True,
                  progress=False)
