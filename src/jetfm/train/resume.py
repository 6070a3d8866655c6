"""Exact resume: a training killed at any point after a checkpoint and started again with the
same command ends with the same weights, bit for bit, as one that was never interrupted (on the
same machine, with the same number of threads and processes), and leaves one log of every step.

What a resumed run must find again, and where it comes from:

- a checkpoint to resume from: ``step.ckpt`` (:class:`StepCheckpoint`) every N steps, except
  right before a validation, and ``last.ckpt`` after each validation, each written whole or
  not at all (:class:`AtomicCheckpointIO`);
- the weights, the optimiser moments, the learning-rate schedule's position, early stopping and
  the best checkpoint so far, the quantiser's statistics (k-means done, steps each code has been
  unused: buffers of the model): Lightning's checkpoint;
- the position within the epoch and the epoch's data order: the loader's state in the checkpoint
  (:class:`jetfm.train.streaming.ResumableLoader`, :class:`~jetfm.train.streaming.StreamingLoader`)
  with orders drawn from ``(seed, epoch)`` (:class:`jetfm.train.data.EpochSampler`,
  :class:`~jetfm.train.streaming.StreamingJets`);
- the random numbers of the training step (dropout, k-means++ seeding, dead-code replacement):
  :class:`StepSeed` seeds torch, NumPy and Python's ``random`` before every training batch from
  ``(seed, epoch, batch, rank)``, so a step draws the same numbers whatever ran before it
  (an uninterrupted run and a resumed one consume different amounts of randomness outside the
  steps: data-loader start-up, the restore itself);
- the logs: :func:`run_loggers` continues the newest ``logs/version_N`` and
  ``tensorboard/version_N`` of the run, dropping the rows of the checkpoint's step and later
  (the resumed run logs them again). The CSV log writes each row as it is logged, so every row
  of the steps before a checkpoint is on disk once the run is past it (Lightning logs the row of
  a step milliseconds after that step's checkpoint: only a kill between the two loses that
  row); :class:`FlushLogs` writes TensorBoard's events out before every checkpoint, validation
  and training batch.
"""
from __future__ import annotations

import csv
import glob
import os
import random
import re

import lightning.pytorch as L
import numpy as np
import torch
from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.fabric.plugins import TorchCheckpointIO
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter

from jetfm.io.output import atomic_output, write_text_atomic


def step_seed(seed: int, epoch: int, batch: int, rank: int = 0) -> int:
    """The 63-bit seed of one training batch: a hash of ``(seed, epoch, batch, rank)``."""
    words = [int(v) % 2 ** 63 for v in (seed, epoch, batch, rank)]
    return int(np.random.SeedSequence(words).generate_state(1, np.uint64)[0] >> np.uint64(1))


def seed_all(s: int) -> None:
    """Seed torch (CPU and every CUDA GPU), NumPy's global generator and Python's ``random``."""
    # not torch.manual_seed: it visits every device type, many times slower per batch than
    # these calls (benchmarks/resume_overhead.py measures both)
    torch.default_generator.manual_seed(s)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(s)
    np.random.seed(s % 2 ** 32)
    random.seed(s)


class StepSeed(L.Callback):
    """Seeds every generator (:func:`seed_all`) with :func:`step_seed` before each training
    batch (batches, not optimiser steps: accumulated batches draw numbers of their own)."""

    def __init__(self, seed: int):
        self.seed = int(seed)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        seed_all(step_seed(self.seed, trainer.current_epoch, batch_idx, trainer.global_rank))


class FlushLogs(L.Callback):
    """Writes the loggers' pending rows and events to disk before every checkpoint, validation
    and training batch, so a killed run has logged the steps before its checkpoint."""

    @staticmethod
    def _flush(trainer) -> None:
        for logger in trainer.loggers:
            logger.save()

    def on_save_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        self._flush(trainer)

    def on_validation_start(self, trainer, pl_module) -> None:
        self._flush(trainer)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._flush(trainer)


def validates_after(trainer, batch_idx: int) -> bool:
    """Whether the trainer validates after training batch ``batch_idx`` of the epoch (the last
    batch, or every ``val_check_batch`` batches with ``val_check_interval`` below 1)."""
    every = trainer.val_check_batch
    last = batch_idx + 1 >= trainer.num_training_batches
    return last or (every not in (None, float("inf")) and (batch_idx + 1) % int(every) == 0)


class StepCheckpoint(ModelCheckpoint):
    """``step.ckpt`` every ``every_n_steps`` optimiser steps: one file, overwritten with the
    newest state; none after a batch that validation follows. Lightning resumes from a
    checkpoint of such a batch past the validation (it would never run: no validation row, and
    early stopping and the best checkpoint would miss that validation loss); ``last.ckpt``,
    written right after the validation, takes its place."""

    def __init__(self, dirpath: str, every_n_steps: int):
        # monitor None + save_top_k 1: one file, overwritten with the newest state
        super().__init__(dirpath=dirpath, filename="step", save_top_k=1,
                         every_n_train_steps=every_n_steps, enable_version_counter=False)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not validates_after(trainer, batch_idx):
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes a checkpoint through :func:`jetfm.io.output.atomic_output` (``NAME.partial``
    beside it, renamed onto ``NAME``): a kill never leaves a torn checkpoint under the name a
    resume reads. (Lightning's own writer renames from a temporary file in ``$TMPDIR``: a copy,
    not a rename, when that is on another file system.)"""

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        if storage_options is not None:
            return super().save_checkpoint(checkpoint, path, storage_options)
        with atomic_output(path) as tmp:
            torch.save(checkpoint, tmp)


def checkpoint_step(path: str) -> int:
    """The optimiser steps done when the checkpoint ``path`` was written (its global step)."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    return int(ckpt["global_step"])


def newest_version(folder: str) -> int | None:
    """N of the newest ``folder/version_N``, or None."""
    found = [int(m.group(1)) for p in glob.glob(os.path.join(folder, "version_*"))
             if (m := re.fullmatch(r"version_(\d+)", os.path.basename(p)))]
    return max(found) if found else None


def keep_rows_before(path: str, step: int) -> list[str]:
    """Rewrite the metrics CSV ``path`` (atomically) without the rows of ``step`` and later;
    returns its header. The kept rows stay byte for byte as they were."""
    with open(path, newline="") as fh:
        lines = fh.readlines()
    if not lines:
        return []
    header = next(csv.reader([lines[0]]))
    col = header.index("step")
    kept = [ln for ln in lines[1:] if ln.strip() and int(next(csv.reader([ln]))[col]) < step]
    if len(kept) != len(lines) - 1:
        write_text_atomic(path, "".join([lines[0], *kept]))
    return header


class _ContinuedWriter(ExperimentWriter):
    """Lightning's CSV writer, continuing an existing ``metrics.csv`` from ``step`` on instead of
    deleting it."""

    def __init__(self, log_dir: str, step: int):
        self._resume_step = step
        super().__init__(log_dir)

    def _check_log_dir_exists(self) -> None:
        if os.path.isfile(self.metrics_file_path):
            self.metrics_keys = keep_rows_before(self.metrics_file_path, self._resume_step)


class ContinuedCSVLogger(CSVLogger):
    """A :class:`CSVLogger` whose run resumes at optimiser step ``step``: it appends to the
    ``metrics.csv`` of its version, keeping the rows of the earlier steps."""

    def __init__(self, save_dir: str, name: str, version: int, step: int):
        super().__init__(save_dir, name=name, version=version, flush_logs_every_n_steps=1)
        self._resume_step = step

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _ContinuedWriter(self.log_dir, self._resume_step)
        return self._experiment


def run_loggers(run_dir: str, resume_from: str | None) -> list:
    """CSV (``run_dir/logs``) and TensorBoard (``run_dir/tensorboard``) loggers. A fresh run logs
    into a new ``version_N``; a run resuming from the checkpoint ``resume_from`` continues the
    newest one, without the rows and events of the steps from the checkpoint's on."""
    csv_dir, tb_dir = os.path.join(run_dir, "logs"), os.path.join(run_dir, "tensorboard")
    # each CSV row written as it is logged (a kill loses none of the steps before it)
    fresh_csv = CSVLogger(run_dir, name="logs", flush_logs_every_n_steps=1)
    if resume_from is None:
        return [fresh_csv, TensorBoardLogger(run_dir, name="tensorboard")]
    step = checkpoint_step(resume_from)
    v_csv, v_tb = newest_version(csv_dir), newest_version(tb_dir)
    csv_logger = fresh_csv if v_csv is None else ContinuedCSVLogger(run_dir, "logs", v_csv, step)
    # events of the steps from ``purge_step`` on are hidden from TensorBoard
    tb_logger = TensorBoardLogger(run_dir, name="tensorboard", version=v_tb, purge_step=step)
    return [csv_logger, tb_logger]


__all__ = ["AtomicCheckpointIO", "StepSeed", "FlushLogs", "StepCheckpoint", "validates_after",
           "step_seed", "seed_all", "run_loggers", "checkpoint_step", "keep_rows_before",
           "ContinuedCSVLogger"]
