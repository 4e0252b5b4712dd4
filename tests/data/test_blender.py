"""Blender-layout writer: nerfstudio reads it, its rays explain the alpha masks exactly, bad input is refused."""

from __future__ import annotations

import json

import numpy as np
import pytest
import trimesh
from PIL import Image

from norm_nerf.data.blender import BlenderSceneConfig, write_blender_scene
from norm_nerf.data.raycast import cast_rays


def _cfg(tmp_path, **kw) -> BlenderSceneConfig:
    base = dict(out=tmp_path / "scene", views=3, val_views=1, test_views=1, size=24, detail=2, supersample=1)
    return BlenderSceneConfig(**{**base, "progress": False, **kw})


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    return write_blender_scene(_cfg(tmp_path_factory.mktemp("blender"), shape="torus"))


def test_layout(scene) -> None:
    for split, n in (("train", 3), ("val", 1), ("test", 1)):
        meta = json.loads((scene / f"transforms_{split}.json").read_text())
        assert len(meta["frames"]) == n and meta["camera_angle_x"] > 0
        frame = meta["frames"][0]
        assert frame["file_path"] == f"./{split}/r_0"
        c2w = np.asarray(frame["transform_matrix"])
        assert c2w.shape == (4, 4)
        np.testing.assert_allclose(c2w[3], [0, 0, 0, 1])
        # OpenGL: the camera's -z axis points at the object at the origin
        np.testing.assert_allclose(-c2w[:3, 2], -c2w[:3, 3] / np.linalg.norm(c2w[:3, 3]), atol=1e-12)
        img = np.asarray(Image.open(scene / f"{split}/r_0.png"))
        assert img.shape == (24, 24, 4) and img.dtype == np.uint8
        assert img[0, 0, 3] == 0 and img[..., 3].any()  # transparent background, something covered


@pytest.mark.filterwarnings("ignore::UserWarning")  # nerfstudio's own indexing deprecation warnings
def test_nerfstudio_parser_rays_explain_the_alpha(scene) -> None:
    from nerfstudio.data.dataparsers.blender_dataparser import BlenderDataParserConfig

    outputs = BlenderDataParserConfig(data=scene).setup().get_dataparser_outputs("train")
    assert len(outputs.image_filenames) == 3
    mesh = trimesh.load(scene / "object_normalized.ply", process=False)
    for i, path in enumerate(outputs.image_filenames):
        rays = outputs.cameras.generate_rays(camera_indices=i)
        origins = rays.origins.reshape(-1, 3).double().numpy()
        dirs = rays.directions.reshape(-1, 3).double().numpy()
        hit = cast_rays(origins, dirs, mesh.vertices, mesh.faces).hit
        alpha = np.asarray(Image.open(path))[..., 3].reshape(-1)
        assert set(np.unique(alpha)) <= {0, 255}  # one ray per pixel: alpha is 0 or 1
        assert hit.sum() > 20
        np.testing.assert_array_equal(hit, alpha == 255)


def test_writer_is_deterministic(tmp_path, scene) -> None:
    again = write_blender_scene(_cfg(tmp_path, shape="torus"))
    for name in ("train/r_0.png", "test/r_0.png", "transforms_val.json"):
        assert (again / name).read_bytes() == (scene / name).read_bytes()


def test_texture_options_change_the_object_colours(tmp_path, scene) -> None:
    plain = write_blender_scene(_cfg(tmp_path, shape="torus", checker_period=0.5, stripe_depth=0.0))
    default, coarse = (np.asarray(Image.open(s / "train/r_0.png"), dtype=float) for s in (scene, plain))
    covered = default[..., 3] == 255
    assert np.array_equal(default[..., 3], coarse[..., 3])  # the same geometry and cameras
    assert np.abs(default[covered, :3] - coarse[covered, :3]).mean() > 5  # another texture (0-255 scale)
    assert coarse[covered, :3].mean() > default[covered, :3].mean()  # no stripes: nothing darkens it


def test_supersampling_gives_fractional_coverage(tmp_path) -> None:
    out = write_blender_scene(_cfg(tmp_path, views=1, supersample=3))
    alpha = np.asarray(Image.open(out / "train/r_0.png"))[..., 3]
    assert ((alpha > 0) & (alpha < 255)).any()


@pytest.mark.parametrize(
    ("kw", "error", "match"),
    [
        ({"views": 0}, ValueError, "views must be >= 1"),
        ({"size": 4}, ValueError, "size must be >= 8"),
        ({"val_views": 0}, ValueError, "val_views"),
        ({"distance": 0.5}, ValueError, "distance"),
        ({"stripe_depth": 1.5}, ValueError, "stripe_depth must be in"),
        ({"checker_period": 0.0}, ValueError, "texture periods must be positive"),
        ({"mesh": "MISSING"}, FileNotFoundError, "missing.obj: mesh file not found"),
        ({"mesh": "CLOUD"}, ValueError, "cloud.ply: the file holds no triangle faces"),
    ],
)
def test_bad_input_is_refused_before_writing(tmp_path, kw, error, match) -> None:
    if kw.get("mesh") == "MISSING":
        kw = {"mesh": tmp_path / "missing.obj"}
    elif kw.get("mesh") == "CLOUD":
        trimesh.PointCloud(np.eye(3)).export(tmp_path / "cloud.ply")
        kw = {"mesh": tmp_path / "cloud.ply"}
    cfg = _cfg(tmp_path, **kw)
    with pytest.raises(error, match=match):
        write_blender_scene(cfg)
    assert not (tmp_path / "scene").exists()
