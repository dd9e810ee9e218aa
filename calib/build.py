"""Calibration sets: the faces that post-training quantization sees, built once, stored, hashed.

Sources: a labelled set (drawn round-robin over yaw bins, so that profile faces are not starved
by the many frontal ones), a folder of photos with `.pts` landmarks (official crop), or a
folder of plain photos (OpenCV's face detector, largest face, the official 0.6 margin).
Deterministic for a seed. Stored as `.npz` (`crops`: N x 64 x 64 x 3 BGR uint8, `poses` when
labelled, `manifest`: JSON) with the sha256 of the crops, which exported files record.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fsanet.errors import DataError
from fsanet.preprocess import INPUT_SIZE

FORMAT = "fsanet-calibration"
RECORD_KEYS = ("source", "count", "sampling", "seed", "sha256")
MIN_STD = 2.0  # a crop this flat (blank, a solid border) teaches a quantizer nothing


@dataclass
class CalibrationSet:
    crops: np.ndarray
    manifest: dict
    poses: np.ndarray | None = None
    dropped: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.crops)

    @property
    def sha256(self) -> str:
        return self.manifest["sha256"]

    def record(self, **extra) -> dict:
        """What a quantized file (or a QAT checkpoint) records of this set: where it came from,
        how it was drawn, and the sha256 of its crops; `extra` adds a target's own facts."""
        return {k: self.manifest.get(k) for k in RECORD_KEYS} | extra

    def batches(self, input_format=None, batch_size: int = 1):
        """Model-ready float32 batches in the layout and scale of `input_format` (an
        `fsanet.runtimes.InputFormat`; default NCHW BGR 0..255)."""
        from fsanet.runtimes.base import InputFormat

        fmt = input_format or InputFormat()
        for i in range(0, len(self.crops), batch_size):
            yield fmt.prepare(self.crops[i : i + batch_size])

    def save(self, path: str | Path) -> Path:
        from fsanet.files import atomic_write

        def write(tmp):
            with open(tmp, "wb") as f:
                arrays = {"crops": self.crops, "manifest": np.array(json.dumps(self.manifest))}
                if self.poses is not None:
                    arrays["poses"] = self.poses
                np.savez(f, **arrays)

        return atomic_write(path, write)


def crops_sha256(crops: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(crops, dtype=np.uint8).tobytes()).hexdigest()


def load(path: str | Path) -> CalibrationSet:
    """A calibration set written by `save`, checked before use: each array's header before any
    allocation (`files.read_npz`), 1 to MAX_FACES uint8 crops, the sha256 of its manifest."""
    from fsanet.files import read_npz
    from fsanet.limits import MAX_FACES

    path = Path(path)
    data = read_npz(path, what="calibration set (.npz from `fsanet calib build`)")
    for key in ("crops", "manifest"):
        if key not in data:
            raise DataError(f"{path}: field '{key}' is missing; build it with `fsanet calib build`")
    try:  # a manifest may not be JSON
        manifest = json.loads(str(data["manifest"]))
    except (ValueError, TypeError) as e:
        raise DataError(f"{path}: not a readable calibration set (manifest: {e}); rebuild it") from None
    crops, poses = data["crops"], data.get("poses")
    if (
        not isinstance(manifest, dict)
        or manifest.get("format") != FORMAT
        or crops.ndim != 4
        or crops.shape[1:] != (INPUT_SIZE, INPUT_SIZE, 3)
    ):
        raise DataError(f"{path}: not an fsanet calibration set (crops {crops.shape})")
    if crops.dtype != np.uint8:  # save() writes uint8; float crops may hold NaN or values past 255
        raise DataError(f"{path}: field 'crops' must be uint8 BGR pixels, got {crops.dtype}; rebuild it")
    if not 1 <= len(crops) <= MAX_FACES:
        raise DataError(
            f"{path}: holds {len(crops):,} faces; a calibration set needs 1 to {MAX_FACES:,} (rebuild it with "
            "`fsanet calib build -n N`)"
        )
    if crops_sha256(crops) != manifest.get("sha256"):
        raise DataError(f"{path}: the crops do not match the sha256 in its manifest; rebuild it")
    return CalibrationSet(crops, manifest, poses)


def is_calibration_file(path: str | Path) -> bool:
    """Whether `path` is an .npz written by `save` (it has a manifest), not a dataset's .npz."""
    try:
        with zipfile.ZipFile(path) as z:
            return "manifest.npy" in z.namelist()
    except (OSError, zipfile.BadZipFile):
        return False


def _stratified(poses: np.ndarray, count: int, bins: int, rng: np.random.Generator) -> np.ndarray:
    """Indices drawn round-robin over `bins` equal yaw bins over the protocols' range
    ([-99, 99] degrees), each bin shuffled."""
    from fsanet.data.base import PROTOCOL_RANGE

    edges = np.linspace(-PROTOCOL_RANGE, PROTOCOL_RANGE, bins + 1)
    which = np.clip(np.digitize(poses[:, 0], edges) - 1, 0, bins - 1)
    queues = [list(rng.permutation(np.flatnonzero(which == b))) for b in range(bins)]
    picked = []
    while len(picked) < count and any(queues):
        for q in queues:
            if q and len(picked) < count:
                picked.append(q.pop())
    return np.array(picked, dtype=int)


def _usable(crop: np.ndarray) -> str | None:
    return "blank or nearly uniform crop" if crop.std() < MIN_STD else None


def _from_faceset(faces, count: int, seed: int, bins: int, progress=None):
    rng = np.random.default_rng(seed)
    if faces.poses is not None:
        order = _stratified(faces.poses, len(faces), bins, rng)  # whole set, in stratified order
        how = f"stratified over {bins} yaw bins"
    else:
        order = rng.permutation(len(faces))
        how = "uniform random"
    crops, poses, dropped = [], [], Counter()
    for i in order:
        if len(crops) == count:
            break
        try:
            crop = faces.load(int(i))
        except DataError as e:
            dropped[str(e).split(": ", 1)[-1][:80]] += 1
            continue
        reason = _usable(crop)
        if reason:
            dropped[reason] += 1
            continue
        crops.append(crop)
        if faces.poses is not None:
            poses.append(faces.poses[i])
        if progress is not None:
            progress(1)
    return crops, (np.array(poses, np.float32) if poses else None), dropped, how


def _from_photos(root: Path, count: int, seed: int, detector: str | None, progress=None):
    from fsanet.data.base import read_image
    from fsanet.detectors import open_detector
    from fsanet.predict import image_files
    from fsanet.preprocess import crop_box, expand_box

    files = image_files([str(root)])
    find = open_detector(detector)
    rng = np.random.default_rng(seed)
    crops, dropped = [], Counter()
    for i in rng.permutation(len(files)):
        if len(crops) == count:
            break
        try:
            image = read_image(files[i])
        except DataError:
            dropped["unreadable image"] += 1
            continue
        boxes = find(image)
        if not boxes:
            dropped["no face detected"] += 1
            continue
        crop = crop_box(image, expand_box(boxes[0], image.shape))
        reason = _usable(crop)
        if reason:
            dropped[reason] += 1
            continue
        crops.append(crop)
        if progress is not None:
            progress(1)
    return crops, None, dropped, "OpenCV face detector, largest face, uniform random"


def build(
    source: str | Path, count: int, seed: int = 0, bins: int = 6, detector: str | None = None, progress=None
) -> CalibrationSet:
    """Draw `count` usable faces from `source`; fewer is an error that says why. `progress(1)`
    is called for each face taken (a stage's bar)."""
    from fsanet.data import open_faces
    from fsanet.limits import MAX_FACES, check_count

    if count < 1 or bins < 1:
        raise DataError(f"calibration size and yaw bins must be at least 1, got {count} and {bins}")
    check_count(count, MAX_FACES, "calibration size (-n)")
    src = Path(source)
    try:
        faces = open_faces(src)
    except DataError:
        if not os.path.isdir(src):  # False for a name too long to exist (Path.is_dir raises)
            raise
        faces = None  # a folder of plain photos: find the faces with a detector
    if faces is not None:
        crops, poses, dropped, how = _from_faceset(faces, count, seed, bins, progress)
        crop = "official (landmarks)" if faces.raw is not None or faces.poses is None else "source's own"
        available = len(faces)
    else:
        crops, poses, dropped, how = _from_photos(src, count, seed, detector, progress)
        crop, available = "detector box + 0.6 margin", None
    if len(crops) < count:
        why = ", ".join(f"{n} {r}" for r, n in dropped.items()) or f"none, the source holds only {len(crops)}"
        raise DataError(f"{src}: found {len(crops)} usable faces, {count} requested; dropped: {why}")
    crops = np.stack(crops).astype(np.uint8)
    manifest = {
        "format": FORMAT,
        "source": str(src),
        "count": len(crops),
        "available": available,
        "sampling": how,
        "crop": crop,
        "seed": seed,
        "dropped": dict(dropped),
        "sha256": crops_sha256(crops),
    }
    return CalibrationSet(crops, manifest, poses, dict(dropped))
