"""Hot and in-loop rounds spread evenly through a phase, so both states sample the same minutes."""

from __future__ import annotations

import pytest
from fsanet.benchmarks.bench import state_schedule


@pytest.mark.parametrize(("hot", "loop"), [(20, 100), (120, 600), (7, 3), (1, 1), (2, 50)])
def test_every_round_is_scheduled_once_and_spread_evenly(hot, loop):
    order = state_schedule(hot, loop)
    assert order.count("hot") == hot and order.count("loop") == loop
    # in every stretch of the phase, each state's share of rounds stays near its overall share
    for start in range(0, len(order), max(len(order) // 5, 1)):
        window = order[start : start + max(len(order) // 5, 1)]
        expected = len(window) * hot / (hot + loop)
        assert abs(window.count("hot") - expected) <= 1.5


def test_hot_rounds_are_not_all_at_the_start():
    order = state_schedule(20, 100)
    first_hot, last_hot = order.index("hot"), len(order) - 1 - order[::-1].index("hot")
    assert first_hot < 6 and last_hot > len(order) - 7
