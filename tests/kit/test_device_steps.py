"""The kit's documented device steps, run as README.txt writes them (with bash, in a 'device' folder
holding a copy of the kit, in a fresh virtual environment): the honest kit's wheel installs, by its
sha256, with no package index; a swapped wheel, a forged SHA256SUMS and an added file are each
refused by the device's own sha256sum before pip runs, and nothing is installed.

No network: `pip install --no-deps` of a local file needs no index (PIP_NO_INDEX makes sure).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from fsanet.files import sha256

WHEEL = "fsanet_edge-0.1.0-py3-none-any.whl"
PIP_ENV = {"PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}


@pytest.fixture(scope="module")
def venv(kit_helpers, tmp_path_factory) -> Path:
    """One fresh venv shared by the refusals (each asserts that nothing got installed)."""
    return kit_helpers.make_venv(tmp_path_factory.mktemp("venv") / "venv")


def run_steps(helpers, kit: Path, host_line: str, bin_dir: Path) -> subprocess.CompletedProcess:
    """README.txt's steps with bash in the folder that holds the kit, the venv first on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PIP_", "VIRTUAL_ENV"))}
    env |= PIP_ENV | {"PATH": f"{bin_dir}{os.pathsep}{env['PATH']}"}
    script = helpers.device_steps(kit, host_line)
    return subprocess.run(["bash", "-c", script], cwd=kit.parent, env=env, capture_output=True, text=True, timeout=300)


def device(tiny_kit, tmp_path) -> tuple[Path, str]:
    """(the device's copy of the kit, the host's line) for a kit copied as a user would."""
    return shutil.copytree(tiny_kit, tmp_path / "device" / "kit"), sha256(tiny_kit / "SHA256SUMS")


def other_wheel(kit: Path, tmp_path: Path) -> bytes:
    """A valid wheel of the same name whose code differs (one module changed)."""
    fake = tmp_path / WHEEL
    with zipfile.ZipFile(kit / WHEEL) as src, zipfile.ZipFile(fake, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename == "fsanet/kit/check.py":
                data += b"\nprint('PASS')  # not the kit's code\n"
            dst.writestr(item, data)
    return fake.read_bytes()


def test_the_honest_kit_installs_by_the_wheel_sha256(tiny_kit, tmp_path, kit_helpers):
    kit, line = device(tiny_kit, tmp_path)
    bin_dir = kit_helpers.make_venv(tmp_path / "venv")
    done = run_steps(kit_helpers, kit, line, bin_dir)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "kit/SHA256SUMS: OK" in done.stdout and "Successfully installed fsanet-edge-0.1.0" in done.stdout
    site = Path(kit_helpers.installed_fsanet(bin_dir))
    assert site.is_relative_to(tmp_path / "venv")
    with zipfile.ZipFile(kit / WHEEL) as z:
        assert (site / "fsanet" / "kit" / "check.py").read_bytes() == z.read("fsanet/kit/check.py")
    (kit / "check").mkdir()  # an earlier check's report folder is no added file
    assert run_steps(kit_helpers, kit, line, bin_dir).returncode == 0


@pytest.mark.parametrize("attack", ["swapped wheel", "forged SHA256SUMS", "added file", "wrong host line"])
def test_a_tampered_kit_is_refused_before_pip_runs(attack, tiny_kit, tmp_path, venv, kit_helpers):
    kit, line = device(tiny_kit, tmp_path)
    if attack in ("swapped wheel", "forged SHA256SUMS"):
        (kit / WHEEL).write_bytes(other_wheel(kit, tmp_path))
    if attack == "forged SHA256SUMS":  # the whole kit made consistent with the other wheel
        (kit / "requirements.txt").write_text(f"{WHEEL} --hash=sha256:{sha256(kit / WHEEL)}\n")
        assert kit_helpers.reseal(kit) != line
    if attack == "added file":  # Python picks it up where it runs in the kit folder
        (kit / "fsanet.py").write_text("print('not the kit')\n")
    if attack == "wrong host line":
        line = "0" * 64
    done = run_steps(kit_helpers, kit, line, venv)
    assert done.returncode != 0, done.stdout + done.stderr
    assert "Processing" not in done.stdout and "Successfully" not in done.stdout  # pip never ran
    failed = {
        "swapped wheel": f"{WHEEL}: FAILED",
        "forged SHA256SUMS": "kit/SHA256SUMS: FAILED",
        "wrong host line": "kit/SHA256SUMS: FAILED",
        "added file": "",  # one entry more than SHA256SUMS lists: the `test` fails
    }[attack]
    assert failed in done.stdout
    assert kit_helpers.installed_fsanet(venv) is None


def test_pip_alone_refuses_a_swapped_wheel_by_its_hash(tiny_kit, tmp_path, venv, kit_helpers):
    """Step 3 without steps 1 and 2: requirements.txt still pins the honest wheel's sha256; and
    pip's hash mode wants every dependency hashed, hence the documented --no-deps."""
    kit, _ = device(tiny_kit, tmp_path)
    (kit / WHEEL).write_bytes(other_wheel(kit, tmp_path))
    env = os.environ | PIP_ENV
    pip = [str(venv / "pip"), "install", "--require-hashes", "-r", "requirements.txt"]
    done = subprocess.run([*pip, "--no-deps"], cwd=kit, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0 and "DO NOT MATCH THE HASHES" in done.stderr
    shutil.copyfile(tiny_kit / WHEEL, kit / WHEEL)
    done = subprocess.run(pip, cwd=kit, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0  # honest, but its dependencies have no hash here
    assert kit_helpers.installed_fsanet(venv) is None


def test_device_kit_page_gives_the_kits_steps_word_for_word():
    from fsanet.kit.bundle import device_steps
    from fsanet.kit.wheel import source_tree

    page = (source_tree() / "docs" / "device-kit.md").read_text()
    assert "\n".join(device_steps("kit")) + "\n" in page
