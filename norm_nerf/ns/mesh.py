"""Mesh export of an SDF field on CPU: chunked eval-mode SDF queries on a grid, marching cubes (PyMCubes), the map
from the model's (normalised) coordinates back to the dataset's world coordinates, and the mesh of a trained run
(:func:`export_run_mesh`, what ``norm-extract-mesh`` runs)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from jaxtyping import Float, Int
from torch import Tensor

from norm_nerf.ns.eval_render import load_pipeline

SdfFn = Callable[[Float[Tensor, "n 3"]], Float[Tensor, "n 1"]]
Bounds = tuple[float, float, float, float, float, float]
"""xmin, ymin, zmin, xmax, ymax, zmax."""


def check_bounds(bounds: Bounds) -> tuple[np.ndarray, np.ndarray]:
    """``(lower, upper)`` corners of a box given as six numbers; ValueError for an empty or malformed box."""
    values = np.asarray(bounds, dtype=np.float64)
    if values.shape != (6,) or not np.isfinite(values).all():
        raise ValueError(f"bounds must be six finite numbers (xmin ymin zmin xmax ymax zmax), got {bounds!r}")
    lower, upper = values[:3], values[3:]
    if (upper <= lower).any():
        raise ValueError(f"bounds: every max must exceed its min, got min {lower.tolist()} max {upper.tolist()}")
    return lower, upper


def grid_axes(bounds: Bounds, resolution: int) -> list[np.ndarray]:
    """The ``resolution`` sample positions along x, y and z (box corners included)."""
    if resolution < 2:
        raise ValueError(f"resolution must be >= 2, got {resolution}")
    lower, upper = check_bounds(bounds)
    return [np.linspace(lo, hi, resolution) for lo, hi in zip(lower, upper)]


def _grid_chunks(axes: list[np.ndarray], chunk: int) -> Iterator[tuple[slice, Float[Tensor, "n 3"]]]:
    """Slices of the flattened (x-major) grid and the positions in them, ``chunk`` points at a time."""
    nx, ny, nz = (len(a) for a in axes)
    total = nx * ny * nz
    ax = [torch.from_numpy(a).float() for a in axes]
    for start in range(0, total, chunk):
        idx = torch.arange(start, min(start + chunk, total))
        i, j, k = idx // (ny * nz), (idx // nz) % ny, idx % nz
        yield slice(start, start + len(idx)), torch.stack([ax[0][i], ax[1][j], ax[2][k]], dim=-1)


def sdf_grid(
    sdf_fn: SdfFn, bounds: Bounds, resolution: int, chunk: int = 65536, device: str | torch.device = "cpu",
    progress: bool = True,
) -> Float[np.ndarray, "r r r"]:  # fmt: skip
    """The SDF on a ``resolution``^3 grid over ``bounds`` (``[i, j, k]`` = point (x_i, y_j, z_k)), in chunks."""
    from rich.progress import track

    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    axes = grid_axes(bounds, resolution)
    values = np.empty(resolution**3, dtype=np.float32)
    chunks = _grid_chunks(axes, chunk)
    steps = -(-(resolution**3) // chunk)
    with torch.no_grad():
        for where, points in track(chunks, total=steps, description="SDF on the grid", disable=not progress):
            values[where] = sdf_fn(points.to(device)).reshape(-1).float().cpu().numpy()
    return values.reshape(resolution, resolution, resolution)


class NoSurfaceError(ValueError):
    """No surface to mesh: the SDF grid has non-finite values (a diverged model) or no level crossing in the bounds."""


def marching_cubes(
    grid: Float[np.ndarray, "r r r"], bounds: Bounds, level: float = 0.0
) -> tuple[Float[np.ndarray, "v 3"], Int[np.ndarray, "f 3"]]:
    """Vertices (in the box's coordinates) and faces of the ``level`` set, faces wound outwards (to larger SDF)."""
    import mcubes

    if not np.isfinite(grid).all():
        raise NoSurfaceError(f"the SDF grid has {int((~np.isfinite(grid)).sum())} non-finite values")
    if not grid.min() < level < grid.max():
        raise NoSurfaceError(
            f"the SDF has no crossing of level {level:g} inside the bounds (values in [{grid.min():.4g}, "
            f"{grid.max():.4g}]): the surface lies outside the box, or the model has not learned one"
        )
    vertices, faces = mcubes.marching_cubes(grid.astype(np.float64), level)
    lower, upper = check_bounds(bounds)
    vertices = lower + vertices * (upper - lower) / (np.asarray(grid.shape) - 1)
    # PyMCubes winds triangles towards decreasing values; flip them so that normals point outwards (SDF > 0)
    return vertices, np.ascontiguousarray(faces[:, ::-1]).astype(np.int64)


def model_to_world(
    vertices: Float[np.ndarray, "v 3"],
    scale_mat: Float[np.ndarray, "4 4"] | None = None,
    transform: Float[np.ndarray, "3 4"] | None = None,
    scale: float = 1.0,
) -> Float[np.ndarray, "v 3"]:
    """Map points from the model's coordinates to the dataset's world coordinates.

    NeuS/DTU layout: ``world = scale_mat @ x``. Otherwise nerfstudio's dataparser transform is undone:
    the model sees ``x = scale * (transform @ world)``, so ``world = transform^-1 (x / scale)``.
    """
    v = np.asarray(vertices, dtype=np.float64)
    if scale_mat is not None:
        S = np.asarray(scale_mat, dtype=np.float64)
        return v @ S[:3, :3].T + S[:3, 3]
    T = np.eye(4)
    if transform is not None:
        T[:3] = np.asarray(transform, dtype=np.float64)
    if scale == 0:
        raise ValueError("dataparser scale is 0: cannot map back to world coordinates")
    homogeneous = np.concatenate([v / scale, np.ones((len(v), 1))], axis=1)
    return (homogeneous @ np.linalg.inv(T).T)[:, :3]


def world_map_of(dataparser_outputs: Any) -> dict[str, Any]:
    """``model_to_world`` keyword arguments from nerfstudio dataparser outputs (``scale_mat`` when present)."""
    metadata = getattr(dataparser_outputs, "metadata", None) or {}
    if "scale_mat" in metadata:
        return {"scale_mat": np.asarray(metadata["scale_mat"], dtype=np.float64)}
    return {
        "transform": np.asarray(dataparser_outputs.dataparser_transform, dtype=np.float64),
        "scale": float(dataparser_outputs.dataparser_scale),
    }


def mesh_of_model(
    model: Any,
    dataparser_outputs: Any,
    resolution: int,
    bounds: Bounds | None = None,
    chunk: int = 65536,
    world: bool = True,
    progress: bool = True,
):
    """The zero level set of an SDF model's field (eval mode) as a ``trimesh.Trimesh``.

    Args:
        model: a nerfstudio model whose ``field`` has ``sdf(x)`` (norm-neus).
        dataparser_outputs: the run's training dataparser outputs (scene box, ``scale_mat`` / transform).
        resolution: grid points per axis.
        bounds: box in the model's coordinates (default: the scene box).
        chunk: points per SDF query.
        world: map the vertices to the dataset's world coordinates (else keep the model's).
        progress: show a progress bar.
    """
    import trimesh

    field = getattr(model, "field", None)
    if field is None or not callable(getattr(field, "sdf", None)):
        raise TypeError(f"{type(model).__name__} has no SDF field with an sdf(x) method (train a norm-neus model)")
    if bounds is None:
        bounds = tuple(float(v) for v in dataparser_outputs.scene_box.aabb.reshape(-1))  # type: ignore[assignment]
    device = next(field.parameters()).device
    model.eval()
    grid = sdf_grid(field.sdf, bounds, resolution, chunk, device, progress)
    vertices, faces = marching_cubes(grid, bounds)
    if world:
        vertices = model_to_world(vertices, **world_map_of(dataparser_outputs))
    return trimesh.Trimesh(vertices, faces, process=False)


@dataclass
class ExtractMeshConfig:
    """Marching cubes on the SDF of a trained norm-neus run; writes a PLY mesh."""

    load_config: Path
    """The run's config.yml (outputs/<scene>/norm-neus/<time>/config.yml)."""
    out: Path = Path("mesh.ply")
    """Output mesh (.ply)."""
    resolution: int = 256
    """Grid points per axis (memory and time grow with its cube)."""
    bounds: Bounds | None = None
    """Box to mesh in the model's coordinates, xmin ymin zmin xmax ymax zmax (default: the scene box)."""
    chunk: int = 65536
    """SDF queries per forward pass."""
    coordinates: Literal["world", "model"] = "world"
    """world: the dataset's coordinates (scale_mat or the dataparser transform undone); model: as trained."""
    overwrite: bool = False
    """Replace an existing output file."""

    def check(self) -> None:
        """ValueError/FileExistsError for settings that cannot work, before the run is loaded."""
        out = Path(self.out)
        if out.suffix.lower() != ".ply":
            raise ValueError(f"{out}: the output must be a .ply file")
        if out.exists() and not self.overwrite:
            raise FileExistsError(f"{out}: exists; pass --overwrite to replace it")
        if self.resolution < 2 or self.chunk < 1:
            raise ValueError(f"need --resolution >= 2 and --chunk >= 1, got {self.resolution} and {self.chunk}")


def export_run_mesh(cfg: ExtractMeshConfig, log: Callable[[str], Any] | None = None):
    """Load the run of ``cfg.load_config``, mesh its SDF and write ``cfg.out``; returns the ``trimesh.Trimesh``.

    The settings are checked first (:meth:`ExtractMeshConfig.check`), the run next
    (:func:`norm_nerf.ns.eval_render.load_pipeline`), before anything is written. ``log`` gets one line after loading
    and one after writing.
    """
    cfg.check()
    say = log or (lambda _: None)
    start = time.perf_counter()
    pipeline, ckpt, step = load_pipeline(cfg.load_config)
    say(f"loaded {ckpt} (step {step})")
    outputs = pipeline.datamanager.train_dataparser_outputs
    mesh = mesh_of_model(
        pipeline.model, outputs, cfg.resolution, cfg.bounds, cfg.chunk, world=cfg.coordinates == "world"
    )
    out = Path(cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    mesh.export(out)
    say(
        f"wrote [bold]{out}[/bold]: {len(mesh.vertices)} vertices, {len(mesh.faces)} faces, {cfg.coordinates} "
        f"coordinates, {cfg.resolution}^3 grid ({time.perf_counter() - start:.1f} s)"
    )
    return mesh
