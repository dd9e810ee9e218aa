"""TFLite backend: LiteRT (`ai_edge_litert`), else `tflite_runtime` (the wheel 32-bit Arm boards
have), else TensorFlow's `tf.lite`; threads, XNNPACK (LiteRT's default CPU delegate), and
quantized input/output tensors (scale and zero point from the model)."""

from __future__ import annotations

import numpy as np
from fsanet.runtimes.base import Runtime, TensorSpec

from fsanet.errors import BackendUnavailable, DataError


def interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter
    except ImportError:
        pass
    try:
        from tflite_runtime.interpreter import Interpreter

        return Interpreter
    except ImportError:
        pass
    try:
        import tensorflow as tf

        return tf.lite.Interpreter
    except ImportError as e:
        raise BackendUnavailable("a TFLite interpreter (ai-edge-litert or tflite-runtime)", "tflite") from e


class TFLiteRuntime(Runtime):
    backend = "tflite"

    def __init__(self, path, input_format=None, manifest=None, threads: int | None = None):
        self.threads = threads
        if manifest is None:
            from fsanet.manifest import read_sidecar

            manifest = read_sidecar(path)
        super().__init__(path, input_format, manifest)

    def _load(self) -> None:
        cls = interpreter_class()
        try:
            self.interpreter = cls(model_path=str(self.path), num_threads=self.threads or None)
            self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            raise DataError(f"{self.path}: the TFLite interpreter cannot load it ({e})") from e
        self._in = self.interpreter.get_input_details()[0]
        self._out = self.interpreter.get_output_details()[0]

    @property
    def inputs(self) -> list[TensorSpec]:
        return [TensorSpec(self._in["name"], tuple(int(d) for d in self._in["shape"]), str(self._in["dtype"]))]

    @property
    def outputs(self) -> list[TensorSpec]:
        return [TensorSpec(self._out["name"], tuple(int(d) for d in self._out["shape"]), str(self._out["dtype"]))]

    def _run(self, x: np.ndarray) -> np.ndarray:
        dtype = self._in["dtype"]
        if dtype != np.float32:  # a fully quantized input: float -> integer with the model's own scale
            scale, zero = self._in["quantization"]
            info = np.iinfo(dtype)
            x = np.clip(np.round(x / scale + zero), info.min, info.max).astype(dtype)
        self.interpreter.set_tensor(self._in["index"], x)
        self.interpreter.invoke()
        y = self.interpreter.get_tensor(self._out["index"])
        if self._out["dtype"] != np.float32:
            scale, zero = self._out["quantization"]
            y = (y.astype(np.float32) - zero) * scale
        return np.array(y, dtype=np.float32)

    def executes_on(self) -> str:
        """Whether the default XNNPACK delegate took the graph: a delegated partition shows up as
        a DELEGATE node in the interpreter's execution plan (`_get_ops_details`, the op listing
        LiteRT, tflite-runtime and tf.lite share)."""
        try:
            partitions = sum(op["op_name"] == "DELEGATE" for op in self.interpreter._get_ops_details())
        except AttributeError:  # an interpreter without the listing: say so, do not guess
            return f"{type(self.interpreter).__module__} (delegates not reported)"
        name = type(self.interpreter).__module__.split(".")[0]
        if not partitions:
            return f"{name}, built-in kernels (no delegate)"
        return f"{name}, XNNPACK delegate ({partitions} partition{'s' * (partitions > 1)})"

    def close(self) -> None:
        self.interpreter = None
        super().close()
