"""The random appearance of a synthetic head's picture: colours, light, background, camera.

Everything here draws from the head's own generator, in a fixed order, so a head stays the
same for a given (seed, i); changing the order of draws changes every head.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from fsanet.data import head_mesh as H


@dataclass
class Scene:
    """One head's shape, colours and light."""

    shape: H.HeadShape
    colours: dict
    light: np.ndarray  # unit vector towards the light, camera frame
    ambient: float
    diffuse: float
    specular: float
    exposure: float  # mean brightness (0..1) the camera brings the head to


_SKIN_LIGHT = np.array([0.70, 0.80, 0.96])  # BGR
_SKIN_DARK = np.array([0.14, 0.22, 0.38])
_HAIR = (
    ((0.04, 0.04, 0.05), 0.35),  # black
    ((0.07, 0.12, 0.20), 0.25),  # dark brown
    ((0.14, 0.26, 0.42), 0.15),  # brown
    ((0.38, 0.62, 0.80), 0.10),  # blond
    ((0.08, 0.20, 0.55), 0.05),  # red
    ((0.60, 0.60, 0.62), 0.10),  # grey
)
_IRIS = ((0.05, 0.12, 0.25), (0.45, 0.30, 0.15), (0.25, 0.35, 0.20), (0.04, 0.06, 0.10))


def sample_scene(rng) -> Scene:
    """A random head: proportions, hair style, skin/hair/eye/lip colours, light and exposure."""
    u = rng.uniform
    shape = H.HeadShape(
        height=u(1.42, 1.62),
        front=u(1.05, 1.25),
        back=u(1.15, 1.35),
        jaw=u(0.12, 0.35),
        chin=u(0.08, 0.22),
        chin_phi=u(-70.0, -62.0),
        eye_theta=u(18.5, 23.5),
        eye_phi=u(3.0, 9.0),
        eye_w=u(7.5, 10.0),
        eye_h=u(2.4, 4.0),
        brow_gap=u(7.0, 10.0),
        brow_thick=u(1.8, 3.6),
        nose_tip=u(-21.0, -15.0),
        nose_len=u(0.24, 0.40),
        nose_w=u(5.5, 8.5),
        mouth_phi=u(-40.0, -33.0),
        mouth_w=u(12.0, 18.0),
        lips=u(2.8, 5.0),
        ear=u(0.10, 0.22),
        hairline=u(22.0, 38.0) if u() > 0.06 else 85.0,
        hair_back=u(-55.0, -15.0),
        hair=u(0.02, 0.16),
        beard=u(0.2, 0.8) if u() < 0.15 else 0.0,
        fringe=u(0.0, 20.0) if u() < 0.3 else 0.0,
        side_hair=u(20.0, 50.0) if u() < 0.3 else u(0.0, 6.0),
        wave=u(0.0, 2 * np.pi),
        glasses=u(0.5, 0.9) if u() < 0.12 else 0.0,
    )
    skin = _SKIN_DARK + (_SKIN_LIGHT - _SKIN_DARK) * u() ** 0.7 + rng.normal(0, 0.03, 3)
    hair_choices, weights = zip(*_HAIR, strict=True)
    hair = np.array(hair_choices[rng.choice(len(hair_choices), p=np.array(weights) / sum(weights))])
    hair = np.clip(hair * u(0.8, 1.2) + rng.normal(0, 0.02, 3), 0.0, 1.0)
    colours = {
        "skin": np.clip(skin, 0.05, 1.0),
        "hair": hair,
        "brows": np.minimum(hair, skin * 0.45) * u(0.6, 1.0),
        "lips": np.clip(skin * np.array([0.72, 0.68, 0.95]) * u(0.75, 1.0), 0.0, 1.0),
        "iris": np.array(_IRIS[rng.integers(len(_IRIS))]),
        "sclera": np.array([0.85, 0.88, 0.90]) * u(0.7, 0.95),
        "gaze": u(-3.0, 3.0),
        "blotch": (u(0.0, 2 * np.pi), u(0.0, 2 * np.pi)),
    }
    light = np.array([u(-1.0, 1.0), u(-1.0, 0.6), u(0.3, 1.2)])
    light = light / np.linalg.norm(light)
    return Scene(shape, colours, light, u(0.25, 0.45), u(0.45, 0.75), u(0.0, 0.25), u(0.25, 0.45))


def background(rng, size: int) -> np.ndarray:
    """Flat, gradient, smooth noise or clutter, as uint8 BGR."""
    import cv2

    kind = rng.integers(4)
    c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    if kind == 0:
        img = np.broadcast_to(c0, (size, size, 3)).copy()
    elif kind == 1:
        t = np.linspace(0.0, 1.0, size)[:, None, None]
        img = c0 + (c1 - c0) * t
        img = img.transpose(1, 0, 2) if rng.integers(2) else img
        img = np.broadcast_to(img, (size, size, 3))
    else:
        cells = int(rng.integers(2, 8))
        small = rng.uniform(0, 255, (cells, cells, 3))
        img = cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC)
    img = np.clip(img, 0, 255).astype(np.uint8)
    if kind == 3:
        _clutter(img, rng)
    return img


def _clutter(img: np.ndarray, rng) -> None:
    import cv2

    size = img.shape[0]
    for _ in range(int(rng.integers(3, 12))):
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        p, q = rng.integers(0, size, 2), rng.integers(0, size, 2)
        shape = rng.integers(3)
        if shape == 0:
            cv2.rectangle(img, tuple(int(v) for v in p), tuple(int(v) for v in q), colour, -1)
        elif shape == 1:
            cv2.circle(img, tuple(int(v) for v in p), int(rng.integers(3, size // 4)), colour, -1, cv2.LINE_AA)
        else:
            cv2.line(img, tuple(int(v) for v in p), tuple(int(v) for v in q), colour, int(rng.integers(1, 6)))


def shoulders(img: np.ndarray, rng, neck_base, scale: float, roll: float) -> None:
    import cv2

    colour = tuple(float(v) for v in rng.uniform(20, 230, 3))
    centre = (int(round(neck_base[0])), int(round(neck_base[1] + 1.2 * scale)))
    axes = (int(scale * rng.uniform(2.6, 3.3)), int(scale * rng.uniform(1.3, 1.7)))
    cv2.ellipse(img, centre, axes, float(roll), 180, 360, colour, -1, cv2.LINE_AA)


@lru_cache(maxsize=4)
def _noise_field(size: int) -> np.ndarray:
    """Fixed Gaussian noise twice the image size; each head reads it at a random offset
    (drawing fresh normals for every image costs more than the rest of the camera model)."""
    return np.random.default_rng(0x5EED).standard_normal((2 * size, 2 * size, 3), dtype=np.float32)


def camera(rng, img: np.ndarray) -> np.ndarray:
    """Blur, sensor noise and JPEG compression, each at a random strength."""
    import cv2

    sigma = rng.uniform(0.0, 1.2)
    if sigma > 0.3:
        img = cv2.GaussianBlur(img, (0, 0), sigma)
    noise = rng.uniform(0.0, 6.0)
    oy, ox = rng.integers(0, img.shape[0], 2)
    field = _noise_field(img.shape[0])[oy : oy + img.shape[0], ox : ox + img.shape[1]]
    img = np.clip(img + noise * field, 0, 255).astype(np.uint8)
    if rng.uniform() < 0.5:
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(40, 96))])
        img = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    return img
