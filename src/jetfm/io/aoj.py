"""AspenOpenJets (AOJ) HDF5 files: streaming reader and layout-identical writer.

Layout of every AOJ file (Aspen Open Jets, arXiv:2412.10504):

==================  ===============  ==========================================================
dataset             shape, dtype     columns
==================  ===============  ==========================================================
``event_info``      (N, 3) int64     run, luminosityBlock, event
``jet_kinematics``  (N, 4) float32   pt, eta, phi, msoftdrop (-1 where undefined)
``PFCands``         (N, 150, 11) f4  px, py, pz, E, d0, d0Err, dz, dzErr, charge, pdgId,
                                     puppiWeight; zero-padded
``jet_tagging``     (N, 13) float32  nConstituents, tau1..tau4, ParticleNet scores, PN mass
==================  ===============  ==========================================================

Reading conventions applied here: the mask is ``E > 0``; constituents are re-sorted by pT
(the files do not guarantee it); the neutral sentinels ``d0 = d0Err = dz = dzErr = -1`` become NaN
(missing) in memory and -1 again on writing; optionally HF candidates (|pdgId| < 11) are dropped and
four-momenta are PUPPI-weighted. Reads are streamed in chunks of jets, so memory is bounded by the
chunk size whatever the file size (one real file holds 14.5 GB of uncompressed ``PFCands``).
Stored values are read as float32 (the AOJ dtype). Where the HDF5 chunks of ``PFCands`` hold whole
jets with deflate (and shuffle) or no filter, as this module writes them, the reader decompresses
the chunks itself and a compiled kernel (:mod:`jetfm.io._aoj_kernels`) turns each one into
constituents while it is in the CPU cache; other layouts are read through h5py in blocks.
"""
from __future__ import annotations

import glob
import os
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from jetfm.errors import InputError, check_writable, require_file
from jetfm.io.output import AtomicOutput, atomic_output
from jetfm.jets import Jets

PFCANDS_COLUMNS = ("px", "py", "pz", "E", "d0", "d0Err", "dz", "dzErr", "charge", "pdgId",
                   "puppiWeight")
KINEMATICS_COLUMNS = ("pt", "eta", "phi", "msoftdrop")
TAGGING_COLUMNS = ("nConstituents", "tau1", "tau2", "tau3", "tau4",
                   "PN_H4qvsQCD", "PN_HbbvsQCD", "PN_HccvsQCD", "PN_QCD", "PN_TvsQCD",
                   "PN_WvsQCD", "PN_ZvsQCD", "PN_mass")
JET_COLUMNS = KINEMATICS_COLUMNS + TAGGING_COLUMNS
TRACK_COLUMNS = ("d0", "d0Err", "dz", "dzErr")
N_MAX = 150
DATASETS = {"PFCands": (N_MAX, len(PFCANDS_COLUMNS)), "jet_kinematics": (len(KINEMATICS_COLUMNS),),
            "jet_tagging": (len(TAGGING_COLUMNS),), "event_info": (3,)}
#: jets per HDF5 chunk in files we write: 512 jets of PFCands are 3.4 MB uncompressed
CHUNK_JETS = 512
GZIP_LEVEL = 4


@dataclass(frozen=True)
class ReadOptions:
    """How to turn stored AOJ rows into :class:`Jets`.

    sort_by_pt: re-sort constituents by pT, highest first.
    drop_hf: drop candidates with |pdgId| < 11 (HF calorimeter candidates, pdgId 1 and 2).
    puppi: multiply px, py, pz, E by the PUPPI weight.
    missing_as_nan: neutral d0/dz sentinels (-1) become NaN.
    trim: drop the trailing constituent slots that are padding in every jet of a chunk, so P is
        the chunk's largest constituent count instead of 150 (less memory and work downstream;
        chunks then differ in P, which Jets.concat handles).
    """
    sort_by_pt: bool = True
    drop_hf: bool = False
    puppi: bool = False
    missing_as_nan: bool = True
    trim: bool = False


def expand_paths(paths: str | os.PathLike | Iterable[str | os.PathLike]) -> list[str]:
    """Paths, globs, or a text file listing paths (one per line, ``#`` comments) -> file list."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    out: list[str] = []
    for p in paths:
        p = os.fspath(p)
        if any(ch in p for ch in "*?["):
            hits = sorted(glob.glob(p))
            if not hits:
                raise InputError("glob matches no file", p)
            out.extend(hits)
        elif p.endswith(".txt"):
            require_file(p)
            with open(p) as fh:
                lines = [ln.split("#", 1)[0].strip() for ln in fh]
            base = os.path.dirname(p)
            out.extend(os.path.join(base, ln) if not os.path.isabs(ln) else ln
                       for ln in lines if ln)
        else:
            out.append(p)
    return out


def _open(path: str):
    import h5py

    require_file(path)
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        with open(path, "rb") as fh:
            magic = fh.read(8)
        if magic != b"\x89HDF\r\n\x1a\n":
            raise InputError("not an HDF5 file (expected an AspenOpenJets .h5 file)", path) from err
        raise InputError(f"corrupted or truncated HDF5 file ({err})", path) from err
    try:
        _check_layout(f, path)
    except Exception:
        f.close()
        raise
    return f


def _check_layout(f, path: str) -> int:
    missing = [k for k in DATASETS if k not in f]
    if missing:
        raise InputError(f"not an AspenOpenJets file: missing dataset(s) {', '.join(missing)}",
                         path)
    import h5py

    groups = [k for k in DATASETS if not isinstance(f[k], h5py.Dataset)]
    if groups:
        raise InputError(f"not an AspenOpenJets file: {', '.join(groups)} is a group, expected "
                         "a dataset", path)
    n = f["PFCands"].shape[0]
    for name, tail in DATASETS.items():
        shape = f[name].shape
        if name == "PFCands":
            if len(shape) != 3 or shape[2] != tail[1]:
                raise InputError(f"dataset PFCands has shape {shape}, expected (N, P, 11)", path)
        elif shape[1:] != tail:
            raise InputError(f"dataset {name} has shape {shape}, expected (N, {tail[0]})", path)
        if shape[0] != n:
            raise InputError(f"dataset {name} has {shape[0]} rows but PFCands has {n}", path)
    return n


def aoj_length(paths) -> int:
    """Total number of jets in one or more AOJ files (reads only the headers)."""
    total = 0
    for p in expand_paths(paths):
        with _open(p) as f:
            total += f["PFCands"].shape[0]
    return total


def _check_finite(name: str, arr: np.ndarray, columns: Sequence[str], source: str) -> None:
    """One pass over a raw dataset; a clear error naming the first non-finite column."""
    ok = np.isfinite(arr).all(axis=tuple(range(arr.ndim - 1)))
    if not ok.all():
        col = columns[int(np.flatnonzero(~ok)[0])]
        n = int((~np.isfinite(arr[..., columns.index(col)])).sum())
        raise InputError(f"non-finite values (NaN or inf) in {name} column '{col}' "
                         f"({n} entries)", source)


#: jets per block of a chunk turned into Jets at once where the file's HDF5 chunks do not span
#: whole jets (read through h5py; rounded up to whole HDF5 chunks): a block's rows stay in the
#: CPU cache from decompression to the finished constituents
BLOCK_JETS = 512
_DEFLATE, _SHUFFLE = 1, 2


def _chunk_filters(ds) -> list[int] | None:
    """The filter pipeline of a PFCands dataset whose stored chunks this module decompresses
    itself (whole jets per chunk, little-endian float32, only deflate and shuffle), else None."""
    if ds.chunks is None or tuple(ds.chunks[1:]) != tuple(ds.shape[1:]) \
            or ds.dtype != np.dtype("<f4"):
        return None
    plist = ds.id.get_create_plist()
    filters = [plist.get_filter(i)[0] for i in range(plist.get_nfilters())]
    return filters if set(filters) <= {_DEFLATE, _SHUFFLE} else None


def _decode_chunk(raw: bytes, filters: list[int], skipped: int, nbytes: int) -> np.ndarray:
    """One stored chunk -> its float32 values: the filters undone in reverse order (a set bit
    of ``skipped`` marks a filter the writer did not apply to this chunk)."""
    data = raw
    for pos in range(len(filters) - 1, -1, -1):
        if skipped >> pos & 1:
            continue
        if filters[pos] == _DEFLATE:
            data = zlib.decompress(data, bufsize=nbytes)
        else:  # shuffle: byte k of every value was stored in the k-th quarter
            data = np.frombuffer(data, np.uint8).reshape(4, -1).T.tobytes()
    if len(data) != nbytes:
        raise ValueError(f"a chunk holds {len(data)} bytes, expected {nbytes}")
    return np.frombuffer(data, "<f4")


def _pfcands_blocks(ds, lo: int, hi: int) -> Iterator[tuple[int, np.ndarray]]:
    """(first jet - lo, stored rows (B, P, 11) float32, read-only) of the PFCands jets
    ``lo..hi``, in blocks that fit the CPU cache: the dataset's own chunks, decompressed here
    when it stores whole jets per chunk with deflate/shuffle (no intermediate copy of the rows),
    else h5py reads of about :data:`BLOCK_JETS` jets into one reused buffer."""
    n, p, f = ds.shape
    filters = _chunk_filters(ds)
    rows_per = ds.chunks[0] if ds.chunks is not None else 1
    if filters is not None:
        nbytes = rows_per * p * f * 4
        for c0 in range(lo - lo % rows_per, hi, rows_per):
            a, b = max(c0, lo), min(c0 + rows_per, hi)
            try:
                skipped, raw = ds.id.read_direct_chunk((c0, 0, 0))
            except RuntimeError:  # a chunk never written: h5py gives its fill value
                block = ds[a:b].astype(np.float32)
            else:
                block = _decode_chunk(raw, filters, skipped, nbytes).reshape(rows_per, p, f)
                block = block[a - c0:b - c0]
            block.flags.writeable = False
            yield a - lo, block
        return
    size = -(-BLOCK_JETS // rows_per) * rows_per
    buf = np.empty((min(size, max(hi - lo, 0)), p, f), np.float32)
    for a in range(lo, hi, size):
        b = min(a + size, hi)
        block = buf[:b - a]
        block.flags.writeable = True
        ds.read_direct(block, np.s_[a:b], np.s_[0:b - a])
        block.flags.writeable = False
        yield a - lo, block


def _read_constituents(ds, lo: int, hi: int, opts: ReadOptions, cnames: Sequence[str],
                       validate: bool, source: str) -> tuple[np.ndarray, np.ndarray]:
    """(constituents (N, P', len(cnames)) float32, mask (N, P')) of the PFCands jets
    ``lo..hi``, every reading convention applied (P' is the used width with ``trim``)."""
    from jetfm.io import _aoj_kernels

    ci = {c: i for i, c in enumerate(PFCANDS_COLUMNS)}
    n, p = hi - lo, ds.shape[1]
    k = len(cnames)
    sel = np.array([ci[c] for c in cnames], np.int64)
    track = np.array([j for j, c in enumerate(cnames) if c in TRACK_COLUMNS], np.int64)
    cols = np.array([ci[c] for c in ("px", "py", "pz", "E", "pdgId", "puppiWeight")], np.int64)
    sort = opts.sort_by_pt or opts.drop_hf or opts.puppi
    flat, flat_mask = np.empty(n * p * k, np.float32), np.empty(n * p, bool)
    out, mask = flat.reshape(n, p, k), flat_mask.reshape(n, p)
    used = np.zeros(n, np.int64)
    bad = p
    for first, block in _pfcands_blocks(ds, lo, hi):
        bad = min(bad, _aoj_kernels.rows_to_constituents(
            block, first, sel, track, cols, opts.drop_hf, opts.puppi, opts.missing_as_nan, sort,
            out, mask, used))
    width = int(used.max(initial=0)) if opts.trim else p
    if validate and bad < width:
        _raise_non_finite(ds[lo:hi], opts, sel, width, cnames, source)
    del out, mask  # no view may outlive the resizing below
    if width < p:
        _aoj_kernels.compact(flat, flat_mask, n, p, width, k)
        flat.resize(n * width * k, refcheck=False)  # shrinks in place: no copy
        flat_mask.resize(n * width, refcheck=False)
    return flat.reshape(n, width, k), flat_mask.reshape(n, width)


def _raise_non_finite(cands: np.ndarray, opts: ReadOptions, sel: np.ndarray, width: int,
                      cnames: Sequence[str], source: str) -> None:
    """The error naming the first selected PFCands column with a non-finite value in the used
    slots, as stored (after the PUPPI weights, before masking)."""
    cands = cands.astype(np.float32)
    if opts.puppi:
        w = cands[..., PFCANDS_COLUMNS.index("puppiWeight")].copy()
        for c in ("px", "py", "pz", "E"):
            cands[..., PFCANDS_COLUMNS.index(c)] *= w
    _check_finite("PFCands", cands[:, :width][..., sel], cnames, source)


def _read_jets(f, path: str, lo: int, hi: int, opts: ReadOptions,
               columns: Sequence[str] | None, validate: bool) -> Jets:
    """Jets ``lo..hi`` of an open AOJ file."""
    cnames, jnames = PFCANDS_COLUMNS, JET_COLUMNS
    if columns is not None:
        unknown = [c for c in columns if c not in PFCANDS_COLUMNS + JET_COLUMNS]
        if unknown:
            raise InputError(f"unknown AOJ column(s) {unknown}", path)
        cnames = tuple(c for c in columns if c in PFCANDS_COLUMNS)
        jnames = tuple(c for c in columns if c in JET_COLUMNS)
    try:
        kin, tag, ev = (f["jet_kinematics"][lo:hi], f["jet_tagging"][lo:hi],
                        f["event_info"][lo:hi])
        if validate:
            _check_finite("jet_kinematics", kin, KINEMATICS_COLUMNS, path)
            _check_finite("jet_tagging", tag, TAGGING_COLUMNS, path)
        cons, mask = _read_constituents(f["PFCands"], lo, hi, opts, cnames, validate, path)
    except (OSError, RuntimeError, ValueError, zlib.error) as err:
        raise InputError(f"cannot read jets {lo}..{hi}: corrupted or truncated data ({err})",
                         path) from err
    jet = np.concatenate([kin, tag], axis=1).astype(np.float32)
    if jnames != JET_COLUMNS:
        jet = jet[:, [JET_COLUMNS.index(c) for c in jnames]]
    return Jets(cons, mask, jet, cnames, jnames, ev, {"format": "aoj", "source": path})


def iter_aoj(paths, chunk_size: int = 50_000, start: int = 0, stop: int | None = None,
             columns: Sequence[str] | None = None, options: ReadOptions = ReadOptions(),
             validate: bool = True) -> Iterator[Jets]:
    """Stream jets ``start..stop`` (a global index over the concatenated files) in chunks of at
    most ``chunk_size`` jets. Memory is bounded by one chunk."""
    files = expand_paths(paths)
    offset = 0
    for path in files:
        with _open(path) as f:
            n = f["PFCands"].shape[0]
            lo = max(start - offset, 0)
            hi = n if stop is None else min(stop - offset, n)
            for a in range(lo, hi, chunk_size):
                b = min(a + chunk_size, hi)
                yield _read_jets(f, path, a, b, options, columns, validate)
            offset += n
        if stop is not None and offset >= stop:
            return


def read_aoj(paths, start: int = 0, stop: int | None = None,
             columns: Sequence[str] | None = None, options: ReadOptions = ReadOptions(),
             chunk_size: int = 50_000, validate: bool = True) -> Jets:
    """Read jets ``start..stop`` of one or more AOJ files into one :class:`Jets`."""
    parts = list(iter_aoj(paths, chunk_size, start, stop, columns, options, validate))
    if not parts:
        raise InputError("no jets in the requested range", expand_paths(paths)[0])
    return Jets.concat(parts) if len(parts) > 1 else parts[0]


# ---------------------------------------------------------------------------- writing
def _column_or(jets: Jets, name: str, default: float) -> np.ndarray:
    if jets.has(name) and name in jets.jet_names:
        return jets.j(name)
    return np.full(len(jets), default, np.float32)


def jets_to_rows(jets: Jets) -> dict[str, np.ndarray]:
    """The four AOJ datasets for ``jets``. Missing constituent columns are zero (track columns
    -1 for neutrals), missing jet fields -1 (``nConstituents`` is counted), NaN -> -1."""
    n = len(jets)
    p = min(jets.n_max, N_MAX)
    if jets.n_max > N_MAX:
        jets = jets.truncate(N_MAX)
    cands = np.zeros((n, N_MAX, len(PFCANDS_COLUMNS)), np.float32)
    m = jets.mask
    for i, name in enumerate(PFCANDS_COLUMNS):
        if name in jets.constituent_names:
            col = np.nan_to_num(jets.c(name), nan=-1.0)
        elif name in TRACK_COLUMNS:
            col = np.full(m.shape, -1.0, np.float32)
        elif name == "puppiWeight":
            col = np.ones(m.shape, np.float32)
        else:
            raise InputError(f"cannot write AOJ: constituent column '{name}' is missing")
        cands[:, :p, i] = np.where(m, col, 0.0)
    kin = np.stack([_column_or(jets, c, -1.0) for c in KINEMATICS_COLUMNS], axis=1)
    tag = np.stack([_column_or(jets, c, -1.0) for c in TAGGING_COLUMNS], axis=1)
    if "nConstituents" not in jets.jet_names:
        tag[:, 0] = jets.n_constituents
    ev = jets.event_info if jets.event_info is not None else np.zeros((n, 3), np.int64)
    return {"PFCands": cands, "jet_kinematics": np.nan_to_num(kin, nan=-1.0),
            "jet_tagging": np.nan_to_num(tag, nan=-1.0), "event_info": ev}


class AOJWriter:
    """Append jets to an AOJ file with the published layout (gzip, chunked along jets,
    resizable). Written under ``<path>.partial`` and renamed on :meth:`close`, so a crash
    never leaves a half-written file under the final name.

    ``attrs`` are stored as file attributes (provenance: generator, settings, seed).
    With ``resume=True`` an existing ``.partial`` file is appended to instead of replaced.
    ``gzip_level`` (default :data:`GZIP_LEVEL`, as AOJ) and ``shuffle`` (HDF5's byte-shuffle
    filter, standard in every HDF5 reader) set the compression of new files; ``tmp`` replaces
    the ``<path>.partial`` working name (e.g. a unique one when several processes may write
    the same file). The writer holds the lock of :func:`jetfm.io.output.atomic_output` on
    ``path`` until :meth:`close` or :meth:`abort` (``lock=False``: none, for writers whose
    folder is locked already); ``output``: such an output already acquired by the caller.
    """

    def __init__(self, path: str | os.PathLike, attrs: dict | None = None, resume: bool = False,
                 gzip_level: int | None = None, shuffle: bool = False, tmp: str | None = None,
                 lock: bool = True, output: AtomicOutput | None = None):
        import h5py

        self.path = check_writable(path)
        self._out = output or atomic_output(self.path, tmp=tmp, keep_partial=True, lock=lock)
        self.tmp = self._out.acquire()
        mode = "a" if resume and os.path.exists(self.tmp) else "w"
        try:
            self._f = h5py.File(self.tmp, mode)
        except BaseException:
            self._out.discard()
            raise
        if "PFCands" not in self._f:
            for name, tail in DATASETS.items():
                dtype = np.int64 if name == "event_info" else np.float32
                kw = {} if name == "event_info" else {
                    "compression": "gzip", "shuffle": shuffle,
                    "compression_opts": GZIP_LEVEL if gzip_level is None else gzip_level}
                self._f.create_dataset(name, shape=(0, *tail), maxshape=(None, *tail),
                                       dtype=dtype, chunks=(CHUNK_JETS, *tail), **kw)
        for k, v in (attrs or {}).items():
            self._f.attrs[k] = v

    def __len__(self) -> int:
        return self._f["PFCands"].shape[0]

    def append(self, jets: Jets) -> None:
        self.append_rows(jets_to_rows(jets))

    def append_rows(self, rows: dict[str, np.ndarray]) -> None:
        """Append rows already in the stored layout (as :func:`jets_to_rows` makes them)."""
        n0, n = len(self), len(rows["PFCands"])
        for name, arr in rows.items():
            ds = self._f[name]
            ds.resize(n0 + n, axis=0)
            ds[n0:n0 + n] = arr
        self._f.flush()

    def close(self) -> str:
        """Finish the file and move it to its final name; returns the path."""
        self._f.close()
        return self._out.commit()

    def abort(self) -> None:
        """Close without publishing (the ``.partial`` file stays for a resume)."""
        try:
            self._f.close()
        finally:
            self._out.discard()

    def set_attrs(self, **attrs) -> None:
        """Update file attributes now (e.g. the progress marker of a resumable writer)."""
        for k, v in attrs.items():
            self._f.attrs[k] = v
        self._f.flush()

    def __enter__(self) -> AOJWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_aoj(path: str | os.PathLike, jets: Jets, attrs: dict | None = None) -> str:
    """Write ``jets`` to a new AOJ file at ``path`` (atomically)."""
    with AOJWriter(path, attrs) as w:
        w.append(jets)
    return os.fspath(path)


def read_attrs(path: str | os.PathLike) -> dict:
    """The file attributes (provenance) of an AOJ file."""
    with _open(os.fspath(path)) as f:
        return {k: (v.item() if hasattr(v, "item") else v) for k, v in f.attrs.items()}
