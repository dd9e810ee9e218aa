"""Latency: warm-up, then many timed runs; percentiles in milliseconds and throughput."""

from __future__ import annotations

import time

import numpy as np


def time_calls(fn, runs: int, warmup: int) -> np.ndarray:
    """Wall time of `runs` calls of fn() after `warmup` untimed ones, in milliseconds."""
    for _ in range(warmup):
        fn()
    times = np.empty(runs)
    for i in range(runs):
        t = time.perf_counter()
        fn()
        times[i] = time.perf_counter() - t
    return times * 1e3


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
