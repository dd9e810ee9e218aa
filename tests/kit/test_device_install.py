"""A device that has only the kit: a fresh virtual environment (no system site-packages) where the
README.txt's steps, run as written, verify the kit with the device's sha256sum, install fsanet-edge
from the kit's wheel by its sha256 and then numpy, OpenCV and ONNX Runtime from the package index
(fsanet-edge itself is on none); `fsanet check KIT` then passes there, and that installed copy,
having no source tree, bundles only with --wheel. (The steps up to the wheel's install, and their
refusals, run without a network in tests/kit/test_device_steps.py.)

Needs the package registry (pip), like tests/runtimes/test_runtime_only_install.py: the pinned
onnxruntime is not among this machine's local wheels, so no offline install is possible.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from fsanet.files import sha256

pytestmark = pytest.mark.integration  # a venv and a download of its dependencies: about a minute


def _readme_dependency_lines(kit: Path) -> list[str]:
    """README.txt's `pip install` lines after the wheel's (dependencies, then a runtime per artifact kind)."""
    lines = [ln.strip() for ln in (kit / "README.txt").read_text().splitlines() if ln.startswith("  pip install ")]
    return [ln.split("   # ")[0] for ln in lines]


@pytest.fixture(scope="module")
def device(tiny_kit, kit_helpers, tmp_path_factory):
    """(folder holding `kit/`, the venv's bin folder, env): the kit installed as README.txt says."""
    home = tmp_path_factory.mktemp("device")
    shutil.copytree(tiny_kit, home / "kit")
    bin_dir = kit_helpers.make_venv(home / "venv")
    env = os.environ | {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    env.pop("PYTHONPATH", None)
    deps = _readme_dependency_lines(home / "kit")
    assert deps[-1] == "pip install 'onnxruntime==1.32.0'" and deps[0].startswith("pip install 'numpy")
    steps = kit_helpers.device_steps(home / "kit", sha256(tiny_kit / "SHA256SUMS"))
    script = " &&\n".join([steps.rstrip("\n"), *deps])  # the dependencies only after the verified install
    done = subprocess.run(["bash", "-c", script], cwd=home, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    return home, bin_dir, env


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
    assert r["bundle"]["files_verified"] == 9  # the wheel's sha256 among them


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
