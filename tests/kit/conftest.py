"""Fixtures of the device-kit tests: kits of tiny models, and an OpenSSH server on 127.0.0.1.

The server is the system's /usr/sbin/sshd (Debian's openssh-server) started by the test with
its own sshd_config, a throwaway host key and a throwaway client key, on a free port; the
system's own sshd configuration is not touched. Without sshd the remote tests skip, except under
CI, where they fail with the install command.
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

SSHD = Path("/usr/sbin/sshd")
INSTALL = "apt-get install openssh-server"


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    from fsanet.cli import main

    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="session")
def cli():
    """fsanet.cli.main with str() arguments: (exit code, stdout, stderr) through capsys."""
    return run_cli


# A runtime-only device: numpy + ONNX Runtime; the heavy libraries and subprocesses are refused.
# One exception: Python's platform.platform() (fsanet.machine.fingerprint) runs `uname -p`,
# and tolerates its failure (qemu-user without binfmt_misc); see the kit's report to the lead.
RUNTIME_ONLY = """
import importlib.abc, os, subprocess, sys
BLOCKED = {"cv2", "torch", "tensorflow", "matplotlib", "tqdm", "onnx", "scipy", "h5py", "psutil", "jax", "nncf"}
BLOCKED |= set(sys.argv[1].split(",")) - {""}
class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (runtime-only install)", name=name)
sys.meta_path.insert(0, Refuse())
class Watch(subprocess.Popen):
    def __init__(self, args, *a, **k):
        if list(args) != ["uname", "-p"]:
            raise AssertionError(f"fsanet check started a subprocess: {args}")
        super().__init__(args, *a, **k)
def no_child(*a, **k):
    raise AssertionError("fsanet check started a child process")
subprocess.Popen, os.fork, os.posix_spawn, os.execv = Watch, no_child, no_child, no_child
from fsanet.cli import main
sys.exit(main(sys.argv[2:]))
"""


def run_runtime_only(blocked: str, *argv) -> subprocess.CompletedProcess:
    """`fsanet ARGV...` in a fresh interpreter that refuses the heavy libraries and the modules
    named in `blocked` (comma-separated), and any subprocess."""
    return subprocess.run(
        [sys.executable, "-c", RUNTIME_ONLY, blocked, *map(str, argv)], capture_output=True, text=True
    )


@pytest.fixture(scope="session")
def runtime_only():
    return run_runtime_only


@pytest.fixture(scope="session")
def fsanet_wheel(tmp_path_factory) -> Path:
    """This checkout's wheel, built once (kit/wheel.py), for the kits that the tests make: each
    `fsanet bundle` would build it again."""
    from fsanet.kit.wheel import build_wheel, source_tree

    return build_wheel(source_tree(), tmp_path_factory.mktemp("wheel"))


@pytest.fixture(scope="session")
def tiny_kit(tiny_models, fsanet_wheel, tmp_path_factory) -> Path:
    """A kit of a tiny foreign ONNX model (mean, the reference) on 8 synthetic heads."""
    from fsanet.kit.bundle import make_bundle

    out = tmp_path_factory.mktemp("tiny-kit") / "kit"
    make_bundle([tiny_models["mean"]], out, count=8, reference=tiny_models["mean"], wheel=fsanet_wheel)
    return out


def reseal(kit: Path, files: bool = True) -> str:
    """Rewrite bundle.json's `files` (unless not `files`) and SHA256SUMS after a test edited the
    kit, as a forger who controls the whole kit would: what stops such a kit is then its schema or
    its contents, or the host's line (the sha256 of SHA256SUMS, returned here)."""
    from fsanet.kit import layout

    from fsanet.files import json_text, sha256

    try:
        manifest = json.loads((kit / layout.MANIFEST).read_bytes())
    except (ValueError, RecursionError):
        manifest = None  # garbage stays garbage
    names = sorted(p.name for p in kit.iterdir() if p.is_file() and p.name not in (layout.MANIFEST, layout.SUMS))
    if files and isinstance(manifest, dict):
        manifest["files"] = {n: sha256(kit / n) for n in names}
        (kit / layout.MANIFEST).write_text(json_text(manifest))
    sums = {n: sha256(kit / n) for n in [*names, layout.MANIFEST]}
    (kit / layout.SUMS).write_text(layout.sums_text(sums))
    return sha256(kit / layout.SUMS)


def device_steps(kit: Path, host_line: str) -> str:
    """The verification and install steps of the kit's README.txt, as written, with H set to the
    host's sha256 of SHA256SUMS (the one thing the user types in)."""
    lines = (kit / "README.txt").read_text().splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("  H="))
    last = next(i for i, line in enumerate(lines) if "--require-hashes" in line)
    steps = [line.removeprefix("  ") for line in lines[first : last + 1]]
    assert steps[0] == "H=PASTE_THE_64_HEX_DIGITS_OF_THE_HOST_LINE"
    return "\n".join([f"H={host_line}", *steps[1:]]) + "\n"


def make_venv(folder: Path, pip: bool = True) -> Path:
    """A fresh virtual environment (no system site-packages); returns its bin folder."""
    subprocess.run([sys.executable, "-m", "venv", *([] if pip else ["--without-pip"]), str(folder)], check=True)
    return folder / "bin"


def installed_fsanet(bin_dir: Path) -> str | None:
    """The folder where the venv's Python finds the distribution fsanet-edge, or None."""
    probe = (
        "import importlib.metadata as m\n"
        "try: print(m.distribution('fsanet-edge').locate_file(''))\n"
        "except m.PackageNotFoundError: pass"
    )
    argv = [str(bin_dir / "python"), "-I", "-c", probe]  # -I: not the current folder (a checkout has egg-info)
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    return out.strip() or None


@pytest.fixture(scope="session")
def kit_helpers():
    """reseal, device_steps, make_venv and installed_fsanet, for the test modules (which do not
    import conftest)."""
    from types import SimpleNamespace

    return SimpleNamespace(
        reseal=reseal, device_steps=device_steps, make_venv=make_venv, installed_fsanet=installed_fsanet
    )


@pytest.fixture(scope="session")
def device_python(fsanet_wheel, tmp_path_factory) -> Path:
    """A device's Python for --remote: a fresh venv with the kit's wheel installed as the README
    says (--no-deps --require-hashes), its dependencies (numpy, ONNX Runtime, ...) taken from this
    checkout's venv through a path line (not a site folder: its editable fsanet is not loaded)."""
    import sysconfig

    from fsanet.kit.wheel import requirements_text

    from fsanet.files import sha256

    home = tmp_path_factory.mktemp("device-python")
    bin_dir = make_venv(home / "venv", pip=False)
    (home / "requirements.txt").write_text(requirements_text(fsanet_wheel.name, sha256(fsanet_wheel)))
    shutil.copyfile(fsanet_wheel, home / fsanet_wheel.name)
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(bin_dir / "python"), "--disable-pip-version-check", "-q",
         "install", "--no-index", "--no-deps", "--require-hashes", "-r", "requirements.txt"],
        cwd=home, check=True,
    )  # fmt: skip
    site = Path(installed_fsanet(bin_dir))
    (site / "host-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return bin_dir / "python"


@dataclass(frozen=True)
class Sshd:
    host: str  # user@127.0.0.1
    port: int
    options: tuple[str, ...]  # --ssh-option values for fsanet check --remote
    folder: Path

    def argv(self) -> list[str]:
        return [a for o in self.options for a in ("--ssh-option", o)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _keygen(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path


def _wait_listening(port: int, proc: subprocess.Popen, log: Path) -> None:
    for _ in range(100):
        if proc.poll() is not None:
            raise RuntimeError(f"sshd exited {proc.returncode}: {log.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"sshd did not listen on 127.0.0.1:{port}: {log.read_text()}")


@pytest.fixture(scope="session")
def sshd(tmp_path_factory):
    if not SSHD.is_file() or shutil.which("ssh") is None or shutil.which("ssh-keygen") is None:
        message = f"the remote tests need OpenSSH's server and client ({INSTALL})"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    d = tmp_path_factory.mktemp("sshd")
    host_key, client_key = _keygen(d / "host_key"), _keygen(d / "client_key")
    (d / "authorized_keys").write_text(Path(f"{client_key}.pub").read_text())
    port = _free_port()
    config = d / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\nPidFile {d / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {d / 'authorized_keys'}\nPubkeyAuthentication yes\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nPermitRootLogin prohibit-password\n"
        f"AllowUsers {getpass.getuser()}\nSubsystem sftp internal-sftp\n"
    )
    if os.geteuid() == 0:  # sshd started by root needs its privilege-separation folder
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    log = d / "sshd.log"
    with open(log, "w") as f:
        proc = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(config)], stdout=f, stderr=subprocess.STDOUT)
    try:
        _wait_listening(port, proc, log)
        options = (
            f"Port={port}",
            f"IdentityFile={client_key}",
            "IdentitiesOnly=yes",
            f"UserKnownHostsFile={d / 'known_hosts'}",
            "StrictHostKeyChecking=accept-new",
        )
        yield Sshd(f"{getpass.getuser()}@127.0.0.1", port, options, d)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
