"""Chamfer distance between surfaces, the way the DTU evaluation measures it (KD-trees, numpy, deterministic).

Surfaces become points with :mod:`norm_nerf.data.surface_sampling` (DTU's sampling and thinning).

* :func:`chamfer` - mean nearest-neighbour distances both ways, ignoring distances of ``max_dist`` and more.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from jaxtyping import Float

from norm_nerf.data.surface_sampling import check_points, surface_points


def nearest_distances(
    query: Float[np.ndarray, "n 3"], reference: Float[np.ndarray, "m 3"], tree=None, max_dist: float = math.inf
) -> Float[np.ndarray, "n"]:  # noqa: F821
    """Distance from each query point to its nearest reference point (KD-tree, all cores).

    Distances of ``max_dist`` or more come back as ``inf``: the search stops there, which keeps far-off points
    (a poor early reconstruction) from exploring the whole tree.
    """
    from scipy.spatial import cKDTree

    query = check_points("nearest_distances", query)
    if len(query) == 0:
        return np.zeros(0)
    if tree is None:
        reference = check_points("nearest_distances", reference)
        if len(reference) == 0:
            raise ValueError("nearest_distances: the reference point set is empty")
        tree = cKDTree(reference)
    dist, _ = tree.query(query, k=1, workers=-1, distance_upper_bound=max_dist)
    return dist


def capped_mean(dist: Float[np.ndarray, "n"], max_dist: float) -> tuple[float, int]:  # noqa: F821
    """Mean of the distances below ``max_dist`` (NaN when none) and how many there are."""
    used = dist[dist < max_dist]
    return (float(used.mean()) if len(used) else math.nan), int(len(used))


@dataclass
class ChamferFigures:
    """Accuracy (data to ground truth), completeness (ground truth to data) and their mean, with point counts."""

    mean_d2s: float
    """Accuracy: mean distance from data points to the nearest ground-truth point."""
    mean_s2d: float
    """Completeness: mean distance from ground-truth points to the nearest data point."""
    overall: float
    """(mean_d2s + mean_s2d) / 2, the chamfer distance reported for DTU."""
    counts: dict[str, int]
    """Number of points behind each figure."""

    def summary(self) -> dict:
        """JSON-ready figures (no per-point arrays)."""
        return {"mean_d2s": self.mean_d2s, "mean_s2d": self.mean_s2d, "overall": self.overall, "counts": self.counts}


@dataclass
class ChamferResult(ChamferFigures):
    """The figures of a plain chamfer plus the per-point distances for the error clouds."""

    d2s: np.ndarray = field(repr=False)
    """Per data point distance to the ground truth."""
    s2d: np.ndarray = field(repr=False)
    """Per ground-truth point distance to the data."""
    data: np.ndarray = field(repr=False)
    """The data points."""
    gt: np.ndarray = field(repr=False)
    """The ground-truth points."""


def chamfer(data: Float[np.ndarray, "n 3"], gt: Float[np.ndarray, "m 3"], max_dist: float = math.inf) -> ChamferResult:
    """Symmetric chamfer between point sets; distances of ``max_dist`` and more are left out of each mean."""
    data, gt = check_points("chamfer data", data), check_points("chamfer gt", gt)
    if len(data) == 0 or len(gt) == 0:
        raise ValueError(f"chamfer needs two non-empty point sets, got {len(data)} and {len(gt)} points")
    d2s = nearest_distances(data, gt, max_dist=max_dist)
    s2d = nearest_distances(gt, data, max_dist=max_dist)
    acc, n_acc = capped_mean(d2s, max_dist)
    comp, n_comp = capped_mean(s2d, max_dist)
    counts = {"data": len(data), "gt": len(gt), "d2s_used": n_acc, "s2d_used": n_comp}
    return ChamferResult(acc, comp, 0.5 * (acc + comp), counts, d2s, s2d, data, gt)


def mesh_chamfer(data_mesh, gt_mesh, density: float, max_dist: float = math.inf, seed: int = 0) -> ChamferResult:
    """Chamfer between two meshes (objects with ``vertices`` and ``faces``), both sampled and thinned alike."""
    data = surface_points(data_mesh.vertices, data_mesh.faces, density, seed)
    gt = surface_points(gt_mesh.vertices, gt_mesh.faces, density, seed)
    return chamfer(data, gt, max_dist)
