"""QAT checkpoint (`fsanet train --qat`) -> INT8 Q/DQ ONNX that ONNX Runtime runs on the CPU.

The path, and why each step:
1. `nncf.strip` turns NNCF's quantizers into PyTorch fake quantizers with the learned scales
   (weights clamped and rounded onto their int8 grid).
2. Each becomes a call of one custom op, `fsanet::fake_quant`, that the ONNX exporter
   translates to QuantizeLinear + DequantizeLinear: `torch.onnx.export(dynamo=True)` cannot
   trace PyTorch's own fake-quantize ops (their `cachemask` kernels have no fake-tensor
   implementation, pytorch/pytorch#167063), and the TorchScript exporter has no `block_diag`.
3. The weights' QuantizeLinear is folded into int8 initializers, and each batch norm that
   follows a convolution with per-channel int8 weights is folded into that convolution's
   scales and bias (exact), so ONNX Runtime fuses Q/DQ + Conv into QLinearConv.
4. ONNX Runtime is checked against the fake-quantized PyTorch model on the verification faces
   (the file must be the model that was trained), then the large MatMul/Gemm constants are
   stored as weight-only int8 as in the post-training path, and the drift from the float ONNX
   (the model QAT started from) is measured and recorded in the manifest.
"""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import numpy as np

from fsanet.errors import DataError, ExportError

STAGE = "onnx-int8 (qat)"
# the graph run as specified vs PyTorch's fake quantization: PyTorch multiplies by 1/scale where
# ONNX divides by the scale, so a few values round one int8 step apart. On average that moves the
# angles by under 0.01 degree, but on an unlucky face a flipped step lands in a sensitive place
# (up to 1.6 degrees seen on 870 HELEN faces): the limits are on the mean and the 99th percentile
TOLERANCE_MEAN_DEG = 0.02
TOLERANCE_P99_DEG = 0.25
SCHEMA = "(Tensor x, Tensor scale, Tensor zero_point, int axis, int qmin, int qmax) -> Tensor"


def is_qat_checkpoint(path) -> bool:
    from fsanet.train.qat import read_payload

    return read_payload(path) is not None


@functools.cache
def _fake_quant_op():
    """`fsanet::fake_quant` (registered once per process) and its ONNX translation."""
    import torch
    from onnxscript import opset18 as op

    @torch.library.custom_op("fsanet::fake_quant", mutates_args=(), schema=SCHEMA)
    def fake_quant(x, scale, zero_point, axis, qmin, qmax):
        zp = zero_point.to(torch.int32)
        if scale.ndim == 0:
            return torch.fake_quantize_per_tensor_affine(x, scale, zp, qmin, qmax)
        return torch.fake_quantize_per_channel_affine(x, scale, zp, axis, qmin, qmax)

    @fake_quant.register_fake
    def _(x, scale, zero_point, axis, qmin, qmax):
        return torch.empty_like(x)

    def to_onnx(x, scale, zero_point, axis: int, qmin: int, qmax: int):
        q = op.QuantizeLinear(x, scale, zero_point, axis=axis)
        return op.DequantizeLinear(q, scale, zero_point, axis=axis)

    return fake_quant, {torch.ops.fsanet.fake_quant.default: to_onnx}


def _export_module(fq):
    """A torch FakeQuantize (from nncf.strip) as a call of `fsanet::fake_quant`."""
    import torch

    fake_quant, _ = _fake_quant_op()

    class ExportFakeQuant(torch.nn.Module):
        def __init__(self):
            super().__init__()
            per_channel = fq.qscheme in (torch.per_channel_symmetric, torch.per_channel_affine)
            scale, zero = fq.scale.detach().float(), fq.zero_point.detach()
            if not per_channel:
                scale, zero = scale.reshape(()), zero.reshape(())
            self.register_buffer("scale", scale.clone())
            self.register_buffer("zero_point", zero.to(torch.uint8 if fq.quant_min == 0 else torch.int8).clone())
            self.axis, self.qmin, self.qmax = int(fq.ch_axis), int(fq.quant_min), int(fq.quant_max)

        def forward(self, x):
            return fake_quant(x, self.scale, self.zero_point, self.axis, self.qmin, self.qmax)

    return ExportFakeQuant()


def exportable(model, example):
    """The NNCF-quantized `model` with every quantizer as `fsanet::fake_quant` (a stripped copy)."""
    import nncf
    from nncf.torch.function_hook.wrapper import get_hook_storage
    from torch.ao.quantization import FakeQuantize

    native = nncf.strip(model, do_copy=True, example_input=example)
    hooks = get_hook_storage(native)
    for name, module in list(hooks.named_hooks()):
        if not isinstance(module, FakeQuantize):
            raise ExportError(STAGE, f"unexpected NNCF hook {name} ({type(module).__name__}); only quantizers export")
        hooks.set_submodule(name, _export_module(module))
    return native.eval()


def _initializers(graph) -> dict:
    return {i.name: i for i in graph.initializer}


def fold_weight_quantizers(model) -> int:
    """QuantizeLinear of a constant -> its int8 initializer (what DequantizeLinear reads). Returns
    how many values are now stored in int8."""
    from onnx import numpy_helper

    graph = model.graph
    inits = _initializers(graph)
    values, dead = 0, []
    for node in graph.node:
        if node.op_type != "QuantizeLinear" or not all(i in inits for i in node.input[:3]):
            continue
        w, scale, zero = (numpy_helper.to_array(inits[i]) for i in node.input[:3])
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1) % max(w.ndim, 1)
        shape = [1] * w.ndim
        if scale.ndim:
            shape[axis] = -1
        info = np.iinfo(zero.dtype)
        q = np.rint(w / scale.reshape(shape)) + zero.astype(np.int32).reshape(shape)
        q = np.clip(q, info.min, info.max).astype(zero.dtype)
        name = f"{node.input[0]}_quantized"
        graph.initializer.append(numpy_helper.from_array(q, name))
        for other in graph.node:
            other.input[:] = [name if i == node.output[0] else i for i in other.input]
        dead.append(node)
        values += w.size
    for node in dead:
        graph.node.remove(node)
    _drop_unused_initializers(graph)
    return values


def _drop_unused_initializers(graph) -> None:
    used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
    for init in [i for i in graph.initializer if i.name not in used]:
        graph.initializer.remove(init)


def _consumers(graph, name: str) -> list:
    return [n for n in graph.node if name in n.input]


def fold_batchnorms(model) -> int:
    """Conv(DequantizeLinear(int8 W, per-output-channel scale)) -> BatchNormalization becomes one
    Conv: the batch norm's per-channel factor k goes into the weight scales (|k|, sign into the
    int8 values, which are symmetric) and into the bias. Returns how many were folded."""
    from onnx import numpy_helper

    graph = model.graph
    inits = _initializers(graph)
    producer = {o: n for n in graph.node for o in n.output}
    folded = 0
    for conv in [n for n in graph.node if n.op_type == "Conv"]:
        users = _consumers(graph, conv.output[0])
        dq = producer.get(conv.input[1])
        if len(users) != 1 or users[0].op_type != "BatchNormalization":
            continue
        if dq is None or dq.op_type != "DequantizeLinear":
            continue
        if len(_consumers(graph, dq.output[0])) != 1:
            continue  # weights shared with another op
        bn = users[0]
        if not all(i in inits for i in list(bn.input[1:5]) + list(dq.input[:3])):
            continue
        q, scale, zero = (numpy_helper.to_array(inits[i]) for i in dq.input[:3])
        axis = next((a.i for a in dq.attribute if a.name == "axis"), 1)
        if scale.ndim != 1 or axis != 0 or np.any(zero != 0) or q.dtype != np.int8 or q.min() < -127:
            continue  # only symmetric per-output-channel int8 weights fold exactly
        gamma, beta, mean, var = (numpy_helper.to_array(inits[i]).astype(np.float64) for i in bn.input[1:5])
        eps = next((a.f for a in bn.attribute if a.name == "epsilon"), 1e-5)
        k = gamma / np.sqrt(var + eps)
        bias = numpy_helper.to_array(inits[conv.input[2]]).astype(np.float64) if len(conv.input) > 2 else 0.0
        sign = np.where(k < 0, -1, 1).astype(np.int8).reshape(-1, *[1] * (q.ndim - 1))
        tag = f"{conv.name or conv.output[0]}_bnfold"
        graph.initializer.extend(
            [
                numpy_helper.from_array((q * sign).astype(np.int8), f"{tag}_w"),
                numpy_helper.from_array((scale * np.abs(k)).astype(np.float32), f"{tag}_scale"),
                numpy_helper.from_array(((bias - mean) * k + beta).astype(np.float32), f"{tag}_bias"),
            ]
        )
        dq.input[0], dq.input[1] = f"{tag}_w", f"{tag}_scale"
        conv.input[:] = [conv.input[0], conv.input[1], f"{tag}_bias"]
        conv.output[0] = bn.output[0]
        graph.node.remove(bn)
        folded += 1
    _drop_unused_initializers(graph)
    return folded


def _reference_run(onnx_path: Path, crops: np.ndarray) -> np.ndarray:
    """ONNX Runtime with every graph optimisation off: each QuantizeLinear/DequantizeLinear and
    float op as the ONNX specification defines it, no integer kernels."""
    import onnxruntime as ort

    from fsanet.preprocess import to_nchw

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    x = to_nchw(crops)
    return np.concatenate([session.run(None, {"input": x[i : i + 256]})[0] for i in range(0, len(x), 256)])


def _optimized_run(onnx_path: Path, crops: np.ndarray) -> np.ndarray:
    """ONNX Runtime as deployed (fsanet's backend, default optimisations: QLinearConv and friends)."""
    from fsanet.runtimes.base import InputFormat
    from fsanet.runtimes.estimator import PoseEstimator
    from fsanet.runtimes.onnxruntime import OnnxRuntime

    with OnnxRuntime(onnx_path, InputFormat(), manifest={"precision": "int8"}) as rt:
        return PoseEstimator(rt, batch=256).predict(crops)


def verify_against_qat(model, onnx_path: Path, crops: np.ndarray) -> dict:
    """The file against the fake-quantized PyTorch model, in degrees. The check that refuses the
    file runs the graph as specified (it must be the model that was trained); the deployed run
    (integer kernels, which also round the bias to int32) is recorded beside it."""
    from fsanet.evaluate import predict_torch

    want = predict_torch(model, crops)
    try:
        spec, deployed = _reference_run(onnx_path, crops), _optimized_run(onnx_path, crops)
    except Exception as e:  # ONNX Runtime rejects some graphs only when they run
        raise ExportError(STAGE, f"ONNX Runtime cannot run the graph: {str(e)[:300]}") from e
    diff, runtime = np.abs(spec - want), np.abs(deployed - want)
    result = {
        "max_abs_diff_deg": float(diff.max()),
        "p99_abs_diff_deg": float(np.percentile(diff, 99)),
        "mean_abs_diff_deg": float(diff.mean()),
        "integer_kernels_max_abs_diff_deg": float(runtime.max()),
        "integer_kernels_mean_abs_diff_deg": float(runtime.mean()),
    }
    if not (result["mean_abs_diff_deg"] <= TOLERANCE_MEAN_DEG and result["p99_abs_diff_deg"] <= TOLERANCE_P99_DEG):
        raise ExportError(
            STAGE,
            f"the ONNX graph differs from the fake-quantized PyTorch model by {result['mean_abs_diff_deg']:.3f} mean "
            f"/ {result['p99_abs_diff_deg']:.3f} 99th percentile degrees (limits {TOLERANCE_MEAN_DEG} / "
            f"{TOLERANCE_P99_DEG}); not written",
        )
    return result


def export_qat_onnx(qat_path, float_onnx, output, verify: np.ndarray, verify_name: str) -> dict:
    """Write the INT8 Q/DQ ONNX of a QAT checkpoint and its manifest (drift vs `float_onnx`, the
    export of the float model QAT started from). Returns the manifest."""
    import nncf
    import onnx
    import torch
    from fsanet.export import artifact
    from fsanet.export.onnx import _simplify_and_check, export_graph
    from fsanet.export.quantize import compress_matmul_weights, op_counts
    from fsanet.train.qat import load_qat, quantizer_count

    from fsanet.files import sha256

    qat_path, float_onnx, output = Path(qat_path), Path(float_onnx), Path(output)
    if verify is None or not len(verify):
        raise DataError(f"{qat_path}: exporting a QAT model needs faces to verify it on: --verify FACES or --calib")
    model, payload = load_qat(qat_path)
    manifest = artifact.derived_manifest(float_onnx, STAGE, precision="int8")
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.onnx"
        native = exportable(model, torch.from_numpy(np.zeros((1, 3, 64, 64), np.float32)))
        export_graph(native, raw, _fake_quant_op()[1])
        graph = _simplify_and_check(raw)
        weights_int8 = fold_weight_quantizers(graph)
        bn_folded = fold_batchnorms(graph)
        onnx.checker.check_model(graph, full_check=True)
        checked = Path(tmp) / "qdq.onnx"
        onnx.save(graph, str(checked))
        torch_check = verify_against_qat(native, checked, verify)
    matmul_int8 = compress_matmul_weights(graph)
    manifest.update(
        source={"file": qat_path.name, "sha256": sha256(qat_path), "weights": payload.get("sources")},
        quantization={
            "method": "qat",
            "description": "NNCF quantization-aware fine-tuning (PyTorch), exported as Q/DQ: int8 convolutions "
            "(per-channel weights, per-tensor activations); weight-only int8 for large MatMul/Gemm constants",
            "nncf": nncf.__version__,
            "quantizers": quantizer_count(model),
            "float_op_types_nncf": payload.get("float_types"),
            "quantize_nodes": op_counts(graph, ("QuantizeLinear",)).get("QuantizeLinear", 0),
            "conv_weight_int8_values": weights_int8,
            "batchnorms_folded": bn_folded,
            "weight_only_int8_values": matmul_int8,
            "search": None,  # QAT chose its quantizers at `fsanet train --qat`
        },
        calibration=_calibration(payload.get("calibration")),
        verification_pytorch={
            "against": "the fake-quantized PyTorch model (QAT checkpoint)",
            "faces": verify_name,
            "count": len(verify),
            **torch_check,
        },
    )
    return artifact.verify_and_write_onnx(graph, output, manifest, float_onnx, verify, verify_name, STAGE)


def _calibration(record: dict | None) -> dict | None:
    """The calibration record the QAT checkpoint stored (`artifact.calibration_record` at
    `fsanet train --qat`), with every key a manifest's calibration has."""
    from fsanet.export.artifact import CALIBRATION_KEYS

    return None if record is None else {k: record.get(k) for k in CALIBRATION_KEYS}
