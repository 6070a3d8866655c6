"""CoDAE for a trigger: export to ONNX, checked against PyTorch with ONNX Runtime.

An export folder mirrors a training run: one sub-folder per model (``codae/``, ``ae/``) with

- ``full.onnx``: image x (N, C, 72, 58) -> ``logits`` (N, C, 72, 58), ``bce`` (N,) (the
  reconstruction score) and, for CoDAE, ``z_m`` (N, 2);
- ``z_m.onnx`` (CoDAE only): the small encoder alone, x -> ``z_m`` (N, 2): the cheap trigger score;
- ``config.json``: the checkpoint's ``config.json`` (architecture, input, Z_m reference) plus
  ``format``, ``precision`` and the largest difference from the PyTorch model on a check batch.

The batch axis is dynamic. ``precision``: ``fp32`` (default, the same scores to float rounding),
``fp16`` (weights and activations in half precision, inputs and outputs float32), ``int8-dynamic``
(int8 weights, activations quantised on the fly) and ``int8-static`` (int8 weights and
activations, scales calibrated on QCD images). :class:`jetfm.codae.runtime.OnnxCoDAE` runs a
sub-folder with graph optimisation on; it stands in for :class:`~jetfm.codae.model.CoDAE` in the
scoring functions, so ``jetfm anomaly evaluate EXPORT_DIR`` scores with ONNX Runtime.
"""
from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import shutil
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from jetfm.codae.checkpoint import load_run_models
from jetfm.codae.data import model_inputs, read_for_input
from jetfm.codae.model import CoDAE
from jetfm.codae.runtime import session
from jetfm.errors import InputError
from jetfm.io.output import atomic_output, write_text_atomic

PRECISIONS = ("fp32", "fp16", "int8-dynamic", "int8-static")
FORMAT = "onnx"
OPSET = 18
#: events of the calibration files used for int8-static scales
CALIBRATION_EVENTS = 256


class FullGraph(nn.Module):
    """x -> (logits, per-event BCE[, Z_m]): the whole model and its reconstruction score."""

    def __init__(self, model: CoDAE):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor):
        m = self.model
        z_m = m.mask_encoder(x) if m.mask_encoder is not None else None
        logits = m.decoder(m.encoder(x), z_m)
        bce = F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum((1, 2, 3))
        return (logits, bce) if z_m is None else (logits, bce, z_m)


class ZmGraph(nn.Module):
    """x -> Z_m: the small encoder alone."""

    def __init__(self, model: CoDAE):
        super().__init__()
        self.encoder = model.mask_encoder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)


def output_names(conditional: bool) -> list[str]:
    return ["logits", "bce", "z_m"] if conditional else ["logits", "bce"]


def export_graph(module: nn.Module, path: str, outputs: list[str], example: torch.Tensor) -> None:
    """``torch.onnx.export`` (the torch.export-based exporter) with a dynamic batch axis, weights
    inside the one ``.onnx`` file; the exporter's progress lines and its notes about operators
    CoDAE does not use (torchvision's) are kept off the terminal."""
    batch = torch.export.Dim("batch")
    log = logging.getLogger("torch.onnx")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(module.eval(), (example,), path, input_names=["x"],
                              output_names=outputs, dynamic_shapes=({0: batch},),
                              opset_version=OPSET, dynamo=True, external_data=False)
    finally:
        log.setLevel(level)


def quantise(path: str, precision: str, calibration: np.ndarray | None) -> None:
    """Replace the fp32 graph at ``path`` by its ``precision`` version (no lock: the export
    folder's writer holds one)."""
    with atomic_output(path, lock=False) as tmp:
        if precision == "fp16":
            import onnx
            from onnxruntime.transformers.float16 import convert_float_to_float16

            onnx.save(convert_float_to_float16(onnx.load(path), keep_io_types=True), tmp)
        else:
            _quantise_int8(path, tmp, precision, calibration)


def _quantise_int8(path: str, tmp: str, precision: str, calibration: np.ndarray | None) -> None:
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    pre = path + ".pre.partial"  # the preprocessed graph, the quantiser's input
    try:
        quant_pre_process(path, pre, skip_symbolic_shape=True)
        if precision == "int8-dynamic":
            quantize_dynamic(pre, tmp, weight_type=QuantType.QInt8)
        else:
            quantize_static(pre, tmp, _Calibration(calibration), quant_format=QuantFormat.QDQ,
                            per_channel=True, activation_type=QuantType.QUInt8,
                            weight_type=QuantType.QInt8)
    finally:
        if os.path.exists(pre):
            os.remove(pre)


class _Calibration:
    """Calibration batches for ``quantize_static`` (an onnxruntime CalibrationDataReader)."""

    def __init__(self, x: np.ndarray, batch: int = 32):
        self._it = iter([{"x": x[i:i + batch]} for i in range(0, len(x), batch)])

    def get_next(self):
        return next(self._it, None)


def _rel_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / max(float(np.abs(b).max()), 1e-12))


def export_model(model: CoDAE, meta: dict, folder: str, precision: str = "fp32",
                 check: np.ndarray | None = None, calibration: np.ndarray | None = None) -> dict:
    """Write ``full.onnx`` (+ ``z_m.onnx`` for CoDAE) and ``config.json`` of one model into
    ``folder``; returns the config.json dict. ``check`` (N, C, 72, 58) inputs compare the ONNX
    Runtime outputs with the PyTorch model (default: 8 random sparse images)."""
    model = model.eval()
    cfg = model.cfg
    if check is None:
        g = torch.Generator().manual_seed(0)
        check = (torch.rand(8, cfg.in_channels, *cfg.image_shape, generator=g) < 0.07)
        check = check.float().numpy()
    example = torch.from_numpy(np.ascontiguousarray(check[:2]))
    os.makedirs(folder, exist_ok=True)
    graphs = {"full": (FullGraph(model), output_names(cfg.conditional))}
    if cfg.conditional:
        graphs["z_m"] = (ZmGraph(model), ["z_m"])
    diffs = {}
    with torch.inference_mode(False):
        for name, (module, outputs) in graphs.items():
            path = os.path.join(folder, f"{name}.onnx")
            export_graph(module, path, outputs, example)
            if precision != "fp32":
                quantise(path, precision, calibration)
            got = session(path).run(outputs, {"x": check})
            with torch.no_grad():
                want = module(torch.from_numpy(check))
            want = [want] if isinstance(want, torch.Tensor) else list(want)
            for o, a, b in zip(outputs, got, want):
                diffs[f"{name}.{o}"] = _rel_diff(a, b.numpy())
    out = {**meta, "format": FORMAT, "precision": precision, "opset": OPSET,
           "files": {k: f"{k}.onnx" for k in graphs},
           "check_max_rel_diff": diffs, "check_events": int(len(check))}
    write_text_atomic(os.path.join(folder, "config.json"), json.dumps(out, indent=2),
                      lock=False)
    return out


def export_run(run: str, out: str, precision: str = "fp32", calibration=None) -> dict:
    """Export every model of a training run (or one checkpoint folder) to ONNX in ``out``,
    atomically: the folder appears complete or not at all. ``calibration``: QCD image files
    (files, folders, globs) for ``int8-static``. Returns ``{model: config.json dict}``."""
    if precision not in PRECISIONS:
        raise InputError(f"unknown --precision '{precision}': expected one of {list(PRECISIONS)}")
    if precision == "int8-static" and not calibration:
        raise InputError("--precision int8-static needs --calibration QCD image files")
    if os.path.exists(out) and (not os.path.isdir(out) or os.listdir(out)):
        raise InputError("output exists and is not an empty folder", out)
    models = load_run_models(run)
    if any(m.get("format") == FORMAT for _, m in models.values()):
        raise InputError("is already an ONNX export: pass the training run", run)
    calib = None
    if calibration:
        meta = next(iter(models.values()))[1]
        kind = meta.get("input", "track_occupancy")
        ev = read_for_input(calibration, kind, processes=["qcd"])
        calib = model_inputs(ev, kind, meta.get("energy_scale", 1000.0))[:CALIBRATION_EVENTS]
    parent, name = os.path.split(os.path.abspath(out))
    # a hidden working folder beside ``out``, published whole (replacing an empty ``out``)
    with atomic_output(out, tmp=os.path.join(parent, f".{name}.partial"), folder=True) as tmp:
        shutil.rmtree(tmp, ignore_errors=True)  # what an interrupted export left
        res = {kind: export_model(model, meta, os.path.join(tmp, kind), precision,
                                  check=None if calib is None else calib[:8], calibration=calib)
               for kind, (model, meta) in models.items()}
    return res
