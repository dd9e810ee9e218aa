"""A short run from scratch on synthetic heads lowers the validation MAE clearly."""

from __future__ import annotations

import pytest
from fsanet.train import TrainConfig, train


@pytest.mark.integration  # slow (~20 s here): trains 4 short epochs
def test_short_synthetic_run_lowers_validation_mae(tmp_path):
    # 60 steps of 16 (lr 2e-3): measured 21.9 -> 14.0 and 21.9 -> 17.7 degrees mean MAE on these 48 heads
    # (the run is not bit-reproducible across machines and thread counts, hence the margin)
    cfg = TrainConfig(
        data="synthetic:2000:0", val=("synthetic:48:1",), output=str(tmp_path), epochs=4, batch=16, limit=240,
        lr=2e-3, milestones=(), workers=0,
    )  # fmt: skip
    history = train(cfg)["history"]
    mae = [h["synthetic:48:1_mean"] for h in history]
    assert mae[-1] < 0.9 * mae[0], mae
    assert history[-1]["train_loss"] < 0.9 * history[0]["train_loss"]
