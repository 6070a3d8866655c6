"""CoDAE checkpoints: ``model.safetensors`` + ``config.json`` written by :func:`save_pretrained`
and read by :func:`from_pretrained` (never unpickled), and the models of a training run folder
(``codae/``, ``ae/``) or of its ONNX export (:func:`load_run_models`)."""
from __future__ import annotations

import json
import os

from jetfm.codae.model import CoDAE, CoDAEConfig
from jetfm.codae.runtime import load_onnx
from jetfm.errors import InputError
from jetfm.io.output import atomic_output, write_text_atomic


def save_pretrained(model: CoDAE, folder: str, info: dict | None = None) -> str:
    """Write ``model.safetensors`` + ``config.json`` (architecture + ``info``) atomically."""
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    with atomic_output(os.path.join(folder, "model.safetensors")) as tmp:
        save_file(state, tmp)
    meta = {"model_type": "codae" if model.cfg.conditional else "ae",
            "model": model.cfg.to_dict(), **(info or {})}
    write_text_atomic(os.path.join(folder, "config.json"), json.dumps(meta, indent=2))
    return folder


def from_pretrained(folder: str) -> tuple[CoDAE, dict]:
    """Load a model written by :func:`save_pretrained` -> (model in eval mode, config.json dict)."""
    from safetensors.torch import load_file

    cfg_path = os.path.join(folder, "config.json")
    w_path = os.path.join(folder, "model.safetensors")
    for p in (cfg_path, w_path):
        if not os.path.isfile(p):
            raise InputError("not a CoDAE checkpoint folder (missing "
                             f"{os.path.basename(p)})", folder)
    try:
        with open(cfg_path) as fh:
            meta = json.load(fh)
        try:
            cfg = CoDAEConfig.from_dict(meta["model"])
        except InputError as err:
            raise InputError(err.message, cfg_path) from err
        model = CoDAE(cfg)
        state = load_file(w_path)
        bad = [k for k, v in state.items() if v.is_floating_point() and not v.isfinite().all()]
        if bad:
            raise InputError(f"non-finite weights in {len(bad)} tensor(s), first {bad[0]}", w_path)
        model.load_state_dict(state)
    except (KeyError, TypeError, ValueError, RuntimeError, OSError) as err:
        raise InputError(f"corrupt CoDAE checkpoint ({err.__class__.__name__}: "
                         f"{str(err).splitlines()[0][:200]})", folder) from err
    return model.eval(), meta


def load_model(folder: str) -> tuple[CoDAE, dict]:
    """(model, config.json dict) of a checkpoint folder, or of an ONNX export's model folder
    (then run by ONNX Runtime: :class:`jetfm.codae.runtime.OnnxCoDAE`)."""
    if os.path.isfile(os.path.join(folder, "full.onnx")):
        return load_onnx(folder)
    return from_pretrained(folder)


def load_run_models(run: str) -> dict[str, tuple[CoDAE, dict]]:
    """The models of a training run folder (``codae/``, ``ae/``) or one checkpoint folder, or of
    an ONNX export of either (``jetfm anomaly export``)."""
    if not os.path.isdir(run):
        raise InputError("no such run or checkpoint folder", run)
    if os.path.isfile(os.path.join(run, "config.json")):
        model, meta = load_model(run)
        return {meta["model_type"]: (model, meta)}
    found = {k: load_model(os.path.join(run, k)) for k in ("codae", "ae")
             if os.path.isdir(os.path.join(run, k))}
    if not found:
        raise InputError("holds no codae/ or ae/ checkpoint", run)
    return found
