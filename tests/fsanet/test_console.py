"""`fsanet.console`: a stage prints one line; what libraries print in it (Python and C level,
child processes) goes to its log; verbose shows it live too; a failed stage names its log."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

# A stage whose "libraries" write every way a library does: print, sys.stderr, logging,
# warnings, a tqdm bar, C's printf (buffered stdio), raw fd 2, and a child process.
SCRIPT = textwrap.dedent(
    """
    import ctypes, logging, os, subprocess, sys, warnings
    from tqdm import tqdm
    from fsanet.console import Console

    logging.basicConfig(level=logging.INFO)  # a handler bound to sys.stderr before the stage
    console = Console(sys.argv[1], verbose=sys.argv[2] == "1")
    with console.stage("export", total=2, unit="targets") as stage:
        print("LIB-print")
        print("LIB-stderr", file=sys.stderr)
        logging.getLogger("lib").info("LIB-logging")
        warnings.warn("LIB-warning")
        for _ in tqdm(range(3), desc="LIB-tqdm", disable=False):
            pass
        ctypes.CDLL(None).printf(b"LIB-printf\\n")
        os.write(2, b"LIB-fd2\\n")
        child = "import sys; print('LIB-child'); print('LIB-child-err', file=sys.stderr)"
        subprocess.run([sys.executable, "-c", child])
        stage.update(2)
        stage.done("2 of 2 targets built")
    print("after the stage")
    logging.getLogger("lib").warning("LIB-late")  # its handler writes to the terminal again
    if sys.argv[3] == "fail":
        with console.stage("bench"):
            os.write(2, b"LIB-before-failing\\n")
            raise RuntimeError("boom")
    """
)
LIBRARY_LINES = ["LIB-print", "LIB-stderr", "LIB-logging", "LIB-warning", "LIB-tqdm", "LIB-printf", "LIB-fd2",
                 "LIB-child", "LIB-child-err"]  # fmt: skip


def run(tmp_path: Path, verbose: bool, fail: bool = False) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "logs"), str(int(verbose)), "fail" if fail else "ok"],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_stage_prints_one_line_and_the_libraries_go_to_its_log(tmp_path):
    result = run(tmp_path, verbose=False)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2 and lines[0].startswith("export ") and "2 of 2 targets built" in lines[0], lines
    assert lines[0].rstrip().endswith(" s") and lines[1] == "after the stage"
    assert not any(lib in result.stdout for lib in LIBRARY_LINES)
    assert not any(lib in result.stderr for lib in LIBRARY_LINES), result.stderr
    assert "LIB-late" in result.stderr  # after the stage the libraries' output is theirs again
    log = (tmp_path / "logs" / "export.log").read_text()
    for lib in LIBRARY_LINES:
        assert lib in log, lib
    assert "LIB-late" not in log


def test_verbose_shows_the_libraries_live_and_still_logs_them(tmp_path):
    result = run(tmp_path, verbose=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0].startswith("export ")
    assert not any(lib in result.stdout for lib in LIBRARY_LINES)  # live on stderr, beside the stage lines
    log = (tmp_path / "logs" / "export.log").read_text()
    for lib in LIBRARY_LINES:
        assert lib in result.stderr and lib in log, lib


def test_a_failed_stage_names_its_log(tmp_path):
    result = run(tmp_path, verbose=False, fail=True)
    assert result.returncode == 1 and "RuntimeError: boom" in result.stderr
    line = result.stdout.splitlines()[-1]
    log = tmp_path / "logs" / "bench.log"
    assert line.startswith("bench ") and "FAILED after" in line and str(log) in line, line
    assert "LIB-before-failing" in log.read_text() and "LIB-before-failing" not in result.stderr


@pytest.mark.parametrize("verbose", [False, True])
def test_under_a_replaced_sys_stdout_the_stage_line_goes_there(tmp_path, capsys, verbose):
    """Inside pytest's capsys (sys.stdout is no file descriptor): the line reaches it, a
    library's Python-level print goes to the log."""
    from fsanet.console import Console

    console = Console(tmp_path / "logs", verbose=verbose)
    with console.stage("calibration", total=1, unit="faces") as stage:
        print("LIB-print")
        stage.update()
        stage.done("1 faces")
    out = capsys.readouterr().out
    assert out.startswith("calibration ") and "1 faces" in out and "LIB-print" not in out
    assert "LIB-print" in (tmp_path / "logs" / "calibration.log").read_text()
    assert set(console.seconds) == {"calibration"}


def test_a_stage_that_printed_nothing_leaves_no_log_nor_the_folders_made_for_it(tmp_path, capsys):
    """A command refused on bad input inside its first stage leaves no output folder behind."""
    from fsanet.console import Console

    out = tmp_path / "report"
    with pytest.raises(ValueError, match="bad input"), Console(out / "logs").stage("bench"):
        raise ValueError("bad input")
    assert "the libraries printed nothing" in capsys.readouterr().out and not out.exists()
    with Console(out / "logs").stage("bench") as stage:
        (out / "report.json").write_text("{}")
        stage.done("1 file")
    assert sorted(p.name for p in out.iterdir()) == ["report.json"]


@pytest.mark.parametrize("verbose", [False, True])
def test_bench_keeps_litert_s_own_lines_off_the_console_unless_verbose(fusion_tflite, shared_data, tmp_path, verbose):
    """`fsanet bench` on a TFLite file in a fresh process: LiteRT's C++ log line (its XNNPACK
    delegate, written to fd 2) lands in report/logs/bench.log; with -v on stderr as well."""
    out = tmp_path / "report"
    argv = [sys.executable, "-m", "fsanet", *(["-v"] if verbose else []), "bench", str(fusion_tflite), "--data",
            str(shared_data / "aflw2000-sample"), "--batch", "1", "--runs", "4", "--warmup", "1", "--no-memory",
            "-o", str(out)]  # fmt: skip
    result = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("bench ") and "XNNPACK" not in result.stdout
    assert "XNNPACK delegate" in (out / "logs" / "bench.log").read_text()
    assert ("XNNPACK delegate" in result.stderr) == verbose, result.stderr
