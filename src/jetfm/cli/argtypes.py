"""Argument types with ranges for the CLI's numbers, shared by every command.

``type=positive_int`` (and the others) make argparse refuse a bad value with one line naming the
option (``jetfm split: error: argument --jets-per-file: must be an integer >= 1, got '0'``) and
exit code 2, before any file is touched.
"""
from __future__ import annotations

import argparse
import math

#: seeds are 32-bit unsigned integers: what NumPy's and torch's generators and the Pythia seed
#: derivation (:func:`jetfm.simulate.pythia.derive_seed`) take without wrapping
SEED_MAX = 2**32 - 1
#: upper bound of a jet or event count: over five times AspenOpenJets' 180 M jets
COUNT_MAX = 10**9


def integer(lo: int | None = None, hi: int | None = None, what: str = "an integer"):
    """An argparse type: a base-10 integer within [lo, hi]."""
    def parse(text: str) -> int:
        try:
            value = int(text, 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {what}, got '{text}'") from None
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            rng = (f"from {lo} to {hi}" if hi is not None and lo is not None
                   else f">= {lo}" if lo is not None else f"<= {hi}")
            raise argparse.ArgumentTypeError(f"must be {what} {rng}, got '{text}'")
        return value
    parse.__name__ = what
    return parse


def number(lo: float | None = None, hi: float | None = None, lo_open: bool = False):
    """An argparse type: a finite float within [lo, hi] (or (lo, hi] with ``lo_open``)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number, got '{text}'") from None
        bad = (not math.isfinite(value) or (lo is not None and (value <= lo if lo_open
                                                                 else value < lo))
               or (hi is not None and value > hi))
        if bad:
            rng = " and ".join(s for s in (
                None if lo is None else f"{'>' if lo_open else '>='} {lo:g}",
                None if hi is None else f"<= {hi:g}") if s)
            raise argparse.ArgumentTypeError(f"must be a finite number{' ' + rng if rng else ''}"
                                             f", got '{text}'")
        return value
    parse.__name__ = "number"
    return parse


#: counts of things (jets, events, samples, batch sizes): 1 .. COUNT_MAX
positive_int = integer(1, COUNT_MAX)
#: 0 .. COUNT_MAX (0 meaning "none" or "off" where the option says so)
nonneg_int = integer(0, COUNT_MAX)
#: a random seed
seed = integer(0, SEED_MAX)
#: worker processes or threads: 1 .. 1024
workers = integer(1, 1024)
#: a finite number > 0
positive_float = number(0.0, lo_open=True)
#: a finite number >= 0
nonneg_float = number(0.0)
#: mean number of pile-up interactions: 0 .. 200 (the HL-LHC's design pile-up)
pileup = number(0.0, 200.0)
