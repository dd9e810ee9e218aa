"""The exit-code contract: 0 success, 1 only a budget violation, 2 bad input or usage with one
line naming the file or option, 3 an internal error (traceback to a file; --debug prints it)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fsanet import cli
from fsanet.cli import main

TRACEBACK = "Traceback (most recent call last)"


def run(capsys, *argv):
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:  # argparse's usage errors
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if "error" in line]
    assert TRACEBACK not in err
    assert len(lines) == 1, err
    return lines[0]


def test_internal_error_exits_3_with_one_line_and_the_traceback_in_a_file(monkeypatch, tmp_path, capsys):
    def broken(args):
        raise RuntimeError("something the code did not expect")

    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(cli.tempfile, "tempdir", None)  # re-read TMPDIR
    monkeypatch.setattr(cli, "_variants", broken)
    code, _, err = run(capsys, "variants")
    assert code == 3
    line = one_error_line(err)
    assert "internal error: RuntimeError: something the code did not expect" in line
    saved = Path(line.rsplit("full traceback: ", 1)[1].rstrip(")"))
    assert saved.parent == tmp_path and TRACEBACK in saved.read_text() and "broken" in saved.read_text()


def test_debug_prints_the_traceback(monkeypatch, capsys):
    def broken(args):
        raise RuntimeError("boom")

    monkeypatch.setattr(cli, "_variants", broken)
    for argv in (["--debug", "variants"], ["variants", "--debug"]):
        code, _, err = run(capsys, *argv)
        assert code == 3 and TRACEBACK in err and "RuntimeError: boom" in err


def test_calib_build_into_an_existing_folder(noise_faces, tmp_path, capsys):
    code, _, err = run(capsys, "calib", "build", noise_faces, "-n", "2", "-o", tmp_path)
    assert code == 2 and f"-o {tmp_path}: is a folder" in one_error_line(err)


@pytest.mark.parametrize("point", ["nan nan", "12.0 nan", "inf 40"])
def test_predict_on_landmarks_with_nan(point, tiny_models, make_faces, tmp_path, capsys):
    faces = make_faces(tmp_path / "faces", count=1)
    pts = faces / "face0.pts"
    pts.write_text(pts.read_text().replace("\n", f"\n{point}\n", 1))
    code, _, err = run(capsys, "predict", tiny_models["mean"], faces / "face0.jpg")
    assert code == 2 and "face0.pts" in one_error_line(err) and "finite" in err


@pytest.mark.parametrize("batch", ["0", "abc", "1,,32", "-1", "1,1"])
def test_bench_batch_values(tiny_models, noise_faces, tmp_path, capsys, batch):
    code, _, err = run(capsys, "bench", tiny_models["mean"], "--faces", noise_faces, "--batch", batch, "-o", tmp_path)
    assert code == 2 and "--batch" in err and TRACEBACK not in err


@pytest.mark.parametrize("kind", ["binary", "folder", "missing"])
def test_budget_that_is_not_a_toml_file(kind, tiny_models, noise_faces, tmp_path, capsys):
    budget = tmp_path / "budget.toml"
    if kind == "binary":
        budget.write_bytes(bytes(range(256)) * 4)
    elif kind == "folder":
        budget.mkdir()
    code, _, err = run(capsys, "bench", tiny_models["mean"], "--faces", noise_faces, "--budget", budget,
                       "-o", tmp_path / "rep")  # fmt: skip
    assert code == 2 and "budget.toml" in one_error_line(err)
    assert not (tmp_path / "rep").exists()


@pytest.mark.parametrize("command", ["eval", "bench"])
@pytest.mark.parametrize(("model", "found"), [("five", "('N', 5)"), ("nhwc128", "('N', 128, 128, 3)")])
def test_foreign_onnx_that_does_not_fit(command, model, found, tiny_models, make_npz, tmp_path, capsys):
    data = make_npz(tmp_path / "set.npz")
    argv = ["--data", data] + (["-o", tmp_path / "rep", "--runs", "1", "--no-memory"] if command == "bench" else [])
    code, _, err = run(capsys, command, tiny_models[model], *argv)
    line = one_error_line(err)
    assert code == 2 and f"{model}.onnx" in line and found in line


@pytest.mark.parametrize("out", ["/proc/fsanet-test/report", "/dev/null/report"])
def test_output_under_a_folder_that_cannot_be_written(out, tiny_models, noise_faces, capsys):
    code, _, err = run(capsys, "bench", tiny_models["mean"], "--faces", noise_faces, "-o", out)
    assert code == 2 and f"-o {out}" in one_error_line(err)


def test_output_in_a_read_only_folder_for_a_user(tiny_models, noise_faces, tmp_path, capsys):
    if os.geteuid() == 0:  # root writes anywhere: /proc above stands for this case there
        readonly = Path("/proc")
    else:
        readonly = tmp_path / "ro"
        readonly.mkdir()
        readonly.chmod(0o555)
    code, _, err = run(capsys, "calib", "build", noise_faces, "-n", "2", "-o", readonly / "calib.npz")
    assert code == 2 and "cannot write in" in one_error_line(err)


def test_usage_error_exits_2_without_traceback(capsys):
    code, _, err = run(capsys, "bench")
    assert code == 2 and TRACEBACK not in err


def test_a_missing_model_is_exit_2_naming_it(noise_faces, tmp_path, capsys):
    code, _, err = run(capsys, "bench", tmp_path / "absent.onnx", "--faces", noise_faces, "-o", tmp_path / "r")
    assert code == 2 and "absent.onnx" in one_error_line(err)


def test_console_script_has_no_traceback_and_exit_2(tmp_path):
    """The installed command as a user runs it, in its own process."""
    exe = Path(sys.executable).with_name("fsanet")
    bad = tmp_path / "crops.npz"
    np.savez(bad, image=np.full((2, 64, 64, 3), np.nan, np.float32), pose=np.zeros((2, 3), np.float32))
    r = subprocess.run(
        [exe, "calib", "build", bad, "-n", "1", "-o", tmp_path / "c.npz"], capture_output=True, text=True
    )
    assert r.returncode == 2 and TRACEBACK not in r.stderr and "crops.npz" in r.stderr
    assert not (tmp_path / "c.npz").exists()
