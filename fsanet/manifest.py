"""Every exported file carries its own description: the manifest.

What the input is (name, shape, layout, dtype, colour order, scale), what comes out (names,
order, units), the precision, the fusion members, where it came from (sha256 of the source
weights and calibration set), the tools that made it, and how it was verified. ONNX files keep
it in `metadata_props` (key `fsanet`); every format also gets a sidecar `<file>.json` that adds
the file's own sha256, so a runtime can refuse a file changed after export. Plain JSON, no numpy.
"""

from __future__ import annotations

import json
from pathlib import Path

from fsanet.errors import DataError
from fsanet.files import read_bounded, sha256, write_text
from fsanet.preprocess import INPUT_SIZE

FORMAT = "fsanet-artifact"
VERSION = 1
METADATA_KEY = "fsanet"


def sidecar_path(path: str | Path) -> Path:
    return Path(f"{path}.json")


def base_manifest(**fields) -> dict:
    """A manifest with the model-input conventions of this project filled in."""
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "input": {
            "name": "input",
            "shape": ["batch", 3, INPUT_SIZE, INPUT_SIZE],
            "layout": "NCHW",
            "dtype": "float32",
            "colour": "BGR",
            "mean": 0.0,
            "std": 1.0,
            "scale": "0..255, no normalisation",
        },
        "output": {"name": "angles", "shape": ["batch", 3], "order": ["yaw", "pitch", "roll"], "units": "degrees"},
    }
    manifest.update(fields)
    return manifest


def write_sidecar(path: str | Path, manifest: dict) -> Path:
    full = dict(manifest, file=Path(path).name, sha256=sha256(path), size_bytes=Path(path).stat().st_size)
    side = sidecar_path(path)
    write_text(side, json.dumps(full, indent=2) + "\n")
    return side


def read_sidecar(path: str | Path) -> dict | None:
    """The sidecar manifest of `path`, checked against the file; None when there is none."""
    side = sidecar_path(path)
    if not side.is_file():
        return None
    manifest = _json(read_bounded(side, "manifest (JSON)"), f"{side}", "re-export the model or delete the sidecar")
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        why = "not an object" if not isinstance(manifest, dict) else f"field 'format' is {manifest.get('format')!r:.40}"
        raise DataError(f"{side}: not an fsanet manifest ({why})")
    actual = sha256(path)
    if manifest.get("sha256") != actual:
        raise DataError(
            f"{path}: sha256 {actual[:12]}... does not match its manifest {side.name} "
            f"({str(manifest.get('sha256'))[:12]}...): the file changed after export; re-export it"
        )
    return manifest


def _json(text, what: str, fix: str):
    try:
        return json.loads(text)
    except ValueError as e:
        raise DataError(f"{what}: not valid JSON ({e}); {fix}") from None
    except RecursionError:  # arrays nested thousands deep: json recurses once per level
        raise DataError(f"{what}: not a manifest (nested too deep); {fix}") from None


def parse_embedded(text: str | None, path: str | Path) -> dict | None:
    if not text:
        return None
    manifest = _json(text, f"{path}: its embedded '{METADATA_KEY}' manifest", "re-export the model")
    return manifest if isinstance(manifest, dict) and manifest.get("format") == FORMAT else None
