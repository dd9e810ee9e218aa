"""TensorRT's layer report and trtexec command, checked without TensorRT: the engine inspector JSON
below is written by hand from the schema NVIDIA's TensorRT Engine Explorer reads
(NVIDIA/TensorRT@release/10.3, tools/experimental/trt-engine-explorer/trex/{parser,layer,activations}.py),
with format strings taken from that file's table. It is not the output of a real engine."""

from __future__ import annotations

import json
import shlex

import pytest
from fsanet.export.trt_command import trtexec_command
from fsanet.export.trt_layers import layers, precision_counts, read_report, report_path, tensor_precision

from fsanet.cli import main
from fsanet.errors import DataError


def _tensor(name, dims, fmt):
    return {"Name": name, "Location": "Device", "Dimensions": dims, "Format/Datatype": fmt}


INSPECTOR = {
    "Layers": [
        {
            "Name": "Reformatting CopyNode for Input Tensor 0 to /conv1/Conv + /relu1/Relu",
            "LayerType": "Reformat",
            "Inputs": [_tensor("input", [1, 3, 64, 64], "Row major linear FP32")],
            "Outputs": [
                _tensor(
                    "Reformatted Input Tensor 0", [1, 3, 64, 64], "Channel major FP16 format where channel % 8 == 0"
                )
            ],
            "TacticValue": "0x0000000000000000",
        },
        {
            "Name": "/conv1/Conv + /relu1/Relu",
            "LayerType": "CaskConvolution",
            "Inputs": [
                _tensor(
                    "Reformatted Input Tensor 0", [1, 3, 64, 64], "Channel major FP16 format where channel % 8 == 0"
                )
            ],
            "Outputs": [
                _tensor("/relu1/Relu_output_0", [1, 16, 64, 64], "Channel major FP16 format where channel % 8 == 0")
            ],
            "TacticName": "sm87_xmma_fprop_implicit_gemm_f16f16_f16f16_f16_nhwckrsc_nhwc_tilesize32x32x64_stage5",
            "TacticValue": "0x7e29bdfccd92c42c",
        },
        {
            "Name": "/conv2/Conv",
            "LayerType": "CaskConvolution",
            "Inputs": [
                _tensor(
                    "/q/QuantizeLinear_output_0",
                    [1, 16, 32, 32],
                    "Thirty-two wide channel vectorized row major Int8 format",
                )
            ],
            "Outputs": [
                _tensor(
                    "/conv2/Conv_output_0", [1, 32, 32, 32], "Thirty-two wide channel vectorized row major Int8 format"
                )
            ],
            "TacticValue": "0x1b0e5c1ffa1a9b5d",
        },
        {
            "Name": "/pool/GlobalAveragePool",
            "LayerType": "CaskPooling",
            "Inputs": [_tensor("/conv2/Conv_output_0", [1, 32, 32, 32], "Row major linear FP32")],
            "Outputs": [_tensor("angles", [1, 3], "Row major linear FP32")],
        },
        {"Name": "scale_constant", "LayerType": "Constant", "Inputs": [], "Outputs": [_tensor("s", [1], "Half")]},
    ],
    "Bindings": ["input", "angles"],
}


@pytest.mark.parametrize(
    "fmt, precision",
    [
        ("Row major linear FP32", "FP32"),
        ("Channel major FP16 format where channel % 8 == 0", "FP16"),
        ("Thirty-two wide channel vectorized row major Int8 format", "INT8"),
        ("Channel major INT8 format where channel % 16 == 0", "INT8"),
        ("Half", "FP16"),
        ("Float", "FP32"),
        ("Row major linear BFloat16 format", "BF16"),
        ("Unknown format", "unknown"),
    ],
)
def test_tensor_formats_give_their_precision(fmt, precision):
    assert tensor_precision(fmt) == precision


def test_each_layer_runs_in_its_first_inputs_precision():
    rows = layers(INSPECTOR)
    assert [(r["type"], r["precision"]) for r in rows] == [
        ("Reformat", "FP32"),
        ("CaskConvolution", "FP16"),
        ("CaskConvolution", "INT8"),
        ("CaskPooling", "FP32"),
        ("Constant", "FP16"),  # no input: its output's precision
    ]
    assert rows[1]["tactic"].startswith("sm87_xmma_fprop") and rows[2]["tactic"] == "0x1b0e5c1ffa1a9b5d"
    assert precision_counts(rows) == {"FP32": 2, "FP16": 2, "INT8": 1}


def test_a_report_without_detailed_verbosity_says_how_to_get_one(tmp_path):
    with pytest.raises(DataError, match="without DETAILED profiling verbosity.*--profilingVerbosity=detailed"):
        layers({"Layers": ["/conv1/Conv", "/pool/GlobalAveragePool"], "Bindings": []})
    with pytest.raises(DataError, match="not a TensorRT engine inspector report"):
        layers({"layers": []})
    with pytest.raises(DataError, match="no layer report beside the engine"):
        read_report(tmp_path / "none.engine.layers.json")


def test_profile_of_an_engine_prints_the_precision_of_every_layer(tmp_path, capsys):
    engine = tmp_path / "fusion-int8.engine"
    engine.write_bytes(b"a serialized engine; profile reads only its layer report")
    report_path(engine).write_text(json.dumps(INSPECTOR))
    assert main(["profile", str(engine), "-o", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "5 layers in the engine" in out and "FP32 2, FP16 2, INT8 1" in out
    assert "| /conv2/Conv | CaskConvolution | INT8 | 0x1b0e5c1ffa1a9b5d |" in out
    saved = json.loads((tmp_path / "out" / "profile.json").read_text())
    assert saved["precisions"] == {"FP32": 2, "FP16": 2, "INT8": 1} and len(saved["layers"]) == 5
    assert (tmp_path / "out" / "profile.md").read_text() == out.rstrip("\n") + "\n"


def test_profile_of_an_engine_without_report_exits_2(tmp_path, capsys):
    engine = tmp_path / "trtexec.engine"
    engine.write_bytes(b"engine")
    assert main(["profile", str(engine), "-o", str(tmp_path / "out")]) == 2
    assert "--exportLayerInfo" in capsys.readouterr().err


# -- trtexec parity ---------------------------------------------------------------------------
DYNAMIC = ((1, 3, 64, 64), (16, 3, 64, 64), (64, 3, 64, 64))


def test_trtexec_command_of_a_strongly_typed_fp16_build():
    command = trtexec_command(
        "fusion-fp16.onnx", "fusion-fp16.engine", input_name="input", shapes=DYNAMIC, strongly_typed=True,
        flags=(), workspace_mb=1024, timing_cache="timing.cache", optimization_level=3,
        layer_info="fusion-fp16.engine.layers.json",
    )  # fmt: skip
    assert shlex.split(command) == [
        "trtexec", "--onnx=fusion-fp16.onnx", "--saveEngine=fusion-fp16.engine",
        "--minShapes=input:1x3x64x64", "--optShapes=input:16x3x64x64", "--maxShapes=input:64x3x64x64",
        "--stronglyTyped", "--memPoolSize=workspace:1024", "--timingCacheFile=timing.cache",
        "--builderOptimizationLevel=3", "--profilingVerbosity=detailed",
        "--exportLayerInfo=fusion-fp16.engine.layers.json", "--skipInference",
    ]  # fmt: skip


def test_trtexec_command_of_implicit_int8_reads_the_calibration_cache():
    cache = "calib-0123456789abcdef-onnx-0123456789ab-trt-8.6.2.3.cache"
    argv = shlex.split(
        trtexec_command("fusion.onnx", "fusion-int8.engine", input_name="input", shapes=DYNAMIC,
                        strongly_typed=False, flags=("INT8", "FP16"), workspace_mb=512, calib_cache=cache)
    )  # fmt: skip
    assert "--int8" in argv and "--fp16" in argv and f"--calib={cache}" in argv
    assert "--stronglyTyped" not in argv and "--memPoolSize=workspace:512" in argv


def test_trtexec_command_of_fp32_static_batch_and_dla():
    static = ((8, 3, 64, 64),) * 3
    argv = shlex.split(
        trtexec_command("m.onnx", "m.engine", input_name="input", shapes=static, strongly_typed=False, flags=(),
                        workspace_mb=256, fp32_no_tf32=True)
    )  # fmt: skip
    assert "--noTF32" in argv and not any(a.startswith("--minShapes") for a in argv)
    dla = shlex.split(
        trtexec_command("m.onnx", "m.engine", input_name="input", shapes=DYNAMIC, strongly_typed=False,
                        flags=("FP16", "GPU_FALLBACK"), workspace_mb=256, dla_core=1, gpu_fallback=True)
    )  # fmt: skip
    assert dla[-4:] == ["--useDLACore=1", "--allowGPUFallback", "--profilingVerbosity=detailed", "--skipInference"]
    with pytest.raises(ValueError, match="no trtexec flag for BuilderFlag SPARSE_WEIGHTS"):
        trtexec_command("m.onnx", "m.engine", input_name="input", shapes=DYNAMIC, strongly_typed=False,
                        flags=("SPARSE_WEIGHTS",), workspace_mb=256)  # fmt: skip
