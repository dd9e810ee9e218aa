"""Option types for argparse that say the allowed range: a bad value is a usage error (exit 2)
naming the option, before any work starts."""

from __future__ import annotations

import argparse
import math

from fsanet.limits import MAX_BATCH, MAX_FACES


def integer(low: int, high: int | None = None):
    """An int in [low, high]."""
    bounds = f">= {low}" if high is None else f"from {low} to {high:,}"

    def parse(text: str) -> int:
        shown = text if len(text) <= 40 else f"{text[:20]}...({len(text)} characters)"
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer {bounds}, got {shown!r}") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be an integer {bounds}, got {shown}")
        return value

    parse.__name__ = "integer"
    return parse


def count(text: str) -> int:
    """A number of faces: 1 to fsanet.limits.MAX_FACES."""
    return integer(1, MAX_FACES)(text)


def batch(text: str) -> int:
    """A batch size: 1 to fsanet.limits.MAX_BATCH."""
    return integer(1, MAX_BATCH)(text)


def positive_float(text: str) -> float:
    """A finite float > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {text}")
    return value


def integer_list(low: int = 1, high: int | None = None):
    """'1,32' -> (1, 32): a comma-separated list of ints in [low, high], at least one."""
    one = integer(low, high)

    def parse(text: str) -> tuple[int, ...]:
        parts = [p.strip() for p in text.split(",")]
        if not text.strip() or any(not p for p in parts):
            raise argparse.ArgumentTypeError(f"must be comma-separated integers >= {low}, like 1,32; got {text!r}")
        values = tuple(one(p) for p in parts)
        if len(set(values)) != len(values):
            raise argparse.ArgumentTypeError(f"lists a value twice: {text!r}")
        return values

    parse.__name__ = "integer list"
    return parse


def float_pair(text: str) -> tuple[float, float]:
    """'0.8,1.2' -> (0.8, 1.2): two positive finite numbers, the first not above the second."""
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be two numbers like 0.8,1.2; got {text!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo <= 0 or lo > hi:
        raise argparse.ArgumentTypeError(f"must be two positive numbers, low <= high; got {text!r}")
    return lo, hi


def milestones(text: str) -> tuple[int, ...]:
    """'30,60' -> (30, 60); '' -> () (no learning-rate steps)."""
    if not text.strip():
        return ()
    return integer_list(1)(text)
