"""TensorRT backend: a serialized engine (`.engine`/`.plan`) on the GPU, buffers and stream via
cuda-python (no torch, no pycuda), through named I/O tensors (set_input_shape /
set_tensor_address / execute_async_v3).

Supported: TensorRT 8.5 and later (JetPack 5.1.x ships 8.5.2.2, the oldest release with
execute_async_v3; docs/jetson.md has the table). The binding-index API of 8.0-8.4 is not
supported: the only JetPack with 8.4 (5.0.2) has Python 3.8, which fsanet-edge does not run on.
An engine runs only with the TensorRT version and GPU that built it: the sidecar manifest says
which, and a mismatch is refused before TensorRT is asked, with the command that rebuilds it.
"""

from __future__ import annotations

import ctypes
import logging
import shlex
import threading
from contextlib import contextmanager

import numpy as np
from fsanet.runtimes.base import Runtime, TensorSpec

from fsanet.errors import BackendUnavailable, DataError

log = logging.getLogger(__name__)

INSTALL_HINT = (
    "on a Jetson it comes with JetPack (sudo apt install python3-libnvinfer; a virtualenv needs "
    "--system-site-packages); on x86 Linux: pip install tensorrt"
)
MIN_VERSION = (8, 5)  # named I/O tensors and execute_async_v3 (NvInferRuntime.h of 8.5)


class TensorRTUnavailable(BackendUnavailable):
    """TensorRT's Python bindings are missing: they come from NVIDIA, not from an fsanet extra."""

    def __init__(self, detail: str = ""):
        super().__init__("tensorrt", "tensorrt")
        self.args = (f"TensorRT's Python module 'tensorrt' is not installed{detail}; {INSTALL_HINT}",)


def check_supported(version: str) -> None:
    """Refuse a TensorRT older than 8.5, saying which versions run."""
    parts = tuple(int(p) for p in str(version).split(".")[:2] if p.isdigit())
    if parts < MIN_VERSION:
        raise TensorRTUnavailable(
            f" in a supported version (found {version}; fsanet-edge needs TensorRT 8.5 or later, "
            "i.e. JetPack 5.1 or later on a Jetson)"
        )


def import_tensorrt():
    try:
        import tensorrt
    except ImportError as e:  # the module itself, or a library it loads (libnvinfer.so.N)
        raise TensorRTUnavailable("" if e.name == "tensorrt" else f" or cannot load ({e})") from e
    check_supported(tensorrt.__version__)
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


# -- dtypes ------------------------------------------------------------------------------------
# By the enum's name, not trt.nptype(): TensorRT 8.5.2.2's nptype() (JetPack 5.1.x) builds its
# table with np.bool, which numpy >= 1.24 removed, so any call raises AttributeError
# (NVIDIA/TensorRT@ad932f72 "8.5.2.2 release", python/packaging/tensorrt/__init__.py; fixed to
# np.bool_ in 8.5.3.1, b0c259a7, which no JetPack ships).
NUMPY_DTYPES = {
    "FLOAT": np.float32,
    "HALF": np.float16,
    "INT8": np.int8,
    "INT32": np.int32,
    "INT64": np.int64,
    "UINT8": np.uint8,
    "BOOL": np.bool_,
}


def numpy_dtype(trt_dtype) -> np.dtype:
    """The numpy dtype of a `trt.DataType` (or its name); DataError for one numpy has not (BF16, FP8...)."""
    name = getattr(trt_dtype, "name", None) or str(trt_dtype).rsplit(".", 1)[-1]
    if name not in NUMPY_DTYPES:
        raise DataError(f"TensorRT data type {name} has no numpy equivalent; the runtime feeds float32")
    return np.dtype(NUMPY_DTYPES[name])


# -- one logger per process --------------------------------------------------------------------
SEVERITIES = ("INTERNAL_ERROR", "ERROR", "WARNING", "INFO", "VERBOSE")  # ILogger::Severity, 0..4


class LogCapture:
    """Where the process's one TensorRT logger sends its messages: to every capture open at the
    time (each with its own floor), else to Python logging. TensorRT keeps a single logger
    pointer per process and ignores later ones ("TensorRT maintains only a single logger pointer
    at any given time", its warning quoted in NVIDIA/TensorRT#1475), so builders and runtimes
    share one logger and each call captures what it needs, as Polygraphy's get_trt_logger()
    (tools/Polygraphy/polygraphy/backend/trt/util.py) does."""

    def __init__(self):
        self._lock = threading.Lock()
        self._open: list[tuple[int, list]] = []

    def emit(self, severity: str, msg: str) -> None:
        rank = SEVERITIES.index(severity) if severity in SEVERITIES else len(SEVERITIES)
        with self._lock:
            targets = [messages for floor, messages in self._open if rank <= floor]
            for messages in targets:
                messages.append((severity, msg))
        if not targets:
            log.log(logging.ERROR if rank <= 1 else logging.WARNING if rank == 2 else logging.DEBUG, "%s", msg)

    @contextmanager
    def capture(self, floor: str = "INFO"):
        """Collect the messages of severity `floor` or worse logged inside the block."""
        entry = (SEVERITIES.index(floor), Captured())
        with self._lock:
            self._open.append(entry)
        try:
            yield entry[1]
        finally:
            with self._lock:
                self._open = [e for e in self._open if e is not entry]


class Captured(list):
    """The (severity, message) pairs of one capture."""

    def errors(self) -> list[str]:
        return [m for s, m in self if s in ("ERROR", "INTERNAL_ERROR")]


CAPTURE = LogCapture()
_LOGGER = None


def shared_logger(trt):
    """The process's one trt.ILogger, created on first use and never freed (TensorRT may call it
    from any builder or runtime for the life of the process)."""
    global _LOGGER
    if _LOGGER is None:

        class _Logger(trt.ILogger):
            def __init__(self):
                trt.ILogger.__init__(self)  # pybind trampolines must be initialised explicitly

            def log(self, severity, msg):
                try:  # log() is noexcept in C++: never let an exception out
                    CAPTURE.emit(getattr(severity, "name", str(severity)).rsplit(".", 1)[-1], msg)
                except Exception:  # noqa: BLE001
                    pass

        _LOGGER = _Logger()
    return _LOGGER


# -- CUDA ---------------------------------------------------------------------------------------
def stream_handle(stream) -> int:
    """The address of a cudaStream_t: `int(stream)` is deprecated from cuda-bindings 12.9.1
    (cuda_bindings/docs/source/release/12.9.1-notes.rst: use cuda.bindings.utils.get_cuda_native_handle)."""
    try:
        from cuda.bindings.utils import get_cuda_native_handle
    except ImportError:  # older cuda-python: int() is the documented way there
        return int(stream)
    return int(get_cuda_native_handle(stream))


class Cuda:
    """One CUDA stream, the device buffers and the pinned host buffers allocated for it, freed by close()."""

    def __init__(self):
        self.rt = import_cudart()
        self._buffers: list[int] = []
        self._host: list[int] = []
        self.stream = None
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

    @property
    def handle(self) -> int:
        return stream_handle(self.stream)

    def malloc(self, nbytes: int) -> int:
        ptr = int(self.call(self.rt.cudaMalloc(max(int(nbytes), 1)), "cudaMalloc"))
        self._buffers.append(ptr)
        return ptr

    def pinned(self, shape: tuple, dtype=np.float32) -> np.ndarray:
        """A page-locked host array (cudaMallocHost), so cudaMemcpyAsync copies by DMA without a
        staging copy. Not measured against pageable memory: no GPU was available to this project."""
        nbytes = max(int(np.prod(shape)) * np.dtype(dtype).itemsize, 1)
        ptr = int(self.call(self.rt.cudaMallocHost(nbytes), "cudaMallocHost"))
        self._host.append(ptr)
        raw = (ctypes.c_byte * nbytes).from_address(ptr)
        return np.frombuffer(raw, dtype=dtype, count=int(np.prod(shape))).reshape(shape)

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
        return {
            "name": name.rstrip("\0").strip(),
            "compute_capability": f"{prop.major}.{prop.minor}",
            "integrated": bool(prop.integrated),  # a Jetson's iGPU shares DRAM with the CPU
        }

    def close(self) -> None:
        for ptr in self._buffers:
            self.rt.cudaFree(ptr)
        for ptr in self._host:
            self.rt.cudaFreeHost(ptr)
        self._buffers, self._host = [], []
        if self.stream is not None:
            self.rt.cudaStreamDestroy(self.stream)
            self.stream = None


# -- what an engine needs from this machine ----------------------------------------------------
def rebuild_command(path, manifest: dict | None) -> str:
    """The command that rebuilds `path` on this machine from the ONNX file it was built from."""
    m = manifest or {}
    source = (m.get("source_onnx") or {}).get("file", "MODEL.onnx")
    precision = m.get("precision", "fp16")
    max_batch = (m.get("input") or {}).get("max_batch", 64)
    call = (
        "from fsanet.export.tensorrt import build_engine; "
        f"build_engine({source!r}, {str(path)!r}, {precision!r}, max_batch={max_batch})"
    )
    return f"python3 -c {shlex.quote(call)}"


def check_engine(path, manifest: dict | None, installed: str, device: dict | None = None) -> None:
    """Refuse, before deserializing, an engine whose manifest names another TensorRT version or
    another GPU compute capability than this machine's; the message gives the rebuild command.
    An engine without a manifest (trtexec's) is left to TensorRT."""
    m = manifest or {}
    built = (m.get("tensorrt") or {}).get("version")
    gpu = m.get("gpu") or {}
    where = f"{gpu.get('name', 'its GPU')} (sm {gpu.get('compute_capability', '?')})"
    fix = "an engine runs only with the TensorRT version and GPU model that built it; "
    fix += f"rebuild it here: {rebuild_command(path, m)}"
    if built and built != installed:
        raise DataError(f"{path}: built by TensorRT {built} on {where}, but TensorRT {installed} is installed; {fix}")
    here = (device or {}).get("compute_capability")
    if here and gpu.get("compute_capability") and gpu["compute_capability"] != here:
        raise DataError(
            f"{path}: built on {where}, but this GPU is {(device or {}).get('name', '?')} (sm {here}); {fix}"
        )


def check_engine_version(path, manifest: dict | None, installed: str) -> None:
    """The TensorRT-version half of check_engine (before any GPU is touched)."""
    check_engine(path, manifest, installed, None)


class _NamedIO:
    """The engine's one input and one output, by name."""

    def __init__(self, trt, engine, context):
        self.engine, self.context = engine, context
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        is_input = {n: engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names}
        self.inputs = [n for n in names if is_input[n]]
        self.outputs = [n for n in names if not is_input[n]]
        self.dtype = {n: numpy_dtype(engine.get_tensor_dtype(n)) for n in names}

    def shape(self, name: str) -> tuple:
        return tuple(self.engine.get_tensor_shape(name))

    def profile(self, name: str) -> tuple:
        if self.shape(name)[0] >= 0:  # static batch: no profile needed
            return (self.shape(name),) * 3
        return tuple(tuple(s) for s in self.engine.get_tensor_profile_shape(name, 0))

    def run(self, shape: tuple, pointers: dict, stream: int) -> tuple:
        if not self.context.set_input_shape(self.inputs[0], shape):
            raise DataError(f"TensorRT refused input shape {shape}")
        for name, ptr in pointers.items():
            if not self.context.set_tensor_address(name, ptr):  # NvInferRuntime.h: false on a bad name/address
                raise RuntimeError(f"TensorRT refused the address of tensor '{name}'")
        if not self.context.execute_async_v3(stream):
            raise RuntimeError("TensorRT execute_async_v3 failed")
        return tuple(self.context.get_tensor_shape(self.outputs[0]))


def pad_to_batch(x: np.ndarray, batch: int) -> np.ndarray:
    """`x` completed to `batch` rows by repeating its last row (a static-batch engine takes exactly
    `batch`; the extra rows' outputs are dropped)."""
    if len(x) >= batch:
        return x
    return np.concatenate([x, np.repeat(x[-1:], batch - len(x), axis=0)])


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
        self._cuda = Cuda()
        check_engine(self.path, self.manifest, trt.__version__, self._cuda.device())
        self._runtime = trt.Runtime(shared_logger(trt))
        dla = ((self.manifest or {}).get("tensorrt") or {}).get("dla")
        if dla:  # an engine built for a DLA core runs on that core (IRuntime::setDLACore)
            self._runtime.DLA_core = int(dla["core"])
        with CAPTURE.capture("WARNING") as messages:
            self.engine = self._runtime.deserialize_cuda_engine(self.path.read_bytes())
            self.context = self.engine.create_execution_context() if self.engine is not None else None
        if self.engine is None or self.context is None:
            what = "deserialize it" if self.engine is None else "create an execution context for it"
            raise DataError(
                f"{self.path}: TensorRT {trt.__version__} cannot {what}: "
                + ("; ".join(messages.errors()) or "no error message from TensorRT")
                + f"; if it was built elsewhere, rebuild it here: {rebuild_command(self.path, self.manifest)}"
            )
        self._io = _NamedIO(trt, self.engine, self.context)
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
        batch = int(self._max[0])
        self._ptr = {
            self._io.inputs[0]: self._cuda.malloc(int(np.prod(self._max)) * 4),
            self._io.outputs[0]: self._cuda.malloc(batch * 3 * 4),
        }
        self._host_in = self._cuda.pinned(tuple(int(d) for d in self._max))
        self._host_out = self._cuda.pinned((batch, 3))

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
        n = len(x)
        if tuple(x.shape[1:]) != tuple(self._max[1:]) or n > self._max[0]:
            raise DataError(
                f"{self.path.name}: batch {x.shape} does not fit the engine's input {tuple(self._max)}; not copied"
            )
        if self._min[0] == self._max[0]:
            x = pad_to_batch(x, int(self._max[0]))  # a static-batch engine runs exactly its batch
        elif n < self._min[0]:
            raise DataError(f"{self.path.name}: the engine's profile needs a batch of at least {self._min[0]}")
        host_in = self._host_in[: len(x)]
        host_in[...] = x
        self._cuda.upload(self._ptr[self._io.inputs[0]], host_in)
        out_shape = self._io.run(host_in.shape, self._ptr, self._cuda.handle)
        host_out = self._host_out[: out_shape[0]]
        self._cuda.download(host_out, self._ptr[self._io.outputs[0]])
        self._cuda.sync()
        return np.array(host_out[:n])

    def close(self) -> None:
        self.context = self.engine = None  # before their buffers and stream go
        if self._cuda is not None:
            self._cuda.close()
            self._cuda = None
        super().close()
