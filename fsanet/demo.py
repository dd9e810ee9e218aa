"""`fsanet demo`: detect faces, estimate their pose with any artifact, draw the axes.

Sources: image files, folders of images, one video file, or a camera index ("0"). Outputs: an
image file, a folder (one file per input image, sub-folders kept), a video (.mp4 with mp4v,
.avi with MJPG), or one montage of all the input images.

Crop: as the authors' demo, each detector box grown by 0.6 of its size per side and clipped to
the frame (`fsanet.preprocess.expand_box`). A face at the border thus gets a clipped,
non-square crop, stretched to 64x64, exactly as in the authors' demo and their training data;
no padding is invented. Unlike their demo the crop is not min-max normalised: every other
stage feeds raw 0..255 crops (on the 1,207 real faces the normalisation moves the fusion's
angles by 0.09 degrees on average). The axes start at the centre of the detector box.
Frames per second count detection + pose estimation only (not decoding, drawing or writing).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fsanet.data.base import IMAGE_KIND, IMAGE_SUFFIXES, pixel_limit, read_image
from fsanet.errors import DataError
from fsanet.files import atomic_write, regular_file
from fsanet.preprocess import INPUT_SIZE

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm", ".mpg", ".mpeg", ".wmv")
FOURCC = {".mp4": "mp4v", ".avi": "MJPG"}  # the videos -o writes
IMAGE_OUTPUTS = (*IMAGE_SUFFIXES, ".tif", ".tiff")  # the images -o writes (every OpenCV 4 wheel)
WINDOW = "fsanet demo"


@dataclass
class Summary:
    frames: int = 0
    faces: int = 0
    no_face: int = 0
    detect_seconds: float = 0.0  # over all frames
    pose_seconds: float = 0.0  # cropping + inference, over all frames
    outputs: list[Path] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)  # one per image

    @property
    def fps(self) -> float:
        seconds = self.detect_seconds + self.pose_seconds
        return self.frames / seconds if seconds else float("nan")

    def describe(self) -> str:
        ms = [1000 * s / max(self.frames, 1) for s in (self.detect_seconds, self.pose_seconds)]
        text = f"{self.frames} frames, {self.faces} faces, {self.no_face} without a face; "
        text += f"per frame: detection {ms[0]:.1f} ms + pose {ms[1]:.1f} ms = {self.fps:.1f} FPS"
        return text + "".join(f"\nwrote {p}" for p in self.outputs)


class PoseDemo:
    """A detector and a PoseEstimator: frame in, boxes and angles out, timed; and the drawing."""

    def __init__(self, estimator, detector):
        self.estimator, self.detector = estimator, detector
        self.fps: float | None = None  # smoothed over frames, for the overlay
        # one untimed call first: backends allocate and tune on their first run
        estimator.predict(np.zeros((1, INPUT_SIZE, INPUT_SIZE, 3), np.uint8))

    def analyse(self, frame: np.ndarray) -> tuple[list, np.ndarray, tuple[float, float]]:
        """Boxes, angles and the seconds spent on (detection, pose estimation)."""
        start = time.perf_counter()
        boxes = self.detector(frame)
        found = time.perf_counter()
        angles = self.estimator.predict_image(frame, boxes=boxes)
        seconds = (found - start, time.perf_counter() - found)
        rate = 1.0 / max(sum(seconds), 1e-9)
        self.fps = rate if self.fps is None else 0.9 * self.fps + 0.1 * rate
        return boxes, angles, seconds

    def frame(self, frame: np.ndarray, summary: Summary, show_fps: bool, landmarks=None):
        """(annotated copy, boxes, angles) of one frame; an image without a face comes back unchanged."""
        from fsanet.draw import draw_face, draw_landmarks, draw_status

        boxes, angles, seconds = self.analyse(frame)
        summary.frames += 1
        summary.faces += len(boxes)
        summary.no_face += not boxes
        summary.detect_seconds += seconds[0]
        summary.pose_seconds += seconds[1]
        out = frame.copy()
        if landmarks is not None:
            draw_landmarks(out, landmarks)
        for box, a in zip(boxes, angles, strict=True):
            draw_face(out, box, a)
        if show_fps:
            draw_status(out, [f"{self.fps:.1f} FPS (detection + pose)"] + ([] if boxes else ["no face"]))
        return out, boxes, angles


# -- showing and writing ----------------------------------------------------------------------
def open_window() -> None:
    import cv2

    try:
        cv2.namedWindow(WINDOW, cv2.WINDOW_NORMAL)
    except cv2.error:
        raise DataError(
            "--show needs an OpenCV build with a GUI (opencv-python, not opencv-python-headless); "
            "write the result with -o instead"
        ) from None


def shown(image: np.ndarray, wait_ms: int) -> bool:
    """Show a frame; False once the user pressed q or Esc."""
    import cv2

    cv2.imshow(WINDOW, image)
    return cv2.waitKey(wait_ms) & 0xFF not in (ord("q"), 27)


class _Quiet:
    """What `progress` gives without tqdm (a runtime-only install): counts nothing, shows nothing."""

    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def progress(total: int | None, desc: str, unit: str):
    """A tqdm bar on a terminal; nothing when not on one or when tqdm is not installed."""
    try:
        from tqdm import tqdm
    except ImportError:
        return _Quiet()
    return tqdm(total=total, desc=desc, unit=unit, leave=False, disable=None)


def write_image(path: Path, image: np.ndarray) -> Path:
    import cv2

    try:
        ok, data = cv2.imencode(path.suffix or ".png", image)
    except cv2.error:
        ok = False
    if not ok:
        raise DataError(f"{path}: OpenCV cannot write this image format; use .jpg or .png")
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(data.tobytes()))


def is_folder(output: str) -> bool:
    return output.endswith(("/", os.sep)) or Path(output).is_dir() or not Path(output).suffix


def check_output(output: str | None, stream: bool) -> None:
    """-o names a folder, or a file of a kind the demo writes for this source: refused before
    any model, detector or frame is loaded, naming the option and the suffixes allowed."""
    if output is None or is_folder(output):
        return
    suffix = Path(output).suffix.lower()
    allowed = tuple(FOURCC) if stream else IMAGE_OUTPUTS
    if suffix not in allowed:
        what = "a video or camera is written as a video" if stream else "images are written as images"
        raise DataError(f"-o {output}: {what}; use one of {', '.join(allowed)}, or a folder (-o DIR/)")


# -- images -----------------------------------------------------------------------------------
def image_jobs(sources: list[str], output: str | None) -> list[tuple[Path, Path | None]]:
    """(input image, output file) pairs; a folder's images keep their sub-folders under -o DIR."""
    from fsanet.predict import folder_images

    pairs = []
    for s in map(Path, sources):
        if s.is_dir():
            found = folder_images(s)  # a FIFO named x.jpg is refused, naming it: reading it blocks
            if not found:
                raise DataError(f"{s}: no images in this folder ({', '.join(IMAGE_SUFFIXES)})")
            pairs += [(f, f.relative_to(s)) for f in found]
        elif s.exists() or s.is_symlink():
            pairs.append((regular_file(s, IMAGE_KIND), Path(s.name)))
        else:
            raise DataError(f"{s}: no such image, folder or video (a camera is given by its index, e.g. 0)")
    if output is None:
        return [(f, None) for f, _ in pairs]
    if is_folder(output):
        return [(f, Path(output) / rel) for f, rel in pairs]
    if len(pairs) > 1:
        raise DataError(f"-o {output}: {len(pairs)} images need an output folder (-o DIR/) or --montage COLUMNS")
    return [(pairs[0][0], Path(output))]


def run_images(demo: PoseDemo, sources, output, show, landmarks: bool, columns: int | None) -> Summary:
    summary = Summary()
    jobs = image_jobs(sources, None if columns else output)
    drawn = []
    bar = progress(len(jobs), "demo", "image")
    try:
        for src, dst in jobs:
            bar.update()
            image = read_image(src)
            out, boxes, angles = demo.frame(image, summary, show_fps=False, landmarks=_landmarks(src, landmarks))
            summary.lines.append(f"{src}: " + ("; ".join(map(_angles_text, angles)) if boxes else "no face"))
            if dst is not None:
                summary.outputs.append(write_image(dst, out))
            if columns:
                drawn.append(out)
            if show and not shown(out, 0):
                break
    finally:
        bar.close()
    if columns:
        from fsanet.draw import montage

        summary.outputs.append(write_image(Path(output), montage(drawn, columns)))
    return summary


def _landmarks(image_path: Path, wanted: bool):
    pts = image_path.with_suffix(".pts")
    if not wanted or not pts.is_file():
        return None
    from fsanet.data.landmarks import read_pts

    return read_pts(pts)


def _angles_text(a) -> str:
    return f"yaw {a[0]:+7.2f}  pitch {a[1]:+7.2f}  roll {a[2]:+7.2f}"


# -- video and camera -------------------------------------------------------------------------
def open_capture(source: str):
    """(capture, name, frame count or None) for a camera index or a video file."""
    import cv2

    if source.isdigit():
        cap = cv2.VideoCapture(int(source))
        if not cap.isOpened():
            raise DataError(f"camera {source}: cannot open it (no camera at this index, or no permission)")
        return cap, f"camera {source}", None
    if "://" not in source:  # a stream URL is OpenCV's; a local FIFO or device would block forever
        regular_file(source, "video file")
    cap = cv2.VideoCapture(source)
    if not cap.isOpened():
        raise DataError(f"{source}: cannot read the video (missing, empty or in a format OpenCV cannot decode)")
    count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    return cap, source, count if count > 0 else None


def video_output(output: str | None, name: str) -> Path | None:
    if output is None:
        return None
    path = Path(output) / f"{Path(name).stem.replace(' ', '')}-pose.mp4" if is_folder(output) else Path(output)
    if path.suffix.lower() not in FOURCC:
        raise DataError(f"-o {output}: a video is written as {' or '.join(FOURCC)}")
    return path


def run_stream(demo: PoseDemo, source: str, output: str | None, show: bool, max_frames: int | None) -> Summary:
    cap, name, count = open_capture(source)
    summary = Summary()
    out = None

    def record(tmp: str | None) -> None:
        # VideoWriter picks its container from the suffix, which atomic_write's temporary lacks
        video = None if tmp is None else f"{tmp}{out.suffix}"
        try:
            _stream(demo, cap, name, count, video, show, max_frames, summary)
            if summary.frames == 0:
                raise DataError(f"{name}: no frame could be read (an empty or unreadable video)")
            if video is not None:
                os.replace(video, tmp)
        finally:
            if video is not None and os.path.exists(video):
                os.unlink(video)

    try:
        out = video_output(output, name)
        if out is None:
            record(None)
        else:
            summary.outputs.append(atomic_write(out, record))
    finally:
        cap.release()
    return summary


def _stream(demo, cap, name, count, video, show, max_frames, summary) -> None:
    """Read, annotate, show and write frames until the end, `max_frames`, q/Esc or Ctrl-C."""
    import cv2

    total = min(count, max_frames) if count and max_frames else count or max_frames
    rate = cap.get(cv2.CAP_PROP_FPS)
    rate = rate if 1 <= rate <= 240 else 30.0
    bar = progress(total, Path(name).name, "frame")
    writer = None
    try:
        while max_frames is None or summary.frames < max_frames:
            ok, frame = cap.read()
            if not ok:
                break
            drawn, _, _ = demo.frame(frame, summary, show_fps=True)
            if video is not None:
                writer = writer or _writer(video, rate, frame.shape)
                writer.write(drawn)
            bar.update()
            if show and not shown(drawn, 1):
                break
    except KeyboardInterrupt:  # a camera runs until stopped; keep what was recorded
        pass
    finally:
        bar.close()
        if writer is not None:
            writer.release()


def _writer(path: str, rate: float, shape):
    import cv2

    fourcc = cv2.VideoWriter_fourcc(*FOURCC[Path(path).suffix.lower()])
    writer = cv2.VideoWriter(path, fourcc, rate, (shape[1], shape[0]))
    if not writer.isOpened():
        raise DataError(f"{path}: OpenCV cannot write this video here; use .mp4 (mp4v) or .avi (MJPG)")
    return writer


# -- the command ------------------------------------------------------------------------------
def is_stream(sources: list[str]) -> bool:
    video = [s for s in sources if s.isdigit() or Path(s).suffix.lower() in VIDEO_SUFFIXES]
    if video and len(sources) > 1:
        raise DataError(f"{video[0]}: a video or camera is shown alone; give it as the only source")
    return bool(video)


def run_demo(
    sources: list[str],
    model: str | None,
    output: str | None = None,
    detector: str = "haar",
    show: bool = False,
    max_frames: int | None = None,
    columns: int | None = None,
    landmarks: bool = False,
    threads: int | None = None,
    max_pixels: int | None = None,
) -> Summary:
    """`max_pixels`: images declaring more pixels are refused (default fsanet.limits.MAX_PIXELS)."""
    with pixel_limit(max_pixels):
        return _run_demo(sources, model, output, detector, show, max_frames, columns, landmarks, threads)


def _run_demo(sources, model, output, detector, show, max_frames, columns, landmarks, threads) -> Summary:
    from fsanet import runtimes
    from fsanet.detectors import open_detector
    from fsanet.runtimes.estimator import PoseEstimator

    if not model:  # the authors' 300W-LP fusion shipped in the package
        from fsanet.packaged import default_model

        model = str(default_model())
    if output is None and not show:
        raise DataError("nothing to do: write the result with -o FILE|DIR/ or show it with --show")
    if (max_frames is not None and max_frames < 1) or (columns is not None and columns < 1):
        raise DataError("--max-frames and --montage take a positive number")
    stream = is_stream(sources)
    if columns and (stream or not output or is_folder(output)):
        raise DataError("--montage makes one picture of images: give images and -o FILE.jpg|.png")
    check_output(output, stream)
    find = open_detector(detector)
    if show:
        open_window()
    with PoseEstimator(runtimes.open(model, threads=threads)) as estimator:
        demo = PoseDemo(estimator, find)
        if stream:
            return run_stream(demo, sources[0], output, show, max_frames)
        return run_images(demo, sources, output, show, landmarks, columns)
