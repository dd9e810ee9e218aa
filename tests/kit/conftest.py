"""Fixtures of the device-kit tests: kits of tiny models, and an OpenSSH server on 127.0.0.1.

The server is the system's /usr/sbin/sshd (Debian's openssh-server) started by the test with
its own sshd_config, a throwaway host key and a throwaway client key, on a free port; the
system's own sshd configuration is not touched. Without sshd the remote tests skip, except under
CI, where they fail with the install command.
"""

from __future__ import annotations

import getpass
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
# One exception: Python's platform.platform() (benchmarks.machine.fingerprint) runs `uname -p`,
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
