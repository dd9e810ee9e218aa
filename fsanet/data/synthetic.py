"""Procedural synthetic heads with exact (yaw, pitch, roll) labels, in the 300W-LP convention.

Each head is a random `head_mesh.HeadShape` with random skin, hair, eye and lip colours,
turned by `fsanet.pose.euler_to_matrix(yaw, pitch, roll)`, projected orthographically (the
weak perspective of 300W-LP, so the label is exactly the pose seen), shaded with a random
light, drawn over a random background with shoulders, then blurred, noised and sometimes
JPEG-compressed. The 64x64 crop is the official one (`fsanet.preprocess.official_crop`) on
the head's 68 projected 3-D landmarks, like 300W-LP's crops.

Head i depends only on (seed, i): `load(i)` renders it on demand, so DataLoader workers can
render in parallel, and the same (seed, i) gives the same bytes on every run.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, fields
from functools import lru_cache
from pathlib import Path

import numpy as np

from fsanet import pose as P
from fsanet.data import head_mesh as H
from fsanet.data import head_scene as S
from fsanet.data.base import FaceSet
from fsanet.errors import DataError
from fsanet.limits import MAX_FACES, check_count
from fsanet.preprocess import INPUT_SIZE, MARGIN, official_crop

SPEC = re.compile(r"^synthetic(?::(?P<count>[^:]*)(?::(?P<seed>[^:]*))?)?$")
DEFAULT_COUNT = 2000
_BODY_FOLLOWS = np.array([0.3, 0.3, 0.6])  # fraction of (yaw, pitch, roll) the shoulders follow
_POSE_STREAM = 1
_HEAD_STREAM = 2


@dataclass(frozen=True)
class SynthOptions:
    """How heads are drawn. Angles in degrees.

    Default pose distribution (close to 300W-LP's): yaw uniform in +-yaw_range; pitch and roll
    logistic (near-normal) with standard deviations pitch_sd and roll_sd, truncated to
    +-pitch_range and +-roll_range. `uniform=True` draws all three uniformly in their range.
    """

    size: int = 128  # side of the full rendered image
    yaw_range: float = 90.0
    pitch_range: float = 60.0
    roll_range: float = 45.0
    pitch_sd: float = 16.0
    roll_sd: float = 12.0
    uniform: bool = False
    fill: tuple[float, float] = (0.5, 0.9)  # the official crop box's side over the image side

    def check(self) -> SynthOptions:
        if not 64 <= self.size <= 1024:
            raise DataError(f"synthetic: size={self.size} out of range; use 64..1024 pixels")
        for name in ("yaw_range", "pitch_range", "roll_range"):
            if not 0 <= getattr(self, name) <= 180:
                raise DataError(f"synthetic: {name}={getattr(self, name)} must be within 0..180 degrees")
        if self.pitch_sd <= 0 or self.roll_sd <= 0:
            raise DataError("synthetic: pitch_sd and roll_sd must be positive")
        lo, hi = self.fill
        if not 0.2 <= lo <= hi <= 1.0:
            raise DataError(f"synthetic: fill={self.fill} must satisfy 0.2 <= low <= high <= 1")
        return self


@dataclass
class SynthHead:
    image: np.ndarray  # (size, size, 3) BGR uint8
    landmarks: np.ndarray  # (68, 2) x, y pixels
    pose: np.ndarray  # (3,) yaw, pitch, roll degrees
    model_landmarks: np.ndarray  # (68, 3) the same landmarks on the unturned head (head frame)


def synthetic_faces(count: int, seed: int = 0, **options) -> FaceSet:
    """`count` synthetic heads, rendered lazily from (seed, i). Options: the `SynthOptions`
    fields, or `poses=` an (count, 3) array of (yaw, pitch, roll) to render instead of drawing."""
    count, seed = _check_count_seed(count, seed)
    given = options.pop("poses", None)
    opts = _options(options)
    poses = sample_poses(count, seed, opts) if given is None else _check_poses(given, count)
    source = _Source(seed, poses, opts)
    names = [f"synthetic[{seed}:{i}]" for i in range(count)]
    return FaceSet(f"synthetic:{count}:{seed}", names, source.load, poses.astype(np.float32), {}, source.raw)


@dataclass
class _Source:
    """The loader of a synthetic set: a plain object, so a FaceSet pickles into spawned workers."""

    seed: int
    poses: np.ndarray
    opts: SynthOptions

    def raw(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Full image (size x size BGR) and its (68, 2) landmarks."""
        head = render(self.seed, _index(i, len(self.poses)), self.poses[i], self.opts)
        return head.image, head.landmarks

    def load(self, i: int) -> np.ndarray:
        """The official 64x64 crop."""
        return official_crop(*self.raw(i))


def open_spec(spec: str) -> FaceSet:
    """`synthetic`, `synthetic:N` or `synthetic:N:SEED` -> `synthetic_faces(N, SEED)`."""
    m = SPEC.match(spec)
    if not m:
        raise DataError(f"{spec!r}: not a synthetic data spec; write synthetic, synthetic:N or synthetic:N:SEED")
    count, seed = m.group("count"), m.group("seed")
    try:
        n = DEFAULT_COUNT if count in (None, "") else int(count)
        s = 0 if seed in (None, "") else int(seed)
    except ValueError:
        raise DataError(f"{spec!r}: N and SEED must be integers, as in synthetic:2000:0") from None
    check_count(n, MAX_FACES, f"{spec}: N (the number of heads)")  # before any pose is drawn
    return synthetic_faces(n, s)


def is_spec(path) -> bool:
    """A `synthetic[:N[:SEED]]` string, or a Path made from one that names no existing file
    (stages that turn their argument into a Path first still reach the generator)."""
    if isinstance(path, str):
        return path.split(":", 1)[0] == "synthetic"
    return isinstance(path, Path) and is_spec(str(path)) and not os.path.exists(path)  # False for too long a name


def sample_poses(count: int, seed: int, opts: SynthOptions) -> np.ndarray:
    """(count, 3) poses; row i does not depend on count (one uniform stream, read in order)."""
    u = np.random.default_rng([seed, _POSE_STREAM]).random((count, 3))
    ranges = np.array([opts.yaw_range, opts.pitch_range, opts.roll_range])
    if opts.uniform:
        return (2.0 * u - 1.0) * ranges
    out = np.empty((count, 3))
    out[:, 0] = (2.0 * u[:, 0] - 1.0) * opts.yaw_range
    out[:, 1] = _truncated_logistic(u[:, 1], opts.pitch_sd, opts.pitch_range)
    out[:, 2] = _truncated_logistic(u[:, 2], opts.roll_sd, opts.roll_range)
    return out


def _truncated_logistic(u, sd: float, limit: float):
    """Inverse CDF of a logistic with standard deviation `sd`, truncated to +-limit."""
    s = sd * np.sqrt(3.0) / np.pi
    lo, hi = 1.0 / (1.0 + np.exp(limit / s)), 1.0 / (1.0 + np.exp(-limit / s))
    p = lo + u * (hi - lo)
    return s * np.log(p / (1.0 - p))


# --- one head -----------------------------------------------------------------------------


def render(seed: int, i: int, angles, opts: SynthOptions = SynthOptions()) -> SynthHead:
    """Head i of `seed`, turned to `angles` (yaw, pitch, roll), on a size x size canvas."""
    from fsanet.data.raster import rasterize

    rng = np.random.default_rng([seed, _HEAD_STREAM, i])
    scene = S.sample_scene(rng)
    rot = P.euler_to_matrix(*angles)
    size = opts.size
    theta, phi, _ = _head_grid()
    lm_theta, lm_phi = H.landmark_params(scene.shape)
    # one surface evaluation for the mesh and the landmarks (most of its cost is per call)
    pts = H.surface(
        np.concatenate([theta.reshape(-1), lm_theta]), np.concatenate([phi.reshape(-1), lm_phi]), scene.shape
    )
    head, model = pts[: theta.size], pts[theta.size :]
    lm = model @ rot.T
    scale, shift = _placement(lm, size, opts, rng)
    image = S.background(rng, size)
    verts, normals, attrs, tris, base = _meshes(head, rot, angles)
    x, y = verts[:, 0] * scale + shift[0], verts[:, 1] * scale + shift[1]
    S.shoulders(image, rng, base[:2] * scale + shift, scale, angles[2] * _BODY_FOLLOWS[2])
    pix, tri, bary = rasterize(x, y, verts[:, 2], tris, size, size)
    colour = _shade(scene, np.take(tris, tri, axis=0), bary, np.concatenate([normals, attrs], 1).T.copy())
    image.reshape(-1, 3)[pix] = colour
    image = S.camera(rng, image)
    landmarks = lm[:, :2] * scale + shift
    return SynthHead(image, landmarks, np.asarray(angles, dtype=np.float64), model)


def _placement(lm: np.ndarray, size: int, opts: SynthOptions, rng) -> tuple[float, np.ndarray]:
    """Pixels per unit and offset so the official crop box fills `fill` of the image, inside it."""
    x0, y0, x1, y1 = lm[:, 0].min(), lm[:, 1].min(), lm[:, 0].max(), lm[:, 1].max()
    side = (1.0 + 2 * MARGIN) * max(x1 - x0, y1 - y0)
    scale = rng.uniform(*opts.fill) * (size - 2) / side
    w, h = (1 + 2 * MARGIN) * (x1 - x0) * scale, (1 + 2 * MARGIN) * (y1 - y0) * scale
    cx = rng.uniform(w / 2 + 1, size - 1 - w / 2) if size - 2 > w else size / 2
    cy = rng.uniform(h / 2 + 1, size - 1 - h / 2) if size - 2 > h else size / 2
    return scale, np.array([cx - (x0 + x1) / 2 * scale, cy - (y0 + y1) / 2 * scale])


@lru_cache(maxsize=1)
def _head_grid():
    """(n_phi, n_theta) parameter grids and the triangles over their flattened vertices."""
    theta, phi, tris = H.grid()
    rows = int(np.count_nonzero(theta == theta[0]))
    return theta.reshape(rows, -1), phi.reshape(rows, -1), tris


def _meshes(head: np.ndarray, rot: np.ndarray, angles):
    """Head (its surface on the grid, head frame) and neck in the camera frame: vertices,
    normals, (theta, phi, neck) per vertex, triangles and
    the centre of the neck's base. The neck's top turns with the head, its base (the body) by
    `_BODY_FOLLOWS` of each angle: a person tilting the head sideways often leans the body too,
    and 300W-LP's rolled faces mostly come with rolled shoulders."""
    theta, phi, tris = _head_grid()
    normals = _grid_normals(head.reshape(theta.shape + (3,)), outward_rows_first=True).reshape(-1, 3)
    neck, neck_n, neck_tris, base = _neck(rot, np.asarray(angles) * _BODY_FOLLOWS)
    verts = np.concatenate([head @ rot.T, neck])
    normals = np.concatenate([normals @ rot.T, neck_n])
    attrs = np.zeros((len(verts), 3))
    attrs[: len(head), 0], attrs[: len(head), 1] = theta.reshape(-1), phi.reshape(-1)
    attrs[len(head) :, 2] = 1.0
    attrs[len(head) :, 1] = np.repeat(_neck_template()[1], len(neck) // len(_neck_template()[1]))  # 0 top .. 1 base
    return verts, normals, attrs, np.concatenate([tris, neck_tris + len(head)]), base


@lru_cache(maxsize=1)
def _neck_template(n_around: int = 24, n_along: int = 6):
    """A flared cylinder below the skull (head frame), its rows' blend weights and triangles."""
    alpha = np.linspace(-np.pi, np.pi, n_around)
    t = np.linspace(0.0, 1.0, n_along)
    a, tt = np.meshgrid(alpha, t)
    r = 0.6 * (1.0 + 0.2 * tt**2)
    local = np.stack([r * np.sin(a), 0.5 + 1.5 * tt, -0.25 + r * np.cos(a)], -1)
    i = np.arange((n_along - 1) * (n_around - 1))
    v00 = (i // (n_around - 1)) * n_around + i % (n_around - 1)
    v01, v10 = v00 + 1, v00 + n_around
    tris = np.concatenate([np.stack([v00, v10 + 1, v01], 1), np.stack([v00, v10, v10 + 1], 1)])
    return local, t, tris


def _neck(rot, body_angles):
    local, t, tris = _neck_template()
    body = P.euler_to_matrix(*body_angles)
    mats = rot[None] * (1 - t)[:, None, None] + body[None] * t[:, None, None]
    pts = np.einsum("rij,rcj->rci", mats, local)
    normals = _grid_normals(pts, outward_rows_first=False).reshape(-1, 3)
    return pts.reshape(-1, 3), normals, tris, pts[-1].mean(0)


def _grid_normals(pts: np.ndarray, outward_rows_first: bool) -> np.ndarray:
    d_row, d_col = np.gradient(pts, axis=(0, 1))
    n = np.cross(d_row, d_col) if outward_rows_first else np.cross(d_col, d_row)
    n /= np.linalg.norm(n, axis=-1, keepdims=True).clip(1e-12)
    # a pole row (all its points at one place) has no normal: use its neighbour row's mean
    for row, near in ((0, 1), (-1, -2)):
        if np.ptp(pts[row], axis=0).max() < 1e-9:
            mean = n[near].mean(0)
            n[row] = mean / max(float(np.linalg.norm(mean)), 1e-12)
    return n


def _shade(scene: S.Scene, vert_ids, bary, vertex_data) -> np.ndarray:
    """Lambert + ambient + a little specular on the per-pixel albedo, -> uint8 BGR.

    `vertex_data` (6, V): normal x, y, z, theta, phi, neck flag; interpolated per pixel with
    the barycentric weights (one einsum over a column-major gather: row gathers are slow).
    """
    v = np.einsum("kpj,pj->pk", vertex_data[:, vert_ids], bary)
    n = v[:, :3] / np.sqrt((v[:, :3] ** 2).sum(1, keepdims=True)).clip(1e-9)
    a = v[:, 3:]
    neck = a[:, 2] > 0.5
    head = np.flatnonzero(~neck)
    albedo, hair = np.empty((len(a), 3)), np.zeros(len(a))
    albedo[head], hair[head] = H.albedo(a[head, 0], a[head, 1], scene.shape, scene.colours)
    # the neck, in the jaw's shadow at its top
    shade = 0.4 + 0.45 * np.clip((a[neck, 1] - 0.3) / 0.35, 0.0, 1.0)
    albedo[neck] = np.asarray(scene.colours["skin"]) * shade[:, None]
    lam = np.clip(n @ scene.light, 0.0, 1.0)
    half = scene.light + np.array([0.0, 0.0, 1.0])
    half /= np.linalg.norm(half)
    spec = scene.specular * np.clip(n @ half, 0.0, 1.0) ** 24
    shine = 1.0 - 0.8 * hair
    rgb = albedo * (scene.ambient + scene.diffuse * lam)[:, None] + (spec * shine)[:, None]
    # auto-exposure: photos of dark skin in dim light are brightened, as a camera does
    gain = np.clip(scene.exposure / max(float(rgb.mean()), 1e-3), 1.0, 2.5)
    return np.clip(rgb * (255.0 * gain), 0, 255).astype(np.uint8)


# --- argument checks and files -------------------------------------------------------------


def _check_count_seed(count, seed) -> tuple[int, int]:
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or not 0 < count <= MAX_FACES:
        raise DataError(
            f"synthetic: count={count!r} must be an integer from 1 to {MAX_FACES:,} "
            "(the number of heads; fsanet.limits.MAX_FACES is the documented upper bound)"
        )
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise DataError(f"synthetic: seed={seed!r} must be a non-negative integer")
    return int(count), int(seed)


def _options(options: dict) -> SynthOptions:
    known = {f.name for f in fields(SynthOptions)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise DataError(f"synthetic: unknown option(s) {', '.join(unknown)}; known: poses, {', '.join(sorted(known))}")
    return SynthOptions(**options).check()


def _check_poses(poses, count: int) -> np.ndarray:
    a = np.asarray(poses, dtype=np.float64)
    if a.shape != (count, 3) or not np.isfinite(a).all():
        raise DataError(f"synthetic: poses must be a finite ({count}, 3) array of yaw, pitch, roll; got {a.shape}")
    return a


def _index(i, count: int) -> int:
    if not 0 <= i < count:
        raise IndexError(f"synthetic head {i} out of range 0..{count - 1}")
    return int(i)


def render_crops(faces: FaceSet, workers: int = 1, chunk: int = 256) -> np.ndarray:
    """All crops of a set as (N, 64, 64, 3) uint8, rendered by `workers` processes in chunks
    (the bytes do not depend on `workers`: head i depends only on (seed, i))."""
    if workers < 1:
        raise DataError(f"synthetic: workers={workers} must be at least 1")
    if workers == 1 or len(faces) <= chunk:
        return faces.images(progress=True)
    from concurrent.futures import ProcessPoolExecutor

    starts = range(0, len(faces), chunk)
    with ProcessPoolExecutor(workers) as pool:
        parts = pool.map(_load_range, [(faces.loader, a, min(a + chunk, len(faces))) for a in starts])
        return np.concatenate(list(parts))


def _load_range(job) -> np.ndarray:
    load, start, stop = job
    return np.stack([load(i) for i in range(start, stop)])


def write_npz(faces: FaceSet, path: str | Path, workers: int = 1) -> Path:
    """The faces as an official preprocessed `.npz` (`image` (N,64,64,3) uint8 BGR, `pose` (N,3))."""
    from fsanet.files import atomic_write

    images, poses = render_crops(faces, workers), np.asarray(faces.poses, dtype=np.float32)

    def write(tmp):
        with open(tmp, "wb") as f:
            np.savez_compressed(f, image=images, pose=poses)

    return atomic_write(path, write)


def contact_sheet(faces: FaceSet, path: str | Path, count: int = 64, columns: int = 8) -> Path:
    """A PNG grid of the first `count` crops with their pose axes drawn (x red, y green, z blue)."""
    import cv2

    from fsanet.files import atomic_write

    n = min(count, len(faces))
    tiles = []
    for i in range(n):
        tile = cv2.resize(faces.load(i), (2 * INPUT_SIZE, 2 * INPUT_SIZE), interpolation=cv2.INTER_NEAREST)
        P.draw_axes(tile, faces.poses[i], (INPUT_SIZE, INPUT_SIZE), size=40, thickness=1)  # axes at the centre
        tiles.append(tile)
    tiles += [np.zeros_like(tiles[0])] * (-n % columns)
    rows = [np.concatenate(tiles[r : r + columns], 1) for r in range(0, len(tiles), columns)]
    sheet = np.concatenate(rows, 0)

    def write(tmp):
        ok, buf = cv2.imencode(".png", sheet)
        Path(tmp).write_bytes(buf.tobytes())

    return atomic_write(path, write)


__all__ = [
    "SynthHead",
    "SynthOptions",
    "contact_sheet",
    "open_spec",
    "render",
    "render_crops",
    "synthetic_faces",
    "write_npz",
]
