"""A device that has only the kit: a fresh virtual environment (no system site-packages) where the
README.txt's pip command installs fsanet-edge from the kit's wheel, with numpy, OpenCV and ONNX
Runtime from the package index (fsanet-edge itself is on none); `fsanet check KIT` then passes
there, and that installed copy, having no source tree, bundles only with --wheel.

Needs the package registry (pip), like tests/runtimes/test_runtime_only_install.py: the pinned
onnxruntime is not among this machine's local wheels, so no offline install is possible.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fsanet.files import sha256

pytestmark = pytest.mark.integration  # a venv and a download of its dependencies: about a minute


def _readme_install_line(kit: Path) -> str:
    """The README.txt's pip command for the kit, without its `# or [...]` alternatives."""
    lines = [ln.strip() for ln in (kit / "README.txt").read_text().splitlines() if ln.strip().startswith("pip ")]
    assert len(lines) == 1, lines
    return lines[0].split("#")[0].strip()


@pytest.fixture(scope="module")
def device(tiny_kit, tmp_path_factory):
    """(folder holding `kit/`, the venv's bin folder): the kit installed as README.txt says."""
    home = tmp_path_factory.mktemp("device")
    shutil.copytree(tiny_kit, home / "kit")
    venv = home / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    env = os.environ | {"PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    env.pop("PYTHONPATH", None)
    command = _readme_install_line(home / "kit")
    assert command == "pip install 'kit/fsanet_edge-0.1.0-py3-none-any.whl[onnxruntime]'"
    done = subprocess.run(
        ["bash", "-c", f"{command} --quiet --disable-pip-version-check"],
        cwd=home, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return home, venv / "bin", env


def _fsanet(device, *argv) -> subprocess.CompletedProcess:
    home, bin_dir, env = device
    return subprocess.run([str(bin_dir / "fsanet"), *map(str, argv)], cwd=home, env=env, capture_output=True, text=True)


def test_the_kit_wheel_installs_alone_and_checks_the_kit(device):
    home, bin_dir, env = device
    where = subprocess.run(
        [str(bin_dir / "python"), "-c", "import fsanet, sys; print(fsanet.__file__); print(sys.prefix)"],
        cwd=home, env=env, capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert Path(where[0]).is_relative_to(home / "venv") and where[1] == str(home / "venv")
    done = _fsanet(device, "check", "kit", "--no-latency")
    assert done.returncode == 0, done.stdout + done.stderr
    r = json.loads((home / "kit" / "check" / "check.json").read_text())
    assert r["verdict"] == "PASS" and r["artifacts"]["mean.onnx"]["drift"]["max"] == 0.0
    assert r["bundle"]["files_verified"] == 6  # the wheel's sha256 among them


def test_an_installed_copy_bundles_only_with_wheel(device, tmp_path):
    home = device[0]
    model = f"{home / 'kit' / 'mean.onnx'}@nchw,bgr,raw"
    argv = ["bundle", model, "--reference", model, "--count", "2", "-o", tmp_path / "kit2"]
    done = _fsanet(device, *argv)
    assert done.returncode == 2 and "installed copy" in done.stderr and "--wheel" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "kit2").exists()
    wheel = home / "kit" / "fsanet_edge-0.1.0-py3-none-any.whl"
    done = _fsanet(device, *argv, "--wheel", wheel)
    assert done.returncode == 0, done.stdout + done.stderr
    assert sha256(tmp_path / "kit2" / wheel.name) == sha256(wheel)
