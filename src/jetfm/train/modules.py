"""Lightning modules for the tokenizer and the backbone, and the trainer that runs them
(CSV and TensorBoard logs, AdamW, gradient clipping, early stopping on validation loss,
checkpoints, resume from ``last.ckpt`` after a crash)."""
from __future__ import annotations

import glob
import os

import lightning.pytorch as L
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

from jetfm.omnijet.backbone import BackboneConfig, JetGPT
from jetfm.omnijet.config import TrainConfig
from jetfm.omnijet.tokenizer import TokenizerConfig, VQVAETokenizer
from jetfm.physics.features import Preprocessing


def lr_factor(step: int, total: float, warmup: int, cooldown_fraction: float) -> float:
    """Warm-up / constant / cool-down multiplier of the learning rate at optimiser ``step``."""
    f = 1.0
    if warmup > 0 and step < warmup:
        f = (step + 1) / warmup
    if cooldown_fraction > 0 and total != float("inf") and total > 0:
        start = (1 - cooldown_fraction) * total
        if step >= start:
            f = min(f, max(0.0, (total - step) / max(total - start, 1)))
    return f


class _Module(L.LightningModule):
    def __init__(self, tc: TrainConfig):
        super().__init__()
        self.tc = tc

    def optimizer_groups(self) -> list[dict]:
        """AdamW parameter groups (a group's own ``lr`` overrides the config's)."""
        return [{"params": [p for p in self.parameters() if p.requires_grad]}]

    def configure_optimizers(self):
        tc = self.tc
        opt = torch.optim.AdamW(self.optimizer_groups(), lr=tc.lr, weight_decay=tc.weight_decay)
        if tc.schedule == "constant":
            return opt
        if tc.schedule != "warmup_cooldown":
            raise ValueError(f"unknown schedule '{tc.schedule}' (constant, warmup_cooldown)")
        # the planned step count is read when training starts (on_train_start), not here:
        # asking Lightning for it now sets up the training loader before a checkpoint's loader
        # position is restored, and a run resumed mid-epoch would start the epoch over. The
        # factor of step 0 (the only one taken before) does not depend on it.
        self._planned_steps = float("inf")
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(
            s, self._planned_steps, tc.warmup_steps, tc.cooldown_fraction))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def on_train_start(self) -> None:
        self._planned_steps = float(self.trainer.estimated_stepping_batches)


def feature_batch(batch) -> tuple[torch.Tensor, torch.Tensor]:
    """A tokenizer batch -> ``(x (B, P, 3), mask (B, P))`` trimmed to the batch's longest jet:
    the in-memory loaders give the tuple already trimmed, the streaming loader a dict
    (``x``, ``mask``, ``index``, ...) padded to n_max."""
    if not isinstance(batch, dict):
        return batch
    x, m = batch["x"], batch["mask"]
    p = max(1, int(m.sum(1).max()))
    return x[:, :p], m[:, :p]


def codes_to_sequences_t(codes: torch.Tensor, mask: torch.Tensor, codebook_size: int,
                         residual_codes: int = 0) -> torch.Tensor:
    """Torch twin of :func:`jetfm.io.tokens.codes_to_sequences`: codes (B, P), mask (B, P)
    (real entries first) -> sequences (B, L) int64: start 0, code + 1 ... (with residual codes a
    combined code's residual token after it), stop, then -1 padding."""
    b, p = mask.shape
    dev = codes.device
    stop = codebook_size + residual_codes + 1
    rows = torch.arange(b, device=dev)
    if not residual_codes:
        seq = torch.full((b, p + 2), -1, dtype=torch.long, device=dev)
        seq[:, 0] = 0
        seq[:, 1:p + 1] = torch.where(mask, codes + 1, torch.full_like(codes, -1))
        seq[rows, mask.sum(1) + 1] = stop
        return seq
    res = torch.where(mask, codes // codebook_size - 1, -1)
    has = (res >= 0).long()
    at = 1 + torch.cumsum(1 + has, 1) - (1 + has)
    length = (mask.long() * (1 + has)).sum(1)
    seq = torch.full((b, int(length.max()) + 2 if b else 2), -1, dtype=torch.long, device=dev)
    seq[:, 0] = 0
    r2 = rows[:, None].expand(b, p)
    seq[r2[mask], at[mask]] = codes[mask] % codebook_size + 1
    both = mask & (res >= 0)
    seq[r2[both], at[both] + 1] = codebook_size + 1 + res[both]
    seq[rows, length + 1] = stop
    return seq


class TokenizerModule(_Module):
    """Trains :class:`VQVAETokenizer`: loss = masked MSE + alpha * vq_loss."""

    def __init__(self, cfg: TokenizerConfig, prep: Preprocessing, tc: TrainConfig):
        super().__init__(tc)
        self.model = VQVAETokenizer(cfg, prep)

    def _step(self, batch, stage: str):
        x, m = feature_batch(batch)
        _, _, loss, parts = self.model(x, m)
        bs = len(x)
        self.log(f"{stage}_loss", loss, prog_bar=True, batch_size=bs, sync_dist=stage == "val")
        for k in ("rec_loss", "vq_loss", "perplexity", "usage"):
            self.log(f"{stage}_{k}", parts[k], batch_size=bs, sync_dist=stage == "val")
        return loss

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx):
        return self._step(batch, "val")


class BackboneModule(_Module):
    """Trains :class:`JetGPT` on token sequences with the padding-free next-token loss.

    ``freeze_backbone`` trains only the output head (embedding and blocks frozen).

    Batches: token sequences ``(B, L)`` int64 (in-memory loader), or the streaming loader's
    dicts: ``tokens`` (token files), or ``x``/``mask`` features (AOJ files), which ``tokenizer``
    turns into sequences on the fly, on the training device, frozen (eval mode, no gradient,
    float32 even under bf16 autocast, so the codes equal those of ``jetfm tokenize``). The
    tokenizer is not a sub-module: it is neither trained, nor saved in checkpoints, nor
    wrapped by DDP."""

    def __init__(self, cfg: BackboneConfig, tc: TrainConfig, freeze_backbone: bool = False,
                 tokenizer: torch.nn.Module | None = None):
        super().__init__(tc)
        self.model = JetGPT(cfg)
        self.freeze_backbone = freeze_backbone
        if freeze_backbone:
            for name, p in self.model.named_parameters():
                p.requires_grad_(name.startswith(("head.", "feat_out.")))
        self._tokenizer = (tokenizer.eval().requires_grad_(False),) if tokenizer else ()
        #: seconds spent tokenizing batches on the fly (the data path's share of a step)
        self.tokenize_seconds = 0.0

    def on_fit_start(self) -> None:
        for tok in self._tokenizer:
            tok.to(self.device)

    def sequences(self, batch) -> torch.Tensor:
        """Any batch -> token sequences (B, L) int64, -1 padded, trimmed to the longest."""
        if not isinstance(batch, dict):
            return batch
        if "tokens" in batch:
            s = batch["tokens"]
            return s[:, :max(1, int((s >= 0).sum(1).max()))]
        if not self._tokenizer:
            raise ValueError("feature batches need the tokenizer (BackboneModule(tokenizer=))")
        import time

        t0 = time.perf_counter()
        tok = self._tokenizer[0]
        x, m = feature_batch(batch)
        with torch.no_grad(), torch.autocast(x.device.type, enabled=False):
            codes = tok.encode_features(x.float(), m)
        seqs = codes_to_sequences_t(codes, m, tok.codebook_size, tok.residual_codes)
        # on a GPU this times the launch only (no synchronisation added to the step)
        self.tokenize_seconds += time.perf_counter() - t0
        return seqs

    def _step(self, batch, stage: str):
        seqs = self.sequences(batch)
        if stage == "train":
            self.model.count_multiplicity(seqs)
        loss = self.model.loss(seqs)
        self.log(f"{stage}_loss", loss, prog_bar=True, batch_size=len(seqs),
                 sync_dist=stage == "val")
        return loss

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx):
        return self._step(batch, "val")


def resolve_precision(precision: str, accelerator: str = "auto") -> str:
    """``"auto"`` -> ``"bf16-mixed"`` where training runs on a CUDA GPU with bf16, else
    ``"32-true"``; any other value is returned as is."""
    if precision != "auto":
        return precision
    gpu = accelerator in ("gpu", "cuda", "auto") and torch.cuda.is_available()
    return "bf16-mixed" if gpu and torch.cuda.is_bf16_supported() else "32-true"


def latest_checkpoint(ckpt_dir: str) -> str | None:
    """The newest resumable checkpoint in ``ckpt_dir`` (``last.ckpt`` or the step checkpoint)."""
    cands = [p for p in glob.glob(os.path.join(ckpt_dir, "*.ckpt"))
             if os.path.basename(p).startswith(("last", "step"))]
    return max(cands, key=os.path.getmtime) if cands else None


def fit(module: _Module, train_loader, val_loader, run_dir: str, seed: int,
        resume: bool = True, callbacks: list | None = None, progress: bool = True) -> dict:
    """Train ``module`` with its TrainConfig; logs and checkpoints under ``run_dir``.

    Resumes from the newest of ``checkpoints/last.ckpt`` / ``checkpoints/step.ckpt`` when
    ``resume`` and one exists. Loads the best weights (lowest validation loss) into ``module``
    at the end. Returns ``{"checkpoint", "best_val_loss", "epochs", "steps", "resumed_from"}``.
    """
    from jetfm.train.quiet import quiet_lightning
    from jetfm.train.resume import (
        AtomicCheckpointIO,
        FlushLogs,
        StepCheckpoint,
        StepSeed,
        run_loggers,
    )

    tc = module.tc
    L.seed_everything(seed, workers=True, verbose=False)
    ckpt_dir = os.path.join(run_dir, "checkpoints")
    done = _finished(ckpt_dir, tc) if resume else None
    if done is not None:  # the same training ran to its end: its best weights, nothing trained
        module.load_state_dict(torch.load(done["checkpoint"], map_location="cpu",
                                          weights_only=True)["state_dict"])
        return done
    ckpt = latest_checkpoint(ckpt_dir) if resume else None
    best = ModelCheckpoint(dirpath=ckpt_dir, filename="best", monitor="val_loss", mode="min",
                           save_top_k=1, save_last=True, enable_version_counter=False)
    # exact resume (jetfm.train.resume): each batch's random numbers from (seed, epoch, batch),
    # log rows on disk before each checkpoint
    cbs = [StepSeed(seed), FlushLogs(), best]
    if tc.ckpt_every_n_steps > 0:
        cbs.append(StepCheckpoint(ckpt_dir, tc.ckpt_every_n_steps))
    if tc.patience > 0:
        cbs.append(EarlyStopping(monitor="val_loss", mode="min", patience=tc.patience))
    cbs += callbacks or []
    # a resumed run continues the killed one's logs from the checkpoint's step
    loggers = run_loggers(run_dir, ckpt)
    # Lightning's banners, tips and warnings go to RUN/logs/lightning.log (jetfm --verbose: the
    # terminal); the progress bar and errors stay on the terminal
    with quiet_lightning(run_dir):
        trainer = L.Trainer(
            max_epochs=tc.max_epochs, max_steps=tc.max_steps, accelerator=tc.accelerator,
            devices=tc.devices, num_nodes=tc.num_nodes, strategy=tc.strategy,
            precision=resolve_precision(tc.precision, tc.accelerator),
            accumulate_grad_batches=tc.accumulate_grad_batches,
            # the samplers shard across DDP ranks themselves (jetfm.train.data.EpochSampler)
            use_distributed_sampler=False, gradient_clip_val=tc.grad_clip or None,
            callbacks=cbs, logger=loggers, log_every_n_steps=tc.log_every_n_steps,
            val_check_interval=tc.val_check_interval, enable_progress_bar=progress,
            enable_model_summary=False, default_root_dir=run_dir, num_sanity_val_steps=0,
            plugins=[AtomicCheckpointIO()])
        trainer.fit(module, train_loader, val_loader, ckpt_path=ckpt, weights_only=True)
    path = best.best_model_path or best.last_model_path or latest_checkpoint(ckpt_dir)
    if path and os.path.exists(path):
        state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
        module.load_state_dict(state)
    score = best.best_model_score
    info = {"checkpoint": path, "best_val_loss": None if score is None else float(score),
            "epochs": int(trainer.current_epoch), "steps": int(trainer.global_step),
            "resumed_from": ckpt, "global_rank": int(trainer.global_rank)}
    if trainer.global_rank == 0 and path and os.path.exists(path):
        _mark_finished(ckpt_dir, tc, info)
    return info


#: written into ``checkpoints/`` when a training ends (early stopping or its last epoch or step)
FINISHED = "finished.json"


def _mark_finished(ckpt_dir: str, tc: TrainConfig, info: dict) -> None:
    """Record that the training of ``tc`` ended, with what :func:`fit` returned: a second call
    with the same settings then loads the best weights instead of resuming from ``last.ckpt``
    (written only when the validation loss improved: an early-stopped run's last one is its
    best, epochs before its end)."""
    import dataclasses
    import json

    from jetfm.io.output import atomic_output

    with atomic_output(os.path.join(ckpt_dir, FINISHED)) as tmp, open(tmp, "w") as fh:
        json.dump({"training": dataclasses.asdict(tc), "info": info}, fh, default=str)


def _finished(ckpt_dir: str, tc: TrainConfig) -> dict | None:
    """What a finished training of the same settings in ``ckpt_dir`` returned, or None."""
    import dataclasses
    import json

    path = os.path.join(ckpt_dir, FINISHED)
    try:
        with open(path) as fh:
            rec = json.load(fh)
    except (OSError, ValueError):
        return None
    info = rec.get("info", {})
    same = rec.get("training") == json.loads(json.dumps(dataclasses.asdict(tc), default=str))
    # the checkpoint by its name in this folder: the run folder may have moved
    best = os.path.join(ckpt_dir, os.path.basename(str(info.get("checkpoint") or "")))
    newest = latest_checkpoint(ckpt_dir)
    if not same or not os.path.isfile(best) or (
            newest and os.path.getmtime(newest) > os.path.getmtime(path)):
        return None
    # this call's weights come from that checkpoint
    return {**info, "checkpoint": best, "resumed_from": best}
