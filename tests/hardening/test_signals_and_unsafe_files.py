"""SIGTERM cleans up like Ctrl-C; an unsafe checkpoint is refused without advising unsafe loading."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from fsanet.cli import main

PACKAGED = Path(__file__).resolve().parents[2] / "fsanet" / "models" / "fsanet-fusion-synthetic.pt"


def _stop_during_export(tmp_path, sig) -> tuple[int, list[Path]]:
    """Start `fsanet export` with its own TMPDIR, send `sig` once the export's temporary folder
    exists, and return the exit code and whatever is left in TMPDIR."""
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    exe = Path(sys.executable).with_name("fsanet")
    env = os.environ | {"TMPDIR": str(tmpdir)}
    cmd = [exe, "export", PACKAGED, "--to", "onnx", "-o", tmp_path / "out"]
    # a shell's background job (`cmd &` without job control) ignores SIGINT and a child inherits
    # that: start the command with the default disposition, as a terminal's Ctrl-C finds it
    proc = subprocess.Popen(
        cmd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 240
    while not any(p.is_dir() for p in tmpdir.iterdir()) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, f"export ended before its temporary folder was seen: {proc.stderr.read()}"
    time.sleep(0.5)  # inside the export, with files in the temporary folder
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert "Traceback" not in err
    return proc.returncode, sorted(tmpdir.iterdir())


def test_sigterm_removes_temporary_files(tmp_path):
    code, left = _stop_during_export(tmp_path, signal.SIGTERM)
    assert code == 143 and left == []
    assert not (tmp_path / "out" / "fsanet-fusion-synthetic.onnx").exists()


def test_sigint_removes_temporary_files(tmp_path):
    code, left = _stop_during_export(tmp_path, signal.SIGINT)
    assert code == 130 and left == []


def test_sigterm_handler_is_restored_after_a_command(capsys):
    before = signal.getsignal(signal.SIGTERM)
    assert main(["variants"]) == 0
    assert signal.getsignal(signal.SIGTERM) is before


class Payload:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_unsafe_checkpoint_is_refused_without_advice_to_load_it_unsafely(noise_faces, tmp_path, capsys):
    import torch

    bad = tmp_path / "evil.pt"
    torch.save({"format": "fsanet-checkpoint", "x": Payload()}, bad)
    assert main(["predict", str(bad), str(noise_faces)]) == 2
    err = capsys.readouterr().err
    assert "evil.pt: refused" in err and "never runs code" in err
    assert "weights_only" not in err and "Re-running" not in err
