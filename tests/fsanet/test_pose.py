import numpy as np
import pytest

from fsanet import pose


def test_pose_para_order_is_pitch_yaw_roll():
    y, p, r = pose.from_pose_para([np.radians(10), np.radians(-20), np.radians(5), 0, 0, 0, 1])
    assert (y, p, r) == pytest.approx((-20, 10, 5))


@pytest.mark.parametrize("angles", [(0, 0, 0), (30, -10, 5), (-75, 40, -60), (89, 0, 20)])
def test_matrix_is_a_rotation_and_round_trips(angles):
    r = pose.euler_to_matrix(*angles)
    assert r @ r.T == pytest.approx(np.eye(3), abs=1e-12)
    assert np.linalg.det(r) == pytest.approx(1.0)
    assert pose.matrix_to_euler(r) == pytest.approx(angles, abs=1e-9)


def test_projected_nose_axis_agrees_with_aflw2000_landmarks(shared_data):
    # the z axis (out of the face) must point where the nose tip (AFLW point 15) sits relative
    # to the landmarks' centre, for every clearly turned or tilted face of the sample
    from fsanet.data.mat import read_mat

    checked = 0
    for mat in sorted((shared_data / "aflw2000-sample").glob("*.mat")):
        angles, pts = read_mat(mat)
        ok = (pts > 0).all(0)
        offset = pts[:, 14] - pts[:, ok].mean(1)
        z = pose.euler_to_matrix(*angles)[:, 2]
        if abs(angles[0]) > 10:
            assert np.sign(offset[0]) == np.sign(z[0]), mat.name
            checked += 1
    assert checked >= 8


def test_draw_axes_draws_three_colours():
    image = np.zeros((100, 100, 3), np.uint8)
    pose.draw_axes(image, (20, 10, 5), (50, 50), size=40)
    colours = {tuple(c) for c in image.reshape(-1, 3) if c.any()}
    assert any(c[2] > 200 and c[0] < 50 for c in colours)  # red x
    assert any(c[1] > 200 for c in colours)  # green y
    assert any(c[0] > 200 and c[2] < 50 for c in colours)  # blue z
