"""A procedural 3-D head: surface, albedo and 68 landmarks, all functions of (theta, phi).

Head frame (unit: half the head's width): x to the image right, y down, z towards the camera,
the same axes `fsanet.pose` rotates, so a head turned by `euler_to_matrix(yaw, pitch, roll)`
has exactly those angles. The surface is a deformed ellipsoid in spherical parameters:
theta (azimuth, 0 = the face's front, positive towards +x) and phi (elevation, positive up),
in degrees; nose, brows, lips, chin, cheeks, ears and hair are displacements of it, and the
eyes, brows, lips, nostrils and hairline are painted per pixel from the interpolated
(theta, phi), so their sharpness does not depend on the mesh resolution.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fsanet import pose

# The head's neutral orientation: the face of this model turned up by NEUTRAL_PITCH degrees is
# what the authors' 300W-LP model reads as pitch 0 (median over 500 heads near pitch 0, |yaw| < 60).
NEUTRAL_PITCH = 9.0
_NEUTRAL = pose.euler_to_matrix(0.0, NEUTRAL_PITCH, 0.0)


@dataclass(frozen=True)
class HeadShape:
    """Proportions of one head; angles in degrees of (theta, phi), lengths in half head widths."""

    height: float = 1.4  # half height, crown to chin
    front: float = 1.15  # depth from the centre to the forehead
    back: float = 1.25  # depth from the centre to the back of the skull
    jaw: float = 0.25  # narrowing of the lower head
    chin: float = 0.12  # chin forward
    chin_phi: float = -66.0  # phi of the chin's lowest landmark
    eye_theta: float = 21.0
    eye_phi: float = 6.0
    eye_w: float = 9.0
    eye_h: float = 3.2
    brow_gap: float = 8.0  # brow above the eye centre
    brow_thick: float = 2.6
    nose_tip: float = -18.0  # phi of the nose tip
    nose_len: float = 0.32  # how far the tip stands out
    nose_w: float = 7.0
    mouth_phi: float = -34.0
    mouth_w: float = 15.0
    lips: float = 4.0  # lip height (phi)
    ear: float = 0.16  # how far the ears stand out
    hairline: float = 34.0  # phi of the hairline at the forehead
    hair_back: float = -30.0  # phi the hair reaches at the back
    hair: float = 0.08  # hair thickness
    beard: float = 0.0  # 0..1 darkening of the lower face
    fringe: float = 0.0  # how far (phi) the hair falls over the forehead's middle
    side_hair: float = 0.0  # how far (phi) the hair falls below the ears' top: long hair covers them
    wave: float = 0.0  # phase of the hairline's unevenness
    glasses: float = 0.0  # darkness of spectacle frames (0: none)


def _smooth(t):
    t = np.minimum(np.maximum(t, 0.0), 1.0)  # np.clip costs more per call on small arrays
    return t * t * (3.0 - 2.0 * t)


def _band(v, lo, hi, soft):
    """1 inside [lo, hi], 0 outside, with smooth shoulders of width `soft`."""
    return _smooth((v - lo + soft) / (2 * soft)) * _smooth((hi + soft - v) / (2 * soft))


def _ellipse(theta, phi, ct, cp, rt, rp):
    return ((theta - ct) / rt) ** 2 + ((phi - cp) / rp) ** 2


def surface(theta, phi, s: HeadShape) -> np.ndarray:
    """(N, 3) points of the head at parameters theta, phi (degrees, arrays of one shape), in the
    head frame: the face looks along +z, turned up by NEUTRAL_PITCH."""
    th, ph = np.radians(theta), np.radians(phi)
    st, ct, sp, cp = np.sin(th), np.cos(th), np.sin(ph), np.cos(ph)
    u = st * cp
    w = ct * cp
    lower = _smooth(-sp / 0.9)
    x = np.sign(u) * np.abs(u) ** 0.85 * (1.0 - s.jaw * lower**1.5)
    y = -sp * s.height
    depth = np.where(w > 0, s.front, s.back)
    z = np.sign(w) * np.abs(w) ** np.where(w > 0, 0.65, 0.9) * depth
    f = np.flatnonzero(ct > 0.2)  # the face's relief, evaluated where it can be non-zero
    tf, pf = theta.reshape(-1)[f], phi.reshape(-1)[f]
    front = _smooth((ct.reshape(-1)[f] - 0.2) / 0.8)
    chin = s.chin * _band(pf, s.chin_phi - 6, s.chin_phi + 18, 8) * _smooth((35 - np.abs(tf)) / 25)
    relief = _relief(tf, pf, s) + chin
    z = z.reshape(-1)
    z[f] += front * relief
    e = np.flatnonzero(np.abs(np.abs(theta.reshape(-1)) - 99.0) < 12.0)
    te, pe = theta.reshape(-1)[e], phi.reshape(-1)[e]
    ear = _ear_mask(te, pe, s) * _smooth((np.abs(te) - 86.0) / 14.0)  # flares out towards its back rim
    x = x.reshape(-1)
    x[e] += np.sign(te) * s.ear * ear
    hair = hair_mask(theta, phi, s)
    lift = (s.hair * hair).reshape(-1)
    radial = np.stack([u.reshape(-1), -sp.reshape(-1), w.reshape(-1)], -1)
    return (np.stack([x, y.reshape(-1), z], -1) + lift[:, None] * radial) @ _NEUTRAL.T


def _relief(theta, phi, s: HeadShape):
    """Forward displacement of the face: nose, brow ridge, eye sockets, cheeks, lips."""
    at = np.abs(theta)
    # nose: a ridge from between the eyes to the tip, then a sharp fall to its base
    rise = _smooth((s.eye_phi - phi) / (s.eye_phi - s.nose_tip))
    fall = _smooth((phi - (s.nose_tip - 5.0)) / 5.0)
    width = s.nose_w * (0.55 + 0.45 * rise)
    nose = s.nose_len * (0.12 + 0.88 * rise**1.4) * fall * _smooth(1.0 - (theta / width) ** 2) ** 0.7
    nose = nose * (phi < s.eye_phi + 4.0)
    alae = 0.07 * _band(phi, s.nose_tip - 6, s.nose_tip, 1.5) * _band(at, 0, s.nose_w * 1.5, 2.5)
    brow = 0.14 * _band(phi, s.eye_phi + 3, s.eye_phi + 12, 3) * _band(at, 0, 40, 8)
    socket = -0.14 * np.exp(-_ellipse(at, phi, s.eye_theta, s.eye_phi, s.eye_w * 1.3, s.eye_h * 2.6))
    eyeball = 0.02 * np.exp(-_ellipse(at, phi, s.eye_theta, s.eye_phi, s.eye_w, s.eye_h * 1.2))
    cheek = 0.04 * np.exp(-_ellipse(at, phi, 32, -12, 14, 12))
    lips = 0.05 * np.exp(-_ellipse(theta, phi, 0, s.mouth_phi, s.mouth_w * 1.2, s.lips * 1.8))
    return np.maximum(nose, 0) + alae + brow + socket + eyeball + cheek + lips


def _ear_mask(theta, phi, s: HeadShape):
    """0..1 ear: an upright ellipse behind the cheek, from brow level down to the nose base."""
    e = ((np.abs(theta) - 99.0) / 10.0) ** 2 + ((phi - (s.eye_phi - 12.0)) / 16.0) ** 2
    return _smooth((1.0 - e) * 3.0)


def hair_mask(theta, phi, s: HeadShape):
    """0..1 hair coverage: above the hairline at the front, down to `hair_back` behind the ears."""
    at = np.abs(theta)
    ear_top = s.eye_phi + 8.0
    brows = s.eye_phi + s.brow_gap + 3.0
    front = max(s.hairline - s.fringe, brows)
    side = ear_top - s.side_hair
    # forehead, temples curving back, sideburns in front of the ears, the nape
    knots = [front, max(s.hairline - 0.7 * s.fringe, brows), s.hairline - 2, s.hairline - 8]
    knots += [ear_top + 6 - 0.3 * s.side_hair, side, side, min(s.hair_back, side), s.hair_back]
    line = np.interp(at, [0, 20, 32, 55, 72, 80, 100, 125, 181], knots)
    line = line + 1.5 * np.sin(np.radians(at) * 20.0 + s.wave)  # strands: an uneven hairline
    return _smooth((phi - line) / 3.0 + 0.5)


# 68 landmarks in the iBUG order: jaw 0-16, brows 17-26, nose 27-35, eyes 36-47, mouth 48-67.
def landmark_params(s: HeadShape) -> tuple[np.ndarray, np.ndarray]:
    """(theta, phi) of the 68 landmarks; the image-left side of a frontal face has theta < 0."""
    u = np.linspace(-np.pi / 2, np.pi / 2, 17)
    jaw_t = 74.0 * np.sin(u)
    jaw_p = (s.eye_phi - 6.0) - (s.eye_phi - 6.0 - s.chin_phi) * np.cos(u) ** 1.3
    bt = np.linspace(-40.0, -8.0, 5)
    brow_p = s.eye_phi + s.brow_gap + 2.5 * np.cos(np.radians((bt + 24.0) * 4.0))
    brows_t = np.concatenate([bt, -bt[::-1]])
    brows_p = np.concatenate([brow_p, brow_p[::-1]])
    nose_t = np.array([0, 0, 0, 0, -8, -4, 0, 4, 8], float)
    base = s.nose_tip - 4.0
    nose_p = np.concatenate([np.linspace(s.eye_phi + 1, s.nose_tip, 4), [base + 1, base, base - 0.5, base, base + 1]])
    ring = np.radians([180, 120, 60, 0, -60, -120])
    eye_t = s.eye_w * np.cos(ring)
    eye_p = s.eye_h * np.sin(ring) + s.eye_phi
    eyes_t = np.concatenate([-s.eye_theta + eye_t, s.eye_theta + eye_t])
    eyes_p = np.concatenate([eye_p, eye_p])
    outer = np.radians(np.linspace(180, -180, 13)[:-1])
    inner = np.radians(np.linspace(180, -180, 9)[:-1])
    m = s.mouth_phi
    mouth_t = np.concatenate([s.mouth_w * np.cos(outer), 0.8 * s.mouth_w * np.cos(inner)])
    mouth_p = np.concatenate([m + s.lips * np.sin(outer), m + 0.3 * s.lips * np.sin(inner)])
    theta = np.concatenate([jaw_t, brows_t, nose_t, eyes_t, mouth_t])
    phi = np.concatenate([jaw_p, brows_p, nose_p, eyes_p, mouth_p])
    return theta, phi


def landmarks_3d(s: HeadShape) -> np.ndarray:
    """(68, 3) landmark points on the surface, in the head frame."""
    return surface(*landmark_params(s), s)


def grid(n_theta: int = 55, n_phi: int = 41) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Parameter grid, denser over the face, and its triangles (counter-clockwise on screen)."""
    t = np.linspace(-1.0, 1.0, n_theta)
    theta = 180.0 * (0.3 * t + 0.7 * t**3)  # 2 degrees apart at the front, 15 at the back
    p = np.linspace(-1.0, 1.0, n_phi)
    phi = 6.0 + 84.0 * (0.45 * p + 0.55 * p**3)  # -78 (under the chin) .. 90 (the crown: no hole)
    tg, pg = np.meshgrid(theta, phi)
    i = np.arange((n_phi - 1) * (n_theta - 1))
    r, c = i // (n_theta - 1), i % (n_theta - 1)
    v00 = r * n_theta + c
    v01, v10 = v00 + 1, v00 + n_theta
    tris = np.concatenate([np.stack([v00, v01, v10 + 1], 1), np.stack([v00, v10 + 1, v10], 1)])
    return tg.reshape(-1), pg.reshape(-1), tris


def albedo(theta, phi, s: HeadShape, colours: dict) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3) BGR reflectance in 0..1 at parameters theta, phi (1-D arrays), and the (N,) hair mask.

    Each feature is painted only on the pixels of its region (index subsets): most of a
    head is plain skin or hair.
    """
    at = np.abs(theta)
    out = np.tile(np.asarray(colours["skin"], float), (len(theta), 1))
    # uneven skin: broad blotches, redder cheeks
    a, b = colours.get("blotch", (0.0, 0.0))
    out *= (1.0 + 0.05 * np.sin(np.radians(theta) * 5.0 + a) * np.sin(np.radians(phi) * 6.0 + b))[:, None]
    out[:, 2] *= 1.0 + 0.1 * np.exp(-_ellipse(at, phi, 30.0, -14.0, 12.0, 10.0))
    if s.beard > 0:  # stubble: a darker lower face
        b = np.flatnonzero((phi < s.nose_tip) & (at < 85))
        out[b] *= 1.0 - s.beard * 0.55 * (_band(phi[b], -75, s.nose_tip - 6, 3) * _band(at[b], 0, 70, 8))[:, None]
    e = np.flatnonzero(np.abs(at - 99.0) < 12.0)
    out[e] = _ear_colour(out[e], at[e], phi[e], s)
    f = np.flatnonzero((at < 48) & (phi > s.mouth_phi - 2.0 * s.lips) & (phi < s.eye_phi + s.brow_gap + 6.0))
    out[f] = _face_colour(out[f], theta[f], phi[f], s, colours)
    hair = hair_mask(theta, phi, s)
    return _mix(out, np.asarray(colours["hair"], float), hair), hair


def _ear_colour(out, at, phi, s: HeadShape):
    ear = _ear_mask(at, phi, s)
    inner = _smooth((1.0 - ((at - 100.0) / 6.0) ** 2 - ((phi - s.eye_phi + 13.0) / 10.0) ** 2) * 2.0)
    out = out * (1.0 - 0.35 * inner * ear)[:, None]
    out[:, 2] *= 1.0 + 0.08 * ear
    return out


def _face_colour(out, theta, phi, s: HeadShape, colours):
    at = np.abs(theta)
    lip = _smooth((1.0 - _ellipse(theta, phi, 0, s.mouth_phi, s.mouth_w, s.lips)) * 3.0)
    out = _mix(out, np.asarray(colours["lips"], float), lip)
    line = _band(phi - s.mouth_phi, -0.5, 0.5, 0.6) * _band(at, 0, s.mouth_w * 0.95, 1.5)
    out = _mix(out, out * 0.25, line)
    nostril = np.exp(-_ellipse(at, phi, s.nose_w * 0.45, s.nose_tip - 4.5, 2.2, 1.3) * 2.0)
    out = _mix(out, out * 0.2, nostril)
    out = _eyes(out, theta, phi, s, colours)
    out = _brows(out, at, phi, s, colours)
    return _glasses(out, at, phi, s) if s.glasses > 0 else out


def _glasses(out, at, phi, s: HeadShape):
    """Dark frames: a ring around each eye and a bridge over the nose."""
    ring = np.abs(np.sqrt(_ellipse(at, phi, s.eye_theta, s.eye_phi + 0.5, 1.55 * s.eye_w, 2.6 * s.eye_h)) - 1.0)
    bridge = _band(at, 0, s.eye_theta - 1.5 * s.eye_w, 0.5) * _band(phi, s.eye_phi + 1, s.eye_phi + 2.5, 0.5)
    frame = np.maximum(_smooth((0.12 - ring) * 12.0), bridge)
    return _mix(out, out * (1.0 - s.glasses), frame)


def _eyes(out, theta, phi, s: HeadShape, colours):
    at = np.abs(theta)
    dt = (at - s.eye_theta) / s.eye_w
    dp = (phi - s.eye_phi) / s.eye_h
    lid = 1.0 - np.abs(dt) ** 2  # almond: the opening narrows towards the corners
    open_ = _smooth((lid - np.abs(dp)) * 4.0)
    # shadowed socket, then lashes: a dark rim, thicker on the upper lid
    out = out * (1.0 - 0.22 * np.exp(-((dt / 1.5) ** 2) - ((phi - s.eye_phi - 1.0) / (2.6 * s.eye_h)) ** 2))[:, None]
    outline = _smooth((lid + np.where(dp > 0, 0.6, 0.3) - np.abs(dp)) * 4.0) * (1 - open_)
    out = _mix(out, out * 0.3, outline * 0.9)
    # the iris looks `gaze` degrees to +theta on both eyes
    iris_t = (at - s.eye_theta - colours.get("gaze", 0.0) * np.sign(theta)) / s.eye_w
    iris = _smooth((0.42 - np.hypot(iris_t, (phi - s.eye_phi) / s.eye_w)) * 12.0)
    sclera = np.broadcast_to(np.asarray(colours["sclera"], float), out.shape)
    eye = _mix(sclera, np.asarray(colours["iris"], float), iris)
    return _mix(out, eye, open_)


def _brows(out, at, phi, s: HeadShape, colours):
    centre = s.eye_phi + s.brow_gap + 2.5 * np.cos(np.radians((-at + 24.0) * 4.0))
    mask = _band(phi - centre, -s.brow_thick / 2, s.brow_thick / 2, 0.8) * _band(at, 7, 40, 2.5)
    return _mix(out, np.asarray(colours["brows"], float), mask * 0.9)


def _mix(a, b, t):
    t = np.asarray(t)[..., None]
    return a + (b - a) * t
