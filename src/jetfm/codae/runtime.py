"""Scoring with an ONNX export of CoDAE (:mod:`jetfm.codae.export`) through ONNX Runtime:
:class:`OnnxCoDAE` stands in for :class:`~jetfm.codae.model.CoDAE` in the scoring functions."""
from __future__ import annotations

import json
import os

import numpy as np
import torch

from jetfm.codae.model import CoDAEConfig
from jetfm.errors import InputError


def session(path: str, threads: int | None = None):
    """An ONNX Runtime CPU session with every graph optimisation on and ``threads`` intra-op
    threads (default: torch's thread count, i.e. ``--threads``)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = threads or torch.get_num_threads()
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


class OnnxCoDAE:
    """An exported model run by ONNX Runtime, with the interface the scoring functions use:
    ``cfg``, ``eval()``, ``z_m(x)`` and ``model(x) -> logits`` on torch tensors."""

    def __init__(self, folder: str, threads: int | None = None):
        with open(os.path.join(folder, "config.json")) as fh:
            self.meta = json.load(fh)
        self.cfg = CoDAEConfig.from_dict(self.meta["model"])
        self.folder = folder
        files = self.meta.get("files", {})
        try:
            self._full = session(os.path.join(folder, files.get("full", "full.onnx")), threads)
            self._zm = (session(os.path.join(folder, files.get("z_m", "z_m.onnx")), threads)
                        if self.cfg.conditional else None)
        except Exception as err:  # onnxruntime raises its own exception types
            raise InputError(f"cannot load the ONNX model ({err.__class__.__name__}: "
                             f"{str(err).splitlines()[0][:200]})", folder) from err

    def eval(self) -> OnnxCoDAE:
        return self

    def z_m(self, x: torch.Tensor) -> torch.Tensor:
        if self._zm is None:
            raise ValueError("the plain auto-encoder has no Z_m")
        return torch.from_numpy(self._zm.run(["z_m"], {"x": _np(x)})[0])

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self._full.run(["logits"], {"x": _np(x)})[0])


def _np(x: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)


def load_onnx(folder: str) -> tuple[OnnxCoDAE, dict]:
    """(model, config.json dict) of one exported model folder."""
    model = OnnxCoDAE(folder)
    return model, model.meta
