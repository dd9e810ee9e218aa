"""`fsanet profile`: ONNX Runtime's per-operator profile of real artifacts."""

from __future__ import annotations

import json

import pytest
from fsanet.benchmarks.flops import onnx_flops

from fsanet.cli import main


@pytest.fixture(scope="module")
def fusion_profile(fusion_onnx, shared_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("profile")
    argv = ["profile", str(fusion_onnx), "--faces", str(shared_data / "real-faces" / "afw")]
    assert main([*argv, "--runs", "20", "--warmup", "3", "--top", "7", "-o", str(out)]) == 0
    return json.loads((out / "profile.json").read_text()), out


def test_profile_splits_the_fusion_by_kernel_kind(fusion_profile, fusion_onnx):
    result, out = fusion_profile
    kinds = {r["op_type"]: r for r in result["op_types"]}
    # six streams of FSA-Net: ten 1x1 convolutions and six depthwise 3x3 ones each, plus the
    # grouped convolution that runs the first depthwise step of all six on the image
    assert kinds["Conv 1x1"]["nodes"] == 60
    assert kinds["Conv depthwise 3x3"]["nodes"] == 36
    assert kinds["Conv depthwise 3x3 (x6)"]["nodes"] == 1
    # FLOPs from the profiler's shapes of the optimised graph = FLOPs of the file's own graph
    total = sum(r["mflop"] for r in result["op_types"]) * 1e6
    assert total == pytest.approx(onnx_flops(str(fusion_onnx)), rel=1e-3)
    assert sum(r["share"] for r in result["op_types"]) == pytest.approx(1.0)
    us = [n["us_per_run"] for n in result["nodes"]]
    assert us == sorted(us, reverse=True) and all(u > 0 for u in us)
    assert result["p50_ms"] > 0 and result["kernel_ms"] < result["profiled_run_ms"]
    text = (out / "profile.md").read_text()
    assert "| Conv 1x1 | 60 |" in text and "Slowest 7 nodes:" in text
    assert (out / "profile.png").read_bytes()[:4] == b"\x89PNG"


def test_profile_takes_a_foreign_onnx_with_its_input_format(reference_models, shared_data, tmp_path):
    argv = ["profile", reference_models["foxtracker"], "--data", str(shared_data / "aflw2000-sample")]
    assert main([*argv, "--runs", "5", "--warmup", "1", "-o", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "profile.json").read_text())
    assert any(r["op_type"].startswith("Conv") and r["mflop"] > 0 for r in result["op_types"])


def test_profile_refuses_what_it_cannot_profile(shared_data, tmp_path, capsys):
    faces = ["--faces", str(shared_data / "real-faces" / "afw")]
    assert main(["profile", "fsanet/models/fsanet-fusion-synthetic.pt", *faces, "-o", str(tmp_path)]) == 2
    assert "takes .onnx files only" in capsys.readouterr().err
    assert main(["profile", "model.onnx", "-o", str(tmp_path)]) == 2
    assert "needs faces to run on (--faces DIR or --data DIR)" in capsys.readouterr().err


def test_profile_reads_the_int8_file_onnx_runtime_rewrites(fusion_onnx_int8, shared_data, tmp_path):
    # ONNX Runtime runs fused Q/DQ convolutions as channels-last QLinearConv with pre-packed
    # weights: the profiler records no weight shape for them (this crashed the profile)
    argv = ["profile", str(fusion_onnx_int8), "--faces", str(shared_data / "real-faces" / "afw")]
    assert main([*argv, "--runs", "5", "--warmup", "1", "-o", str(tmp_path)]) == 0
    kinds = {r["op_type"]: r for r in json.loads((tmp_path / "profile.json").read_text())["op_types"]}
    assert kinds["QLinearConv"]["nodes"] > 0 and kinds["DequantizeLinear"]["nodes"] > 0
    assert sum(r["share"] for r in kinds.values()) == pytest.approx(1.0)
