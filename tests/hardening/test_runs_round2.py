"""Issue 28, second round: a run writes and removes only what it created (logs, output folders),
holds its output folder against a second run, and refuses bad calibration sets and export
options up front (exit 2, one line naming the file or option, nothing left behind)."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from fsanet.cli import main

PACKAGED = Path(__file__).resolve().parents[2] / "fsanet" / "models" / "fsanet-fusion-synthetic.pt"
FSANET = Path(sys.executable).with_name("fsanet")


def one_error_line(capsys, *names: str) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert all(n in lines[0] for n in names), lines[0]
    return lines[0]


def calibration_npz(path: Path, crops: np.ndarray, claimed: int | None = None) -> Path:
    """A calibration set as `calib build` writes it (its sha256 matches), or with the crops'
    header claiming `claimed` faces while holding the few given."""
    from fsanet.calib.build import FORMAT, crops_sha256
    from numpy.lib import format as npy

    manifest = np.array(json.dumps({"format": FORMAT, "count": len(crops), "sha256": crops_sha256(crops)}))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, a in (("crops", crops), ("manifest", manifest)):
            member = io.BytesIO()
            shape = (claimed, *a.shape[1:]) if claimed is not None and name == "crops" else a.shape
            npy.write_array_header_1_0(
                member, {"descr": npy.dtype_to_descr(a.dtype), "fortran_order": False, "shape": shape}
            )
            member.write(a.tobytes())
            z.writestr(f"{name}.npy", member.getvalue())
    path.write_bytes(buf.getvalue())
    return path


# --- class 2: a log path no option named is never truncated nor removed ---------------------


@pytest.mark.parametrize("content", [b"", b"the user's own notes\n"])
def test_calib_build_leaves_a_users_log_file_as_it_was(content, tmp_path, capsys):
    logs = tmp_path / "logs"
    logs.mkdir()
    mine = logs / "calibration.log"
    mine.write_bytes(content)
    assert main(["calib", "build", "synthetic:40", "-n", "8", "-o", str(tmp_path / "c.npz")]) == 0
    assert mine.read_bytes() == content  # neither emptied nor removed
    assert (tmp_path / "c.npz").is_file()
    assert sorted(p.name for p in logs.iterdir()) == ["calibration.log"]  # its own empty log: removed


def test_a_failed_stage_names_its_own_log_not_the_users(tmp_path, capsys):
    from fsanet.console import Console

    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "export.log").write_bytes(b"keep me")
    with pytest.raises(RuntimeError), Console(logs).stage("export"):
        print("library text")
        raise RuntimeError("boom")
    out = capsys.readouterr().out
    assert f"its log: {logs / 'export-2.log'}" in out
    assert (logs / "export.log").read_bytes() == b"keep me"
    assert "library text" in (logs / "export-2.log").read_text()


def test_two_runs_into_one_logs_folder_keep_their_own_logs(tmp_path, capsys):
    """Two consoles (two runs) at once: each writes its own file, neither truncates nor removes
    the other's, and the one finishing first leaves the folder the other still writes in."""
    from fsanet.console import Console

    logs = tmp_path / "out" / "logs"
    first, second = Console(logs), Console(logs)
    with first.stage("export"):
        print("first run")
        with second.stage("export"):
            print("second run")
    assert first.kept == [logs / "export.log"] and second.kept == [logs / "export-2.log"]
    assert (logs / "export.log").read_text().splitlines()[0] == "first run"  # (then the inner stage's line)
    assert (logs / "export-2.log").read_text().strip() == "second run"
    with first.stage("bench"), second.stage("bench"):
        pass  # the second's log stays empty: it removes it, and only it
    assert sorted(p.name for p in logs.iterdir()) == ["bench.log", "export-2.log", "export.log"]
    assert second.kept == [logs / "export-2.log"]


# --- class 5: one run at a time into an output folder ------------------------------------


def _start_export(out: Path, stdout=subprocess.DEVNULL) -> subprocess.Popen:
    return subprocess.Popen(
        [FSANET, "export", PACKAGED, "--to", "onnx", "-o", out], stdout=stdout, stderr=subprocess.PIPE, text=True
    )


def test_a_second_export_into_a_folder_in_use_is_refused_at_once(tmp_path):
    """The issue's case: two `fsanet export` runs into one folder. The second exits 2 at once,
    naming the folder and the other run, and touches nothing of the first's."""
    out = tmp_path / "out"
    first = _start_export(out)
    try:
        deadline = time.monotonic() + 120
        while not (out / ".fsanet.lock").exists() and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert first.poll() is None, first.stderr.read()
        started = time.monotonic()
        second = subprocess.run(
            [FSANET, "export", PACKAGED, "--to", "onnx", "-o", out], capture_output=True, text=True, timeout=120
        )
        seconds = time.monotonic() - started
        assert first.poll() is None, "the first run ended before the second was refused: the test proves nothing"
    finally:
        first.send_signal(signal.SIGTERM)  # its clean-up releases the folder (a SIGKILL would too)
        _, first_err = first.communicate(timeout=120)
    assert second.returncode == 2, second.stderr
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1 and str(out) in lines[0] and "another fsanet run" in lines[0], second.stderr
    assert seconds < 30  # refused before any work (a whole export takes longer than the start-up)
    assert first.returncode == 143 and "Traceback" not in first_err
    assert not out.exists()  # the first run made the folder and wrote nothing in it before it stopped


def test_the_lock_of_a_killed_run_does_not_block(tmp_path, capsys):
    """A run killed with SIGKILL (no clean-up) leaves its lock file; the kernel dropped the lock,
    so the next run into the folder goes ahead."""
    out = tmp_path / "calib"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom fsanet.console import output_lock\n"
         "with output_lock(sys.argv[1], name='.c.npz.lock'):\n    print('held', flush=True); time.sleep(120)", out],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        assert main(["calib", "build", "synthetic:40", "-n", "8", "-o", str(out / "c.npz")]) == 2
        one_error_line(capsys, str(out), "another fsanet run")
        assert not (out / "c.npz").exists()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    assert (out / ".c.npz.lock").exists()  # a killed run cleans nothing up
    assert main(["calib", "build", "synthetic:40", "-n", "8", "-o", str(out / "c.npz")]) == 0
    assert (out / "c.npz").is_file()


def test_a_refused_calib_build_leaves_none_of_the_folders_it_made(tmp_path, capsys):
    out = tmp_path / "new" / "sets" / "c.npz"
    assert main(["calib", "build", str(tmp_path / "missing"), "-n", "8", "-o", str(out)]) == 2
    one_error_line(capsys, "missing")
    assert list(tmp_path.iterdir()) == []


def test_calib_builds_of_other_files_into_one_folder_may_run_together(tmp_path, capsys):
    from fsanet.console import output_lock

    with output_lock(tmp_path, name=".a.npz.lock"):
        assert main(["calib", "build", "synthetic:40", "-n", "8", "-o", str(tmp_path / "b.npz")]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.npz"]  # no lock file left, no logs folder


def test_a_lock_file_that_was_there_is_neither_truncated_nor_removed(tmp_path):
    from fsanet.console import output_lock

    (tmp_path / ".fsanet.lock").write_bytes(b"12345\n")
    with output_lock(tmp_path):
        pass
    assert (tmp_path / ".fsanet.lock").read_bytes() == b"12345\n"


# --- class 9: calibration sets with no faces, or claiming a billion --------------------------


def test_an_empty_calibration_set_is_refused_when_loaded(tmp_path, capsys):
    empty = calibration_npz(tmp_path / "empty.npz", np.zeros((0, 64, 64, 3), np.uint8))
    out = tmp_path / "out"
    assert main(["export", str(PACKAGED), "--to", "onnx-int8", "--calib", str(empty), "-o", str(out)]) == 2
    one_error_line(capsys, str(empty), "0 faces")
    assert not out.exists()


def test_a_calibration_set_whose_header_claims_a_billion_faces_is_refused(tmp_path, capsys):
    from fsanet import calib

    forged = calibration_npz(tmp_path / "claims.npz", np.zeros((2, 64, 64, 3), np.uint8), claimed=10**9)
    with pytest.raises(Exception) as raised:
        calib.load(forged)
    assert type(raised.value).__name__ == "DataError" and str(forged) in str(raised.value)
    out = tmp_path / "out"
    assert main(["export", str(PACKAGED), "--to", "onnx-int8", "--calib", str(forged), "-o", str(out)]) == 2
    one_error_line(capsys, str(forged), "crops")
    assert not out.exists()


def test_float_calibration_crops_are_named_with_their_file(tmp_path, capsys):
    crops = np.full((2, 64, 64, 3), np.nan, np.float32)
    bad = calibration_npz(tmp_path / "nan.npz", crops)
    assert main(["export", str(PACKAGED), "--to", "onnx-int8", "--calib", str(bad), "-o", str(tmp_path / "o")]) == 2
    one_error_line(capsys, str(bad), "crops", "uint8")


# --- classes 11 and 12: export options refused before any work ------------------------------


def _export_refused(tmp_path, capsys, *options: str) -> str:
    calib_set = calibration_npz(tmp_path / "c.npz", np.full((2, 64, 64, 3), 100, np.uint8))
    out = tmp_path / "out"
    started = time.monotonic()
    code = main(["export", str(PACKAGED), "--to", "onnx-int8", "--calib", str(calib_set), *options, "-o", str(out)])
    assert code == 2 and time.monotonic() - started < 10  # no float export first (about 20 s here)
    assert not out.exists()
    return capsys.readouterr().err


def test_unknown_int8_float_ops_are_refused_listing_the_valid_ones(tmp_path, capsys):
    err = _export_refused(tmp_path, capsys, "--int8-float-ops", "MatMul,Softmaxx,Sqrt")
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "--int8-float-ops Softmaxx: not an ONNX op type" in err and "did you mean Softmax" in err
    assert "MatMul, Gemm, Softmax" in err  # the op types that stay float by default, listed


def test_float_ops_or_layers_with_a_drift_search_are_refused_before_work(tmp_path, capsys):
    err = _export_refused(
        tmp_path, capsys, "--int8-float-layers", "node_Conv_1", "--int8-max-drift", "0.5", "--faces", "synthetic:8"
    )
    assert len(err.strip().splitlines()) == 1
    assert "--int8-float-layers is a recipe already and --int8-max-drift searches for one" in err


def test_int8_float_ops_without_the_int8_onnx_target_is_refused(tmp_path, capsys):
    assert main(["export", str(PACKAGED), "--to", "onnx", "--int8-float-ops", "MatMul", "-o", str(tmp_path / "o")]) == 2
    one_error_line(capsys, "--int8-float-ops", "--to onnx-int8")
    assert not (tmp_path / "o").exists()


# --- class 13: a refused pipeline leaves nothing behind -----------------------------------


class Payload:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


@pytest.mark.parametrize(
    "case", ["weights-not-a-model", "weights-pickled", "calib-missing", "data-missing", "faces-missing", "real-faces"]
)
def test_a_refused_pipeline_leaves_no_folder_and_no_calibration_set(case, tmp_path, capsys):
    import torch

    (tmp_path / "w.txt").write_text("not weights")
    torch.save({"format": "fsanet-checkpoint", "x": Payload()}, tmp_path / "evil.pt")
    options = {
        "weights-not-a-model": (["--weights", str(tmp_path / "w.txt")], "--weights"),
        "weights-pickled": (["--weights", str(tmp_path / "evil.pt")], "evil.pt: refused"),
        "calib-missing": (["--calib", str(tmp_path / "nope")], "nope"),
        "data-missing": (["--data", str(tmp_path / "nodata")], "nodata"),
        "faces-missing": (["--faces", str(tmp_path / "nofaces")], "nofaces"),
        "real-faces": (["--real-faces", str(tmp_path / "noreal")], "noreal"),
    }
    argv, named = options[case]
    out = tmp_path / "runs" / "pipeline"
    assert main(["pipeline", *argv, "-o", str(out)]) == 2
    one_error_line(capsys, named)
    assert not (tmp_path / "runs").exists()
