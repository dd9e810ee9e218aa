"""One inference API over every backend: `open(path)` picks the backend from the file.

Imports no heavy library itself: each backend imports its own (onnxruntime, torch, ...) when
a file of its kind is opened, and says which extra to install when it is missing.
"""

from __future__ import annotations

from pathlib import Path

from fsanet.runtimes.base import InputFormat, Runtime, TensorSpec

from fsanet.errors import DataError

__all__ = ["InputFormat", "Runtime", "TensorSpec", "open", "split_spec"]

BACKENDS = {".onnx": "onnxruntime", ".pt": "torch", ".tflite": "tflite", ".engine": "tensorrt", ".plan": "tensorrt"}


def split_spec(model: str) -> tuple[str, InputFormat | None]:
    """'file.onnx@nhwc,bgr,raw' -> ('file.onnx', InputFormat(...)); no '@': no format given."""
    path, sep, spec = str(model).partition("@")
    return path, (InputFormat.parse(spec) if sep else None)


def open(path: str | Path, input_format: InputFormat | None = None, threads: int | None = None, **options) -> Runtime:  # noqa: A001
    """Load a model file with the backend its suffix calls for.

    `path` may carry an input format for foreign files without a manifest: `file.onnx@nhwc,bgr`.
    Options: `provider` ("cpu", "cuda", "tensorrt") for ONNX, `device` for PyTorch. TensorRT engines
    (`.engine`, `.plan`) run on the GPU that built them.
    """
    path, spec = split_spec(str(path))
    input_format = input_format or spec
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= 1024):
        raise DataError(f"threads must be an integer from 1 to 1024, or None (the backend's default), got {threads!r}")
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: no such model file")
    backend = BACKENDS.get(p.suffix.lower())
    if backend == "onnxruntime":
        from fsanet.runtimes.onnxruntime import OnnxRuntime

        return OnnxRuntime(p, input_format, threads=threads, **options)
    if backend == "torch":
        from fsanet.runtimes.torch import TorchRuntime

        return TorchRuntime(p, input_format, threads=threads, **options)
    if backend == "tflite":
        from fsanet.runtimes.tflite import TFLiteRuntime

        return TFLiteRuntime(p, input_format, threads=threads, **options)
    if backend == "tensorrt":
        from fsanet.runtimes.tensorrt import TensorRTRuntime

        return TensorRTRuntime(p, input_format, threads=threads, **options)
    raise DataError(f"{p}: no runtime for '{p.suffix}' files; supported: {', '.join(sorted(BACKENDS))}")
