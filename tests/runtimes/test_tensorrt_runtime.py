"""TensorRT runtime backend: clear errors without TensorRT (here), and real engines on a machine with
TensorRT and a CUDA GPU (a Jetson), skipped only where those are missing."""

from __future__ import annotations

import json
import logging
import re
import shlex
import shutil
import subprocess
import sys

import numpy as np
import pytest
from fsanet.runtimes.tensorrt import (
    CAPTURE,
    LogCapture,
    TensorRTRuntime,
    TensorRTUnavailable,
    check_engine,
    check_engine_version,
    check_supported,
    import_cudart,
    numpy_dtype,
    pad_to_batch,
    rebuild_command,
    stream_handle,
)

from fsanet import runtimes
from fsanet.cli import main
from fsanet.errors import BackendUnavailable, DataError


@pytest.fixture
def no_tensorrt(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # as on a machine without TensorRT


@pytest.mark.parametrize("suffix", [".engine", ".plan"])
def test_opening_an_engine_without_tensorrt_says_how_to_install_it(suffix, tmp_path, no_tensorrt):
    engine = tmp_path / f"fusion{suffix}"
    engine.write_bytes(b"serialized engine")
    with pytest.raises(TensorRTUnavailable) as e:
        runtimes.open(engine)
    message = str(e.value)
    assert "'tensorrt' is not installed" in message
    assert "sudo apt install python3-libnvinfer" in message and "pip install tensorrt" in message
    assert isinstance(e.value, BackendUnavailable) and e.value.extra == "tensorrt"


def test_eval_of_an_engine_without_tensorrt_exits_2(tmp_path, shared_data, no_tensorrt, capsys):
    engine = tmp_path / "fusion.engine"
    engine.write_bytes(b"serialized engine")
    assert main(["eval", str(engine), "--data", str(shared_data / "aflw2000-sample")]) == 2
    assert "python3-libnvinfer" in capsys.readouterr().err


def test_missing_cuda_python_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "cuda", None)
    with pytest.raises(BackendUnavailable, match=r"cuda-python .* pip install 'fsanet-edge\[tensorrt\]'"):
        import_cudart()


MANIFEST = {
    "precision": "fp16",
    "tensorrt": {"version": "8.6.2.3"},
    "gpu": {"name": "Orin", "compute_capability": "8.7"},
    "source_onnx": {"file": "fusion-fp16.onnx"},
    "input": {"max_batch": 32},
}


def test_an_engine_from_another_tensorrt_is_refused_with_the_rebuild_command(tmp_path):
    engine = tmp_path / "x.engine"
    with pytest.raises(
        DataError, match=r"built by TensorRT 8\.6\.2\.3 on Orin \(sm 8\.7\), but TensorRT 10\.3\.0\.30"
    ) as e:
        check_engine_version(engine, MANIFEST, "10.3.0.30")
    assert rebuild_command(engine, MANIFEST) in str(e.value)
    check_engine_version(engine, MANIFEST, "8.6.2.3")  # same version: fine
    check_engine_version(engine, None, "10.3.0.30")  # trtexec engine, no manifest: left to TensorRT


def test_an_engine_from_another_gpu_model_is_refused(tmp_path):
    xavier = {"name": "Xavier", "compute_capability": "7.2"}
    with pytest.raises(DataError, match=r"built on Orin \(sm 8\.7\), but this GPU is Xavier \(sm 7\.2\).*build_engine"):
        check_engine(tmp_path / "x.engine", MANIFEST, "8.6.2.3", xavier)
    check_engine(tmp_path / "x.engine", MANIFEST, "8.6.2.3", {"name": "Orin", "compute_capability": "8.7"})


def test_the_rebuild_command_is_a_runnable_python_line(tmp_path):
    command = rebuild_command(tmp_path / "fusion-fp16.engine", MANIFEST)
    argv = shlex.split(command)
    assert argv[:2] == ["python3", "-c"]
    assert argv[2] == (
        "from fsanet.export.tensorrt import build_engine; "
        f"build_engine('fusion-fp16.onnx', '{tmp_path / 'fusion-fp16.engine'}', 'fp16', max_batch=32)"
    )
    compile(argv[2], "<rebuild>", "exec")  # valid Python
    dla = dict(MANIFEST, tensorrt={"version": "10.3.0.30", "dla": {"core": 1, "batch": 1, "gpu_fallback": False}})
    argv = shlex.split(rebuild_command(tmp_path / "fusion-fp16.engine", dla))
    assert argv[2].endswith("max_batch=32, dla_core=1, opt_batch=1, gpu_fallback=False)")  # the same DLA build
    compile(argv[2], "<rebuild>", "exec")


@pytest.mark.parametrize("version", ["8.4.1.5", "8.2.1", "7.1.3"])
def test_tensorrt_before_8_5_is_refused_naming_the_supported_versions(version):
    with pytest.raises(
        TensorRTUnavailable, match=rf"found {re.escape(version)}; fsanet-edge needs TensorRT 8\.5 or later"
    ):
        check_supported(version)


@pytest.mark.parametrize("version", ["8.5.2.2", "8.6.2.3", "10.3.0.30", "11.4.1"])
def test_supported_tensorrt_versions_pass(version):
    check_supported(version)


@pytest.mark.parametrize(
    "name, dtype",
    [("FLOAT", np.float32), ("HALF", np.float16), ("INT8", np.int8), ("INT32", np.int32), ("BOOL", np.bool_)],
)
def test_dtypes_map_by_enum_name_without_trt_nptype(name, dtype):
    assert numpy_dtype(name) == np.dtype(dtype)
    assert numpy_dtype(f"DataType.{name}") == np.dtype(dtype)  # str() of a pybind11 enum


@pytest.mark.parametrize("name", ["BF16", "FP8", "INT4"])
def test_dtypes_numpy_lacks_are_refused(name):
    with pytest.raises(DataError, match=f"data type {name} has no numpy equivalent"):
        numpy_dtype(name)


def test_one_logger_captures_per_call_and_by_floor(caplog):
    sink = LogCapture()
    with sink.capture("WARNING") as outer:
        sink.emit("INFO", "building")
        with sink.capture("VERBOSE") as inner:
            sink.emit("ERROR", "parse failed")
            sink.emit("VERBOSE", "tactic 7")
        sink.emit("WARNING", "slow layer")
    assert inner == [("ERROR", "parse failed"), ("VERBOSE", "tactic 7")]
    assert outer == [("ERROR", "parse failed"), ("WARNING", "slow layer")]
    assert outer.errors() == ["parse failed"]
    with caplog.at_level(logging.WARNING, logger="fsanet.runtimes.tensorrt"):
        sink.emit("ERROR", "nobody listening")  # no capture open: Python logging gets it
    assert "nobody listening" in caplog.text
    assert CAPTURE is not sink and isinstance(CAPTURE, LogCapture)  # the process's own


def test_a_static_batch_piece_is_padded_with_its_last_face():
    x = np.arange(3 * 2, dtype=np.float32).reshape(3, 2)
    padded = pad_to_batch(x, 5)
    assert padded.shape == (5, 2)
    np.testing.assert_array_equal(padded[:3], x)
    np.testing.assert_array_equal(padded[3:], [x[2], x[2]])
    assert pad_to_batch(x, 3) is x


def test_stream_handle_without_cuda_bindings_utils_is_the_integer(monkeypatch):
    monkeypatch.setitem(sys.modules, "cuda", None)  # older cuda-python: no cuda.bindings.utils
    assert stream_handle(140737488355328) == 140737488355328


def test_the_backend_module_imports_without_torch_tensorflow_or_tensorrt():
    code = (
        "import sys, fsanet.runtimes.tensorrt, fsanet.export.tensorrt, fsanet.export.trt_calibrator; "
        "heavy = {'torch', 'tensorflow', 'tensorrt'} & set(sys.modules); assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# -- on a machine with TensorRT and a CUDA GPU (a Jetson) ------------------------------------------
@pytest.fixture(scope="module")
def engine(request, tmp_path_factory):
    # skip before asking for the (slow) ONNX export fixture
    pytest.importorskip("tensorrt", reason="TensorRT not installed")
    err, count = import_cudart().cudaGetDeviceCount()
    if int(err) != 0 or count == 0:
        pytest.skip("no CUDA GPU")
    from fsanet.export.tensorrt import build_engine

    out = tmp_path_factory.mktemp("trt-rt") / "fusion-fp32.engine"
    build_engine(request.getfixturevalue("fusion_onnx"), out, "fp32", max_batch=16, opt_batch=8)
    return out


@pytest.mark.integration  # the engine fixture asks for fusion_onnx (shared data) by getfixturevalue
def test_fp32_engine_gives_onnx_runtime_angles_for_any_batch(engine, request):
    fusion_onnx, real_faces = request.getfixturevalue("fusion_onnx"), request.getfixturevalue("real_faces")
    with runtimes.open(engine) as rt, runtimes.open(fusion_onnx) as ref:
        assert rt.fixed_batch == 16 and rt.inputs[0].shape == ("batch", 3, 64, 64)
        for n in (1, 5, 16, 37):  # below, at and above the profile's max batch
            np.testing.assert_allclose(rt.predict(real_faces[:n]), ref.predict(real_faces[:n]), atol=0.01)


@pytest.mark.integration  # the engine fixture asks for fusion_onnx (shared data) by getfixturevalue
def test_a_changed_engine_or_another_tensorrt_version_is_refused(engine, tmp_path):
    bad = tmp_path / engine.name
    shutil.copy(engine, bad)
    shutil.copy(f"{engine}.json", f"{bad}.json")
    manifest = json.loads(open(f"{bad}.json").read())
    manifest["tensorrt"]["version"] = "7.1.3"
    with pytest.raises(DataError, match=r"built by TensorRT 7\.1\.3"):
        TensorRTRuntime(bad, manifest=manifest)
    with open(bad, "ab") as f:
        f.write(b"\0")
    with pytest.raises(DataError, match="does not match its manifest"):
        runtimes.open(bad)


@pytest.mark.integration  # the engine fixture asks for fusion_onnx (shared data) by getfixturevalue
def test_cuda_graph_replays_the_same_angles_and_recaptures_on_a_new_shape(engine, request):
    real_faces = request.getfixturevalue("real_faces")
    with runtimes.open(engine) as plain, runtimes.open(engine, cuda_graph=True, gpu_timing=True) as graph:
        for n in (1, 1, 4, 1):
            np.testing.assert_array_equal(graph.predict(real_faces[:n]), plain.predict(real_faces[:n]))
        assert graph.graph_captures == 3  # 1, then 4, then 1 again: one graph at a time
        assert len(graph.timings) == 4 and all(t["compute_ms"] > 0 and t["wall_ms"] > 0 for t in graph.timings)
        assert "CUDA graph" in graph.executes_on()


@pytest.mark.integration  # the engine fixture asks for fusion_onnx (shared data) by getfixturevalue
def test_per_layer_times_name_the_layers_of_the_report(engine, request):
    import json as _json

    real_faces = request.getfixturevalue("real_faces")
    report = {layer["Name"] for layer in _json.loads(open(f"{engine}.layers.json").read())["Layers"]}
    with runtimes.open(engine) as rt:
        times = rt.layer_times(rt.input_format.prepare(real_faces[:1]), runs=20, warmup=5)
    rows = times.rows()
    assert times.iterations == 20 and rows and {r["name"] for r in rows} <= report
    assert abs(sum(r["share"] for r in rows) - 1) < 1e-6


@pytest.mark.integration  # the engine fixture asks for fusion_onnx (shared data) by getfixturevalue
def test_mapped_host_memory_runs_on_an_integrated_gpu_and_is_refused_elsewhere(engine, request):
    real_faces = request.getfixturevalue("real_faces")
    with runtimes.open(engine) as plain:
        integrated = plain.device["integrated"]
        expected = plain.predict(real_faces[:8])
    if not integrated:
        with pytest.raises(DataError, match="for an integrated GPU"):
            runtimes.open(engine, host_memory="mapped")
        return
    with runtimes.open(engine, host_memory="mapped") as mapped:
        np.testing.assert_array_equal(mapped.predict(real_faces[:8]), expected)


@pytest.mark.integration  # the engine fixture asks for fusion_onnx (shared data) by getfixturevalue
def test_profile_of_an_engine_on_faces_writes_the_split_and_per_layer_tables(engine, request, tmp_path):
    from fsanet.benchmarks.profile import profile_engine

    faces = request.getfixturevalue("real_faces")[:16]
    text = profile_engine(engine, tmp_path, faces, runs=20, warmup=5, per_layer=True, cuda_graph=True)
    saved = json.loads((tmp_path / "profile.json").read_text())
    assert saved["split"]["runs"] == 20 and saved["graph_captures"] >= 1
    assert saved["per_layer"]["iterations"] == 20 and saved["per_layer"]["nodes"]
    assert "GPU compute time" in text and "Slowest" in text
