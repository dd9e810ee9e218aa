"""Folders of face photos with 68-point `.pts` landmarks (iBUG 300-W format); no pose labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fsanet.data.base import FaceSet, find_image, read_image, require_files
from fsanet.errors import DataError
from fsanet.preprocess import official_crop


def read_pts(path: Path) -> np.ndarray:
    """(N, 2) points; accepts the iBUG header (`version`, `n_points`, braces) or bare `x y` lines."""
    points = []
    for line in path.read_text(errors="replace").splitlines():
        line = line.strip()
        if not line or line in "{}" or line.split()[0].endswith(":"):  # iBUG header: 'version: 1'
            continue
        try:
            x, y = (float(v) for v in line.split()[:2])
        except ValueError:
            raise DataError(f"{path}: cannot parse landmark line {line!r}; expected 'x y'") from None
        if not (np.isfinite(x) and np.isfinite(y)):
            raise DataError(f"{path}: landmark line {line!r} is not a finite point; expected 'x y' pixel coordinates")
        points.append((x, y))
    if len(points) < 2:
        raise DataError(f"{path}: {len(points)} landmarks found, need at least 2")
    return np.array(points)


def pts_folder(root: str | Path) -> FaceSet:
    root = Path(root)
    pts = require_files(root, "*.pts", ".pts landmark files")
    images = [find_image(p) for p in pts]

    def load(i: int) -> np.ndarray:
        image, points = read_image(images[i]), read_pts(pts[i])  # their errors name their files
        try:
            return official_crop(image, points)
        except ValueError as e:
            raise DataError(f"{images[i]}: {e}") from e

    def raw(i: int) -> tuple[np.ndarray, np.ndarray]:
        return read_image(images[i]), read_pts(pts[i])

    return FaceSet(str(root), [str(p.relative_to(root)) for p in images], load, raw=raw)
