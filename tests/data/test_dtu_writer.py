"""NeuS/DTU-layout writer: world_mat explains the masks, scale_mat places the unit sphere, GT files are right."""

from __future__ import annotations

import json

import numpy as np
import pytest
import trimesh
from PIL import Image
from scipy.io import loadmat
from scipy.spatial import cKDTree

from norm_nerf.data.cameras import project
from norm_nerf.data.dtu import DTUSceneConfig, write_dtu_scene
from norm_nerf.data.raycast import cast_rays

W, H, VIEWS, RADIUS_MM, CENTER = 40, 30, 4, 50.0, (30.0, -20.0, 50.0)


def _cfg(out, **kw) -> DTUSceneConfig:
    base = dict(out=out, views=VIEWS, size=W, height=H, sphere_radius_mm=RADIUS_MM, center_mm=CENTER, detail=3)
    return DTUSceneConfig(**{**base, "gt_density": 1.0, "progress": False, **kw})


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    return write_dtu_scene(_cfg(tmp_path_factory.mktemp("dtu") / "scan"))


def _pixel_rays(P: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Rays through integer pixel centres, from P alone: centre -M^-1 p4, direction M^-1 (u, v, 1)."""
    M, p4 = P[:3, :3], P[:3, 3]
    u, v = np.meshgrid(np.arange(width, dtype=float), np.arange(height, dtype=float))
    pix = np.stack([u.ravel(), v.ravel(), np.ones(u.size)])
    return -np.linalg.solve(M, p4), (np.linalg.solve(M, pix) * np.sign(np.linalg.det(M))).T


def test_layout(scene) -> None:
    assert sorted(p.name for p in (scene / "image").iterdir()) == [f"{i:06d}.png" for i in range(VIEWS)]
    assert sorted(p.name for p in (scene / "mask").iterdir()) == [f"{i:03d}.png" for i in range(VIEWS)]
    img = np.asarray(Image.open(scene / "image" / "000000.png"))
    mask = np.asarray(Image.open(scene / "mask" / "000.png"))
    assert img.shape == (H, W, 3) and mask.shape == (H, W, 3)
    assert set(np.unique(mask)) == {0, 255}
    cams = np.load(scene / "cameras_sphere.npz")
    for i in range(VIEWS):
        for name in ("world_mat", "scale_mat"):
            assert cams[f"{name}_{i}"].shape == (4, 4)
            np.testing.assert_allclose(cams[f"{name}_{i}"] @ cams[f"{name}_inv_{i}"], np.eye(4), atol=1e-9)
    for name in ("Points/stl/stl001_total.ply", "ObsMask/ObsMask1_10.mat", "ObsMask/Plane1.mat"):
        assert (scene / "gt" / name).is_file()


def test_scale_mat_maps_the_unit_sphere_to_the_object_region(scene) -> None:
    S = np.load(scene / "cameras_sphere.npz")["scale_mat_0"]
    norm = trimesh.load(scene / "gt/object_normalized.ply", process=False)
    world = trimesh.load(scene / "gt/object_world.ply", process=False)
    mapped = norm.vertices @ S[:3, :3].T + S[:3, 3]
    np.testing.assert_allclose(mapped, world.vertices, atol=1e-4)  # PLY stores float32
    assert np.linalg.norm(norm.vertices, axis=1).max() == pytest.approx(0.6)  # object_radius inside the sphere
    np.testing.assert_allclose(S[:3, 3], CENTER)


def test_projection_of_known_points_lands_on_the_right_pixels(scene) -> None:
    cams = np.load(scene / "cameras_sphere.npz")
    world = trimesh.load(scene / "gt/object_world.ply", process=False)
    center = np.asarray(CENTER)
    for i in range(VIEWS):
        P = cams[f"world_mat_{i}"]
        mask = np.asarray(Image.open(scene / "mask" / f"{i:03d}.png"))[..., 0] > 0
        (u, v), (u_top, v_top) = project(P, np.stack([center, center + [0, 0, 0.6 * RADIUS_MM]]))[0]
        rows, cols = np.nonzero(mask)
        # the cameras look at the sphere's centre: its silhouette is a disc centred on the projected centre
        assert cols.mean() == pytest.approx(u, abs=0.05) and rows.mean() == pytest.approx(v, abs=0.05)
        assert mask[round(v), round(u)]
        assert v_top < v  # world up (+z) is up in the image
        # every pixel's ray, computed from world_mat alone, hits the object exactly where the mask says so
        origin, dirs = _pixel_rays(P, W, H)
        hit = cast_rays(origin, dirs, world.vertices, world.faces).hit.reshape(H, W)
        np.testing.assert_array_equal(hit, mask)


def test_ground_truth_files(scene) -> None:
    meta = json.loads((scene / "scene.json").read_text())
    obs = loadmat(scene / "gt/ObsMask/ObsMask1_10.mat")
    assert obs["BB"].shape == (2, 3) and np.size(obs["Res"]) == 1 and obs["ObsMask"].ndim == 3
    assert set(np.unique(obs["ObsMask"])) == {0, 1}  # a logical volume (scipy reads it back as uint8)
    plane = loadmat(scene / "gt/ObsMask/Plane1.mat")["P"].reshape(4)
    stl = np.asarray(trimesh.load(scene / "gt/Points/stl/stl001_total.ply").vertices)
    assert len(stl) == meta["stl_points"]
    # the STL points are on the object (a sphere of radius 0.6 * 50 mm, faceted) and spaced by gt_density
    r = np.linalg.norm(stl - np.asarray(CENTER), axis=1)
    assert r.max() <= 30.0 + 1e-4 and r.min() > 29.0
    nn, _ = cKDTree(stl).query(stl, k=2)
    assert nn[:, 1].min() > 1.0 and np.median(nn[:, 1]) < 1.6
    # the plane touches the bottom of the object; every STL point is on or above it
    height = np.concatenate([stl, np.ones((len(stl), 1))], axis=1) @ plane
    assert height.min() == pytest.approx(0.0, abs=1e-3) and (height > 0).mean() > 0.99
    # ObsMask voxel (i, j, k) is centred at BB[0] + Res * (i, j, k): the voxels of the STL points are observed
    ijk = np.rint((stl - obs["BB"][0]) / float(obs["Res"].squeeze())).astype(int)
    assert obs["ObsMask"][ijk[:, 0], ijk[:, 1], ijk[:, 2]].all()
    assert not obs["ObsMask"][0, 0, 0]  # 10 mm margin, 4 mm voxels: the box corners are far from a sphere


def test_images_show_the_ground_outside_the_mask(scene) -> None:
    img = np.asarray(Image.open(scene / "image" / "000000.png")).astype(int)
    mask = np.asarray(Image.open(scene / "mask" / "000.png"))[..., 0] > 0
    background = np.all(img == round(0.05 * 255), axis=-1)
    assert (~mask & ~background).sum() > 100  # textured ground around the object
    assert not (mask & background).any()


@pytest.mark.parametrize(
    ("kw", "error", "match"),
    [
        ({"views": 0}, ValueError, "views must be >= 1"),
        ({"size": 6}, ValueError, "size and height must be >= 8"),
        ({"gt_density": 0.0}, ValueError, "gt_density must be positive"),
        ({"object_radius": 1.5}, ValueError, "object_radius"),
    ],
)
def test_bad_input_is_refused_before_writing(tmp_path, kw, error, match) -> None:
    with pytest.raises(error, match=match):
        write_dtu_scene(_cfg(tmp_path / "scan", **kw))
    assert not (tmp_path / "scan").exists()


def test_missing_mesh_file_is_named(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="gone.ply: mesh file not found"):
        write_dtu_scene(_cfg(tmp_path / "scan", mesh=tmp_path / "gone.ply"))
