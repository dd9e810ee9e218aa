"""Float ONNX -> INT8 Q/DQ ONNX: NNCF post-training quantization, calibrated on a calibration set.

What goes to INT8 (measured on the authors' fusion, docs/int8.md):
- the convolution trunk, weights and activations (NNCF PTQ, per-tensor activation scales:
  ONNX Runtime's QLinearConv/QLinearAveragePool accept no per-channel activation zero points);
- the large constant weights of the dense structure-mapping layers and the capsule transforms
  (about three quarters of the fusion's values), weight-only: int8 + DequantizeLinear, with
  the matmuls themselves in float.
Activations are stored as symmetric int8 (`sign_activations`), the form TensorRT's explicit
quantization takes, so one Q/DQ file serves ONNX Runtime and TensorRT.
What stays float: routing softmax, divisions and square roots (L1 normalisation, squash),
reductions, elementwise products and sums, pooling, and the matmuls' activations. Quantizing
those gave errors of several degrees. `quantize_with_budget` searches which op types must stay
float for a drift limit, starting from everything NNCF can quantize.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from fsanet.export import artifact

from fsanet.errors import DataError, ExportError

STAGE = "onnx-int8"

# op types kept in float by default, in the order the accuracy search adds them: the matmuls
# first (ONNX Runtime 1.32 cannot run NNCF's per-channel 3-D matmul weights), then the most
# harmful to the angles
FLOAT_OPS = ("MatMul", "Gemm", "Softmax", "Div", "Sqrt", "ReduceSum", "ReduceMean", "Mul", "Add", "Sub", "AveragePool")
ALWAYS_FLOAT = ("AveragePool",)  # ORT's QLinearAveragePool rejects NNCF's scales for this graph
WEIGHT_ONLY_MIN_VALUES = 4096


def _nncf_quantize(model, calib, keep_float: tuple[str, ...], float_layers: tuple[str, ...] = ()):
    import nncf
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, QuantizationParameters

    from fsanet.scoped import logger_level

    dataset = nncf.Dataset(list(calib.batches(batch_size=1)), lambda x: {"input": x})
    advanced = AdvancedQuantizationParameters(activations_quantization_params=QuantizationParameters(per_channel=False))
    with logger_level("nncf"):  # NNCF lists every ignored node otherwise
        return nncf.quantize(
            model,
            dataset,
            subset_size=len(calib),
            target_device=nncf.TargetDevice.CPU,
            ignored_scope=nncf.IgnoredScope(
                names=sorted(float_layers), types=sorted(set(keep_float) | set(ALWAYS_FLOAT)), validate=False
            ),
            advanced_parameters=advanced,
        )


def compress_matmul_weights(model, min_values: int = WEIGHT_ONLY_MIN_VALUES) -> int:
    """Store large float constant inputs of MatMul/Gemm as int8 + per-column scale, dequantized
    in-graph (symmetric, last axis). Returns how many values now live in int8."""
    from onnx import helper, numpy_helper

    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    producer = {out: n.op_type for n in graph.node for out in n.output}
    replaced, values = {}, 0
    dq_nodes = []
    for node in graph.node:
        if node.op_type not in ("MatMul", "Gemm"):
            continue
        if any(producer.get(i) == "DequantizeLinear" for i in node.input[:2]):
            continue  # NNCF quantized this matmul itself (activation and weight)
        for k, name in enumerate(node.input[:2]):
            if name in replaced:
                node.input[k] = replaced[name]
                continue
            init = inits.get(name)
            if init is None or init.data_type != 1:  # float32 constants only
                continue
            w = numpy_helper.to_array(init)
            if w.size < min_values or w.ndim < 2:
                continue
            axis = w.ndim - 1
            if node.op_type == "Gemm" and k == 1 and any(a.name == "transB" and a.i for a in node.attribute):
                axis = 0
            reduce = tuple(i for i in range(w.ndim) if i != axis)
            scale = (np.abs(w).max(axis=reduce) / 127.0).astype(np.float32)
            scale[scale == 0] = 1.0
            shape = [1] * w.ndim
            shape[axis] = -1
            q = np.clip(np.round(w / scale.reshape(shape)), -127, 127).astype(np.int8)
            graph.initializer.remove(init)
            graph.initializer.extend(
                [
                    numpy_helper.from_array(q, f"{name}_int8"),
                    numpy_helper.from_array(scale, f"{name}_scale"),
                    numpy_helper.from_array(np.zeros_like(scale, dtype=np.int8), f"{name}_zero"),
                ]
            )
            out = f"{name}_dequantized"
            dq_nodes.append(
                helper.make_node(
                    "DequantizeLinear",
                    [f"{name}_int8", f"{name}_scale", f"{name}_zero"],
                    [out],
                    axis=axis,
                    name=f"{name}_DequantizeLinear",
                )
            )
            replaced[name] = node.input[k] = out
            values += w.size
    for i, dq in enumerate(dq_nodes):
        graph.node.insert(i, dq)
    return values


def sign_activations(model) -> int:
    """Re-express NNCF's uint8 activation quantizers as symmetric int8 (zero point 0) over the
    same calibrated range, so that TensorRT takes the Q/DQ file as explicitly quantized (it
    accepts signed symmetric int8 only). ONNX Runtime runs either at the same speed; the angles
    move by about 0.01 degree (measured on the authors' fusion). Returns the pairs changed."""
    from onnx import TensorProto, numpy_helper

    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    pairs: dict[tuple[str, str], list] = {}
    for node in graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") and len(node.input) == 3:
            zero = inits.get(node.input[2])
            if zero is not None and zero.data_type == TensorProto.UINT8:
                pairs.setdefault((node.input[1], node.input[2]), []).append(node)
    for scale_name, zero_name in pairs:
        scale = numpy_helper.to_array(inits[scale_name]).astype(np.float64)
        zero = numpy_helper.to_array(inits[zero_name]).astype(np.float64)
        reach = np.maximum(np.abs(-zero * scale), np.abs((255 - zero) * scale))  # the uint8 grid's range
        inits[scale_name].CopyFrom(numpy_helper.from_array((reach / 127).astype(np.float32), scale_name))
        inits[zero_name].CopyFrom(numpy_helper.from_array(np.zeros(zero.shape, np.int8), zero_name))
    if pairs:  # the recorded intermediate types are stale now; shape inference recomputes them
        del graph.value_info[:]
    return len(pairs)


def op_counts(model, op_types=None) -> dict[str, int]:
    """Op type -> number of nodes in an ONNX model (only `op_types` when given)."""
    found: dict[str, int] = {}
    for n in model.graph.node:
        if op_types is None or n.op_type in op_types:
            found[n.op_type] = found.get(n.op_type, 0) + 1
    return found


def int8_model(
    float_path: Path, calib, keep_float: tuple[str, ...], float_layers: tuple[str, ...] = (), weight_only: bool = True
):
    """Convert: the INT8 Q/DQ model of the float ONNX, and what its manifest says of it.
    `float_layers`: node names kept float (a recipe from `fsanet debug --max-drift`);
    `weight_only`: store the large float MatMul/Gemm constants as int8 too (smaller file; ONNX
    Runtime dequantizes them on every call)."""
    import onnx
    from fsanet.export.split_depthwise import split_image_depthwise

    model = onnx.load(str(float_path))
    split = split_image_depthwise(model)  # per-stream activation scales for a fusion's first block
    unknown = sorted(set(float_layers) - {n.name for n in model.graph.node})
    if unknown:  # NNCF's unvalidated ignored scope would quantize them without a word
        raise DataError(f"--int8-float-layers: {float_path.name} has no node named {', '.join(unknown)}; "
                        "take the names from `fsanet debug` on an INT8 file of this model")  # fmt: skip
    quantized = _nncf_quantize(model, calib, keep_float, float_layers)
    int8_values = compress_matmul_weights(quantized) if weight_only else 0
    signed = sign_activations(quantized)
    kept = sorted(set(keep_float) | set(ALWAYS_FLOAT))
    return quantized, {
        "method": "NNCF post-training quantization (Q/DQ), per-tensor activations; "
        + ("weight-only int8 for large MatMul/Gemm constants" if weight_only else "MatMul/Gemm constants float"),
        "activations": "int8, symmetric (zero point 0): TensorRT takes the file as explicitly quantized",
        "activation_quantizers_signed": signed,
        "float_op_types": kept,
        "float_layers": sorted(float_layers),
        "float_nodes": op_counts(quantized, kept),
        "quantize_nodes": op_counts(quantized, ("QuantizeLinear",)).get("QuantizeLinear", 0),
        "weight_only_int8_values": int8_values,
        "image_convolution_split_into_streams": split,
    }


def _write(model, manifest, quantization, search, calib, float_path, output, verify, verify_name) -> dict:
    manifest.update(quantization=dict(quantization, search=search), calibration=artifact.calibration_record(calib))
    return artifact.verify_and_write_onnx(model, output, manifest, float_path, verify, verify_name, STAGE)


def quantize_onnx(
    float_path: str | Path,
    calib,
    output: str | Path,
    keep_float: tuple[str, ...] = FLOAT_OPS,
    verify: np.ndarray | None = None,
    verify_name: str = "",
    search: dict | None = None,
    float_layers: tuple[str, ...] = (),
) -> dict:
    """Write an INT8 Q/DQ ONNX of `float_path` (an fsanet FP32 export) and its manifest.

    Returns the manifest. `verify`: real faces to measure drift against the float model on
    (default: the calibration crops themselves, which the manifest then says).
    """
    float_path, output = Path(float_path), Path(output)
    manifest = artifact.derived_manifest(float_path, STAGE, precision="int8")
    if verify is None:
        verify, verify_name = calib.crops, f"the {len(calib)} calibration faces"
    model, quantization = int8_model(float_path, calib, keep_float, float_layers)
    return _write(model, manifest, quantization, search, calib, float_path, output, verify, verify_name)


def quantize_with_budget(
    float_path, calib, output, max_drift: float, verify: np.ndarray, verify_name: str = ""
) -> dict:
    """Accuracy-controlled mode: start from quantizing everything NNCF can, then keep op types
    in float, most harmful first (`FLOAT_OPS` order), until the mean drift on `verify` holds.
    The trials go to the manifest's `quantization.search` (`artifact.Search`)."""
    import onnx

    float_path, output = Path(float_path), Path(output)
    manifest = artifact.derived_manifest(float_path, STAGE, precision="int8")
    reference = artifact.predict(float_path, verify, STAGE)  # the float model's angles, once
    built: dict = {}

    def measure(keep: tuple[str, ...]) -> dict:
        model, quantization = int8_model(float_path, calib, keep)
        built.clear()
        built[keep] = model, quantization
        with tempfile.TemporaryDirectory() as tmp:
            trial = Path(tmp) / "trial.onnx"
            onnx.save(model, str(trial))
            return artifact.measure_drift(trial, reference, verify, STAGE, manifest)

    search = artifact.Search(max_drift, "float", measure)
    keep = search.first_within(FLOAT_OPS[:n] for n in range(len(FLOAT_OPS) + 1))
    if keep is None:
        raise ExportError(STAGE, f"no INT8 graph met a mean drift of {max_drift} degrees: {search.trajectory}")
    model, quantization = built[keep]  # the trial that held is the file
    return _write(model, manifest, quantization, search.record(keep), calib, float_path, output, verify, verify_name)
