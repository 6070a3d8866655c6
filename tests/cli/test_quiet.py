"""The terminal shows progress and summaries; Lightning's banners, tips and warnings go to
``RUN/logs/lightning.log`` unless ``jetfm --verbose``."""
from __future__ import annotations

import logging
import os
import subprocess
import sys
import warnings

import pytest

from tests.conftest import AOJ_MINI

#: what Lightning prints around a training: banners, a tip, a configuration note, a warning
CHATTER = ("GPU available", "litlogger", "LeafSpec", "val_check_interval")


def test_quiet_lightning_routes_records_and_warnings_and_restores(tmp_path, capfd):
    import lightning.pytorch  # noqa: F401  (sets its loggers' level, as a training does)

    from jetfm.train.quiet import LIGHTNING_LOGGERS, quiet_lightning, set_verbose

    loggers = [logging.getLogger(n) for n in LIGHTNING_LOGGERS]
    before = [(lg.handlers[:], lg.propagate) for lg in loggers]
    show = warnings.showwarning
    log = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    with quiet_lightning(tmp_path) as path:
        log.info("GPU available: False, used: False")
        warnings.warn("`Trainer(val_check_interval=1.0)` was configured", UserWarning,
                      stacklevel=1)
        log.error("checkpoint directory is not writable")
    out, err = capfd.readouterr()
    assert "GPU available" not in out + err and "val_check_interval" not in out + err
    assert "checkpoint directory is not writable" in err  # errors stay visible
    assert path == str(tmp_path / "logs" / "lightning.log")
    text = open(path, encoding="utf-8").read()
    for line in ("GPU available", "val_check_interval", "UserWarning",
                 "checkpoint directory is not writable"):
        assert line in text
    assert [(lg.handlers, lg.propagate) for lg in loggers] == before
    assert warnings.showwarning is show
    try:
        set_verbose(True)
        with quiet_lightning(tmp_path / "v") as path:
            assert path is None
            assert [(lg.handlers, lg.propagate) for lg in loggers] == before
    finally:
        set_verbose(False)
    assert not (tmp_path / "v").exists()


def test_training_terminal_is_quiet_and_lightning_log_holds_the_chatter(tmp_path, capfd):
    from jetfm.cli import main

    out = tmp_path / "tok"
    rc = main(["tokenizer", "train", "--data", str(AOJ_MINI), "--preset", "quick", "-o",
               str(out)])
    terminal = "".join(capfd.readouterr())
    assert rc == 0, terminal
    for text in CHATTER:
        assert text not in terminal, terminal
    assert "tokenizer -> " in terminal and "train_loss" in terminal  # summary and progress bar
    log = (out / "logs" / "lightning.log").read_text(encoding="utf-8")
    for text in CHATTER:
        assert text in log, log


@pytest.mark.slow
def test_verbose_shows_lightning_on_the_terminal(tmp_path):
    """``jetfm --verbose`` as a user runs it (a fresh process, so Lightning's own handlers)."""
    out = tmp_path / "tok"
    argv = [sys.executable, "-m", "jetfm", "--verbose", "tokenizer", "train", "--data",
            str(AOJ_MINI), "--preset", "quick", "-o", str(out)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, PYTHONWARNINGS=""))
    assert done.returncode == 0, done.stderr
    for text in CHATTER:
        assert text in done.stdout + done.stderr, done.stderr
    assert not (out / "logs" / "lightning.log").exists()
