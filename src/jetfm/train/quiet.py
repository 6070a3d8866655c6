"""Lightning's console chatter goes to the run folder's log instead of the terminal.

Inside :func:`quiet_lightning` the records of Lightning's loggers (its "GPU available" banners,
tips, "`Trainer.fit` stopped") and every Python warning raised in the block (Lightning's and
PyTorch's deprecation and configuration warnings) are written to ``RUN/logs/lightning.log``;
records of level ERROR and above still reach stderr as well. Progress bars and exceptions are
untouched. Everything is restored on exit. ``jetfm --verbose`` (:func:`set_verbose`) turns the
redirection off, so the terminal shows all of it as Lightning prints it.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings
from collections.abc import Iterator

#: the loggers Lightning writes its console messages to (their children propagate to them)
LIGHTNING_LOGGERS = ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning",
                     "lightning_fabric")
LOG_NAME = os.path.join("logs", "lightning.log")

_verbose = False


def set_verbose(flag: bool) -> None:
    """Show Lightning's messages and warnings on the terminal (``jetfm --verbose``)."""
    global _verbose
    _verbose = bool(flag)


def verbose() -> bool:
    return _verbose


@contextlib.contextmanager
def quiet_lightning(run_dir: str | os.PathLike) -> Iterator[str | None]:
    """Route Lightning's log records and the warnings raised in the block to
    ``run_dir/logs/lightning.log`` (appended; created at the first message). Yields the log's
    path, or None under :func:`set_verbose`."""
    if _verbose:
        yield None
        return
    path = os.path.join(os.fspath(run_dir), LOG_NAME)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    to_file = logging.FileHandler(path, encoding="utf-8", delay=True)
    to_file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    errors = logging.StreamHandler(sys.stderr)
    errors.setLevel(logging.ERROR)
    saved = []
    for name in LIGHTNING_LOGGERS:
        log = logging.getLogger(name)
        saved.append((log, log.handlers[:], log.propagate))
        log.handlers = [to_file, errors]
        log.propagate = False
    # a logger outside the registry, so nothing else can attach to it or find it
    warn_log = logging.Logger("warnings")
    warn_log.addHandler(to_file)

    def show(message, category, filename, lineno, file=None, line=None):
        text = warnings.formatwarning(message, category, filename, lineno, line)
        warn_log.warning(text.rstrip("\n"))

    try:
        with warnings.catch_warnings():  # restores showwarning and the filters on exit
            warnings.showwarning = show
            yield path
    finally:
        for log, handlers, propagate in saved:
            log.handlers = handlers
            log.propagate = propagate
        to_file.close()


__all__ = ["LIGHTNING_LOGGERS", "LOG_NAME", "quiet_lightning", "set_verbose", "verbose"]
