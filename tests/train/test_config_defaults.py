"""The training recipe's defaults live in TrainConfig, so the Python API and the CLI agree."""

from __future__ import annotations

import pytest
from fsanet.train.config import PAPER_LR, QAT_LR, TrainConfig

from fsanet.cli import build_parser
from fsanet.errors import DataError


def test_qat_gets_the_qat_learning_rate_from_python():
    cfg = TrainConfig(data="synthetic", output="run", qat=True, init="m.pt", calib="c.npz")
    assert cfg.lr == QAT_LR == 1e-5


def test_plain_training_gets_the_papers_rate():
    assert TrainConfig(data="synthetic", output="run").lr == PAPER_LR == 1e-3


def test_an_explicit_rate_wins():
    assert TrainConfig(data="synthetic", output="run", qat=True, init="m.pt", calib="c.npz", lr=3e-4).lr == 3e-4


@pytest.mark.parametrize("lr", [0.0, -1e-3, float("nan")])
def test_a_rate_that_is_not_positive_is_refused(lr):
    with pytest.raises(DataError, match="learning rate"):
        TrainConfig(data="synthetic", output="run", lr=lr)


def test_the_cli_leaves_the_rate_to_the_config():
    args = build_parser().parse_args(["train", "--data", "synthetic", "--qat", "-o", "run"])
    assert args.lr is None  # TrainConfig decides, as for a Python caller
