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
import time
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
    """One CUDA stream with the device buffers, host buffers, events and CUDA graph made for it,
    all freed by close()."""

    def __init__(self):
        self.rt = import_cudart()
        self._buffers: list[int] = []
        self._host: list[int] = []
        self._events: list = []
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

    @staticmethod
    def _array(ptr: int, shape: tuple, dtype) -> np.ndarray:
        count = int(np.prod(shape))
        raw = (ctypes.c_byte * max(count * np.dtype(dtype).itemsize, 1)).from_address(ptr)
        return np.frombuffer(raw, dtype=dtype, count=count).reshape(shape)

    def pinned(self, shape: tuple, dtype=np.float32) -> np.ndarray:
        """A page-locked host array (cudaMallocHost), so cudaMemcpyAsync copies by DMA without a
        staging copy. Not measured against pageable memory: no GPU was available to this project."""
        nbytes = max(int(np.prod(shape)) * np.dtype(dtype).itemsize, 1)
        ptr = int(self.call(self.rt.cudaMallocHost(nbytes), "cudaMallocHost"))
        self._host.append(ptr)
        return self._array(ptr, shape, dtype)

    def mapped(self, shape: tuple, dtype=np.float32) -> tuple[np.ndarray, int]:
        """A page-locked host array mapped into the GPU's address space, and the device pointer
        the GPU reads and writes it through: cudaHostAlloc(cudaHostAllocMapped) and
        cudaHostGetDevicePointer (CUDA Runtime API; the flag is implicit for contexts the runtime
        API creates). On an integrated GPU the engine then works on the host array itself, with
        no copy. Not measured: no Jetson was available to this project."""
        nbytes = max(int(np.prod(shape)) * np.dtype(dtype).itemsize, 1)
        ptr = int(self.call(self.rt.cudaHostAlloc(nbytes, self.rt.cudaHostAllocMapped), "cudaHostAlloc(mapped)"))
        self._host.append(ptr)
        device = int(self.call(self.rt.cudaHostGetDevicePointer(ptr, 0), "cudaHostGetDevicePointer"))
        return self._array(ptr, shape, dtype), device

    def upload(self, ptr: int, host: np.ndarray) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self.call(self.rt.cudaMemcpyAsync(ptr, host.ctypes.data, host.nbytes, kind, self.stream), "copy to GPU")

    def download(self, host: np.ndarray, ptr: int) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self.call(self.rt.cudaMemcpyAsync(host.ctypes.data, ptr, host.nbytes, kind, self.stream), "copy to host")

    def sync(self) -> None:
        self.call(self.rt.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")

    # -- events: GPU time between two points of the stream ----------------------------------------
    def event(self):
        event = self.call(self.rt.cudaEventCreate(), "cudaEventCreate")
        self._events.append(event)
        return event

    def record(self, event) -> None:
        self.call(self.rt.cudaEventRecord(event, self.stream), "cudaEventRecord")

    def elapsed_ms(self, start, end) -> float:
        """Milliseconds between two recorded events (after the stream was synchronized)."""
        return float(self.call(self.rt.cudaEventElapsedTime(start, end), "cudaEventElapsedTime"))

    # -- CUDA graphs ------------------------------------------------------------------------------
    def capture(self, enqueue) -> object:
        """The executable CUDA graph of what `enqueue()` puts on the stream, as trtexec captures one
        (NVIDIA/TensorRT samples/common/sampleInference.cpp and sampleDevice.h TrtCudaGraph at
        release/10.3): thread-local capture mode; if the enqueue fails under capture, end the
        capture, drop whatever graph came back and clear the error. cudaGraphInstantiateWithFlags,
        not cudaGraphInstantiate, whose arguments differ between cuda-python 11.8 and 12.x."""
        rt = self.rt
        mode = rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
        self.call(rt.cudaStreamBeginCapture(self.stream, mode), "cudaStreamBeginCapture")
        try:
            ok = bool(enqueue())
        except Exception:  # noqa: BLE001  (the capture must end on this thread whatever happened)
            ok = False
        err, graph = rt.cudaStreamEndCapture(self.stream)
        if not ok or int(err) != 0 or graph is None:
            if graph is not None and int(err) == 0:
                rt.cudaGraphDestroy(graph)
            rt.cudaGetLastError()  # capture errors are sticky until read
            name = rt.cudaGetErrorName(err)[1] if int(err) != 0 else b"enqueue failed under capture"
            raise CaptureFailed(name.decode() if isinstance(name, bytes) else str(name))
        try:
            return self.call(rt.cudaGraphInstantiateWithFlags(graph, 0), "cudaGraphInstantiateWithFlags")
        finally:
            rt.cudaGraphDestroy(graph)  # the executable graph keeps what it needs

    def launch(self, graph_exec) -> None:
        self.call(self.rt.cudaGraphLaunch(graph_exec, self.stream), "cudaGraphLaunch")

    def destroy(self, graph_exec) -> None:
        if graph_exec is not None:
            self.rt.cudaGraphExecDestroy(graph_exec)

    def device(self) -> dict:
        index = self.call(self.rt.cudaGetDevice(), "cudaGetDevice")
        prop = self.call(self.rt.cudaGetDeviceProperties(index), "cudaGetDeviceProperties")
        name = prop.name.decode(errors="replace") if isinstance(prop.name, bytes) else str(prop.name)
        return {
            "name": name.rstrip("\0").strip(),
            "compute_capability": f"{prop.major}.{prop.minor}",
            "integrated": bool(prop.integrated),  # a Jetson's iGPU shares DRAM with the CPU
            "can_map_host_memory": bool(prop.canMapHostMemory),
        }

    def close(self) -> None:
        for event in self._events:
            self.rt.cudaEventDestroy(event)
        for ptr in self._buffers:
            self.rt.cudaFree(ptr)
        for ptr in self._host:
            self.rt.cudaFreeHost(ptr)
        self._buffers, self._host, self._events = [], [], []
        if self.stream is not None:
            self.rt.cudaStreamDestroy(self.stream)
            self.stream = None


class CaptureFailed(RuntimeError):
    """The engine's enqueue could not be captured in a CUDA graph."""


# -- what an engine needs from this machine ----------------------------------------------------
def rebuild_command(path, manifest: dict | None) -> str:
    """The command that rebuilds `path` on this machine from the ONNX file it was built from."""
    m = manifest or {}
    source = (m.get("source_onnx") or {}).get("file", "MODEL.onnx")
    precision = m.get("precision", "fp16")
    max_batch = (m.get("input") or {}).get("max_batch", 64)
    dla = (m.get("tensorrt") or {}).get("dla")
    extra = ""
    if dla:  # the same DLA core, batch and fallback
        extra = f", dla_core={int(dla['core'])}, opt_batch={int(dla.get('batch') or 1)}"
        extra += "" if dla.get("gpu_fallback", True) else ", gpu_fallback=False"
    call = (
        "from fsanet.export.tensorrt import build_engine; "
        f"build_engine({source!r}, {str(path)!r}, {precision!r}, max_batch={max_batch}{extra})"
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

    def bind(self, shape: tuple, pointers: dict) -> tuple:
        """Set the input shape and every tensor's address; the output shape that follows."""
        if not self.context.set_input_shape(self.inputs[0], shape):
            raise DataError(f"TensorRT refused input shape {shape}")
        for name, ptr in pointers.items():
            if not self.context.set_tensor_address(name, ptr):  # NvInferRuntime.h: false on a bad name/address
                raise RuntimeError(f"TensorRT refused the address of tensor '{name}'")
        return tuple(self.context.get_tensor_shape(self.outputs[0]))

    def enqueue(self, stream: int) -> None:
        if not self.context.execute_async_v3(stream):
            raise RuntimeError("TensorRT execute_async_v3 failed")


def pad_to_batch(x: np.ndarray, batch: int) -> np.ndarray:
    """`x` completed to `batch` rows by repeating its last row (a static-batch engine takes exactly
    `batch`; the extra rows' outputs are dropped)."""
    if len(x) >= batch:
        return x
    return np.concatenate([x, np.repeat(x[-1:], batch - len(x), axis=0)])


# -- run-time options -----------------------------------------------------------------------------
HOST_MEMORY = ("pinned", "mapped")


def check_options(cuda_graph, host_memory, gpu_timing) -> None:
    """The TensorRT runtime's own options, refused before TensorRT or a GPU is needed."""
    for name, value in (("cuda_graph", cuda_graph), ("gpu_timing", gpu_timing)):
        if not isinstance(value, bool):
            raise DataError(f"TensorRT option {name} must be True or False, got {value!r}")
    if host_memory not in HOST_MEMORY:
        raise DataError(
            f"TensorRT option host_memory={host_memory!r}: choose 'pinned' (copies by DMA, the default) "
            "or 'mapped' (zero-copy, for the integrated GPU of a Jetson)"
        )


def check_mapped(device: dict) -> None:
    """Mapped (zero-copy) host memory only where the GPU shares the host's DRAM (cudaDeviceProp
    integrated, canMapHostMemory): on a discrete GPU every access would cross PCIe."""
    if not device.get("integrated"):
        raise DataError(
            f"host_memory='mapped' is for an integrated GPU (a Jetson), where CPU and GPU share memory; "
            f"{device.get('name', 'this GPU')} has memory of its own: use the default, host_memory='pinned'"
        )
    if not device.get("can_map_host_memory"):
        raise DataError(f"host_memory='mapped': {device.get('name', 'this GPU')} cannot map host memory")


class LayerTimes:
    """Per-layer times as TensorRT's IProfiler reports them, one report_layer_time(name, ms) per
    layer per inference, kept in the order of the first inference (as trtexec's Profiler does,
    samples/common/sampleReporting.cpp). Pure, so it is tested without TensorRT."""

    def __init__(self):
        self._ms: dict[str, list[float]] = {}
        self.error: BaseException | None = None

    def report(self, name: str, ms: float) -> None:
        self._ms.setdefault(str(name), []).append(float(ms))

    @property
    def iterations(self) -> int:
        return max((len(v) for v in self._ms.values()), default=0)

    def rows(self) -> list[dict]:
        """One row per layer: name, inferences it ran in, mean and median ms, share of the total."""
        runs = self.iterations
        total = sum(sum(v) for v in self._ms.values()) or 1.0
        return [
            {
                "name": name,
                "calls": len(ms),
                "mean_ms": sum(ms) / runs,
                "median_ms": float(np.median(ms)),
                "share": sum(ms) / total,
            }  # fmt: skip
            for name, ms in self._ms.items()
        ]


def _profiler(trt, times: LayerTimes):
    """A trt.IProfiler that fills `times`; its exceptions are kept (the bindings print and drop
    them: python/src/infer/pyCore.cpp, PyProfiler)."""

    class _Profiler(trt.IProfiler):
        def __init__(self):
            trt.IProfiler.__init__(self)  # pybind trampolines must be initialised explicitly

        def report_layer_time(self, layer_name, ms):
            try:
                times.report(layer_name, ms)
            except Exception as e:  # noqa: BLE001
                times.error = times.error or e

    return _Profiler()


class TensorRTRuntime(Runtime):
    """A serialized engine on the GPU. Options (runtimes.open passes them):
    - `cuda_graph`: capture the engine's enqueue in a CUDA graph and replay it (batch-1 latency:
      one launch instead of one per kernel). Captured after one plain enqueue, as trtexec does;
      captured again whenever the input shape changes (one graph at a time: no NVIDIA document
      says a graph stays valid after its context's input shape changed).
    - `host_memory`: 'pinned' (default; copies by DMA) or 'mapped' (zero-copy on a Jetson's
      integrated GPU: the engine reads and writes the host buffers; refused on a discrete GPU).
    - `gpu_timing`: CUDA events around each copy and the enqueue, recorded per call in
      `timings` (trtexec's H2D, GPU compute and D2H latency; enqueue and wall time by the host clock).
    None of these has run: no GPU with TensorRT was available to this project."""

    backend = "tensorrt"

    def __init__(
        self,
        path,
        input_format=None,
        manifest=None,
        threads: int | None = None,
        *,
        cuda_graph: bool = False,
        host_memory: str = "pinned",
        gpu_timing: bool = False,
    ):
        del threads  # the GPU runs the engine; CPU threads do not apply
        check_options(cuda_graph, host_memory, gpu_timing)
        self.cuda_graph, self.host_memory, self.gpu_timing = cuda_graph, host_memory, gpu_timing
        self.timings: list[dict] = []
        self.graph_captures = 0
        self._trt = import_tensorrt()
        if manifest is None:
            from fsanet.manifest import read_sidecar

            manifest = read_sidecar(path)  # refuses an engine changed after it was built
        check_engine_version(path, manifest, self._trt.__version__)
        self._cuda = None
        self._graph, self._graph_shape, self._plain = None, None, False
        super().__init__(path, input_format, manifest)

    def _load(self) -> None:
        trt = self._trt
        self._cuda = Cuda()
        self.device = self._cuda.device()
        check_engine(self.path, self.manifest, trt.__version__, self.device)
        if self.host_memory == "mapped":
            check_mapped(self.device)
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
        self._events = [self._cuda.event() for _ in range(4)] if self.gpu_timing else None

    def _allocate(self) -> None:
        out = self._io.shape(self._io.outputs[0])
        if len(out) != 2 or out[1] != 3:
            raise DataError(f"{self.path}: output '{self._io.outputs[0]}' has shape {out}; expected (batch, 3)")
        shapes = {self._io.inputs[0]: tuple(int(d) for d in self._max), self._io.outputs[0]: (int(self._max[0]), 3)}
        if self.host_memory == "mapped":  # the engine works on the host buffers themselves
            mapped = {name: self._cuda.mapped(shape) for name, shape in shapes.items()}
            self._ptr = {name: device for name, (_, device) in mapped.items()}
            self._host_in, self._host_out = (mapped[n][0] for n in (self._io.inputs[0], self._io.outputs[0]))
            return
        self._ptr = {name: self._cuda.malloc(int(np.prod(shape)) * 4) for name, shape in shapes.items()}
        self._host_in = self._cuda.pinned(shapes[self._io.inputs[0]])
        self._host_out = self._cuda.pinned(shapes[self._io.outputs[0]])

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

    def executes_on(self) -> str:
        dla = ((self.manifest or {}).get("tensorrt") or {}).get("dla")
        where = f"DLA core {dla['core']} + GPU" if dla else "GPU"
        extra = [w for w, on in (("CUDA graph", self.cuda_graph), ("mapped host memory", self.host_memory == "mapped"))
                 if on]  # fmt: skip
        return f"TensorRT {self._trt.__version__} on {where}" + (f" ({', '.join(extra)})" if extra else "")

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
        cuda, events, copies = self._cuda, self._events, self.host_memory == "pinned"
        start = time.perf_counter()
        host_in = self._host_in[: len(x)]
        host_in[...] = x
        if events:
            cuda.record(events[0])
        if copies:
            cuda.upload(self._ptr[self._io.inputs[0]], host_in)
        if events:
            cuda.record(events[1])
        out_shape, enqueue_s = self._execute(host_in.shape)
        if events:
            cuda.record(events[2])
        host_out = self._host_out[: out_shape[0]]
        if copies:
            cuda.download(host_out, self._ptr[self._io.outputs[0]])
        if events:
            cuda.record(events[3])
        cuda.sync()
        wall_s = time.perf_counter() - start
        if events:
            h2d, compute, d2h = (cuda.elapsed_ms(events[i], events[i + 1]) for i in range(3))
            self.timings.append({"batch": n, "h2d_ms": h2d, "compute_ms": compute, "d2h_ms": d2h,
                                 "enqueue_ms": enqueue_s * 1e3, "wall_ms": wall_s * 1e3})  # fmt: skip
        return np.array(host_out[:n])

    def _execute(self, shape: tuple) -> tuple[tuple, float]:
        """Run the engine on the bound buffers: enqueue, or replay the CUDA graph of this input
        shape (captured first if the shape changed). The output shape, and the host's seconds in
        the enqueue call (trtexec's "Enqueue Time")."""
        stream = self._cuda.handle
        if not self.cuda_graph or self._plain:
            out_shape = self._io.bind(shape, self._ptr)
            t = time.perf_counter()
            self._io.enqueue(stream)
            return out_shape, time.perf_counter() - t
        if self._graph_shape != shape:
            self._capture(shape, stream)
        t = time.perf_counter()
        self._cuda.launch(self._graph)
        return self._graph_out, time.perf_counter() - t

    def _capture(self, shape: tuple, stream: int) -> None:
        """The CUDA graph of one enqueue at `shape`. The enqueue runs once outside the capture
        first, so TensorRT's set-up work for the new shape is not captured (trtexec:
        "executing the enqueue function at least once before starting CUDA graph capture")."""
        self._cuda.destroy(self._graph)
        self._graph, self._graph_shape = None, None
        self._graph_out = self._io.bind(shape, self._ptr)
        self._io.enqueue(stream)
        self._cuda.sync()
        try:
            self._graph = self._cuda.capture(lambda: self._io.context.execute_async_v3(stream))
        except CaptureFailed as e:
            raise DataError(
                f"{self.path.name}: this engine cannot be captured in a CUDA graph ({e}); run it without cuda_graph"
            ) from e
        self._graph_shape = shape
        self.graph_captures += 1

    def layer_times(self, x: np.ndarray, runs: int, warmup: int = 10) -> LayerTimes:
        """Per-layer times of `runs` inferences of `x` (one piece the engine takes whole), from a
        trt.IProfiler on the execution context. With a profiler attached, enqueue reports
        synchronously (NvInferRuntime.h setEnqueueEmitsProfile, default true), so these runs are
        slower than plain ones; they never use the CUDA graph."""
        times = LayerTimes()
        self._cuda.destroy(self._graph)  # plain runs rebind the context: the next graph call recaptures
        self._graph, self._graph_shape, self._plain = None, None, True
        try:
            for _ in range(warmup):
                self.infer(x)
            self.context.profiler = _profiler(self._trt, times)
            for _ in range(runs):
                self.infer(x)
        finally:
            self.context.profiler = None
            self._plain = False
        if times.error is not None:
            raise RuntimeError(f"the layer profiler failed: {times.error}") from times.error
        return times

    def close(self) -> None:
        if self._cuda is not None:
            self._cuda.destroy(self._graph)
            self._graph = None
        self.context = self.engine = None  # before their buffers and stream go
        if self._cuda is not None:
            self._cuda.close()
            self._cuda = None
        super().close()
