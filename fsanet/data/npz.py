"""The authors' preprocessed `.npz` files: `image` (N, 64, 64, 3) BGR uint8, `pose` (N, 3)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from fsanet.data.base import FaceSet, protocol_filter
from fsanet.errors import DataError
from fsanet.preprocess import INPUT_SIZE


def npz_file(path: str | Path, protocol_filter_on: bool = True) -> FaceSet:
    path = Path(path)
    try:  # a damaged archive fails in np.load or only when a member is read
        data = np.load(path, allow_pickle=False)
        if not hasattr(data, "files"):
            raise DataError(f"{path}: a single .npy array, not an .npz with 'image' and 'pose'")
        for key in ("image", "pose"):
            if key not in data.files:
                raise DataError(f"{path}: field {key!r} is missing (has {data.files}); expected 'image' and 'pose'")
        images, poses = data["image"], np.asarray(data["pose"], dtype=np.float32)
    except (OSError, ValueError, EOFError, TypeError, zipfile.BadZipFile) as e:
        if isinstance(e, DataError):
            raise
        raise DataError(f"{path}: cannot read as .npz ({type(e).__name__}: {e})") from e
    if images.ndim != 4 or images.shape[1:] != (INPUT_SIZE, INPUT_SIZE, 3):
        raise DataError(f"{path}: field 'image' has shape {images.shape}, expected (N, {INPUT_SIZE}, {INPUT_SIZE}, 3)")
    if poses.shape != (len(images), 3):
        raise DataError(f"{path}: field 'pose' has shape {poses.shape}, expected ({len(images)}, 3)")
    if len(images) == 0:
        raise DataError(f"{path}: the file holds no faces")
    images = _pixels(path, images)
    keep, dropped = protocol_filter(poses) if protocol_filter_on else (np.ones(len(poses), bool), {})
    idx = np.flatnonzero(keep)
    return FaceSet(str(path), [f"{path.stem}[{j}]" for j in idx], lambda i: images[idx[i]], poses[idx], dropped)


def _pixels(path: Path, images: np.ndarray) -> np.ndarray:
    """'image' as uint8 BGR 0..255. Other pixel types are taken only when every value lies in
    0..255 (rounded): a cast would silently turn NaN, -1 or 300 into other pixels, 0..1 into black."""
    if images.dtype == np.uint8:
        return images
    if images.dtype.kind not in "iuf":
        raise DataError(f"{path}: field 'image' has dtype {images.dtype}; expected uint8 BGR pixels 0..255")
    if images.dtype.kind == "f" and not np.isfinite(images).all():
        raise DataError(f"{path}: field 'image' contains NaN or infinite values; expected uint8 BGR pixels 0..255")
    lo, hi = float(images.min()), float(images.max())
    if lo < 0 or hi > 255:
        raise DataError(f"{path}: field 'image' has values {lo:g}..{hi:g}; expected BGR pixels 0..255")
    if images.dtype.kind == "f" and hi <= 1.0:
        raise DataError(f"{path}: field 'image' looks scaled to 0..1 (max {hi:g}); store BGR pixels 0..255 (uint8)")
    return np.rint(images).astype(np.uint8)
