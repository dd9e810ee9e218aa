"""Weights read per face, set against the machine's caches: the 'why' of a hot ratio that misses."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from fsanet.benchmarks.budget import check
from fsanet.benchmarks.footprint import cache_lines, onnx_weight_bytes, tflite_weight_bytes, why_slower
from fsanet.benchmarks.report import verdict_lines
from onnx import TensorProto, helper, numpy_helper


def test_a_loop_body_s_constants_are_counted(tmp_path):
    """A third-party conversion keeps weights inside a Loop body: 10 float32 outside, a
    1000-element float32 Constant and a 64-element int8 one inside: 40 + 4000 + 64 bytes."""
    body = helper.make_graph(
        [
            helper.make_node("Constant", [], ["w"], value=numpy_helper.from_array(np.ones(1000, np.float32), "w")),
            helper.make_node("Constant", [], ["q"], value=numpy_helper.from_array(np.ones(64, np.int8), "q")),
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
            helper.make_node("ReduceSum", ["w"], ["s"], keepdims=0),
            helper.make_node("Add", ["acc_in", "s"], ["acc_out"]),
        ],
        "body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("acc_in", TensorProto.FLOAT, []),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("acc_out", TensorProto.FLOAT, []),
        ],
    )
    graph = helper.make_graph(
        [helper.make_node("Loop", ["n", "", "a0"], ["a"], body=body)],
        "main",
        [helper.make_tensor_value_info("n", TensorProto.INT64, [])],
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, [])],
        [numpy_helper.from_array(np.zeros(10, np.float32), "bias"), numpy_helper.from_array(np.float32(0), "a0")],
    )
    path = tmp_path / "loop.onnx"
    onnx.save(helper.make_model(graph), path)
    assert onnx_weight_bytes(str(path)) == 40 + 4 + 4000 + 64


def test_the_authors_fusion_reads_its_weights_once_per_face_in_every_format(fusion_onnx, fusion_tflite):
    """The fused FP32 graph holds ~4.6 MB (three members of ~1.2 MB of float32 each plus the
    head); the FP32 TFLite conversion of the same checkpoint holds the same weights."""
    onnx_bytes = onnx_weight_bytes(str(fusion_onnx))
    assert 4.0e6 < onnx_bytes < 5.5e6
    assert tflite_weight_bytes(str(fusion_tflite)) == pytest.approx(onnx_bytes, rel=0.05)


def test_int8_tflite_holds_about_a_quarter_of_the_bytes(fusion_tflite, fusion_tflite_int8):
    ratio = tflite_weight_bytes(str(fusion_tflite_int8)) / tflite_weight_bytes(str(fusion_tflite))
    assert 0.2 < ratio < 0.45


def result(weights: dict, instructions=None) -> dict:
    arts = {n: {"weights_mb": mb} for n, mb in weights.items()}
    for n, ratios in (instructions or {}).items():
        arts[n]["instructions_ratio_to"] = ratios
    return {"machine": {"caches": {"L1d": "32K", "L2": "512K", "L3": "32768K"}}, "artifacts": arts}


def test_cache_lines_place_each_model_s_weights_in_the_hierarchy():
    lines = cache_lines(result({"fusion.onnx": 4.65, "small.onnx": 0.3, "huge.onnx": 40.0}))
    assert lines[0].endswith("(L1d 32 KiB, L2 512 KiB, L3 32 MiB):")
    assert lines[1] == "- fusion.onnx: 4.65 MB, 8.9x the core's L2: read from the shared L3 every call"
    assert lines[2] == "- small.onnx: 0.30 MB, fits the core's L2"
    assert lines[3] == "- huge.onnx: 40.00 MB, larger than the caches: read from memory every call"
    assert cache_lines(result({"x.onnx": None})) == []


def test_a_missed_hot_ratio_says_why_in_the_verdict():
    r = result({"fusion.onnx": 4.65, "fox.onnx": 0.95}, {"fusion.onnx": {"fox.onnx": 1.074}})
    r["artifacts"]["fusion.onnx"] |= {
        "p50_ratio_to": {"fox.onnx": {"1": 1.28}},
        "loop_ratios": {"p50_ratio_to": {"fox.onnx": {"1": 1.24}}},
    }
    budget = {"fusion.onnx": {"max_p50_ratio": {"fox.onnx": 1.25}, "max_p50_loop_ratio": {"fox.onnx": 1.25}}}
    [v] = check(budget, r["artifacts"])  # hot misses, in the loop holds
    assert v.metric == "p50 ratio to fox.onnx (batch 1)" and v.against == "fox.onnx"
    lines = verdict_lines([v], r)
    assert lines[2] == (
        "    why: fusion.onnx reads 4.65 MB of weights per face, fox.onnx 0.95 MB; L2 512 KiB per core; "
        "by instructions the ratio is 1.074x"
    )
    assert why_slower(result({"a": None, "b": 1.0}), "a", "b") == ""


def test_the_loop_ratio_key_reads_the_in_loop_ratios():
    arts = {
        "a": {"p50_ratio_to": {"b": {"1": 1.0}}, "loop_ratios": {"p50_ratio_to": {"b": {"1": 1.4}}}},
        "b": {},
    }
    [v] = check({"a": {"max_p50_loop_ratio": {"b": 1.25}}}, arts)
    assert v.metric == "p50 ratio to b (batch 1, in the loop)" and v.measured == 1.4
    assert check({"a": {"max_p50_loop_ratio": {"b": 1.5}}}, arts) == []
    [v] = check({"a": {"max_p50_loop_ratio": {"b": 1.5}}}, {"a": {}, "b": {}})  # not measured: a violation
    assert v.measured is None
