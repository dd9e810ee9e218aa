"""What TensorRT's ONNX parser needs from a graph, checked with the `onnx` package before a Jetson
spends minutes on a build, and the one rewrite TensorRT 8.x needs (opset 18 -> 17).

Sources: the ONNX-TensorRT operator matrices (branch release/8.5-GA: "TensorRT 8.5 supports
operators up to Opset 17"; TensorRT 10.0: "opset 9 to opset 20") and NVIDIA's quantization guide
(symmetric, signed INT8 only: Q/DQ zero points must be 0 and of type int8).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from fsanet.errors import ExportError

MIN_OPSET = 9
# ops the ONNX parser of TensorRT 8.5 (the oldest release we target) lists as supported
SUPPORTED_OPS = frozenset(
    """Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization Cast Ceil
    Celu Clip Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh CumSum DepthToSpace DequantizeLinear
    Div Dropout Einsum Elu Equal Erf Exp Expand EyeLike Flatten Floor Gather GatherElements GatherND Gemm
    GlobalAveragePool GlobalLpPool GlobalMaxPool Greater GreaterOrEqual GridSample GRU HardSwish HardSigmoid
    Identity If ImageScaler InstanceNormalization IsNaN LeakyRelu Less LessOrEqual Log LogSoftmax Loop LRN LSTM
    LpNormalization LpPool MatMul Max MaxPool Mean MeanVarianceNormalization Min Mod Mul Neg NonMaxSuppression
    NonZero Not OneHot Or Pad ParametricSoftplus Pow PRelu QuantizeLinear RandomNormal RandomNormalLike
    RandomUniform RandomUniformLike Range Reciprocal ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax
    ReduceMean ReduceMin ReduceProd ReduceSum ReduceSumSquare Relu Reshape Resize ReverseSequence RNN RoiAlign
    Round ScaledTanh Scan Scatter ScatterElements ScatterND Selu Shape Shrink Sigmoid Sign Sin Sinh Size Slice
    Softmax Softplus Softsign SpaceToDepth Split Sqrt Squeeze Sub Sum Tan Tanh ThresholdedRelu Tile TopK
    Transpose Trilu Unsqueeze Upsample Where Xor""".split()
)
# inputs TensorRT needs as build-time constants (ONNX-TensorRT matrix, "Restrictions")
CONSTANT_INPUTS = {"Squeeze": 1, "Unsqueeze": 1, "Slice": 3, "TopK": 1, "CumSum": 1}
# reductions whose `axes` became an input in opset 18 (ReduceSum already in 13)
REDUCE_AXES_18 = ("ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceMax", "ReduceMean")
REDUCE_AXES_18 += ("ReduceMin", "ReduceProd", "ReduceSumSquare")
# ops whose opset-18 form differs from opset 17 in ways the rewrite below does not handle
CHANGED_IN_18 = ("Pad", "Resize", "ScatterElements", "ScatterND", "LpPool", "Col2Im", "GroupNormalization")


def max_opset(trt_version: str) -> int:
    """The newest ONNX opset the parser of this TensorRT release reads."""
    major = int(str(trt_version).split(".")[0])
    return 17 if major < 10 else 20


@dataclass
class OnnxFacts:
    """What the builder needs to know about an ONNX file, and what TensorRT would reject in it."""

    path: Path
    opset: int
    input_name: str
    input_shape: tuple  # a str for a symbolic dimension, else an int
    input_dtype: str
    output_names: list[str]
    ops: Counter
    precision: str  # "fp32", "fp16" (float16 compute), "int8" (explicit Q/DQ)
    problems: list[str] = field(default_factory=list)
    nodes: list[tuple[str, str]] = field(default_factory=list)  # (name, op type), in graph order

    @property
    def dynamic_batch(self) -> bool:
        return not isinstance(self.input_shape[0], int) or self.input_shape[0] <= 0


def _dims(value_info) -> tuple:
    shape = value_info.type.tensor_type.shape
    return tuple(d.dim_param or "?" if not d.HasField("dim_value") else d.dim_value for d in shape.dim)


def _constants(graph) -> set[str]:
    return {i.name for i in graph.initializer} | {o for n in graph.node if n.op_type == "Constant" for o in n.output}


def _opset(model) -> int:
    return max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)


def _qdq_problems(graph) -> list[str]:
    """TensorRT quantizes symmetrically to signed int8: zero points must be int8 zeros."""
    from onnx import TensorProto, numpy_helper

    inits = {i.name: i for i in graph.initializer}
    bad = []
    for n in graph.node:
        if n.op_type not in ("QuantizeLinear", "DequantizeLinear") or len(n.input) < 3 or not n.input[2]:
            continue
        zp = inits.get(n.input[2])
        if zp is None:
            bad.append(f"{n.op_type} '{n.name}': zero point '{n.input[2]}' is not an initializer")
        elif zp.data_type != TensorProto.INT8:
            bad.append(f"{n.op_type} '{n.name}': {TensorProto.DataType.Name(zp.data_type).lower()} zero point")
        elif numpy_helper.to_array(zp).any():
            bad.append(f"{n.op_type} '{n.name}': non-zero zero point (asymmetric)")
    if bad:
        return [
            f"{len(bad)} Q/DQ nodes TensorRT cannot take (signed symmetric int8 only), e.g. {'; '.join(bad[:3])}; "
            "re-export it with `fsanet export --to onnx-int8` (symmetric int8 activations, "
            "fsanet.export.quantize.sign_activations) or build implicit INT8 from the float ONNX with --calib"
        ]
    return []


def _precision(graph, ops: Counter) -> str:
    from onnx import TensorProto

    if ops.get("QuantizeLinear") or ops.get("DequantizeLinear"):
        return "int8"
    half = any(i.data_type == TensorProto.FLOAT16 for i in graph.initializer)
    return "fp16" if half else "fp32"


def inspect_model(model, path: str | Path, trt_version: str | None = None) -> OnnxFacts:
    """Facts about `model` (an onnx.ModelProto) and the problems TensorRT `trt_version` would have
    with it (opset range checked only when a version is given)."""
    from onnx import TensorProto

    graph, problems = model.graph, []
    inits = {i.name for i in graph.initializer}
    inputs = [i for i in graph.input if i.name not in inits]
    ops = Counter(n.op_type for n in graph.node)
    if len(inputs) != 1:
        raise ExportError("tensorrt", f"{path}: expected one graph input, found {[i.name for i in inputs]}")
    x = inputs[0]
    shape = _dims(x)
    dtype = TensorProto.DataType.Name(x.type.tensor_type.elem_type).lower()
    facts = OnnxFacts(Path(path), _opset(model), x.name, shape, dtype, [o.name for o in graph.output], ops, "fp32")
    facts.precision = _precision(graph, ops)
    facts.nodes = [(n.name, n.op_type) for n in graph.node]
    if len(shape) != 4 or not all(isinstance(d, int) and d > 0 for d in shape[1:]):
        problems.append(f"input '{x.name}' has shape {shape}; TensorRT needs static C, H, W (only the batch dynamic)")
    if dtype != "float":
        problems.append(f"input '{x.name}' is {dtype}; the runtime feeds float32")
    unsupported = sorted(set(ops) - SUPPORTED_OPS)
    if unsupported:
        where = [f"{n.name or '?'} ({n.op_type})" for n in graph.node if n.op_type in unsupported][:5]
        problems.append(f"ops TensorRT 8.5's ONNX parser does not support: {unsupported} (nodes {', '.join(where)})")
    constants = _constants(graph)
    for n in graph.node:
        k = CONSTANT_INPUTS.get(n.op_type)
        if k is not None and len(n.input) > k and n.input[k] and n.input[k] not in constants:
            problems.append(f"{n.op_type} '{n.name}': input '{n.input[k]}' must be a constant for TensorRT")
    problems += _qdq_problems(graph)
    if facts.opset < MIN_OPSET:
        problems.append(f"opset {facts.opset} is below {MIN_OPSET}, the oldest TensorRT's parser reads")
    if trt_version is not None and facts.opset > max_opset(trt_version):
        newest = max_opset(trt_version)
        problems.append(f"opset {facts.opset} is above {newest}, the newest TensorRT {trt_version} reads")
    facts.problems = problems
    return facts


def check(facts: OnnxFacts) -> OnnxFacts:
    if facts.problems:
        raise ExportError("tensorrt", f"{facts.path} is not ready for TensorRT: " + " | ".join(facts.problems))
    return facts


def _split_sizes(node, num: int, dim) -> list[int]:
    if not isinstance(dim, int) or dim <= 0:
        raise ExportError("tensorrt", f"Split '{node.name}': the split axis is not static; cannot write opset 17")
    chunk = -(-dim // num)  # opset 18: every part ceil(dim / n), the last one smaller
    return [min(chunk, dim - i * chunk) for i in range(num)]


def downgrade_to_opset17(model):
    """Rewrite an opset-18 graph as opset 17 for TensorRT 8.x (whose parser stops at 17): reductions
    take `axes` as an attribute again and Split its sizes as an input. onnx's version converter has
    no Split adapter for 18 -> 17. Returns a new model; refuses graphs with other opset-18 changes."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper, shape_inference

    if _opset(model) != 18:
        raise ExportError("tensorrt", f"downgrade_to_opset17 takes opset 18 graphs, got opset {_opset(model)}")
    changed = sorted({n.op_type for n in model.graph.node} & set(CHANGED_IN_18))
    if changed:
        raise ExportError("tensorrt", f"ops {changed} changed in opset 18 in ways this rewrite does not cover")
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    inferred = shape_inference.infer_shapes(model)
    shapes = {v.name: _dims(v) for v in list(inferred.graph.value_info) + list(inferred.graph.input)}
    values = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    values |= {n.output[0]: numpy_helper.to_array(n.attribute[0].t) for n in graph.node if n.op_type == "Constant"}
    for node in graph.node:
        if node.op_type in REDUCE_AXES_18 and len(node.input) > 1 and node.input[1]:
            if node.input[1] not in values:
                raise ExportError("tensorrt", f"{node.op_type} '{node.name}': axes are not constant")
            axes = [int(a) for a in values[node.input[1]]]
            if not axes:
                raise ExportError("tensorrt", f"{node.op_type} '{node.name}': empty axes; cannot write opset 17")
            keep = [a for a in node.attribute if a.name != "noop_with_empty_axes"]  # new in opset 18
            del node.attribute[:]
            node.attribute.extend(keep + [helper.make_attribute("axes", axes)])
            del node.input[1:]
        elif node.op_type == "Split":
            num = next((a.i for a in node.attribute if a.name == "num_outputs"), None)
            if num is None:
                continue  # sizes already given as an input: same in opset 13-18
            axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
            dims = shapes.get(node.input[0])
            if dims is None:
                raise ExportError("tensorrt", f"Split '{node.name}': input shape unknown; cannot write opset 17")
            sizes = _split_sizes(node, num, dims[axis])
            name = f"{node.name or node.output[0]}_split_sizes"
            graph.initializer.append(numpy_helper.from_array(np.array(sizes, np.int64), name))
            node.input.append(name)
            keep = [a for a in node.attribute if a.name != "num_outputs"]
            del node.attribute[:]
            node.attribute.extend(keep)
    for o in model.opset_import:
        if o.domain in ("", "ai.onnx"):
            o.version = 17
    onnx.checker.check_model(model)
    return model


def prepare(onnx_path: str | Path, trt_version: str, workdir: str | Path) -> tuple[Path, OnnxFacts]:
    """The ONNX file TensorRT `trt_version` should parse (the original, or an opset-17 rewrite in
    `workdir`) and its facts; raises ExportError listing every problem TensorRT would hit."""
    import onnx

    onnx_path = Path(onnx_path)
    try:
        model = onnx.load(str(onnx_path))
    except Exception as e:  # protobuf's DecodeError and friends
        raise ExportError("tensorrt", f"{onnx_path}: not a readable ONNX file ({e})") from e
    if _opset(model) == 18 and max_opset(trt_version) < 18:
        model = downgrade_to_opset17(model)
        onnx_path = Path(workdir) / f"{onnx_path.stem}.opset17.onnx"
        onnx.save(model, str(onnx_path))
    return onnx_path, check(inspect_model(model, onnx_path, trt_version))
