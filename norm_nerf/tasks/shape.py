"""3-D occupancy: label grid points inside/outside a mesh, fit them with BCE, report IoU on a held-out
grid, export the learned surface with marching cubes.

Inside/outside labels come from ray parity along the three axes with a majority vote: for every grid
column the crossings of an axis-aligned ray with the triangles are counted, and a point is inside when
an odd number of crossings lies before it. Small holes in non-watertight meshes flip single rays; the
vote over three directions absorbs that (a warning says when the mesh is not watertight).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from jaxtyping import Bool, Float
from torch import Tensor

from norm_nerf.core.grids import voxel_grid
from norm_nerf.data.shapes import load_mesh
from norm_nerf.eval.plots import save_panels
from norm_nerf.tasks.common import (
    NetworkOptions,
    TablePreset,
    TaskConfig,
    TrainOptions,
    check_common,
    finish_run,
    fit_signal,
    network_defaults,
    train_defaults,
)
from norm_nerf.tasks.trainer import ConfigError, predict
from norm_nerf.utils.atomic import write_atomically
from norm_nerf.utils.console import notice

MIN_GRID = 4
"""Smallest training grid resolution per axis."""
MIN_EXPORT_RESOLUTION = 2
"""Smallest marching-cubes resolution per axis: a surface needs at least one cell of 2^3 samples."""


class MeshError(ValueError):
    """A user-facing problem with an input mesh."""


def load_shape(path: Path, margin: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """The task's input from a mesh file: read by :func:`norm_nerf.data.shapes.load_mesh` (the package's one mesh
    reader), normalised into ``[-1 + margin, 1 - margin]^3`` (aspect kept); ``(vertices, faces)``.

    Reading problems (missing file, no faces) are :class:`MeshError`; a mesh that is not watertight gets a warning.
    """
    try:
        mesh = load_mesh(path)
    except (ValueError, FileNotFoundError) as err:
        raise MeshError(str(err)) from None
    if not mesh.is_watertight:
        warnings.warn(
            f"{path}: mesh is not watertight; inside/outside labels use a 3-axis ray-parity vote",
            stacklevel=2,
        )
    return normalize_vertices(np.asarray(mesh.vertices, dtype=np.float64), margin), np.asarray(mesh.faces)


def normalize_vertices(vertices: np.ndarray, margin: float = 0.05) -> np.ndarray:
    """Centre the bounding box at 0 and scale its longest side to ``2 (1 - margin)``."""
    lo, hi = vertices.min(0), vertices.max(0)
    extent = float((hi - lo).max())
    if extent <= 0:
        raise MeshError("mesh is degenerate (zero extent)")
    return (vertices - (lo + hi) / 2) * (2 * (1 - margin) / extent)


def _parity_along(vertices: np.ndarray, faces: np.ndarray, axes: list[np.ndarray], axis: int) -> np.ndarray:
    """Inside-parity of grid points from rays along ``axis`` (grid indexed [x, y, z] by ``axes``)."""
    u_ax, v_ax = [a for a in range(3) if a != axis]
    tri = vertices[faces]  # (F, 3, 3)
    us, vs, ws = axes[u_ax], axes[v_ax], axes[axis]
    tu, tv = tri[..., u_ax], tri[..., v_ax]
    # candidate columns per triangle from its bounding box
    u0, u1 = np.searchsorted(us, tu.min(1)), np.searchsorted(us, tu.max(1), side="right")
    v0, v1 = np.searchsorted(vs, tv.min(1)), np.searchsorted(vs, tv.max(1), side="right")
    nu, nv = np.maximum(u1 - u0, 0), np.maximum(v1 - v0, 0)
    counts = nu * nv
    counts_grid = np.zeros((len(us), len(vs), len(ws) + 1), dtype=np.int32)
    if counts.sum() == 0:
        return np.zeros((len(us), len(vs), len(ws)), dtype=bool)
    f_idx = np.repeat(np.arange(len(faces)), counts)
    local = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    iu = u0[f_idx] + local // np.maximum(nv[f_idx], 1)
    iv = v0[f_idx] + local % np.maximum(nv[f_idx], 1)
    # A tiny irrational shift of the rays keeps them off shared triangle edges (no double counting).
    pu, pv = us[iu] + 1.3e-9 * np.sqrt(2.0), vs[iv] + 1.7e-9 * np.sqrt(3.0)
    a, b, c = tri[f_idx, 0], tri[f_idx, 1], tri[f_idx, 2]
    # 2-D barycentric coordinates in the (u, v) plane
    d = (b[:, u_ax] - a[:, u_ax]) * (c[:, v_ax] - a[:, v_ax]) - (c[:, u_ax] - a[:, u_ax]) * (b[:, v_ax] - a[:, v_ax])
    ok = np.abs(d) > 1e-15
    d = np.where(ok, d, 1.0)
    l1 = ((pu - a[:, u_ax]) * (c[:, v_ax] - a[:, v_ax]) - (c[:, u_ax] - a[:, u_ax]) * (pv - a[:, v_ax])) / d
    l2 = ((b[:, u_ax] - a[:, u_ax]) * (pv - a[:, v_ax]) - (pu - a[:, u_ax]) * (b[:, v_ax] - a[:, v_ax])) / d
    l0 = 1.0 - l1 - l2
    hit = ok & (l0 >= 0) & (l1 >= 0) & (l2 >= 0)
    w_hit = (l0 * a[:, axis] + l1 * b[:, axis] + l2 * c[:, axis])[hit]
    first_after = np.searchsorted(ws, w_hit)  # grid points at or after the crossing flip parity
    np.add.at(counts_grid, (iu[hit], iv[hit], first_after), 1)
    parity = np.cumsum(counts_grid, axis=2)[..., : len(ws)] % 2 == 1
    # back to [x, y, z] order
    order = [u_ax, v_ax, axis]
    return np.transpose(parity, np.argsort(order))


def occupancy(vertices: np.ndarray, faces: np.ndarray, axes: list[np.ndarray]) -> np.ndarray:
    """Inside/outside of the grid ``axes[0] x axes[1] x axes[2]`` (indexed [x, y, z]) by a 3-axis parity vote."""
    votes = sum(_parity_along(vertices, faces, axes, axis).astype(np.int8) for axis in range(3))
    return votes >= 2


def grid_axes(resolution: int, offset: float = 0.0) -> list[np.ndarray]:
    """Voxel-centre coordinates in [-1, 1] per axis, optionally shifted by ``offset`` voxels."""
    centres = (np.arange(resolution) + 0.5 + offset) / resolution * 2 - 1
    return [centres.copy() for _ in range(3)]


def iou(pred: Bool[Tensor, "*s"], target: Bool[Tensor, "*s"]) -> float:
    """Intersection over union of two boolean occupancy grids (1.0 when both are empty)."""
    union = (pred | target).sum().item()
    return 1.0 if union == 0 else (pred & target).sum().item() / union


class OccupancySignal:
    """Occupancy of a mesh on a training grid, IoU on a held-out grid shifted by half a voxel (and, by
    :meth:`train_grid_metrics`, on the training grid itself)."""

    metric_name = "iou"

    def __init__(self, vertices: np.ndarray, faces: np.ndarray, grid: int = 64, batch_size: int = 16384) -> None:
        if grid < MIN_GRID:
            raise MeshError(f"--grid must be >= {MIN_GRID}, got {grid}")
        if batch_size < 1:
            raise ValueError(f"--batch-size must be >= 1 (points per step), got {batch_size}")
        self.grid = grid
        self.batch_size = batch_size
        self.vertices, self.faces = vertices, faces
        occ = occupancy(vertices, faces, grid_axes(grid))  # [x, y, z]
        held = occupancy(vertices, faces, grid_axes(grid, offset=0.5))
        if not occ.any():
            raise MeshError("no grid point is inside the mesh: is it closed, and large enough for the grid?")
        # voxel_grid orders coordinates (x, y, z) for a volume indexed [z, y, x]
        self.labels = torch.from_numpy(np.ascontiguousarray(occ.transpose(2, 1, 0))).reshape(-1, 1).float()
        self.held_out = torch.from_numpy(np.ascontiguousarray(held.transpose(2, 1, 0))).reshape(-1, 1).bool()
        self.coords = voxel_grid((grid, grid, grid))
        self.eval_coords = self.coords + 1.0 / grid  # half a voxel in every direction

    def loss(self, pred: Float[Tensor, "b 1"], idx: Tensor | None = None) -> Tensor:
        target = self.labels.to(pred.device)
        return torch.nn.functional.binary_cross_entropy_with_logits(pred, target if idx is None else target[idx])

    def quick_metric(self, pred: Float[Tensor, "b 1"], loss: Tensor, idx: Tensor | None = None) -> float:
        target = self.labels.to(pred.device)
        target = target if idx is None else target[idx]
        return iou(pred > 0, target > 0.5)

    def metrics(self, pred: Float[Tensor, "p 1"]) -> dict[str, float]:
        inside = pred > 0
        accuracy = (inside == self.held_out).float().mean().item()
        return {"iou": iou(inside, self.held_out), "accuracy": accuracy}

    def train_grid_metrics(self, pred: Float[Tensor, "p 1"]) -> dict[str, float]:
        """IoU and accuracy of a prediction at the training grid points against their labels: the papers' protocol
        (the fitted occupancy scored on the points it was fitted to), beside the held-out ``iou`` of :meth:`metrics`."""
        inside, target = pred > 0, self.labels > 0.5
        accuracy = (inside == target).float().mean().item()
        return {"iou_train_grid": iou(inside, target), "accuracy_train_grid": accuracy}

    def export_mesh(
        self, net: torch.nn.Module, path: Path, resolution: int = 128, chunk: int = 65536
    ) -> tuple[Path, int]:
        """Marching cubes (PyMCubes) of the learned occupancy at probability 0.5, saved with trimesh.

        Returns the path and the number of triangles (0 when the network puts every sample on one side; the file
        then holds an empty mesh). The file (format from the suffix of ``path``) is written
        whole or not at all. ``resolution`` must be at least :data:`MIN_EXPORT_RESOLUTION`.
        """
        import mcubes
        import trimesh

        if resolution < MIN_EXPORT_RESOLUTION:
            raise ValueError(f"--export-resolution must be >= {MIN_EXPORT_RESOLUTION}, got {resolution}")
        coords = voxel_grid((resolution,) * 3)
        logits = predict(net, coords, chunk).reshape(resolution, resolution, resolution)  # [z, y, x]
        field = logits.permute(2, 1, 0).double().numpy()  # [x, y, z]
        verts, tris = mcubes.marching_cubes(field, 0.0)
        verts = (verts + 0.5) / resolution * 2 - 1
        mesh = trimesh.Trimesh(verts, tris, process=False)
        write_atomically(Path(path), lambda tmp: mesh.export(tmp, file_type=Path(path).suffix.lstrip(".").lower()))
        return path, len(tris)


def default_shape() -> tuple[np.ndarray, np.ndarray]:
    """The embedded default: a tilted torus (a hole and thin parts, no download), normalised."""
    import trimesh

    mesh = trimesh.creation.torus(major_radius=0.6, minor_radius=0.22, major_sections=96, minor_sections=48)
    mesh.apply_transform(trimesh.transformations.rotation_matrix(0.6, [1.0, 0.3, 0.0]))
    return normalize_vertices(np.asarray(mesh.vertices)), np.asarray(mesh.faces)


@dataclass
class ShapeTaskConfig(TaskConfig):
    """3-D occupancy of a mesh: BCE on grid labels, IoU on a held-out grid, marching-cubes export."""

    task = "shape"
    output_root = Path("outputs/shape")
    input_field = "mesh"
    metric = "iou"
    second_metric = ("iou_train_grid", "IoU on the training grid")
    # the papers' protocol: the fitted occupancy scored on the grid it was fitted to; the held-out IoU is what a fit
    # that aliases between the training voxels cannot pass
    curve_label = "train-mode IoU"
    presets = {
        # 4 octaves: with 10, PE aliases between the training voxels (held-out IoU 0.09 at 64^3, see README);
        # 4000 cosine-decayed steps of 2048 points: PE gains 0.0001 IoU from 2000 (docs/signal_tasks.md: budget sweeps)
        "cpu": TablePreset(("2x256",), 4000, ("--grid", "64", "--num-frequencies", "4", "--batch-size", "2048")),
        "paper": TablePreset(("2x256",), 10000, ("--grid", "128", "--num-frequencies", "4")),
    }

    network: NetworkOptions = network_defaults(depth=2, width=256)
    """The coordinate network (default 2x256)."""
    train: TrainOptions = train_defaults(steps=1000)
    """Optimisation (default 1000 steps)."""
    mesh: Path | None = None
    """Mesh file (.obj/.ply/.stl/...); default: a generated tilted torus."""
    grid: int = 64
    """Training grid resolution per axis (held-out grid: same size, shifted by half a voxel)."""
    batch_size: int = 16384
    """Points per training step, >= 1 (random grid points; a value >= grid^3 trains full batch)."""
    export_resolution: int = 128
    """Marching-cubes resolution of the exported surface per axis, >= 2."""

    def check_task(self) -> None:
        if self.grid < MIN_GRID:
            raise ConfigError(f"--grid must be >= {MIN_GRID}, got {self.grid}")
        if self.batch_size < 1:
            raise ConfigError(
                f"--batch-size must be >= 1 (points per step; >= grid^3 = {self.grid**3} trains full batch), "
                f"got {self.batch_size}"
            )
        if self.export_resolution < MIN_EXPORT_RESOLUTION:
            raise ConfigError(
                f"--export-resolution must be >= {MIN_EXPORT_RESOLUTION} (marching cubes needs a grid of at least "
                f"{MIN_EXPORT_RESOLUTION}^3 points), got {self.export_resolution}"
            )

    def run(self) -> dict[str, Any]:
        return run_shape(self)


def run_shape(cfg: ShapeTaskConfig) -> dict[str, Any]:
    """3-D occupancy fitting with IoU and mesh export; returns the ``metrics.json`` content."""
    check_common(cfg)
    vertices, faces = default_shape() if cfg.mesh is None else load_shape(cfg.mesh)
    signal = OccupancySignal(vertices, faces, cfg.grid, cfg.batch_size)
    out = cfg.prepare_output()
    net, result = fit_signal(cfg, signal, 3, 1, label=f"{cfg.network.method} shape")
    with torch.no_grad():  # the final model in eval mode, as the held-out metrics
        device = next(net.parameters()).device
        train_grid = signal.train_grid_metrics(predict(net, signal.coords.to(device), cfg.train.chunk).cpu())
    g = cfg.grid
    pred = (result.prediction.reshape(g, g, g) > 0).float().numpy()
    gt = signal.held_out.reshape(g, g, g).float().numpy()
    save_panels({"held-out labels (z mid)": gt[g // 2], "prediction": pred[g // 2]}, out / "slices.png")
    mesh_path, faces = signal.export_mesh(net, out / "surface.ply", cfg.export_resolution)
    notices = []
    if faces == 0:
        notices.append(f"{mesh_path}: the learned occupancy has no surface at probability 0.5; the mesh is empty")
        notice(notices[-1])
    extra = {
        **train_grid,
        "mesh": str(cfg.mesh or "torus"),
        "grid": g,
        "surface": str(mesh_path),
        "surface_faces": faces,
        "notices": notices,
    }
    return finish_run(cfg, out, net, result, extra)
