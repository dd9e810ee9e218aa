"""INT8 matrix products for ONNX Runtime: the large constant MatMul weights (the capsule
transforms and the structure-mapping layers, about three quarters of the fusion's values) as
int8, multiplied with activations quantized on every call (onnxruntime.quantization's dynamic
quantization: DynamicQuantizeLinear + MatMulInteger, which ONNX Runtime fuses into one
DynamicQuantizeMatMul kernel).

Why (measured on the authors' fusion, ONNX Runtime 1.32, Zen 3 with AVX2 only): weight-only
int8 matrices are dequantized to float on every call, and the capsule transform's
dequantization was the slowest node of the INT8 file; as int8 products the same weights are
read as int8 and the product runs in integers, so the file is less than half the float one's
size at the float file's speed. No calibration: the activation scale is taken per call.

ONNX Runtime only: TensorRT's ONNX parser takes neither DynamicQuantizeLinear nor MatMulInteger
(onnx-tensorrt's operator table for TensorRT 8.5, JetPack 5's), so such a file cannot feed
`--to tensorrt-int8`.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

# ops that only ONNX Runtime runs: a file holding one is no TensorRT source
DYNAMIC_OPS = ("DynamicQuantizeLinear", "MatMulInteger", "DynamicQuantizeMatMul", "MatMulIntegerToFloat")


def large_constant_products(model, min_values: int) -> list[str]:
    """MatMul nodes with a float constant operand of at least `min_values` values. Gemm is left
    float: the quantizer rewrites it into a MatMul of another name first (and the fusion's two
    are 6,720 values each)."""
    inits = {i.name: i for i in model.graph.initializer}

    def large(name: str) -> bool:
        return name in inits and inits[name].data_type == 1 and int(np.prod(inits[name].dims)) >= min_values

    return [n.name for n in model.graph.node if n.op_type == "MatMul" and any(map(large, n.input[:2]))]


def int8_products(model, min_values: int):
    """`model` (an ONNX ModelProto, float or Q/DQ) with its large constant MatMul products in
    int8 (dynamic activations). Returns (the new model, what its manifest says of it).
    Per-tensor weight scales: ONNX Runtime 1.32 refuses per-column zero points on the capsules'
    3-D weights."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from fsanet.scoped import logger_level

    nodes = large_constant_products(model, min_values)
    if not nodes:
        return model, {"int8_product_nodes": [], "int8_product_values": 0}
    with tempfile.TemporaryDirectory() as tmp, logger_level("root"):  # it advises pre-processing at WARNING
        src, dst = Path(tmp) / "in.onnx", Path(tmp) / "out.onnx"
        onnx.save(model, str(src))
        quantize_dynamic(
            src, dst, weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"], nodes_to_quantize=nodes,
            per_channel=False,
        )  # fmt: skip
        out = onnx.load(str(dst))
    return out, {"int8_product_nodes": sorted(nodes), "int8_product_values": _int8_weight_values(out)}


def _int8_weight_values(model) -> int:
    """Values of the int8 constants that MatMulInteger nodes multiply (what the file stores in int8)."""
    from onnx import TensorProto

    inits = {i.name: i for i in model.graph.initializer}
    names = {i for n in model.graph.node if n.op_type == "MatMulInteger" for i in n.input[:2] if i in inits}
    return sum(int(np.prod(inits[i].dims)) for i in names if inits[i].data_type == TensorProto.INT8)


def runs_on_tensorrt(path: str | Path) -> bool:
    """False for an ONNX file with ONNX Runtime's dynamic int8 products (no TensorRT source)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return not any(n.op_type in DYNAMIC_OPS for n in model.graph.node)
