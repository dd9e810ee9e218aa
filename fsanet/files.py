"""File helpers every stage uses: hashing, and writing so that no half file is ever seen."""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import zipfile
from pathlib import Path

from fsanet.errors import DataError
from fsanet.limits import MAX_ARRAY_BYTES, MAX_JSON_BYTES


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


def regular_file(path: str | Path, what: str = "file") -> Path:
    """`path` if it is a regular file (a symlink to one included); a FIFO, a device or a socket
    would block a read forever or never end, so it is refused like a missing file."""
    path = Path(path)
    if not path.is_file():
        kind = "is a folder" if path.is_dir() else "is a FIFO, device or socket" if path.exists() else "does not exist"
        raise DataError(f"{path}: {kind}, not a regular file; give a {what}")
    return path


def read_bounded(path: str | Path, what: str = "file", max_bytes: int = MAX_JSON_BYTES) -> bytes:
    """The bytes of the regular file `path`, refused when it holds more than `max_bytes` (a
    budget or a manifest is small; /dev/zero or a runaway file must not fill the memory)."""
    path = regular_file(path, what)
    with open(path, "rb") as f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise DataError(f"{path}: larger than the bound of {max_bytes:,} bytes for a {what}")
    return data


def read_npz(path: str | Path, *, max_bytes: int = MAX_ARRAY_BYTES, what: str = ".npz file") -> dict:
    """Every array of the `.npz` file `path`, by field name, after each member's header was read
    and checked: numeric or string data only (no pickled objects), and no more bytes than the
    member holds and than `max_bytes` (a header claiming a billion faces is refused before any
    allocation). Any damage is a DataError naming the file and the field."""
    import numpy as np

    path = regular_file(path, what)
    try:
        with zipfile.ZipFile(path) as z:
            for info in z.infolist():
                _check_member(path, z, info, max_bytes)
        with np.load(path, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}
    except DataError:
        raise
    except (OSError, ValueError, EOFError, TypeError, KeyError, zipfile.BadZipFile, zipfile.LargeZipFile) as e:
        raise DataError(f"{path}: not a readable {what} ({type(e).__name__}: {e})") from None


def _check_member(path: Path, z: zipfile.ZipFile, info: zipfile.ZipInfo, max_bytes: int) -> None:
    import numpy as np
    from numpy.lib import format as npy

    field = info.filename.removesuffix(".npy")
    if not info.filename.endswith(".npy"):
        raise DataError(f"{path}: member {info.filename!r} is not an .npy array; an .npz holds arrays only")
    with z.open(info) as f:
        try:
            version = npy.read_magic(f)
            read = npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0
            shape, _, dtype = read(f)
        except (ValueError, SyntaxError, TypeError) as e:
            raise DataError(f"{path}: field {field!r} has a damaged array header ({e})") from None
    if dtype.hasobject:
        raise DataError(f"{path}: field {field!r} holds Python objects ({dtype}); only numeric or text arrays are read")
    declared = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if declared > min(max_bytes, info.file_size):
        bound = f"{info.file_size:,} bytes it holds" if declared <= max_bytes else f"the bound of {max_bytes:,} bytes"
        raise DataError(f"{path}: field {field!r} declares shape {shape} ({declared:,} bytes), more than {bound}")
