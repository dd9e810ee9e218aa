"""TensorRT backend: a serialized engine (`.engine`/`.plan`) on the GPU, buffers and stream via
cuda-python (no torch, no pycuda). TensorRT >= 8.5 runs through named I/O tensors
(set_input_shape / set_tensor_address / execute_async_v3); older 8.x through bindings and
execute_async_v2. An engine runs only with the TensorRT version (and GPU) that built it: the
sidecar manifest says which, and a mismatch is refused before TensorRT is asked.
"""

from __future__ import annotations

import numpy as np
from fsanet.runtimes.base import Runtime, TensorSpec

from fsanet.errors import BackendUnavailable, DataError

INSTALL_HINT = (
    "on a Jetson it comes with JetPack (sudo apt install python3-libnvinfer; a virtualenv needs "
    "--system-site-packages); on x86 Linux: pip install tensorrt"
)


class TensorRTUnavailable(BackendUnavailable):
    """TensorRT's Python bindings are missing: they come from NVIDIA, not from an fsanet extra."""

    def __init__(self, detail: str = ""):
        super().__init__("tensorrt", "tensorrt")
        self.args = (f"TensorRT's Python module 'tensorrt' is not installed{detail}; {INSTALL_HINT}",)


def import_tensorrt():
    try:
        import tensorrt
    except ImportError as e:  # the module itself, or a library it loads (libnvinfer.so.N)
        raise TensorRTUnavailable("" if e.name == "tensorrt" else f" or cannot load ({e})") from e
    return tensorrt


def import_cudart():
    """cuda-python's runtime API: `cuda.bindings.runtime` (cuda-python >= 12.6), else `cuda.cudart`."""
    try:
        from cuda.bindings import runtime
    except ImportError:
        try:
            from cuda import cudart as runtime
        except ImportError as e:
            raise BackendUnavailable("cuda-python (GPU buffers for TensorRT)", "tensorrt") from e
    return runtime


def trt_major(version: str) -> int:
    return int(str(version).split(".")[0])


class Cuda:
    """One CUDA stream and the device buffers allocated on it, freed by close()."""

    def __init__(self):
        self.rt = import_cudart()
        self._buffers: list[int] = []
        self.stream = self.call(self.rt.cudaStreamCreate(), "cudaStreamCreate")

    def call(self, result, what: str):
        err, *rest = result if isinstance(result, tuple) else (result,)
        if int(err) != 0:
            name = self.rt.cudaGetErrorName(err)[1]
            name = name.decode() if isinstance(name, bytes) else str(name)
            if name in ("cudaErrorNoDevice", "cudaErrorInsufficientDriver"):
                raise BackendUnavailable(f"a CUDA GPU ({what}: {name})", "tensorrt")
            raise RuntimeError(f"CUDA {what} failed: {name}")
        return rest[0] if len(rest) == 1 else tuple(rest)

    def malloc(self, nbytes: int) -> int:
        ptr = int(self.call(self.rt.cudaMalloc(max(int(nbytes), 1)), "cudaMalloc"))
        self._buffers.append(ptr)
        return ptr

    def upload(self, ptr: int, host: np.ndarray) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self.call(self.rt.cudaMemcpyAsync(ptr, host.ctypes.data, host.nbytes, kind, self.stream), "copy to GPU")

    def download(self, host: np.ndarray, ptr: int) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self.call(self.rt.cudaMemcpyAsync(host.ctypes.data, ptr, host.nbytes, kind, self.stream), "copy to host")

    def sync(self) -> None:
        self.call(self.rt.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")

    def device(self) -> dict:
        index = self.call(self.rt.cudaGetDevice(), "cudaGetDevice")
        prop = self.call(self.rt.cudaGetDeviceProperties(index), "cudaGetDeviceProperties")
        name = prop.name.decode(errors="replace") if isinstance(prop.name, bytes) else str(prop.name)
        return {"name": name.rstrip("\0").strip(), "compute_capability": f"{prop.major}.{prop.minor}"}

    def close(self) -> None:
        for ptr in self._buffers:
            self.rt.cudaFree(ptr)
        self._buffers = []
        if self.stream is not None:
            self.rt.cudaStreamDestroy(self.stream)
            self.stream = None


class CapturingLogger:
    """A TensorRT ILogger that keeps every message (for the build log and for error messages)."""

    def __new__(cls, trt, min_severity=None):
        floor = int(min_severity if min_severity is not None else trt.ILogger.Severity.INFO)

        class _Logger(trt.ILogger):
            def __init__(self):
                trt.ILogger.__init__(self)  # pybind trampolines must be initialised explicitly
                self.messages: list[tuple[str, str]] = []

            def log(self, severity, msg):
                if int(severity) <= floor:
                    self.messages.append((getattr(severity, "name", str(severity)), msg))

            def errors(self) -> list[str]:
                return [m for s, m in self.messages if s in ("ERROR", "INTERNAL_ERROR")]

        return _Logger()


class _NamedIO:
    """TensorRT >= 8.5: tensors by name, enqueueV3."""

    def __init__(self, trt, engine, context):
        self.engine, self.context = engine, context
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        is_input = {n: engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names}
        self.inputs = [n for n in names if is_input[n]]
        self.outputs = [n for n in names if not is_input[n]]
        self.dtype = {n: np.dtype(trt.nptype(engine.get_tensor_dtype(n))) for n in names}

    def shape(self, name: str) -> tuple:
        return tuple(self.engine.get_tensor_shape(name))

    def profile(self, name: str) -> tuple:
        if self.shape(name)[0] >= 0:  # static batch: no profile needed
            return (self.shape(name),) * 3
        return tuple(tuple(s) for s in self.engine.get_tensor_profile_shape(name, 0))

    def run(self, shape: tuple, pointers: dict, stream) -> tuple:
        if not self.context.set_input_shape(self.inputs[0], shape):
            raise DataError(f"TensorRT refused input shape {shape}")
        for name, ptr in pointers.items():
            self.context.set_tensor_address(name, ptr)
        if not self.context.execute_async_v3(int(stream)):
            raise RuntimeError("TensorRT execute_async_v3 failed")
        return tuple(self.context.get_tensor_shape(self.outputs[0]))


class _Bindings:
    """TensorRT 8.0-8.4: binding indices, enqueueV2."""

    def __init__(self, trt, engine, context):
        self.engine, self.context = engine, context
        names = [engine.get_binding_name(i) for i in range(engine.num_bindings)]
        self.index = {n: i for i, n in enumerate(names)}
        self.inputs = [n for n in names if engine.binding_is_input(self.index[n])]
        self.outputs = [n for n in names if not engine.binding_is_input(self.index[n])]
        self.dtype = {n: np.dtype(trt.nptype(engine.get_binding_dtype(self.index[n]))) for n in names}

    def shape(self, name: str) -> tuple:
        return tuple(self.engine.get_binding_shape(self.index[name]))

    def profile(self, name: str) -> tuple:
        if self.shape(name)[0] >= 0:
            return (self.shape(name),) * 3
        return tuple(tuple(s) for s in self.engine.get_profile_shape(0, self.index[name]))

    def run(self, shape: tuple, pointers: dict, stream) -> tuple:
        if not self.context.set_binding_shape(self.index[self.inputs[0]], shape):
            raise DataError(f"TensorRT refused input shape {shape}")
        bindings = [0] * len(self.index)
        for name, ptr in pointers.items():
            bindings[self.index[name]] = ptr
        if not self.context.execute_async_v2(bindings, int(stream)):
            raise RuntimeError("TensorRT execute_async_v2 failed")
        return tuple(self.context.get_binding_shape(self.index[self.outputs[0]]))


def check_engine_version(path, manifest: dict | None, installed: str) -> None:
    """Refuse an engine whose manifest names another TensorRT version, before deserializing it."""
    built = ((manifest or {}).get("tensorrt") or {}).get("version")
    if built and built != installed:
        gpu = ((manifest or {}).get("gpu") or {}).get("name", "its GPU")
        raise DataError(
            f"{path}: built by TensorRT {built} on {gpu}, but TensorRT {installed} is installed; an engine runs "
            "only with the TensorRT version that built it: rebuild it here (fsanet export --to tensorrt-...)"
        )


class TensorRTRuntime(Runtime):
    backend = "tensorrt"

    def __init__(self, path, input_format=None, manifest=None, threads: int | None = None):
        del threads  # the GPU runs the engine; CPU threads do not apply
        self._trt = import_tensorrt()
        if manifest is None:
            from fsanet.manifest import read_sidecar

            manifest = read_sidecar(path)  # refuses an engine changed after it was built
        check_engine_version(path, manifest, self._trt.__version__)
        self._cuda = None
        super().__init__(path, input_format, manifest)

    def _load(self) -> None:
        trt = self._trt
        self._logger = CapturingLogger(trt, trt.ILogger.Severity.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self.engine = self._runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self.engine is None:
            built = ((self.manifest or {}).get("tensorrt") or {}).get("version", "an unknown version")
            raise DataError(
                f"{self.path}: TensorRT {trt.__version__} cannot deserialize it (built by TensorRT {built}; "
                f"an engine runs only with the TensorRT version and GPU that built it): "
                + ("; ".join(self._logger.errors()) or "no message from TensorRT")
            )
        self.context = self.engine.create_execution_context()
        named = hasattr(self.engine, "num_io_tensors") and hasattr(self.context, "execute_async_v3")
        self._io = (_NamedIO if named else _Bindings)(trt, self.engine, self.context)
        if len(self._io.inputs) != 1 or len(self._io.outputs) != 1:
            raise DataError(f"{self.path}: expected one input and one output, got {self._io.inputs + self._io.outputs}")
        for name in self._io.inputs + self._io.outputs:
            if self._io.dtype[name] != np.float32:
                raise DataError(f"{self.path}: tensor '{name}' is {self._io.dtype[name]}; the runtime feeds float32")
        self._min, _, self._max = self._io.profile(self._io.inputs[0])
        self._allocate()

    def _allocate(self) -> None:
        out = self._io.shape(self._io.outputs[0])
        if len(out) != 2 or out[1] != 3:
            raise DataError(f"{self.path}: output '{self._io.outputs[0]}' has shape {out}; expected (batch, 3)")
        self._cuda = Cuda()
        batch = int(self._max[0])
        self._ptr = {
            self._io.inputs[0]: self._cuda.malloc(int(np.prod(self._max)) * 4),
            self._io.outputs[0]: self._cuda.malloc(batch * 3 * 4),
        }

    @property
    def inputs(self) -> list[TensorSpec]:
        return [TensorSpec(self._io.inputs[0], ("batch", *self._max[1:]), "float32")]

    @property
    def outputs(self) -> list[TensorSpec]:
        return [TensorSpec(self._io.outputs[0], ("batch", 3), "float32")]

    @property
    def fixed_batch(self) -> int | None:
        # the profile's max batch: base.infer splits larger batches into pieces of this size
        return int(self._max[0])

    def _run(self, x: np.ndarray) -> np.ndarray:
        if len(x) < self._min[0]:
            raise DataError(f"{self.path.name}: the engine's profile needs a batch of at least {self._min[0]}")
        x = np.ascontiguousarray(x, dtype=np.float32)
        self._cuda.upload(self._ptr[self._io.inputs[0]], x)
        out_shape = self._io.run(x.shape, self._ptr, self._cuda.stream)
        y = np.empty(out_shape, np.float32)
        self._cuda.download(y, self._ptr[self._io.outputs[0]])
        self._cuda.sync()
        return y

    def close(self) -> None:
        if self._cuda is not None:
            self._cuda.close()
            self._cuda = None
        self.context = self.engine = None
        super().close()
