"""`fsanet check DIR --build tensorrt-fp16,tensorrt-int8`: TensorRT engines built on the device
from the kit's ONNX files (an engine runs only on the GPU and TensorRT version that built it),
with `fsanet.export.tensorrt.build_engine`, then checked like every other artifact.

FP32/FP16 come from the kit's FP32 ONNX; INT8 from its INT8 (Q/DQ) ONNX when the kit has one
(explicit quantization), else from the FP32 ONNX calibrated on the kit's calib.npz.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from fsanet.kit import layout

from fsanet.errors import BackendUnavailable, DataError

TARGETS = ("tensorrt-fp32", "tensorrt-fp16", "tensorrt-int8")


def parse_targets(text: str) -> tuple[str, ...]:
    targets = tuple(t.strip() for t in text.split(",") if t.strip())
    bad = [t for t in targets if t not in TARGETS]
    if bad or not targets:
        raise DataError(f"--build {text!r}: takes a comma-separated list of {', '.join(TARGETS)}")
    return targets


def tensorrt_source(arts: list[layout.Artifact], precision: str) -> layout.Artifact | None:
    """The kit's first ONNX file of `precision` that TensorRT can parse (an INT8 file with ONNX
    Runtime's dynamic int8 products, `fsanet export --int8-objective`'s `i8` scopes, is not one)."""
    from fsanet.export.int8_products import runs_on_tensorrt

    onnx = (a for a in arts if a.path.suffix == ".onnx" and a.precision == precision)
    return next((a for a in onnx if precision != "int8" or runs_on_tensorrt(a.path)), None)


def build_engines(bundle: layout.Bundle, targets, out_dir: Path, crops) -> list[layout.Artifact]:
    """Build each target into `out_dir`, verified on the golden crops against its ONNX."""
    if importlib.util.find_spec("tensorrt") is None:
        raise BackendUnavailable(
            f"--build {','.join(targets)}: TensorRT (on a Jetson: apt install python3-libnvinfer)", "tensorrt"
        )
    from fsanet.export.targets import artifact_name
    from fsanet.export.tensorrt import TARGET_PRECISION, build_engine

    arts = bundle.artifacts()
    float_onnx, int8_onnx = tensorrt_source(arts, "fp32"), tensorrt_source(arts, "int8")
    if float_onnx is None:
        raise DataError(f"{bundle.folder}: --build needs the FP32 ONNX in the kit; bundle it with the other files")
    built = []
    for target in targets:
        source, calib = float_onnx, None
        if target == "tensorrt-int8" and int8_onnx is not None:
            source = int8_onnx
        elif target == "tensorrt-int8":
            calib = _calib(bundle)
        out = out_dir / artifact_name(float_onnx.path.stem, target)
        m = build_engine(source.path, out, TARGET_PRECISION[target], calib, verify=crops, verify_name="golden set")
        built.append(layout.Artifact(out.name, out, "tensorrt", m.get("precision", TARGET_PRECISION[target]), None))
    return built


def _calib(bundle: layout.Bundle):
    path = bundle.calib_path()
    if path is None:
        raise DataError(
            f"{bundle.folder}: --build tensorrt-int8 needs a Q/DQ INT8 ONNX in the kit (`fsanet export --to "
            "onnx-int8`) or a calibration set (`fsanet bundle ... --calib calib.npz`); make the kit again with one "
            "of them"
        )
    from fsanet import calib

    return calib.load(path)
