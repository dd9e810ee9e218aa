import numpy as np
import pytest

from fsanet.accuracy import drift, mae


def test_mae_per_angle_and_mean():
    pred = np.array([[10.0, 0.0, -5.0], [0.0, 2.0, 5.0]])
    true = np.array([[8.0, 1.0, -5.0], [4.0, 0.0, 2.0]])
    m = mae(pred, true)
    assert m == pytest.approx({"yaw": 3.0, "pitch": 1.5, "roll": 1.5, "mean": 2.0})


def test_drift_mean_and_max():
    d = drift(np.array([[1.0, 1.0, 1.0]]), np.array([[1.5, 1.0, -1.0]]))
    assert d["max"] == pytest.approx(2.0)
    assert d["mean"] == pytest.approx(2.5 / 3)


def test_shapes_must_agree():
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        mae(np.zeros((2, 3)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="no faces"):
        mae(np.zeros((0, 3)), np.zeros((0, 3)))
