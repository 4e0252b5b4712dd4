"""Write a synthetic scene in the NeRF-synthetic (Blender) layout, readable by nerfstudio's ``blender-data``.

``transforms_{train,val,test}.json`` hold ``camera_angle_x`` and frames ``{"file_path": "./train/r_0",
"transform_matrix": c2w}`` (OpenGL camera-to-world: the camera looks down -z, y up). Images are RGBA PNGs whose
alpha is the pixel coverage, on a transparent background. The object is normalised into the unit sphere.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from jaxtyping import Float
from PIL import Image

from norm_nerf.data.cameras import (
    fibonacci_directions,
    focal_to_fit_sphere,
    intrinsics,
    look_at_c2w_opengl,
    opengl_c2w_to_opencv_w2c,
)
from norm_nerf.data.render import SceneGeometry, Shading, render
from norm_nerf.data.shapes import ShapeName, scene_object
from norm_nerf.data.texture import ProceduralTexture
from norm_nerf.utils.console import progress
from norm_nerf.utils.jsonio import write_json
from norm_nerf.utils.outputs import OutputOptions

SPLITS = ("train", "val", "test")


@dataclass
class BlenderSceneConfig(OutputOptions):
    """A textured object in the unit sphere, seen from cameras on a sphere, in the NeRF-synthetic layout."""

    output_root = Path("outputs/scenes/blender")

    shape: ShapeName = "sphere"
    """Procedural object (ignored when --mesh is given)."""
    mesh: Path | None = None
    """Mesh file (OBJ/PLY/...) to use instead of a procedural shape; it is normalised into the unit sphere."""
    views: int = 100
    """Training views."""
    val_views: int = 10
    """Validation views (camera positions not in the training set; at least 1)."""
    test_views: int = 10
    """Test views (camera positions not in the other sets; at least 1)."""
    size: int = 200
    """Image width and height in pixels."""
    distance: float = 4.0
    """Distance of the cameras from the origin (unit-sphere units)."""
    fov_deg: float | None = None
    """Horizontal field of view in degrees (default: the unit sphere fills the image with a 5 % margin)."""
    hemisphere: bool = False
    """Place the cameras on the upper hemisphere only (+z up) instead of the whole sphere."""
    supersample: int = 2
    """Rays per pixel along each axis (alpha becomes fractional coverage at silhouettes)."""
    detail: int = 4
    """Tessellation of the procedural shape (icosphere subdivisions)."""
    seed: int = 0
    """Seed of the assignment of camera positions to splits."""
    checker_period: float = 0.25
    """Edge length of the object texture's checker cells (unit-sphere units; larger cells are learned sooner)."""
    stripe_depth: float = 0.35
    """How much the object texture's thin stripes darken it, in [0, 1] (0: no stripes)."""
    progress: bool = True
    """Show a progress bar."""

    def validate(self) -> None:
        """Raise ValueError/FileNotFoundError for bad settings before anything is written."""
        if self.views < 1:
            raise ValueError(f"views must be >= 1, got {self.views}")
        if self.val_views < 1 or self.test_views < 1:
            raise ValueError("val_views and test_views must be >= 1 (nerfstudio reads an image of every split)")
        if self.size < 8:
            raise ValueError(f"size must be >= 8 pixels, got {self.size}")
        if self.distance <= 1.0:
            raise ValueError(f"distance must be > 1 (cameras outside the unit sphere), got {self.distance}")
        if self.fov_deg is not None and not 0.0 < self.fov_deg < 180.0:
            raise ValueError(f"fov_deg must be in (0, 180), got {self.fov_deg}")
        if self.supersample < 1:
            raise ValueError(f"supersample must be >= 1, got {self.supersample}")
        if self.mesh is not None and not Path(self.mesh).is_file():
            raise FileNotFoundError(f"{self.mesh}: mesh file not found")
        self.texture()  # refuses non-positive periods and a stripe depth outside [0, 1]

    def texture(self) -> ProceduralTexture:
        """The object's texture."""
        return ProceduralTexture(checker_period=self.checker_period, stripe_depth=self.stripe_depth)


def split_cameras(cfg: BlenderSceneConfig) -> dict[str, np.ndarray]:
    """Camera positions per split: one Fibonacci set shuffled with ``seed`` and cut into train/val/test."""
    total = cfg.views + cfg.val_views + cfg.test_views
    eyes = cfg.distance * fibonacci_directions(total, 5.0 if cfg.hemisphere else -90.0)
    order = np.random.default_rng(cfg.seed).permutation(total)
    counts = np.cumsum([0, cfg.views, cfg.val_views, cfg.test_views])
    return {name: eyes[np.sort(order[counts[i] : counts[i + 1]])] for i, name in enumerate(SPLITS)}


def write_blender_scene(cfg: BlenderSceneConfig) -> Path:
    """Render and write the scene; returns the output folder."""
    cfg.validate()
    obj = scene_object(cfg.shape, cfg.mesh, cfg.detail)
    out = cfg.prepare_output()
    if cfg.fov_deg is None:
        focal = focal_to_fit_sphere(cfg.distance, 1.0, cfg.size)
    else:
        focal = 0.5 * cfg.size / math.tan(0.5 * math.radians(cfg.fov_deg))
    K = intrinsics(cfg.size, cfg.size, focal)
    scene = SceneGeometry.build(obj)
    jobs = [(split, i, eye) for split, eyes in split_cameras(cfg).items() for i, eye in enumerate(eyes)]
    frames: dict[str, list[dict]] = {split: [] for split in SPLITS}
    with progress(enabled=cfg.progress) as bar:
        for split, i, eye in bar.track(jobs, description="rendering (blender)"):
            _write_view(out, split, i, eye, scene, K, cfg, frames)
    camera_angle_x = 2.0 * math.atan(0.5 * cfg.size / focal)
    for split in SPLITS:
        write_json(out / f"transforms_{split}.json", {"camera_angle_x": camera_angle_x, "frames": frames[split]})
    obj.export(out / "object_normalized.ply")
    return out


def _write_view(
    out: Path,
    split: str,
    i: int,
    eye: Float[np.ndarray, "3"],  # noqa: F821
    scene: SceneGeometry,
    K: Float[np.ndarray, "3 3"],
    cfg: BlenderSceneConfig,
    frames: dict[str, list[dict]],
) -> None:
    """Render one view into ``out/<split>/r_<i>.png`` and add its frame to ``frames``."""
    c2w = look_at_c2w_opengl(eye, np.zeros(3))
    R, t = opengl_c2w_to_opencv_w2c(c2w)
    view = render(scene, K, R, t, cfg.size, cfg.size, Shading(object_texture=cfg.texture()), cfg.supersample)
    rgba = np.concatenate([view.rgb, view.coverage[..., None]], axis=-1)
    (out / split).mkdir(exist_ok=True)
    Image.fromarray(np.round(rgba * 255.0).astype(np.uint8)).save(out / split / f"r_{i}.png")
    frames[split].append({"file_path": f"./{split}/r_{i}", "transform_matrix": c2w.tolist()})
