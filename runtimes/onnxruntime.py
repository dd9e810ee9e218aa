"""ONNX Runtime backend: CPU, CUDA or TensorRT execution providers, never a silent fallback.

Denormal floats are flushed to zero by default: flat regions of real photos drive FSA-Net's
tanh and product maps into the denormal range, where x86 arithmetic is many times slower
(1.9 -> 1.7 ms for the fusion on real faces here). Angles do not change measurably (every
export is verified through this backend to 1e-3 degree); `denormals_as_zero=False` keeps
IEEE behaviour.
"""

from __future__ import annotations

import numpy as np
from fsanet.runtimes.base import Runtime, TensorSpec

from fsanet.errors import BackendUnavailable, DataError

PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}


class OnnxRuntime(Runtime):
    backend = "onnxruntime"

    def __init__(
        self,
        path,
        input_format=None,
        manifest=None,
        threads: int | None = None,
        provider: str = "cpu",
        denormals_as_zero: bool = True,
        profile_prefix: str | None = None,
        spinning: bool = True,
    ):
        if provider not in PROVIDERS:
            raise DataError(f"unknown execution provider {provider!r}; choose one of {sorted(PROVIDERS)}")
        self.provider, self.threads, self.denormals_as_zero = provider, threads, denormals_as_zero
        self.profile_prefix = profile_prefix  # ONNX Runtime's per-operator profiler (fsanet profile)
        self.spinning = spinning  # off: no busy-waiting threads (deterministic instruction counts)
        self._ort = import_ort()
        if manifest is None:
            manifest = embedded_manifest(path, self._ort)
        super().__init__(path, input_format, manifest)

    def _load(self) -> None:
        ort = self._ort
        wanted = PROVIDERS[self.provider]
        if wanted not in ort.get_available_providers():
            raise BackendUnavailable(
                f"{wanted} (this onnxruntime build has {', '.join(ort.get_available_providers())})",
                "onnxruntime-gpu" if self.provider != "cpu" else "onnxruntime",
            )
        so = ort.SessionOptions()
        so.log_severity_level = 3
        if self.threads:
            so.intra_op_num_threads = self.threads
            so.inter_op_num_threads = 1
        if not self.spinning:
            so.add_session_config_entry("session.intra_op.allow_spinning", "0")
            so.add_session_config_entry("session.inter_op.allow_spinning", "0")
        if self.profile_prefix:
            so.enable_profiling, so.profile_file_prefix = True, str(self.profile_prefix)
        try:
            self.session, self._run_env = create_session(ort, str(self.path), so, [wanted], self.denormals_as_zero)
        except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph types
            raise DataError(f"{self.path}: ONNX Runtime cannot load it ({str(e).splitlines()[0]})") from e
        if self.session.get_providers()[0] != wanted:  # ORT falls back silently when a provider fails
            raise BackendUnavailable(f"{wanted} failed to initialise for {self.path.name}", "onnxruntime-gpu")
        inits = {i.name for i in self.session.get_inputs() if len(i.shape) != 4}
        images = [i for i in self.session.get_inputs() if i.name not in inits]
        if len(images) != 1:
            raise DataError(f"{self.path}: expected one image input (rank 4), found {[i.name for i in images]}")
        self._input = images[0]

    @property
    def inputs(self) -> list[TensorSpec]:
        i = self._input
        return [TensorSpec(i.name, tuple(i.shape), i.type)]

    @property
    def outputs(self) -> list[TensorSpec]:
        return [TensorSpec(o.name, tuple(o.shape), o.type) for o in self.session.get_outputs()]

    def _run(self, x: np.ndarray) -> np.ndarray:
        with self._run_env:
            return self.session.run(None, {self._input.name: x})[0]

    def executes_on(self) -> str:
        """The session's providers in priority order (ONNX Runtime does not say which ISA its
        MLAS kernels picked; the machine fingerprint lists the features they dispatch on)."""
        return "onnxruntime " + ", ".join(self.session.get_providers())

    def end_profiling(self) -> str:
        """Stop the profiler of a session opened with `profile_prefix`; the JSON trace's path."""
        if not self.profile_prefix:
            raise DataError(f"{self.path}: opened without profile_prefix, nothing was profiled")
        return self.session.end_profiling()

    def close(self) -> None:
        self.session = None
        super().close()


def create_session(ort, model, options, providers: list[str], denormals_as_zero: bool):
    """An InferenceSession, and the floating-point environment its runs need. ONNX Runtime's
    denormal option covers its pool threads (and, in the process's first session only, leaks
    into the creating thread): the caller's environment is put back at once, and `run_env`
    applies flush-to-zero around each run, where the calling thread computes too: `with env:`."""
    from fsanet.runtimes import fpenv

    if denormals_as_zero:
        options.add_session_config_entry("session.set_denormal_as_zero", "1")
    caller = fpenv.capture()
    try:
        session = ort.InferenceSession(model, options, providers=providers)
    finally:
        fpenv.restore(caller)
    return session, fpenv.Applied(fpenv.flushing(caller) if denormals_as_zero else None)


def import_ort():
    try:
        import onnxruntime
    except ImportError as e:
        raise BackendUnavailable("onnxruntime", "onnxruntime") from e
    return onnxruntime


def embedded_manifest(path, ort=None) -> dict | None:
    """The manifest of an ONNX file: its checked sidecar, else the copy in metadata_props."""
    from fsanet.manifest import METADATA_KEY, parse_embedded, read_sidecar

    manifest = read_sidecar(path)
    if manifest is not None:
        return manifest
    ort = ort or import_ort()
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # metadata only
    try:
        meta = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"]).get_modelmeta()
    except Exception as e:
        raise DataError(f"{path}: not a loadable ONNX file ({str(e).splitlines()[0]})") from e
    return parse_embedded(meta.custom_metadata_map.get(METADATA_KEY), path)
