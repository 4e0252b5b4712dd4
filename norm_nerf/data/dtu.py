"""Write a synthetic DTU-like scene: NeuS/IDR inputs plus ground truth in the DTU evaluation layout.

Inputs (what NeuS reads)::

    image/000000.png ...      RGB renders of the object on a ground plane
    mask/000.png ...          foreground masks of the object, 0/255, 3 channels
    cameras_sphere.npz        world_mat_i = K [R | t] (4 x 4, OpenCV axes, pixel centres at integer u, v),
                              scale_mat_i (world = scale_mat @ normalised; the unit sphere holds the object),
                              and their inverses world_mat_inv_i, scale_mat_inv_i

Ground truth (what the DTU evaluation reads), in "millimetre" world units::

    gt/Points/stl/stl{scan:03d}_total.ply   dense point cloud of the object surface (not the ground)
    gt/ObsMask/ObsMask{scan}_10.mat         BB (2 x 3), Res (1 x 1), ObsMask (bool volume indexed [x, y, z])
    gt/ObsMask/Plane{scan}.mat              P (4 x 1): the ground plane, points above it have [x, 1] . P > 0
    gt/object_world.ply, gt/object_normalized.ply   the object mesh in world and unit-sphere coordinates

A voxel ``(i, j, k)`` of ObsMask is centred at ``BB[0] + Res * (i, j, k)`` and is "observed" when it lies within
``obs_margin`` of the object surface. World +z is up; the object rests on the ground plane.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from jaxtyping import Bool, Float

from norm_nerf.data.cameras import (
    fibonacci_directions,
    focal_to_fit_sphere,
    intrinsics,
    look_at_c2w_opengl,
    opengl_c2w_to_opencv_w2c,
    projection_matrix,
)
from norm_nerf.data.render import SceneGeometry, render
from norm_nerf.data.shapes import ShapeName, ground_plane, scene_object
from norm_nerf.data.surface_sampling import surface_points
from norm_nerf.utils.console import progress
from norm_nerf.utils.jsonio import write_json
from norm_nerf.utils.outputs import OutputOptions

BACKGROUND = (0.05, 0.05, 0.05)


@dataclass
class DTUSceneConfig(OutputOptions):
    """A textured object on a ground plane, seen from an upper hemisphere, in the NeuS layout with DTU-style GT."""

    output_root = Path("outputs/scenes/dtu")

    shape: ShapeName = "sphere"
    """Procedural object (ignored when --mesh is given)."""
    mesh: Path | None = None
    """Mesh file (OBJ/PLY/...) to use instead of a procedural shape."""
    scan: int = 1
    """Scan number used in the ground-truth file names (stl001_total.ply, ObsMask1_10.mat, Plane1.mat)."""
    views: int = 49
    """Number of views (DTU has 49 or 64)."""
    size: int = 400
    """Image width in pixels."""
    height: int | None = None
    """Image height in pixels (default: 3/4 of the width, like DTU's 1600 x 1200)."""
    sphere_radius_mm: float = 200.0
    """World radius of the NeuS unit sphere (the scale of scale_mat), in mm."""
    center_mm: tuple[float, float, float] = (30.0, -20.0, 50.0)
    """World position of the unit sphere's centre, in mm."""
    object_radius: float = 0.6
    """Radius of the object inside the unit sphere."""
    distance: float = 3.0
    """Distance of the cameras from the centre, in unit-sphere radii."""
    min_elevation_deg: float = 20.0
    """Lowest camera elevation above the horizontal plane through the centre."""
    max_elevation_deg: float = 65.0
    """Highest camera elevation."""
    ground: bool = True
    """Put a textured ground plane under the object (it is in the images, not in the masks or the GT points)."""
    ground_half_size: float = 1.5
    """Half the side of the square ground plane, in unit-sphere radii."""
    supersample: int = 1
    """Rays per pixel along each axis (a mask pixel is foreground when half its rays hit the object)."""
    gt_density: float = 0.2
    """Spacing of the ground-truth surface points, in mm (DTU's STL clouds are about as dense as the 0.2 mm samples)."""
    obs_res: float = 4.0
    """Voxel size of the observation volume ObsMask, in mm."""
    obs_margin: float = 10.0
    """Voxels whose centre lies within this distance (mm) of the object surface count as observed."""
    detail: int = 4
    """Tessellation of the procedural shape (icosphere subdivisions)."""
    progress: bool = True
    """Show a progress bar."""

    @property
    def image_height(self) -> int:
        """Height in pixels."""
        return self.height if self.height is not None else max(8, round(self.size * 3 / 4))

    def validate(self) -> None:
        """Raise ValueError/FileNotFoundError for bad settings before anything is written."""
        if self.views < 1:
            raise ValueError(f"views must be >= 1, got {self.views}")
        if self.size < 8 or self.image_height < 8:
            raise ValueError(f"size and height must be >= 8 pixels, got {self.size} x {self.image_height}")
        if not 0.0 < self.object_radius <= 1.0:
            raise ValueError(f"object_radius must be in (0, 1], got {self.object_radius}")
        if self.distance <= 1.0:
            raise ValueError(f"distance must be > 1 (cameras outside the unit sphere), got {self.distance}")
        for name in ("sphere_radius_mm", "gt_density", "obs_res", "obs_margin", "ground_half_size"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.supersample < 1:
            raise ValueError(f"supersample must be >= 1, got {self.supersample}")
        if self.mesh is not None and not Path(self.mesh).is_file():
            raise FileNotFoundError(f"{self.mesh}: mesh file not found")


def scale_matrix(center: Float[np.ndarray, "3"], radius: float) -> Float[np.ndarray, "4 4"]:
    """NeuS ``scale_mat``: maps the unit sphere onto the world sphere of ``radius`` around ``center``."""
    S = np.diag([radius, radius, radius, 1.0])
    S[:3, 3] = center
    return S


def obs_mask_volume(
    points: Float[np.ndarray, "n 3"], res: float, margin: float
) -> tuple[Float[np.ndarray, "2 3"], Bool[np.ndarray, "x y z"]]:
    """Bounding box ``BB`` and the voxels (centres ``BB[0] + res * ijk``) within ``margin`` of ``points``."""
    from scipy.spatial import cKDTree

    bb = np.stack([points.min(0) - margin, points.max(0) + margin])
    shape = np.floor((bb[1] - bb[0]) / res).astype(np.int64) + 1
    axes = [bb[0, k] + res * np.arange(shape[k]) for k in range(3)]
    centres = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    dist, _ = cKDTree(points).query(centres, k=1, distance_upper_bound=margin * (1 + 1e-9), workers=-1)
    return bb, (dist <= margin).reshape(*shape)


def write_ground_truth(
    gt_dir: Path,
    scan: int,
    object_world,
    plane_z: float,
    density: float,
    obs_res: float,
    obs_margin: float,
) -> dict[str, int]:
    """Write STL points, ObsMask and Plane files for an object mesh in world coordinates; returns counts."""
    import trimesh
    from scipy.io import savemat

    stl = surface_points(object_world.vertices, object_world.faces, density)
    (gt_dir / "Points" / "stl").mkdir(parents=True, exist_ok=True)
    (gt_dir / "ObsMask").mkdir(parents=True, exist_ok=True)
    trimesh.PointCloud(stl).export(gt_dir / "Points" / "stl" / f"stl{scan:03d}_total.ply")
    bb, volume = obs_mask_volume(stl, obs_res, obs_margin)
    savemat(
        gt_dir / "ObsMask" / f"ObsMask{scan}_10.mat",
        {"BB": bb, "Res": np.array([[obs_res]]), "ObsMask": volume},
        do_compression=True,
    )
    savemat(gt_dir / "ObsMask" / f"Plane{scan}.mat", {"P": np.array([[0.0], [0.0], [1.0], [-plane_z]])})
    return {"stl_points": len(stl), "obs_voxels": int(volume.sum()), "obs_shape": list(volume.shape)}


def write_dtu_scene(cfg: DTUSceneConfig) -> Path:
    """Render and write the scene and its ground truth; returns the output folder."""
    from PIL import Image

    cfg.validate()
    obj = scene_object(cfg.shape, cfg.mesh, cfg.detail)
    obj.vertices = obj.vertices * cfg.object_radius
    out = cfg.prepare_output()
    width, height = cfg.size, cfg.image_height
    center, radius = np.asarray(cfg.center_mm, dtype=np.float64), cfg.sphere_radius_mm
    plane_z_norm = float(obj.vertices[:, 2].min())
    ground = ground_plane(plane_z_norm, cfg.ground_half_size) if cfg.ground else None
    scene = SceneGeometry.build(obj, ground, center, radius)
    S = scale_matrix(center, radius)
    K = intrinsics(width, height, focal_to_fit_sphere(cfg.distance, 1.0, min(width, height)))
    eyes = cfg.distance * fibonacci_directions(cfg.views, cfg.min_elevation_deg, cfg.max_elevation_deg)
    (out / "image").mkdir(exist_ok=True)
    (out / "mask").mkdir(exist_ok=True)
    cameras: dict[str, np.ndarray] = {}
    with progress(enabled=cfg.progress) as bar:
        for i, eye in enumerate(bar.track(eyes, description="rendering (dtu)")):
            R, t = opengl_c2w_to_opencv_w2c(look_at_c2w_opengl(center + radius * eye, center))
            view = render(scene, K, R, t, width, height, supersample=cfg.supersample)
            rgb = view.rgb * view.coverage[..., None] + np.asarray(BACKGROUND) * (1.0 - view.coverage[..., None])
            Image.fromarray(np.round(rgb * 255.0).astype(np.uint8)).save(out / "image" / f"{i:06d}.png")
            mask = np.repeat((view.object_coverage >= 0.5)[..., None], 3, axis=-1).astype(np.uint8) * 255
            Image.fromarray(mask).save(out / "mask" / f"{i:03d}.png")
            P = projection_matrix(K, R, t)
            cameras.update({f"world_mat_{i}": P, f"world_mat_inv_{i}": np.linalg.inv(P)})
            cameras.update({f"scale_mat_{i}": S, f"scale_mat_inv_{i}": np.linalg.inv(S)})
    np.savez(out / "cameras_sphere.npz", **cameras)

    gt_dir = out / "gt"
    gt_dir.mkdir(exist_ok=True)
    world = obj.copy()
    world.vertices = obj.vertices * radius + center
    obj.export(gt_dir / "object_normalized.ply")
    world.export(gt_dir / "object_world.ply")
    plane_z = plane_z_norm * radius + center[2]
    counts = write_ground_truth(gt_dir, cfg.scan, world, plane_z, cfg.gt_density, cfg.obs_res, cfg.obs_margin)
    meta = {
        "config": asdict(cfg),
        "width": width,
        "height": height,
        "scale_mat": S.tolist(),
        "plane_z_mm": plane_z,
        "object_faces": len(obj.faces),
        **counts,
    }
    write_json(out / "scene.json", meta)
    return out
