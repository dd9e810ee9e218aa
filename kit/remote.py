"""`fsanet check DIR --remote user@host[:path]`: the same check on another machine over ssh.

Five steps with the system's OpenSSH client, each named in its error with the host: copy (the
kit's files, with rsync where both ends have it, else scp); verify (with the device's own
tools, before anything of the kit runs there: `sha256sum SHA256SUMS` equals this host's,
`sha256sum -c` passes, and the folder holds nothing SHA256SUMS does not list); install (the
fsanet-edge that --remote-python imports is the kit's wheel: each file of the wheel's RECORD
hashed there by that Python's hashlib and importlib.metadata, no fsanet code run); run (`PY -m
fsanet check` there, its output streamed here); fetch (check.json, check.md and the plots back
into -o). Key login only (BatchMode): a password prompt would hang a CI job. The remote exit
codes 0 and 1 (a missed budget) are passed through; anything else is an error naming the step.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from fsanet.kit import layout

from fsanet.errors import DataError

DEFAULT_PARENT = "fsanet-kits"  # remote folder (relative to the login's home) that kits go into
TAIL = 20  # lines of remote output kept for an error message


@dataclass(frozen=True)
class Remote:
    """`user@host[:path]` plus how to reach it."""

    host: str  # user@host as ssh takes it
    path: str  # the kit's folder there
    python: str = "python3"
    ssh_options: tuple[str, ...] = field(default_factory=tuple)

    @classmethod
    def parse(cls, target: str, kit_name: str, python: str = "python3", ssh_options=()) -> Remote:
        host, sep, path = target.partition(":")
        if not host or host.startswith("-") or any(c.isspace() for c in host):
            raise DataError(f"--remote {target!r}: give user@host or user@host:path")
        path = path.strip() if sep else ""
        if path.startswith("~/"):
            path = path[2:]  # ssh and scp start in the home folder
        return cls(host, path or f"{DEFAULT_PARENT}/{kit_name}", python, tuple(ssh_options))

    @property
    def label(self) -> str:
        """The host as a file name (the default report folder check-<label>)."""
        return "".join(c if c.isalnum() or c in ".-_" else "_" for c in self.host)

    def ssh_args(self) -> list[str]:
        args = ["-o", "BatchMode=yes", "-o", "ConnectTimeout=20"]
        for opt in self.ssh_options:
            args += ["-o", opt]
        return args

    def ssh(self, command: str) -> list[str]:
        return ["ssh", *self.ssh_args(), self.host, command]


class RemoteError(DataError):
    def __init__(self, remote: Remote, step: str, message: str):
        super().__init__(f"{remote.host}: {step} failed: {message}")
        self.step = step


def _tools() -> None:
    for tool in ("ssh", "scp"):
        if shutil.which(tool) is None:
            raise DataError(
                f"--remote: the OpenSSH client's `{tool}` is not installed (apt-get install openssh-client)"
            )


def _last_line(text: str) -> str:
    lines = [x for x in text.strip().splitlines() if x.strip()]
    return lines[-1].strip() if lines else "no message"


def _call(remote: Remote, step: str, argv: list[str], timeout: float = 600) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise RemoteError(remote, step, f"no answer within {timeout:g} s") from None
    if done.returncode != 0:
        raise RemoteError(remote, step, f"{argv[0]} exited {done.returncode}: {_last_line(done.stderr)}")
    return done.stdout


def copy(remote: Remote, folder: Path, files: list[str]) -> str:
    """Put the kit's files into the remote folder; returns the tool used."""
    q = shlex.quote(remote.path)
    probe = f"mkdir -p {q} && if command -v rsync >/dev/null 2>&1; then echo rsync; else echo scp; fi"
    there = _call(remote, "copy", remote.ssh(probe), 60).strip().splitlines()
    local = [str(folder / f) for f in files]
    dest = f"{remote.host}:{remote.path}/"
    if shutil.which("rsync") and there and there[-1] == "rsync":
        shell = " ".join(shlex.quote(a) for a in ["ssh", *remote.ssh_args()])
        _call(remote, "copy", ["rsync", "-t", "--checksum", "-e", shell, *local, dest])
        return "rsync"
    _call(remote, "copy", ["scp", "-q", "-p", *remote.ssh_args(), *local, dest])
    return "scp"


def _shell(remote: Remote, step: str, command: str, timeout: float = 600) -> subprocess.CompletedProcess:
    try:
        done = subprocess.run(
            remote.ssh(command), capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired:
        raise RemoteError(remote, step, f"no answer within {timeout:g} s") from None
    if done.returncode == 255:
        raise RemoteError(remote, step, f"ssh could not connect or was cut off: {_last_line(done.stderr)}")
    return done


def verify(remote: Remote, bundle: layout.Bundle) -> None:
    """The copy there is the kit this host verified, by the device's own sha256sum: SHA256SUMS
    has this host's sha256, every file matches it, and nothing else is in the folder."""
    q, sums = shlex.quote(remote.path), layout.SUMS
    there = _shell(remote, "verify", f"cd {q} && sha256sum {sums}").stdout.split()
    here = bundle.sums_sha256()
    if not there or there[0] != here:
        got = there[0][:16] if there else "nothing"
        raise RemoteError(
            remote, "verify", f"{remote.path}/{sums} there has sha256 {got}..., this host's {here[:16]}...; nothing run"
        )
    done = _shell(remote, "verify", f"cd {q} && sha256sum -c --strict --quiet {sums}")
    if done.returncode != 0:
        failed = [x.strip() for x in done.stdout.splitlines() if x.strip()]  # `NAME: FAILED` lines
        why = failed[0] if failed else _last_line(done.stderr)
        raise RemoteError(remote, "verify", f"`sha256sum -c {sums}` in {remote.path} failed ({why}); nothing run")
    listing = _shell(remote, "verify", f"cd {q} && ls -Ap").stdout.splitlines()
    extra = [e for e in listing if e.rstrip("/") not in bundle.sums and e != sums and not _report(e)]
    if extra:
        raise RemoteError(
            remote, "verify", f"{remote.path}/{extra[0]} is not in {sums}: remove it there (or give another :path)"
        )


def _report(entry: str) -> bool:
    """A report folder of an earlier check (`ls -p` marks folders with /)."""
    return entry.endswith("/") and layout.REPORTS.fullmatch(entry[:-1]) is not None


# Run by --remote-python in the kit folder: where `import fsanet` would load from, and each file of
# the installed fsanet-edge hashed as RECORD does. Standard library only; imports nothing of fsanet.
PROBE = """
import base64, hashlib, importlib.metadata as m, importlib.util as u, json, os
def h(p):
    try:
        with open(p, "rb") as f:
            return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(f.read()).digest()).rstrip(b"=").decode()
    except OSError:
        return None
try:
    d = m.distribution("fsanet-edge")
except m.PackageNotFoundError:
    print(json.dumps(None))
else:
    s = u.find_spec("fsanet")
    print(json.dumps({"origin": s and s.origin and os.path.realpath(s.origin),
                      "init": os.path.realpath(d.locate_file("fsanet/__init__.py")),
                      "files": {str(f): h(d.locate_file(f)) for f in d.files or []}}))
"""


def verify_install(remote: Remote, bundle: layout.Bundle) -> None:
    """The fsanet-edge that --remote-python runs there is the kit's wheel, file by file."""
    from fsanet.kit.wheel import record

    py = shlex.quote(remote.python)
    pip = f"{remote.python} -m pip install --no-deps --require-hashes -r {layout.REQUIREMENTS}"
    fix = f"install the kit's: cd {remote.path} && {pip}"
    done = _shell(remote, "install", f"cd {shlex.quote(remote.path)} && {py} -c {shlex.quote(PROBE)}")
    if done.returncode == 127:
        raise RemoteError(
            remote, "install", f"{remote.python!r} not found there; give the Python with fsanet-edge (--remote-python)"
        )
    try:
        info = json.loads(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else False
    except (ValueError, IndexError):
        info = False
    if info is False:
        raise RemoteError(
            remote, "install", f"{remote.python} could not describe its fsanet-edge: {_last_line(done.stderr)}"
        )
    if info is None:
        raise RemoteError(remote, "install", f"fsanet-edge is not installed for {remote.python} there; {fix}")
    if info.get("origin") != info.get("init"):
        raise RemoteError(
            remote, "install",
            f"{remote.python} imports fsanet from {info.get('origin')}, not from its installed fsanet-edge "
            f"(an editable install or PYTHONPATH?); {fix}",
        )  # fmt: skip
    wheel = record(bundle.folder / bundle.manifest["wheel"]["file"])
    files = info.get("files") if isinstance(info.get("files"), dict) else {}
    differ = [p for p, digest in wheel.items() if files.get(p) != digest]
    if differ:
        raise RemoteError(
            remote, "install",
            f"the fsanet-edge of {remote.python} there is not the kit's wheel ({len(differ)} of {len(wheel)} files "
            f"differ, {differ[0]} first); {fix}",
        )  # fmt: skip


def run(remote: Remote, check_args: list[str]) -> tuple[int, list[str]]:
    """Run the check there, its output streamed here; returns its exit code and last lines."""
    command = f"cd {shlex.quote(remote.path)} && {shlex.quote(remote.python)} -m fsanet check . " + " ".join(
        shlex.quote(a) for a in check_args
    )
    tail: list[str] = []
    with subprocess.Popen(
        remote.ssh(command), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True
    ) as proc:
        for line in proc.stdout:
            sys.stdout.write(line)
            tail = (tail + [line.rstrip("\n")])[-TAIL:]
        code = proc.wait()
    return code, tail


def _not_installed(tail: list[str]) -> bool:
    return any("No module named fsanet" in line for line in tail[-3:])


def _run_error(remote: Remote, code: int, tail: list[str]) -> RemoteError:
    last = _last_line("\n".join(tail))
    if code == 255:
        return RemoteError(remote, "run", f"ssh could not connect or was cut off: {last}")
    if code == 127:
        return RemoteError(
            remote, "run", f"{remote.python!r} not found there; give the Python with fsanet-edge (--remote-python)"
        )
    if _not_installed(tail):
        return RemoteError(remote, "run", f"fsanet-edge is not installed for {remote.python} there: {last}")
    return RemoteError(remote, "run", f"`fsanet check` exited {code}: {last}")


def fetch(remote: Remote, output: Path) -> list[str]:
    """check.json, then the files it lists, into `output` (written only when all arrived)."""
    from fsanet.files import atomic_write

    src = f"{remote.path}/{REMOTE_OUTPUT}"
    with tempfile.TemporaryDirectory() as tmp:
        _call(remote, "fetch", ["scp", "-q", *remote.ssh_args(), f"{remote.host}:{src}/check.json", tmp])
        try:
            files = json.loads((Path(tmp) / "check.json").read_text())["files"]
        except (ValueError, KeyError) as e:
            raise RemoteError(remote, "fetch", f"{src}/check.json is not a check report ({e})") from None
        names = [f for f in files if f != "check.json" and Path(f).name == f]
        if names:
            _call(remote, "fetch", ["scp", "-q", *remote.ssh_args(), *(f"{remote.host}:{src}/{f}" for f in names), tmp])
        output.mkdir(parents=True, exist_ok=True)
        for f in ["check.json", *names]:
            data = (Path(tmp) / f).read_bytes()
            atomic_write(output / f, lambda dst, data=data: Path(dst).write_bytes(data))
    return ["check.json", *names]


REMOTE_OUTPUT = "check"  # the report folder inside the remote kit


def check_remote(folder: str | Path, remote: Remote, output: Path, check_args: list[str]) -> tuple[int, list[str]]:
    """Copy, verify, check the install, run, fetch. Returns the remote check's exit code (0 or 1)
    and the fetched files."""
    folder = Path(folder)
    _tools()
    bundle = layout.Bundle(folder)  # refuse a damaged kit here, before any copy
    copy(remote, folder, [*sorted(bundle.sums), layout.SUMS])
    verify(remote, bundle)
    verify_install(remote, bundle)
    code, tail = run(remote, [*check_args, "-o", REMOTE_OUTPUT])
    if code not in (0, 1) or _not_installed(tail):
        raise _run_error(remote, code, tail)
    return code, fetch(remote, output)
