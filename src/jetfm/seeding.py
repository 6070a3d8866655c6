"""Child seeds derived from a user seed and a path of integers (a stage, chunk, model, epoch ...).

One algorithm: the seed and the path are the entropy of a :class:`numpy.random.SeedSequence`
(NumPy's documented hash for independent streams: stable across runs, platforms and NumPy
versions), and one draw from it is the child seed. What the draw looks like depends on who takes
the seed, so :func:`derive_seed` has three call conventions; each caller keeps its convention,
because a simulation, a scan or a training is reproducible by its seed and must give the same
numbers as before:

``"int31"``
    The scans (model initialisation, evaluation): entropy ``[seed, *path]``, the child seed is
    ``Generator(PCG64(sequence)).integers(2**31 - 1)``, in ``0 .. 2**31 - 2`` (fits a signed
    32-bit integer).
``"uint32"``
    CoDAE training (``torch.manual_seed`` per model and epoch): entropy ``[seed, *path]``, the
    first 32-bit word of the sequence's state, in ``0 .. 2**32 - 1``.
``"pythia"``
    Pythia 8 (``Random:seed`` accepts ``1 .. 900_000_000``): entropy ``[seed mod 2**32,
    seed // 2**32, *path]``, the first 64-bit word of the state modulo ``PYTHIA_MAX_SEED - 1``,
    plus one.

Seeds and path entries are non-negative integers. A ``SeedSequence`` pads short entropy with
zeros, so trailing zeros in a path do not change the child seed (``derive_seed(s)`` equals
``derive_seed(s, 0)``): give paths that differ before their trailing zeros.
"""
from __future__ import annotations

import numpy as np

#: Pythia accepts seeds in 1..900_000_000
PYTHIA_MAX_SEED = 900_000_000
CONVENTIONS = ("int31", "uint32", "pythia")


def derive_seed(seed: int, *path: int, convention: str = "int31") -> int:
    """A child seed of ``seed`` for ``path`` (see the module docstring for ``convention``)."""
    words = [int(seed), *(int(p) for p in path)]
    if any(w < 0 for w in words):
        raise ValueError(f"seeds and seed paths are non-negative integers, got {words}")
    if convention == "pythia":
        words[:1] = [words[0] & 0xFFFFFFFF, words[0] >> 32]
    elif convention not in CONVENTIONS:
        raise ValueError(f"unknown seed convention {convention!r}: expected one of {CONVENTIONS}")
    sequence = np.random.SeedSequence(words)
    if convention == "int31":
        return int(np.random.Generator(np.random.PCG64(sequence)).integers(2**31 - 1))
    if convention == "uint32":
        return int(sequence.generate_state(1)[0])
    return int(sequence.generate_state(1, np.uint64)[0] % (PYTHIA_MAX_SEED - 1)) + 1


__all__ = ["derive_seed", "CONVENTIONS", "PYTHIA_MAX_SEED"]
