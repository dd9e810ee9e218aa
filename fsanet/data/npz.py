"""The authors' preprocessed `.npz` files: `image` (N, 64, 64, 3) BGR uint8, `pose` (N, 3)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fsanet.data.base import FaceSet, protocol_filter
from fsanet.errors import DataError
from fsanet.files import read_npz
from fsanet.limits import MAX_FACES
from fsanet.preprocess import INPUT_SIZE, check_pixels


def npz_file(path: str | Path, protocol_filter_on: bool = True) -> FaceSet:
    path = Path(path)
    # every member's header is checked before anything is allocated: a header claiming a
    # billion faces, or pickled objects, are refused naming the file and the field
    data = read_npz(path, what="face set (.npz with 'image' and 'pose')")
    for key in ("image", "pose"):
        if key not in data:
            raise DataError(f"{path}: field {key!r} is missing (has {sorted(data)}); expected 'image' and 'pose'")
    images, poses = data["image"], data["pose"]
    if images.ndim != 4 or images.shape[1:] != (INPUT_SIZE, INPUT_SIZE, 3):
        raise DataError(f"{path}: field 'image' has shape {images.shape}, expected (N, {INPUT_SIZE}, {INPUT_SIZE}, 3)")
    if poses.shape != (len(images), 3) or poses.dtype.kind not in "iuf":
        raise DataError(
            f"{path}: field 'pose' has shape {poses.shape} ({poses.dtype}), expected ({len(images)}, 3) numbers"
        )
    if len(images) == 0:
        raise DataError(f"{path}: the file holds no faces")
    if len(images) > MAX_FACES:
        raise DataError(
            f"{path}: {len(images):,} faces, more than the bound of {MAX_FACES:,} (fsanet.limits.MAX_FACES)"
        )
    images = _pixels(path, images)
    poses = poses.astype(np.float32)
    keep, dropped = protocol_filter(poses) if protocol_filter_on else (np.ones(len(poses), bool), {})
    idx = np.flatnonzero(keep)
    return FaceSet(str(path), [f"{path.stem}[{j}]" for j in idx], lambda i: images[idx[i]], poses[idx], dropped)


def _pixels(path: Path, images: np.ndarray) -> np.ndarray:
    """'image' as uint8 BGR 0..255. Other pixel types are taken only when every value lies in
    0..255 (rounded): a cast would silently turn NaN, -1 or 300 into other pixels, 0..1 into black."""
    check_pixels(images, str(path), "field 'image'")
    return images if images.dtype == np.uint8 else np.rint(images).astype(np.uint8)
