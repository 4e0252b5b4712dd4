"""Points on a mesh surface, the way the DTU evaluation samples it (numpy, deterministic).

* :func:`sample_surface` - a regular grid of points on every triangle (about one point per ``density``^2 of area)
  plus the mesh vertices, as the DTU evaluation samples a mesh.
* :func:`thin_points` - the DTU "downsample density" step: visit points in a random (seeded) order and keep a
  point unless an earlier kept point lies within ``min_dist``. Computed exactly, in vectorised rounds.
* :func:`surface_points` - both, at one density.

Geometry below both its users: the DTU ground-truth writer (:mod:`norm_nerf.data.dtu`) and the chamfer
evaluation (:mod:`norm_nerf.eval.chamfer`).
"""

from __future__ import annotations

import numpy as np
from jaxtyping import Bool, Float, Int


def check_points(name: str, points: np.ndarray) -> Float[np.ndarray, "n 3"]:
    """``points`` as float64 ``(N, 3)``; any other shape is a ValueError naming ``name``."""
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"{name}: expected points of shape (N, 3), got {points.shape}")
    return points


def sample_surface(
    vertices: Float[np.ndarray, "v 3"],
    faces: Int[np.ndarray, "f 3"],
    density: float,
    max_candidates: int = 1 << 22,
    max_points: int = 200_000_000,
) -> Float[np.ndarray, "n 3"]:
    """Points on the triangles at spacing about ``density`` (plus all vertices), deterministic.

    Each triangle (v0, e1 = v1 - v0, e2 = v2 - v0) gets the grid ``v0 + e1 (i + 1/2) / n1 + e2 (j + 1/2) / n2``
    with ``(i + 1/2) / n1 + (j + 1/2) / n2 < 1``, where ``n_k = floor(|e_k| / s)`` and
    ``s = density sqrt(|e1| |e2| / |e1 x e2|)``: about ``area / density^2`` points whatever the triangle's shape.
    Triangles smaller than about ``2 s`` are represented by their vertices only. More than ``max_points``
    points (about 5 GB) is refused with a ValueError: usually a mesh in the wrong units.
    """
    if not density > 0:
        raise ValueError(f"density must be positive, got {density}")
    vertices = check_points("sample_surface", vertices)
    faces = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    tri = vertices[faces]
    e1, e2 = tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
    l1, l2 = np.linalg.norm(e1, axis=1), np.linalg.norm(e2, axis=1)
    area2 = np.linalg.norm(np.cross(e1, e2), axis=1)
    good = area2 > 0
    step = np.zeros_like(l1)
    step[good] = density * np.sqrt(l1[good] * l2[good] / area2[good])
    n1 = np.where(good, np.floor(np.divide(l1, step, out=np.zeros_like(l1), where=good)), 0).astype(np.int64)
    n2 = np.where(good, np.floor(np.divide(l2, step, out=np.zeros_like(l2), where=good)), 0).astype(np.int64)
    counts = n1 * n2
    expected = len(vertices) + 0.5 * float(counts.sum())
    if expected > max_points:
        area = 0.5 * float(area2.sum())
        raise ValueError(
            f"sampling a surface of area {area:.4g} at density {density} would give about {expected:.3g} points "
            f"(limit {max_points:.3g}): is the mesh in the right units/coordinates?"
        )
    keep = np.flatnonzero(counts > 0)
    chunks = [vertices]
    ends = np.cumsum(counts[keep])
    start = 0
    while start < len(keep):
        base = ends[start - 1] if start > 0 else 0
        stop = max(start + 1, int(np.searchsorted(ends, base + max_candidates, side="right")))
        ids = keep[start:stop]
        c = counts[ids]
        tri_of = np.repeat(ids, c)
        local = np.arange(c.sum()) - np.repeat(np.cumsum(c) - c, c)
        a = (local // n2[tri_of] + 0.5) / n1[tri_of]
        b = (local % n2[tri_of] + 0.5) / n2[tri_of]
        inside = a + b < 1.0
        tri_of, a, b = tri_of[inside], a[inside, None], b[inside, None]
        chunks.append(tri[tri_of, 0] + a * e1[tri_of] + b * e2[tri_of])
        start = stop
    return np.concatenate(chunks)


def thin_points(points: Float[np.ndarray, "n 3"], min_dist: float, seed: int = 0) -> Bool[np.ndarray, "n"]:  # noqa: F821
    """Mask of the points kept by greedy thinning to ``min_dist`` in a random order drawn with ``seed``.

    Sequentially: visit the points in the shuffled order; a point is dropped if a kept point within ``min_dist``
    (inclusive) was visited before it. This is the lexicographically first maximal independent set of the
    ``min_dist`` neighbour graph, found here in rounds: a point is kept once all its earlier neighbours are
    dropped, dropped once one of them is kept. Kept points are more than ``min_dist`` apart; every dropped
    point lies within ``min_dist`` of a kept one.
    """
    from scipy.spatial import cKDTree

    points = check_points("thin_points", points)
    n = len(points)
    if min_dist <= 0 or n < 2:
        return np.ones(n, dtype=bool)
    rank = np.empty(n, dtype=np.int64)
    rank[np.random.default_rng(seed).permutation(n)] = np.arange(n)
    pairs = cKDTree(points).query_pairs(min_dist, output_type="ndarray")
    swap = rank[pairs[:, 0]] > rank[pairs[:, 1]]
    earlier = np.where(swap, pairs[:, 1], pairs[:, 0])
    later = np.where(swap, pairs[:, 0], pairs[:, 1])
    state = np.zeros(n, dtype=np.int8)  # 0 undecided, 1 kept, 2 dropped
    while True:
        blocked = np.zeros(n, dtype=bool)
        blocked[later[state[earlier] != 2]] = True  # some earlier neighbour not (yet) dropped
        state[(state == 0) & ~blocked] = 1
        dropped = np.zeros(n, dtype=bool)
        dropped[later[state[earlier] == 1]] = True
        state[(state == 0) & dropped] = 2
        pending = state[later] == 0
        if not pending.any():
            break
        earlier, later = earlier[pending], later[pending]
    state[state == 0] = 1  # points whose earlier neighbours were all dropped in the last round
    return state == 1


def surface_points(
    vertices: Float[np.ndarray, "v 3"], faces: Int[np.ndarray, "f 3"], density: float, seed: int = 0
) -> Float[np.ndarray, "n 3"]:
    """:func:`sample_surface` followed by :func:`thin_points` at the same ``density``."""
    pts = sample_surface(vertices, faces, density)
    return pts[thin_points(pts, density, seed)]
