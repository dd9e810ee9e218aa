"""TensorRT runtime backend: clear errors without TensorRT (here), and real engines on a machine with
TensorRT and a CUDA GPU (a Jetson), skipped only where those are missing."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from fsanet.runtimes.tensorrt import TensorRTUnavailable, check_engine_version, import_cudart

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


def test_an_engine_from_another_tensorrt_is_refused_before_loading(tmp_path):
    manifest = {"tensorrt": {"version": "8.6.2.3"}, "gpu": {"name": "Orin"}}
    with pytest.raises(DataError, match=r"built by TensorRT 8\.6\.2\.3 on Orin, but TensorRT 10\.3\.0\.30.*rebuild"):
        check_engine_version(tmp_path / "x.engine", manifest, "10.3.0.30")
    check_engine_version(tmp_path / "x.engine", manifest, "8.6.2.3")  # same version: fine
    check_engine_version(tmp_path / "x.engine", None, "10.3.0.30")  # trtexec engine, no manifest


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
        runtimes.open(bad, manifest=manifest)
    with open(bad, "ab") as f:
        f.write(b"\0")
    with pytest.raises(DataError, match="does not match its manifest"):
        runtimes.open(bad)
