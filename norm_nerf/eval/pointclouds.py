"""Point-cloud files for evaluation: read points (from a cloud or a mesh) and write distance-coloured clouds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from jaxtyping import Float

RED, GREEN, BLUE, WHITE = (np.array(c, dtype=np.float64) for c in ((1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 1)))


def read_points(path: Path | str) -> Float[np.ndarray, "n 3"]:
    """The vertices of a point cloud or mesh file (PLY, OBJ, ...) as an (N, 3) float64 array."""
    import trimesh

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: point cloud file not found")
    loaded = trimesh.load(path, process=False)
    if isinstance(loaded, trimesh.Scene):
        loaded = loaded.to_geometry() if hasattr(loaded, "to_geometry") else loaded.dump(concatenate=True)
    points = np.asarray(getattr(loaded, "vertices", np.zeros((0, 3))), dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3 or len(points) == 0:
        raise ValueError(f"{path}: no 3-D points in the file")
    return points


def error_colors(dist: Float[np.ndarray, "n"], vis_dist: float, max_dist: float) -> Float[np.ndarray, "n 3"]:  # noqa: F821
    """White (0) to red (``vis_dist`` and more) by distance; green for distances of ``max_dist`` and more."""
    alpha = (np.clip(dist, 0.0, vis_dist) / vis_dist)[:, None]
    colors = RED * alpha + WHITE * (1.0 - alpha)
    colors[dist >= max_dist] = GREEN
    return colors


def write_colored_cloud(path: Path, points: Float[np.ndarray, "n 3"], colors: Float[np.ndarray, "n 3"]) -> None:
    """Binary PLY point cloud with per-point RGB colours in [0, 1]."""
    import trimesh

    rgba = np.concatenate([np.round(np.clip(colors, 0, 1) * 255), np.full((len(colors), 1), 255)], axis=1)
    trimesh.PointCloud(points, colors=rgba.astype(np.uint8)).export(path)
