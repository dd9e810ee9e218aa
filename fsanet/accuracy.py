"""Per-angle mean absolute error against labels, and drift between two models' angles.

A face whose angles are not finite (a broken model) makes the means NaN; bench counts such
faces (`runtimes.estimator.non_finite_faces`) so that the budget turns the NaN into a
violation that says why instead of a comparison that is silently false.
"""

from __future__ import annotations

import numpy as np

from fsanet.errors import DataError

ANGLES = ("yaw", "pitch", "roll")


def _pair(pred, target) -> tuple[np.ndarray, np.ndarray]:
    try:
        p, t = np.asarray(pred, dtype=np.float64), np.asarray(target, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError("angles must be numbers, (N, 3) yaw, pitch, roll") from None
    if p.shape != t.shape or p.ndim != 2 or p.shape[1] != 3:
        raise DataError(f"angles must both be (N, 3) yaw, pitch, roll; got {p.shape} and {t.shape}")
    if len(p) == 0:
        raise DataError("no faces to compare")
    return p, t


def mae(pred, target) -> dict[str, float]:
    """MAE per angle in degrees and their mean, as the paper reports it."""
    p, t = _pair(pred, target)
    per = np.abs(p - t).mean(0)
    out = {a: float(v) for a, v in zip(ANGLES, per, strict=True)}
    out["mean"] = float(per.mean())
    return out


def drift(pred, reference) -> dict[str, float]:
    """How far one model's angles are from a reference model's: mean and max abs difference."""
    p, r = _pair(pred, reference)
    d = np.abs(p - r)
    per = {a: float(v) for a, v in zip(ANGLES, d.mean(0), strict=True)}
    return {"mean": float(d.mean()), "max": float(d.max()), **per}  # one NaN face: NaN mean and max
