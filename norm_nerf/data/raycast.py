"""Exact, deterministic ray casting against a triangle mesh (numpy, float64).

Every hit is decided by the same Moller-Trumbore test (:func:`intersect_pairs`). Two ways to choose which
(ray, triangle) pairs to test:

* :func:`cast_rays` - the plain twin: every ray against every triangle, in chunks. Any rays; slow.
* :func:`cast_camera` - pinhole-camera rays through pixel centres; a triangle is tested only against the pixels
  inside the bounding box of its projection (all pixels when it crosses the camera plane). The binning is
  conservative, so the result equals :func:`cast_rays` on the same rays (tests compare them).

The nearest hit wins; exact ties go to the lower face index, so results do not depend on chunking.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from jaxtyping import Float, Int

_BARY_TOL = 1e-9  # inclusive edges: a ray through a shared edge hits one of the two triangles, never neither
_DET_EPS = 1e-300


@dataclass(frozen=True)
class Hits:
    """Nearest hits of a set of rays; ``face == -1`` and ``t == inf`` where a ray hits nothing."""

    t: Float[np.ndarray, "n"]  # noqa: F821
    """Ray parameter of the hit (distance along the direction vector, in units of its length)."""
    face: Int[np.ndarray, "n"]  # noqa: F821
    """Index of the hit triangle, -1 for a miss."""
    bary: Float[np.ndarray, "n 2"]
    """Barycentric weights (b1, b2) of the triangle's vertices 1 and 2 at the hit (vertex 0 gets 1 - b1 - b2)."""

    @property
    def hit(self) -> np.ndarray:
        """Boolean mask of rays that hit something."""
        return self.face >= 0

    @staticmethod
    def empty(n: int) -> Hits:
        """No hits yet for ``n`` rays."""
        return Hits(np.full(n, np.inf), np.full(n, -1, dtype=np.int64), np.zeros((n, 2)))


def _dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise dot product with a fixed summation order (bitwise reproducible for any chunking)."""
    return a[:, 0] * b[:, 0] + a[:, 1] * b[:, 1] + a[:, 2] * b[:, 2]


def intersect_pairs(
    origins: Float[np.ndarray, "m 3"],
    dirs: Float[np.ndarray, "m 3"],
    v0: Float[np.ndarray, "m 3"],
    e1: Float[np.ndarray, "m 3"],
    e2: Float[np.ndarray, "m 3"],
) -> tuple[Float[np.ndarray, "m"], Float[np.ndarray, "m"], Float[np.ndarray, "m"], np.ndarray]:  # noqa: F821
    """Moller-Trumbore for matching rows: ray ``o + t d`` against triangle ``v0, v0 + e1, v0 + e2``.

    Returns ``t, b1, b2, valid`` with ``valid`` true for a hit at ``t > 0`` (both faces of a triangle count).
    """
    pvec = np.cross(dirs, e2)
    det = _dot(e1, pvec)
    ok = np.abs(det) > _DET_EPS
    inv = np.divide(1.0, det, out=np.zeros_like(det), where=ok)
    tvec = origins - v0
    b1 = _dot(tvec, pvec) * inv
    qvec = np.cross(tvec, e1)
    b2 = _dot(dirs, qvec) * inv
    t = _dot(e2, qvec) * inv
    valid = ok & (b1 >= -_BARY_TOL) & (b2 >= -_BARY_TOL) & (b1 + b2 <= 1.0 + _BARY_TOL) & (t > 0)
    return t, b1, b2, valid


def _keep_nearest(best: Hits, ray: np.ndarray, t: np.ndarray, face: np.ndarray, b1: np.ndarray, b2: np.ndarray):
    """Fold candidate hits into ``best`` in place (nearest t, then lowest face index)."""
    if ray.size == 0:
        return
    order = np.lexsort((face, t, ray))
    ray, t, face, b1, b2 = ray[order], t[order], face[order], b1[order], b2[order]
    first = np.flatnonzero(np.r_[True, ray[1:] != ray[:-1]])
    ray, t, face, b1, b2 = ray[first], t[first], face[first], b1[first], b2[first]
    cur_t, cur_f = best.t[ray], best.face[ray]
    better = (t < cur_t) | ((t == cur_t) & ((cur_f < 0) | (face < cur_f)))
    ray = ray[better]
    best.t[ray], best.face[ray] = t[better], face[better]
    best.bary[ray, 0], best.bary[ray, 1] = b1[better], b2[better]


def _triangles(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    if faces.ndim != 2 or faces.shape[1] != 3:
        raise ValueError(f"faces must have shape (F, 3), got {faces.shape}")
    v0 = vertices[faces[:, 0]]
    return v0, vertices[faces[:, 1]] - v0, vertices[faces[:, 2]] - v0


def cast_rays(
    origins: Float[np.ndarray, "n 3"],
    dirs: Float[np.ndarray, "n 3"],
    vertices: Float[np.ndarray, "v 3"],
    faces: Int[np.ndarray, "f 3"],
    max_pairs: int = 1 << 20,
) -> Hits:
    """Nearest hit of every ray against every triangle (brute force in chunks of ``max_pairs`` tests)."""
    origins = np.broadcast_to(np.asarray(origins, dtype=np.float64), np.shape(dirs))
    dirs = np.asarray(dirs, dtype=np.float64)
    v0, e1, e2 = _triangles(vertices, faces)
    n, f = len(dirs), len(v0)
    best = Hits.empty(n)
    if n == 0 or f == 0:
        return best
    rays_per_chunk = max(1, max_pairs // f)
    for start in range(0, n, rays_per_chunk):
        ray = np.repeat(np.arange(start, min(start + rays_per_chunk, n)), f)
        face = np.tile(np.arange(f), len(ray) // f)
        t, b1, b2, ok = intersect_pairs(origins[ray], dirs[ray], v0[face], e1[face], e2[face])
        _keep_nearest(best, ray[ok], t[ok], face[ok], b1[ok], b2[ok])
    return best


def pixel_directions(
    K: Float[np.ndarray, "3 3"], R: Float[np.ndarray, "3 3"], width: int, height: int
) -> Float[np.ndarray, "hw 3"]:
    """World directions through pixel centres (row-major), scaled so their camera-z component is 1.

    With these directions the ray parameter ``t`` of a hit is its depth along the optical axis.
    """
    cols, rows = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
    pix = np.stack([cols.ravel(), rows.ravel(), np.ones(width * height)], axis=1)
    cam = pix @ np.linalg.inv(np.asarray(K, dtype=np.float64)).T
    cam /= cam[:, 2:3]
    return cam @ np.asarray(R, dtype=np.float64)  # R^T applied to each row


def _pixel_boxes(
    vertices: np.ndarray, faces: np.ndarray, K: np.ndarray, R: np.ndarray, t: np.ndarray, width: int, height: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per triangle: index and the inclusive pixel box (c0, c1, r0, r1) of candidate pixel centres."""
    cam = vertices @ R.T + t
    z = cam[:, 2]
    near = 1e-12 * max(1.0, float(np.abs(cam).max()))
    tri_z = z[faces]
    in_front = tri_z.min(1) > near
    seen = tri_z.max(1) > 0  # a triangle entirely at z <= 0 cannot be hit by forward rays
    with np.errstate(divide="ignore", invalid="ignore"):
        u = K[0, 0] * cam[:, 0] / z + K[0, 1] * cam[:, 1] / z + K[0, 2]
        v = K[1, 1] * cam[:, 1] / z + K[1, 2]
    tri_u, tri_v = u[faces], v[faces]
    pad = 1e-6 * max(width, height)
    c0 = np.where(in_front, np.ceil(np.nan_to_num(tri_u.min(1)) - pad), 0)
    c1 = np.where(in_front, np.floor(np.nan_to_num(tri_u.max(1)) + pad), width - 1)
    r0 = np.where(in_front, np.ceil(np.nan_to_num(tri_v.min(1)) - pad), 0)
    r1 = np.where(in_front, np.floor(np.nan_to_num(tri_v.max(1)) + pad), height - 1)
    c0, c1 = np.clip(c0, 0, width - 1).astype(np.int64), np.clip(c1, -1, width - 1).astype(np.int64)
    r0, r1 = np.clip(r0, 0, height - 1).astype(np.int64), np.clip(r1, -1, height - 1).astype(np.int64)
    keep = seen & (c1 >= c0) & (r1 >= r0) & (c0 < width) & (r0 < height)
    idx = np.flatnonzero(keep)
    return idx, c0[idx], c1[idx], r0[idx], r1[idx]


def cast_camera(
    vertices: Float[np.ndarray, "v 3"],
    faces: Int[np.ndarray, "f 3"],
    K: Float[np.ndarray, "3 3"],
    R: Float[np.ndarray, "3 3"],
    t: Float[np.ndarray, "3"],
    width: int,
    height: int,
    max_pairs: int = 1 << 21,
) -> Hits:
    """Nearest hits of the rays through every pixel centre of an OpenCV pinhole camera (x_cam = R x + t).

    Rays are row-major (index ``row * width + col``) with directions from :func:`pixel_directions`, so
    ``Hits.t`` is the z-depth of each hit.
    """
    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    K, R, t = (np.asarray(a, dtype=np.float64) for a in (K, R, t))
    origin = -R.T @ t
    dirs = pixel_directions(K, R, width, height)
    best = Hits.empty(width * height)
    v0, e1, e2 = _triangles(vertices, faces)
    tri, c0, c1, r0, r1 = _pixel_boxes(vertices, faces, K, R, t, width, height)
    box_w = c1 - c0 + 1
    counts = box_w * (r1 - r0 + 1)
    ends = np.cumsum(counts)
    start = 0
    while start < len(tri):
        base = ends[start - 1] if start > 0 else 0
        stop = max(start + 1, int(np.searchsorted(ends, base + max_pairs, side="right")))
        sl = slice(start, stop)
        n_pairs = int(ends[stop - 1] - base)
        local_tri = np.repeat(np.arange(start, stop), counts[sl])
        offset = np.arange(n_pairs) - np.repeat(ends[sl] - counts[sl] - base, counts[sl])
        cols = c0[local_tri] + offset % box_w[local_tri]
        rows = r0[local_tri] + offset // box_w[local_tri]
        ray = rows * width + cols
        face = tri[local_tri]
        hit_t, b1, b2, ok = intersect_pairs(
            np.broadcast_to(origin, (n_pairs, 3)), dirs[ray], v0[face], e1[face], e2[face]
        )
        _keep_nearest(best, ray[ok], hit_t[ok], face[ok], b1[ok], b2[ok])
        start = stop
    return best
