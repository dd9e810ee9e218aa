"""`fsanet export --to a,b,c`: argument checks, and TensorRT targets on a machine without TensorRT."""

from __future__ import annotations

import importlib.util

import pytest

from fsanet.cli import main

NO_TRT = importlib.util.find_spec("tensorrt") is None


@pytest.fixture(scope="module")
def small_checkpoint(tmp_path_factory):
    import torch

    from fsanet import checkpoint
    from fsanet.model import build

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "one.pt"
    return checkpoint.save(build("fsanet-1x1-capsule").eval(), path)


def test_unknown_target_lists_the_available_ones(small_checkpoint, tmp_path, capsys):
    assert main(["export", str(small_checkpoint), "--to", "onnx,tflite-int4", "-o", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "tflite-int4" in err and "tflite-dynamic" in err and "tensorrt-int8" in err
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("target", ["onnx-int8", "tflite-int8", "tensorrt-int8"])
def test_int8_targets_need_a_calibration_set(small_checkpoint, tmp_path, capsys, target):
    assert main(["export", str(small_checkpoint), "--to", target, "--skip-unavailable", "-o", str(tmp_path)]) == 2
    assert "--calib" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


@pytest.mark.integration  # slow (~20 s here): a real ONNX export of the one-member checkpoint
@pytest.mark.skipif(not NO_TRT, reason="TensorRT is installed here: the no-TensorRT paths do not apply")
def test_tensorrt_targets_fail_without_tensorrt_unless_skipping_is_asked(small_checkpoint, tmp_path, capsys):
    args = ["export", str(small_checkpoint), "--to", "onnx,tensorrt-fp16", "-o", str(tmp_path)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "TensorRT" in err and "--skip-unavailable" in err and "fsanet-edge[tensorrt]" in err
    assert not any(tmp_path.iterdir())  # refused before anything was written

    assert main(args + ["--skip-unavailable"]) == 0
    out = capsys.readouterr().out
    assert "| tensorrt-fp16 | - |" in out and "skipped: TensorRT not installed" in out
    assert (tmp_path / "one.onnx").is_file() and not list(tmp_path.glob("*.engine"))
