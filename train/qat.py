"""Quantization-aware fine-tuning (QAT) with NNCF's PyTorch backend.

`quantize_for_training` inserts NNCF fake quantizers into a float FSA-Net, calibrated on a
calibration set: convolutions get int8 weights (per channel) and int8 inputs (per tensor, as
ONNX Runtime's QLinearConv needs); the op types the ONNX post-training path keeps in float
(matmuls, routing softmax, divisions, square roots, reductions, elementwise arithmetic,
average pooling) stay float here too. `fsanet train --qat` then fine-tunes the quantized model
with the ordinary training loop, so weights, biases and quantizer scales adapt to int8.

The result is a QAT checkpoint, loadable without running stored code: NNCF's own description
of where its quantizers sit (`nncf.torch.get_config`, stored as JSON text), the state dict of
the quantized model, the float weights it started from, and the calibration set's manifest.
`load_qat` rebuilds it with `nncf.torch.load_from_config`, which only imports NNCF's own
quantizer classes. `fsanet export` turns it into an INT8 Q/DQ ONNX (fsanet.export.qat).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from fsanet import checkpoint
from fsanet import model as M
from fsanet.errors import DataError, WeightsError
from fsanet.files import atomic_write
from fsanet.scoped import logger_level

FORMAT = "fsanet-qat-checkpoint"
VERSION = 1
# NNCF's names (its PyTorch graph) for the op types export.quantize.FLOAT_OPS keeps in float
FLOAT_TYPES = (
    "matmul", "linear", "addmm", "bmm", "softmax", "div", "sqrt", "rsqrt", "sum", "mean", "mul", "add", "sub",
    "avg_pool2d",
)  # fmt: skip
CALIB_BATCH = 16


def quantize_for_training(model: torch.nn.Module, calib) -> torch.nn.Module:
    """`model` (float, single network) with NNCF fake quantizers, ranges from `calib`'s faces.

    No bias correction: the fine-tuning that follows adapts the biases itself.
    """
    import nncf
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, QuantizationParameters

    # NNCF compiles its C++ fake-quantize kernels at the first training step; on a 2-core machine
    # that takes longer than its default 60 s limit, and a build cut short leaves a lock file that
    # fails every later run. A user's own setting wins.
    os.environ.setdefault("NNCF_EXTENSION_LOAD_TIMEOUT", "900")
    if isinstance(model, M.Fusion):
        raise DataError("QAT takes one network; fine-tune each fusion member, then `fsanet fuse` is float only")
    batches = [torch.from_numpy(b) for b in calib.batches(batch_size=CALIB_BATCH)]
    advanced = AdvancedQuantizationParameters(
        disable_bias_correction=True,
        activations_quantization_params=QuantizationParameters(per_channel=False),
    )
    with logger_level("nncf"):  # NNCF lists every ignored node otherwise
        return nncf.quantize(
            model.cpu().eval(),
            nncf.Dataset(batches),
            subset_size=len(calib),
            target_device=nncf.TargetDevice.CPU,
            ignored_scope=nncf.IgnoredScope(types=list(FLOAT_TYPES), validate=False),
            advanced_parameters=advanced,
        )


def quantizer_count(model: torch.nn.Module) -> int:
    from nncf.torch.function_hook.wrapper import get_hook_storage

    return sum(1 for _ in get_hook_storage(model).named_hooks())


def save_qat(model: torch.nn.Module, path: str | Path, float_payload: dict, calib: dict, sources: list[dict]) -> Path:
    """Write a QAT checkpoint: NNCF config (JSON text), quantized state, the float start point."""
    import nncf

    payload = {
        "format": FORMAT,
        "version": VERSION,
        "kind": "model",
        "configs": [model.config.to_dict()],
        "sources": sources,
        "nncf_config": json.dumps(nncf.torch.get_config(model)),
        "nncf_version": nncf.__version__,
        "float_types": list(FLOAT_TYPES),
        "calibration": calib,
        "state_dict": {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
        "float_state_dict": float_payload["state_dict"],
        "float_sources": float_payload.get("sources", []),
    }
    return atomic_write(path, lambda tmp: torch.save(payload, tmp))


def read_payload(path: str | Path) -> dict | None:
    """The stored dict of a QAT checkpoint; None for any other torch file (e.g. a float checkpoint)."""
    from fsanet.checkpoint import read_torch_file

    path = Path(path)
    payload = read_torch_file(path)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        return None
    if payload.get("version") != VERSION:
        raise WeightsError(f"{path}: QAT checkpoint version {payload.get('version')} is not {VERSION}")
    return payload


def _float_model(payload: dict, path: Path) -> torch.nn.Module:
    try:
        model = M.build(M.config_from_dict(payload["configs"][0]))
        model.load_state_dict(payload["float_state_dict"], strict=True)
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise WeightsError(f"{path}: float weights do not match the configuration ({e})") from e
    return model.eval()


def load_qat(path: str | Path) -> tuple[torch.nn.Module, dict]:
    """(the fake-quantized model in eval mode, the checkpoint payload)."""
    import nncf

    path = Path(path)
    payload = read_payload(path)
    if payload is None:
        raise WeightsError(f"{path}: not a QAT checkpoint (missing 'format': '{FORMAT}'); make one with --qat")
    model = _float_model(payload, path)
    try:
        with logger_level("nncf"):
            model = nncf.torch.load_from_config(model, json.loads(payload["nncf_config"]))
        model.load_state_dict(payload["state_dict"], strict=True)
    except (KeyError, TypeError, ValueError, RuntimeError, nncf.InternalError) as e:
        raise WeightsError(f"{path}: NNCF cannot rebuild the quantized model ({type(e).__name__}: {e})") from e
    return model.eval(), payload


def write_float_checkpoint(payload: dict, path: str | Path) -> Path:
    """The float model the QAT started from, as an ordinary fsanet checkpoint (the INT8 file's reference)."""
    model = _float_model(payload, Path(path))
    return checkpoint.save(model, path, payload.get("float_sources") or None)
