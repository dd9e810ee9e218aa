"""Readers that yield (64x64 BGR crop, (yaw, pitch, roll)) pairs from every supported layout."""

from __future__ import annotations

from pathlib import Path

from fsanet.data.base import FaceSet, protocol_filter
from fsanet.errors import DataError
from fsanet.files import regular_file

__all__ = ["FaceSet", "open_faces", "protocol_filter"]


def open_faces(path: str | Path, protocol_filter_on: bool = True) -> FaceSet:
    """Recognise the layout of `path` and return its faces.

    `.npz` (official preprocessed), a folder of `.mat` + images (AFLW2000, 300W-LP), of BIWI
    frames (`frame_*_rgb.png`), or of images with `.pts` landmarks (unlabelled); the string
    `synthetic`, `synthetic:N` or `synthetic:N:SEED` gives procedural heads (no download).
    """
    from fsanet.data import biwi, landmarks, mat, npz, synthetic

    if synthetic.is_spec(path):
        return synthetic.open_spec(str(path))
    p = Path(path)
    if p.exists() and not p.is_dir():  # a FIFO or a device would block the read forever
        regular_file(p, "face set: an .npz file or a folder of faces")
    if p.is_file() and p.suffix == ".npz":
        return npz.npz_file(p, protocol_filter_on)
    if not p.exists():
        raise DataError(f"{p}: no such file or folder")
    if not p.is_dir():
        raise DataError(f"{p}: expected an .npz file or a folder of faces")
    if next(p.rglob("*.mat"), None):
        return mat.mat_folder(p, protocol_filter_on)
    if next(p.rglob("frame_*_rgb.png"), None):
        return biwi.biwi_folder(p, protocol_filter_on)
    if next(p.rglob("*.pts"), None):
        return landmarks.pts_folder(p)
    raise DataError(
        f"{p}: no faces found; expected .mat + .jpg (AFLW2000/300W-LP), frame_*_rgb.png + "
        "_pose.txt (BIWI), or images with .pts landmarks"
    )
