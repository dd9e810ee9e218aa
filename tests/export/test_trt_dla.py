"""DLA builds without TensorRT: which releases build for it, its one static shape, its builder
flags and trtexec line, where the build log says each layer ran, and the CLI options refused
before anything is built."""

from __future__ import annotations

import shlex

import pytest
from fsanet.export.targets import _check_trt_options, _dla_text
from fsanet.export.tensorrt import check_dla_options, plan_build
from fsanet.export.trt_command import trtexec_command
from fsanet.export.trt_dla import check_dla_version, dla_flags, dla_shapes, placement, strongly_typed_dla

from fsanet.cli import main
from fsanet.errors import DataError


# -- which TensorRT builds for a DLA ------------------------------------------------------------
@pytest.mark.parametrize("version", ["8.5.2.2", "8.6.2.3", "10.3.0.30", "10.7.0.23", "11.4.1", "11.5.0"])
def test_dla_builds_on_jetpack_5_6_and_from_tensorrt_11_4_1(version):
    check_dla_version(version)


@pytest.mark.parametrize("version", ["10.8.0.43", "10.13.3", "11.0.0", "11.3.0", "11.4.0"])
def test_tensorrt_without_dla_on_jetson_is_refused_naming_those_with_it(version):
    with pytest.raises(DataError, match=r"cannot build for DLA on a Jetson .*10\.7 was the last 10\.x.*11\.4\.1"):
        check_dla_version(version)


def test_dla_is_strongly_typed_from_tensorrt_11():
    assert not strongly_typed_dla("10.3.0.30") and not strongly_typed_dla("8.5.2.2")
    assert strongly_typed_dla("11.4.1")


# -- shapes and flags ---------------------------------------------------------------------------
def test_dla_takes_one_static_shape():
    assert dla_shapes(("batch", 3, 64, 64), None) == ((1, 3, 64, 64),) * 3  # batch 1 unless asked
    assert dla_shapes(("batch", 3, 64, 64), 4) == ((4, 3, 64, 64),) * 3
    assert dla_shapes((8, 3, 64, 64), None) == ((8, 3, 64, 64),) * 3  # a fixed ONNX batch stays
    with pytest.raises(DataError, match="fixed at 8; it cannot be built for batch 2"):
        dla_shapes((8, 3, 64, 64), 2)
    with pytest.raises(DataError, match="at least 1"):
        dla_shapes(("batch", 3, 64, 64), 0)


def test_dla_flags_follow_trtexec():
    assert dla_flags(False, True) == ("PREFER_PRECISION_CONSTRAINTS", "GPU_FALLBACK")
    assert dla_flags(False, False) == ("PREFER_PRECISION_CONSTRAINTS", "DIRECT_IO")
    assert dla_flags(True, True) == ("GPU_FALLBACK",)  # TensorRT 11: no precision constraints


@pytest.mark.parametrize(
    "source, precision, version, fallback, typed, flags, calibrate",
    [
        # TensorRT 10.3 (JetPack 6): weakly typed even where the GPU build would be strongly typed
        ("fp32", "fp16", "10.3.0.30", True, False, ("FP16", "PREFER_PRECISION_CONSTRAINTS", "GPU_FALLBACK"), False),
        ("fp16", "fp16", "10.3.0.30", True, False, ("FP16", "PREFER_PRECISION_CONSTRAINTS", "GPU_FALLBACK"), False),
        ("fp32", "int8", "8.5.2.2", False, False, ("INT8", "FP16", "PREFER_PRECISION_CONSTRAINTS", "DIRECT_IO"), True),
        ("fp16", "fp16", "11.4.1", True, True, ("GPU_FALLBACK",), False),
    ],
)
def test_dla_build_plans(source, precision, version, fallback, typed, flags, calibrate):
    plan = plan_build(source, precision, version, True, dla=True, gpu_fallback=fallback)
    assert (plan.strongly_typed, plan.flags, plan.calibrate) == (typed, flags, calibrate)


def test_dla_plans_refuse_fp32_and_untyped_sources_on_tensorrt_11():
    with pytest.raises(DataError, match="DLA runs FP16 or INT8 only"):
        plan_build("fp32", "fp32", "10.3.0.30", False, dla=True)
    with pytest.raises(DataError, match="--to onnx-fp16"):
        plan_build("fp32", "fp16", "11.4.1", False, dla=True)


def test_trtexec_line_of_a_dla_build_gives_its_static_shapes_and_leaves_trtexecs_own_flags():
    flags = plan_build("fp32", "fp16", "10.3.0.30", False, dla=True, gpu_fallback=False).flags
    argv = shlex.split(
        trtexec_command("fusion.onnx", "fusion-fp16.engine", input_name="input", shapes=((1, 3, 64, 64),) * 3,
                        strongly_typed=False, flags=flags, workspace_mb=1024, dla_core=0, gpu_fallback=False,
                        dynamic_batch=True)
    )  # fmt: skip
    assert [a for a in argv if a.endswith("Shapes=input:1x3x64x64")] == [
        "--minShapes=input:1x3x64x64", "--optShapes=input:1x3x64x64", "--maxShapes=input:1x3x64x64",
    ]  # fmt: skip
    assert "--fp16" in argv and "--useDLACore=0" in argv and "--allowGPUFallback" not in argv
    assert not any("PREFER" in a or "DIRECT" in a for a in argv)
    with pytest.raises(ValueError, match="no trtexec flag for BuilderFlag DIRECT_IO"):
        trtexec_command("m.onnx", "m.engine", input_name="input", shapes=((1, 3, 64, 64),) * 3,
                        strongly_typed=False, flags=("DIRECT_IO",), workspace_mb=1)  # fmt: skip


# -- where the build log says each layer ran ----------------------------------------------------
def test_placement_from_a_tensorrt_8_and_10_build_log():
    log = [
        ("INFO", "[MemUsageChange] Init builder kernel library: CPU +0, GPU +0, now: CPU 512, GPU 4096 (MiB)"),
        ("INFO", ""),
        ("INFO", "--------------- Layers running on DLA: "),
        ("INFO", "[DlaLayer] {ForeignNode[/caps/Conv.../caps/Relu_3]}, "),
        ("INFO", "[DlaLayer] {ForeignNode[/ssr/Conv_7]}, "),
        ("INFO", "--------------- Layers running on GPU: "),
        ("INFO", "[GpuLayer] SOFTMAX: /caps/Softmax, "),
        ("INFO", "[GpuLayer] SHUFFLE: /caps/Reshape_2 + /caps/Transpose, "),
        ("INFO", "[MemUsageChange] TensorRT-managed allocation in building engine: CPU +0, GPU +2, now: CPU 0"),
    ]
    assert placement(log) == {
        "dla": ["{ForeignNode[/caps/Conv.../caps/Relu_3]}", "{ForeignNode[/ssr/Conv_7]}"],
        "gpu": ["SOFTMAX: /caps/Softmax", "SHUFFLE: /caps/Reshape_2 + /caps/Transpose"],
    }


def test_placement_from_a_one_line_list_and_from_a_log_without_lists():
    log = [
        ("INFO", "--------------- Layers running on DLA:"),
        ("INFO", "{Conv_0,Relu_1}, {Conv_5,Add_6,Relu_7},"),
        ("INFO", "--------------- Layers running on GPU:"),
        ("INFO", "Softmax_9, (Unnamed Layer* 12) [Constant] + (Unnamed Layer* 13) [Shuffle], Div_14"),
        ("INFO", "Total Activation Memory: 4194304"),
    ]
    assert placement(log) == {
        "dla": ["{Conv_0,Relu_1}", "{Conv_5,Add_6,Relu_7}"],
        "gpu": ["Softmax_9", "(Unnamed Layer* 12) [Constant] + (Unnamed Layer* 13) [Shuffle]", "Div_14"],
    }
    assert placement([("INFO", "Total Activation Memory: 4194304")]) is None
    assert placement([("INFO", "--------------- Layers running on DLA:"), ("INFO", "")]) == {"dla": [], "gpu": []}


def test_export_summary_names_the_core_and_the_layers_on_the_gpu():
    assert _dla_text(None) == ""
    assert _dla_text({"core": 1, "running_on_gpu": ["a", "b"]}) == "; DLA core 1, 2 layers on the GPU"
    assert "not listed in the build log" in _dla_text({"core": 0, "running_on_gpu": None})


# -- options refused before anything is built ---------------------------------------------------
def test_dla_options_alone():
    check_dla_options(None, True)
    check_dla_options(1, False, "int8")
    with pytest.raises(DataError, match="--no-gpu-fallback applies to DLA builds only"):
        check_dla_options(None, False)
    for bad in (-1, True, "0", 1.0):
        with pytest.raises(DataError, match="a DLA core is a number from 0"):
            check_dla_options(bad, True)
    with pytest.raises(DataError, match="DLA runs FP16 or INT8 only"):
        check_dla_options(0, True, "fp32")


def test_export_refuses_dla_options_without_a_tensorrt_target():
    assert _check_trt_options(["onnx"], None, True) == {}
    assert _check_trt_options(["onnx", "tensorrt-int8"], 0, False) == {"dla_core": 0, "gpu_fallback": False}
    with pytest.raises(DataError, match="apply to TensorRT engines; add --to tensorrt-fp16"):
        _check_trt_options(["onnx", "tflite"], 0, True)
    with pytest.raises(DataError, match="DLA runs FP16 or INT8 only"):
        _check_trt_options(["tensorrt-fp16", "tensorrt-fp32"], 0, True)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--to", "onnx", "--dla-core", "0"], "--dla-core/--no-gpu-fallback apply to TensorRT engines"),
        (["--to", "tensorrt-fp32", "--dla-core", "1"], "DLA runs FP16 or INT8 only"),
        (["--to", "tensorrt-fp16", "--no-gpu-fallback"], "--no-gpu-fallback applies to DLA builds only"),
    ],
)
def test_cli_bad_dla_options_exit_2_with_one_line(extra, message, tmp_path, capsys):
    checkpoint = tmp_path / "model.pt"
    checkpoint.write_bytes(b"never read: the options are refused first")
    assert main(["export", str(checkpoint), *extra, "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not [p for p in (tmp_path / "out").rglob("*") if p.suffix in (".onnx", ".engine", ".json")]


def test_cli_negative_dla_core_is_a_usage_error(tmp_path, capsys):
    checkpoint = tmp_path / "model.pt"
    checkpoint.write_bytes(b"x")
    assert (
        main(["export", str(checkpoint), "--to", "tensorrt-fp16", "--dla-core", "-1", "-o", str(tmp_path / "o")]) == 2
    )
    assert "argument --dla-core: must be an integer >= 0, got -1" in capsys.readouterr().err
