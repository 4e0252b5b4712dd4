"""Shade ray-cast hits: procedural texture x Lambertian light (view-independent), coverage and object masks."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import trimesh
from jaxtyping import Bool, Float, Int

from norm_nerf.data.cameras import supersample_intrinsics
from norm_nerf.data.raycast import cast_camera, pixel_directions
from norm_nerf.data.texture import GROUND_TEXTURE, ProceduralTexture

_SMOOTH_COS = np.cos(np.radians(30.0))  # faces whose vertex normals stray further than this are shaded flat


@dataclass(frozen=True)
class SceneGeometry:
    """Triangles in world coordinates with a per-face object/background label and the world-to-texture frame."""

    vertices: Float[np.ndarray, "v 3"]
    """Vertex positions in world units."""
    faces: Int[np.ndarray, "f 3"]
    """Triangles (vertex indices)."""
    is_object: Bool[np.ndarray, "f"]  # noqa: F821
    """True for faces of the object (they make the foreground mask), False for the ground."""
    center: Float[np.ndarray, "3"] = field(default_factory=lambda: np.zeros(3))
    """World position of the unit sphere's centre (texture frame origin)."""
    scale: float = 1.0
    """World units per unit-sphere unit."""

    @staticmethod
    def build(
        obj: trimesh.Trimesh,
        ground: tuple[np.ndarray, np.ndarray] | None = None,
        center: Float[np.ndarray, "3"] | None = None,
        scale: float = 1.0,
    ) -> SceneGeometry:
        """Object (and optional ground) given in the unit-sphere frame, placed at ``center`` with ``scale``."""
        center = np.zeros(3) if center is None else np.asarray(center, dtype=np.float64)
        parts = [(np.asarray(obj.vertices, dtype=np.float64), np.asarray(obj.faces, dtype=np.int64))]
        if ground is not None:
            parts.append((np.asarray(ground[0], dtype=np.float64), np.asarray(ground[1], dtype=np.int64)))
        offsets = np.cumsum([0] + [len(v) for v, _ in parts])
        vertices = np.concatenate([v for v, _ in parts]) * scale + center
        faces = np.concatenate([f + o for (_, f), o in zip(parts, offsets)])
        is_object = np.zeros(len(faces), dtype=bool)
        is_object[: len(parts[0][1])] = True
        return SceneGeometry(vertices, faces, is_object, center, float(scale))


@dataclass(frozen=True)
class Shading:
    """Textures and the fixed light."""

    object_texture: ProceduralTexture = field(default_factory=ProceduralTexture)
    """Texture of the object."""
    ground_texture: ProceduralTexture = GROUND_TEXTURE
    """Texture of the ground plane."""
    light_direction: tuple[float, float, float] = (0.35, -0.45, 0.82)
    """Direction towards the (distant) light in world coordinates."""
    ambient: float = 0.3
    """Light that reaches every surface regardless of its orientation, in [0, 1]."""


@dataclass(frozen=True)
class RenderOutput:
    """One rendered view; per-pixel averages over the supersampled rays."""

    rgb: Float[np.ndarray, "h w 3"]
    """Colour of the covered part of each pixel (not premultiplied; 0 where nothing is hit)."""
    coverage: Float[np.ndarray, "h w"]
    """Fraction of the pixel's rays that hit any geometry."""
    object_coverage: Float[np.ndarray, "h w"]
    """Fraction of the pixel's rays whose first hit is the object."""
    depth: Float[np.ndarray, "h w"]
    """Mean z-depth of the hits (NaN where nothing is hit)."""


def _normals(scene: SceneGeometry) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    mesh = trimesh.Trimesh(scene.vertices, scene.faces, process=False)
    vertex_n = np.asarray(mesh.vertex_normals, dtype=np.float64)
    face_n = np.asarray(mesh.face_normals, dtype=np.float64)
    smooth = (np.einsum("fkc,fc->fk", vertex_n[scene.faces], face_n) >= _SMOOTH_COS).all(axis=1)
    return vertex_n, face_n, smooth


def _block_mean(x: np.ndarray, factor: int, height: int, width: int) -> np.ndarray:
    """Average ``factor`` x ``factor`` blocks of a row-major (height*factor) x (width*factor) array."""
    x = x.reshape(height, factor, width, factor, *x.shape[1:])
    return x.mean(axis=(1, 3))


def render(
    scene: SceneGeometry,
    K: Float[np.ndarray, "3 3"],
    R: Float[np.ndarray, "3 3"],
    t: Float[np.ndarray, "3"],
    width: int,
    height: int,
    shading: Shading | None = None,
    supersample: int = 1,
) -> RenderOutput:
    """Ray-cast and shade one OpenCV pinhole view (``x_cam = R x + t``) with ``supersample``^2 rays per pixel."""
    shading = Shading() if shading is None else shading
    K_ss = supersample_intrinsics(K, supersample)
    W, H = width * supersample, height * supersample
    hits = cast_camera(scene.vertices, scene.faces, K_ss, R, t, W, H)
    hit = hits.hit
    face = hits.face[hit]
    dirs = pixel_directions(K_ss, R, W, H)[hit]
    points = -np.asarray(R).T @ np.asarray(t) + hits.t[hit, None] * dirs

    vertex_n, face_n, smooth = _normals(scene)
    b1, b2 = hits.bary[hit, 0:1], hits.bary[hit, 1:2]
    tri_n = vertex_n[scene.faces[face]]
    interp = (1.0 - b1 - b2) * tri_n[:, 0] + b1 * tri_n[:, 1] + b2 * tri_n[:, 2]
    normal = np.where(smooth[face, None], interp, face_n[face])
    normal /= np.linalg.norm(normal, axis=1, keepdims=True).clip(1e-12)
    normal *= np.where((normal * dirs).sum(1, keepdims=True) > 0, -1.0, 1.0)  # face the viewer
    light = np.asarray(shading.light_direction, dtype=np.float64)
    lambert = shading.ambient + (1.0 - shading.ambient) * np.clip(normal @ (light / np.linalg.norm(light)), 0, 1)

    is_obj = scene.is_object[face]
    tex_coords = (points - scene.center) / scene.scale
    color = np.empty_like(points)
    color[is_obj] = shading.object_texture(tex_coords[is_obj])
    color[~is_obj] = shading.ground_texture(tex_coords[~is_obj])
    color *= lambert[:, None]

    rgb_sum = np.zeros((W * H, 3))
    rgb_sum[hit] = color
    depth_sum = np.zeros(W * H)
    depth_sum[hit] = hits.t[hit]
    obj_full = np.zeros(W * H)
    obj_full[np.flatnonzero(hit)[is_obj]] = 1.0
    coverage = _block_mean(hit.astype(np.float64), supersample, height, width)
    with np.errstate(invalid="ignore", divide="ignore"):
        rgb = _block_mean(rgb_sum, supersample, height, width) / coverage[..., None]
        depth = _block_mean(depth_sum, supersample, height, width) / coverage
    rgb = np.nan_to_num(rgb, nan=0.0)
    return RenderOutput(rgb, coverage, _block_mean(obj_full, supersample, height, width), depth)
