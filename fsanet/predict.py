"""`fsanet predict`: angles for the faces in images.

Each image's faces come from, in order: its `.pts` landmarks (the official crop), the image
itself when it is already a 64x64 crop, or a face detector (`fsanet.detectors`, the one `fsanet
demo` uses, so both commands find the same faces in a photo).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fsanet.data.base import IMAGE_KIND, IMAGE_SUFFIXES, pixel_limit, read_image
from fsanet.errors import DataError
from fsanet.files import regular_file
from fsanet.preprocess import INPUT_SIZE, crop_box, expand_box, official_crop


def image_files(paths: list[str]) -> list[Path]:
    """The image files named or found in the folders named (by suffix, sub-folders included).
    A FIFO, a device or a socket, named or in a folder under an image's name, is refused (exit
    2 naming it) before any work: reading one would block forever."""
    files = []
    for p in map(Path, paths):
        if p.is_dir():
            found = folder_images(p)
            if not found:
                raise DataError(f"{p}: no images in this folder ({', '.join(IMAGE_SUFFIXES)})")
            files += found
        elif p.exists() or p.is_symlink():
            files.append(regular_file(p, IMAGE_KIND))
        else:
            raise DataError(f"{p}: no such image or folder")
    return files


def folder_images(folder: Path) -> list[Path]:
    """The files under `folder` with an image suffix, sorted; one that is not a regular file
    (a FIFO named x.jpg) is refused, naming it, rather than skipped or read."""
    found = sorted(f for f in folder.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES and not f.is_dir())
    return [regular_file(f, IMAGE_KIND) for f in found]


def faces_in(path: Path, detector=None) -> tuple[list[np.ndarray], str]:
    """The 64x64 crops of the faces in one image, and how they were found; `detector` is a
    callable from `fsanet.detectors.open_detector` (default: haar)."""
    image = read_image(path)
    pts = path.with_suffix(".pts")
    if pts.is_file():
        from fsanet.data.landmarks import read_pts

        return [official_crop(image, read_pts(pts))], "landmarks"
    if image.shape[:2] == (INPUT_SIZE, INPUT_SIZE):
        return [image], "crop"
    if detector is None:
        from fsanet.detectors import open_detector

        detector = open_detector()
    boxes = detector(image)
    return [crop_box(image, expand_box(b, image.shape)) for b in boxes], "detector"


def predict_paths(runtime, paths: list[str], detector: str | None = None, max_pixels: int | None = None) -> list[dict]:
    """One row per face found; an image without a face gets one row with `angles` None.
    `detector`: a --detector value for photos without landmarks (fsanet.detectors);
    `max_pixels`: images declaring more pixels are refused (default fsanet.limits.MAX_PIXELS)."""
    with pixel_limit(max_pixels):
        return _predict_paths(runtime, paths, detector)


def _predict_paths(runtime, paths: list[str], detector: str | None) -> list[dict]:
    from fsanet.detectors import open_detector
    from fsanet.runtimes.estimator import require_finite

    files = image_files(paths)  # every named file checked before the detector and the first image
    find = open_detector(detector)  # once: a cascade loads in milliseconds, not per image
    rows = []
    for f in files:
        crops, how = faces_in(f, find)
        if not crops:
            rows.append({"image": str(f), "face": None, "crop": "no face found", "angles": None})
            continue
        for k, angles in enumerate(require_finite(runtime.predict(np.stack(crops)), runtime.path.name)):
            rows.append({"image": str(f), "face": k, "crop": how, "angles": [float(a) for a in angles]})
    return rows
