"""`bench --p50-within`: a phase stops once every p50 is known to the asked share, or at --runs."""

from __future__ import annotations

import numpy as np
import pytest
from fsanet.benchmarks.bench import MIN_BLOCKS, BenchConfig, interleaved_latency, p50s_within

from fsanet.errors import DataError


def rounds_of(rng, ms: float, rounds: int, noise: float) -> list[np.ndarray]:
    return [ms * (1 + noise * np.abs(rng.standard_normal(10))) for _ in range(rounds)]


def test_the_rule_asks_every_artifact_in_every_state():
    rng = np.random.default_rng(0)
    steady = {"a": rounds_of(rng, 1.0, 20, 0.01), "b": rounds_of(rng, 3.0, 20, 0.01)}
    noisy = {"a": rounds_of(rng, 1.0, 20, 0.01), "b": rounds_of(rng, 3.0, 20, 1.0)}
    assert p50s_within({"hot": steady, "loop": steady}, 0.03)
    assert not p50s_within({"hot": steady, "loop": noisy}, 0.03)  # b in the loop is not known to 3%
    assert p50s_within({"hot": steady, "loop": noisy}, 0.9)


class Steps:
    n = 0

    def update(self, k):
        self.n += k


def work():
    np.linalg.svd(np.ones((24, 24)) + np.eye(24))


def test_a_loose_share_stops_after_the_first_blocks_and_the_bar_still_ends():
    cfg = BenchConfig(runs=400, hot_round_runs=20, round_runs=5, warmup=1, p50_within=0.9, sweep_bytes=1 << 16)
    steps = Steps()
    rounds, _ = interleaved_latency({"a": work, "b": work}, cfg, progress=steps)
    loop_per_hot = round(cfg.rounds / cfg.hot_rounds)
    assert len(rounds["hot"]["a"]) == MIN_BLOCKS and len(rounds["loop"]["b"]) == MIN_BLOCKS * loop_per_hot
    assert steps.n == 2 * cfg.hot_rounds * (1 + loop_per_hot)  # every round of the cap, counted


def test_a_share_no_run_reaches_times_up_to_the_cap():
    cfg = BenchConfig(runs=100, hot_round_runs=20, round_runs=5, warmup=1, p50_within=1e-9, sweep_bytes=1 << 16)
    rounds, _ = interleaved_latency({"a": work}, cfg)
    assert sum(map(len, rounds["hot"]["a"])) == 100 and sum(map(len, rounds["loop"]["a"])) == 100


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"p50_within": 1.5}, "between 0 and 1"), ({"p50_within": 0.03, "processes": 3}, "fixed --runs")],
)
def test_bad_settings_are_refused(kwargs, message):
    with pytest.raises(DataError, match=message):
        BenchConfig(**kwargs)
