"""Outputs written chunk by chunk that survive a crash: what an interrupted writer leaves behind,
and how a rerun of the same job continues from it.

Both writers hold the lock of :func:`jetfm.io.output.atomic_output` on the output ``OUT`` from
their start to :meth:`close` or :meth:`abort`; only the lock holder reads, cuts or removes what
an earlier run left. A job is identified by its *resume key* (a string the caller derives from
its settings): what was left by a job of another key is removed, never continued.

:class:`ResumableAOJ` appends chunks to ``OUT.partial``, an AOJ file (:class:`AOJWriter`) whose
file attributes record the progress after each chunk:

======================  ========================================================================
attribute               meaning
======================  ========================================================================
``resume_key``          the job's key
``completed_chunks``    chunks stored completely
``events_per_chunk``    JSON list: ``Jets.meta["events_generated"]`` of each complete chunk
``events_generated``    their sum
======================  ========================================================================

A resume cuts the datasets back to the rows of the complete chunks (the rows of a chunk cut
by the crash are dropped) and appends from there.

:class:`StagedJetClass` keeps each complete chunk as ``OUT.chunks/chunk_<k:05d>.npz``
(``np.savez``, uncompressed: ``constituents``, ``mask``, ``jet``, ``constituent_names``,
``jet_names``, ``event_info``), with ``OUT.chunks/sample.json`` holding the key; at the end the
chunks become one JetClass ROOT file (:func:`jetfm.io.jetclass.write_jetclass`) holding the
job's attributes as the JSON string ``provenance``, and the folder is removed.
"""
from __future__ import annotations

import json
import os
import shutil

import numpy as np

from jetfm.io.aoj import DATASETS, AOJWriter
from jetfm.io.output import atomic_output, save_npz_atomic, write_text_atomic
from jetfm.jets import Jets


class ResumableAOJ:
    """An AOJ file ``out`` written chunk by chunk (module docstring); ``sizes``: the jets of
    every chunk of the job, ``attrs``: its file attributes. :attr:`done` chunks are there
    already (0 for a fresh start)."""

    def __init__(self, out: str, attrs: dict, key: str, sizes: list[int]):
        # the lock on OUT comes first: only then is OUT.partial ours to resume or replace
        output = atomic_output(out, keep_partial=True)
        tmp = output.acquire()
        try:
            self.done, self.events = _cut_to_complete_chunks(tmp, key, sizes)
            self.writer = AOJWriter(out, attrs={**attrs, "resume_key": key,
                                                "completed_chunks": self.done,
                                                "events_generated": sum(self.events),
                                                "events_per_chunk": json.dumps(self.events)},
                                    resume=self.done > 0, output=output)
        except BaseException:
            output.discard()
            raise

    def add(self, k: int, jets: Jets) -> None:
        """Append chunk ``k`` (the chunks come in order) and record it as complete."""
        self.writer.append(jets)
        self.events.append(int(jets.meta.get("events_generated", 0)))
        self.writer.set_attrs(completed_chunks=k + 1, events_generated=sum(self.events),
                              events_per_chunk=json.dumps(self.events))

    def abort(self) -> None:
        """Stop; ``OUT.partial`` stays for a resume."""
        self.writer.abort()

    def close(self) -> str:
        """Rename the finished file onto ``out``; returns its path."""
        return self.writer.close()


def _cut_to_complete_chunks(tmp: str, key: str, sizes: list[int]) -> tuple[int, list[int]]:
    """(complete chunks, events generated for each) in ``tmp`` left by an earlier run of the
    job ``key``, its rows cut to those chunks; (0, []), and the file removed, if there is none
    or it is another job's. Called with the lock on the output held, so no running writer's
    file is ever taken for another job's."""
    import h5py

    if not os.path.exists(tmp):
        return 0, []
    try:
        with h5py.File(tmp, "r+") as f:
            if f.attrs.get("resume_key") != key:
                raise ValueError("another job's file")
            done = int(f.attrs.get("completed_chunks", 0))
            rows = sum(sizes[:done])
            if f["PFCands"].shape[0] < rows:
                raise ValueError("fewer rows than complete chunks")
            for name in DATASETS:
                f[name].resize(rows, axis=0)
            return done, json.loads(f.attrs.get("events_per_chunk", "[]"))[:done]
    except Exception:
        os.remove(tmp)
        return 0, []


class StagedJetClass:
    """A JetClass ROOT file ``out`` whose chunks (of ``sizes`` jets) are staged in
    ``out.chunks/`` (module docstring) until :meth:`close`; :attr:`done` chunks are staged
    already."""

    def __init__(self, out: str, attrs: dict, key: str, sizes: list[int]):
        self.out, self.attrs = out, attrs
        # held until close or abort: the chunk folder belongs to one run at a time
        self.output = atomic_output(out, suffix=".root")
        self.output.acquire()
        try:
            self.dir = out + ".chunks"
            self._open(key)
        except BaseException:
            self.output.discard()
            raise
        self.done = 0
        while self.done < len(sizes) and os.path.exists(self._path(self.done)):
            self.done += 1

    def _open(self, key: str) -> None:
        """Keep the chunk folder of the same job, else start a new one."""
        key_file = os.path.join(self.dir, "sample.json")
        if os.path.isdir(self.dir):
            try:
                with open(key_file) as fh:
                    same = json.load(fh)["resume_key"] == key
            except (OSError, ValueError, KeyError):
                same = False
            if not same:
                shutil.rmtree(self.dir)
        if not os.path.isdir(self.dir):
            os.makedirs(self.dir)
            write_text_atomic(key_file, json.dumps({"resume_key": key}), lock=False)

    def _path(self, k: int) -> str:
        return os.path.join(self.dir, f"chunk_{k:05d}.npz")

    def add(self, k: int, jets: Jets) -> None:
        """Stage chunk ``k`` (complete, or not there at all after a crash)."""
        save_npz_atomic(self._path(k), {
            "constituents": jets.constituents, "mask": jets.mask, "jet": jets.jet,
            "constituent_names": np.array(jets.constituent_names),
            "jet_names": np.array(jets.jet_names), "event_info": jets.event_info},
            compressed=False, lock=False)

    def abort(self) -> None:
        """Stop; the staged chunks stay in ``out.chunks/`` for a resume."""
        self.output.discard()

    def close(self) -> str:
        """Write the ROOT file from the staged chunks, remove them; returns its path."""
        try:
            return self._close()
        except BaseException:
            self.output.discard()
            raise

    def _close(self) -> str:
        import uproot

        from jetfm.io.jetclass import write_jetclass

        parts = []
        k = 0
        while os.path.exists(self._path(k)):
            with np.load(self._path(k)) as z:
                parts.append(Jets(z["constituents"], z["mask"], z["jet"],
                                  tuple(z["constituent_names"]), tuple(z["jet_names"]),
                                  z["event_info"]))
            k += 1
        staging = self.output.tmp
        write_jetclass(staging, Jets.concat(parts))
        with uproot.update(staging) as f:
            f["provenance"] = json.dumps(self.attrs)
        shutil.rmtree(self.dir)
        return self.output.commit()
