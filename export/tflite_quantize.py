"""FP32 TFLite -> FP16, dynamic-range and INT8 TFLite with Google's AI Edge Quantizer, the
LiteRT quantizer that works on the flatbuffer itself (no TensorFlow, no global state).

Why not TensorFlow's TFLiteConverter: it needs a TensorFlow graph, and the one route from this
project's ONNX to TensorFlow (onnx2tf 1.29) mis-converts the fusion's regression head (it treats
the 4-D (batch, member, stage, angle) tensors as images and transposes them: 2.75 degree mean
drift, measured). LiteRT-Torch's FP32 file is exact, so it is quantized directly.

INT8 (measured on the authors' fusion, docs/int8.md):
- convolutions: int8 weights (per channel) and int8 activations, calibrated on the set;
- the dense structure-mapping layers and the capsule transforms (about three quarters of the
  values): int8 weights, float compute (weight-only);
- everything else stays float: quantizing the routing, normalisations and the SSR head costs
  degrees (plain full-model PTQ: 8 degree mean drift, and DIV fails to run at all).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
from fsanet.export import artifact

from fsanet.errors import BackendUnavailable, DataError, ExportError

TARGET_PRECISION = {"tflite-fp16": "fp16", "tflite-dynamic": "dynamic-int8", "tflite-int8": "int8"}  # as in tensorrt
PRECISIONS = tuple(TARGET_PRECISION.values())
STATIC_INT8_OPS = ("CONV_2D",)  # the default: measured fastest and most accurate
WEIGHT_ONLY_OPS = ("FULLY_CONNECTED", "BATCH_MATMUL")
# op types the accuracy search tries to move to full INT8, in this order
INT8_CANDIDATES = ("CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "MAX_POOL_2D", "RELU", "TANH", "ADD", "MUL")


def _quantizer(float_path: Path):
    try:
        from ai_edge_quantizer import quantizer
    except ImportError as e:
        raise BackendUnavailable("ai-edge-quantizer", "tflite-export") from e
    return quantizer.Quantizer(str(float_path))


def _op_name(op: str):
    from ai_edge_quantizer import qtyping

    try:
        return qtyping.TFLOperationName(op)
    except ValueError as e:
        known = ", ".join(o.value for o in qtyping.TFLOperationName if o.value.isupper())
        raise DataError(f"TFLite op type {op!r}: the quantizer does not know it; known: {known}") from e


def graph_op_types(path: Path) -> dict[str, int]:
    """Op type -> count in a TFLite file."""
    from ai_edge_quantizer.utils import tfl_flatbuffer_utils as tfl

    model = tfl.read_model(str(path))
    counts: dict[str, int] = {}
    for graph in model.subgraphs:
        for op in graph.operators:
            code = model.operatorCodes[op.opcodeIndex]
            name = tfl.TFL_OP_CODE_TO_NAME.get(max(code.builtinCode, code.deprecatedBuiltinCode), "CUSTOM")
            counts[name] = counts.get(name, 0) + 1
    return counts


def _recipe(q, precision: str, static_ops: tuple[str, ...], matrices: str = "w8") -> None:
    """`matrices` (int8 only): the dense and capsule matrices' form, as export.int8_scopes.MATRICES."""
    from ai_edge_quantizer import qtyping

    if precision == "fp16":  # float16 weights, dequantized in the graph (TFLite's FP16 scheme)
        for op in ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D"):  # what float casting supports
            q.add_weight_only_config(".*", _op_name(op), 16, algorithm_key="float_casting")
    elif precision == "dynamic-int8":
        q.add_dynamic_config(".*", qtyping.TFLOperationName.ALL_SUPPORTED, 8)
    else:
        for op in WEIGHT_ONLY_OPS if matrices == "w8" else ():
            q.add_weight_only_config(".*", _op_name(op), 8)
        for op in WEIGHT_ONLY_OPS if matrices == "i8" else ():
            q.add_dynamic_config(".*", _op_name(op), 8)
        for op in static_ops:
            q.add_static_config(".*", _op_name(op), 8, 8)


def _calibration_data(float_path: Path, calib) -> dict:
    from fsanet.runtimes.tflite import interpreter_class

    signatures = interpreter_class()(model_path=str(float_path)).get_signature_list()
    key, spec = next(iter(signatures.items()))
    name = spec["inputs"][0]
    return {key: [{name: x} for x in calib.batches(batch_size=1)]}


def calibrate(float_path: Path, calib, ops: tuple[str, ...]):
    q = _quantizer(float_path)
    _recipe(q, "int8", ops)
    return q.calibrate(_calibration_data(float_path, calib), num_threads=os.cpu_count() or 1)


def quantize_buffer(float_path: Path, precision: str, static_ops: tuple[str, ...], qsvs, matrices: str = "w8") -> bytes:
    q = _quantizer(float_path)
    _recipe(q, precision, static_ops, matrices)
    result = q.quantize(qsvs if q.need_calibration else None, enable_progress_bar=False, enable_progress_report=False)
    return bytes(result.quantized_model)


def _measure(buf: bytes, manifest: dict, reference, faces: np.ndarray, stage: str) -> dict:
    """Drift of a quantized flatbuffer from `reference` (angles on `faces`), through LiteRT."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "candidate.tflite"
        path.write_bytes(buf)
        return artifact.measure_drift(path, reference, faces, stage, manifest)


def quantize_tflite(
    float_path,
    output,
    precision: str,
    reference: np.ndarray,
    faces: np.ndarray,
    faces_name: str,
    calib=None,
    static_ops: tuple[str, ...] = STATIC_INT8_OPS,
    max_drift: float | None = None,
    reference_name: str = "float ONNX",
) -> dict:
    """Write `output`, a quantized copy of `float_path` (an fsanet FP32 TFLite export), with its
    manifest. `reference`: the float model's angles on `faces` (`reference_name`: whose), which
    drift is measured against. `max_drift` (INT8 only): search `INT8_CANDIDATES` for the op types
    that keep the mean drift within it, instead of using `static_ops`."""
    from importlib.metadata import version

    float_path, output = Path(float_path), Path(output)
    stage = next(t for t, p in TARGET_PRECISION.items() if p == precision)
    manifest = artifact.derived_manifest(float_path, stage, precision=precision)
    if precision == "int8" and calib is None:
        raise DataError(f"--to {stage} needs --calib calib.npz (build one with `fsanet calib build`)")
    manifest["tools"] = dict(manifest["tools"] or {}, **{"ai-edge-quantizer": version("ai-edge-quantizer")})
    qsvs, search = None, None
    if precision == "int8":
        manifest["calibration"] = artifact.calibration_record(calib)
        qsvs = calibrate(float_path, calib, INT8_CANDIDATES if max_drift is not None else static_ops)
        if max_drift is not None:
            static_ops, search = _search(float_path, manifest, qsvs, reference, faces, max_drift)
    buf = quantize_buffer(float_path, precision, static_ops, qsvs)
    manifest["quantization"] = describe(float_path, precision, static_ops, search)
    with tempfile.TemporaryDirectory() as tmp:
        candidate = Path(tmp) / output.name
        candidate.write_bytes(buf)
        artifact.verify(candidate, manifest, reference, faces, stage, against=reference_name, faces=faces_name)
        return artifact.write_copy(output, candidate, manifest)


def describe(float_path: Path, precision: str, static_ops, search, matrices: str = "w8", present=None) -> dict:
    """The manifest's `quantization`: which op types hold which form. `present`: the float file's
    op types when the caller has them already (graph_op_types)."""
    present = graph_op_types(float_path) if present is None else present
    if precision == "fp16":
        weights = {"float16 weights": ["FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D"]}
    elif precision == "dynamic-int8":
        weights = {"int8 weights, activations quantized at run time": ["all the quantizer supports"]}
    else:
        weights = {
            "int8 weights and activations": list(static_ops),
            "int8 weights, float compute": list(WEIGHT_ONLY_OPS) if matrices == "w8" else [],
        }
        if matrices == "i8":
            weights["int8 weights, activations quantized at run time"] = list(WEIGHT_ONLY_OPS)
    quantized = {op for ops in weights.values() for op in ops}
    return dict(weights, float=sorted(op for op in present if op not in quantized), search=search)


def _search(float_path, manifest, qsvs, reference, faces, max_drift: float):
    """Greedy (`artifact.Search.grow`): add each candidate op type to the INT8 set, keep it when
    the drift holds."""
    present = graph_op_types(float_path)

    def measure(ops: tuple[str, ...]) -> dict:
        return _measure(quantize_buffer(float_path, "int8", ops, qsvs), manifest, reference, faces, "tflite-int8")

    search = artifact.Search(max_drift, "int8", measure)
    chosen = search.grow(op for op in INT8_CANDIDATES if op in present)
    if not chosen:
        first = search.trajectory[0]["drift_mean_deg"] if search.trajectory else None
        raise ExportError(
            "tflite-int8",
            f"no op type can go to INT8 within a mean drift of {max_drift} degrees "
            f"(first try: {first if first is None else round(first, 3)}); raise --int8-max-drift or use tflite-dynamic",
        )
    return chosen, search.record(chosen)
