"""A small vectorised triangle rasteriser with a z-buffer, in numpy.

Triangles are tiny (a few pixels) in the synthetic head renders, so instead of scanning each
triangle in Python, triangles are grouped by the size of their pixel box, each group tests
the pixel centres of its boxes against per-triangle plane equations in one broadcast, and the
nearest candidate of each pixel wins through one `np.maximum.at` on a key that packs
(depth, candidate id). Arrays stay 1-D where they are gathered: numpy gathers rows of 2-D
arrays several times slower.
"""

from __future__ import annotations

import numpy as np

_DEPTH_LEVELS = (1 << 23) - 1
_ID_BITS = 32
_BOX_SIZES = (1, 2, 3, 4, 6, 9, 16, 32)
_EPS = 1e-7  # pixel centres on a shared edge belong to both triangles: no cracks


def rasterize(x, y, depth, tris: np.ndarray, height: int, width: int, cull: bool = True):
    """Visible triangle and barycentric weights of every covered pixel.

    `x`, `y` (V,) pixel coordinates (pixel i spans [i, i+1)), `depth` (V,) larger = nearer,
    `tris` (T, 3) vertex indices, counter-clockwise on screen (x right, y down) when facing
    the camera; with `cull` the others are dropped. Returns (pixels (P,) flat indices,
    tri (P,) triangle indices, bary (P, 3)) for the P covered pixels.
    """
    ia, ib, ic = np.ascontiguousarray(tris.T)
    xa, xb, xc, ya, yb, yc = x[ia], x[ib], x[ic], y[ia], y[ib], y[ic]
    area = (xb - xa) * (yc - ya) - (yb - ya) * (xc - xa)
    # y down: counter-clockwise on screen has negative area
    ids = np.flatnonzero(area < 0) if cull else np.flatnonzero(area != 0)
    xa, xb, xc, ya, yb, yc, area = xa[ids], xb[ids], xc[ids], ya[ids], yb[ids], yc[ids], area[ids]
    x0 = np.maximum(np.ceil(np.minimum(np.minimum(xa, xb), xc) - 0.5), 0).astype(np.int64)
    y0 = np.maximum(np.ceil(np.minimum(np.minimum(ya, yb), yc) - 0.5), 0).astype(np.int64)
    x1 = np.minimum(np.floor(np.maximum(np.maximum(xa, xb), xc) - 0.5), width - 1).astype(np.int64)
    y1 = np.minimum(np.floor(np.maximum(np.maximum(ya, yb), yc) - 0.5), height - 1).astype(np.int64)
    keep = np.flatnonzero((x1 >= x0) & (y1 >= y0))  # boxes holding at least one pixel centre
    if not keep.size:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 3))
    ids, x0, y0, x1, y1 = ids[keep], x0[keep], y0[keep], x1[keep], y1[keep]
    extent = np.maximum(x1 - x0, y1 - y0) + 1
    if extent.max() > _BOX_SIZES[-1]:
        raise ValueError(f"a triangle spans {extent.max()} pixels; subdivide the mesh (limit {_BOX_SIZES[-1]})")
    corners = (xa[keep], xb[keep], xc[keep], ya[keep], yb[keep], yc[keep])
    planes = _planes(corners, area[keep], (depth[ia[ids]], depth[ib[ids]], depth[ic[ids]]))
    zmin, zmax = float(depth.min()), float(depth.max())
    zscale = _DEPTH_LEVELS / max(zmax - zmin, 1e-9)
    pix, rows, key = [], [], []
    prev = 0
    for k in _BOX_SIZES:
        sel = np.flatnonzero((extent > prev) & (extent <= k))
        prev = k
        if sel.size:
            p, z, g = _candidates(planes[sel], x0[sel], y0[sel], x1[sel], y1[sel], k, width)
            pix.append(p)
            rows.append(sel[g])
            key.append(((z - zmin) * zscale).astype(np.int64))
    pix, rows, key = np.concatenate(pix), np.concatenate(rows), np.concatenate(key)
    buf = np.full(height * width, -1, np.int64)
    np.maximum.at(buf, pix, (key << _ID_BITS) | np.arange(pix.size, dtype=np.int64))
    covered = np.flatnonzero(buf >= 0)
    row = rows[buf[covered] & ((1 << _ID_BITS) - 1)]
    return covered, ids[row], _weights(np.take(planes, row, axis=0), covered, width)


def _weights(planes: np.ndarray, pixels: np.ndarray, width: int) -> np.ndarray:
    """(P, 3) barycentric weights of the pixel centres from their triangles' planes, clipped to
    the triangle (a centre on an edge may sit a rounding error outside)."""
    px = (pixels % width + 0.5)[:, None]
    py = (pixels // width + 0.5)[:, None]
    w = np.clip(planes[:, 0:9:3] * px + planes[:, 1:9:3] * py + planes[:, 2:9:3], 0.0, 1.0)
    return w / w.sum(1, keepdims=True).clip(1e-12)


def _planes(corners, area, depths) -> np.ndarray:
    """(T, 12): (x, y, 1) coefficients of the weights of vertices a, b, c and of the depth."""
    ax, bx, cx, ay, by, cy = corners
    za, zb, zc = depths
    inv = 1.0 / area
    q = np.empty((len(area), 12))
    # the weight of vertex a at p is cross(b - p, c - p) / area, linear in p
    q[:, 0], q[:, 1], q[:, 2] = (by - cy) * inv, (cx - bx) * inv, (bx * cy - by * cx) * inv
    q[:, 3], q[:, 4], q[:, 5] = (cy - ay) * inv, (ax - cx) * inv, (cx * ay - cy * ax) * inv
    q[:, 6:9] = -q[:, 0:3] - q[:, 3:6]
    q[:, 8] += 1.0
    q[:, 9:12] = q[:, 0:3] * za[:, None] + q[:, 3:6] * zb[:, None] + q[:, 6:9] * zc[:, None]
    return q


def _candidates(planes, x0, y0, x1, y1, k, width):
    """Pixels of the k x k boxes inside their triangle: (flat pixel index, depth, group index)."""
    off = np.arange(k)
    ix = x0[:, None, None] + off[None, None, :]  # (G, 1, k)
    iy = y0[:, None, None] + off[None, :, None]  # (G, k, 1)
    inside = (ix <= x1[:, None, None]) & (iy <= y1[:, None, None])
    px, py = ix + 0.5, iy + 0.5
    q = planes[:, :, None, None]
    for j in range(0, 9, 3):
        # an edge function is a row term plus a column term: one full-size add per edge
        inside &= (q[:, j] * px + q[:, j + 2]) + q[:, j + 1] * py >= -_EPS
    g, r, c = np.nonzero(inside)
    cx, cy = x0[g] + c, y0[g] + r
    z = planes[g, 9] * (cx + 0.5) + planes[g, 10] * (cy + 0.5) + planes[g, 11]
    return cy * width + cx, z, g
