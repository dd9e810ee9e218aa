"""The 95% interval of a p50 ratio from a paired bootstrap over rounds, on synthetic timings."""

from __future__ import annotations

import numpy as np
import pytest
from fsanet.benchmarks.budget import check
from fsanet.benchmarks.intervals import between_processes, ratio_interval, resampled_p50


def timings(rng, ms: float, rounds: int, calls: int = 10, noise: float = 0.05, spells=None) -> list[np.ndarray]:
    """Per-round latency samples around `ms`; `spells` multiplies whole rounds (a noisy neighbour)."""
    slow = np.ones(rounds) if spells is None else spells
    return [ms * slow[i] * (1 + noise * rng.standard_normal(calls)) for i in range(rounds)]


def test_the_interval_holds_the_point_estimate_and_narrows_with_more_rounds():
    rng = np.random.default_rng(1)
    widths = []
    for rounds in (10, 40, 160):
        r = {"a": timings(rng, 2.0, rounds), "b": timings(rng, 1.0, rounds)}
        ci = ratio_interval(*resampled_p50(r).values())
        point = np.median(np.concatenate(r["a"])) / np.median(np.concatenate(r["b"]))
        assert ci["low"] <= point <= ci["high"] and ci["low"] < 2.0 < ci["high"]
        widths.append(ci["high"] - ci["low"])
    assert widths[0] > widths[1] > widths[2]


def test_coverage_of_the_true_ratio_is_near_95_percent():
    rng = np.random.default_rng(2)
    hits = 0
    for _ in range(200):
        r = {"a": timings(rng, 1.3, 20, noise=0.1), "b": timings(rng, 1.0, 20, noise=0.1)}
        ci = ratio_interval(*resampled_p50(r, resamples=500, seed=int(rng.integers(1 << 30))).values())
        hits += ci["low"] <= 1.3 <= ci["high"]
    assert 0.88 <= hits / 200 <= 0.995


def test_pairing_cancels_slow_spells_that_hit_both_artifacts():
    """A neighbour that slows whole rounds slows every artifact of those rounds: resampling the
    same rounds for both keeps the ratio's interval narrow; unpaired resampling would not."""
    rng = np.random.default_rng(3)
    spells = rng.choice([1.0, 1.8], 30)
    r = {"a": timings(rng, 2.0, 30, noise=0.01, spells=spells), "b": timings(rng, 1.0, 30, noise=0.01, spells=spells)}
    boot = resampled_p50(r)
    paired = ratio_interval(boot["a"], boot["b"])
    unpaired = ratio_interval(boot["a"], np.random.default_rng(4).permutation(boot["b"]))
    assert paired["high"] - paired["low"] < 0.5 * (unpaired["high"] - unpaired["low"])


def test_rounds_must_match():
    with pytest.raises(ValueError, match="same, non-zero number of rounds"):
        resampled_p50({"a": [np.ones(3)] * 4, "b": [np.ones(3)] * 5})


def test_the_ci_budget_key_fails_only_when_confidently_over():
    def results(low, high, point):
        ci = {"b": {"1": {"low": low, "high": high, "level": 0.95, "resamples": 2000}}}
        return {"a": {"p50_ratio_to": {"b": {"1": point}}, "p50_ratio_ci": ci}, "b": {}}

    budget = {"a": {"max_p50_ratio_ci": {"b": 1.25}}}
    assert check(budget, results(1.20, 1.31, 1.26)) == []  # over on the point, not confidently
    [v] = check(budget, results(1.27, 1.35, 1.30))
    assert v.metric == "p50 ratio to b (batch 1), low end of its 95% interval" and v.measured == 1.27
    assert "95% interval 1.27-1.35" in str(v)
    [v] = check({"a": {"max_p50_ratio": {"b": 1.25}}}, results(1.20, 1.31, 1.26))  # the point key
    assert v.measured == 1.26 and "95% interval 1.2-1.31" in str(v)


def test_an_interval_between_processes_covers_what_a_rerun_changes():
    """A process-wide effect (where the allocator put the weights: one ratio for the whole
    process) is invisible to a bootstrap over one process's rounds, which then misses the true
    ratio far more often than 5%; the t interval over 8 processes' ratios covers it about 95%."""
    rng = np.random.default_rng(5)
    boot_hits = process_hits = 0
    for _ in range(100):
        effects = np.exp(0.04 * rng.standard_normal(8))  # each process's own offset of the ratio
        ratios = []
        for effect in effects:
            r = {"a": timings(rng, 1.3 * effect, 10, noise=0.05), "b": timings(rng, 1.0, 10, noise=0.05)}
            ratios.append(np.median(np.concatenate(r["a"])) / np.median(np.concatenate(r["b"])))
        ci = between_processes(np.array(ratios))
        process_hits += ci["low"] <= 1.3 <= ci["high"]
        one = ratio_interval(*resampled_p50(r, resamples=300, seed=int(rng.integers(1 << 30))).values())
        boot_hits += one["low"] <= 1.3 <= one["high"]  # the last process alone
    assert 0.88 <= process_hits / 100 <= 1.0 and ci["processes"] == 8 and ci["method"] == "t over processes"
    assert boot_hits / 100 < 0.75


def test_a_ratio_and_its_inverse_get_the_same_interval_between_processes():
    ratios = np.array([1.10, 1.17, 1.13, 1.12])
    ci, inverse = between_processes(ratios), between_processes(1 / ratios)
    assert ci["low"] == pytest.approx(1 / inverse["high"]) and ci["high"] == pytest.approx(1 / inverse["low"])
    assert ci["low"] < 1.10 and ci["high"] > 1.17  # 4 processes: t(3) = 3.18 standard errors each side
    with pytest.raises(ValueError, match="at least 2 processes"):
        between_processes(np.array([1.1]))
