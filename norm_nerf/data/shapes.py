"""Procedural meshes and mesh files, normalised into the unit sphere (centre at the origin, max radius 1)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
from jaxtyping import Float

if TYPE_CHECKING:
    import trimesh

ShapeName = Literal["sphere", "torus", "box", "bumpy", "capsule"]
SHAPES: tuple[str, ...] = ("sphere", "torus", "box", "bumpy", "capsule")


def normalize_to_unit_sphere(mesh: trimesh.Trimesh, radius: float = 1.0) -> trimesh.Trimesh:
    """A copy of ``mesh`` centred at its bounding-box centre and scaled so its farthest vertex is at ``radius``."""
    import trimesh

    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    center = 0.5 * (vertices.min(0) + vertices.max(0))
    extent = np.linalg.norm(vertices - center, axis=1).max()
    if not np.isfinite(extent) or extent <= 0:
        raise ValueError("cannot normalise a mesh with zero extent or non-finite vertices")
    return trimesh.Trimesh((vertices - center) * (radius / extent), np.asarray(mesh.faces), process=False)


def _bumpy_sphere(detail: int, amplitude: float = 0.06, frequency: float = 4.0) -> trimesh.Trimesh:
    """An icosphere whose radius is modulated by a product of sinusoids: high-frequency geometry."""
    import trimesh

    sphere = trimesh.creation.icosphere(subdivisions=detail)
    v = np.asarray(sphere.vertices)
    bumps = (
        np.sin(frequency * np.pi * v[:, 0]) * np.sin(frequency * np.pi * v[:, 1]) * np.sin(frequency * np.pi * v[:, 2])
    )
    return trimesh.Trimesh(v * (1.0 + amplitude * bumps)[:, None], sphere.faces, process=False)


def make_shape(name: str, detail: int = 4) -> trimesh.Trimesh:
    """A procedural mesh inside the unit sphere; ``detail`` sets the tessellation (icosphere subdivisions)."""
    import trimesh

    if detail < 0 or detail > 7:
        raise ValueError(f"detail must be in 0..7, got {detail}")
    sections = 8 * 2 ** max(detail - 1, 0)
    if name == "sphere":
        mesh = trimesh.creation.icosphere(subdivisions=detail)
    elif name == "torus":
        mesh = trimesh.creation.torus(
            major_radius=0.7, minor_radius=0.3, major_sections=2 * sections, minor_sections=sections
        )
    elif name == "box":
        mesh = trimesh.creation.box(extents=(1.0, 0.8, 0.6))
    elif name == "bumpy":
        mesh = _bumpy_sphere(detail)
    elif name == "capsule":
        mesh = trimesh.creation.capsule(height=1.0, radius=0.45, count=(sections, sections))
    else:
        raise ValueError(f"unknown shape {name!r}; choose one of {', '.join(SHAPES)}")
    return normalize_to_unit_sphere(mesh)


def load_mesh(path: Path | str) -> trimesh.Trimesh:
    """Read a triangle mesh file (OBJ, PLY, STL, ...) as one mesh in its own coordinates (no normalisation)."""
    import trimesh

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: mesh file not found")
    try:
        loaded = trimesh.load(path, force="mesh", process=False)
    except Exception as err:  # trimesh raises many types for unreadable files
        raise ValueError(f"{path}: cannot read a mesh ({err})") from err
    faces = getattr(loaded, "faces", None)
    if not isinstance(loaded, trimesh.Trimesh) or faces is None or len(faces) == 0:
        raise ValueError(f"{path}: the file holds no triangle faces (a point cloud or an empty mesh?)")
    if not np.isfinite(np.asarray(loaded.vertices)).all():
        raise ValueError(f"{path}: the mesh has non-finite vertex coordinates")
    return loaded


def scene_object(shape: str | None = "sphere", mesh: Path | str | None = None, detail: int = 4) -> trimesh.Trimesh:
    """The object of a synthetic scene in the unit sphere: the mesh file when given, else the procedural shape."""
    if mesh is not None:
        return normalize_to_unit_sphere(load_mesh(mesh))
    if shape is None:
        raise ValueError("give a shape name or a mesh file")
    return make_shape(shape, detail)


def ground_plane(height: float, half_size: float, cells: int = 16) -> tuple[Float[np.ndarray, "v 3"], np.ndarray]:
    """A square z = ``height`` of side ``2 half_size`` split into ``cells`` x ``cells`` quads (normals up, +z)."""
    if cells < 1:
        raise ValueError(f"cells must be >= 1, got {cells}")
    ticks = np.linspace(-half_size, half_size, cells + 1)
    x, y = np.meshgrid(ticks, ticks, indexing="xy")
    vertices = np.stack([x.ravel(), y.ravel(), np.full(x.size, float(height))], axis=1)
    idx = np.arange((cells + 1) ** 2).reshape(cells + 1, cells + 1)
    a, b, c, d = idx[:-1, :-1].ravel(), idx[:-1, 1:].ravel(), idx[1:, 1:].ravel(), idx[1:, :-1].ravel()
    faces = np.concatenate([np.stack([a, b, c], 1), np.stack([a, c, d], 1)])
    return vertices, faces.astype(np.int64)
