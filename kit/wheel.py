"""fsanet-edge itself, as the pure-Python wheel a kit carries: the package is on no package index,
so the device installs it from the kit, by its sha256 (`pip install --no-deps --require-hashes -r
requirements.txt` in the kit: pip's hash-checking mode wants a pinned hash for every package it
installs, dependencies included, hence --no-deps), and takes numpy, OpenCV and the runtime from its
index in a second step (`runtime_requirements`: the wheel's own Requires-Dist).

The wheel is built from the source tree this fsanet runs from (an editable install or a
checkout) with the pip and setuptools of this Python, offline: `pip wheel --no-deps
--no-build-isolation`. The tree is first copied into a temporary folder, because setuptools
builds in place and keeps its `build/` folder between builds (a module deleted from the source
would still be packed) and two builds at once would share it. An installed copy of fsanet-edge
has no source tree: it bundles the wheel given by `--wheel FILE`.
"""

from __future__ import annotations

import csv
import io
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from fsanet import __version__
from fsanet.errors import DataError

PROJECT = "fsanet-edge"
DIST = "fsanet_edge"  # the distribution's name in wheel file names
TAG = "py3-none-any"


@dataclass(frozen=True)
class KitWheel:
    """The wheel a kit carries: a file given (`--wheel`), or one to build from a source tree."""

    given: Path | None
    root: Path | None

    @property
    def name(self) -> str:
        return file_name()

    @property
    def source(self) -> str:
        return str(self.given) if self.given is not None else f"built from {self.root}"

    def write(self, folder: Path) -> Path:
        """The wheel, copied or built into `folder`."""
        if self.given is not None:
            return Path(shutil.copyfile(self.given, folder / self.name))
        return build_wheel(self.root, folder)


def file_name(version: str = __version__) -> str:
    return f"{DIST}-{version}-{TAG}.whl"


def requirements_text(name: str, digest: str) -> str:
    """The kit's requirements.txt: its wheel by its sha256 (a local path: pip reads it from the
    current folder, so the device runs pip in the kit folder)."""
    return f"{name} --hash=sha256:{digest}\n"


def runtime_requirements(wheel: Path) -> tuple[list[str], dict[str, list[str]]]:
    """The wheel's Requires-Dist as pip arguments: its dependencies (markers kept, like
    `tomli>=2.0; python_version < "3.11"`), and each extra's own (extras of fsanet-edge itself
    left out: the runtime extras name none)."""
    meta = zipfile.ZipFile(wheel).read(f"{DIST}-{__version__}.dist-info/METADATA").decode()
    base: list[str] = []
    extras: dict[str, list[str]] = {}
    for line in meta.split("\n\n")[0].splitlines():
        if not line.startswith("Requires-Dist: "):
            continue
        req, _, marker = (x.strip() for x in line.removeprefix("Requires-Dist: ").partition(";"))
        extra = re.fullmatch(r'extra\s*==\s*"([^"]+)"', marker)
        if extra is not None:
            if not req.startswith(PROJECT):
                extras.setdefault(extra[1], []).append(req)
        else:
            base.append(f"{req}; {marker}" if marker else req)
    return base, extras


def record(wheel: Path) -> dict[str, str]:
    """The wheel's RECORD: each file it installs (relative to site-packages) -> `sha256=<urlsafe b64>`."""
    text = zipfile.ZipFile(wheel).read(f"{DIST}-{__version__}.dist-info/RECORD").decode()
    return {row[0]: row[1] for row in csv.reader(io.StringIO(text)) if len(row) == 3 and row[1]}


def source_tree() -> Path | None:
    """The fsanet-edge source tree this package runs from, or None for an installed copy."""
    import fsanet

    root = Path(fsanet.__file__).resolve().parents[1]
    if not (root / "pyproject.toml").is_file() or _pyproject(root).get("project", {}).get("name") != PROJECT:
        return None
    return root


def kit_wheel(given: str | Path | None) -> KitWheel:
    """The wheel to put into a kit: `given`, checked, else one to build from the source tree (an
    installed fsanet-edge without `given`: exit 2 naming --wheel)."""
    if given is not None:
        return KitWheel(check_wheel(Path(given)), None)
    root = source_tree()
    if root is None:
        import fsanet

        raise DataError(
            f"bundle: fsanet-edge runs from an installed copy ({Path(fsanet.__file__).parent}), not from its "
            f"source tree, so it cannot build the wheel the kit carries; give one with --wheel {file_name()} "
            "(`pip wheel --no-deps -w DIR CHECKOUT` of an fsanet-edge checkout)"
        )
    return KitWheel(None, root)


def check_wheel(path: Path) -> Path:
    """`path` if it is this version's pure-Python wheel of fsanet-edge, else exit 2 saying why."""
    if not path.is_file():
        raise DataError(f"--wheel {path}: no such file")
    parts = path.name.removesuffix(".whl").split("-") if path.name.endswith(".whl") else []
    if len(parts) not in (5, 6) or parts[0].lower() != DIST:
        raise DataError(f"--wheel {path}: not a wheel of {PROJECT} (its name must be {file_name()})")
    if "-".join(parts[-3:]) != TAG:
        raise DataError(f"--wheel {path}: tagged {'-'.join(parts[-3:])}; the kit needs the pure-Python {TAG} wheel")
    if parts[1] != __version__:
        raise DataError(
            f"--wheel {path}: {PROJECT} {parts[1]}, but this fsanet-edge is {__version__} and the kit must be "
            f"checked by the version that made it; give {file_name()}"
        )
    if not zipfile.is_zipfile(path) or f"{DIST}-{__version__}.dist-info/WHEEL" not in zipfile.ZipFile(path).namelist():
        raise DataError(f"--wheel {path}: not a valid wheel (no {DIST}-{__version__}.dist-info/WHEEL inside)")
    return path


def build_wheel(root: Path, dest: Path) -> Path:
    """The wheel of the source tree `root`, built offline from a clean copy, in `dest`."""
    with tempfile.TemporaryDirectory(prefix="fsanet-wheel-") as tmp:
        copy = Path(tmp) / "src"
        _copy_sources(root, copy)
        cmd = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet", "wheel", "--no-deps",
               "--no-build-isolation", "--no-index", "-w", str(dest), str(copy)]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
        raise DataError(
            f"bundle: building the {PROJECT} wheel from {root} failed (pip wheel, exit {proc.returncode}: {tail}); "
            f"this Python needs pip and setuptools (pip install setuptools), or give a wheel with --wheel FILE"
        )
    built = dest / file_name()
    if not built.is_file():
        found = sorted(p.name for p in dest.glob("*.whl"))
        raise RuntimeError(f"pip wheel of {root} wrote {found}, not {built.name} (pyproject version vs __version__?)")
    return built


def _pyproject(root: Path) -> dict:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib
    return tomllib.loads((root / "pyproject.toml").read_text())


def _copy_sources(root: Path, dest: Path) -> None:
    """What setuptools reads to build the wheel: pyproject.toml, the readme, and each package
    folder that [tool.setuptools.package-dir] maps (without caches)."""
    meta = _pyproject(root)
    readme = meta["project"].get("readme")
    readme = readme.get("file") if isinstance(readme, dict) else readme
    tool = meta.get("tool", {}).get("setuptools", {})
    folders = sorted(set(tool.get("package-dir", {}).values()) or {p.split(".")[0] for p in tool.get("packages", [])})
    dest.mkdir()
    for name in ["pyproject.toml", *([readme] if readme else [])]:
        shutil.copyfile(root / name, dest / name)
    for folder in folders:
        shutil.copytree(root / folder, dest / folder, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
