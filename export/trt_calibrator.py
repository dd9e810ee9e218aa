"""INT8 entropy calibration for TensorRT's implicit-quantization path (TensorRT 8.5-10.x; the
calibrator classes are deprecated since 10.1 and gone in 11): the batches a calibration set
feeds, and a calibration cache reused only for the same faces, network and TensorRT version.

Importable without TensorRT; only `entropy_calibrator()` needs it. A TensorRT calibration cache
holds per-tensor scales keyed by tensor names; it is not portable across TensorRT versions, and
scales from other faces would silently change the engine. The cache file stays exactly what
TensorRT wrote (so `trtexec --calib=FILE` and Polygraphy read it), and its key (calibration-set
sha256, source ONNX sha256, TensorRT version) sits beside it in `<cache>.json`; the cache is
handed to TensorRT only when that key matches.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from fsanet.errors import DataError, ExportError

log = logging.getLogger(__name__)
MAGIC = "fsanet-tensorrt-calibration-cache"


@dataclass(frozen=True)
class CacheKey:
    calib_sha256: str
    onnx_sha256: str
    tensorrt: str

    def sidecar(self) -> str:
        return json.dumps({"format": MAGIC, **asdict(self)}, indent=2, sort_keys=True) + "\n"


def cache_path(directory: str | Path, key: CacheKey) -> Path:
    """One file per (calibration set, network, TensorRT version)."""
    name = f"calib-{key.calib_sha256[:16]}-onnx-{key.onnx_sha256[:12]}-trt-{key.tensorrt}.cache"
    return Path(directory) / name


def key_path(cache: str | Path) -> Path:
    return Path(f"{cache}.json")


def read_cache(path: str | Path, key: CacheKey) -> bytes | None:
    """TensorRT's cache bytes from `path` if its sidecar key matches `key`, else None (with the
    reason logged): a cache of other faces, another network or another TensorRT is never reused,
    and neither is a cache without its key (trtexec's own, say)."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        stored = json.loads(key_path(path).read_text())
    except (OSError, ValueError):
        stored = None
    if not isinstance(stored, dict) or stored.get("format") != MAGIC:
        log.warning("%s: no fsanet key beside it (%s); calibrating again", path, key_path(path).name)
        return None
    mismatched = [k for k, v in asdict(key).items() if stored.get(k) != v]
    if mismatched:
        log.warning("%s: written for another %s; calibrating again", path, ", ".join(mismatched))
        return None
    return path.read_bytes() or None


def write_cache(path: str | Path, key: CacheKey, payload: bytes) -> Path:
    """The cache bytes as TensorRT gave them, then their key (a reader trusts a cache only with a key)."""
    from fsanet.files import atomic_write, write_text

    path = Path(path)
    key_path(path).unlink(missing_ok=True)  # no moment where an old key vouches for new bytes
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(bytes(payload)))
    write_text(key_path(path), key.sidecar())
    return path


def batch_count(faces: int, batch_size: int) -> int:
    return -(-faces // batch_size)


def calibration_batches(calib, batch_size: int, input_format=None):
    """Float32 batches of exactly `batch_size` faces in the model's input format (default NCHW BGR
    0..255), in the set's order. The calibration profile fixes the batch, so the last, partial
    batch is completed with the set's first faces: every face is seen, and fewer than
    `batch_size` are seen twice."""
    from fsanet.runtimes.base import InputFormat

    if batch_size < 1:
        raise DataError(f"calibration batch size must be at least 1, got {batch_size}")
    crops = calib.crops
    if len(crops) == 0:
        raise DataError("the calibration set holds no faces")
    fmt = input_format or InputFormat()
    for start in range(0, len(crops), batch_size):
        idx = np.arange(start, start + batch_size) % len(crops)
        yield fmt.prepare(crops[idx])


def calibration_shape(input_shape: tuple, batch: int) -> tuple:
    """The shape the calibrator feeds: the ONNX's own batch when it is static, else `batch`."""
    first = input_shape[0]
    static = isinstance(first, int) and first > 0
    return (first if static else batch, *input_shape[1:])


class CalibrationFeed:
    """What a TensorRT calibrator does, without TensorRT: hand over the next batch as a device
    pointer (through `upload`, which copies a host array to the GPU and returns its address) and
    read/write the keyed cache. `used_cache` and `batches_fed` say what happened, for the manifest;
    `error` keeps the first exception raised inside a callback (TensorRT's bindings print and
    swallow those), and the builder raises it once TensorRT returns."""

    def __init__(self, calib, batch_size: int, cache_file: str | Path, key: CacheKey, upload, input_format=None):
        self.batch_size, self.cache_file, self.key = batch_size, Path(cache_file), key
        self._batches = calibration_batches(calib, batch_size, input_format)
        self._upload = upload
        self.used_cache = False
        self.batches_fed = 0
        self.error: Exception | None = None

    def next_batch(self, names: list[str]) -> list[int] | None:
        if len(names) != 1:
            raise DataError(f"the calibrator feeds one input; the network has {list(names)}")
        batch = next(self._batches, None)
        if batch is None:
            return None
        self.batches_fed += 1
        return [int(self._upload(batch))]

    def read_cache(self) -> bytes | None:
        payload = read_cache(self.cache_file, self.key)
        self.used_cache = payload is not None
        return payload

    def write_cache(self, payload) -> None:
        write_cache(self.cache_file, self.key, bytes(payload))

    def guarded(self, what: str, call, *args, default=None):
        """Run a callback TensorRT invokes from C++ (noexcept): an exception is kept, not lost."""
        try:
            return call(*args)
        except Exception as e:  # noqa: BLE001 - re-raised by raise_error() after the build
            if self.error is None:
                self.error = e
            log.error("calibrator %s failed: %s", what, e)
            return default

    def raise_error(self) -> None:
        if self.error is None:
            return
        if isinstance(self.error, DataError | ExportError):
            raise self.error
        raise ExportError("tensorrt", f"INT8 calibration failed: {self.error}") from self.error


def entropy_calibrator(trt, feed: CalibrationFeed):
    """A `trt.IInt8EntropyCalibrator2` that delegates to `feed` (TensorRT 8.5-10.x). Every callback
    goes through `feed.guarded`: the bindings catch and print exceptions from get_batch and the
    cache callbacks and carry on (python/src/infer/pyInt8.cpp, pyCalibratorTrampoline), so a
    cache that could not be written would otherwise pass silently."""
    base = getattr(trt, "IInt8EntropyCalibrator2", None)
    if base is None:
        raise DataError(
            f"TensorRT {trt.__version__} has no calibrators (removed in TensorRT 11): build INT8 from the "
            "Q/DQ ONNX of `fsanet export --to onnx-int8` instead of --calib"
        )

    class EntropyCalibrator(base):
        def __init__(self):
            base.__init__(self)  # pybind trampolines must be initialised explicitly

        def get_batch_size(self):
            # ignored with explicit batch and deprecated in TensorRT 10.0 (NvInfer.h getBatchSize);
            # Polygraphy's calibrator returns 1 as well (backend/trt/calibrator.py)
            return 1

        def get_batch(self, names):
            return feed.guarded("get_batch", feed.next_batch, names)

        def read_calibration_cache(self):
            return feed.guarded("read_calibration_cache", feed.read_cache)

        def write_calibration_cache(self, cache):
            feed.guarded("write_calibration_cache", feed.write_cache, cache)

    return EntropyCalibrator()
