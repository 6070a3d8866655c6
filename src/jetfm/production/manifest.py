"""The records of an AOJ build folder: ``manifest.json`` (what is built, rewritten atomically),
the cut flow (``cutflow.json``, ``cutflow.md``) and the names of the build's AOJ files.

``manifest.json`` holds per input its id, size, mtime, sha256, events, jets, the output files with
their rows and its cut flow, and for an input not finished yet the chunks already written;
everything it lists exists complete. A reader takes the files in its order
(:func:`output_files`)."""
from __future__ import annotations

import json
import os
import re

from jetfm import __version__
from jetfm.errors import InputError
from jetfm.io.output import write_text_atomic
from jetfm.production.selection import CutFlow, Selection

MANIFEST = "manifest.json"
MANIFEST_FORMAT = "jetfm-build-aoj/2"
#: the files besides the AOJ outputs that a build writes in its folder
BUILD_FILES = (MANIFEST, "cutflow.json", "cutflow.md")


def output_pattern(name: str) -> re.Pattern:
    """Every file a build named ``name`` writes, finished or ``.partial``."""
    return re.compile(re.escape(name) + r"_\d{5,}_\d{4,}_\d{2,}\.h5(\.[0-9a-f]+\.partial)?$")


class Manifest:
    """``manifest.json`` of an output folder, rewritten atomically.

    ``inputs``: path -> record, in input-id order. A record has ``id``, ``status`` (``done``,
    ``partial``: some chunks written, or ``failed``), ``size``, ``mtime_ns``; done: ``sha256``,
    ``flavour``, ``events``, ``jets``, ``outputs`` ([{"file", "jets"}] in chunk order),
    ``cutflow``; partial: ``chunk_events`` and ``chunks`` (chunk number -> its outputs, events,
    jets, cut flow, checksum); failed: ``error``.
    """

    def __init__(self, out_dir: str, settings: dict):
        self.path = os.path.join(out_dir, MANIFEST)
        self.data = {"format": MANIFEST_FORMAT, "jetfm": __version__, "settings": settings,
                     "next_id": 0, "inputs": {}, "outputs": []}
        if os.path.exists(self.path):
            try:
                with open(self.path) as fh:
                    old = json.load(fh)
            except (json.JSONDecodeError, UnicodeDecodeError) as err:
                raise InputError(f"unreadable manifest ({err}); build into a new folder",
                                 self.path) from err
            if old.get("format") != MANIFEST_FORMAT:
                raise InputError(f"not a {MANIFEST_FORMAT} manifest (another layout or "
                                 "version); build into a new folder", self.path)
            if old.get("settings") != settings:
                diff = sorted(k for k in set(settings) | set(old.get("settings", {}))
                              if settings.get(k) != old.get("settings", {}).get(k))
                raise InputError("this folder holds a build with other settings (" +
                                 ", ".join(diff) + "); use a new --out folder", self.path)
            self.data = old
            try:
                listed = [o["file"] for r in old["inputs"].values()
                          for o in r.get("outputs", []) + [o for ch in r.get("chunks", {}).values()
                                                           for o in ch["outputs"]]]
                listed += old["outputs"]
            except (KeyError, TypeError, AttributeError) as err:
                raise InputError(f"malformed manifest ({err.__class__.__name__}: {err}); build "
                                 "into a new folder", self.path) from err
            check_listed_files(listed, output_pattern(settings["name"]), self.path)

    @property
    def inputs(self) -> dict:
        return self.data["inputs"]

    def input_id(self, path: str) -> int:
        """The input's id, given once, in the order inputs are first seen."""
        rec = self.inputs.get(path)
        if rec is None:
            rec = self.inputs[path] = {"id": self.data["next_id"], "status": "new"}
            self.data["next_id"] += 1
        return rec["id"]

    def recorded_files(self) -> set[str]:
        """Every output file the manifest lists (done inputs and chunks of partial ones)."""
        files = set()
        for rec in self.inputs.values():
            outs = rec.get("outputs", [])
            for ch in rec.get("chunks", {}).values():
                outs = outs + ch["outputs"]
            files.update(o["file"] for o in outs)
        return files

    def save(self) -> None:
        recs = sorted(self.inputs.items(), key=lambda kv: kv[1]["id"])
        self.data["inputs"] = dict(recs)
        self.data["outputs"] = [o["file"] for _, r in recs if r["status"] == "done"
                                for o in r["outputs"]]
        write_text_atomic(self.path, json.dumps(self.data, indent=1), fsync=True)


def write_cutflow(out_dir: str, selection: Selection, total: CutFlow, manifest: Manifest) -> None:
    """``cutflow.json`` (total and per input) and ``cutflow.md`` beside the outputs."""
    per_input = {p: r["cutflow"] for p, r in manifest.inputs.items() if r.get("status") == "done"}
    bad = {p: r["error"] for p, r in manifest.inputs.items() if r.get("status") == "failed"}
    doc = {"selection": selection.to_dict(), "labels": selection.labels(),
           "total": total.to_dict(), "per_input": per_input, "failed_inputs": bad}
    write_text_atomic(os.path.join(out_dir, "cutflow.json"), json.dumps(doc, indent=1))
    md = [f"# AOJ build cut flow ({total.inputs} input(s))", "", total.to_markdown(selection)]
    if bad:
        md += ["## Inputs that failed (retried by the next run)", ""]
        md += [f"- {p}: {e}" for p, e in bad.items()] + [""]
    write_text_atomic(os.path.join(out_dir, "cutflow.md"), "\n".join(md))


def check_listed_files(names, pattern: re.Pattern | None, manifest: str) -> None:
    """Raise InputError unless every file name a manifest lists is a plain name of this build
    (``pattern``; any ``.h5`` name if None) inside its folder: a crafted manifest must not make
    a build delete, or a split read, files elsewhere."""
    for f in names:
        ok = isinstance(f, str) and os.path.basename(f) == f and f not in ("", ".", "..") and (
            pattern.match(f) if pattern is not None else f.endswith(".h5"))
        if not ok:
            raise InputError(f"the manifest lists {f!r}, not an output file name of this folder "
                             "(names only, no paths); build into a new folder", manifest)


def output_files(out_dir: str) -> list[str]:
    """The AOJ files of a build folder in order (from its manifest, else sorted ``*.h5``)."""
    mpath = os.path.join(out_dir, MANIFEST)
    if os.path.exists(mpath):
        try:
            with open(mpath) as fh:
                meta = json.load(fh)
            outs, name = meta.get("outputs", []), meta.get("settings", {}).get("name")
        except (OSError, ValueError, AttributeError) as err:
            raise InputError(f"unreadable manifest ({err.__class__.__name__})", mpath) from err
        if not isinstance(outs, list):
            raise InputError("malformed manifest ('outputs' is not a list)", mpath)
        check_listed_files(outs, output_pattern(name) if isinstance(name, str) else None, mpath)
        return [os.path.join(out_dir, f) for f in outs]
    return sorted(os.path.join(out_dir, f) for f in os.listdir(out_dir) if f.endswith(".h5"))
