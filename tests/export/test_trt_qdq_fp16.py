"""The Q/DQ INT8 ONNX with FP16 float parts (export/trt_qdq_fp16.py): valid ONNX at opset 19
with float16 scales, run by ONNX Runtime's CPU provider close to the FP32-float file, refused
where TensorRT cannot take it; on the authors' fusion, its drift on real faces."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from fsanet.export import trt_onnx
from fsanet.export.targets import _check_trt_options
from fsanet.export.tensorrt import check_int8_float, fp16_float_source
from fsanet.export.trt_qdq_fp16 import convert, qdq_scale_types, sibling, to_qdq_fp16
from onnx import TensorProto, helper, numpy_helper

from fsanet.errors import DataError


def _qdq_model(opset: int = 18) -> onnx.ModelProto:
    """input -> Q/DQ -> Conv (int8 weights, per-channel) -> Relu -> Q/DQ -> ReduceMean -> MatMul
    (float weights) -> Softmax -> angles: INT8 convolution, float head, as fsanet's Q/DQ file."""
    rng = np.random.default_rng(0)
    w = rng.integers(-127, 128, (4, 3, 3, 3), dtype=np.int8)
    inits = [
        numpy_helper.from_array(np.array(2.0, np.float32), "x_scale"),
        numpy_helper.from_array(np.array(0, np.int8), "x_zero"),
        numpy_helper.from_array(w, "w_int8"),
        numpy_helper.from_array(np.array([0.01, 0.02, 0.015, 0.005], np.float32), "w_scale"),
        numpy_helper.from_array(np.zeros(4, np.int8), "w_zero"),
        numpy_helper.from_array(np.array(0.5, np.float32), "r_scale"),
        numpy_helper.from_array(np.array(0, np.int8), "r_zero"),
        numpy_helper.from_array(np.array([2, 3], np.int64), "axes"),
        numpy_helper.from_array(rng.normal(0, 0.01, (4, 3)).astype(np.float32), "head"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["input", "x_scale", "x_zero"], ["xq"], name="q_input"),
        helper.make_node("DequantizeLinear", ["xq", "x_scale", "x_zero"], ["xd"], name="dq_input"),
        helper.make_node("DequantizeLinear", ["w_int8", "w_scale", "w_zero"], ["w"], name="dq_w", axis=0),
        helper.make_node("Conv", ["xd", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("QuantizeLinear", ["r", "r_scale", "r_zero"], ["rq"], name="q_relu"),
        helper.make_node("DequantizeLinear", ["rq", "r_scale", "r_zero"], ["rd"], name="dq_relu"),
        helper.make_node("ReduceMean", ["rd", "axes"], ["m"], name="mean", keepdims=0),
        helper.make_node("MatMul", ["m", "head"], ["logits"], name="head"),
        helper.make_node("Softmax", ["logits"], ["angles"], name="softmax", axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "qdq",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 16, 16])],
        [helper.make_tensor_value_info("angles", TensorProto.FLOAT, ["batch", 3])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 9
    onnx.checker.check_model(model, full_check=True)
    return model


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})[0]


def test_the_float_parts_become_float16_at_opset_19_and_stay_valid_onnx():
    model = _qdq_model()
    half = convert(model)
    assert trt_onnx._opset(half) == 19
    assert qdq_scale_types(model) == {"FLOAT": 5} and qdq_scale_types(half) == {"FLOAT16": 5}
    inits = {i.name: i.data_type for i in half.graph.initializer}
    assert inits["head"] == TensorProto.FLOAT16 and inits["w_int8"] == TensorProto.INT8  # weights stay int8
    assert inits["x_zero"] == inits["r_zero"] == TensorProto.INT8  # signed symmetric, as TensorRT wants
    elem = [v.type.tensor_type.elem_type for v in (*half.graph.input, *half.graph.output)]
    assert elem == [TensorProto.FLOAT, TensorProto.FLOAT]  # the crops and angles stay float32
    inferred = onnx.shape_inference.infer_shapes(half, strict_mode=True)
    assert inferred.graph.output[0].type.tensor_type.elem_type == TensorProto.FLOAT


def test_onnx_runtime_runs_it_close_to_the_fp32_float_file():
    x = np.random.default_rng(1).uniform(0, 255, (8, 3, 16, 16)).astype(np.float32)
    fp32, fp16 = _run(_qdq_model(), x), _run(convert(_qdq_model()), x)
    assert fp16.dtype == np.float32 and fp16.shape == (8, 3)
    np.testing.assert_allclose(fp16, fp32, atol=5e-4)  # float16 head and scales: about 3 decimal digits
    assert not np.array_equal(fp16, fp32)  # the float parts did change type


def test_tensorrt_10_takes_it_and_tensorrt_8_is_told_why_not():
    half = convert(_qdq_model())
    facts = trt_onnx.inspect_model(half, "m-int8-fp16.onnx", "10.3.0.30")
    assert facts.precision == "int8" and facts.problems == []
    assert trt_onnx.inspect_model(half, "m.onnx", "8.6.2.3").problems == [
        "opset 19 is above 17, the newest TensorRT 8.6.2.3 reads"
    ]
    with pytest.raises(DataError, match="needs a strongly typed build .*TensorRT 8.6.2.3 runs the float parts"):
        fp16_float_source(Path("m-int8.onnx"), "8.6.2.3", None, None)
    assert sibling(Path("out/m-int8.onnx")) == Path("out/m-int8-fp16.onnx")


def test_only_qdq_files_up_to_opset_19_are_converted():
    plain = _qdq_model()
    keep = [n for n in plain.graph.node if n.op_type not in ("QuantizeLinear", "DequantizeLinear")]
    del plain.graph.node[:]
    plain.graph.node.extend(keep)
    with pytest.raises(DataError, match="not a Q/DQ INT8 ONNX"):
        convert(plain)
    newer = _qdq_model(opset=21)
    with pytest.raises(DataError, match="opset 21 is above 19"):
        convert(newer)


def test_int8_float_option_is_checked_before_anything_is_built():
    check_int8_float("fp32")
    check_int8_float("fp16", "int8")
    with pytest.raises(DataError, match="choose fp32 or fp16"):
        check_int8_float("bf16")
    with pytest.raises(DataError, match="applies to INT8 engines .* not fp16"):
        check_int8_float("fp16", "fp16")
    assert _check_trt_options(["onnx-int8", "tensorrt-int8"], None, True, "fp16") == {"int8_float": "fp16"}
    with pytest.raises(DataError, match="add --to tensorrt-int8"):
        _check_trt_options(["onnx-int8", "tensorrt-fp16"], None, True, "fp16")


MARGIN_DEG = 0.05  # see the measurement in docs/jetson.md


# -- on the authors' fusion ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fusion_int8(fusion_onnx, real_faces, tmp_path_factory):
    """The fusion's Q/DQ INT8 ONNX (fsanet's default PTQ), calibrated on 32 real faces."""
    import shutil

    from fsanet.calib.build import CalibrationSet, crops_sha256
    from fsanet.export.quantize import quantize_onnx

    folder = tmp_path_factory.mktemp("qdq-fp16")
    float_onnx = folder / "fusion.onnx"
    shutil.copy(fusion_onnx, float_onnx)
    shutil.copy(f"{fusion_onnx}.json", f"{float_onnx}.json")
    crops = real_faces[:32]
    calib = CalibrationSet(crops, {"format": "fsanet-calibration", "sha256": crops_sha256(crops), "count": 32})
    out = folder / "fusion-int8.onnx"
    quantize_onnx(float_onnx, calib, out, verify=real_faces[600:664], verify_name="64 real faces")
    return out


def test_the_fusions_fp16_float_file_on_real_faces(fusion_int8, real_faces):
    faces = real_faces[700:828]
    path, why = fp16_float_source(fusion_int8, "10.3.0.30", None, faces)
    assert path == fusion_int8.with_name("fusion-int8-fp16.onnx") and why.startswith("wrote")
    from fsanet.manifest import read_sidecar

    m = read_sidecar(path)
    assert m["precision"] == "int8" and m["opset"] == 19
    assert m["quantization"]["int8_source"]["file"] == "fusion-int8.onnx"
    assert "float16" in m["quantization"]["float_parts"]
    v = m["verification"]
    assert v["against"] == "fusion.onnx" and v["count"] == 128
    from fsanet.export.artifact import measure_drift

    int8 = measure_drift(fusion_int8, fusion_int8.with_name("fusion.onnx"), faces, "test")  # same faces
    # FP16 float parts add little to the INT8 file's own drift from the float model
    assert v["drift_mean_deg"] <= int8["mean"] + MARGIN_DEG
    again, why = fp16_float_source(fusion_int8, "10.3.0.30", None, faces)
    assert again == path and why.startswith("FP16-float sibling")  # made from this very file: reused
    with pytest.raises(DataError, match="needs faces to verify"):
        to_qdq_fp16(fusion_int8, path.with_name("x.onnx"), None, "")
