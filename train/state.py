"""Resume state: everything a run needs to continue as if it had never stopped.

Written atomically after each epoch as plain tensors, numbers and strings, and read back with
`torch.load(weights_only=True)` like the checkpoints (no stored code ever runs).
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from fsanet.errors import DataError, WeightsError
from fsanet.files import atomic_write

FORMAT = "fsanet-train-state"
VERSION = 1


def rng_states() -> dict:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    states = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict) -> None:
    torch.set_rng_state(states["torch"])
    random.setstate(_tuples(states["python"]))
    name, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def _tuples(x):
    return tuple(_tuples(v) for v in x) if isinstance(x, (list, tuple)) else x


def save_state(path: Path, **parts) -> Path:
    payload = {"format": FORMAT, "version": VERSION, "rng": rng_states(), **parts}
    return atomic_write(path, lambda tmp: torch.save(payload, tmp))


def load_state(path: Path) -> dict:
    if not path.is_file():
        raise DataError(f"{path}: no resume state here; start without --resume, or point -o at the interrupted run")
    from fsanet.checkpoint import read_torch_file

    payload = read_torch_file(path)  # weights_only; refuses stored code without advising otherwise
    if not isinstance(payload, dict) or payload.get("format") != FORMAT or payload.get("version") != VERSION:
        raise WeightsError(f"{path}: not an fsanet training state (format {FORMAT} v{VERSION})")
    return payload
