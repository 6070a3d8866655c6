"""Training CoDAE and the plain auto-encoder on QCD images.

A run folder ``runs/<name>/`` holds ``config.yaml`` (resolved), ``train_summary.json`` (seed,
files, event counts, timings), and per model
(``codae/``, ``ae/``): ``model.safetensors`` + ``config.json`` (the checkpoint with the best
validation SSIM, loadable with :func:`jetfm.codae.checkpoint.from_pretrained`), ``history.json``
(loss and SSIM per epoch)
and ``last_state.pt`` (weights, optimiser and epoch, to resume after a crash; tensors only, read
with ``weights_only=True``).

Optimisation follows the paper: binary cross-entropy summed over pixels (mean over the batch),
AdamW with decoupled weight decay 1e-4 per step (TensorFlow-Addons semantics, i.e. torch's
``weight_decay = 1e-4 / lr``), gradient clip-norm 1, batch 128, 30 epochs, checkpoint chosen by
validation SSIM.
"""
from __future__ import annotations

import functools
import json
import os
import time

import numpy as np
import torch
import torch.nn.functional as F

from jetfm.codae.checkpoint import from_pretrained, save_pretrained
from jetfm.codae.config import MODEL_KINDS, AnomalyConfig, TrainConfig, model_config
from jetfm.codae.data import augment, model_inputs, read_for_input, split_valid
from jetfm.codae.metrics import ssim
from jetfm.codae.model import CoDAE, n_parameters
from jetfm.codae.scoring import z_m, z_m_reference
from jetfm.config import save_config
from jetfm.errors import InputError
from jetfm.io.output import atomic_output, write_text_atomic
from jetfm.seeding import derive_seed as _derive_seed

#: a child seed for each (model, epoch), so resuming at any epoch replays the same numbers:
#: :func:`jetfm.seeding.derive_seed` in its "uint32" convention
derive_seed = functools.partial(_derive_seed, convention="uint32")


def loss_fn(logits: torch.Tensor, x: torch.Tensor, batch: int | None = None) -> torch.Tensor:
    """BCE summed over pixels and channels, divided by ``batch`` (default: the images in x; a
    slice of a batch passes the whole batch's size, so that the slices' losses add up to it)."""
    return F.binary_cross_entropy_with_logits(logits, x, reduction="sum") / (batch or x.shape[0])


def make_optimizer(model: CoDAE, tc: TrainConfig) -> torch.optim.AdamW:
    """AdamW with the paper's decoupled weight decay: ``tc.weight_decay`` per step, as
    TensorFlow-Addons applies it, is torch's ``weight_decay / lr``."""
    return torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay / tc.lr)


def train_step(model: CoDAE, opt: torch.optim.Optimizer, xb: torch.Tensor, clip_norm: float,
               precision: str = "fp32", micro_batch: int = 0) -> torch.Tensor:
    """One optimisation step on the batch xb; returns the (detached) loss.

    ``bf16`` runs the forward pass under CPU bfloat16 autocast (convolutions on AVX512-BF16/AMX
    units; weights, optimiser and loss stay float32), on channels-last images (the layout those
    kernels prefer; :func:`prepare_model` converts the weights). ``micro_batch`` > 0 runs the
    forward and backward passes on slices of that many images and adds up their gradients: the
    same step as one pass over the batch (the loss is a per-image sum and instance norm works per
    image), with each slice's activations small enough to stay in the CPU's caches."""
    n = len(xb)
    step = micro_batch if 0 < micro_batch < n else n
    opt.zero_grad(set_to_none=True)
    total = torch.zeros((), dtype=xb.dtype)
    for i in range(0, n, step):
        xs, logits = _forward(model, xb[i:i + step], precision)
        loss = loss_fn(logits, xs, n)  # the batch's mean of per-image sums, slice by slice
        loss.backward()
        total += loss.detach()
    torch.nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
    opt.step()
    return total


def _forward(model: CoDAE, x: torch.Tensor, precision: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(x in the layout of ``precision``, logits in the dtype of x): the forward pass under
    bfloat16 autocast on channels-last images for ``bf16``, as it is for ``fp32``."""
    bf16 = precision == "bf16"
    if bf16:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        logits = model(x)
    return x, logits.to(x.dtype)


def prepare_model(model: CoDAE, precision: str) -> CoDAE:
    """The model in the memory layout that trains fastest at ``precision`` (measured by
    ``benchmarks/codae_training.py``): channels-last for bf16, where the oneDNN convolutions
    gain from it; the default layout for fp32, where they do not. Values are unchanged."""
    return model.to(memory_format=torch.channels_last) if precision == "bf16" else model


@torch.inference_mode()
def validate(model: CoDAE, x: torch.Tensor, batch: int = 256,
             precision: str = "fp32") -> tuple[float, float]:
    """(mean SSIM, mean loss) of the reconstructions of x (N, C, H, W), the forward pass at the
    training ``precision``."""
    model.eval()
    s, loss = 0.0, 0.0
    for i in range(0, len(x), batch):
        xb, logits = _forward(model, x[i:i + batch], precision)
        s += float(ssim(torch.sigmoid(logits), xb).sum())
        loss += float(loss_fn(logits, xb)) * len(xb)
    return s / len(x), loss / len(x)


def _progress(total, desc, enabled):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, disable=not enabled, unit="step", leave=False)


def train_one(kind: str, cfg: AnomalyConfig, x_train: np.ndarray, x_valid: np.ndarray,
              folder: str, seed: int, progress: bool = True, resume: bool = False) -> dict:
    """Train one model (``codae`` or ``ae``) and write its folder; returns its summary."""
    mcfg = model_config(cfg, kind)
    tc = cfg.train
    torch.manual_seed(derive_seed(seed, MODEL_KINDS.index(kind)))
    model = prepare_model(CoDAE(mcfg), tc.precision)
    opt = make_optimizer(model, tc)
    os.makedirs(folder, exist_ok=True)
    last = os.path.join(folder, "last_state.pt")
    history: list[dict] = []
    start_epoch, best, steps, spent = 0, -np.inf, 0, 0.0
    if resume and os.path.exists(last):
        state = torch.load(last, weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        start_epoch, best = int(state["epoch"]), float(state["best_ssim"])
        steps = int(state["steps"])
        spent = float(state.get("seconds", 0.0))  # training time before the resume
        with open(os.path.join(folder, "history.json")) as fh:
            history = json.load(fh)["epochs"][:start_epoch]
    xt, xv = torch.from_numpy(x_train), torch.from_numpy(x_valid)
    n_batches = -(-len(xt) // tc.batch_size)
    t0 = time.perf_counter()
    for epoch in range(start_epoch, tc.epochs):
        if tc.max_steps and steps >= tc.max_steps:
            break
        gen = torch.Generator().manual_seed(derive_seed(seed, MODEL_KINDS.index(kind), epoch))
        perm = torch.randperm(len(xt), generator=gen)
        model.train()
        total, seen = 0.0, 0
        bar = _progress(n_batches, f"{kind} epoch {epoch + 1}/{tc.epochs}", progress)
        for b in range(n_batches):
            if tc.max_steps and steps >= tc.max_steps:
                break
            xb = augment(xt[perm[b * tc.batch_size:(b + 1) * tc.batch_size]], gen,
                         cfg.data.flip_eta, cfg.data.roll_step)
            loss = train_step(model, opt, xb, tc.clip_norm, tc.precision, tc.micro_batch)
            steps += 1
            total += float(loss.detach()) * len(xb)
            seen += len(xb)
            bar.update(1)
            bar.set_postfix(loss=f"{float(loss.detach()):.1f}")
        bar.close()
        v_ssim, v_loss = validate(model, xv, tc.eval_batch_size, tc.precision)
        history.append({"epoch": epoch + 1, "steps": steps, "train_loss": total / max(seen, 1),
                        "valid_loss": v_loss, "valid_ssim": v_ssim})
        if v_ssim > best:
            best = v_ssim
            save_pretrained(model, folder, {"input": cfg.data.input,
                                            "energy_scale": cfg.data.energy_scale,
                                            "epoch": epoch + 1, "valid_ssim": v_ssim,
                                            "seed": seed})
        write_text_atomic(os.path.join(folder, "history.json"),
                          json.dumps({"model": kind, "epochs": history}, indent=2))
        with atomic_output(last) as tmp:
            torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(),
                        "epoch": epoch + 1, "best_ssim": best, "steps": steps,
                        "seconds": spent + time.perf_counter() - t0}, tmp)
    if kind == "codae" and os.path.isfile(os.path.join(folder, "config.json")):
        _store_z_m_reference(folder, x_train, tc.eval_batch_size)
    return {"model": kind, "parameters": n_parameters(model), "steps": steps,
            "best_valid_ssim": best, "epochs_run": len(history),
            "seconds": spent + time.perf_counter() - t0, "folder": folder}


def _store_z_m_reference(folder: str, x_train: np.ndarray, batch: int) -> None:
    """Add the training QCD's Z_m mean and covariance (best checkpoint) to config.json, for the
    direction-free Mahalanobis score."""
    best, meta = from_pretrained(folder)
    meta["z_m_reference"] = z_m_reference(z_m(best, x_train, batch).astype(np.float64))
    write_text_atomic(os.path.join(folder, "config.json"), json.dumps(meta, indent=2))


def train(cfg: AnomalyConfig, out: str, seed: int, progress: bool = True,
          resume: bool = False) -> dict:
    """Train every model of ``cfg.models`` on the QCD events of ``cfg.data.train``.

    Writes ``out/config.yaml``, ``out/<model>/...`` and ``out/train_summary.json``.
    """
    if not cfg.data.train:
        raise InputError("no training files: set data.train (or pass --train)")
    ev = read_for_input(cfg.data.train, cfg.data.input, processes=["qcd"])
    x = model_inputs(ev, cfg.data.input, cfg.data.energy_scale)
    tr, va = split_valid(len(x), cfg.data.valid_fraction, seed)
    os.makedirs(out, exist_ok=True)
    save_config(cfg, out)  # reloadable as a preset: --config runs/<name>/config.yaml
    summary = {"n_train": int(len(tr)), "n_valid": int(len(va)), "input": cfg.data.input,
               "train_files": ev.sources, "seed": seed, "models": {}}
    for kind in cfg.models:
        summary["models"][kind] = train_one(kind, cfg, x[tr], x[va], os.path.join(out, kind),
                                            seed, progress, resume)
    write_text_atomic(os.path.join(out, "train_summary.json"), json.dumps(summary, indent=2))
    return summary
