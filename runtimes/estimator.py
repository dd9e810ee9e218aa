"""`PoseEstimator`: preprocessing, a runtime and the angle convention put together."""

from __future__ import annotations

import numpy as np
from fsanet.runtimes.base import Runtime

from fsanet.errors import DataError, ModelError
from fsanet.preprocess import MARGIN, check_crops, crop_box, expand_box, official_crop


def non_finite_faces(angles) -> int:
    """How many faces (rows) have an angle that is NaN or infinite."""
    a = np.asarray(angles, dtype=np.float64)
    if not len(a):  # reshape(0, -1) is ambiguous to numpy
        return 0
    return int((~np.isfinite(a.reshape(len(a), -1))).any(axis=1).sum())


def require_finite(angles: np.ndarray, model: str) -> np.ndarray:
    """`angles`, or a ModelError when the model produced NaN or infinite angles for any face
    (for commands that report angles; a benchmark records the count and its budget fails)."""
    bad = non_finite_faces(angles)
    if bad:
        raise ModelError(f"{model}: the model produced non-finite angles on {bad} of {len(angles)} faces")
    return angles


class PoseEstimator:
    """Angles of faces with one runtime. Non-finite angles (a broken model) raise ModelError;
    `check_finite=False` returns them as they are (a benchmark counts them for its budget)."""

    def __init__(self, runtime: Runtime, batch: int = 64, check_finite: bool = True):
        if isinstance(batch, bool) or not isinstance(batch, int | np.integer) or batch < 1:
            raise DataError(f"PoseEstimator: batch must be a positive integer, got {batch!r}")
        if not isinstance(runtime, Runtime):
            raise DataError(
                f"PoseEstimator: needs a runtime from fsanet.runtimes.open(path), got {type(runtime).__name__}"
            )
        self.runtime, self.batch, self.check_finite = runtime, int(batch), check_finite

    def predict(self, crops: np.ndarray) -> np.ndarray:
        """(N, 64, 64, 3) BGR official crops, 0..255 -> (N, 3) yaw, pitch, roll in degrees; no
        crops, (0, 64, 64, 3), give no angles, (0, 3). Anything else is a DataError saying why."""
        crops = check_crops(crops, self.runtime.path.name)
        out = [self.runtime.predict(crops[i : i + self.batch]) for i in range(0, len(crops), self.batch)]
        angles = np.concatenate(out) if out else np.zeros((0, 3), np.float32)
        return require_finite(angles, self.runtime.path.name) if self.check_finite else angles

    def predict_image(self, image: np.ndarray, boxes=(), landmarks=(), margin: float = MARGIN) -> np.ndarray:
        """Angles of the faces in a BGR image, given detector boxes (x0, y0, x1, y1) grown by
        `margin` of their size per side, and/or 2-D landmarks (the official crop)."""
        crops = [crop_box(image, expand_box(b, image.shape, margin)) for b in boxes]
        crops += [official_crop(image, pts, margin) for pts in landmarks]
        return self.predict(np.stack(crops)) if crops else np.zeros((0, 3), np.float32)

    def close(self) -> None:
        self.runtime.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
