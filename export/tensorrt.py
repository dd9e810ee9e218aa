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


def plan_build(
    source: str, precision: str, trt_version: str, has_calib: bool, dla: bool = False, gpu_fallback: bool = True
) -> BuildPlan:
    """Decide the build for `precision` from an ONNX of precision `source`; raise DataError with
    the fix for a combination this TensorRT cannot build. `dla`: for a DLA core, weakly typed with
    trtexec's DLA flags before TensorRT 11 (fsanet.export.trt_dla)."""
    from fsanet.export.trt_dla import dla_flags, strongly_typed_dla

    if precision not in PRECISIONS:
        raise DataError(
            f"unknown TensorRT precision {precision!r}; choose {', '.join(PRECISIONS)} "
            f"(targets {', '.join(TARGET_PRECISION)})"
        )
    if not dla:
        return _plan(source, precision, trt_version, has_calib, int(str(trt_version).split(".")[0]) >= 10)
    if precision == "fp32":
        raise DataError("--dla-core: DLA runs FP16 or INT8 only; build tensorrt-fp16 or tensorrt-int8 for a DLA core")
    typed = strongly_typed_dla(trt_version)
    plan = _plan(source, precision, trt_version, has_calib, typed)
    return BuildPlan(plan.precision, plan.source, typed, plan.flags + dla_flags(typed, gpu_fallback), plan.calibrate)


def _plan(source: str, precision: str, trt_version: str, has_calib: bool, typed: bool) -> BuildPlan:
    """plan_build for the GPU; `typed`: build strongly typed (TensorRT 9+, the only mode from 11 on)."""
    major = int(str(trt_version).split(".")[0])
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


# -- which ONNX file an engine is built from -----------------------------------------------------
def prefers_typed(source: str, precision: str, trt_version: str) -> bool:
    """TensorRT >= 10 builds FP16/INT8 from the typed ONNX (FP16 file, Q/DQ file) as a strongly
    typed network rather than from the float file with the weakly typed builder flags, which are
    deprecated in 10.x and gone in 11 (FACTS.md, "TensorRT versions")."""
    return source == "fp32" and precision in ("fp16", "int8") and int(str(trt_version).split(".")[0]) >= 10


def typed_sibling(float_onnx: Path, precision: str) -> Path:
    """Where `fsanet export --to onnx-fp16/onnx-int8` writes the typed file of a float ONNX."""
    from fsanet.export.targets import artifact_name

    return float_onnx.parent / artifact_name(float_onnx.stem, f"onnx-{precision}")


def _matching_sibling(float_onnx: Path, precision: str) -> Path | None:
    """The typed sibling, if it exists and was made from this very float ONNX."""
    from fsanet.files import sha256
    from fsanet.manifest import read_sidecar

    path = typed_sibling(float_onnx, precision)
    manifest = read_sidecar(path) if path.is_file() else None
    made_from = ((manifest or {}).get("float_source") or {}).get("sha256")
    if manifest and manifest.get("precision") == precision and made_from == sha256(float_onnx):
        return path
    return None


def choose_source(onnx_path: Path, precision: str, trt_version: str, calib, faces) -> tuple[Path, str]:
    """The ONNX file to build `precision` from, and why. On TensorRT >= 10 a float ONNX gives way
    to its typed sibling, written now when this run did not (FP16 needs faces to verify it on,
    INT8 a calibration set); without those, the weakly typed flags of plan_build remain."""
    from fsanet.export.artifact import read_source

    source = read_source(onnx_path, "tensorrt").get("precision")
    if not prefers_typed(source, precision, trt_version):
        return onnx_path, "as given"
    found = _matching_sibling(onnx_path, precision)
    if found is not None:
        return found, f"typed sibling {found.name} (strongly typed build)"
    out = typed_sibling(onnx_path, precision)
    if precision == "int8" and calib is not None:
        from fsanet.export.quantize import FLOAT_OPS, quantize_onnx

        quantize_onnx(onnx_path, calib, out, FLOAT_OPS, faces)
        return out, f"wrote the Q/DQ {out.name} (strongly typed build)"
    crops = faces if faces is not None else (calib.crops if calib is not None else None)
    if precision == "fp16" and crops is not None:
        from fsanet.export.fp16 import to_fp16

        to_fp16(onnx_path, out, crops, "the verification faces" if faces is not None else "the calibration faces")
        return out, f"wrote {out.name} (strongly typed build)"
    return onnx_path, "float ONNX with builder flags (no faces to verify a typed file on)"


INT8_FLOAT = ("fp32", "fp16")


def check_int8_float(int8_float: str, precision: str | None = None) -> None:
    """`int8_float`: the type of a strongly typed INT8 engine's float parts (fsanet.export.trt_qdq_fp16)."""
    if int8_float not in INT8_FLOAT:
        raise DataError(f"--int8-float-parts {int8_float!r}: choose fp32 or fp16")
    if int8_float == "fp16" and precision not in (None, "int8"):
        raise DataError(f"--int8-float-parts fp16 applies to INT8 engines (tensorrt-int8), not {precision}")


def fp16_float_source(onnx_path: Path, trt_version: str, calib, faces) -> tuple[Path, str]:
    """The FP16-float copy of the Q/DQ ONNX `onnx_path` for a strongly typed INT8 build: reused when
    it was made from this very file, else written now (verified on `faces`, else the calibration
    faces). TensorRT 8.x has no strong typing and reads opsets up to 17 only, so it is refused."""
    from fsanet.export.artifact import read_source
    from fsanet.export.trt_qdq_fp16 import sibling, to_qdq_fp16

    from fsanet.files import sha256
    from fsanet.manifest import read_sidecar

    if int(str(trt_version).split(".")[0]) < 10:
        raise DataError(
            f"--int8-float-parts fp16 needs a strongly typed build (TensorRT 10 or later); TensorRT {trt_version} "
            "runs the float parts of implicit INT8 in FP16 already"
        )
    if read_source(onnx_path, "tensorrt").get("precision") != "int8":
        raise DataError(
            f"--int8-float-parts fp16 builds from the Q/DQ ONNX, and {onnx_path.name} is not one: give the file of "
            "`fsanet export --to onnx-int8`, or a calibration set to write it"
        )
    out = sibling(onnx_path)
    made = read_sidecar(out) if out.is_file() else None
    made_from = (((made or {}).get("quantization") or {}).get("int8_source") or {}).get("sha256")
    if made is not None and made_from == sha256(onnx_path):
        return out, f"FP16-float sibling {out.name}"
    crops = faces if faces is not None else (calib.crops if calib is not None else None)
    to_qdq_fp16(onnx_path, out, crops, "the verification faces" if faces is not None else "the calibration faces")
    return out, f"wrote the FP16-float {out.name}"


# -- the build ---------------------------------------------------------------------------------
def _batches(facts, max_batch: int, opt_batch: int | None, dla: bool = False) -> tuple[tuple, tuple, tuple]:
    if dla:  # DLA takes no dynamic dimensions: one static shape, batch `opt_batch` (default 1)
        from fsanet.export.trt_dla import dla_shapes

        return dla_shapes(facts.input_shape, opt_batch)
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


def _network(trt, builder, logger, messages, path: Path, plan: BuildPlan, nodes):
    flag = trt.NetworkDefinitionCreationFlag
    flags = 1 << int(flag.STRONGLY_TYPED) if plan.strongly_typed else 0
    if int(trt.__version__.split(".")[0]) < 10:
        flags |= 1 << int(flag.EXPLICIT_BATCH)  # implicit batch is the default before TensorRT 10
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(path)) or parser.num_errors:
        errors = _parser_errors(parser, nodes) or messages.errors() or ["no message from the parser"]
        raise ExportError("tensorrt", f"TensorRT's ONNX parser rejected {path.name}: " + " | ".join(errors))
    return network, parser


def _load_timing_cache(config, path: Path | None):
    data = path.read_bytes() if path is not None and path.is_file() else b""
    cache = config.create_timing_cache(data)
    if cache is None:  # NvInfer.h createTimingCache: nullptr on a blob it cannot read
        raise DataError(f"{path}: TensorRT cannot read this timing cache; delete it or give another")
    if not config.set_timing_cache(cache, ignore_mismatch=False):
        raise DataError(f"{path}: a timing cache from another GPU or TensorRT version; delete it or give another")


def _profile(builder, name: str, shapes) -> object:
    profile = builder.create_optimization_profile()
    profile.set_shape(name, *shapes)
    return profile


def _calibration(trt, builder, config, cuda, calib, facts, key, cache_file, opts):
    from fsanet.export.trt_calibrator import CalibrationFeed, calibration_shape, entropy_calibrator
    from fsanet.runtimes.base import InputFormat

    shape = calibration_shape(facts.input_shape, opts["calib_batch"])  # a static-batch ONNX keeps its batch
    device = cuda.malloc(int(np.prod(shape)) * 4)

    def upload(x: np.ndarray) -> int:
        cuda.upload(device, x)
        cuda.sync()  # TensorRT reads the batch right after get_batch returns
        return device

    fmt = InputFormat.from_manifest(opts["source_manifest"])  # the layout, colour and scale the ONNX takes
    feed = CalibrationFeed(calib, shape[0], cache_file, key, upload, fmt)
    calibrator = entropy_calibrator(trt, feed)
    config.int8_calibrator = calibrator
    if not config.set_calibration_profile(_profile(builder, facts.input_name, (shape, shape, shape))):
        raise ExportError("tensorrt", f"TensorRT refused the calibration profile {shape}")
    return feed, calibrator


def _platform_checks(builder, plan: BuildPlan, header: list) -> dict:
    """What the GPU does fast (IBuilder::platformHasFastFp16/Int8); a slow precision is said, not refused."""
    fast = {"fast_fp16": bool(builder.platform_has_fast_fp16)}
    if hasattr(builder, "platform_has_fast_int8"):  # deprecated in 10.5
        fast["fast_int8"] = bool(builder.platform_has_fast_int8)
    wanted = {"fp16": "fast_fp16", "int8": "fast_int8"}.get(plan.precision)
    if wanted and fast.get(wanted) is False:
        header.append(f"warning: this GPU has no fast {plan.precision.upper()}: the engine may be slower than FP32")
    return fast


def _dla(trt, builder, config, network, opts, shapes) -> dict | None:
    """Layers to DLA core `dla_core` (Xavier, Orin AGX/NX), the rest to the GPU when fallback is
    allowed (the plan's flags: GPU_FALLBACK, else DIRECT_IO); the layers DLA cannot run are
    listed before the build, and refused with gpu_fallback=False."""
    core = opts["dla_core"]
    if core is None:
        return None
    cores = int(getattr(builder, "num_DLA_cores", 0))
    if not 0 <= core < cores:
        raise DataError(f"--dla-core {core}: this device has {cores} DLA core(s)")
    most = int(getattr(builder, "max_DLA_batch_size", 0))
    if most and shapes[0][0] > most:
        raise DataError(f"--dla-core: batch {shapes[0][0]} is above this DLA's maximum of {most}")
    config.default_device_type = trt.DeviceType.DLA
    config.DLA_core = int(core)
    layers = [network.get_layer(i) for i in range(network.num_layers)]
    cannot = [layer.name for layer in layers if not config.can_run_on_DLA(layer)]
    if cannot and not opts["gpu_fallback"]:
        shown = ", ".join(cannot[:5]) + (", ..." if len(cannot) > 5 else "")
        raise DataError(
            f"--no-gpu-fallback: {len(cannot)} layers cannot run on DLA ({shown}); allow GPU fallback "
            "(drop --no-gpu-fallback) or build for the GPU"
        )
    return {"core": int(core), "gpu_fallback": opts["gpu_fallback"], "batch": int(shapes[0][0]),
            "cannot_run_on_dla": cannot}  # fmt: skip


def _layer_report(trt, runtime, serialized) -> str:
    """The engine inspector's JSON of the built engine (needs DETAILED profiling verbosity)."""
    engine = runtime.deserialize_cuda_engine(serialized)
    if engine is None:
        raise ExportError("tensorrt", "TensorRT built an engine it cannot deserialize")
    inspector = engine.create_engine_inspector()
    return inspector.get_engine_information(trt.LayerInformationFormat.JSON)


def _write_log(path: Path, header: list[str], messages) -> None:
    from fsanet.files import write_text

    lines = header + [f"[{severity}] {msg}" for severity, msg in (messages or [])]
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
    platform: dict
    dla: dict | None
    layers: str  # the engine inspector's JSON


def _configure(trt, builder, network, plan: BuildPlan, facts, shapes, opts, header) -> object:
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(opts["workspace_mb"]) << 20)
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED  # the layer report needs it
    for flag in plan.flags:
        config.set_flag(getattr(trt.BuilderFlag, flag))
    if plan.precision == "fp32":
        config.clear_flag(trt.BuilderFlag.TF32)  # FP32 means FP32, not Ampere's TF32 matmuls
    if opts["optimization_level"] is not None:
        if not hasattr(config, "builder_optimization_level"):  # TensorRT 8.6+
            raise DataError(f"TensorRT {trt.__version__} has no builder optimization level (8.6 and later)")
        config.builder_optimization_level = int(opts["optimization_level"])
    if config.add_optimization_profile(_profile(builder, facts.input_name, shapes)) < 0:
        raise ExportError("tensorrt", f"TensorRT refused the optimization profile {shapes} for '{facts.input_name}'")
    _load_timing_cache(config, opts["timing_cache"])
    return config


def _compile(trt, onnx_path: Path, tmp: str, precision: str, calib, opts: dict, header: list, messages) -> _Built:
    from fsanet.export import trt_onnx
    from fsanet.export.trt_calibrator import CacheKey, cache_path
    from fsanet.runtimes.tensorrt import Cuda, shared_logger

    from fsanet.files import atomic_write, sha256

    logger = shared_logger(trt)
    trt.init_libnvinfer_plugins(logger, "")  # the parser may map ops to TensorRT's standard plugins
    parsed, facts = trt_onnx.prepare(onnx_path, trt.__version__, tmp)
    on_dla = opts["dla_core"] is not None
    plan = plan_build(facts.precision, precision, trt.__version__, calib is not None, on_dla, opts["gpu_fallback"])
    shapes = _batches(facts, opts["max_batch"], opts["opt_batch"], on_dla)
    cuda = Cuda()
    try:
        gpu = cuda.device()
        header.append(f"GPU {gpu['name']} (sm {gpu['compute_capability']}), {plan}, profile {shapes}")
        builder = trt.Builder(logger)
        platform = _platform_checks(builder, plan, header)
        network, _parser = _network(trt, builder, logger, messages, parsed, plan, facts.nodes)
        config = _configure(trt, builder, network, plan, facts, shapes, opts, header)
        dla = _dla(trt, builder, config, network, opts, shapes)
        feed = cache_file = None
        if plan.calibrate:
            key = CacheKey(calib.sha256, sha256(onnx_path), trt.__version__)
            cache_file = cache_path(opts["calib_cache_dir"], key)
            feed, _keep = _calibration(trt, builder, config, cuda, calib, facts, key, cache_file, opts)
        serialized = builder.build_serialized_network(network, config)
        if feed is not None:
            feed.raise_error()  # an exception inside a calibrator callback fails the build
        if serialized is None:
            errors = messages.errors() or ["no error message; see the build log"]
            raise ExportError("tensorrt", "TensorRT could not build the engine: " + " | ".join(errors))
        timing = opts["timing_cache"]
        if timing is not None:
            blob = config.get_timing_cache().serialize()
            atomic_write(timing, lambda t: Path(t).write_bytes(bytes(blob)))
        engine = Path(tmp) / "candidate.engine"
        engine.write_bytes(bytes(serialized))
        runtime = trt.Runtime(logger)
        if dla is not None:
            runtime.DLA_core = dla["core"]
        layers = _layer_report(trt, runtime, serialized)
        if dla is not None:  # where TensorRT put each layer, as its build log lists them
            from fsanet.export.trt_dla import placement

            where = placement(messages)
            dla["running_on_dla"], dla["running_on_gpu"] = (where["dla"], where["gpu"]) if where else (None, None)
    finally:
        cuda.close()
    return _Built(engine, plan, facts, shapes, gpu, feed, cache_file, platform, dla, layers)


def _trtexec(built: _Built, onnx_name: str, engine_name: str, opts: dict) -> str:
    from fsanet.export.trt_command import trtexec_command
    from fsanet.export.trt_layers import report_path

    timing = opts["timing_cache"]
    return trtexec_command(
        onnx_name,
        engine_name,
        input_name=built.facts.input_name,
        shapes=built.shapes,
        dynamic_batch=built.facts.dynamic_batch,
        strongly_typed=built.plan.strongly_typed,
        flags=built.plan.flags,
        workspace_mb=opts["workspace_mb"],
        calib_cache=built.cache_file.name if built.cache_file else None,
        timing_cache=timing.name if timing else None,
        optimization_level=opts["optimization_level"],
        dla_core=built.dla["core"] if built.dla else None,
        gpu_fallback=bool(built.dla and built.dla["gpu_fallback"]),
        layer_info=report_path(engine_name).name,
        fp32_no_tf32=built.plan.precision == "fp32",
    )


def _engine_manifest(source: dict, built: _Built, trt_version: str, calib, opts: dict, names: dict) -> dict:
    """The engine's manifest: the ONNX file's (`source`, from `artifact.read_source`), derived like
    every target's, plus what only an engine has. Pure, so it is tested without TensorRT.
    `names`: the build log, layer report and engine file names, and why this ONNX was chosen."""
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
            "builder_optimization_level": opts["optimization_level"],
            "profiling_verbosity": "DETAILED",
            "layer_report": names["layers"],
            "platform": built.platform,
            "dla": built.dla,
            "source_choice": names["source_choice"],
            "trtexec": _trtexec(built, source["file"], names["engine"], opts),
        },
        gpu=built.gpu,
        build_log=names["log"],
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
            cache_key=f"{built.cache_file.name}.json",
            cache_reused=built.feed.used_cache,
        )
    return manifest


def check_dla_options(dla_core, gpu_fallback: bool, precision: str | None = None) -> None:
    """The DLA options alone, before TensorRT is needed: a core number, no-fallback only with a
    core, and FP16/INT8 only (DLA has no FP32)."""
    if dla_core is None:
        if not gpu_fallback:
            raise DataError("--no-gpu-fallback applies to DLA builds only; give --dla-core N with it")
        return
    if isinstance(dla_core, bool) or not isinstance(dla_core, int) or dla_core < 0:
        raise DataError(f"--dla-core {dla_core!r}: a DLA core is a number from 0 (Xavier and Orin AGX/NX have 0 and 1)")
    if precision == "fp32":
        raise DataError("--dla-core: DLA runs FP16 or INT8 only; build tensorrt-fp16 or tensorrt-int8 for a DLA core")


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
    optimization_level: int | None = None,
    dla_core: int | None = None,
    gpu_fallback: bool = True,
    typed: bool = True,
    int8_float: str = "fp32",
) -> dict:
    """Build `output` (.engine/.plan) from an fsanet ONNX export and return its manifest.

    The optimization profile covers batches 1..`max_batch`, tuned for `opt_batch` (default
    min(16, max_batch)); the runtime splits larger batches.
    `calib` (an `fsanet.calib.CalibrationSet`) feeds implicit INT8 from a float ONNX; its cache goes
    to `calib_cache_dir` (default: next to the engine), keyed by the set's sha256, the ONNX's sha256
    and the TensorRT version. `timing_cache` is read if present and written back. `verify` (crops):
    drift from the ONNX through ONNX Runtime, recorded before the engine is written. TensorRT's log
    goes to `<output>.log` whether the build succeeds or not, the layer report to
    `<output>.layers.json`. `typed`: on TensorRT >= 10, build FP16/INT8 from the typed ONNX
    (see choose_source). `dla_core`: put layers on that DLA core (GPU fallback unless
    `gpu_fallback=False`), with one static shape of batch `opt_batch` (default 1: DLA takes no
    dynamic dimensions); see fsanet.export.trt_dla. `optimization_level`: TensorRT's builder
    optimization level (8.6+). `int8_float="fp16"`: a strongly typed INT8 engine (TensorRT >= 10)
    from the FP16-float copy of the Q/DQ ONNX (fsanet.export.trt_qdq_fp16), so its float parts
    run in FP16 as implicit INT8's do.
    """
    from fsanet.export import artifact
    from fsanet.export.trt_layers import report_path
    from fsanet.runtimes.tensorrt import CAPTURE, import_tensorrt

    from fsanet.files import write_text

    onnx_path, output = Path(onnx_path), Path(output)
    if output.suffix not in (".engine", ".plan"):
        raise DataError(f"{output}: an engine file must end in .engine or .plan (runtimes.open picks by suffix)")
    if not onnx_path.is_file():
        raise DataError(f"{onnx_path}: no such ONNX file")
    if workspace_mb < 1 or calib_batch < 1:
        raise DataError(f"workspace ({workspace_mb} MiB) and calibration batch ({calib_batch}) must be positive")
    check_dla_options(dla_core, gpu_fallback, precision)
    check_int8_float(int8_float, precision)
    trt = import_tensorrt()
    if dla_core is not None:
        from fsanet.export.trt_dla import check_dla_version, strongly_typed_dla

        check_dla_version(trt.__version__)
        typed = typed and strongly_typed_dla(trt.__version__)  # DLA on 8.5-10.7: trtexec's weakly typed set-up
    given = onnx_path
    onnx_path, choice = (
        choose_source(onnx_path, precision, trt.__version__, calib, verify) if typed else (onnx_path, "as given")
    )
    if int8_float == "fp16":
        if not typed:
            raise DataError(
                "--int8-float-parts fp16 needs a strongly typed build (typed=True; DLA before TensorRT 11 is weak)"
            )
        onnx_path, how = fp16_float_source(onnx_path, trt.__version__, calib, verify)
        choice = f"{choice}; {how}"
    source = artifact.read_source(onnx_path, "tensorrt")
    opts = {
        "max_batch": max_batch,
        "opt_batch": opt_batch,
        "workspace_mb": workspace_mb,
        "timing_cache": Path(timing_cache) if timing_cache else None,
        "calib_batch": calib_batch,
        "calib_cache_dir": Path(calib_cache_dir) if calib_cache_dir else output.parent,
        "source_manifest": source,
        "optimization_level": optimization_level,
        "dla_core": dla_core,
        "gpu_fallback": gpu_fallback,
    }
    log_path, layers_path = Path(f"{output}.log"), report_path(output)
    header = [f"fsanet: {output.name} from {onnx_path.name} ({choice}; given {given.name}), {precision}, "
              f"TensorRT {trt.__version__}"]  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp, CAPTURE.capture("VERBOSE" if verbose else "INFO") as messages:
        try:
            built = _compile(trt, onnx_path, tmp, precision, calib, opts, header, messages)
        finally:
            _write_log(log_path, header, messages)
        names = {"log": log_path.name, "layers": layers_path.name, "engine": output.name, "source_choice": choice}
        manifest = _engine_manifest(source, built, trt.__version__, calib, opts, names)
        if verify is not None:  # against the ONNX file it was built from, through ONNX Runtime
            artifact.verify(
                built.engine, manifest, onnx_path, verify, "tensorrt", against=onnx_path.name, faces=verify_name
            )
        written = artifact.write_copy(output, built.engine, manifest)
        write_text(layers_path, built.layers if built.layers.endswith("\n") else built.layers + "\n")
        return written
