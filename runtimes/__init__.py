"""One inference API over every backend: `open(path)` picks the backend from the file.

Imports no heavy library itself: each backend imports its own (onnxruntime, torch, ...) when
a file of its kind is opened, and says which extra to install when it is missing.
"""

from __future__ import annotations

import os
from pathlib import Path

from fsanet.runtimes.base import InputFormat, Runtime, TensorSpec

from fsanet.errors import DataError

__all__ = ["InputFormat", "Runtime", "TensorSpec", "model_file", "open", "partition_spec", "preload", "split_spec"]

BACKENDS = {".onnx": "onnxruntime", ".pt": "torch", ".tflite": "tflite", ".engine": "tensorrt", ".plan": "tensorrt"}
MAX_THREADS = 1024
# the options each backend takes; another backend refuses them unless they ask for its own
# behaviour anyway (the CPU), so that no option is dropped silently
OPTIONS = {
    "onnxruntime": {"provider", "denormals_as_zero", "profile_prefix", "spinning"},
    "torch": {"device"},
    "tensorrt": {"cuda_graph", "host_memory", "gpu_timing"},
}
CPU = {"provider": "cpu", "device": "cpu"}
NOT_ASKED = {"cuda_graph": False, "gpu_timing": False}  # the other backends' way anyway


def partition_spec(model: str | Path) -> tuple[str, str | None]:
    """(file, format or None) of a model argument (the one place that splits it): the format
    follows the last '@' outside any folder name, and a file that exists as named has none
    (`at@dir/model.onnx`, `model@v2.onnx`)."""
    text = str(model)
    head, sep, tail = text.rpartition("@")
    if not sep or "/" in tail or os.sep in tail or os.path.exists(text):
        return text, None
    return head, tail


def model_file(model: str | Path) -> Path:
    """The file of a model argument, without its `@format`."""
    return Path(partition_spec(model)[0])


def split_spec(model: str | Path) -> tuple[str, InputFormat | None]:
    """'file.onnx@nhwc,bgr,raw' -> ('file.onnx', InputFormat(...)); no '@': no format given."""
    file, spec = partition_spec(model)
    return file, (InputFormat.parse(spec) if spec is not None else None)


def backend_of(path: str | Path) -> str:
    p = model_file(path)
    backend = BACKENDS.get(p.suffix.lower())
    if backend is None:
        raise DataError(f"{p}: no runtime for '{p.suffix}' files; supported: {', '.join(sorted(BACKENDS))}")
    return backend


def preload(path: str | Path) -> None:
    """Import the backend library a model file needs (memory measurements count it apart)."""
    backend = backend_of(path)
    if backend == "onnxruntime":
        from fsanet.runtimes.onnxruntime import import_ort

        import_ort()
    elif backend == "torch":
        import torch  # noqa: F401
    elif backend == "tflite":
        from fsanet.runtimes.tflite import interpreter_class

        interpreter_class()


def open(  # noqa: A001
    path: str | Path,
    input_format: InputFormat | None = None,
    threads: int | None = None,
    *,
    provider: str | None = None,
    device: str | None = None,
    denormals_as_zero: bool | None = None,
    profile_prefix: str | None = None,
    spinning: bool | None = None,
    cuda_graph: bool | None = None,
    host_memory: str | None = None,
    gpu_timing: bool | None = None,
) -> Runtime:
    """Load a model file with the backend its suffix calls for.

    `path` may carry an input format for foreign files without a manifest: `file.onnx@nhwc,bgr`.
    Options (None: the backend's default): ONNX Runtime takes `provider` ("cpu", "cuda",
    "tensorrt"), `denormals_as_zero`, `profile_prefix` (its per-operator profiler) and `spinning`
    (False: no busy-waiting threads, for instruction counts); PyTorch
    takes `device`. TensorRT engines (`.engine`, `.plan`) run on the GPU that built them and take
    `cuda_graph`, `host_memory` ("pinned", "mapped") and `gpu_timing` (fsanet.runtimes.tensorrt).
    """
    path, spec = split_spec(str(path))
    input_format = input_format or spec
    if threads is not None and (
        isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= MAX_THREADS
    ):
        raise DataError(
            f"threads must be an integer from 1 to {MAX_THREADS}, or None (the backend's default), got {threads!r}"
        )
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: no such model file")
    backend = backend_of(p)
    given = {
        "provider": provider,
        "device": device,
        "denormals_as_zero": denormals_as_zero,
        "profile_prefix": profile_prefix,
        "spinning": spinning,
        "cuda_graph": cuda_graph,
        "host_memory": host_memory,
        "gpu_timing": gpu_timing,
    }
    options = {k: v for k, v in given.items() if v is not None}
    for key in set(options) - OPTIONS.get(backend, set()):
        asks_nothing = key in NOT_ASKED and options[key] is NOT_ASKED[key]
        if key in ("denormals_as_zero", "spinning") or options[key] == CPU.get(key) or asks_nothing:
            del options[key]  # asks for what this backend does anyway
        else:
            raise DataError(f"{p.name}: option {key}={options[key]!r} does not apply to {backend} files")
    if backend == "onnxruntime":
        from fsanet.runtimes.onnxruntime import OnnxRuntime

        return OnnxRuntime(p, input_format, threads=threads, **options)
    if backend == "torch":
        from fsanet.runtimes.torch import TorchRuntime

        return TorchRuntime(p, input_format, threads=threads, **options)
    if backend == "tflite":
        from fsanet.runtimes.tflite import TFLiteRuntime

        return TFLiteRuntime(p, input_format, threads=threads)
    from fsanet.runtimes.tensorrt import TensorRTRuntime

    return TensorRTRuntime(p, input_format, threads=threads, **options)
