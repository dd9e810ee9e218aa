from __future__ import annotations

import numpy as np
import pytest
import scipy.io

from fsanet import pose
from fsanet.data import open_faces
from fsanet.data.biwi import read_pose
from fsanet.errors import DataError
from fsanet.preprocess import expand_box, landmark_box, official_crop, to_nchw


def test_landmark_box_drops_missing_points_like_the_authors():
    # AFLW2000 marks missing landmarks with -1: the x axis has fewer positives here
    pts = np.array([[10.0, 20.0, -1.0, 30.0], [5.0, 40.0, 50.0, 45.0]])
    assert landmark_box(pts) == (10.0, 5.0, 30.0, 45.0)
    assert landmark_box(pts.T) == (10.0, 5.0, 30.0, 45.0)


def test_expand_box_by_hand():
    # box 100..200 x 50..130 in a 300x400 (h x w) image; 0.6 margin: 60 / 48 pixels per side
    assert expand_box((100.7, 50.2, 200.9, 130.0), (300, 400)) == (40, 2, 260, 178)
    # clipped at the image border (end index img_w - 1, as the official code)
    assert expand_box((10, 10, 390, 290), (300, 400)) == (0, 0, 399, 299)


def test_official_crop_resizes_the_expanded_box():
    import cv2

    image = np.random.default_rng(0).integers(0, 255, (300, 400, 3), dtype=np.uint8)
    crop = official_crop(image, [[100, 200], [50, 130]])
    assert crop.shape == (64, 64, 3) and crop.dtype == np.uint8
    np.testing.assert_array_equal(crop, cv2.resize(image[2:178, 40:260], (64, 64)))


def test_model_input_is_nchw_float_0_255():
    crops = np.full((2, 64, 64, 3), 200, np.uint8)
    crops[..., 0] = 7  # blue stays the first channel: BGR in, BGR out
    x = to_nchw(crops)
    assert x.shape == (2, 3, 64, 64) and x.dtype == np.float32
    assert x[:, 0].max() == 7 and x[:, 1].min() == 200
    with pytest.raises(DataError, match="NaN"):
        to_nchw(np.full((1, 64, 64, 3), np.nan, np.float32))
    with pytest.raises(DataError, match=r"\(N, 64, 64, 3\)"):
        to_nchw(np.zeros((1, 32, 32, 3), np.uint8))


def test_aflw2000_reader(shared_data):
    faces = open_faces(shared_data / "aflw2000-sample")
    assert len(faces) == 16 and faces.dropped == {}
    mat = scipy.io.loadmat(shared_data / "aflw2000-sample" / faces.names[0].replace(".jpg", ".mat"))
    pitch, yaw, roll = np.degrees(mat["Pose_Para"][0][:3])
    np.testing.assert_allclose(faces.poses[0], [yaw, pitch, roll], rtol=1e-5)
    assert faces.images().shape == (16, 64, 64, 3)


def test_pts_folder_reader(shared_data):
    faces = open_faces(shared_data / "real-faces")
    assert len(faces) == 1207 and faces.poses is None
    crop = faces.load(0)
    assert crop.shape == (64, 64, 3) and crop.std() > 10


def test_pts_with_ibug_header(tmp_path):
    import cv2

    cv2.imwrite(str(tmp_path / "a.png"), np.full((120, 100, 3), 90, np.uint8))
    (tmp_path / "a.pts").write_text("version: 1\nn_points: 3\n{\n30 40\n60 40\n45 80\n}\n")
    faces = open_faces(tmp_path)
    assert len(faces) == 1 and faces.load(0).shape == (64, 64, 3)


def test_protocol_filter_is_counted_not_silent(tmp_path):
    import cv2

    for i, yaw in enumerate((10.0, 120.0, -30.0)):
        cv2.imwrite(str(tmp_path / f"f{i}.jpg"), np.full((100, 100, 3), 128, np.uint8))
        pp = np.radians([[0.0, yaw, 0.0, 0, 0, 0, 1]])
        scipy.io.savemat(tmp_path / f"f{i}.mat", {"Pose_Para": pp, "pt2d": np.array([[30, 70.0], [30, 70.0]])})
    faces = open_faces(tmp_path)
    assert len(faces) == 2 and faces.dropped == {"|angle| > 99 degrees": 1}
    assert "1 dropped" in faces.describe()
    assert len(open_faces(tmp_path, protocol_filter_on=False)) == 3


def test_npz_reader_and_missing_field(tmp_path):
    images = np.zeros((3, 64, 64, 3), np.uint8)
    np.savez(tmp_path / "set.npz", image=images, pose=np.array([[1, 2, 3], [4, 5, 6], [150, 0, 0]], np.float32))
    faces = open_faces(tmp_path / "set.npz")
    assert len(faces) == 2 and faces.dropped
    np.savez(tmp_path / "bad.npz", image=images)
    with pytest.raises(DataError, match=r"bad\.npz.*'pose' is missing"):
        open_faces(tmp_path / "bad.npz")


def test_biwi_angles_follow_the_authors_formula(tmp_path):
    # BIWI stores R row by row; the authors transpose it, then: yaw = -atan2(-R20, hypot(R21, R22)).
    # A rotation about the vertical axis by -30 degrees has, after the transpose, R20 = sin(30).
    r = pose._ry(np.radians(-30))
    (tmp_path / "frame_00003_pose.txt").write_text(
        "\n".join(" ".join(f"{v:.9f}" for v in row) for row in r.T) + "\n\n10 20 900\n"
    )
    angles, centre = read_pose(tmp_path / "frame_00003_pose.txt")
    np.testing.assert_allclose(angles, [30, 0, 0], atol=1e-6)
    np.testing.assert_allclose(centre, [10, 20, 900])


def test_biwi_folder(tmp_path):
    import cv2

    folder = tmp_path / "hpdb" / "01"
    folder.mkdir(parents=True)
    (folder / "rgb.cal").write_text("500 0 320\n0 500 240\n0 0 1\n\n0 0 0 0\n\n1 0 0\n0 1 0\n0 0 1\n\n0 0 0\n")
    cv2.imwrite(str(folder / "frame_00001_rgb.png"), np.full((480, 640, 3), 60, np.uint8))
    (folder / "frame_00001_pose.txt").write_text("1 0 0\n0 1 0\n0 0 1\n\n0 0 1000\n")
    faces = open_faces(tmp_path)
    assert len(faces) == 1 and faces.names == ["hpdb/01/frame_00001_rgb.png"]
    assert faces.load(0).shape == (64, 64, 3)
    (folder / "rgb.cal").unlink()
    with pytest.raises(DataError, match="rgb.cal"):
        open_faces(tmp_path)
