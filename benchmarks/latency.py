"""Latency: warm-up, then many timed runs; percentiles in milliseconds and throughput."""

from __future__ import annotations

import itertools
import time

import numpy as np


def time_calls(fn, runs: int, warmup: int, before=None) -> np.ndarray:
    """Wall time of `runs` calls of fn() after `warmup` untimed ones, in milliseconds;
    `before()`, when given, runs untimed ahead of every call (the in-loop state)."""
    for _ in range(warmup):
        if before is not None:
            before()
        fn()
    times = np.empty(runs)
    for i in range(runs):
        if before is not None:
            before()
        t = time.perf_counter()
        fn()
        times[i] = time.perf_counter() - t
    return times * 1e3


class CacheSweep:
    """A write over `nbytes` of memory: what a deployment's other work each frame (a face
    detector on a 640x480 frame, drawing, encoding) does to the caches before the model runs."""

    def __init__(self, nbytes: int):
        self.nbytes = int(nbytes)
        self.buffer = np.zeros(self.nbytes, np.uint8)

    def __call__(self) -> None:
        np.add(self.buffer, 1, out=self.buffer)  # every cache line read and written


def cycled(batches: list):
    """A call argument that takes the next batch each time: never the same input twice in a row."""
    return itertools.cycle(batches)


def input_batches(crops: np.ndarray, batch: int, count: int = 8) -> list[np.ndarray]:
    """Up to `count` different batches of `batch` faces (the set rotated between them)."""
    n = min(count, len(crops))
    step = max(1, len(crops) // n)
    return [batch_of(np.roll(crops, -k * step, axis=0), batch) for k in range(n)]


def batch_of(crops: np.ndarray, n: int) -> np.ndarray:
    """The first n crops, cycling through them when there are fewer than n."""
    return np.concatenate([crops] * -(-n // len(crops)))[:n]


def summarise(times_ms: np.ndarray, batch: int) -> dict:
    p50, p90, p99 = np.percentile(times_ms, [50, 90, 99])
    return {
        "batch": batch,
        "runs": len(times_ms),
        "p50_ms": float(p50),
        "p90_ms": float(p90),
        "p99_ms": float(p99),
        "mean_ms": float(times_ms.mean()),
        "faces_per_s": float(batch / (p50 / 1e3)),
    }
