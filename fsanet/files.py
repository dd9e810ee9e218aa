"""File helpers every stage uses: hashing, and writing so that no half file is ever seen."""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from pathlib import Path


def sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def atomic_write(path: str | Path, write) -> Path:
    """Call write(tmp_path) and move the result into place, so no half file is ever seen."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; give the usual mode
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def finite_or_none(obj):
    """`obj` with every NaN or infinite float replaced by None: JSON has no NaN (Python's
    `json` would write the invalid token `NaN`); a reader sees `null` instead."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite_or_none(v) for v in obj]
    return obj


def json_text(obj, **kwargs) -> str:
    """Strict JSON (non-finite numbers as null), indented, with a final newline."""
    return json.dumps(finite_or_none(obj), indent=2, allow_nan=False, **kwargs) + "\n"
