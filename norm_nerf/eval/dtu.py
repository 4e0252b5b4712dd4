"""The DTU chamfer protocol for meshes reconstructed from NeuS/IDR-layout scans.

Steps, as in the official DTU evaluation (its Python port) and the mask culling used by NeuS-family papers:

1. Cull: project every vertex with each view's ``world_mat``; where it lands strictly inside the image (and in
   front of the camera), it must fall on the foreground of that view's mask dilated by a disk. Vertices failing
   any view are removed, and so are triangles with a removed vertex. Views where a vertex lands outside the image
   do not vote (as in the reference code, which adds ``1 - valid`` to the sampled mask).
2. Map to world coordinates with ``scale_mat`` (skipped for meshes already in world coordinates).
3. Sample the surface at ``density`` (0.2 mm) and thin the points to that spacing (seeded random order).
4. Keep the points in the bounding box ``BB`` widened by ``patch`` (60 mm: [BB0 - patch, BB1 + 2 patch), as the
   reference code has it) for completeness; of those, the points whose ObsMask voxel is set for accuracy.
5. Accuracy ``mean_d2s``: mean distance data -> STL points; completeness ``mean_s2d``: mean distance from STL
   points above the ground plane (``[x, 1] . P > 0``) -> data; both ignore distances of ``max_dist`` (20 mm) and
   more. ``overall`` is their mean.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from jaxtyping import Bool, Float, Int

from norm_nerf.data.cameras import project
from norm_nerf.data.neus_layout import NeuSScan
from norm_nerf.data.surface_sampling import sample_surface, thin_points
from norm_nerf.eval.chamfer import ChamferFigures, capped_mean, nearest_distances
from norm_nerf.eval.pointclouds import BLUE, error_colors, read_points

REFERENCE_WIDTH = 1600  # DTU image width the reference dilation radius (24 px) was chosen for
REFERENCE_DILATION = 24


@dataclass(frozen=True)
class ObsVolume:
    """DTU observation mask: voxel ``ijk`` (centre ``bb[0] + res * ijk``) is set where the scanner saw space."""

    bb: Float[np.ndarray, "2 3"]
    """Bounding box (min row, max row) in world units."""
    res: float
    """Voxel size."""
    mask: Bool[np.ndarray, "x y z"]
    """Observed voxels, indexed [x, y, z]."""

    def contains(self, points: Float[np.ndarray, "n 3"]) -> Bool[np.ndarray, "n"]:  # noqa: F821
        """Points whose nearest voxel centre is inside the volume and observed."""
        grid = np.rint((points - self.bb[0]) / self.res).astype(np.int64)
        inside = ((grid >= 0) & (grid < np.asarray(self.mask.shape))).all(axis=1)
        out = np.zeros(len(points), dtype=bool)
        g = grid[inside]
        out[inside] = self.mask[g[:, 0], g[:, 1], g[:, 2]]
        return out


@dataclass(frozen=True)
class DTUGroundTruth:
    """STL points, observation volume and ground plane of one scan."""

    stl: Float[np.ndarray, "m 3"]
    """Structured-light ground-truth points (world units, mm)."""
    obs: ObsVolume
    """Observation mask volume."""
    plane: Float[np.ndarray, "4"]
    """Ground plane: points with ``[x, 1] . plane > 0`` are above it."""

    @staticmethod
    def load(gt_dir: Path | str, scan: int) -> DTUGroundTruth:
        """Read ``Points/stl/stl{scan:03d}_total.ply`` and ``ObsMask/{ObsMask{scan}_10,Plane{scan}}.mat``."""
        from scipy.io import loadmat

        gt_dir = Path(gt_dir)
        stl_path = gt_dir / "Points" / "stl" / f"stl{scan:03d}_total.ply"
        obs_path = gt_dir / "ObsMask" / f"ObsMask{scan}_10.mat"
        plane_path = gt_dir / "ObsMask" / f"Plane{scan}.mat"
        for path in (stl_path, obs_path, plane_path):
            if not path.is_file():
                raise FileNotFoundError(f"{path}: DTU ground-truth file not found")
        obs_file = loadmat(obs_path)
        missing = [k for k in ("BB", "Res", "ObsMask") if k not in obs_file]
        if missing:
            raise ValueError(f"{obs_path}: missing field(s) {', '.join(missing)}")
        bb = np.asarray(obs_file["BB"], dtype=np.float64)
        if bb.shape != (2, 3):
            raise ValueError(f"{obs_path}: BB must be 2 x 3, got {bb.shape}")
        mask = np.asarray(obs_file["ObsMask"]).astype(bool)
        if mask.ndim != 3:
            raise ValueError(f"{obs_path}: ObsMask must be a 3-D volume, got shape {mask.shape}")
        plane_file = loadmat(plane_path)
        if "P" not in plane_file or np.size(plane_file["P"]) != 4:
            raise ValueError(f"{plane_path}: field P (4 numbers) missing")
        obs = ObsVolume(bb, float(np.asarray(obs_file["Res"]).squeeze()), mask)
        return DTUGroundTruth(read_points(stl_path), obs, np.asarray(plane_file["P"], dtype=np.float64).reshape(4))


@dataclass(frozen=True)
class NeuSViews:
    """What the protocol needs of a scan in the NeuS/IDR layout: each view's projection and foreground mask."""

    world_mats: Float[np.ndarray, "n 4 4"]
    """Projection ``K [R | t]`` of each view (world to pixels, integer pixel centres)."""
    scale_mat: Float[np.ndarray, "4 4"]
    """Normalised (unit-sphere) to world coordinates (NeuS uses one for all views)."""
    masks: list[np.ndarray] = field(repr=False)
    """Foreground masks (H x W bool), in view order."""

    @staticmethod
    def load(scan_dir: Path | str) -> NeuSViews:
        """The cameras and masks of ``scan_dir`` as :class:`~norm_nerf.data.neus_layout.NeuSScan` reads and checks
        them (the views are the cameras; images are not needed), masks by its one rule
        (:func:`~norm_nerf.data.neus_layout.read_mask`)."""
        scan = NeuSScan.load(scan_dir, masks=True, images=False)
        return NeuSViews(scan.world_mats, scan.scale_mat, scan.read_masks())


def dilate(mask: Bool[np.ndarray, "h w"], radius: int) -> Bool[np.ndarray, "h w"]:
    """Binary dilation by the disk ``x^2 + y^2 <= radius^2`` (skimage's ``disk``), via a distance transform."""
    from scipy.ndimage import distance_transform_edt

    if radius <= 0 or not mask.any():
        return mask.copy()
    return distance_transform_edt(~mask) <= radius


def default_dilation(width: int) -> int:
    """The reference radius (24 px at 1600 px width) scaled to the image width."""
    return max(1, round(REFERENCE_DILATION * width / REFERENCE_WIDTH))


def cull_vertices(
    vertices_world: Float[np.ndarray, "v 3"],
    world_mats: Float[np.ndarray, "n 4 4"],
    masks: list[np.ndarray],
) -> Bool[np.ndarray, "v"]:  # noqa: F821
    """Vertices to keep: in every view where they project strictly inside the image, on the (dilated) mask."""
    keep = np.ones(len(vertices_world), dtype=bool)
    for P, mask in zip(world_mats, masks):
        h, w = mask.shape
        uv, depth = project(P, vertices_world)
        valid = (depth > 0) & (uv[:, 0] > 0) & (uv[:, 0] < w - 1) & (uv[:, 1] > 0) & (uv[:, 1] < h - 1)
        pix = np.rint(uv[valid]).astype(np.int64)
        on_mask = np.ones(len(vertices_world), dtype=bool)
        on_mask[valid] = mask[pix[:, 1], pix[:, 0]]
        keep &= on_mask
    return keep


def cull_mesh(
    vertices_world: Float[np.ndarray, "v 3"], faces: Int[np.ndarray, "f 3"], views: NeuSViews, dilation: int | None
) -> tuple[Float[np.ndarray, "k 3"], Int[np.ndarray, "g 3"]]:
    """Kept vertices and the triangles whose three vertices are all kept (re-indexed)."""
    radius = default_dilation(views.masks[0].shape[1]) if dilation is None else dilation
    masks = [dilate(m, radius) for m in views.masks]
    keep = cull_vertices(vertices_world, views.world_mats, masks)
    faces = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    face_keep = keep[faces].all(axis=1)
    new_index = np.cumsum(keep) - 1
    return vertices_world[keep], new_index[faces[face_keep]]


@dataclass
class DTUResult(ChamferFigures):
    """Figures of the DTU protocol (mm; accuracy over the observed reconstruction points, completeness over the STL
    points above the plane, both below max_dist) plus the per-point data for the error clouds."""

    data: np.ndarray = field(repr=False)
    """Thinned reconstruction points (world)."""
    data_in_obs: np.ndarray = field(repr=False)
    """Mask over ``data``: in the box and in an observed voxel (used for accuracy)."""
    d2s: np.ndarray = field(repr=False)
    """Distance to the STL points of each ``data[data_in_obs]`` point."""
    stl_above: np.ndarray = field(repr=False)
    """Mask over the STL points: above the ground plane (used for completeness)."""
    s2d: np.ndarray = field(repr=False)
    """Distance to the reconstruction of each ``stl[stl_above]`` point."""


def dtu_chamfer(
    data: Float[np.ndarray, "n 3"], gt: DTUGroundTruth, max_dist: float = 20.0, patch: float = 60.0
) -> DTUResult:
    """Steps 4-5 of the protocol on thinned reconstruction points in world coordinates."""
    bb = gt.obs.bb
    in_box = ((data >= bb[0] - patch) & (data < bb[1] + 2 * patch)).all(axis=1)  # sic: the reference box
    if not in_box.any():
        raise ValueError("no reconstruction points inside the evaluation box: wrong coordinates (--mesh-in-world)?")
    in_obs = in_box.copy()
    in_obs[in_box] = gt.obs.contains(data[in_box])
    d2s = nearest_distances(data[in_obs], gt.stl, max_dist=max_dist)  # inf beyond max_dist: left out anyway
    above = np.concatenate([gt.stl, np.ones((len(gt.stl), 1))], axis=1) @ gt.plane > 0
    s2d = nearest_distances(gt.stl[above], data[in_box], max_dist=max_dist)
    acc, n_acc = capped_mean(d2s, max_dist)
    comp, n_comp = capped_mean(s2d, max_dist)
    counts = {
        "data": len(data),
        "data_in_box": int(in_box.sum()),
        "data_in_obs": int(in_obs.sum()),
        "d2s_used": n_acc,
        "stl": len(gt.stl),
        "stl_above": int(above.sum()),
        "s2d_used": n_comp,
    }
    return DTUResult(acc, comp, 0.5 * (acc + comp), counts, data, in_obs, d2s, above, s2d)


def bbox_diagonal(points: Float[np.ndarray, "n 3"]) -> float:
    """Length of the diagonal of the points' axis-aligned bounding box (0 for fewer than two points)."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    return float(np.linalg.norm(points.max(axis=0) - points.min(axis=0))) if len(points) > 1 else 0.0


def size_mismatch(
    name: str, points: np.ndarray, ref_name: str, ref_points: np.ndarray, trusted_reference: bool = True,
    factor: float = 10.0,
) -> str:  # fmt: skip
    """A sentence (starting with '; ') when two point sets' bounding boxes differ in size by more than ``factor``
    (the usual sign of other units: mm vs m is 1000), else ''.

    With ``trusted_reference`` (DTU ground truth) it says that ``name`` looks off; otherwise (two user meshes) it
    names the larger and the smaller one and leaves open which is in other units.
    """
    size, ref = bbox_diagonal(points), bbox_diagonal(ref_points)
    if size == 0 or ref == 0 or 1 / factor <= size / ref <= factor:
        return ""
    ratio = size / ref
    how = f"{ratio:.3g} times larger" if ratio > 1 else f"{1 / ratio:.3g} times smaller"
    if trusted_reference:
        return (
            f"; {name} looks off: its bounding box (diagonal {size:.4g}) is {how} than {ref_name}'s ({ref:.4g}): "
            "other units (mm vs m is 1000) or coordinates?"
        )
    (big, big_size), (small, small_size) = sorted([(name, size), (ref_name, ref)], key=lambda x: -x[1])
    return (
        f"; the bounding box of {big} (diagonal {big_size:.4g}) is {big_size / small_size:.3g} times larger than that "
        f"of {small} ({small_size:.4g}): one of them is in other units (mm vs m is 1000) or coordinates"
    )


def _check_before_sampling(
    vertices: np.ndarray, gt: DTUGroundTruth, patch: float, in_world: bool, mesh_name: str, hint: str
) -> None:
    """Fail fast, before sampling (possibly billions of points), on a mesh in the wrong coordinates."""
    space = f"{'world' if in_world else 'normalised'} coordinates assumed; see --mesh-in-world"
    if len(vertices) == 0:
        raise ValueError(f"{mesh_name}: nothing of the mesh is left after culling with the masks ({space}){hint}")
    bb = gt.obs.bb
    if not ((vertices >= bb[0] - patch) & (vertices < bb[1] + 2 * patch)).all(axis=1).any():
        lo, hi = vertices.min(axis=0).round(4).tolist(), vertices.max(axis=0).round(4).tolist()
        raise ValueError(
            f"{mesh_name}: no vertex lies in the evaluation box {bb.tolist()} +- {patch}; the kept vertices span "
            f"{lo} to {hi} ({space}){hint}"
        )


def evaluate_dtu_mesh(
    vertices: Float[np.ndarray, "v 3"],
    faces: Int[np.ndarray, "f 3"],
    views: NeuSViews,
    gt: DTUGroundTruth,
    mesh_in_world: bool = False,
    density: float = 0.2,
    max_dist: float = 20.0,
    patch: float = 60.0,
    dilation: int | None = None,
    seed: int = 0,
    mesh_name: str = "the mesh",
) -> tuple[DTUResult, tuple[np.ndarray, np.ndarray]]:
    """The whole protocol on one mesh; also returns the culled mesh (world vertices, faces).

    Errors from a mesh in the wrong units or coordinates start with ``mesh_name`` (its file) and, when its size
    differs from the ground truth's by more than 10x, say so (:func:`size_mismatch`).
    """
    vertices = np.asarray(vertices, dtype=np.float64)
    if not mesh_in_world:
        vertices = vertices @ views.scale_mat[:3, :3].T + views.scale_mat[:3, 3]
    hint = size_mismatch("the mesh", vertices, "the ground truth (STL points, mm)", gt.stl)
    kept_v, kept_f = cull_mesh(vertices, faces, views, dilation)
    _check_before_sampling(kept_v, gt, patch, mesh_in_world, mesh_name, hint)
    try:
        points = sample_surface(kept_v, kept_f, density)
    except ValueError as err:
        raise ValueError(f"{mesh_name}: {err}{hint}") from None
    thinned = points[thin_points(points, density, seed)]
    result = dtu_chamfer(thinned, gt, max_dist, patch)
    result.counts = {
        "mesh_vertices": len(vertices),
        "mesh_faces": len(faces),
        "culled_vertices": len(kept_v),
        "culled_faces": len(kept_f),
        "sampled": len(points),
        **result.counts,
    }
    return result, (kept_v, kept_f)


def error_clouds(result: DTUResult, gt: DTUGroundTruth, vis_dist: float = 10.0, max_dist: float = 20.0):
    """Colours as in the reference visualisation: blue = not evaluated, white -> red by distance, green >= max."""
    data_colors = np.tile(BLUE, (len(result.data), 1))
    data_colors[result.data_in_obs] = error_colors(result.d2s, vis_dist, max_dist)
    stl_colors = np.tile(BLUE, (len(gt.stl), 1))
    stl_colors[result.stl_above] = error_colors(result.s2d, vis_dist, max_dist)
    return (result.data, data_colors), (gt.stl, stl_colors)
