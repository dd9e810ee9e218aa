"""What every reader yields: 64x64 BGR crops with (yaw, pitch, roll) labels, loaded lazily."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fsanet.errors import DataError
from fsanet.preprocess import INPUT_SIZE

PROTOCOL_RANGE = 99.0  # the paper's protocols keep faces with every |angle| <= 99 degrees
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


@dataclass
class FaceSet:
    """A list of faces: `load(i)` gives the i-th 64x64 BGR uint8 crop; `poses` the labels.

    `poses` is None for unlabelled sets (landmark folders). `dropped` counts faces left out by
    the protocol filter, by reason, so that a smaller set is never silent. `raw(i)`, where the
    source has them, gives the full photo and its landmarks (for end-to-end timing).
    """

    source: str
    names: list[str]
    loader: Callable[[int], np.ndarray]
    poses: np.ndarray | None = None
    dropped: dict[str, int] = field(default_factory=dict)
    raw: Callable[[int], tuple[np.ndarray, np.ndarray]] | None = None  # (full image, landmarks)

    def __len__(self) -> int:
        return len(self.names)

    def load(self, i: int) -> np.ndarray:
        return self.loader(i)

    def images(self, progress: bool = False) -> np.ndarray:
        """All crops as one (N, 64, 64, 3) uint8 array."""
        idx = range(len(self))
        if progress:
            from tqdm import tqdm

            idx = tqdm(idx, desc=f"loading {Path(self.source).name}", unit="face", leave=False, disable=None)
        return (
            np.stack([self.load(i) for i in idx]) if len(self) else np.zeros((0, INPUT_SIZE, INPUT_SIZE, 3), np.uint8)
        )

    def describe(self) -> str:
        text = f"{len(self)} faces from {self.source}"
        if self.dropped:
            text += " (" + ", ".join(f"{n} dropped: {why}" for why, n in self.dropped.items()) + ")"
        return text


def read_image(path: Path) -> np.ndarray:
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise DataError(f"{path}: cannot read the image (missing, empty or not an image file)")
    if truncated(path):
        raise DataError(f"{path}: the image file is truncated (its end is missing); copy it again")
    return image


def truncated(path: Path) -> bool:
    """A JPEG without its end-of-image marker after the last scan, or a PNG without its IEND
    chunk. OpenCV decodes both, filling the missing part with grey and only printing a warning."""
    data = Path(path).read_bytes()
    if data[:2] == b"\xff\xd8":  # JPEG: 0xFFD9 cannot occur inside entropy-coded data (0xFF is stuffed)
        return data.rfind(b"\xff\xd9") < data.rfind(b"\xff\xda")
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return b"IEND" not in data[-32:]
    return False


def find_image(stem_path: Path) -> Path:
    for suffix in IMAGE_SUFFIXES:
        p = stem_path.with_suffix(suffix)
        if p.is_file():
            return p
    raise DataError(f"{stem_path}: no image next to it (looked for {', '.join(IMAGE_SUFFIXES)})")


def protocol_filter(poses: np.ndarray, limit: float = PROTOCOL_RANGE) -> tuple[np.ndarray, dict]:
    """Mask of faces with every |angle| <= limit, and the count dropped, as the paper does;
    labels that are not finite numbers are dropped and counted apart."""
    finite = np.all(np.isfinite(poses), axis=1)
    keep = finite & np.all(np.abs(np.where(finite[:, None], poses, 0)) <= limit, axis=1)
    dropped = {"non-finite label": int((~finite).sum()), f"|angle| > {limit:g} degrees": int((finite & ~keep).sum())}
    return keep, {why: n for why, n in dropped.items() if n}


def require_files(root: Path, pattern: str, what: str) -> list[Path]:
    files = sorted(root.rglob(pattern))
    if not files:
        raise DataError(f"{root}: no {what} found (looked for {pattern} in the folder and below)")
    return files
