"""Truncated images, non-finite labels, and valid JSON from predict."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.io
from fsanet.calib import build

from fsanet.cli import main
from fsanet.data import open_faces
from fsanet.data.base import read_image
from fsanet.errors import DataError


def truncate(path, keep: float = 0.6):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def test_a_truncated_jpeg_is_refused(make_faces, tmp_path):
    faces = make_faces(tmp_path / "f", count=1)
    truncate(faces / "face0.jpg")
    with pytest.raises(DataError, match="truncated"):
        read_image(faces / "face0.jpg")


def test_a_truncated_png_is_refused(tmp_path):
    import cv2

    f = tmp_path / "x.png"
    cv2.imwrite(str(f), np.random.default_rng(0).integers(0, 256, (50, 50, 3), dtype=np.uint8))
    truncate(f, 0.95)
    with pytest.raises(DataError, match=r"x\.png"):
        read_image(f)


def test_calib_build_drops_truncated_jpegs(make_faces, tmp_path):
    faces = make_faces(tmp_path / "f", count=3)
    truncate(faces / "face1.jpg")
    cs = build(faces, 2, seed=0)
    assert len(cs) == 2 and sum(cs.manifest["dropped"].values()) <= 1
    with pytest.raises(DataError, match="truncated"):
        build(faces, 3, seed=0)


def test_predict_json_is_valid_when_no_face_is_found(tiny_models, tmp_path, capsys):
    import cv2

    cv2.imwrite(str(tmp_path / "wall.jpg"), np.full((200, 200, 3), 128, np.uint8))  # no face to detect
    assert main(["predict", tiny_models["mean"], str(tmp_path / "wall.jpg"), "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rows == [{"image": str(tmp_path / "wall.jpg"), "face": None, "crop": "no face found", "angles": None}]


def test_predict_of_a_nan_model_exits_2(tiny_models, noise_faces, capsys):
    assert main(["predict", tiny_models["nan"], str(noise_faces / "face0.jpg"), "--json"]) == 2
    assert "non-finite angles" in capsys.readouterr().err


def test_non_finite_labels_are_named_as_such(tmp_path, make_npz):
    poses = np.array([[0, 0, 0], [np.nan, 0, 0], [120, 0, 0], [0, np.inf, 0]], np.float32)
    faces = open_faces(make_npz(tmp_path / "s.npz", count=4, poses=poses))
    assert len(faces) == 1
    assert faces.dropped == {"non-finite label": 2, "|angle| > 99 degrees": 1}


def test_non_finite_labels_in_mat_files(tmp_path):
    import cv2

    for i, pp in enumerate([[0.1, 0.2, 0.0], [np.nan, 0.2, 0.0]]):
        cv2.imwrite(str(tmp_path / f"f{i}.jpg"), np.full((100, 100, 3), 90, np.uint8))
        pt2d = np.array([np.linspace(30, 70, 21), np.linspace(30, 70, 21)])
        scipy.io.savemat(tmp_path / f"f{i}.mat", {"Pose_Para": np.array([pp + [0, 0, 0, 0]]), "pt2d": pt2d})
    faces = open_faces(tmp_path)
    assert len(faces) == 1 and faces.dropped == {"non-finite label": 1}
