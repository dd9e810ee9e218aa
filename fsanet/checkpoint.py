"""Checkpoints: a state dict plus the configuration, loadable without executing code.

Saved with `torch.save` as plain dicts, tensors and strings, loaded with
`torch.load(weights_only=True)`, which refuses anything that would run code.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import torch

from fsanet import model as M
from fsanet.errors import DataError, WeightsError
from fsanet.files import atomic_write

FORMAT = "fsanet-checkpoint"
VERSION = 1


def members_of(model: torch.nn.Module) -> list[torch.nn.Module]:
    return list(model.members) if isinstance(model, M.Fusion) else [model]


def save(model: torch.nn.Module, path: str | Path, sources: list[dict] | None = None) -> Path:
    """Write `model` (a single network or a `Fusion`) with its configuration."""
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "kind": "fusion" if isinstance(model, M.Fusion) else "model",
        "configs": [m.config.to_dict() for m in members_of(model)],
        "sources": sources or [],
        "state_dict": {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
    }
    return atomic_write(path, lambda tmp: _save(payload, tmp))


def _save(payload: dict, tmp: str) -> None:
    # through a file object: torch names the archive's folder after a path it is given (here a
    # random temporary name), so the same model would give different bytes on every save
    with open(tmp, "wb") as f:
        torch.save(payload, f)


def read_torch_file(path: str | Path):
    """What a torch file holds, loaded safely (`weights_only`: no stored code runs)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such checkpoint file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:  # torch's text advises weights_only=False: never repeat that
        found = re.search(r"GLOBAL ([\w.]+)", str(e))
        what = f" ({found.group(1)})" if found else ""
        raise WeightsError(
            f"{path}: refused: it stores Python objects{what} that only run as code, and fsanet never runs "
            "code from a model file; write checkpoints with fsanet (import-keras, train, fuse)"
        ) from None
    except Exception as e:  # torch raises several types for corrupt or truncated files
        first = (str(e).strip().splitlines() or [""])[0]
        why = type(e).__name__ if "weights_only" in first or not first else first
        raise WeightsError(f"{path}: not a readable fsanet checkpoint (corrupt or not a torch file: {why})") from None


def load_payload(path: str | Path) -> dict:
    payload = read_torch_file(path)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise WeightsError(f"{path}: not an fsanet checkpoint (missing 'format': '{FORMAT}')")
    if payload.get("version") != VERSION:
        raise WeightsError(f"{path}: checkpoint version {payload.get('version')} is not {VERSION}")
    return payload


def load(path: str | Path) -> torch.nn.Module:
    """The model stored in a checkpoint, in eval mode."""
    payload = load_payload(path)
    try:
        members = [M.build(M.config_from_dict(c)) for c in payload["configs"]]
        model = M.Fusion(members) if payload["kind"] == "fusion" else members[0]
        model.load_state_dict(payload["state_dict"], strict=True)
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise WeightsError(f"{path}: checkpoint does not match its configuration ({e})") from e
    return model.eval()
