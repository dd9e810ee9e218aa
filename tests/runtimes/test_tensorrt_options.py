"""The TensorRT runtime's options (CUDA graph, mapped host memory, GPU timing) and the engine
profile's tables, without TensorRT: option checks, runtimes.open's refusals, the per-layer
aggregation and trtexec's latency split on hand-made records."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from fsanet.benchmarks.profile import engine_markdown, latency_split, layer_profile
from fsanet.runtimes.tensorrt import LayerTimes, TensorRTUnavailable, check_mapped, check_options

from fsanet import runtimes
from fsanet.cli import main
from fsanet.errors import DataError


@pytest.fixture
def no_tensorrt(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # as on a machine without TensorRT


@pytest.fixture
def engine(tmp_path):
    path = tmp_path / "fusion-fp16.engine"
    path.write_bytes(b"a serialized engine")
    return path


# -- options --------------------------------------------------------------------------------------
def test_option_values_are_checked_before_tensorrt_is_needed():
    check_options(False, "pinned", False)
    check_options(True, "mapped", True)
    with pytest.raises(DataError, match="cuda_graph must be True or False, got 1"):
        check_options(1, "pinned", False)
    with pytest.raises(DataError, match="gpu_timing must be True or False"):
        check_options(False, "pinned", "yes")
    with pytest.raises(DataError, match=r"host_memory='zero-copy': choose 'pinned' .* or 'mapped'"):
        check_options(False, "zero-copy", False)


def test_mapped_host_memory_only_on_an_integrated_gpu():
    check_mapped({"name": "Orin", "integrated": True, "can_map_host_memory": True})
    with pytest.raises(DataError, match="for an integrated GPU .* NVIDIA H200 has memory of its own"):
        check_mapped({"name": "NVIDIA H200", "integrated": False, "can_map_host_memory": True})
    with pytest.raises(DataError, match="cannot map host memory"):
        check_mapped({"name": "Orin", "integrated": True, "can_map_host_memory": False})


def test_open_passes_tensorrt_options_to_the_engine_and_checks_them_first(engine, no_tensorrt):
    with pytest.raises(DataError, match="host_memory='shared'"):
        runtimes.open(engine, host_memory="shared")  # refused before TensorRT is imported
    with pytest.raises(TensorRTUnavailable):  # accepted: the next thing needed is TensorRT itself
        runtimes.open(engine, cuda_graph=True, host_memory="mapped", gpu_timing=True)


def test_other_backends_refuse_tensorrt_options_that_ask_for_something(tiny_models):
    for option in ({"cuda_graph": True}, {"gpu_timing": True}, {"host_memory": "pinned"}):
        key = next(iter(option))
        with pytest.raises(DataError, match=f"option {key}=.* does not apply to onnxruntime files"):
            runtimes.open(tiny_models["mean"], **option)
    with runtimes.open(tiny_models["mean"], cuda_graph=False, gpu_timing=False) as rt:  # asks nothing: fine
        assert rt.backend == "onnxruntime"


# -- per-layer times ------------------------------------------------------------------------------
def test_layer_times_average_over_the_runs_in_first_run_order():
    times = LayerTimes()
    for run in range(3):
        times.report("Reformatting CopyNode for Input Tensor 0 to /conv1/Conv", 0.01)
        times.report("/conv1/Conv + /relu1/Relu", 0.05 + 0.01 * run)
        if run == 0:
            times.report("/softmax/Softmax", 0.03)  # reported in one run only
    rows = times.rows()
    assert times.iterations == 3
    assert [r["name"] for r in rows] == [
        "Reformatting CopyNode for Input Tensor 0 to /conv1/Conv", "/conv1/Conv + /relu1/Relu", "/softmax/Softmax",
    ]  # fmt: skip
    conv = rows[1]
    assert conv["calls"] == 3 and conv["mean_ms"] == pytest.approx(0.06) and conv["median_ms"] == pytest.approx(0.06)
    assert rows[2]["mean_ms"] == pytest.approx(0.01)  # 0.03 ms over 3 runs
    assert sum(r["share"] for r in rows) == pytest.approx(1.0)
    assert LayerTimes().iterations == 0 and LayerTimes().rows() == []


REPORT = [
    {"name": "/conv1/Conv + /relu1/Relu", "type": "CaskConvolution", "precision": "FP16",
     "output_shapes": [[1, 16, 64, 64]]},
    {"name": "/conv2/Conv", "type": "CaskConvolution", "precision": "INT8", "output_shapes": [[1, 32, 32, 32]]},
    {"name": "/softmax/Softmax", "type": "Softmax", "precision": "FP32", "output_shapes": [[1, 3]]},
]  # fmt: skip


def test_layer_profile_has_the_onnx_runtime_tables():
    times = [
        {"name": "/conv1/Conv + /relu1/Relu", "calls": 10, "mean_ms": 0.040, "median_ms": 0.039, "share": 0.4},
        {"name": "/conv2/Conv", "calls": 10, "mean_ms": 0.050, "median_ms": 0.050, "share": 0.5},
        {"name": "/softmax/Softmax", "calls": 10, "mean_ms": 0.010, "median_ms": 0.010, "share": 0.1},
        {"name": "trtexec-only layer", "calls": 10, "mean_ms": 0.0, "median_ms": 0.0, "share": 0.0},
    ]
    p = layer_profile(times, REPORT, 10)
    assert p["iterations"] == 10 and p["kernel_ms"] == pytest.approx(0.1)
    assert [n["node"] for n in p["nodes"]][:3] == ["/conv2/Conv", "/conv1/Conv + /relu1/Relu", "/softmax/Softmax"]
    assert p["nodes"][0]["kind"] == "CaskConvolution INT8" and p["nodes"][0]["us_per_run"] == pytest.approx(50)
    assert p["nodes"][-1]["kind"] == "?"  # not in the layer report
    assert set(p["op_types"][0]) == {"op_type", "nodes", "us_per_run", "share", "mflop", "gflops_per_s"}
    assert [(r["op_type"], r["nodes"]) for r in p["op_types"]][:3] == [
        ("CaskConvolution INT8", 1), ("CaskConvolution FP16", 1), ("Softmax FP32", 1),
    ]  # fmt: skip
    assert sum(r["share"] for r in p["op_types"]) == pytest.approx(1.0)
    assert layer_profile(times[:1], None, 3)["nodes"][0]["kind"] == "?"  # a trtexec engine: no report


# -- trtexec's latency split ----------------------------------------------------------------------
def _records(compute, enqueue, n=100):
    return [
        {
            "batch": 1,
            "h2d_ms": 0.010,
            "compute_ms": compute + 0.001 * (i % 10),
            "d2h_ms": 0.005,
            "enqueue_ms": enqueue,
            "wall_ms": compute + enqueue + 0.05,
        }  # fmt: skip
        for i in range(n)
    ]


def test_latency_split_is_trtexecs():
    s = latency_split(_records(compute=0.300, enqueue=0.020))
    assert s["runs"] == 100
    assert s["latency_ms"]["mean"] == pytest.approx(0.010 + 0.3045 + 0.005)  # H2D + compute + D2H
    assert s["compute_ms"]["p50"] == pytest.approx(0.3045) and s["compute_ms"]["p99"] == pytest.approx(0.309)
    assert s["bound_by"] == []
    enqueue_bound = latency_split(_records(compute=0.005, enqueue=0.200))  # many tiny kernels: a graph helps
    assert enqueue_bound["bound_by"] == ["enqueue time", "host-to-device copies"]
    with pytest.raises(DataError, match="no timed TensorRT calls"):
        latency_split([])


def test_engine_report_shows_the_split_the_layers_and_their_precision():
    result = {
        "model": "/tmp/fusion-fp16.engine", "batch": 1, "runs": 100, "executes_on": "TensorRT 10.3.0.30 on GPU",
        "device": {"name": "Orin", "compute_capability": "8.7"}, "host_memory": "mapped", "cuda_graph": True,
        "machine": None, "split": latency_split(_records(0.3, 0.02)),
        "per_layer": layer_profile([{"name": "/conv2/Conv", "calls": 5, "mean_ms": 0.05, "median_ms": 0.05,
                                     "share": 1.0}], REPORT, 5),
        "layers": [dict(r, tactic=None, inputs=["Row major linear FP32"], outputs=[]) for r in REPORT],
    }  # fmt: skip
    text = engine_markdown(result)
    assert "host memory mapped, enqueue replayed from a CUDA graph" in text
    assert "| GPU compute time | 0.3045 |" in text and "| latency (H2D + compute + D2H) |" in text
    assert "Bound by: GPU compute" in text
    assert "| CaskConvolution INT8 | 1 | 50.0 | 100.0% | - | - |" in text
    assert "| /conv2/Conv | CaskConvolution INT8 | [[1, 32, 32, 32]] | 50.0 |" in text
    assert "3 layers in the engine" in text  # the precision table of the layer report follows


# -- the CLI --------------------------------------------------------------------------------------
def test_profile_options_for_engines_are_refused_for_onnx(tiny_models, noise_faces, tmp_path, capsys):
    argv = ["profile", tiny_models["mean"], "--faces", str(noise_faces), "--cuda-graph", "-o", str(tmp_path / "o")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "apply to TensorRT engines" in err and len(err.splitlines()) == 1


def test_profile_of_an_engine_runs_it_only_with_faces(engine, tmp_path, capsys):
    assert main(["profile", str(engine), "--per-layer", "-o", str(tmp_path / "o")]) == 2
    assert "give --faces or --data" in capsys.readouterr().err


def test_timing_an_engine_without_tensorrt_exits_2_naming_it(engine, noise_faces, tmp_path, capsys, no_tensorrt):
    (tmp_path / "fusion-fp16.engine.json").write_text(json.dumps({"precision": "fp16"}))
    argv = ["profile", str(engine), "--faces", str(noise_faces), "--cuda-graph", "-o", str(tmp_path / "o")]
    assert main(argv) == 2
    assert "python3-libnvinfer" in capsys.readouterr().err
    assert not (tmp_path / "o" / "profile.json").exists()


def test_layer_times_rows_are_plain_numbers():
    times = LayerTimes()
    times.report("a", np.float32(0.5))
    assert isinstance(times.rows()[0]["mean_ms"], float) and json.dumps(times.rows())
