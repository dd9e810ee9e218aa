"""What a bundle folder holds, written once; reading one back with every file checked.

```
KIT/
  SHA256SUMS         `sha256sum` lines of every other file of the kit, sorted: the device checks the kit
                     with its own sha256sum; the host prints this file's own sha256 (not in the kit:
                     a kit cannot vouch for itself)
  requirements.txt   the wheel with its sha256, for `pip install --no-deps --require-hashes`
  bundle.json        what the kit holds (SCHEMA below): artifacts, reference, golden set, budget, sha256
                     of every file but itself and SHA256SUMS
  README.txt         the device's steps
  budget.toml        the limits every artifact is judged by
  golden.npz         crops (N,64,64,3) BGR uint8, reference (N,3) float32 angles of the float
                     reference, labels (N,3) where known, names (N,)
  host-angles.npz    each artifact's own angles (N,3) on the machine that made the kit, by file name
  calib.npz          optional (`bundle --calib`): calibration set for implicit INT8 TensorRT
  fsanet_edge-VER-py3-none-any.whl   fsanet-edge itself, for the device's pip (kit/wheel.py)
  <artifact>         the model files, flat, each with its sidecar manifest <artifact>.json
```
A flat folder, so that copying it (scp, adb push, a USB stick) needs no recursion. Nothing else
may be in it but the reports of `fsanet check` (folders `check` and `check-*`): an added file
could be picked up by a runtime (a sidecar) or by Python (`fsanet/` shadows the installed
package when Python runs in the kit folder).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fsanet.errors import DataError
from fsanet.files import read_bounded, read_npz, sha256
from fsanet.limits import MAX_GOLDEN_FACES, MAX_NESTING

FORMAT = "fsanet-bundle"
VERSION = 2  # 2: SHA256SUMS and requirements.txt
MANIFEST = "bundle.json"
README = "README.txt"
BUDGET = "budget.toml"
GOLDEN = "golden.npz"
HOST_ANGLES = "host-angles.npz"
CALIB = "calib.npz"
SUMS = "SHA256SUMS"
REQUIREMENTS = "requirements.txt"
RESERVED = (MANIFEST, README, BUDGET, GOLDEN, HOST_ANGLES, CALIB, SUMS, REQUIREMENTS)
BACKENDS = {".onnx": "onnxruntime", ".tflite": "tflite", ".pt": "torch"}  # engines are built on the device
SUFFIXES = tuple(BACKENDS)
REPORTS = re.compile(r"check(-.+)?")  # folders `fsanet check` writes its reports into (check, check-HOST)
MAX_ARTIFACTS = 64
MAX_FILES = 256
CROP_BYTES = 64 * 64 * 3


# -- the schema of bundle.json, and its validator --------------------------------------------------


class _Bad(Exception):
    def __init__(self, where: str, what: str):
        super().__init__(where, what)
        self.where, self.what = where, what


def _kind(v) -> str:
    return (
        "null"
        if v is None
        else {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}.get(
            type(v), "a number" if isinstance(v, int | float) else type(v).__name__
        )
    )


def _is(test, expected: str):
    def check(v, where):
        if not test(v):
            raise _Bad(where, f"must be {expected}, got {_kind(v)}")

    return check


def _plain(v) -> bool:
    return isinstance(v, str) and 0 < len(v) <= 255 and Path(v).name == v and v not in (".", "..") and "\\" not in v


STR = _is(lambda v: isinstance(v, str) and len(v) <= 4096, "a string")
BOOL = _is(lambda v: isinstance(v, bool), "true or false")
NUMBER = _is(lambda v: isinstance(v, int | float) and not isinstance(v, bool) and abs(v) < 1e15, "a finite number")
NAME = _is(_plain, "a plain file name inside the kit (no folder, no '..')")
HEX64 = _is(lambda v: isinstance(v, str) and re.fullmatch(r"[0-9a-f]{64}", v) is not None, "a sha256 (64 hex digits)")


def _const(value):
    return _is(lambda v: v == value, repr(value))


def _one_of(*values):
    return _is(lambda v: v in values, "one of " + ", ".join(map(repr, values)))


def _count(low: int, high: int):
    return _is(
        lambda v: isinstance(v, int) and not isinstance(v, bool) and low <= v <= high, f"an integer {low}..{high}"
    )


def _optional(spec):
    def check(v, where):
        if v is not None:
            spec(v, where)

    return check


def _object(fields: dict, optional: tuple = ()):
    """A JSON object with these fields (more are allowed: newer readers may add some)."""

    def check(v, where):
        if not isinstance(v, dict):
            raise _Bad(where, f"must be an object, got {_kind(v)}")
        for key, spec in fields.items():
            if key not in v:
                if key in optional:
                    continue
                raise _Bad(f"{where}.{key}".lstrip("."), "is missing")
            spec(v[key], f"{where}.{key}".lstrip("."))

    return check


def _list(item, low: int, high: int):
    def check(v, where):
        if not isinstance(v, list) or not low <= len(v) <= high:
            got = f"{len(v)} items" if isinstance(v, list) else _kind(v)
            raise _Bad(where, f"must be a list of {low} to {high} items, got {got}")
        for i, x in enumerate(v):
            item(x, f"{where}[{i}]")

    return check


def _files(v, where):
    if not isinstance(v, dict) or not 1 <= len(v) <= MAX_FILES:
        raise _Bad(where, f"must map 1 to {MAX_FILES} file names to their sha256, got {_kind(v)}")
    for name, digest in v.items():
        NAME(name, f"{where}[{name!r}]")
        HEX64(digest, f"{where}[{name!r}]")


ARTIFACT = _object(
    {"file": NAME, "backend": _one_of(*BACKENDS.values()), "precision": STR, "sidecar": _optional(NAME),
     "input_format": _optional(STR), "host_angles": BOOL, "host_note": _optional(STR)}
)  # fmt: skip
SCHEMA = _object(
    {
        "format": _const(FORMAT),
        "version": _const(VERSION),
        "name": STR,
        "created": STR,
        "fsanet": STR,
        "built_on": _object({"cpu": STR, "arch": STR}, optional=("cpu", "arch")),
        "reference": NAME,
        "artifacts": _list(ARTIFACT, 1, MAX_ARTIFACTS),
        "golden": _object(
            {
                "file": _const(GOLDEN),
                "count": _count(1, MAX_GOLDEN_FACES),
                "source": STR,
                "description": STR,
                "labelled": BOOL,
                "reference_mae": _optional(_object({"mean": NUMBER})),
            }
        ),  # fmt: skip
        "budget": _object(
            {"file": _const(BUDGET), "source": _optional(STR), "sections_naming_no_artifact": _list(STR, 0, 1000)}
        ),
        "calib": _optional(_object({"file": _const(CALIB), "source": STR})),
        "wheel": _object({"file": NAME, "version": STR, "source": STR}),
        "files": _files,
    }
)
REQUIRED = (README, BUDGET, GOLDEN, HOST_ANGLES, REQUIREMENTS)  # files every kit lists beside its artifacts
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.S)


def nesting(data: bytes) -> int:
    """How deep the arrays and objects of the JSON text `data` nest (strings skipped), counted
    before parsing: json.loads recurses once per level."""
    a = np.frombuffer(_STRING.sub(b'""', data), np.uint8)
    step = np.isin(a, (ord("["), ord("{"))).astype(np.int32) - np.isin(a, (ord("]"), ord("}")))
    return int(np.cumsum(step).max(initial=0))


def _fail(path: Path, field: str, what: str) -> DataError:
    return DataError(f"{path}: field '{field}' {what}; make the kit again with `fsanet bundle`")


def _cross_check(path: Path, m: dict) -> None:
    """Every file bundle.json names is an artifact of the right kind, listed in 'files' (so it is
    hash-checked): the check never opens a file the kit does not vouch for."""
    files, arts = m["files"], m["artifacts"]
    named = {f: f for f in REQUIRED} | {"wheel.file": m["wheel"]["file"], "reference": m["reference"]}
    if m["calib"] is not None:
        named["calib.file"] = CALIB
    for i, a in enumerate(arts):
        suffix = Path(a["file"]).suffix.lower()
        if suffix not in BACKENDS:
            raise _fail(path, f"artifacts[{i}].file", f"must end with {', '.join(SUFFIXES)}, got {a['file']!r}")
        if a["backend"] != BACKENDS[suffix]:
            raise _fail(path, f"artifacts[{i}].backend", f"must be {BACKENDS[suffix]!r} for a {suffix} file")
        if a["file"] in RESERVED or a["file"] in [b["file"] for b in arts[:i]]:
            raise _fail(path, f"artifacts[{i}].file", f"names {a['file']!r} twice or a file of the kit itself")
        sidecar = f"{a['file']}.json"
        if a["sidecar"] not in (None, sidecar) or (a["sidecar"] is None and sidecar in files):
            raise _fail(path, f"artifacts[{i}].sidecar", f"must be {sidecar!r} when the kit holds that file, else null")
        named[f"artifacts[{i}].file"] = a["file"]
        if a["sidecar"]:
            named[f"artifacts[{i}].sidecar"] = sidecar
    if m["reference"] not in [a["file"] for a in arts]:
        raise _fail(path, "reference", f"must name one of the artifacts, got {m['reference']!r}")
    for field, name in named.items():
        if name not in files:
            raise _fail(path, "files", f"lacks {name!r} ({field}): every file the kit uses carries its sha256 there")
    for name in (MANIFEST, SUMS):
        if name in files:
            raise _fail(path, "files", f"lists {name}, which cannot hold its own sha256")


def read_manifest(folder: Path) -> dict:
    """bundle.json, bounded in size and nesting before parsing, then validated against SCHEMA."""
    path = folder / MANIFEST
    if not folder.is_dir():
        raise DataError(f"{folder}: no such bundle folder (make one with `fsanet bundle ARTIFACT... -o DIR`)")
    if not path.exists():
        raise DataError(f"{path}: missing; {folder} is not an fsanet bundle (`fsanet bundle` writes one)")
    data = read_bounded(path, "kit manifest (bundle.json)")
    depth = nesting(data)
    if depth > MAX_NESTING:
        raise DataError(
            f"{path}: nested {depth} deep, more than the bound of {MAX_NESTING} (fsanet.limits.MAX_NESTING)"
        )
    try:
        manifest = json.loads(data)
    except (ValueError, RecursionError) as e:
        raise DataError(f"{path}: not valid JSON ({str(e)[:100]}); copy the bundle again") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise DataError(f"{path}: not an fsanet bundle manifest (field 'format' is not {FORMAT!r})")
    if manifest.get("version") != VERSION:
        raise DataError(
            f"{path}: bundle version {str(manifest.get('version'))[:20]}; this fsanet reads version {VERSION}: "
            "make the bundle with the same fsanet-edge version as the device runs"
        )
    try:
        SCHEMA(manifest, "")
    except _Bad as e:
        raise _fail(path, e.where, e.what) from None
    _cross_check(path, manifest)
    return manifest


def read_sums(folder: Path) -> dict[str, str]:
    """SHA256SUMS: file name -> sha256, each line as `sha256sum` writes it (`<hex>  <name>`)."""
    path = folder / SUMS
    if not path.exists():
        raise DataError(f"{path}: missing; every kit carries one (`fsanet bundle` writes it): copy the kit again")
    try:
        lines = read_bounded(path, "SHA256SUMS", max_bytes=MAX_FILES * 400).decode("utf-8").split("\n")
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a text file of `sha256sum` lines; copy the kit again") from None
    if lines[-1] == "":
        lines.pop()
    sums: dict[str, str] = {}
    for i, line in enumerate(lines, 1):
        m = re.fullmatch(r"([0-9a-f]{64})  (.+)", line)
        if m is None or not _plain(m[2]) or m[2] in sums or m[2] == SUMS:
            raise DataError(f"{path}: line {i} is not `<sha256>  <file name>` of another file: {line[:80]!r}")
        sums[m[2]] = m[1]
    if not sums:
        raise DataError(f"{path}: lists no file; copy the kit again")
    return sums


def sums_text(sums: dict[str, str]) -> str:
    return "".join(f"{sums[name]}  {name}\n" for name in sorted(sums))


def unlisted(folder: Path, sums: dict[str, str]) -> list[str]:
    """The entries of `folder` that SHA256SUMS does not list (fsanet check's report folders aside)."""
    return sorted(
        e.name
        for e in folder.iterdir()
        if e.name not in sums
        and e.name != SUMS
        and not (REPORTS.fullmatch(e.name) and e.is_dir() and not e.is_symlink())
    )


def verify_files(folder: Path, manifest: dict, sums: dict[str, str]) -> None:
    """SHA256SUMS lists exactly bundle.json and the files it lists; nothing else is in the
    folder; every file is a regular file with the sha256 both record (a kit damaged in transit,
    edited or added to is refused before anything runs)."""
    files = manifest["files"]
    for name in sorted(set(sums) ^ (set(files) | {MANIFEST})):
        where = (
            "SHA256SUMS lists it, bundle.json does not" if name in sums else "bundle.json lists it, SHA256SUMS does not"
        )
        raise DataError(f"{folder / SUMS}: {name!r}: {where}; copy the kit again")
    extra = unlisted(folder, sums)
    if extra:
        raise DataError(
            f"{folder / extra[0]}: in the kit but not in SHA256SUMS; a kit holds only the files it lists "
            f"(remove {'it' if len(extra) == 1 else f'the {len(extra)} unlisted entries'}, or copy the kit again)"
        )
    for name in sorted(sums):
        path = folder / name
        if not path.is_file():
            raise DataError(
                f"{path}: missing from the bundle (SHA256SUMS lists it) or not a regular file; copy it again"
            )
        actual = sha256(path)
        wrong = [n for n, d in ((MANIFEST, files.get(name)), (SUMS, sums[name])) if d is not None and d != actual]
        if wrong:
            raise DataError(
                f"{path}: sha256 {actual[:12]}... does not match {' and '.join(wrong)}: the file changed after "
                "`fsanet bundle`; copy the bundle again or make a new one"
            )


# -- the kit's arrays -------------------------------------------------------------------------------


def _array(path: Path, z: dict, field: str, shape: tuple, kinds: str, what: str, finite: bool = True) -> np.ndarray:
    """z[field], refused unless its shape is `shape` (None: any length) and its dtype kind in `kinds`."""
    a = z.get(field)
    if a is None:
        raise DataError(f"{path}: field '{field}' is missing ({what})")
    ok = a.ndim == len(shape) and all(s is None or s == t for s, t in zip(shape, a.shape, strict=True))
    if not ok or a.dtype.kind not in kinds:
        raise DataError(f"{path}: field '{field}' must be {what}, got shape {a.shape} {a.dtype}")
    if finite and a.dtype.kind == "f" and not np.isfinite(a).all():
        raise DataError(f"{path}: field '{field}' holds NaN or infinite angles")
    return a


def read_golden(path: Path, count: int) -> Golden:
    z = read_npz(path, max_bytes=MAX_GOLDEN_FACES * CROP_BYTES, what="golden set (golden.npz)")
    crops = _array(path, z, "crops", (None, 64, 64, 3), "u", "(N, 64, 64, 3) uint8 BGR crops")
    n = len(crops)
    if crops.dtype != np.uint8 or not 1 <= n <= MAX_GOLDEN_FACES or n != count:
        raise DataError(
            f"{path}: field 'crops' must hold bundle.json's golden.count = {count} uint8 crops "
            f"(at most {MAX_GOLDEN_FACES:,}, fsanet.limits.MAX_GOLDEN_FACES), got {n} {crops.dtype}"
        )
    angles = f"({n}, 3) float angles, one row per crop"
    reference = _array(path, z, "reference", (n, 3), "f", angles)
    labels = _array(path, z, "labels", (n, 3), "f", angles) if "labels" in z else None
    names = _array(path, z, "names", (n,), "US", f"({n},) names, one per crop")
    return Golden(crops, reference, labels, [str(x) for x in names])


def read_host_angles(path: Path, artifacts: list[str], n: int) -> dict[str, np.ndarray]:
    z = read_npz(path, max_bytes=MAX_GOLDEN_FACES * 3 * 8, what="host angles (host-angles.npz)")
    for field in z:
        if field not in artifacts:
            raise DataError(f"{path}: field '{field}' names no artifact of the kit ({', '.join(artifacts)})")
    what = f"({n}, 3) float angles on the golden crops"
    return {f: _array(path, z, f, (n, 3), "f", what, finite=False) for f in z}  # a NaN model's own: NaN


@dataclass(frozen=True)
class Golden:
    """The golden set: crops, the float reference's angles on them, and labels where known."""

    crops: np.ndarray
    reference: np.ndarray
    labels: np.ndarray | None
    names: list[str]


@dataclass(frozen=True)
class Artifact:
    name: str  # file name: the artifact's name in results and budget sections
    path: Path
    backend: str
    precision: str
    input_format: str | None  # `FILE@format` of a foreign file without manifest; None: the manifest says


class Bundle:
    """A bundle folder whose bundle.json holds to SCHEMA and whose files all match SHA256SUMS and
    bundle.json, with nothing else in it."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.manifest = read_manifest(self.folder)
        self.sums = read_sums(self.folder)
        verify_files(self.folder, self.manifest, self.sums)

    @property
    def name(self) -> str:
        return self.folder.resolve().name

    @property
    def reference(self) -> str:
        return self.manifest["reference"]

    def sums_sha256(self) -> str:
        """The sha256 of SHA256SUMS: what `fsanet bundle` printed on the host."""
        return sha256(self.folder / SUMS)

    def artifacts(self) -> list[Artifact]:
        return [
            Artifact(a["file"], self.folder / a["file"], a["backend"], a["precision"], a["input_format"])
            for a in self.manifest["artifacts"]
        ]

    def golden(self) -> Golden:
        return read_golden(self.folder / GOLDEN, self.manifest["golden"]["count"])

    def host_angles(self) -> dict[str, np.ndarray]:
        names = [a["file"] for a in self.manifest["artifacts"]]
        return read_host_angles(self.folder / HOST_ANGLES, names, self.manifest["golden"]["count"])

    def budget_path(self) -> Path:
        return self.folder / BUDGET

    def calib_path(self) -> Path | None:
        return self.folder / CALIB if self.manifest["calib"] else None
