"""The official crop and the model input, used by every stage.

Crop (the authors' data scripts): the box of the 2-D landmarks, grown by `margin` (0.6) of its
width/height on each side, truncated to integers, clipped to the image, resized to 64x64 with
OpenCV's default (bilinear) interpolation. Model input: BGR, float32, 0..255, no normalisation.
"""

from __future__ import annotations

import numpy as np

from fsanet.errors import DataError

INPUT_SIZE = 64
MARGIN = 0.6
PIXEL_MAX = 255.0


def landmark_box(landmarks) -> tuple[float, float, float, float]:
    """(x0, y0, x1, y1) of 2-D landmarks given as (2, N) (AFLW `pt2d`) or (N, 2) (`.pts`).

    Like the authors' script, points with a non-positive coordinate (AFLW2000 marks missing
    landmarks so) are dropped: along the axis that keeps fewer points.
    """
    try:
        pts = np.asarray(landmarks, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError("landmarks must be numbers, (2, N) or (N, 2)") from None
    if pts.ndim != 2 or 2 not in pts.shape:
        raise DataError(f"landmarks must be (2, N) or (N, 2), got shape {pts.shape}")
    if not np.isfinite(pts).all():
        raise DataError("landmarks contain NaN or infinite coordinates")
    xs, ys = (pts if pts.shape[0] == 2 else pts.T)[:2]
    keep = xs > 0 if (xs > 0).sum() <= (ys > 0).sum() else ys > 0
    if not keep.any():
        raise DataError("no landmark has positive coordinates")
    xs, ys = xs[keep], ys[keep]
    return float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max())


def expand_box(box, image_shape, margin: float = MARGIN) -> tuple[int, int, int, int]:
    """Grow a box by `margin` of its size on each side and clip it, as the official code does."""
    x0, y0, x1, y1 = (int(v) for v in box)
    w, h = x1 - x0, y1 - y0
    img_h, img_w = image_shape[:2]
    return (
        max(int(x0 - margin * w), 0),
        max(int(y0 - margin * h), 0),
        min(int(x1 + margin * w), img_w - 1),
        min(int(y1 + margin * h), img_h - 1),
    )


def crop_box(image: np.ndarray, box, size: int = INPUT_SIZE) -> np.ndarray:
    """Cut an integer box (end exclusive) and resize it to size x size."""
    import cv2

    x0, y0, x1, y1 = box
    patch = image[y0:y1, x0:x1]
    if patch.size == 0:
        raise DataError(f"empty crop {box} in an image of shape {image.shape}: the face box lies outside the image")
    return cv2.resize(patch, (size, size))


def official_crop(image: np.ndarray, landmarks, margin: float = MARGIN) -> np.ndarray:
    """64x64 BGR crop of the face whose landmarks are given."""
    return crop_box(image, expand_box(landmark_box(landmarks), image.shape, margin))


def check_crops(crops: np.ndarray, source: str = "input") -> np.ndarray:
    """Validate a batch of crops: (N, 64, 64, 3), uint8 or float in 0..255, finite."""
    a = np.asarray(crops)
    if a.ndim == 3:
        a = a[None]
    if a.ndim != 4 or a.shape[1:] != (INPUT_SIZE, INPUT_SIZE, 3):
        raise DataError(
            f"{source}: crops must be (N, {INPUT_SIZE}, {INPUT_SIZE}, 3) BGR, got {a.shape}; "
            "crop faces with fsanet.preprocess.official_crop first"
        )
    if a.dtype != np.uint8 and not np.issubdtype(a.dtype, np.floating):
        raise DataError(f"{source}: crops must be uint8 or float, got {a.dtype}")
    return check_pixels(a, source)


def check_pixels(a: np.ndarray, source: str, what: str = "crop batch") -> np.ndarray:
    """`a` if its values are BGR pixels 0..255: numbers, finite, in range, and floats not scaled
    to 0..1 (the models take raw 0..255; 0..1 would run as a black face and give angles for it).
    An all-zero array is the same in both scales and passes."""
    if a.dtype.kind not in "iuf":
        raise DataError(f"{source}: {what} has dtype {a.dtype}; expected BGR pixels 0..255 (uint8)")
    if a.dtype == np.uint8 or not a.size:
        return a
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        raise DataError(f"{source}: {what} contains NaN or infinite values; expected BGR pixels 0..255")
    lo, hi = float(a.min()), float(a.max())
    if lo < 0 or hi > PIXEL_MAX:  # the models take 0..255; anything else gives nonsense angles
        raise DataError(f"{source}: {what} has values {lo:g}..{hi:g}; expected BGR pixels 0..255")
    if a.dtype.kind == "f" and 0 < hi <= 1.0:
        raise DataError(
            f"{source}: {what} has values {lo:g}..{hi:g}, which looks scaled to 0..1; give BGR pixels 0..255"
        )
    return a


def to_nchw(crops: np.ndarray) -> np.ndarray:
    """(N, 64, 64, 3) BGR crops -> (N, 3, 64, 64) float32 model input, values 0..255."""
    a = check_crops(crops)
    return np.ascontiguousarray(a.transpose(0, 3, 1, 2), dtype=np.float32)
