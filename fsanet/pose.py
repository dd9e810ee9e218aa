"""The angle convention, written once.

Angles are degrees, ordered (yaw, pitch, roll), signed as 300W-LP / AFLW2000 `Pose_Para`
(which stores pitch, yaw, roll in radians). In image coordinates (x right, y down) the head's
rotation is R = Rx(pitch) @ Ry(-yaw) @ Rz(roll); its columns are the head's x, y, z axes, which
is what `draw_axes` projects onto the image.
"""

from __future__ import annotations

import numpy as np

ANGLES = ("yaw", "pitch", "roll")


def from_pose_para(pose_para) -> np.ndarray:
    """300W-LP / AFLW2000 `Pose_Para` (pitch, yaw, roll, ... in radians) -> (yaw, pitch, roll)."""
    p = np.asarray(pose_para, dtype=np.float64).reshape(-1)
    return np.degrees(np.array([p[1], p[0], p[2]]))


def _rx(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def _ry(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def _rz(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def euler_to_matrix(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """Degrees -> 3x3 rotation matrix in image coordinates."""
    y, p, r = np.radians([yaw, pitch, roll])
    return _rx(p) @ _ry(-y) @ _rz(r)


def matrix_to_euler(rot: np.ndarray) -> np.ndarray:
    """Inverse of `euler_to_matrix` for |yaw| < 90: -> (yaw, pitch, roll) in degrees."""
    r = np.asarray(rot, dtype=np.float64)
    yaw = -np.arcsin(np.clip(r[0, 2], -1.0, 1.0))
    pitch = np.arctan2(-r[1, 2], r[2, 2])
    roll = np.arctan2(-r[0, 1], r[0, 0])
    return np.degrees([yaw, pitch, roll])


def draw_axes(image: np.ndarray, angles, centre, size: float = 50.0, thickness: int = 2):
    """Draw the head's x (red), y (green) and z (blue) axes in place, as in the paper's Fig. 1."""
    import cv2

    rot = euler_to_matrix(*angles)
    cx, cy = (int(round(c)) for c in centre)
    for axis, colour in enumerate(((0, 0, 255), (0, 255, 0), (255, 0, 0))):
        dx, dy = size * rot[0, axis], size * rot[1, axis]
        end = (int(round(cx + dx)), int(round(cy + dy)))
        cv2.line(image, (cx, cy), end, colour, thickness, cv2.LINE_AA)
    return image
