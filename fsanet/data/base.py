"""What every reader yields: 64x64 BGR crops with (yaw, pitch, roll) labels, loaded lazily."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fsanet.errors import DataError
from fsanet.files import regular_file
from fsanet.limits import MAX_PIXELS, check_count
from fsanet.preprocess import INPUT_SIZE

PROTOCOL_RANGE = 99.0  # the paper's protocols keep faces with every |angle| <= 99 degrees
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
IMAGE_KIND = "JPEG, PNG, BMP or WebP image"  # the formats read_image reads, found by content


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


# The pixel bound of read_image: fsanet.limits.MAX_PIXELS unless a caller raised it for a block
# of work (`with pixel_limit(n):`, the CLI's --max-pixels), so every reader of every command obeys
# one setting without passing it through each layer.
_PIXEL_LIMIT: ContextVar[int] = ContextVar("fsanet_max_pixels", default=MAX_PIXELS)


@contextmanager
def pixel_limit(max_pixels: int | None):
    """Within the block, read_image refuses images declaring more than `max_pixels` pixels
    (None: keep the current bound)."""
    if max_pixels is None:
        yield
        return
    token = _PIXEL_LIMIT.set(check_count(max_pixels, 1 << 40, "max_pixels"))
    try:
        yield
    finally:
        _PIXEL_LIMIT.reset(token)


def read_image(path: Path, max_pixels: int | None = None) -> np.ndarray:
    """A JPEG, PNG, BMP or WebP file as a BGR uint8 image. Refused before decoding (DataError naming
    the file): anything but a regular file (a FIFO would block forever), another format, a
    declared width x height above `max_pixels` (default: the current `pixel_limit`, 100 MP);
    after decoding: a file whose end is missing (OpenCV fills that part with grey)."""
    path = regular_file(path, IMAGE_KIND)
    limit = _PIXEL_LIMIT.get() if max_pixels is None else check_count(max_pixels, 1 << 40, "max_pixels")
    data = path.read_bytes()
    kind, width, height = image_size(data, path)
    if width * height > limit:
        raise DataError(
            f"{path}: the image declares {width} x {height} = {width * height:,} pixels, more than the limit of "
            f"{limit:,}; shrink it, or raise the limit (--max-pixels N, or max_pixels= in Python)"
        )
    image = _decode_jpeg(data, path) if kind == "JPEG" else _decode(data, path)
    if image is None:
        raise DataError(f"{path}: cannot read the image (a damaged {kind} file); copy it again")
    if kind == "PNG" and b"IEND" not in data[-32:]:
        raise DataError(f"{path}: the image file is truncated (its end is missing); copy it again")
    return image


def _decode(data: bytes, path: Path, flags: int | None = None) -> np.ndarray | None:
    import cv2

    try:
        return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR if flags is None else flags)
    except cv2.error as e:  # OpenCV's own size limits (OPENCV_IO_MAX_IMAGE_PIXELS), a broken file
        raise DataError(f"{path}: OpenCV cannot decode it ({e.err.strip() if e.err else e})") from None


def image_size(data: bytes, path: Path) -> tuple[str, int, int]:
    """(format, width, height) declared in the header of JPEG, PNG, BMP or WebP file content."""
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        if len(data) < 24 or data[12:16] != b"IHDR":
            raise DataError(f"{path}: cannot read the image: a damaged PNG file (no IHDR header chunk)")
        return "PNG", int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data[:2] == b"BM" and len(data) >= 26:
        if int.from_bytes(data[14:18], "little") == 12:  # OS/2 BITMAPCOREHEADER: 16-bit sizes
            return "BMP", int.from_bytes(data[18:20], "little"), int.from_bytes(data[20:22], "little")
        w, h = (int.from_bytes(data[i : i + 4], "little", signed=True) for i in (18, 22))
        return "BMP", abs(w), abs(h)  # a negative height means rows stored top-down
    if data[:3] == b"\xff\xd8\xff":
        for marker, at in jpeg_markers(data):
            if marker in SOF_MARKERS and at + 9 <= len(data):
                return (
                    "JPEG",
                    int.from_bytes(data[at + 7 : at + 9], "big"),
                    int.from_bytes(data[at + 5 : at + 7], "big"),
                )
        raise DataError(f"{path}: cannot read the image: a damaged JPEG file (no frame header)")
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP" and len(data) >= 30:
        return "WebP", *_webp_size(data)
    raise DataError(f"{path}: cannot read the image: not a {IMAGE_KIND} file (the formats fsanet reads)")


def _webp_size(data: bytes) -> tuple[int, int]:
    """Width and height from a WebP's first chunk: lossy (VP8), lossless (VP8L) or extended (VP8X)."""
    chunk = data[12:16]
    if chunk == b"VP8X":  # 24-bit canvas width - 1 and height - 1
        return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
    if chunk == b"VP8L":  # after the 0x2F signature, 14-bit width - 1 and height - 1
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    # VP8: after the 3-byte frame tag and the start code, 14-bit width and height
    return int.from_bytes(data[26:28], "little") & 0x3FFF, int.from_bytes(data[28:30], "little") & 0x3FFF


# Start of frame markers (baseline, extended, progressive, lossless; Huffman or arithmetic)
SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def jpeg_markers(data: bytes):
    """(marker, offset of its 0xFF) of each marker of the first image in a JPEG, through its EOI;
    segments are skipped by their length (an EXIF thumbnail's markers are not seen), scans up to
    the next marker that is not a stuffed 0xFF00 or a restart."""
    i, n = 2, len(data)
    while i + 1 < n:
        if data[i] != 0xFF:  # stray bytes between segments: libjpeg skips them too
            i = data.find(b"\xff", i)
            if i < 0:
                return
            continue
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        yield marker, i
        if marker == 0xD9:
            return
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # no length field
            i += 2
            continue
        i += 2 + int.from_bytes(data[i + 2 : i + 4], "big")
        if marker == 0xDA:
            i = _scan_end(data, i)


def _scan_end(data: bytes, i: int) -> int:
    """Offset of the marker that ends the entropy-coded data starting at i (len(data): none)."""
    while (i := data.find(b"\xff", i)) >= 0 and i + 1 < len(data):
        after = data[i + 1]
        if after == 0 or 0xD0 <= after <= 0xD7:  # a stuffed 0xFF data byte, a restart marker
            i += 2
        elif after == 0xFF:  # fill bytes before a marker
            i += 1
        else:
            return i
    return len(data)


# Bytes with no 0xFF, so that they never form a marker: entropy-coded data to a decoder that is
# still reading a scan, extraneous bytes to one that has decoded every block.
_PROBE = bytes((i * 97 + 31) % 255 for i in range(256))


def _decode_jpeg(data: bytes, path: Path) -> np.ndarray | None:
    """Decode a JPEG, refusing one whose last scan ends before its last block. libjpeg fills
    the missing blocks with grey and only warns, even when an end-of-image marker was appended
    to the cut file. So the file is decoded a second time with bytes inserted before its EOI: a
    complete scan ignores them (the pixels are identical); a cut one decodes them as data."""
    eoi = next((at for marker, at in jpeg_markers(data) if marker == 0xD9), None)
    if eoi is None:
        raise DataError(f"{path}: the image file is truncated (its end is missing); copy it again")
    with _quiet_stderr():  # both decodes' warnings (extraneous bytes, premature end) are expected
        image = _decode(data, path)
        probe = None if image is None else _decode(data[:eoi] + _PROBE + data[eoi:], path)
    if image is not None and not np.array_equal(image, probe):
        raise DataError(f"{path}: the image file is truncated (its data ends before its last block); copy it again")
    return image


_STDERR_LOCK = threading.Lock()


@contextmanager
def _quiet_stderr():
    """File descriptor 2 sent to /dev/null for the block: libjpeg prints its warnings there, not
    through Python. A lock keeps two threads from swapping it at once."""
    with _STDERR_LOCK:
        try:
            saved = os.dup(2)
        except OSError:  # no stderr at all: nothing to quiet
            yield
            return
        try:
            with open(os.devnull, "wb") as null:
                os.dup2(null.fileno(), 2)
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


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
    """The files matching `pattern` under `root`; one that is not a regular file (a FIFO named
    x.mat would block the read forever) is refused, naming it."""
    files = sorted(root.rglob(pattern))
    if not files:
        raise DataError(f"{root}: no {what} found (looked for {pattern} in the folder and below)")
    return [regular_file(f, f"{pattern} file") for f in files]
