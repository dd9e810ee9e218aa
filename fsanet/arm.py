"""An aarch64 machine under emulation: a Debian arm64 userland, the aarch64 wheels of the
runtime-only install, this package, and qemu-user to run the Arm Python in them.

Everything is prepared without running foreign code and cached under `build/arm`, keyed by
what it holds: `mmdebstrap --variant=extract` unpacks the userland (no maintainer scripts),
`pip download --platform ..._aarch64` fetches the wheels with the versions x86 runs, and
qemu-user comes from Debian trixie as a .deb unpacked with `dpkg -x` (bookworm's qemu 7.2
segfaults inside LiteRT's Interpreter constructor; trixie's 10.x runs it). binfmt_misc is not
assumed: qemu runs the arm64 `python3.11` explicitly, so nothing inside may spawn a process
(the guest script refuses any attempt).

No timing from here is a device figure: qemu translates every instruction.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from fsanet.errors import DataError

# the CPU models qemu emulates that stand for the boards users deploy to
CPUS = {
    "cortex-a53": "Raspberry Pi 3 class: NEON, no dot-product",
    "cortex-a72": "Raspberry Pi 4 class: NEON, no dot-product",
    "neoverse-n1": "dot-product (SDOT/UDOT), like the Cortex-A78AE of a Jetson Orin",
    "max": "every feature qemu emulates: dot-product, i8mm, SVE/SVE2, BF16",
}
SUITE = "bookworm"  # the userland: its python3.11 is the 3.11 the wheels are built for
QEMU_SUITE = "trixie"  # qemu-user 10.x, a statically linked binary
PYTHON = "python3.11"
PYTHON_TAG = "3.11"
ROOT_PACKAGES = (PYTHON, "libstdc++6", "libgcc-s1")  # the wheels' C++ runtime comes from the system
PLATFORMS = ("manylinux2014_aarch64", "manylinux_2_27_aarch64", "manylinux_2_28_aarch64")
# the runtime-only install: the package's own dependencies, one backend extra each
WHEELS = ("numpy", "opencv-python-headless", "onnxruntime", "ai-edge-litert")
PINNED_BY_EXTRA = {"onnxruntime": "onnxruntime", "ai-edge-litert": "tflite"}
DEFAULT_MIRROR = "http://deb.debian.org/debian"
# what pip warns when an index did not answer: the run is then tried once more. pip ends such a
# run as "no matching distribution" or, when a dependency's page was the one, as a conflict
INDEX_FAILURE = re.compile(
    r"Retrying \(Retry\(|connection broken by|Could not fetch URL|Max retries exceeded|ReadTimeoutError|"
    r"Temporary failure in name resolution|HTTP error 5\d\d|IncompleteRead"
)
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"


@dataclass(frozen=True)
class Emulator:
    """A prepared aarch64 machine: `command(cpu, args)` runs the Arm Python on a CPU model."""

    root: Path  # the arm64 userland
    qemu: Path  # qemu-aarch64 (static)
    site: Path  # the aarch64 wheels, installed with `pip install --target`
    package: Path  # this package, installed the same way (pure Python)
    versions: dict  # what each part is: suite, qemu, wheels

    def command(self, cpu: str, args: list[str]) -> list[str]:
        if cpu not in CPUS:
            raise DataError(f"--cpu {cpu}: not one of the emulated CPU models {', '.join(CPUS)}")
        return [str(self.qemu), "-L", str(self.root), "-cpu", cpu, str(self.root / "usr" / "bin" / PYTHON), *args]

    def env(self) -> dict[str, str]:
        """A clean environment: nothing of the host's Python, BLAS or locale settings leaks in
        (OPENBLAS_CORETYPE names x86 cores here; the aarch64 OpenBLAS would not know them)."""
        return {
            "PATH": "/usr/bin:/bin",
            "HOME": os.environ.get("HOME", "/root"),
            "LC_ALL": "C.UTF-8",
            "PYTHONPATH": f"{self.package}{os.pathsep}{self.site}",
            "PYTHONSAFEPATH": "1",  # no working folder on sys.path: a checkout's fsanet/ would shadow the package
            "PYTHONNOUSERSITE": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONHASHSEED": "0",
            "OMP_NUM_THREADS": "1",
        }

    def run(self, cpu: str, args: list[str], log: Path, timeout: float) -> None:
        """Run the Arm Python with `args` on `cpu`; its stdout and stderr go to `log`."""
        with open(log, "w") as out:
            try:
                proc = subprocess.run(
                    self.command(cpu, args),
                    env=self.env(),
                    cwd=log.parent,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    timeout=timeout,
                )
            except subprocess.TimeoutExpired:
                raise DataError(f"the emulated run on {cpu} took over {timeout:.0f} s; see {log}") from None
        if proc.returncode != 0:
            tail = " | ".join(log.read_text(errors="replace").strip().splitlines()[-3:])
            raise DataError(f"the emulated run on {cpu} failed (exit {proc.returncode}): {tail}; full log: {log}")


def prepare(cache: str | Path = "build/arm", source: str | Path | None = None) -> Emulator:
    """The userland, qemu and wheels (each reused from `cache` when present), and this package
    built from its source tree `source` (default: the checkout this module runs from)."""
    cache = Path(cache).resolve()  # the emulated runs start in their own folders
    cache.mkdir(parents=True, exist_ok=True)
    pins = wheel_pins()
    root, suite = userland(cache)
    qemu, qemu_version = qemu_user(cache)
    site = wheels(cache, pins)
    package = install_package(cache, Path(source) if source else source_tree())
    versions = {"userland": suite, "qemu": qemu_version, "wheels": installed_wheels(site)}
    return Emulator(root, qemu, site, package, versions)


# -- the arm64 userland ------------------------------------------------------------------------
def userland(cache: Path) -> tuple[Path, str]:
    """Debian `SUITE` arm64 with Python and the C++ runtime, unpacked, no foreign code run."""
    key = _key(SUITE, *ROOT_PACKAGES)
    root = cache / f"root-{SUITE}-{key}"
    if not (root / "usr" / "bin" / PYTHON).is_file():
        tool = _need("mmdebstrap", "mmdebstrap")
        cmd = [tool, "--mode=root", "--variant=extract", "--arch=arm64", f"--include={','.join(ROOT_PACKAGES)}",
               "--quiet", SUITE]  # fmt: skip
        _build_dir(root, lambda tmp: _run([*cmd, str(tmp), mirror()], "mmdebstrap (the arm64 userland)"))
    return root, f"Debian {SUITE} arm64 ({', '.join(ROOT_PACKAGES)})"


def mirror() -> str:
    """This machine's own Debian mirror (its apt sources), so no other host is needed."""
    for path in [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]:
        try:
            text = path.read_text()
        except OSError:
            continue
        for uri in re.findall(r"(?:^URIs:\s*|^deb\s+(?:\[[^\]]*\]\s+)?)(\S+)", text, re.MULTILINE):
            if "security" not in uri and uri.rstrip("/").endswith("/debian"):
                return uri
    return DEFAULT_MIRROR


# -- qemu-user from trixie ---------------------------------------------------------------------
def qemu_user(cache: Path) -> tuple[Path, str]:
    """qemu-aarch64 from Debian trixie's `qemu-user` .deb: downloaded with apt-get into the cache
    (its own package lists, the system's apt state untouched) and unpacked with dpkg -x."""
    target = cache / f"qemu-{QEMU_SUITE}"
    binary, record = target / "qemu-aarch64", target / "version.txt"
    if not (binary.is_file() and record.is_file()):

        def build(tmp: Path) -> None:
            version = _download_qemu(cache / "apt-trixie", tmp)
            record_text = f"qemu-user {version} (Debian {QEMU_SUITE})\n"
            (tmp / "version.txt").write_text(record_text)

        _build_dir(target, build)
    return binary, record.read_text().strip()


def _download_qemu(apt_dir: Path, dest: Path) -> str:
    apt_get, dpkg = _need("apt-get", "apt"), _need("dpkg-deb", "dpkg")
    apt_dir = apt_dir.resolve()  # apt-get download runs inside it
    (apt_dir / "lists" / "partial").mkdir(parents=True, exist_ok=True)
    sources = apt_dir / "sources.list"
    signed = f"[signed-by={KEYRING}] " if Path(KEYRING).is_file() else ""
    sources.write_text(f"deb {signed}{mirror()} {QEMU_SUITE} main\n")
    # its own sources, lists and cache: the system's apt state is left as it is
    options = [f"-oDir::Etc::SourceList={sources}", "-oDir::Etc::SourceParts=/dev/null",
               f"-oDir::State::Lists={apt_dir / 'lists'}", f"-oDir::Cache={apt_dir / 'cache'}",
               "-oAPT::Sandbox::User=root", "-oDebug::NoLocking=1", "-qq"]  # fmt: skip
    _run([apt_get, *options, "update"], f"apt-get update for Debian {QEMU_SUITE}")
    for old in apt_dir.glob("qemu-user_*.deb"):
        old.unlink()
    _run([apt_get, *options, "download", "qemu-user"], "apt-get download qemu-user", cwd=apt_dir)
    debs = sorted(apt_dir.glob("qemu-user_*.deb"))
    if not debs:
        raise DataError(f"apt-get download qemu-user left no .deb in {apt_dir}")
    version = _run([dpkg, "-f", str(debs[-1]), "Version"], "dpkg-deb -f").strip()
    with tempfile.TemporaryDirectory(dir=dest) as unpacked:
        _run([dpkg, "-x", str(debs[-1]), unpacked], "dpkg -x qemu-user")
        shutil.move(str(Path(unpacked) / "usr" / "bin" / "qemu-aarch64"), dest / "qemu-aarch64")
    debs[-1].unlink()  # 70 MB; the binary is all that is kept
    return version


# -- the aarch64 wheels ------------------------------------------------------------------------
def wheel_pins() -> list[str]:
    """`name==version` of the runtime-only install: the versions x86 runs here, so that a drift
    between the two is the kernels', not the release's. onnxruntime and ai-edge-litert must be
    the ones pyproject.toml pins in their extras."""
    from importlib.metadata import PackageNotFoundError, requires, version

    pinned = {}
    for line in requires("fsanet-edge") or []:
        found = re.match(r"\s*([A-Za-z0-9_.-]+)\s*==\s*([^;\s]+)\s*;.*extra\s*==\s*[\"']([^\"']+)", line)
        if found and PINNED_BY_EXTRA.get(found.group(1).lower()) == found.group(3):
            pinned[found.group(1).lower()] = found.group(2)
    pins = []
    for name in WHEELS:
        try:
            here = version(name)
        except PackageNotFoundError:
            raise DataError(f"{name} is not installed here; the x86 side needs it: pip install -e '.[dev]'") from None
        if name in pinned and pinned[name] != here:
            raise DataError(
                f"{name} {here} is installed here but pyproject.toml pins {pinned[name]}: reinstall with "
                "pip install -e '.[dev]' so that x86 and Arm run the same release"
            )
        pins.append(f"{name}=={here}")
    return pins


def wheels(cache: Path, pins: list[str]) -> Path:
    """The aarch64 wheels of `pins` and of what they depend on (at the versions installed here),
    installed into one folder for PYTHONPATH."""
    site = cache / f"site-py{PYTHON_TAG}-{_key(*pins, *PLATFORMS)}"
    if not (site / ".complete").is_file():
        _build_dir(site, lambda tmp: _install_wheels(pins, tmp))
    return site


def installed_wheels(site: Path) -> list[str]:
    """`name==version` of every wheel in the emulated machine's site folder."""
    return (site / ".complete").read_text().split()


def _platform_args() -> list[str]:
    out = ["--only-binary=:all:", "--python-version", PYTHON_TAG]
    for p in PLATFORMS:
        out += ["--platform", p]
    return out


def _install_wheels(pins: list[str], site: Path) -> None:
    """pip resolves the dependencies for aarch64 and installs the wheels into `site`; every
    dependency is held to the version installed here (a constraints file of this environment).
    An index that fails to answer gets one more try (pip's own retries cover a single request)."""
    with tempfile.TemporaryDirectory() as tmp:
        constraints = Path(tmp) / "constraints.txt"
        constraints.write_text("\n".join(constraints_here()) + "\n")
        report = Path(tmp) / "report.json"
        # not --quiet: pip says why a resolution is impossible at its info level only
        _run([sys.executable, "-m", "pip", "--disable-pip-version-check", "install", *_platform_args(),
              "--no-compile", "--target", str(site), "-c", str(constraints), "--report", str(report), *pins],
             "pip install --platform aarch64 (the aarch64 wheels)", retry=INDEX_FAILURE)  # fmt: skip
        data = json.loads(report.read_text())
    installed = sorted(f"{i['metadata']['name']}=={i['metadata']['version']}" for i in data.get("install", []))
    (site / ".complete").write_text("\n".join(installed) + "\n")


def constraints_here() -> list[str]:
    """`name==version` of every distribution in this environment's own site-packages, one per
    name (this package left out). Not `sys.path`: `import setuptools` (torch's export does it)
    appends setuptools/_vendor, whose packaging, wheel and tomli are older copies; their second
    pin made `packaging` unsatisfiable for onnxruntime (pip: ResolutionImpossible)."""
    import sysconfig
    from importlib.metadata import distributions

    site_dirs = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
    first = {}
    for d in distributions(path=site_dirs):
        name = d.metadata["Name"]
        if name and _norm(name) != "fsanet-edge":
            first.setdefault(_norm(name), f"{name}=={d.version}")
    return sorted(first.values())


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


# -- this package ------------------------------------------------------------------------------
def source_tree() -> Path:
    """The checkout this package runs from (an editable install); the emulated machine gets
    this package built from it as a pure-Python wheel, without any of its dependencies."""
    here = Path(__file__).resolve().parents[1]
    if not (here / "pyproject.toml").is_file():
        raise DataError(f"{here}: no pyproject.toml; run from the fsanet-edge checkout (pip install -e .)")
    return here


def install_package(cache: Path, source: Path) -> Path:
    """This package alone (pure Python, no dependencies) installed into `cache/package`, rebuilt
    each time so that the emulated run uses the code of this checkout."""
    target = cache / "package"

    def build(tmp: Path) -> None:
        pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
        with tempfile.TemporaryDirectory(dir=cache) as wheel_dir:
            _run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", wheel_dir, str(source)],
                 "pip wheel (this package)")  # fmt: skip
            wheel = next(Path(wheel_dir).glob("fsanet_edge-*.whl"))
            _run([*pip, "install", "--no-deps", "--no-compile", "--target", str(tmp), str(wheel)],
                 "pip install --target (this package)")  # fmt: skip
        shutil.rmtree(tmp / "bin", ignore_errors=True)  # x86 console scripts: the guest runs -m fsanet

    _build_dir(target, build, replace=True)
    return target


# -- helpers -----------------------------------------------------------------------------------
def _key(*parts: str) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:12]


def _need(tool: str, package: str) -> str:
    found = shutil.which(tool)
    if found is None:
        raise DataError(f"{tool} not found: the aarch64 emulation needs it; install it with apt-get install {package}")
    return found


def _run(cmd: list[str], step: str, cwd: Path | None = None, retry: re.Pattern | None = None) -> str:
    """Run a host tool; on failure its full output is kept in a log named in the error. When
    the output matches `retry` (a network failure), the command runs once more."""
    logs = []
    for attempt in (1, 2):
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd)
        if proc.returncode == 0:
            return proc.stdout
        logs.append(_keep_log(cmd, proc))
        if attempt == 1 and retry is not None and retry.search(proc.stdout + proc.stderr):
            continue
        break
    kept = ", then ".join(map(str, logs))
    tries = " twice (the first a network failure)" if len(logs) == 2 else ""
    raise DataError(f"{step} failed{tries} (exit {proc.returncode}): {_why(proc)} (full output: {kept})")


def _keep_log(cmd: list[str], proc: subprocess.CompletedProcess) -> Path:
    log = Path(tempfile.mkstemp(prefix="fsanet-arm-", suffix=".log")[1])
    log.write_text(f"$ {' '.join(cmd)}\n\n{proc.stdout}\n{proc.stderr}")
    return log


def _why(proc: subprocess.CompletedProcess) -> str:
    """The lines that say what went wrong: pip's conflict explanation (on stdout) when there is
    one, then the last lines of stderr. pip's "Location ... is ignored" warnings about absent
    local indexes are noise here."""
    out = (proc.stdout or "").splitlines()
    cause = []
    if "The conflict is caused by:" in out:
        for line in out[out.index("The conflict is caused by:") + 1 :]:
            if not line.strip():
                break
            cause.append(line.strip())
    err = [ln for ln in (proc.stderr or proc.stdout).strip().splitlines() if "is ignored:" not in ln]
    return " | ".join(err[-6:] + ([f"the conflict: {'; '.join(cause)}"] if cause else []))


def _build_dir(target: Path, build, replace: bool = False) -> None:
    """Build a folder under a temporary name and move it into place: a half-prepared cache entry
    (an interrupted download) is never taken for a complete one."""
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    try:
        build(tmp)
        if target.exists() and replace:
            old = target.with_name(f".{target.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            target.rename(old)
            shutil.rmtree(old)
        tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
