"""The D-scan of the AOJ experiment (Aspen Open Jets, arXiv:2412.10504): does pre-training help?

For every target (e.g. top and QCD jets), training-set size D and seed:

1. a fresh random subset of D jets is drawn from the target's training pool (seeded by
   (scan seed, D, seed); both arms see the same subset);
2. the pre-trained model is fine-tuned on it (arm ``pretrained``) and the same architecture is
   trained from scratch on it (arm ``scratch``), both on the pre-trained model's frozen tokenizer;
3. ``n_generated`` jets are sampled from each and compared with held-out target jets on every
   observable of :data:`OBSERVABLES` (KL and W1), and with the
   JetNet set (W1M, W1P, W1EFP, FPD, KPD).

The reference jets are a fixed held-out part of the target file, never trained on. They are
compared in two forms: ``raw`` (the OmniJet-alpha preprocessing and its exact inverse: the jet
frame with the axis at eta = phi = 0, the |eta_rel|, |phi_rel| < 0.8 cut and at most n_max
constituents, which is exactly what the generator can produce; the jet eta and phi observables are
then the small offsets of the constituent axis) and ``tokenized`` (also passed through the
tokenizer and back), so the metric can judge the generator rather than the tokenizer.

Layout of the output folder::

    config.yaml                       the resolved scan configuration
    reference/<target>.npz            observables of the held-out jets, raw_* and tokenized_*
    cells/<target>/D<D>_seed<s>_<arm>.json   one result file per (D, seed, arm): written last,
    cells/<target>/D<D>_seed<s>_<arm>.npz    so a finished cell is skipped on a rerun
    models/<target>/D<D>_seed<s>_<arm>/      training run (resumes from its checkpoint)
    results.json, results.csv         all rows, seed summaries and power-law fits

Result rows are "long": ``target, arm, reference, observable, metric, D, seed, value, error``
(metric ``kl`` or ``w1`` per observable; observable ``jet`` with metrics ``w1m, w1p, w1efp, fpd,
kpd`` for the JetNet set, reference ``raw``).
"""
from __future__ import annotations

import csv
import dataclasses
import io
import itertools
import json
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from jetfm.errors import InputError, write_text_atomic
from jetfm.jets import Jets
from jetfm.seeding import derive_seed  # the scans' "int31" convention

if TYPE_CHECKING:
    from jetfm.train.spec import TrainResult

ARMS = ("pretrained", "scratch")
REFERENCES = ("raw", "tokenized")
#: the observables of Aspen Open Jets, arXiv:2412.10504, in the order they are reported
OBSERVABLES = ("pt", "eta", "phi", "mass", "n_constituents", "tau21", "tau32", "d2")
JETNET_METRICS = ("w1m", "w1p", "w1efp", "fpd", "kpd")
ROW_FIELDS = ("target", "arm", "reference", "observable", "metric", "D", "seed", "value", "error")


@dataclass
class ScanConfig:
    """Settings of a D-scan (see the module docstring)."""
    sizes: list[int] = field(default_factory=lambda: [100, 1000, 10_000])
    seeds: int = 5
    #: held-out target jets used as the reference
    n_reference: int = 5000
    #: jets sampled from every trained model
    n_generated: int = 5000
    #: training preset (its ``finetuning`` section trains both arms) and dotted overrides
    preset: str = "small"
    overrides: list[str] = field(default_factory=list)
    #: at least this many optimiser steps per training (raises the epoch count at small D; early
    #: stopping on the validation loss still applies); 0: the preset's epochs
    min_steps: int = 0
    #: the seed of the scan: held-out split, subsets, training and sampling seeds derive from it
    seed: int = 0
    #: W1 by the JetNet convention: samples per batch and batches
    w1_samples: int = 50_000
    w1_batches: int = 5
    #: compute the JetNet set (W1M, W1P, W1EFP, FPD, KPD) too
    jetnet: bool = True
    kpd_batch: int = 5000
    #: keep the trained models of every cell (they are deleted after evaluation otherwise)
    keep_models: bool = False

    def validate(self) -> None:
        from jetfm.config import ConfigValueError, check_range

        if not self.sizes or any(isinstance(d, bool) or not isinstance(d, int)
                                 or not 2 <= d <= 10**9 for d in self.sizes):
            raise ConfigValueError("sizes", f"must be integers from 2 to 10^9, got {self.sizes}")
        check_range(self, "seeds", 1, 10**6)
        for key in ("n_reference", "n_generated"):
            check_range(self, key, 10, 10**9)
        check_range(self, "min_steps", 0, 10**9)
        check_range(self, "seed", 0, 2**32 - 1)
        for key in ("w1_samples", "w1_batches", "kpd_batch"):
            check_range(self, key, 1, 10**9)


def _cell_name(d: int, seed: int, arm: str) -> str:
    return f"D{d}_seed{seed}_{arm}"


def split_target(n_jets: int, n_reference: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(reference indices, training-pool indices) of a target file of ``n_jets`` jets, by a
    seeded permutation; the two never overlap."""
    perm = np.random.default_rng([seed, 7919]).permutation(n_jets)
    return np.sort(perm[:n_reference]), perm[n_reference:]


def draw_subset(pool: np.ndarray, d: int, scan_seed: int, seed: int) -> np.ndarray:
    """The D training jets of one (D, seed) cell: a seeded draw without replacement from the
    pool, the same for both arms."""
    rng = np.random.default_rng([scan_seed, d, seed, 104729])
    return np.sort(rng.choice(pool, size=d, replace=False))


def experiment_observables(jets: Jets) -> dict[str, np.ndarray]:
    """The observables of :data:`OBSERVABLES` from the constituents' (px, py, pz, E):
    ``{name: (N,) float64}`` (GeV, radians). Needs no species columns, so generated jets work.

    tau21, tau32 (beta = 1, R0 = 0.8, exclusive-kT axes) and D2 (beta = 1) come from
    :mod:`jetfm.physics.observables` where it provides them.
    """
    from jetfm.physics import observables as po

    out = dict(po.jet_kinematics(jets))
    if hasattr(po, "nsubjettiness") and hasattr(po, "tau_ratios"):
        out["tau21"], out["tau32"] = po.tau_ratios(po.nsubjettiness(jets, n_max=3))
    if hasattr(po, "d2"):
        out["d2"] = po.d2(jets)
    return {k: np.asarray(out[k], np.float64) for k in OBSERVABLES if k in out}


def frame_observables(jets: Jets, prep) -> dict[str, np.ndarray]:
    """Observables of jets seen in the generator's frame: preprocessing and its exact inverse."""
    feats, mask = prep.forward(jets)
    return experiment_observables(prep.inverse(feats, mask))


def frame_and_tokenized(jets: Jets, model) -> tuple[Jets, Jets]:
    """``jets`` in the generator's frame (the preprocessing and its exact inverse), and the same
    through the tokenizer and back."""
    prep = model.preprocessing
    feats, mask = prep.forward(jets)
    tok = model.tokenizer
    codes = tok.encode_arrays(feats, mask)
    return (prep.inverse(feats, mask),
            prep.inverse(tok.decode_arrays(codes, mask), mask))


def reference_sets(ref_jets: Jets, model) -> dict[str, tuple[Jets, dict[str, np.ndarray]]]:
    """The held-out jets in the generator's frame (``raw``) and through the tokenizer and back
    (``tokenized``): ``{name: (Jets, observables)}``."""
    raw, decoded = frame_and_tokenized(ref_jets, model)
    return {"raw": (raw, experiment_observables(raw)),
            "tokenized": (decoded, experiment_observables(decoded))}


def evaluate_cell(generated: Jets, refs: dict, cfg: ScanConfig, seed: int
                  ) -> tuple[list[dict], dict[str, np.ndarray]]:
    """Rows (without target/arm/D/seed) comparing generated jets with each reference, and the
    generated observables."""
    from jetfm.evaluate.metrics import jetnet_metrics, observable_distances

    gen = experiment_observables(generated)
    rows = []
    for ref_name, (ref_jets, ref_obs) in refs.items():
        dist = observable_distances(ref_obs, gen, seed=seed, num_samples=cfg.w1_samples,
                                    num_batches=cfg.w1_batches)
        for obs, d in dist.items():
            rows.append(dict(reference=ref_name, observable=obs, metric="kl", value=d["kl"],
                             error=0.0))
            rows.append(dict(reference=ref_name, observable=obs, metric="w1", value=d["w1"],
                             error=d["w1_std"]))
        if cfg.jetnet and ref_name == "raw":
            jn = jetnet_metrics(ref_jets, generated, seed=seed, num_samples=cfg.w1_samples,
                                num_batches=cfg.w1_batches,
                                kpd_kw={"batch_size": cfg.kpd_batch})
            for m in JETNET_METRICS:
                rows.append(dict(reference=ref_name, observable="jet", metric=m, value=jn[m],
                                 error=jn[m + "_err"]))
    return rows, gen


def _write_json(path: str, obj) -> None:
    write_text_atomic(path, json.dumps(obj, indent=1, default=float))


def _write_npz(path: str, arrays: dict[str, np.ndarray]) -> None:
    from jetfm.io.images import save_npz_atomic

    save_npz_atomic(path, arrays)


#: what a scan writes in its output folder
SCAN_ENTRIES = ("config.yaml", "reference", "cells", "models", "results.json", "results.csv")


def parse_targets(targets) -> dict[str, str]:
    """``{name: file}`` from a mapping, or from ``name=FILE`` / ``FILE`` strings."""
    if isinstance(targets, dict):
        return {str(k): str(v) for k, v in targets.items()}
    if isinstance(targets, (str, os.PathLike)):
        targets = [targets]
    out: dict[str, str] = {}
    for t in targets:
        t = str(t)
        name, path = t.split("=", 1) if "=" in t and not os.path.exists(t) else (None, t)
        name = name or os.path.splitext(os.path.basename(path))[0]
        if name in out:
            raise InputError(f"target name '{name}' given twice")
        out[name] = path
    return out


def check_scan_config(cfg: ScanConfig) -> None:
    """The scan's settings and its training preset with the overrides, checked before anything
    is read or written (InputError naming the key)."""
    from jetfm.config import validate
    from jetfm.omnijet.config import load_omnijet_config

    validate(cfg)
    load_omnijet_config(cfg.preset, cfg.overrides)


@dataclass
class ScanTarget:
    """One target of a scan, ready for its cells: its jets, the training pool (indices into
    them), the reference sets (:func:`reference_sets`) and the folder of its cell files."""
    name: str
    jets: Jets
    pool: np.ndarray
    refs: dict
    cell_dir: str


def prepare_target(name: str, path: str, model, cfg: ScanConfig, out: str) -> ScanTarget:
    """Read a target file, split off its held-out reference jets, and write their observables to
    ``reference/<name>.npz`` (once)."""
    from jetfm.io import count_jets, read_jets

    sizes = [int(d) for d in cfg.sizes]
    n = count_jets(path)
    need = cfg.n_reference + max(sizes)
    if n < need:
        raise InputError(f"target has {n} jets; the scan needs n_reference {cfg.n_reference}"
                         f" + the largest D {max(sizes)} = {need}", path)
    all_jets = read_jets(path)
    ref_idx, pool = split_target(len(all_jets), cfg.n_reference, cfg.seed)
    refs = reference_sets(all_jets[ref_idx], model)
    os.makedirs(os.path.join(out, "reference"), exist_ok=True)
    ref_file = os.path.join(out, "reference", f"{name}.npz")
    if not os.path.exists(ref_file):
        from jetfm.evaluate.fidelity import reference_arrays

        # the fidelity check's arrays too: soft-drop masses and the tokenizer floor
        floor_jets = all_jets[pool[-min(len(pool), cfg.n_generated):]]
        _write_npz(ref_file, {**{f"{r}_{k}": v for r, (_, obs) in refs.items()
                                 for k, v in obs.items()},
                              **reference_arrays(refs, floor_jets, model)})
    cell_dir = os.path.join(out, "cells", name)
    os.makedirs(cell_dir, exist_ok=True)
    return ScanTarget(name, all_jets, pool, refs, cell_dir)


def _train_arm(arm: str, pretrained: str, subset: Jets, run_dir: str, cfg: ScanConfig,
               seed: int) -> TrainResult:
    """Train one arm on the cell's jets: fine-tune the pre-trained model, or train its
    architecture from scratch on its tokenizer (:class:`jetfm.train.spec.TrainResult`)."""
    from jetfm.train import api
    from jetfm.train.spec import DataSpec, RunSpec

    data = DataSpec(jets=subset)
    run = RunSpec(run_dir, cfg.preset, list(cfg.overrides), seed, progress=False,
                  min_steps=cfg.min_steps)
    if arm == "pretrained":
        return api.run_finetune(pretrained, data, run)
    return api.run_from_scratch(pretrained, data, run)


def run_cell(pretrained: str, target: ScanTarget, d: int, s: int, out: str, cfg: ScanConfig,
             bar=None) -> tuple[list[dict], dict[str, float]]:
    """Both arms of one (target, D, seed) cell: train each on the same D jets, sample
    ``n_generated`` jets from the trained model, compare them with the references, and write
    the cell files (the result file last). An arm whose result file exists is read back
    instead. Returns the rows and the seconds spent (``train``, ``sample``, ``evaluate``);
    ``bar``: a progress bar advanced once per arm."""
    from jetfm.omnijet.model import sample_jets
    from jetfm.physics.observables import softdrop_mass

    rows: list[dict] = []
    timing: dict[str, float] = {}
    subset = None
    for ai, arm in enumerate(ARMS):
        name = _cell_name(d, s, arm)
        res_file = os.path.join(target.cell_dir, name + ".json")
        if os.path.exists(res_file):
            with open(res_file) as fh:
                rows += json.load(fh)["rows"]
            if bar is not None:
                bar.update(1)
            continue
        if subset is None:
            subset = target.jets[draw_subset(target.pool, d, cfg.seed, s)]
        if bar is not None:
            bar.set_postfix_str(f"{target.name} D={d} seed={s} {arm}")
        run_dir = os.path.join(out, "models", target.name, name)
        t0 = time.perf_counter()
        # the same initialisation noise for both arms
        trained = _train_arm(arm, pretrained, subset, run_dir, cfg, derive_seed(cfg.seed, d, s))
        t1 = time.perf_counter()
        try:
            gen = sample_jets(trained.model, cfg.n_generated,
                              seed=derive_seed(cfg.seed, d, s, ai + 1), progress=False)
        except InputError as err:
            raise InputError(err.message, trained.model_dir) from err
        t2 = time.perf_counter()
        arm_rows, gen_obs = evaluate_cell(gen, target.refs, cfg, derive_seed(cfg.seed, d, s, 99))
        t3 = time.perf_counter()
        arm_rows = [{**r, "target": target.name, "arm": arm, "D": d, "seed": s}
                    for r in arm_rows]
        arm_rows = [{k: r[k] for k in ROW_FIELDS} for r in arm_rows]
        seconds = {"train": t1 - t0, "sample": t2 - t1, "evaluate": t3 - t2}
        _write_npz(os.path.join(target.cell_dir, name + ".npz"),
                   {**gen_obs, "msoftdrop": softdrop_mass(gen)})
        _write_json(res_file, {"rows": arm_rows, "model": os.path.abspath(trained.model_dir),
                               "seconds": seconds})
        if not cfg.keep_models:
            shutil.rmtree(run_dir, ignore_errors=True)
        rows += arm_rows
        for k, v in seconds.items():
            timing[k] = timing.get(k, 0.0) + v
        if bar is not None:
            bar.update(1)
    return rows, timing


def run_scan(pretrained: str, targets, out: str, cfg: ScanConfig | None = None,
             progress: bool = True, log=print) -> str:
    """Run (or resume) the D-scan; returns the path of ``results.json``.

    ``pretrained``: a pre-trained model directory (:func:`jetfm.omnijet.model.load_pretrained`).
    ``targets``: ``{name: file}`` or a list of ``name=FILE`` / ``FILE`` (AOJ or JetClass files).
    Cells whose result file exists are skipped, so an interrupted scan continues where it
    stopped; a cell interrupted during training resumes from its last checkpoint.
    """
    from tqdm.auto import tqdm

    from jetfm.config import save_config
    from jetfm.errors import require_file
    from jetfm.omnijet.model import load_pretrained

    cfg = cfg or ScanConfig()
    check_scan_config(cfg)
    tmap = parse_targets(targets)
    if not tmap:
        raise InputError("no target file given")
    for path in tmap.values():
        require_file(path)
    model = load_pretrained(pretrained)
    if model.backbone is None:
        raise InputError("model has no backbone: pass a pre-trained model, not a tokenizer",
                         pretrained)
    os.makedirs(out, exist_ok=True)
    save_config(dataclasses.replace(cfg), out)
    sizes = sorted({int(d) for d in cfg.sizes})
    all_rows: list[dict] = []
    timing: dict[str, float] = {}
    bar = tqdm(total=len(tmap) * len(sizes) * cfg.seeds * len(ARMS), desc="scan cells",
               disable=not progress, unit="cell")
    for name, path in tmap.items():
        target = prepare_target(name, path, model, cfg, out)
        for d, s in itertools.product(sizes, range(cfg.seeds)):
            rows, seconds = run_cell(pretrained, target, d, s, out, cfg, bar)
            all_rows += rows
            for k, v in seconds.items():
                timing[k] = timing.get(k, 0.0) + v
    bar.close()
    return write_results(out, all_rows, cfg, tmap, pretrained, timing)


def write_results(out: str, rows: list[dict], cfg: ScanConfig, targets: dict[str, str],
                  pretrained: str, timing: dict | None = None) -> str:
    """results.csv (the long rows) and results.json (config, rows, seed summaries, fits)."""
    from jetfm.evaluate.fits import aggregate, fit_results

    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=ROW_FIELDS)
    w.writeheader()
    w.writerows(rows)
    write_text_atomic(os.path.join(out, "results.csv"), buf.getvalue())
    path = os.path.join(out, "results.json")
    _write_json(path, {"config": dataclasses.asdict(cfg), "targets": targets,
                       "pretrained": os.path.abspath(pretrained),
                       "seconds_this_run": timing or {}, "rows": rows,
                       "summary": aggregate(rows), "fits": fit_results(rows)})
    return path


def collect_cells(scan_dir: str) -> dict:
    """Results of a scan that is still running or was interrupted: the rows of every finished
    cell file, in the layout of ``results.json`` (plus ``partial: True`` and the cell count)."""
    import yaml

    from jetfm.config import from_dict

    cfg_path = os.path.join(scan_dir, "config.yaml")
    cell_root = os.path.join(scan_dir, "cells")
    if not (os.path.exists(cfg_path) and os.path.isdir(cell_root)):
        raise InputError("no results.json and no finished cells (run `jetfm scan` first)",
                         scan_dir)
    with open(cfg_path) as fh:
        cfg = from_dict(ScanConfig, yaml.safe_load(fh) or {})
    rows, targets = [], {}
    for target in sorted(os.listdir(cell_root)):
        targets[target] = target
        for name in sorted(os.listdir(os.path.join(cell_root, target))):
            if name.endswith(".json"):
                with open(os.path.join(cell_root, target, name)) as fh:
                    rows += json.load(fh)["rows"]
    if not rows:
        raise InputError("no finished cells yet", scan_dir)
    from jetfm.evaluate.fits import aggregate, fit_results

    n_cells = len({(r["target"], r["D"], r["seed"], r["arm"]) for r in rows})
    return {"config": dataclasses.asdict(cfg), "targets": targets, "pretrained": "",
            "rows": rows, "summary": aggregate(rows), "fits": fit_results(rows),
            "partial": True, "cells_done": n_cells,
            "cells_planned": len(targets) * len(cfg.sizes) * cfg.seeds * len(ARMS)}


def load_results(path: str) -> dict:
    """Read a ``results.json`` (or the folder holding it; a scan folder without one, still
    running or interrupted, gives the finished cells: :func:`collect_cells`)."""
    if os.path.isdir(path):
        if not os.path.exists(os.path.join(path, "results.json")):
            return collect_cells(path)
        path = os.path.join(path, "results.json")
    if not os.path.exists(path):
        raise InputError("no results.json (run `jetfm scan` first)", path)
    try:
        with open(path) as fh:
            data = json.load(fh)
    except json.JSONDecodeError as err:
        raise InputError(f"not a valid results.json ({err.msg})", path) from err
    if not isinstance(data, dict) or "rows" not in data:
        raise InputError("not a scan results.json (no 'rows')", path)
    return data


def parse_sizes(text: str | Sequence[int]) -> list[int]:
    """'100,1000,1e4' -> [100, 1000, 10000]."""
    if not isinstance(text, str):
        return [int(x) for x in text]
    try:
        return [int(float(x)) for x in text.split(",") if x.strip()]
    except (ValueError, OverflowError):
        raise InputError(f"sizes must be comma-separated integers, got '{text}'") from None


__all__ = ["ScanConfig", "ScanTarget", "run_scan", "run_cell", "prepare_target", "write_results",
           "load_results", "collect_cells", "split_target", "draw_subset", "reference_sets",
           "frame_and_tokenized",
           "experiment_observables", "evaluate_cell", "frame_observables", "parse_sizes",
           "ARMS", "REFERENCES", "OBSERVABLES", "JETNET_METRICS", "ROW_FIELDS"]
