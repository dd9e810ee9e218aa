"""Hardening, second round: documented upper bounds checked before work, budget files that
cannot exhaust memory or the stack, every command that reads a model checks its sha256, and a
model in a folder whose name holds '@'."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from fsanet.benchmarks.budget import load_budget

from fsanet.cli import main
from fsanet.errors import DataError
from fsanet.limits import MAX_BATCH, MAX_FACES, MAX_GOLDEN_FACES
from fsanet.manifest import base_manifest, write_sidecar

pytestmark = pytest.mark.unit
PACKAGED = Path(__file__).resolve().parents[2] / "fsanet" / "models" / "fsanet-fusion-synthetic.pt"


def refused(capsys, *argv) -> str:
    """Exit 2 with one error line, no traceback; returns that line."""
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err.strip().splitlines()[-1]


# -- counts and batches: bounded by argparse before any work ---------------------------------------


@pytest.mark.parametrize(
    ("argv", "bound"),
    [
        (["calib", "build", "synthetic:10", "-o", "c.npz", "-n", "1000000000"], MAX_FACES),
        (["synth", "-n", "1000000001", "-o", "s.npz"], MAX_FACES),
        (["debug", "a.onnx", "--reference", "b.onnx", "--faces", "f", "-o", "o", "-n", "100000000"], MAX_FACES),
        (["bundle", "a.onnx", "-o", "kit", "--count", "100000000"], MAX_GOLDEN_FACES),
        (["pipeline", "--calib-count", "100000000"], MAX_FACES),
        (["bench", "m.onnx", "--faces", "f", "-o", "o", "--batch", "1,100000000"], MAX_BATCH),
        (["profile", "m.onnx", "--faces", "f", "-o", "o", "--batch", "100000000"], MAX_BATCH),
        (["train", "--data", "d", "-o", "o", "--batch", "100000000"], MAX_BATCH),
    ],
)
def test_counts_and_batches_name_their_bound(argv, bound, capsys):
    line = refused(capsys, *argv)
    assert f"{bound:,}" in line and "argument" in line


def test_a_huge_integer_is_shown_short(capsys):
    line = refused(capsys, "synth", "-n", "9" * 5000, "-o", "s.npz")
    assert "5000 characters" in line and len(line) < 300


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "0", "-3"])
def test_peak_gflops_must_be_a_positive_finite_number(value, capsys):
    line = refused(capsys, "bench", "m.onnx", "--faces", "f", "-o", "o", f"--peak-gflops={value}")
    assert "--peak-gflops" in line and value in line


# -- budget files -----------------------------------------------------------------------------------


def test_budget_from_dev_zero_is_refused_without_reading_it(capsys, tmp_path):
    line = refused(capsys, "bench", PACKAGED, "--faces", "synthetic:2", "--budget", "/dev/zero", "-o", tmp_path / "o")
    assert line.startswith("fsanet bench: error: /dev/zero:") and "not a regular file" in line
    assert not (tmp_path / "o").exists()


def test_budget_fifo_does_not_block(tmp_path):
    fifo = tmp_path / "budget.toml"
    os.mkfifo(fifo)  # no writer: reading it would block forever
    with pytest.raises(DataError, match="not a regular file"):
        load_budget(fifo)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[all]\nmax_drift = " + "9" * 400 + "\n", "400-digit integer"),
        ("[all]\nmax_drift = " + "[" * 5000 + "]" * 5000 + "\n", "nested too deep"),
        ("[all]\nmax_drift = 0.1\n" + "# padding\n" * 2_000_000, "bound of"),
    ],
    ids=["400-digit-integer", "5000-deep-array", "20-MB-file"],
)
def test_hostile_budget_files_are_bad_input(text, message, tmp_path):
    path = tmp_path / "budget.toml"
    path.write_text(text)
    with pytest.raises(DataError, match=message) as e:
        load_budget(path)
    assert str(path) in str(e.value)


# -- every command that reads a model checks it against its manifest --------------------------------


def _tampered_pair(tmp_path: Path, write_tiny_onnx) -> tuple[Path, Path]:
    """An 'INT8' and a reference ONNX, both with sidecar manifests; the reference then replaced
    by another valid ONNX file (its sidecar's sha256 no longer matches)."""
    int8, ref = write_tiny_onnx(tmp_path / "m-int8.onnx"), write_tiny_onnx(tmp_path / "m.onnx")
    for path in (int8, ref):
        write_sidecar(path, base_manifest(precision="fp32"))
    write_tiny_onnx(ref, "nan")
    return int8, ref


def test_debug_refuses_a_reference_that_changed_after_export(tmp_path, capsys, make_onnx):
    int8, ref = _tampered_pair(tmp_path, make_onnx)
    line = refused(capsys, "debug", int8, "--reference", ref, "--faces", "synthetic:2", "-o", tmp_path / "out")
    assert str(ref) in line and "does not match its manifest" in line
    assert not (tmp_path / "out").exists()
    # predict refuses the same file the same way
    assert "does not match its manifest" in refused(capsys, "predict", ref, "synthetic:1")


# -- '@' in a folder name is not a model@format spec -----------------------------------------------


def test_a_model_in_a_folder_named_with_an_at_sign(tmp_path, make_onnx):
    from fsanet import runtimes

    folder = tmp_path / "at@dir"
    folder.mkdir()
    onnx_file = make_onnx(folder / "mean.onnx")
    assert runtimes.model_file(f"{onnx_file}@nchw,bgr,raw") == onnx_file
    with runtimes.open(f"{onnx_file}@nchw,bgr,raw") as rt:
        assert rt.infer(np.zeros((1, 3, 64, 64), np.float32)).shape == (1, 3)
    checkpoint = Path(shutil.copy(PACKAGED, folder / "fusion.pt"))
    assert runtimes.split_spec(checkpoint) == (str(checkpoint), None)
    with runtimes.open(checkpoint) as rt:
        assert rt.backend == "torch"


@pytest.mark.parametrize(
    ("text", "message"),
    [("[]", "not an object"), ("[" * 100_000 + "]" * 100_000, "nested too deep"), ('"x"', "not an object")],
    ids=["list", "100000-deep", "string"],
)
def test_hostile_sidecar_manifests_are_bad_input(text, message, tmp_path, make_onnx, capsys):
    model = make_onnx(tmp_path / "m.onnx")
    (tmp_path / "m.onnx.json").write_text(text)
    line = refused(capsys, "predict", f"{model}@nchw,bgr,raw", "synthetic:1")
    assert "m.onnx.json" in line and message in line
