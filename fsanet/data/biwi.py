"""BIWI Kinect Head Pose: `hpdb/NN/frame_XXXXX_rgb.png` + `frame_XXXXX_pose.txt` + `rgb.cal`.

Angles come from the annotated rotation as the authors' BIWI script computes them. The paper
cropped BIWI with MTCNN, which needs downloaded weights; here the box is the annotated head
centre projected with the folder's `rgb.cal`, a square of `HEAD_MM` millimetres at the head's
depth, grown by the official 0.4 margin of the BIWI script.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fsanet.data.base import FaceSet, protocol_filter, read_image, require_files
from fsanet.errors import DataError
from fsanet.preprocess import crop_box, expand_box

HEAD_MM = 160.0
BIWI_MARGIN = 0.4


def _numbers(path: Path) -> list[list[float]]:
    try:
        rows = [line.split() for line in path.read_text().splitlines()]
        return [[float(v) for v in r] for r in rows if r]
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: cannot parse the numbers in it ({e})") from e


def read_pose(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(yaw, pitch, roll) in degrees and the head centre (mm, depth camera) of a `_pose.txt`."""
    rows = _numbers(path)
    if len(rows) < 4 or any(len(r) != 3 for r in rows[:4]):
        raise DataError(f"{path}: expected a 3x3 rotation and a translation (4 rows of 3 numbers)")
    r = np.array(rows[:3]).T
    roll = -np.degrees(np.arctan2(r[1, 0], r[0, 0]))
    yaw = -np.degrees(np.arctan2(-r[2, 0], np.hypot(r[2, 1], r[2, 2])))
    pitch = np.degrees(np.arctan2(r[2, 1], r[2, 2]))
    return np.array([yaw, pitch, roll]), np.array(rows[3])


def read_calibration(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Intrinsics K (3x3), rotation R and translation t of a BIWI `rgb.cal`."""
    if not path.is_file():
        raise DataError(f"{path}: BIWI calibration file missing; each hpdb/NN folder needs rgb.cal")
    rows = _numbers(path)
    if len(rows) < 8:
        raise DataError(f"{path}: expected K (3 rows), distortion, R (3 rows) and t")
    return np.array(rows[0:3]), np.array(rows[4:7]), np.array(rows[7])


def head_box(centre_mm: np.ndarray, cal) -> tuple[float, float, float, float]:
    k, rot, t = cal
    p = rot @ centre_mm + t
    u, v = k[0, 0] * p[0] / p[2] + k[0, 2], k[1, 1] * p[1] / p[2] + k[1, 2]
    half = 0.5 * HEAD_MM * k[0, 0] / p[2]
    return u - half, v - half, u + half, v + half


def biwi_folder(root: str | Path, protocol_filter_on: bool = True) -> FaceSet:
    root = Path(root)
    frames = require_files(root, "frame_*_rgb.png", "BIWI frames (frame_XXXXX_rgb.png)")
    labels, cals = [], {}
    for f in frames:
        txt = f.with_name(f.name.replace("_rgb.png", "_pose.txt"))
        if not txt.is_file():
            raise DataError(f"{f}: its pose file {txt.name} is missing")
        if f.parent not in cals:
            cals[f.parent] = read_calibration(f.parent / "rgb.cal")
        labels.append(read_pose(txt))
    poses = np.array([a for a, _ in labels], dtype=np.float32)
    keep, dropped = protocol_filter(poses) if protocol_filter_on else (np.ones(len(frames), bool), {})
    idx = np.flatnonzero(keep)

    def load(i: int) -> np.ndarray:
        j = idx[i]
        image = read_image(frames[j])
        box = expand_box(head_box(labels[j][1], cals[frames[j].parent]), image.shape, BIWI_MARGIN)
        try:
            return crop_box(image, box)
        except ValueError as e:
            raise DataError(f"{frames[j]}: {e}") from e

    names = [str(frames[j].relative_to(root)) for j in idx]
    return FaceSet(str(root), names, load, poses[idx], dropped)


def subject_of(name: str) -> str:
    """The subject folder (`NN`) of a frame name, for protocol 2's split by subject."""
    return Path(name).parent.name
