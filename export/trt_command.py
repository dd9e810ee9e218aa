"""The `trtexec` command that builds the same engine as `fsanet.export.tensorrt.build_engine`
(recorded in every engine manifest, so a Jetson engineer can rebuild or compare with NVIDIA's
own tool). Pure: no TensorRT needed.

Flags as trtexec's help defines them (NVIDIA/TensorRT, samples/common/sampleOptions.cpp at
release/8.5 and release/10.3): --onnx, --saveEngine, --minShapes/--optShapes/--maxShapes
(name:NxCxHxW), --stronglyTyped (10.x), --fp16, --int8, --calib=<cache> (reads a calibration
cache), --noTF32, --memPoolSize=workspace:<MiB> (no suffix = MiB in both), --timingCacheFile,
--builderOptimizationLevel (8.6+), --useDLACore=N, --allowGPUFallback, --profilingVerbosity=detailed,
--exportLayerInfo=<json>, --skipInference. For --useDLACore trtexec itself sets
PREFER_PRECISION_CONSTRAINTS and, without --allowGPUFallback, DIRECT_IO (sampleEngines.cpp).
"""

from __future__ import annotations

import shlex


def _shape(name: str, shape) -> str:
    return f"{name}:{'x'.join(str(int(d)) for d in shape)}"


def trtexec_command(
    onnx: str,
    engine: str,
    *,
    input_name: str,
    shapes: tuple,
    strongly_typed: bool,
    flags: tuple[str, ...],
    workspace_mb: int,
    calib_cache: str | None = None,
    timing_cache: str | None = None,
    optimization_level: int | None = None,
    dla_core: int | None = None,
    gpu_fallback: bool = False,
    layer_info: str | None = None,
    fp32_no_tf32: bool = False,
    dynamic_batch: bool | None = None,
) -> str:
    """One shell line; `shapes` is (min, opt, max), `flags` the trt.BuilderFlag names set.
    `dynamic_batch`: the ONNX file's batch is dynamic, so trtexec needs the shapes even when
    min = opt = max (a DLA build); None: give them when the profile is a range."""
    from fsanet.export.trt_dla import IMPLICIT_IN_TRTEXEC

    args = ["trtexec", f"--onnx={onnx}", f"--saveEngine={engine}"]
    lo, opt, hi = shapes
    if dynamic_batch or (dynamic_batch is None and not lo == opt == hi):
        args += [f"--minShapes={_shape(input_name, lo)}", f"--optShapes={_shape(input_name, opt)}"]
        args += [f"--maxShapes={_shape(input_name, hi)}"]
    if strongly_typed:
        args.append("--stronglyTyped")
    for flag in flags:
        if flag in ("FP16", "INT8"):
            args.append(f"--{flag.lower()}")
        elif flag in IMPLICIT_IN_TRTEXEC and dla_core is not None:
            continue  # trtexec sets these itself for --useDLACore (--allowGPUFallback below)
        else:
            raise ValueError(f"no trtexec flag for BuilderFlag {flag}")
    if "INT8" in flags and calib_cache:
        args.append(f"--calib={calib_cache}")
    if fp32_no_tf32:
        args.append("--noTF32")
    args.append(f"--memPoolSize=workspace:{int(workspace_mb)}")
    if timing_cache:
        args.append(f"--timingCacheFile={timing_cache}")
    if optimization_level is not None:
        args.append(f"--builderOptimizationLevel={int(optimization_level)}")
    if dla_core is not None:
        args.append(f"--useDLACore={int(dla_core)}")
        if gpu_fallback:
            args.append("--allowGPUFallback")
    args.append("--profilingVerbosity=detailed")
    if layer_info:
        args.append(f"--exportLayerInfo={layer_info}")
    args.append("--skipInference")
    return " ".join(shlex.quote(a) for a in args)
