"""Face detectors for every command (demo, predict, calib build), loaded once and called per
image: image -> boxes, largest first. One module, so one photo gives the same faces everywhere.

`open_detector(spec)` takes:
  haar         OpenCV's frontal-face Haar cascade (ships with opencv-python-headless 4.x)
  haar:PATH    another Haar cascade XML
  lbp:PATH     an LBP cascade, run as the authors' demo ran it (scale 1.1, no histogram
               equalisation); their file is lbpcascade_frontalface_improved.xml
  yunet:PATH   OpenCV's YuNet CNN (cv2.FaceDetectorYN) with its ONNX model file
  PATH.xml     the same as haar:PATH.xml
Boxes are integer (x0, y0, x1, y1), clipped to the image. Frames larger than MAX_SIDE pixels
are searched at that size (the search cost grows with the pixel count; a face too small to be
found there, under about 24 * side / MAX_SIDE pixels, is too small for a useful 64x64 crop too).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fsanet.errors import BackendUnavailable, DataError

SPECS = "haar, haar:PATH, lbp:PATH or yunet:PATH"
MAX_SIDE = 640
DEFAULT_CASCADE = "haarcascade_frontalface_default.xml"


def cascade_path() -> Path:
    """OpenCV's frontal-face Haar cascade, shipped inside opencv-python-headless 4.x."""
    import cv2

    data = getattr(cv2, "data", None)
    if data is None or not (Path(data.haarcascades) / DEFAULT_CASCADE).is_file():
        raise BackendUnavailable(
            "OpenCV's Haar cascades (this OpenCV build ships none; opencv-python-headless<5 does)",
            "all",
        )
    return Path(data.haarcascades) / DEFAULT_CASCADE


def _downscaled(image: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """The image shrunk so that its larger side is at most max_side, and the factor applied."""
    import cv2

    factor = min(1.0, max_side / max(image.shape[:2]))
    if factor == 1.0:
        return image, 1.0
    size = (round(image.shape[1] * factor), round(image.shape[0] * factor))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA), factor


def _clip(boxes, shape, factor: float = 1.0, min_side: int = 2) -> list[tuple[int, int, int, int]]:
    """Boxes found at `factor` times the image's size -> image pixels, clipped, largest first."""
    h, w = shape[:2]
    out = []
    for x0, y0, x1, y1 in (np.asarray(b, dtype=np.float64) / factor for b in boxes):
        b = (max(0, int(x0)), max(0, int(y0)), min(w - 1, int(x1)), min(h - 1, int(y1)))
        if b[2] - b[0] >= min_side and b[3] - b[1] >= min_side:
            out.append(b)
    return sorted(out, key=lambda b: -(b[2] - b[0]) * (b[3] - b[1]))


def _existing(path: str, what: str) -> Path:
    """`path` if it is a regular file (a FIFO or a device would block OpenCV's read forever)."""
    p = Path(path)
    if not p.is_file():
        kind = "a folder" if p.is_dir() else "not a regular file" if p.exists() else "no such file"
        raise DataError(f"{p}: {kind}; --detector needs a {what} file ({SPECS})")
    return p


def _opencv_says(e: BaseException) -> str:
    """The reason in a cv2.error (or in the cv2.error a SystemError wraps), on one line."""
    cause = e.__cause__ if isinstance(e, SystemError) and e.__cause__ is not None else e
    text = (getattr(cause, "err", None) or str(cause)).strip()
    return " ".join(text.split())[:160]


class CascadeDetector:
    """An OpenCV cascade (Haar or LBP) with fixed detectMultiScale settings."""

    def __init__(self, path: Path, equalize: bool, min_neighbors: int, min_size: int = 24):
        import cv2

        self.name = Path(path).name
        self.cascade = cv2.CascadeClassifier()
        try:  # OpenCV raises on a file that is not its XML (a SystemError around a cv2.error)
            loaded = self.cascade.load(str(path))
        except (cv2.error, SystemError) as e:
            loaded, why = False, f" (OpenCV: {_opencv_says(e)})"
        else:
            why = ""
        if not loaded or self.cascade.empty():
            raise DataError(
                f"{path}: not an OpenCV cascade XML file{why}; give a Haar or LBP cascade "
                f"(such as lbpcascade_frontalface_improved.xml) or --detector haar, OpenCV's own"
            )
        self.equalize, self.min_neighbors, self.min_size = equalize, min_neighbors, min_size

    def __call__(self, image: np.ndarray) -> list[tuple[int, int, int, int]]:
        import cv2

        small, factor = _downscaled(image, MAX_SIDE)
        grey = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
        if self.equalize:
            grey = cv2.equalizeHist(grey)
        size = (self.min_size, self.min_size)
        found = self.cascade.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=self.min_neighbors, minSize=size)
        return _clip([(x, y, x + w, y + h) for x, y, w, h in found], image.shape, factor)


class YuNetDetector:
    """OpenCV's YuNet face detector (cv2.FaceDetectorYN); its input size follows each frame."""

    def __init__(self, path: Path, score: float = 0.6, nms: float = 0.3):
        import cv2

        self.name = Path(path).name
        self.size = (320, 320)
        try:  # a blank frame once: an ONNX model that is not YuNet loads, then fails to run
            self.net = cv2.FaceDetectorYN.create(str(path), "", self.size, score, nms)
            _, found = self.net.detect(np.zeros((*self.size, 3), np.uint8))
        except (cv2.error, SystemError) as e:
            raise DataError(
                f"{path}: OpenCV cannot run it as a YuNet face detector ({_opencv_says(e)}); give "
                "face_detection_yunet_2023mar.onnx from the OpenCV model zoo, or --detector haar"
            ) from None
        if found is not None and (found.ndim != 2 or found.shape[1] < 4):
            raise DataError(f"{path}: not a YuNet face detector (it gives {found.shape} per frame, not N x 15)")

    def __call__(self, image: np.ndarray) -> list[tuple[int, int, int, int]]:
        small, factor = _downscaled(image, MAX_SIDE)
        size = (small.shape[1], small.shape[0])
        if size != self.size:
            self.net.setInputSize(size)
            self.size = size
        _, found = self.net.detect(small)
        rows = [] if found is None else found[:, :4]
        return _clip([(x, y, x + w, y + h) for x, y, w, h in rows], image.shape, factor)


def open_detector(spec: str | None = "haar"):
    """A callable image -> boxes from a --detector value (None: the default, haar)."""
    spec = spec or "haar"
    if spec.lower().endswith(".xml") and spec.partition(":")[0].lower() not in ("haar", "lbp"):
        spec = f"haar:{spec}"  # a bare cascade file, as `calib build --detector` always took
    kind, _, path = spec.partition(":")
    kind = kind.strip().lower()
    if kind == "haar":
        p = _existing(path, "Haar cascade") if path else cascade_path()
        return CascadeDetector(p, equalize=True, min_neighbors=5)
    if kind == "lbp" and path:
        return CascadeDetector(_existing(path, "LBP cascade"), equalize=False, min_neighbors=3)
    if kind == "yunet" and path:
        return YuNetDetector(_existing(path, "YuNet model"))
    raise DataError(
        f"--detector {spec!r}: use {SPECS} (for example "
        "lbp:../shared/data/official/lbpcascade_frontalface_improved.xml, the authors' detector)"
    )
