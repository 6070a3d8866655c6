"""Helpers shared by the benchmark scripts: timing and the JSON result line."""
from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable


def best_of(fn: Callable[[], object], repeats: int = 3) -> float:
    """Smallest wall time of ``repeats`` calls (seconds): the least disturbed by a noisy machine."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def best_interleaved(fns: list[Callable[[], object]], repeats: int = 3) -> list[float]:
    """Smallest wall time of each of ``fns`` over ``repeats`` rounds that call each once, in
    turn: a noisy machine's slow spells hit every one of them alike."""
    best = [float("inf")] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            best[i] = min(best[i], best_of(fn, 1))
    return best


def emit(benchmark: str, value: float, unit: str, baseline: float, ratio: float,
         **extra) -> None:
    """Print the machine-readable result: one JSON object on the last line."""
    rec = {"benchmark": benchmark, "value": round(value, 4), "unit": unit,
           "baseline": round(baseline, 4), "ratio": round(ratio, 4),
           "cpu_count": os.cpu_count(), "machine": platform.processor() or platform.machine()}
    rec.update(extra)
    print(json.dumps(rec))
