"""Whole-event detector images for dark-shower anomaly detection: the ``.npz`` format.

One file holds N events (arXiv:2306.12955; the layout of the CoDAE paper's released data):

============  ====================  =======================================================
key           shape, dtype          meaning
============  ====================  =======================================================
``images``    (N, 72, 58, C) f4     transverse energy per pixel [GeV], axes (phi, eta);
                                    C = 3: tracks (pT sum), ECAL ET, HCAL ET; C = 1: one
                                    channel (the released ``supervised/`` files hold the sum
                                    of the three: occupancy and total ET match the 3-channel
                                    files' channel sum)
``labels``    (N,) f4               0 = QCD, 1 = SUEP, 2 = SVJ
``masses``    (N,) f4               mediator mass: an *index* in the released files (read the
                                    mass from the file name there); GeV in files we write
``n_tracks``  (N, 1) f4, optional   pile-up-corrected track multiplicity
``meta``      () str, optional      JSON written by :func:`write_images` (``mass_unit``: "GeV",
                                    generator settings)
============  ====================  =======================================================

The mediator mass comes from the file name when it follows the released naming
(``qcd_gensim_*``, ``suep_gensim_h<M>_*``, ``svj_<M>_*``), else from ``masses`` when ``meta`` says
they are GeV; anything else is an :class:`~jetfm.errors.InputError`. QCD has mass 0.
"""
from __future__ import annotations

import glob
import json
import os
import re
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from jetfm.errors import InputError, check_writable, require_file
from jetfm.io.output import save_npz_atomic

#: label codes of the released data
LABELS = {"qcd": 0, "suep": 1, "svj": 2}
LABEL_NAMES = {v: k for k, v in LABELS.items()}
#: image height (phi pixels) and width (eta pixels) after 5x5 sum pooling
IMAGE_SHAPE = (72, 58)
CHANNELS_3 = ("tracks", "ecal", "hcal")
CHANNELS_1 = ("sum",)
REQUIRED_KEYS = ("images", "labels", "masses")

_NAME_PATTERNS = (
    (re.compile(r"^qcd(?:_|$)", re.I), "qcd"),
    (re.compile(r"^suep_(?:gensim_)?h(\d+(?:p\d+)?)", re.I), "suep"),
    (re.compile(r"^svj_(\d+(?:p\d+)?)", re.I), "svj"),
)


def parse_image_name(name: str) -> tuple[str, float] | None:
    """``(process, mediator mass in GeV)`` from a released file name, or None if it does not
    follow the naming. ``suep_gensim_h400_phi2_...`` -> ("suep", 400.0); ``svj_2100_...`` ->
    ("svj", 2100.0); ``qcd_gensim_...`` -> ("qcd", 0.0)."""
    base = os.path.basename(os.fspath(name))
    for pattern, process in _NAME_PATTERNS:
        m = pattern.match(base)
        if m:
            mass = float(m.group(1).replace("p", ".")) if m.groups() else 0.0
            return process, mass
    return None


@dataclass
class EventImages:
    """A batch of whole-event images with their truth.

    images: (N, 72, 58, C) float32, ET per pixel [GeV], axes (phi, eta).
    labels: (N,) int64, 0 QCD / 1 SUEP / 2 SVJ.
    masses: (N,) float32, mediator mass [GeV] (0 for QCD).
    n_tracks: (N,) float32 track multiplicity, or None when the file(s) do not carry it.
    channels: channel names, ``("tracks", "ecal", "hcal")`` or ``("sum",)``.
    files: (N,) int32 index into ``sources`` of the file each event came from.
    """
    images: np.ndarray
    labels: np.ndarray
    masses: np.ndarray
    n_tracks: np.ndarray | None
    channels: tuple[str, ...]
    files: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    sources: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def select(self, idx) -> EventImages:
        """A subset by boolean mask or integer indices."""
        return EventImages(self.images[idx], self.labels[idx], self.masses[idx],
                           None if self.n_tracks is None else self.n_tracks[idx], self.channels,
                           self.files[idx] if len(self.files) else self.files, list(self.sources))

    @staticmethod
    def concat(parts: Sequence[EventImages]) -> EventImages:
        """Concatenate; channels must agree; n_tracks is kept only if every part has it."""
        if not parts:
            raise InputError("no image files to read")
        ch = {p.channels for p in parts}
        if len(ch) > 1:
            raise InputError(f"image files mix channel layouts {sorted(ch)}: read them separately "
                             "or reduce them to one channel first")
        sources: list[str] = []
        files = []
        for p in parts:
            files.append(p.files + len(sources))
            sources.extend(p.sources)
        nt = None
        if all(p.n_tracks is not None for p in parts):
            nt = np.concatenate([p.n_tracks for p in parts])
        return EventImages(np.concatenate([p.images for p in parts]),
                           np.concatenate([p.labels for p in parts]),
                           np.concatenate([p.masses for p in parts]), nt, parts[0].channels,
                           np.concatenate(files).astype(np.int32), sources)

    def summed(self) -> EventImages:
        """The one-channel (channel-summed ET) view, the layout of the released supervised files."""
        if self.channels == CHANNELS_1:
            return self
        img = self.images.sum(axis=-1, keepdims=True, dtype=np.float32)
        return EventImages(img, self.labels, self.masses, self.n_tracks, CHANNELS_1, self.files,
                           list(self.sources))


def _bad(path, problem):
    return InputError(problem, path)


def read_image_file(path: str | os.PathLike) -> EventImages:
    """Read one ``.npz`` image file (see the module docstring) with full validation."""
    p = require_file(path)
    try:
        with np.load(p, allow_pickle=False) as z:
            keys = set(z.files)
            missing = [k for k in REQUIRED_KEYS if k not in keys]
            if missing:
                raise _bad(p, f"missing key(s) {missing} (has {sorted(keys)}); expected "
                              "images, labels, masses and optionally n_tracks")
            images = np.asarray(z["images"])
            labels = np.asarray(z["labels"])
            masses = np.asarray(z["masses"])
            n_tracks = np.asarray(z["n_tracks"]) if "n_tracks" in keys else None
            meta = json.loads(str(z["meta"])) if "meta" in keys else {}
    except InputError:
        raise
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as err:
        raise _bad(p, f"not a readable .npz image file ({err.__class__.__name__}: {err})") from err
    if images.ndim != 4 or images.shape[1:3] != IMAGE_SHAPE or images.shape[3] not in (1, 3):
        raise _bad(p, f"'images' has shape {images.shape}, expected (N, {IMAGE_SHAPE[0]}, "
                      f"{IMAGE_SHAPE[1]}, 3 or 1) with axes (phi, eta, channel)")
    n = images.shape[0]
    for key, arr in (("labels", labels), ("masses", masses)):
        if arr.shape != (n,):
            raise _bad(p, f"'{key}' has shape {arr.shape}, expected ({n},) to match 'images'")
    if n_tracks is not None:
        if n_tracks.shape not in ((n,), (n, 1)):
            raise _bad(p, f"'n_tracks' has shape {n_tracks.shape}, expected ({n}, 1)")
        n_tracks = n_tracks.reshape(n).astype(np.float32)
    arrays: dict[str, np.ndarray | None] = {"images": images, "labels": labels,
                                            "masses": masses, "n_tracks": n_tracks}
    for key, value in arrays.items():
        if value is not None and not np.isfinite(value).all():
            raise _bad(p, f"'{key}' holds NaN or infinite values")
    if (images < 0).any():
        raise _bad(p, "'images' holds negative energies")
    if not np.isin(labels, list(LABEL_NAMES)).all():
        raise _bad(p, f"'labels' holds values other than 0 (QCD), 1 (SUEP), 2 (SVJ): "
                      f"{sorted(set(np.unique(labels).tolist()) - set(LABEL_NAMES))}")
    labels = labels.astype(np.int64)
    parsed = parse_image_name(p)
    if parsed is not None:
        process, mass = parsed
        if n and not (labels == LABELS[process]).all():
            raise _bad(p, f"file name says {process} but 'labels' hold "
                          f"{sorted(set(np.unique(labels).tolist()))}")
        masses = np.full(n, mass, np.float32)
    elif meta.get("mass_unit") == "GeV":
        masses = masses.astype(np.float32)
    else:
        raise _bad(p, "cannot tell the mediator mass: the file name does not follow the released "
                      "naming (qcd_gensim_*, suep_gensim_h<M>_*, svj_<M>_*) and the file has no "
                      "'meta' saying 'masses' are in GeV")
    return EventImages(images.astype(np.float32, copy=False), labels, masses, n_tracks,
                       CHANNELS_3 if images.shape[3] == 3 else CHANNELS_1,
                       np.zeros(n, np.int32), [p])


def image_files(spec: str | os.PathLike | Iterable[str | os.PathLike]) -> list[str]:
    """Expand a file, a folder (its ``*.npz``, sorted), a glob or a list of those into files."""
    items = [spec] if isinstance(spec, (str, os.PathLike)) else list(spec)
    out: list[str] = []
    for item in items:
        s = os.fspath(item)
        if os.path.isdir(s):
            found = sorted(glob.glob(os.path.join(s, "*.npz")))
            if not found:
                raise InputError("folder holds no .npz image files", s)
            out.extend(found)
        elif any(c in s for c in "*?["):
            found = sorted(glob.glob(s))
            if not found:
                raise InputError("pattern matches no files", s)
            out.extend(found)
        else:
            out.append(require_file(s))
    return out


def read_images(spec: str | os.PathLike | Iterable[str | os.PathLike],
                processes: Sequence[str] | None = None, channels: str = "auto") -> EventImages:
    """Read image files (a file, folder, glob or list) into one :class:`EventImages`.

    processes: keep only these ("qcd", "suep", "svj"); files with none of them are skipped
        without loading when their name tells the process.
    channels: "auto" (all files must agree), or "sum" to reduce 3-channel files to the channel sum
        so they mix with the released one-channel files.
    """
    want = None if processes is None else {LABELS[_process(p)] for p in processes}
    parts = []
    for f in image_files(spec):
        parsed = parse_image_name(f)
        if want is not None and parsed is not None and LABELS[parsed[0]] not in want:
            continue
        part = read_image_file(f)
        if want is not None:
            part = part.select(np.isin(part.labels, list(want)))
        if channels == "sum":
            part = part.summed()
        elif channels != "auto":
            raise InputError(f"channels must be 'auto' or 'sum', got '{channels}'")
        parts.append(part)
    if not parts:
        raise InputError(f"no events of {sorted(processes or [])} in {spec}")
    return EventImages.concat(parts)


def _process(name: str) -> str:
    key = name.lower()
    if key not in LABELS:
        raise InputError(f"unknown process '{name}': expected one of {sorted(LABELS)}")
    return key


def write_images(path: str | os.PathLike, images: np.ndarray, labels: np.ndarray,
                 masses: np.ndarray, n_tracks: np.ndarray | None = None,
                 meta: dict | None = None) -> str:
    """Write an image file in the released layout, atomically (``.partial`` then rename).

    images (N, 72, 58, C) float32 ET [GeV] with axes (phi, eta); labels (N,); masses (N,) in GeV;
    n_tracks (N,) or (N, 1). ``meta`` (JSON-able) is stored with ``mass_unit = "GeV"`` so the
    reader trusts ``masses`` whatever the file name.
    """
    p = check_writable(path)
    images = np.asarray(images, np.float32)
    n = images.shape[0]
    if images.ndim != 4 or images.shape[1:3] != IMAGE_SHAPE or images.shape[3] not in (1, 3):
        raise InputError(f"images have shape {images.shape}, expected (N, 72, 58, 3 or 1)", p)
    arrays = {"images": images,
              "labels": np.asarray(labels, np.float32).reshape(n),
              "masses": np.asarray(masses, np.float32).reshape(n)}
    if n_tracks is not None:
        arrays["n_tracks"] = np.asarray(n_tracks, np.float32).reshape(n, 1)
    arrays["meta"] = np.array(json.dumps({"mass_unit": "GeV", **(meta or {})}))
    return save_npz_atomic(p, arrays)
