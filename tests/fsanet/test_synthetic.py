"""The procedural heads: determinism, labels, crop convention, and the authors' model reading them."""

from pathlib import Path

import numpy as np
import pytest

from fsanet import pose
from fsanet.data import open_faces
from fsanet.data.raster import rasterize
from fsanet.data.synthetic import SynthOptions, render, synthetic_faces
from fsanet.errors import DataError
from fsanet.preprocess import expand_box, landmark_box, official_crop


def test_same_seed_same_bytes_and_head_i_independent_of_count():
    a, b, c = synthetic_faces(4, seed=7), synthetic_faces(4, seed=7), synthetic_faces(40, seed=7)
    for i in range(4):
        assert a.load(i).tobytes() == b.load(i).tobytes() == c.load(i).tobytes()
        assert a.raw(i)[0].tobytes() == c.raw(i)[0].tobytes()
    assert np.array_equal(a.poses, c.poses[:4])
    other = synthetic_faces(4, seed=8)
    assert not np.array_equal(a.images(), other.images())
    assert not np.array_equal(a.poses, other.poses)


def test_labels_and_crops_have_the_official_layout():
    faces = synthetic_faces(3000, seed=1)
    assert faces.poses.shape == (3000, 3) and faces.poses.dtype == np.float32
    yaw, pitch, roll = np.abs(faces.poses).T
    assert yaw.max() <= 90 and pitch.max() <= 60 and roll.max() <= 45
    assert yaw.max() > 85 and np.median(pitch) < 15 and np.median(roll) < 12  # 300W-LP-like spread
    crop = faces.load(0)
    assert crop.shape == (64, 64, 3) and crop.dtype == np.uint8
    assert faces.names[5] == "synthetic[1:5]" and len(faces) == 3000


def test_crop_is_the_official_crop_of_landmarks_inside_the_image():
    faces = synthetic_faces(12, seed=2, size=144)
    for i in range(len(faces)):
        image, lm = faces.raw(i)
        assert image.shape == (144, 144, 3) and lm.shape == (68, 2)
        x0, y0, x1, y1 = expand_box(landmark_box(lm), image.shape)
        bx0, by0, bx1, by1 = landmark_box(lm)
        # the grown box fits without clipping: its size is exactly 2.2x the landmarks' box
        assert (x1 - x0) == pytest.approx(2.2 * (int(bx1) - int(bx0)), abs=2)
        assert (y1 - y0) == pytest.approx(2.2 * (int(by1) - int(by0)), abs=2)
        assert np.array_equal(faces.load(i), official_crop(image, lm))


@pytest.mark.parametrize("angles", [(0, 0, 0), (35, -20, 10), (-80, 25, -30), (60, 50, 40)])
def test_landmarks_are_the_head_turned_by_the_label(angles):
    # an orthographic fit of the head-frame landmarks to the image ones gives back the label
    head = render(3, 0, angles)
    m = np.c_[head.model_landmarks, np.ones(68)]
    affine, *_ = np.linalg.lstsq(m, head.landmarks, rcond=None)
    rows = affine[:3].T  # scale * the first two rows of the rotation
    scale = np.linalg.norm(rows[0])
    r0, r1 = rows / scale
    rot = np.stack([r0, r1, np.cross(r0, r1)])
    assert np.allclose(rot, pose.euler_to_matrix(*angles), atol=1e-9)
    assert pose.matrix_to_euler(rot) == pytest.approx(angles, abs=1e-6)


def test_yaw_moves_the_nose_to_the_side_of_the_projected_z_axis():
    # the convention test of fsanet.pose on AFLW2000, on the synthetic heads: nose tip (30)
    for yaw in (-60, -25, 25, 60):
        head = render(0, 1, (yaw, 0, 0))
        offset = head.landmarks[30, 0] - head.landmarks.mean(0)[0]
        assert np.sign(offset) == np.sign(pose.euler_to_matrix(yaw, 0, 0)[0, 2])


@pytest.fixture
def one_thread():
    # the fusion is many small ops: on a shared 2-core machine one thread is several times faster
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_authors_fusion_reads_the_synthetic_poses(fusion_checkpoint, one_thread):
    # the proof of the angle convention: the authors' 300W-LP model agrees with the labels
    from fsanet import checkpoint
    from fsanet.evaluate import predict_torch

    model = checkpoint.load(fusion_checkpoint)
    rng = np.random.default_rng(0)
    n = 48
    sweep = np.c_[np.linspace(-60, 60, n), rng.uniform(-10, 10, n), rng.uniform(-10, 10, n)]
    pred = predict_torch(model, synthetic_faces(n, 11, poses=sweep).images())
    assert np.corrcoef(pred[:, 0], sweep[:, 0])[0, 1] > 0.9
    assert np.abs(pred[:, 0] - sweep[:, 0]).mean() < 10
    tilt = np.c_[rng.uniform(-30, 30, n), np.where(np.arange(n) % 2, 1, -1) * rng.uniform(20, 40, n), np.zeros(n)]
    pred = predict_torch(model, synthetic_faces(n, 12, poses=tilt).images())
    assert (np.sign(pred[:, 1]) == np.sign(tilt[:, 1])).mean() >= 0.9
    assert np.corrcoef(pred[:, 1], tilt[:, 1])[0, 1] > 0.8
    rolled = np.c_[rng.uniform(-20, 20, 32), rng.uniform(-10, 10, 32), np.linspace(-35, 35, 32)]
    pred = predict_torch(model, synthetic_faces(32, 14, poses=rolled).images())
    assert np.corrcoef(pred[:, 2], rolled[:, 2])[0, 1] > 0.75
    faces = synthetic_faces(64, seed=13)
    err = np.abs(predict_torch(model, faces.images()) - faces.poses).mean(0)
    assert err.mean() < 12, err


def test_open_faces_accepts_synthetic_specs():
    assert len(open_faces("synthetic:5")) == 5
    a, b = open_faces("synthetic:3:9"), synthetic_faces(3, 9)
    assert np.array_equal(a.poses, b.poses) and np.array_equal(a.load(2), b.load(2))
    assert len(open_faces("synthetic")) == 2000
    assert len(open_faces(Path("synthetic:4:1"))) == 4  # stages that make a Path of their argument


@pytest.mark.parametrize("spec", ["synthetic:0", "synthetic:-4", "synthetic:ten", "synthetic:5:x", "synthetic:1:2:3"])
def test_bad_specs_are_data_errors(spec):
    with pytest.raises(DataError, match="synthetic"):
        open_faces(spec)


@pytest.mark.parametrize(
    "args, kwargs, match",
    [
        ((0,), {}, "count=0"),
        ((-2,), {}, "count=-2"),
        (("5",), {}, "count='5'"),
        ((5,), {"seed": -1}, "seed=-1"),
        ((5,), {"colour": 1}, "unknown option"),
        ((5,), {"size": 32}, "size=32"),
        ((2,), {"poses": np.zeros((3, 3))}, r"\(2, 3\)"),
    ],
)
def test_bad_arguments_are_data_errors(args, kwargs, match):
    with pytest.raises(DataError, match=match):
        synthetic_faces(*args, **kwargs)


def test_out_of_range_index_is_an_index_error():
    with pytest.raises(IndexError):
        synthetic_faces(2).load(2)


def test_options_shape_the_pose_distribution():
    faces = synthetic_faces(500, 0, yaw_range=30, pitch_range=10, roll_range=5, uniform=True)
    assert np.abs(faces.poses).max(0) == pytest.approx([30, 10, 5], abs=0.5)
    assert SynthOptions().size == 128


def test_cli_writes_a_readable_npz_and_sheet(tmp_path):
    import cv2

    from fsanet.cli import main
    from fsanet.data.npz import npz_file

    out, sheet = tmp_path / "synth.npz", tmp_path / "sheet.png"
    assert main(["synth", "-n", "5", "--seed", "4", "-o", str(out), "--sheet", str(sheet)]) == 0
    faces, expected = npz_file(out), synthetic_faces(5, 4)
    assert np.array_equal(faces.images(), expected.images())
    assert np.allclose(faces.poses, expected.poses)
    assert cv2.imread(str(sheet)).shape == (128, 8 * 128, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sheet.png", "synth.npz"]  # no temp files left
    assert main(["synth", "-n", "0", "-o", str(tmp_path / "none.npz")]) == 2
    assert not (tmp_path / "none.npz").exists()


def test_parallel_rendering_gives_the_same_bytes():
    from fsanet.data.synthetic import render_crops

    faces = synthetic_faces(7, seed=5)
    assert np.array_equal(render_crops(faces, workers=2, chunk=3), faces.images())
    with pytest.raises(DataError, match="workers=0"):
        render_crops(faces, workers=0)


def test_rasterizer_covers_exactly_and_keeps_the_nearest():
    # two squares of two triangles: the nearer one (depth 1) wins where they overlap
    x = np.array([1, 5, 5, 1, 3, 7, 7, 3], float)
    y = np.array([1, 1, 5, 5, 3, 3, 7, 7], float)
    z = np.array([0, 0, 0, 0, 1, 1, 1, 1], float)
    quad = np.array([[0, 3, 2], [0, 2, 1]])  # counter-clockwise on screen (y down)
    tris = np.concatenate([quad, quad + 4])
    pix, tri, bary = rasterize(x, y, z, tris, 10, 10)
    owner = np.full(100, -1)
    owner[pix] = tri // 2
    owner = owner.reshape(10, 10)
    assert (owner[1:5, 1:5][:2, :2] == 0).all() and (owner[3:7, 3:7] == 1).all()
    assert (owner >= 0).sum() == 16 + 16 - 4
    assert np.allclose(bary.sum(1), 1.0)
    assert rasterize(x, y, z, tris[:, ::-1], 10, 10)[0].size == 0  # back faces are culled
