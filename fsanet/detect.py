"""Face boxes with the detectors OpenCV ships (no download): a Haar or LBP cascade."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fsanet.errors import BackendUnavailable, DataError

DEFAULT_CASCADE = "haarcascade_frontalface_default.xml"


def cascade_path(path: str | Path | None = None) -> Path:
    import cv2

    if path:
        return Path(path)
    data = getattr(cv2, "data", None)
    if data is None or not (Path(data.haarcascades) / DEFAULT_CASCADE).is_file():
        raise BackendUnavailable(
            "OpenCV's Haar cascades (this OpenCV build ships none; opencv-python-headless<5 does)",
            "all",
        )
    return Path(data.haarcascades) / DEFAULT_CASCADE


def detect_faces(image: np.ndarray, cascade: str | Path | None = None, min_size: int = 24) -> list[tuple]:
    """(x0, y0, x1, y1) boxes of the faces in a BGR image, largest first."""
    import cv2

    path = cascade_path(cascade)
    detector = cv2.CascadeClassifier(str(path))
    if detector.empty():
        raise DataError(f"{path}: not a readable OpenCV cascade file")
    grey = cv2.equalizeHist(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY))
    found = detector.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=5, minSize=(min_size, min_size))
    boxes = [(int(x), int(y), int(x + w), int(y + h)) for x, y, w, h in found]
    return sorted(boxes, key=lambda b: -(b[2] - b[0]) * (b[3] - b[1]))
