"""norm-dtu dataparser: nerfstudio rays from the parsed cameras hit what the NeuS/IDR cameras say they hit."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
import trimesh
from PIL import Image

from norm_nerf.data.cameras import focal_to_fit_sphere, intrinsics, project
from norm_nerf.data.images import ImageError
from norm_nerf.data.neus_layout import decompose_projection, normalized_to_world
from norm_nerf.data.raycast import cast_rays
from norm_nerf.ns.dtu_dataparser import NormDTUDataParserConfig, split_indices

W, H, VIEWS, CENTER, RADIUS = 32, 24, 5, (30.0, -20.0, 50.0), 50.0  # dtu_scan_parser (tests/conftest.py)


def _parse(data, tmp_path, split="train", **kw):
    cfg = NormDTUDataParserConfig(data=data, cache_dir=tmp_path / "cache", **kw)
    return cfg.setup().get_dataparser_outputs(split)


def _rays(outputs, i: int, coords: torch.Tensor | None = None):
    """Origins and unit directions (numpy) of camera ``i``'s rays: all pixels, or at (row, col) ``coords``."""
    bundle = outputs.cameras.generate_rays(camera_indices=i, coords=coords)
    return bundle.origins.reshape(-1, 3).double().numpy(), bundle.directions.reshape(-1, 3).double().numpy()


def _line_distance(origins, dirs, points) -> np.ndarray:
    """Distance of each point to the corresponding ray's line."""
    rel = points - origins
    return np.linalg.norm(rel - (rel * dirs).sum(-1, keepdims=True) * dirs, axis=-1)


def test_mask_pixels_are_the_rays_that_hit_the_object(dtu_scan_parser, tmp_path) -> None:
    out = _parse(dtu_scan_parser, tmp_path, eval_mode="all", use_masks=True)
    obj = trimesh.load(dtu_scan_parser / "gt" / "object_normalized.ply", process=False)
    assert len(out.image_filenames) == VIEWS and len(out.mask_filenames) == VIEWS
    for i in range(VIEWS):
        origins, dirs = _rays(out, i)
        hit = cast_rays(origins, dirs, obj.vertices, obj.faces).hit.reshape(H, W)
        mask = np.asarray(Image.open(out.mask_filenames[i]))  # one channel, as nerfstudio needs
        assert mask.shape == (H, W)
        assert 0 < hit.sum() < H * W
        assert (hit == (mask > 127)).mean() > 0.995  # float32 rays may flip a pixel on a silhouette edge


@pytest.mark.parametrize("factor", [1, 2])
def test_known_points_land_on_their_pixels(dtu_scan_parser, tmp_path, factor: int) -> None:
    out = _parse(dtu_scan_parser, tmp_path, eval_mode="all", downscale_factor=factor)
    cams = np.load(dtu_scan_parser / "cameras_sphere.npz")
    rng = np.random.default_rng(0)
    points = np.concatenate([np.zeros((1, 3)), rng.uniform(-0.5, 0.5, (20, 3))])  # object centre + random points
    for i in range(VIEWS):
        uv, w = project(cams[f"world_mat_{i}"] @ cams[f"scale_mat_{i}"], points)  # IDR pixels: centres at integers
        assert (w > 0).all()
        coords = torch.from_numpy((uv[:, ::-1] + 0.5) / factor).float()  # nerfstudio (row, col), centres at +0.5
        origins, dirs = _rays(out, i, coords)
        assert _line_distance(origins, dirs, points).max() < 1e-4
    if factor > 1:
        assert int(out.cameras.width[0]) == W // factor and int(out.cameras.height[0]) == H // factor
        assert Image.open(out.image_filenames[0]).size == (W // factor, H // factor)


def test_poses_are_in_the_unit_sphere_frame_and_look_at_the_object(dtu_scan_parser, tmp_path) -> None:
    out = _parse(dtu_scan_parser, tmp_path, eval_mode="all")
    c2w = out.cameras.camera_to_worlds.double().numpy()
    centres, forward = c2w[:, :, 3], -c2w[:, :, 2]  # OpenGL: the camera looks down -z
    np.testing.assert_allclose(np.linalg.norm(centres, axis=1), 3.0, rtol=1e-5)  # DTUSceneConfig.distance
    cos = (forward * -centres).sum(-1) / np.linalg.norm(centres, axis=1)
    assert (cos > 1 - 1e-5).all()
    up = c2w[:, :, 1]  # the writer's cameras have no roll: image up is towards world +z
    assert (up[:, 2] > 0).all()
    assert out.scene_box.aabb.tolist() == [[-1, -1, -1], [1, 1, 1]]


def test_scale_mat_round_trip(dtu_scan_parser, tmp_path) -> None:
    out = _parse(dtu_scan_parser, tmp_path, eval_mode="all")
    S = out.metadata["scale_mat"].numpy()
    np.testing.assert_allclose(S, json.loads((dtu_scan_parser / "scene.json").read_text())["scale_mat"])
    obj = trimesh.load(dtu_scan_parser / "gt" / "object_normalized.ply", process=False)
    world = trimesh.load(dtu_scan_parser / "gt" / "object_world.ply", process=False)
    np.testing.assert_allclose(normalized_to_world(obj.vertices, S), world.vertices, atol=1e-3)
    # nerfstudio's transform/scale encode the same map: poses back in world units == the raw world_mats' cameras
    poses = out.transform_poses_to_original_space(out.cameras.camera_to_worlds, camera_convention="opencv")
    cams = np.load(dtu_scan_parser / "cameras_sphere.npz")
    for i in range(VIEWS):
        _, c2w_world = decompose_projection(cams[f"world_mat_{i}"][:3])
        np.testing.assert_allclose(poses[i].double().numpy(), c2w_world[:3], atol=1e-3 * RADIUS)
    out.save_dataparser_transform(tmp_path / "dataparser_transforms.json")
    saved = json.loads((tmp_path / "dataparser_transforms.json").read_text())
    assert {"transform", "scale", "scale_mat"} <= set(saved)
    np.testing.assert_allclose(saved["scale_mat"], S)


def test_splits(dtu_scan_parser, tmp_path) -> None:
    assert split_indices(20, "train", "interval", 8) == [i for i in range(20) if i % 8]
    assert split_indices(20, "test", "interval", 8) == [0, 8, 16]
    assert split_indices(5, "val", "all", 8) == list(range(5))
    train = _parse(dtu_scan_parser, tmp_path, eval_mode="interval", eval_interval=2)
    test = _parse(dtu_scan_parser, tmp_path, split="test", eval_mode="interval", eval_interval=2)
    assert [p.name for p in train.image_filenames] == ["000001.png", "000003.png"]
    assert [p.name for p in test.image_filenames] == ["000000.png", "000002.png", "000004.png"]
    assert test.metadata["view_indices"] == [0, 2, 4] and len(test.cameras) == 3
    with pytest.raises(ValueError, match="split"):
        split_indices(5, "bogus", "interval", 8)


def test_decompose_projection_recovers_k_and_pose() -> None:
    rng = np.random.default_rng(1)
    K = np.array([[500.0, 0.0, 31.5], [0.0, 480.0, 20.0], [0.0, 0.0, 1.0]])
    R, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    R *= np.sign(np.linalg.det(R))
    t = rng.normal(size=3)
    P = -2.5 * K @ np.concatenate([R, t[:, None]], axis=1)  # any scale, even negative
    K2, c2w = decompose_projection(P)
    np.testing.assert_allclose(K2, K, atol=1e-9)
    np.testing.assert_allclose(c2w[:3, :3], R.T, atol=1e-9)
    np.testing.assert_allclose(c2w[:3, 3], -R.T @ t, atol=1e-9)
    with pytest.raises(ValueError, match="singular"):
        decompose_projection(np.zeros((3, 4)))


# ---- bad input: each error names the offending file or folder ----


@pytest.fixture
def broken(dtu_scan_parser, tmp_path):
    """A writable copy of the tiny scan to break."""
    dst = tmp_path / "scan"
    shutil.copytree(dtu_scan_parser, dst, ignore=shutil.ignore_patterns("gt"))
    return dst


def _save_world_mats(scan, edits: dict[int, np.ndarray]) -> None:
    cams = dict(np.load(scan / "cameras_sphere.npz"))
    cams.update({f"world_mat_{i}": P for i, P in edits.items()})
    np.savez(scan / "cameras_sphere.npz", **cams)


def _k_and_rt(P: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The writer's K (DTUSceneConfig: distance 3, the unit sphere fills the shorter side) and [R | t] = K^-1 P."""
    K = intrinsics(W, H, focal_to_fit_sphere(3.0, 1.0, min(W, H)))
    return K, np.linalg.solve(K, P[:3])


def test_sign_conventions_of_world_mat_give_the_same_camera(broken, tmp_path) -> None:
    """P and -P (any scale) are one camera; a negative focal length with the matching flipped row of R as well."""
    original = _parse(broken, tmp_path / "a", eval_mode="all").cameras
    cams = np.load(broken / "cameras_sphere.npz")
    flip_x, flip_z = np.diag([-1.0, 1.0, 1.0]), np.diag([1.0, 1.0, -1.0])
    K, Rt = _k_and_rt(cams["world_mat_3"])
    K4, Rt4 = _k_and_rt(cams["world_mat_4"])
    edits = {
        1: -cams["world_mat_1"],
        2: -0.01 * cams["world_mat_2"],
        3: np.vstack([(K @ flip_x) @ (flip_x @ Rt), [0, 0, 0, 1]]),  # fx < 0 and R's first row negated
        4: np.vstack([(K4 @ flip_z) @ (flip_z @ Rt4), [0, 0, 0, 1]]),  # K[2, 2] = -1 and R's last row negated
    }
    assert (K @ flip_x)[0, 0] < 0 and np.linalg.det(flip_x @ Rt[:, :3]) < 0
    _save_world_mats(broken, edits)
    parsed = _parse(broken, tmp_path / "b", eval_mode="all").cameras
    for name in ("camera_to_worlds", "fx", "fy", "cx", "cy", "width", "height"):
        torch.testing.assert_close(getattr(parsed, name), getattr(original, name), atol=1e-5, rtol=1e-5)
    c2w = parsed.camera_to_worlds.double()
    centres, forward = c2w[:, :, 3], -c2w[:, :, 2]  # OpenGL: the camera looks down -z
    assert ((forward * -centres).sum(-1) / centres.norm(dim=-1) > 1 - 1e-5).all()  # straight at the object


def _looking_away(P: np.ndarray) -> np.ndarray:
    """The camera of ``P`` turned around: same centre and intrinsics, looking away from the unit sphere."""
    K, Rt = _k_and_rt(P)
    R = np.diag([-1.0, 1.0, -1.0]) @ Rt[:, :3]  # half a turn about the camera's y axis
    centre = -np.linalg.solve(Rt[:, :3], Rt[:, 3])
    return np.vstack([K @ np.concatenate([R, (-R @ centre)[:, None]], axis=1), [0, 0, 0, 1]])


@pytest.mark.parametrize(
    "edit",
    [
        _looking_away,
        lambda P: -_looking_away(P),
        lambda P: np.diag([-1.0, 1.0, 1.0, 1.0]) @ P,  # a mirrored image: fx < 0 with R kept
    ],
    ids=["away", "away-negated", "mirrored"],
)
def test_camera_facing_away_is_refused(broken, tmp_path, edit) -> None:
    _save_world_mats(broken, {3: edit(np.load(broken / "cameras_sphere.npz")["world_mat_3"])})
    message = (
        r"cameras_sphere.npz: camera 3 \(world_mat_3, image .*000003.png\): the unit sphere's centre is behind the "
        r"camera \(depth -[0-9.]+\): the camera faces away from the object, or the matrix mirrors the image"
    )
    with pytest.raises(ValueError, match=message):
        _parse(broken, tmp_path)


def test_missing_folder(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="nope"):
        _parse(tmp_path / "nope", tmp_path)


def test_missing_camera_file(broken, tmp_path) -> None:
    (broken / "cameras_sphere.npz").unlink()
    with pytest.raises(FileNotFoundError, match="cameras_sphere.npz"):
        _parse(broken, tmp_path)


@pytest.mark.parametrize("key", ["world_mat_3", "scale_mat_3"])
def test_missing_matrix_for_an_image(broken, tmp_path, key: str) -> None:
    cams = dict(np.load(broken / "cameras_sphere.npz"))
    del cams[key]
    np.savez(broken / "cameras_sphere.npz", **cams)
    with pytest.raises(ValueError, match=f"no {key} for image .*000003.png"):
        _parse(broken, tmp_path)


def test_mask_count_mismatch(broken, tmp_path) -> None:
    (broken / "mask" / "004.png").unlink()
    _parse(broken, tmp_path)  # masks are not read unless asked for
    with pytest.raises(ValueError, match="4 masks for 5 images"):
        _parse(broken, tmp_path, use_masks=True)


def test_missing_mask_folder(broken, tmp_path) -> None:
    shutil.rmtree(broken / "mask")
    with pytest.raises(FileNotFoundError, match="mask"):
        _parse(broken, tmp_path, use_masks=True)


def test_unreadable_image(broken, tmp_path) -> None:
    (broken / "image" / "000002.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="000002.png: cannot read image"):
        _parse(broken, tmp_path)


def test_palette_image_is_refused(broken, tmp_path) -> None:
    """nerfstudio's image loader would read the palette indices as gray values."""
    image = broken / "image" / "000001.png"
    Image.open(image).convert("P").save(image)
    with pytest.raises(ImageError, match="000001.png: Pillow mode P: nerfstudio's image loader reads only"):
        _parse(broken, tmp_path)


def test_bad_downscale_factor(dtu_scan_parser, tmp_path) -> None:
    with pytest.raises(ValueError, match="downscale_factor"):
        _parse(dtu_scan_parser, tmp_path, downscale_factor=0)


def test_registered_as_nerfstudio_dataparser() -> None:
    from nerfstudio.plugins.registry_dataparser import DataParserSpecification

    from norm_nerf.ns.dtu_dataparser import NormDTUDataParserConfig, norm_dtu

    assert isinstance(norm_dtu, DataParserSpecification)
    assert isinstance(norm_dtu.config, NormDTUDataParserConfig)


# ---- the real scan, when the shared data folder has it ----


@pytest.mark.shared_data
def test_dtu_scan65(shared_data, tmp_path) -> None:
    scan = shared_data / "dtu" / "scan65"
    if not (scan / "cameras_sphere.npz").is_file():
        pytest.skip(f"{scan} not present")
    out = _parse(scan, tmp_path, eval_mode="all")
    cams = out.cameras
    assert len(out.image_filenames) == 49 and len(cams) == 49
    assert (cams.width == 800).all() and (cams.height == 600).all()
    fx, fy = cams.fx.squeeze(-1), cams.fy.squeeze(-1)
    assert ((fx - fy).abs() / fx < 0.01).all() and (fx > 500).all()
    assert ((cams.cx - 400).abs() < 80).all() and ((cams.cy - 300).abs() < 80).all()
    c2w = cams.camera_to_worlds.double()
    centres, forward = c2w[:, :, 3], -c2w[:, :, 2]
    assert (centres.norm(dim=-1) > 1.5).all()  # outside the unit sphere
    cos = (forward * -centres).sum(-1) / centres.norm(dim=-1)
    assert (cos > np.cos(np.radians(15))).all()  # every camera looks at the object
    assert out.metadata["scale_mat"].shape == (4, 4)
    assert str(shared_data) not in str(tmp_path)  # the cache never goes into the data folder
    test = _parse(scan, tmp_path, split="test")
    assert len(test.image_filenames) == 7  # views 0, 8, ..., 48
