"""AFLW2000 and 300W-LP: `<name>.jpg` + `<name>.mat` with `Pose_Para` and `pt2d`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fsanet import pose
from fsanet.data.base import FaceSet, find_image, protocol_filter, read_image, require_files
from fsanet.errors import BackendUnavailable, DataError
from fsanet.preprocess import official_crop


def read_mat(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(yaw, pitch, roll) in degrees and the 2-D landmarks (2, N) of one `.mat` file."""
    try:
        import scipy.io
    except ImportError as e:
        raise BackendUnavailable("scipy", "data") from e
    try:
        mat = scipy.io.loadmat(str(path))
    except Exception as e:  # scipy raises ValueError, TypeError or MatReadError on bad files
        raise DataError(f"{path}: cannot read the .mat file ({e})") from e
    for key in ("Pose_Para", "pt2d"):
        if key not in mat:
            raise DataError(f"{path}: field {key!r} is missing; an AFLW2000/300W-LP .mat needs Pose_Para and pt2d")
    pp = np.asarray(mat["Pose_Para"], dtype=np.float64).reshape(-1)
    if pp.size < 3:
        raise DataError(f"{path}: field 'Pose_Para' has {pp.size} values, needs pitch, yaw, roll")
    return pose.from_pose_para(pp), np.asarray(mat["pt2d"], dtype=np.float64)


def mat_folder(root: str | Path, protocol_filter_on: bool = True) -> FaceSet:
    root = Path(root)
    mats = require_files(root, "*.mat", "AFLW2000/300W-LP .mat files")
    labels = [read_mat(m) for m in mats]
    images = [find_image(m) for m in mats]
    poses = np.array([p for p, _ in labels], dtype=np.float32)
    keep, dropped = protocol_filter(poses) if protocol_filter_on else (np.ones(len(mats), bool), {})
    idx = np.flatnonzero(keep)

    def load(i: int) -> np.ndarray:
        j = idx[i]
        image = read_image(images[j])  # its errors name the file
        try:
            return official_crop(image, labels[j][1])
        except ValueError as e:
            raise DataError(f"{images[j]}: {e}") from e

    def raw(i: int) -> tuple[np.ndarray, np.ndarray]:
        return read_image(images[idx[i]]), labels[idx[i]][1]

    return FaceSet(str(root), [images[j].name for j in idx], load, poses[idx], dropped, raw)
