"""Checkpoint -> TFLite FP32 with LiteRT-Torch (PyTorch to TFLite directly, no TensorFlow),
verified against PyTorch like the ONNX export. The graph keeps the NCHW float32 input of the
PyTorch model (batch 1, as LiteRT exports it); the runtime runs larger batches face by face."""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import numpy as np
from fsanet.export.onnx import TOLERANCE_DEG, default_verification_crops

from fsanet.errors import BackendUnavailable


def _convert(model, path: Path) -> None:
    import torch

    try:
        import litert_torch
    except ImportError as e:
        raise BackendUnavailable("litert-torch", "tflite-export") from e
    from fsanet.scoped import logger_level

    with logger_level("litert_torch"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        litert_torch.convert(model, (torch.rand(1, 3, 64, 64) * 255,)).export(str(path))


def export_tflite(checkpoint_path, output, verify: np.ndarray | None = None, verify_name: str = "") -> dict:
    from importlib.metadata import version

    from fsanet.export import artifact

    from fsanet import checkpoint
    from fsanet.evaluate import predict_torch

    checkpoint_path, output = Path(checkpoint_path), Path(output)
    payload = checkpoint.load_payload(checkpoint_path)
    model = checkpoint.load(checkpoint_path)
    if hasattr(model, "share_image_convolution"):
        # LiteRT runs the fusion's shared grouped image convolution + strided slices ~18%
        # slower than one depthwise convolution per stream (measured; ONNX Runtime the reverse)
        model.share_image_convolution = False
    if verify is None:
        verify, verify_name = default_verification_crops()
    tools = {n: version(n) for n in ("torch", "litert-torch", "ai-edge-litert", "fsanet-edge")}
    manifest = artifact.float_manifest(checkpoint_path, payload, "tflite", tools)
    manifest["input"]["shape"] = [1, 3, 64, 64]
    with tempfile.TemporaryDirectory() as tmp:
        candidate = Path(tmp) / "model.tflite"
        _convert(model, candidate)
        artifact.verify(
            candidate, manifest, predict_torch(model, verify), verify, "tflite",
            against="pytorch", faces=verify_name, max_abs_diff=TOLERANCE_DEG,
        )  # fmt: skip
        return artifact.write_copy(output, candidate, manifest)
