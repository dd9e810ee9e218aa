"""Confidence intervals for latency ratios: a paired bootstrap over interleaved rounds.

In a bench run the artifacts take turns round by round, so round i of every artifact ran under
the same conditions (the same neighbours on a shared VM). Resampling whole rounds, with the same
round indices for every artifact, keeps that pairing: the interval of A's p50 over B's says how
much the ratio could move if the run were repeated under the same mix of quiet and noisy spells.
What stays fixed for a process's life (where its allocator put the weights) is not in it: with
`bench --processes N` the interval is taken over N fresh processes instead (`between_processes`).
"""

from __future__ import annotations

import numpy as np

RESAMPLES = 2000
LEVEL = 0.95


def resampled_p50(rounds: dict[str, list[np.ndarray]], resamples: int = RESAMPLES, seed: int = 0) -> dict:
    """Per artifact, the p50 of each bootstrap resample of its rounds; every artifact is resampled
    with the same round indices (paired). `rounds[name]` is its list of per-round samples."""
    counts = {len(r) for r in rounds.values()}
    if len(counts) != 1 or 0 in counts:
        raise ValueError(f"every artifact needs the same, non-zero number of rounds; got {sorted(counts)}")
    (n,) = counts
    idx = np.random.default_rng(seed).integers(0, n, (resamples, n))
    out = {}
    for name, per_round in rounds.items():  # a (rounds, calls) matrix: bench's rounds have equal lengths
        m = np.stack(per_round)
        out[name] = np.median(m[idx].reshape(resamples, -1), axis=1)
    return out


def ratio_interval(numerator: np.ndarray, denominator: np.ndarray, level: float = LEVEL) -> dict:
    """The percentile interval of the ratio of two artifacts' resampled p50s."""
    ratios = numerator / denominator
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(ratios, [tail, 100 - tail])
    return {
        "low": float(low),
        "high": float(high),
        "level": level,
        "resamples": len(ratios),
        "method": "paired bootstrap over rounds",
    }


def between_processes(ratios: np.ndarray, level: float = LEVEL) -> dict:
    """The interval of a ratio measured once in each of several fresh processes (`bench
    --processes`): Student's t on the log ratios, so a ratio and its inverse get the same
    interval. Few processes give a wide interval, as they should: with 8 the half-width is
    2.36 standard errors."""
    from scipy import stats

    logs = np.log(np.asarray(ratios, dtype=float))
    n = len(logs)
    if n < 2:
        raise ValueError(f"an interval between processes needs at least 2 processes; got {n}")
    half = stats.t.ppf(0.5 + level / 2, n - 1) * logs.std(ddof=1) / np.sqrt(n)
    centre = logs.mean()
    return {
        "low": float(np.exp(centre - half)),
        "high": float(np.exp(centre + half)),
        "level": level,
        "processes": n,
        "method": "t over processes",
    }
