"""ONNX -> TensorRT engine, built with the TensorRT Python API on the device that will run it
(an engine runs only on the GPU model and TensorRT version that built it).

Where the precision comes from (FACTS.md, "TensorRT versions"):
- the ONNX file itself, compiled as a strongly typed network (TensorRT >= 10): FP32 from the float
  ONNX, FP16 from `--to onnx-fp16`, INT8 from the Q/DQ ONNX of `--to onnx-int8`;
- builder flags, the legacy path of TensorRT 8.5-10.x (weak typing): FP16 from the float ONNX,
  and implicit INT8 calibrated by IInt8EntropyCalibrator2 on a calibration set. TensorRT 11 has
  neither, and says so here.
Every build keeps TensorRT's log next to the engine (`<engine>.log`) and writes the manifest as a
sidecar (`<engine>.json`), so the engine itself stays loadable by trtexec.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fsanet.errors import DataError, ExportError

TARGET_PRECISION = {"tensorrt-fp32": "fp32", "tensorrt-fp16": "fp16", "tensorrt-int8": "int8"}  # as in tflite_quantize
PRECISIONS = tuple(TARGET_PRECISION.values())


@dataclass(frozen=True)
class BuildPlan:
    """How one precision is built from one ONNX file on one TensorRT version."""

    precision: str
    source: str  # the ONNX file's own precision: fp32, fp16 or int8 (Q/DQ)
    strongly_typed: bool
    flags: tuple[str, ...]  # trt.BuilderFlag names to set
    calibrate: bool  # implicit INT8 with the entropy calibrator


def plan_build(source: str, precision: str, trt_version: str, has_calib: bool) -> BuildPlan:
    """Decide the build for `precision` from an ONNX of precision `source`; raise DataError with
    the fix for a combination this TensorRT cannot build."""
    if precision not in PRECISIONS:
        raise DataError(
            f"unknown TensorRT precision {precision!r}; choose {', '.join(PRECISIONS)} "
            f"(targets {', '.join(TARGET_PRECISION)})"
        )
    major = int(str(trt_version).split(".")[0])
    typed = major >= 10  # STRONGLY_TYPED: TensorRT 9+, and the only mode from 11 on
    if source == precision:
        flags = () if typed else {"fp32": (), "fp16": ("FP16",), "int8": ("INT8",)}[precision]
        return BuildPlan(precision, source, typed, flags, False)
    if source != "fp32":
        raise DataError(
            f"the ONNX file is {source}; a {precision} engine is built from the float ONNX "
            f"(or from the {precision} ONNX of `fsanet export --to onnx-{precision}`)"
        )
    if major >= 11:
        raise DataError(
            f"TensorRT {trt_version} builds only strongly typed networks (no FP16/INT8 builder flags, no "
            f"calibrators): build {precision} from the {precision} ONNX of `fsanet export --to onnx-{precision}`"
        )
    if precision == "fp16":
        return BuildPlan("fp16", "fp32", False, ("FP16",), False)
    if not has_calib:
        raise DataError(
            "implicit INT8 from the float ONNX needs a calibration set: --calib calib.npz (`fsanet calib "
            "build`); or give the Q/DQ ONNX of `fsanet export --to onnx-int8`"
        )
    # layers without an INT8 kernel (softmax, sqrt, reductions) run in FP16 rather than FP32
    return BuildPlan("int8", "fp32", False, ("INT8", "FP16"), True)


def _batches(facts, max_batch: int, opt_batch: int | None) -> tuple[tuple, tuple, tuple]:
    chw = tuple(facts.input_shape[1:])
    opt_batch = min(16, max_batch) if opt_batch is None else opt_batch
    if not facts.dynamic_batch:
        fixed = (facts.input_shape[0], *chw)
        return fixed, fixed, fixed
    if not 1 <= opt_batch <= max_batch:
        raise DataError(f"batch sizes must satisfy 1 <= opt ({opt_batch}) <= max ({max_batch})")
    return (1, *chw), (opt_batch, *chw), (max_batch, *chw)


def _parser_errors(parser, nodes: list[tuple[str, str]]) -> list[str]:
    """Each parser error with its node's name and op type (TensorRT 10 names them; 8.x gives an index)."""
    found = []
    for i in range(parser.num_errors):
        e = parser.get_error(i)
        index = e.node()
        name = e.node_name() if hasattr(e, "node_name") else ""
        op = e.node_operator() if hasattr(e, "node_operator") else ""
        if not name and 0 <= index < len(nodes):
            name, op = nodes[index]
        found.append(f"node {name or index} ({op or '?'}): {e.code()}: {e.desc()}")
    return found


def _network(trt, builder, logger, path: Path, plan: BuildPlan, nodes):
    flag = trt.NetworkDefinitionCreationFlag
    flags = 1 << int(flag.STRONGLY_TYPED) if plan.strongly_typed else 0
    if int(trt.__version__.split(".")[0]) < 10:
        flags |= 1 << int(flag.EXPLICIT_BATCH)  # implicit batch is the default before TensorRT 10
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(path)) or parser.num_errors:
        errors = _parser_errors(parser, nodes) or logger.errors() or ["no message from the parser"]
        raise ExportError("tensorrt", f"TensorRT's ONNX parser rejected {path.name}: " + " | ".join(errors))
    return network, parser


def _load_timing_cache(config, path: Path | None):
    data = path.read_bytes() if path is not None and path.is_file() else b""
    cache = config.create_timing_cache(data)
    if not config.set_timing_cache(cache, ignore_mismatch=False):
        raise DataError(f"{path}: a timing cache from another GPU or TensorRT version; delete it or give another")


def _profile(builder, name: str, shapes) -> object:
    profile = builder.create_optimization_profile()
    profile.set_shape(name, *shapes)
    return profile


def _calibration(trt, builder, config, cuda, calib, facts, key, cache_file, batch: int):
    from fsanet.export.trt_calibrator import CalibrationFeed, entropy_calibrator

    shape = (batch, *facts.input_shape[1:])
    device = cuda.malloc(int(np.prod(shape)) * 4)

    def upload(x: np.ndarray) -> int:
        cuda.upload(device, x)
        cuda.sync()  # TensorRT reads the batch right after get_batch returns
        return device

    feed = CalibrationFeed(calib, batch, cache_file, key, upload)
    calibrator = entropy_calibrator(trt, feed)
    config.int8_calibrator = calibrator
    config.set_calibration_profile(_profile(builder, facts.input_name, (shape, shape, shape)))
    return feed, calibrator


def _write_log(path: Path, header: list[str], logger) -> None:
    from fsanet.files import write_text

    lines = header + [f"[{severity}] {msg}" for severity, msg in (logger.messages if logger else [])]
    write_text(path, "\n".join(lines) + "\n")


@dataclass
class _Built:
    engine: Path  # the serialized engine, still in a temporary folder
    plan: BuildPlan
    facts: object  # trt_onnx.OnnxFacts of the parsed file
    shapes: tuple
    gpu: dict
    feed: object | None  # the CalibrationFeed of an implicit INT8 build
    cache_file: Path | None


def _compile(trt, logger, onnx_path: Path, tmp: str, precision: str, calib, opts: dict, header: list) -> _Built:
    from fsanet.export import trt_onnx
    from fsanet.export.trt_calibrator import CacheKey, cache_path
    from fsanet.runtimes.tensorrt import Cuda

    from fsanet.files import atomic_write, sha256

    parsed, facts = trt_onnx.prepare(onnx_path, trt.__version__, tmp)
    plan = plan_build(facts.precision, precision, trt.__version__, calib is not None)
    shapes = _batches(facts, opts["max_batch"], opts["opt_batch"])
    cuda = Cuda()
    try:
        gpu = cuda.device()
        header.append(f"GPU {gpu['name']} (sm {gpu['compute_capability']}), {plan}, profile {shapes}")
        builder = trt.Builder(logger)
        network, _parser = _network(trt, builder, logger, parsed, plan, facts.nodes)
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(opts["workspace_mb"]) << 20)
        for flag in plan.flags:
            config.set_flag(getattr(trt.BuilderFlag, flag))
        if plan.precision == "fp32":
            config.clear_flag(trt.BuilderFlag.TF32)  # FP32 means FP32, not Ampere's TF32 matmuls
        config.add_optimization_profile(_profile(builder, facts.input_name, shapes))
        timing = opts["timing_cache"]
        _load_timing_cache(config, timing)
        feed = cache_file = None
        if plan.calibrate:
            key = CacheKey(calib.sha256, sha256(onnx_path), trt.__version__)
            cache_file = cache_path(opts["calib_cache_dir"], key)
            feed, _keep = _calibration(trt, builder, config, cuda, calib, facts, key, cache_file, opts["calib_batch"])
        serialized = builder.build_serialized_network(network, config)
        if feed is not None and feed.error is not None:
            raise feed.error
        if serialized is None:
            errors = logger.errors() or ["no error message; see the build log"]
            raise ExportError("tensorrt", "TensorRT could not build the engine: " + " | ".join(errors))
        if timing is not None:
            blob = config.get_timing_cache().serialize()
            atomic_write(timing, lambda t: Path(t).write_bytes(bytes(blob)))
        engine = Path(tmp) / "candidate.engine"
        engine.write_bytes(bytes(serialized))
    finally:
        cuda.close()
    return _Built(engine, plan, facts, shapes, gpu, feed, cache_file)


def _engine_manifest(source: dict, built: _Built, trt_version: str, calib, opts: dict, log_name: str) -> dict:
    """The engine's manifest: the ONNX file's (`source`, from `artifact.read_source`), derived like
    every target's, plus what only an engine has. Pure, so it is tested without TensorRT."""
    from fsanet.export import artifact

    timing = opts["timing_cache"]
    manifest = artifact.derive(
        source,
        precision=built.plan.precision,
        backend_format="tensorrt-engine",
        source_onnx={"file": source["file"], "sha256": source["sha256"], "precision": built.facts.precision},
        tensorrt={
            "version": trt_version,
            "strongly_typed": built.plan.strongly_typed,
            "builder_flags": list(built.plan.flags),
            "workspace_mb": opts["workspace_mb"],
            "profile": {k: list(s) for k, s in zip(("min", "opt", "max"), built.shapes, strict=True)},
            "parsed_opset": built.facts.opset,
            "timing_cache": timing.name if timing else None,
        },
        gpu=built.gpu,
        build_log=log_name,
        tools=dict(source.get("tools") or {}, tensorrt=trt_version),
    )
    manifest["input"] = dict(source["input"], max_batch=int(built.shapes[2][0]))
    if built.feed is not None:  # implicit INT8: this build calibrated; else the ONNX file's calibration holds
        manifest["calibration"] = artifact.calibration_record(
            calib,
            method="TensorRT IInt8EntropyCalibrator2 (implicit INT8)",
            batch=built.feed.batch_size,
            batches=built.feed.batches_fed,
            cache=built.cache_file.name,
            cache_reused=built.feed.used_cache,
        )
    return manifest


def build_engine(
    onnx_path: str | Path,
    output: str | Path,
    precision: str = "fp16",
    calib=None,
    *,
    max_batch: int = 64,
    opt_batch: int | None = None,
    workspace_mb: int = 1024,
    timing_cache: str | Path | None = None,
    calib_batch: int = 32,
    calib_cache_dir: str | Path | None = None,
    verify: np.ndarray | None = None,
    verify_name: str = "",
    verbose: bool = False,
) -> dict:
    """Build `output` (.engine/.plan) from an fsanet ONNX export and return its manifest.

    The optimization profile covers batches 1..`max_batch`, tuned for `opt_batch` (default
    min(16, max_batch)); the runtime splits larger batches.
    `calib` (an `fsanet.calib.CalibrationSet`) feeds implicit INT8 from a float ONNX; its cache goes
    to `calib_cache_dir` (default: next to the engine), keyed by the set's sha256, the ONNX's sha256
    and the TensorRT version. `timing_cache` is read if present and written back. `verify` (crops):
    drift from the ONNX through ONNX Runtime, recorded before the engine is written. TensorRT's log
    goes to `<output>.log` whether the build succeeds or not.
    """
    from fsanet.export import artifact
    from fsanet.runtimes.tensorrt import CapturingLogger, import_tensorrt

    onnx_path, output = Path(onnx_path), Path(output)
    if output.suffix not in (".engine", ".plan"):
        raise DataError(f"{output}: an engine file must end in .engine or .plan (runtimes.open picks by suffix)")
    if not onnx_path.is_file():
        raise DataError(f"{onnx_path}: no such ONNX file")
    if workspace_mb < 1 or calib_batch < 1:
        raise DataError(f"workspace ({workspace_mb} MiB) and calibration batch ({calib_batch}) must be positive")
    trt = import_tensorrt()
    source = artifact.read_source(onnx_path, "tensorrt")
    opts = {
        "max_batch": max_batch,
        "opt_batch": opt_batch,
        "workspace_mb": workspace_mb,
        "timing_cache": Path(timing_cache) if timing_cache else None,
        "calib_batch": calib_batch,
        "calib_cache_dir": Path(calib_cache_dir) if calib_cache_dir else output.parent,
    }
    logger = CapturingLogger(trt, trt.ILogger.Severity.VERBOSE if verbose else trt.ILogger.Severity.INFO)
    log_path = Path(f"{output}.log")
    header = [f"fsanet: {output.name} from {onnx_path.name}, {precision}, TensorRT {trt.__version__}"]
    with tempfile.TemporaryDirectory() as tmp:
        try:
            built = _compile(trt, logger, onnx_path, tmp, precision, calib, opts, header)
        finally:
            _write_log(log_path, header, logger)
        manifest = _engine_manifest(source, built, trt.__version__, calib, opts, log_path.name)
        if verify is not None:  # against the ONNX file it was built from, through ONNX Runtime
            artifact.verify(
                built.engine, manifest, onnx_path, verify, "tensorrt", against=onnx_path.name, faces=verify_name
            )
        return artifact.write_copy(output, built.engine, manifest)
