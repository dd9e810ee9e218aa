"""Q/DQ INT8 ONNX -> the same Q/DQ graph with its float parts in FP16, for strongly typed
TensorRT builds (TensorRT >= 10).

Why: a strongly typed network keeps every tensor in the type the ONNX file gives it, so the Q/DQ
file of `--to onnx-int8` runs its float parts (the layers kept out of INT8, and what the
DequantizeLinear nodes produce) in FP32, where the implicit INT8 build let them fall back to
FP16. How TensorRT reads the types (onnx-tensorrt 10.1-GA, onnxOpImporters.cpp,
QuantDequantLinearHelper): in a strongly typed network a DequantizeLinear's output type is its
scale's type, and a QuantizeLinear's scale must have its input's type, which ONNX allows from
opset 19 (below 19 the parser casts the scale to the input's type). So: opset 19, every float
tensor (weights kept in float, Q/DQ scales, activations) in float16 by onnxconverter-common,
the graph's input and output left float32 so every runtime takes the same crops. TensorRT 10.0
reads opsets 9 to 20 (onnx-tensorrt docs/operators.md); TensorRT 8.x reads up to 17 and has no
strong typing, so it cannot take this file.

Checked here: the onnx checker (full check, with shape inference) and ONNX Runtime's CPU
provider, which runs it (FP16 kernels it lacks through its own casts); the drift from the float
ONNX on real faces is recorded in the manifest like every derived file's. Not built by TensorRT:
no TensorRT was available to this project.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from fsanet.errors import DataError, ExportError

STAGE = "onnx-int8-fp16"
OPSET = 19
QDQ = ("QuantizeLinear", "DequantizeLinear")


def _opset(model) -> int:
    return max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)


def convert(model):
    """The FP16-float copy of a Q/DQ INT8 onnx.ModelProto, checked by the onnx checker."""
    import onnx
    from onnx import TensorProto, version_converter
    from onnxconverter_common import float16

    if not any(n.op_type in QDQ for n in model.graph.node):
        raise DataError("not a Q/DQ INT8 ONNX (no QuantizeLinear/DequantizeLinear nodes); give the --to onnx-int8 file")
    if _opset(model) > OPSET:
        raise DataError(f"opset {_opset(model)} is above {OPSET}; this conversion takes Q/DQ files up to opset {OPSET}")
    if _opset(model) < OPSET:  # FP16 Q/DQ scales are ONNX from opset 19
        model = version_converter.convert_version(model, OPSET)
    with warnings.catch_warnings():  # it warns for each constant below float16's range
        warnings.simplefilter("ignore", UserWarning)
        half = float16.convert_float_to_float16(model, keep_io_types=True)
    try:
        onnx.checker.check_model(half, full_check=True)
    except onnx.checker.ValidationError as e:
        raise ExportError(STAGE, f"the FP16-float Q/DQ graph is not valid ONNX: {str(e)[:300]}") from e
    left = [
        n.name or n.op_type
        for n in half.graph.node
        if n.op_type in QDQ and _init_type(half.graph, n.input[1]) not in (None, TensorProto.FLOAT16)
    ]
    if left:
        raise ExportError(STAGE, f"{len(left)} Q/DQ scales stayed float32 (e.g. {', '.join(left[:3])})")
    return half


def _init_type(graph, name: str):
    for i in graph.initializer:
        if i.name == name:
            return i.data_type
    return None


def qdq_scale_types(model) -> dict[str, int]:
    """How many Q/DQ scales (initializers) of each ONNX data type name the graph holds."""
    from onnx import TensorProto

    counts: dict[str, int] = {}
    for n in model.graph.node:
        if n.op_type in QDQ:
            t = _init_type(model.graph, n.input[1])
            key = TensorProto.DataType.Name(t) if t is not None else "computed"
            counts[key] = counts.get(key, 0) + 1
    return counts


def sibling(int8_onnx: Path) -> Path:
    """Where the FP16-float copy of `<stem>-int8.onnx` goes: `<stem>-int8-fp16.onnx`."""
    return int8_onnx.with_name(f"{int8_onnx.stem}-fp16.onnx")


def to_qdq_fp16(int8_onnx: str | Path, output: str | Path, verify: np.ndarray, verify_name: str) -> dict:
    """Write the FP16-float copy of an fsanet Q/DQ INT8 export as `output`, verified on `verify`
    (crops) against the float ONNX it was quantized from (beside it), else against the INT8 file
    itself; returns the manifest."""
    import onnx
    from fsanet.export import artifact

    int8_onnx, output = Path(int8_onnx), Path(output)
    source = artifact.read_source(int8_onnx, STAGE)
    if source.get("precision") != "int8":
        raise DataError(
            f"{int8_onnx}: needs the INT8 Q/DQ ONNX of `fsanet export --to onnx-int8`, not {source.get('precision')}"
        )
    if verify is None or len(verify) == 0:
        raise DataError(f"{STAGE}: needs faces to verify the FP16 file on (--faces, or the calibration set)")
    half = convert(onnx.load(str(int8_onnx)))
    quantization = dict(source.get("quantization") or {})
    quantization["float_parts"] = (
        f"float16 (onnxconverter-common, opset {OPSET}: Q/DQ scales float16, so TensorRT's strongly typed "
        "DequantizeLinear outputs are FP16); input and output float32"
    )
    quantization["int8_source"] = {"file": source["file"], "sha256": source["sha256"]}
    manifest = artifact.derive(source, quantization=quantization, opset=OPSET)
    float_file = int8_onnx.parent / ((source.get("float_source") or {}).get("file") or "")
    reference = float_file if float_file.is_file() and float_file.suffix == ".onnx" else int8_onnx
    return artifact.verify_and_write_onnx(half, output, manifest, reference, verify, verify_name, STAGE)
