"""Numeric options are validated by argparse with the allowed range (exit 2 naming the option)."""

from __future__ import annotations

import pytest
from fsanet.runtimes import InputFormat

from fsanet.cli import main
from fsanet.errors import DataError


def usage_error(capsys, *argv) -> str:
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


@pytest.mark.parametrize(
    ("option", "value"),
    [("--runs", "0"), ("--runs", "-1"), ("--threads", "0"), ("--threads", "-2"), ("--warmup", "-5"),
     ("--batch", "0"), ("--batch", "abc"), ("--runs", "1.5")],
)  # fmt: skip
def test_bench_options(option, value, capsys):
    err = usage_error(capsys, "bench", "m.onnx", "--faces", "f", "-o", "out", option, value)
    assert f"argument {option}" in err and value in err


@pytest.mark.parametrize(
    "argv",
    [
        ["calib", "build", "src", "-o", "c.npz", "-n", "0"],
        ["calib", "build", "src", "-o", "c.npz", "--bins", "0"],
        ["profile", "m.onnx", "--faces", "f", "-o", "o", "--batch", "0"],
        ["profile", "m.onnx", "--faces", "f", "-o", "o", "--top", "0"],
        ["predict", "m.onnx", "x.jpg", "--threads", "0"],
        ["synth", "-n", "0", "-o", "s.npz"],
        ["synth", "-n", "10", "--size", "16", "-o", "s.npz"],
        ["train", "--data", "d", "-o", "o", "--epochs", "0"],
        ["train", "--data", "d", "-o", "o", "--lr", "nan"],
        ["train", "--data", "d", "-o", "o", "--scale", "1.2,0.8"],
        ["train", "--data", "d", "-o", "o", "--milestones", "a,b"],
        ["export", "m.pt", "-o", "o", "--int8-max-drift", "-1"],
        ["pipeline", "--runs", "0"],
        ["pipeline", "--calib-count", "-3"],
        ["demo", "x.jpg", "--max-frames", "0"],
    ],
)
def test_other_commands(argv, capsys):
    err = usage_error(capsys, *argv)
    assert "argument" in err and "must be" in err


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("nchw,std=0", "std=0"),
        ("nchw,mean=abc", "mean=abc"),
        ("nchw,std=nan", "std=nan"),
        ("nhwc,mean=inf", "mean=inf"),
    ],
)
def test_input_format_numbers(spec, message):
    with pytest.raises(DataError, match=message):
        InputFormat.parse(spec)


def test_input_format_bad_number_on_the_command_line(tiny_models, noise_faces, tmp_path, capsys):
    model = tiny_models["mean"].split("@")[0] + "@nchw,std=0"
    assert main(["bench", model, "--faces", str(noise_faces), "-o", str(tmp_path / "r")]) == 2
    assert "std=0" in capsys.readouterr().err
