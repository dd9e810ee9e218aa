"""What a bundle folder holds, written once; reading one back with every file's sha256 checked.

```
KIT/
  bundle.json        what the kit holds: artifacts, reference, golden set, budget, sha256 of every file
  README.txt         the two commands to run on the device
  budget.toml        the limits every artifact is judged by
  golden.npz         crops (N,64,64,3) BGR uint8, reference (N,3) float32 angles of the float
                     reference, labels (N,3) where known, names (N,)
  host-angles.npz    each artifact's own angles on the machine that made the kit, by file name
  calib.npz          optional (`bundle --calib`): calibration set for implicit INT8 TensorRT
  fsanet_edge-VER-py3-none-any.whl   fsanet-edge itself, for the device's pip (kit/wheel.py)
  <artifact>         the model files, flat, each with its sidecar manifest <artifact>.json
```
A flat folder, so that copying it (scp, adb push, a USB stick) needs no recursion.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fsanet.errors import DataError
from fsanet.files import sha256

FORMAT = "fsanet-bundle"
VERSION = 1
MANIFEST = "bundle.json"
README = "README.txt"
BUDGET = "budget.toml"
GOLDEN = "golden.npz"
HOST_ANGLES = "host-angles.npz"
CALIB = "calib.npz"
RESERVED = (MANIFEST, README, BUDGET, GOLDEN, HOST_ANGLES, CALIB)
SUFFIXES = (".onnx", ".tflite", ".pt")  # engines are built on the device (`check --build`)


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
    """A bundle folder whose files all match the sha256 that bundle.json records."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.manifest = read_manifest(self.folder)
        verify_files(self.folder, self.manifest)

    @property
    def name(self) -> str:
        return self.folder.resolve().name

    @property
    def reference(self) -> str:
        return self.manifest["reference"]

    def artifacts(self) -> list[Artifact]:
        return [
            Artifact(a["file"], self.folder / a["file"], a["backend"], a["precision"], a.get("input_format"))
            for a in self.manifest["artifacts"]
        ]

    def golden(self) -> Golden:
        with np.load(self.folder / GOLDEN, allow_pickle=False) as z:
            labels = z["labels"] if "labels" in z.files else None
            return Golden(z["crops"], z["reference"], labels, [str(n) for n in z["names"]])

    def host_angles(self) -> dict[str, np.ndarray]:
        with np.load(self.folder / HOST_ANGLES, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}

    def budget_path(self) -> Path:
        return self.folder / BUDGET

    def calib_path(self) -> Path | None:
        return self.folder / CALIB if self.manifest.get("calib") else None


def read_manifest(folder: Path) -> dict:
    path = folder / MANIFEST
    if not folder.is_dir():
        raise DataError(f"{folder}: no such bundle folder (make one with `fsanet bundle ARTIFACT... -o DIR`)")
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{path}: missing; {folder} is not an fsanet bundle (`fsanet bundle` writes one)") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not valid JSON ({e}); copy the bundle again") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise DataError(f"{path}: not an fsanet bundle manifest (field 'format' is not {FORMAT!r})")
    if manifest.get("version") != VERSION:
        raise DataError(
            f"{path}: bundle version {manifest.get('version')!r}; this fsanet reads version {VERSION}: "
            "make the bundle with the same fsanet-edge version as the device runs"
        )
    for key in ("files", "artifacts", "reference", "golden"):
        if key not in manifest:
            raise DataError(f"{path}: lacks the field '{key}'; copy the bundle again")
    return manifest


def verify_files(folder: Path, manifest: dict) -> None:
    """Every file bundle.json lists is there and has its recorded sha256 (a kit damaged in
    transit, or edited, is refused before anything runs)."""
    files = manifest["files"]
    if not isinstance(files, dict) or not files:
        raise DataError(f"{folder / MANIFEST}: 'files' must map each file to its sha256")
    for name, digest in files.items():
        path = folder / name
        if Path(name).name != name or name in ("", ".", ".."):
            raise DataError(f"{folder / MANIFEST}: file entry {name!r} is not a plain file name")
        if not path.is_file():
            raise DataError(f"{path}: missing from the bundle (bundle.json lists it); copy the bundle again")
        actual = sha256(path)
        if actual != digest:
            raise DataError(
                f"{path}: sha256 {actual[:12]}... does not match bundle.json ({str(digest)[:12]}...): the file "
                "changed after `fsanet bundle`; copy the bundle again or make a new one"
            )
