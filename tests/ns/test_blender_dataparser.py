"""norm-blender: broken Blender-layout datasets give clear errors naming the file."""

from __future__ import annotations

import json
import math
import re
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from norm_nerf.data.images import ImageError
from norm_nerf.ns.blender_dataparser import BlenderDataError, NormBlenderDataParserConfig, check_blender_split


def _copy(scene, tmp_path):
    return shutil.copytree(scene, tmp_path / "scene")


def _parse(path, split="train"):
    return NormBlenderDataParserConfig(data=path).setup().get_dataparser_outputs(split)


def test_valid_scene_parses(tiny_scene) -> None:
    assert len(check_blender_split(tiny_scene, "train")) == 6
    assert len(_parse(tiny_scene).image_filenames) == 6


def test_missing_folder_and_split(tmp_path, tiny_scene) -> None:
    with pytest.raises(FileNotFoundError, match="nope: data folder not found"):
        _parse(tmp_path / "nope")
    scene = _copy(tiny_scene, tmp_path)
    (scene / "transforms_val.json").unlink()
    with pytest.raises(FileNotFoundError, match="transforms_val.json: missing"):
        _parse(scene, "val")


def test_no_frames(tmp_path, tiny_scene) -> None:
    scene = _copy(tiny_scene, tmp_path)
    meta = json.loads((scene / "transforms_train.json").read_text())
    meta["frames"] = []
    (scene / "transforms_train.json").write_text(json.dumps(meta))
    with pytest.raises(BlenderDataError, match="transforms_train.json: has no frames"):
        _parse(scene)


def test_missing_and_inconsistent_images(tmp_path, tiny_scene) -> None:
    scene = _copy(tiny_scene, tmp_path)
    meta = json.loads((scene / "transforms_train.json").read_text())
    first = scene / (meta["frames"][0]["file_path"].replace("./", "") + ".png")
    Image.new("RGBA", (20, 16)).save(first)
    with pytest.raises(BlenderDataError, match="images of different sizes"):
        _parse(scene)
    first.unlink()
    with pytest.raises(FileNotFoundError, match="image of frame 0 .* not found"):
        _parse(scene)


def test_downscaled_copies_match_block_averages(tiny_scene, tmp_path) -> None:
    from nerfstudio.data.datasets.base_dataset import InputDataset

    before = sorted(p.name for p in tiny_scene.rglob("*"))
    full_cfg = NormBlenderDataParserConfig(data=tiny_scene)
    small_cfg = NormBlenderDataParserConfig(data=tiny_scene, downscale_factor=2, cache_dir=tmp_path / "cache")
    full, small = (c.setup().get_dataparser_outputs("train") for c in (full_cfg, small_cfg))
    assert sorted(p.name for p in tiny_scene.rglob("*")) == before  # nothing written into the data folder
    assert all(str(p).startswith(str(tmp_path / "cache")) for p in small.image_filenames)
    torch.testing.assert_close(small.cameras.fx, full.cameras.fx / 2)
    torch.testing.assert_close(small.cameras.cx, full.cameras.cx / 2)
    assert int(small.cameras.width[0]) == 8
    big = InputDataset(full).get_image_float32(0).numpy()  # composited onto white by nerfstudio
    little = InputDataset(small).get_image_float32(0).numpy()
    expected = big.reshape(8, 2, 8, 2, 3).mean(axis=(1, 3))
    assert np.abs(little - expected).max() < 2.5 / 255  # premultiplied averaging: exact up to uint8 rounding


def test_downscale_factor_must_divide_the_image(tiny_scene, tmp_path) -> None:
    cfg = NormBlenderDataParserConfig(data=tiny_scene, downscale_factor=3, cache_dir=tmp_path)
    with pytest.raises(BlenderDataError, match="do not divide by downscale_factor 3"):
        cfg.setup().get_dataparser_outputs("train")


def _edit_meta(scene, edit, split: str = "train") -> None:
    path = scene / f"transforms_{split}.json"
    meta = json.loads(path.read_text())
    edit(meta)
    path.write_text(json.dumps(meta))


def _set_pose(index: int, value):
    def edit(meta):
        meta["frames"][index]["transform_matrix"] = value

    return edit


def _set_entry(index: int, row: int, col: int, value):
    def edit(meta):
        meta["frames"][index]["transform_matrix"][row][col] = value

    return edit


def _scale_rotation(index: int, factor: float):
    def edit(meta):
        pose = meta["frames"][index]["transform_matrix"]
        for row in pose[:3]:
            row[:3] = [factor * v for v in row[:3]]

    return edit


def _mirror(index: int):
    def edit(meta):
        pose = meta["frames"][index]["transform_matrix"]
        for row in pose[:3]:
            row[0] = -row[0]

    return edit


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (_set_pose(2, "abc"), r"frame 2 \(./train/r_2\): transform_matrix must be a 4x4 list of numbers, got 'abc'"),
        (_set_pose(1, [[1, 0, 0, 0], 5, [0, 0, 1, 0], [0, 0, 0, 1]]), r"frame 1 .*: transform_matrix must be a 4x4"),
        (_set_pose(0, [[1, 0, 0], [0, 1, 0], [0, 0, 1]]), r"frame 0 .*: transform_matrix must be a 4x4"),
        (_set_entry(3, 1, 2, "abc"), r"frame 3 \(./train/r_3\): transform_matrix\[1\]\[2\] is 'abc', not a number"),
        (_set_entry(3, 0, 0, True), r"frame 3 .*: transform_matrix\[0\]\[0\] is True, not a number"),
        (_set_entry(4, 0, 3, float("nan")), r"frame 4 \(./train/r_4\): transform_matrix has non-finite values"),
        (_set_entry(4, 2, 1, float("inf")), r"frame 4 .*: transform_matrix has non-finite values"),
        (_scale_rotation(5, 1.5), r"frame 5 .*the rotation .* not orthonormal \(max \|R\^T R - I\| = 1\.25 > 0\.01"),
        (_scale_rotation(5, 0.0), r"frame 5 .*: the rotation .* is not orthonormal"),
        (_mirror(0), r"frame 0 .*: the rotation .* has determinant -1"),
    ],
)
def test_malformed_or_degenerate_poses(tmp_path, tiny_scene, edit, message) -> None:
    scene = _copy(tiny_scene, tmp_path)
    _edit_meta(scene, edit)
    with pytest.raises(BlenderDataError, match="transforms_train.json: " + message):
        _parse(scene)


def test_rounded_poses_pass(tmp_path, tiny_scene) -> None:
    """Poses printed with 4 decimals (as some exporters write them) are still accepted as rigid."""
    scene = _copy(tiny_scene, tmp_path)

    def round_all(meta):
        for frame in meta["frames"]:
            frame["transform_matrix"] = [[round(v, 4) for v in row] for row in frame["transform_matrix"]]

    _edit_meta(scene, round_all)
    assert len(check_blender_split(scene, "train")) == 6


def _set_meta(key: str, value):
    def edit(meta):
        meta[key] = value

    return edit


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            _set_meta("camera_angle_x", 30.4),
            r"camera_angle_x is 30\.4: it must be in radians, in \(0, pi\); it looks "
            r"like degrees \(30\.4 degrees = 0\.5306 rad\)",
        ),
        (_set_meta("camera_angle_x", 0), r"camera_angle_x is 0: it must be in radians, in \(0, pi\)"),
        (_set_meta("camera_angle_x", -0.5), r"camera_angle_x is -0\.5: it must be in radians"),
        (_set_meta("camera_angle_x", float("nan")), r"camera_angle_x is nan: it must be in radians"),
        (_set_meta("camera_angle_x", 3.5e3), r"camera_angle_x is 3500(\.0)?: it must be in radians, in \(0, pi\)$"),
        (_set_meta("camera_angle_x", "0.69"), r"camera_angle_x is '0\.69', not a number"),
        (_set_meta("camera_angle_y", 40), r"camera_angle_y is 40: .*looks like degrees"),
        (_set_meta("fl_x", 0), r"fl_x is 0: a focal length in pixels must be a finite number > 0"),
        (_set_meta("fl_y", float("inf")), r"fl_y is inf: a focal length in pixels must be"),
        (lambda meta: meta.pop("camera_angle_x"), r"has no camera_angle_x or fl_x"),
        (_set_meta("cx", "8"), r"cx is '8': the principal point \(pixels\) must be a finite number"),
        (_set_meta("cy", float("nan")), r"cy is nan: the principal point"),
        (_set_meta("w", 16.5), r"w is 16\.5: the image width must be a whole number > 0"),
        (_set_meta("h", 0), r"h is 0: the image height must be a whole number > 0"),
        (_set_meta("k1", 0.01), r"lens distortion \(k1 = 0\.01\) is not supported: norm-blender reads pinhole"),
        (_set_meta("camera_model", "OPENCV_FISHEYE"), r"camera_model 'OPENCV_FISHEYE' is not supported"),
        (
            lambda meta: meta["frames"][3].update(fl_x=20.0, cx=3.0),
            r"frame 3 \(./train/r_3\): has its own fl_x, cx: per-frame intrinsics are not supported",
        ),
    ],
)
def test_bad_intrinsics(tmp_path, tiny_scene, edit, message) -> None:
    scene = _copy(tiny_scene, tmp_path)
    _edit_meta(scene, edit)
    with pytest.raises(BlenderDataError, match="transforms_train.json: " + message):
        _parse(scene)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (_set_meta("frames", {"a": 1}), r"frames must be a list"),
        (_set_meta("frames", ["abc"]), r"frame 0 is 'abc', not an object"),
        (lambda meta: meta["frames"][1].pop("file_path"), r"frame 1 has no file_path"),
        (lambda meta: meta["frames"][1].update(file_path=3), r"frame 1 has no file_path"),
    ],
)
def test_malformed_frames(tmp_path, tiny_scene, edit, message) -> None:
    scene = _copy(tiny_scene, tmp_path)
    _edit_meta(scene, edit)
    with pytest.raises(BlenderDataError, match="transforms_train.json: " + message):
        _parse(scene)


def test_downscaled_path_checks_poses_too(tmp_path, tiny_scene) -> None:
    scene = _copy(tiny_scene, tmp_path)
    _edit_meta(scene, _set_entry(0, 0, 3, float("nan")))
    cfg = NormBlenderDataParserConfig(data=scene, downscale_factor=2, cache_dir=tmp_path / "cache")
    with pytest.raises(BlenderDataError, match="frame 0 .*non-finite"):
        cfg.setup().get_dataparser_outputs("train")
    assert not (tmp_path / "cache").exists()  # refused before anything is written


# ---- intrinsics from transforms.json (fl_x, fl_y, cx, cy, w, h) ----

SIZE = 16  # tiny_scene (tests/conftest.py)
FL_X, FL_Y, CX, CY = 30.0, 26.0, 6.5, 9.25  # off-centre principal point, non-square pixels


def _set_intrinsics(**values):
    def edit(meta):
        meta.update(values)

    return edit


def _angle(focal: float, side: int = SIZE) -> float:
    return 2.0 * math.atan(0.5 * side / focal)


def _pixel(c2w: np.ndarray, point: np.ndarray) -> np.ndarray:
    """(row, col) of ``point`` by hand: OpenGL camera (x right, y up, looking down -z), pixel centres at j + 0.5."""
    x, y, z = c2w[:3, :3].T @ (point - c2w[:3, 3])
    return np.array([CY - FL_Y * y / -z, CX + FL_X * x / -z])


@pytest.mark.parametrize("factor", [1, 2])
def test_off_centre_principal_point_rays_pass_through_the_expected_points(tmp_path, tiny_scene, factor: int) -> None:
    scene = _copy(tiny_scene, tmp_path)
    _edit_meta(scene, _set_intrinsics(camera_angle_x=_angle(FL_X), fl_x=FL_X, fl_y=FL_Y, cx=CX, cy=CY, w=16, h=16))
    cfg = NormBlenderDataParserConfig(data=scene, downscale_factor=factor, cache_dir=tmp_path / "cache")
    cameras = cfg.setup().get_dataparser_outputs("train").cameras
    poses = [
        np.asarray(f["transform_matrix"]) for f in json.loads((scene / "transforms_train.json").read_text())["frames"]
    ]
    assert int(cameras.width[0]) == SIZE // factor and int(cameras.height[0]) == SIZE // factor
    # the ray through pixel (row 3, col 12): its centre is at (3.5, 12.5), the direction built from fx, fy, cx, cy
    coords = torch.tensor([[3.5, 12.5]]) / factor
    expected = poses[0][:3, :3] @ np.array([(12.5 - CX) / FL_X, -(3.5 - CY) / FL_Y, -1.0])
    ray = cameras.generate_rays(camera_indices=0, coords=coords)
    np.testing.assert_allclose(ray.origins[0].double().numpy(), poses[0][:3, 3], atol=1e-5)
    np.testing.assert_allclose(ray.directions[0].double().numpy(), expected / np.linalg.norm(expected), atol=1e-5)
    # points projected by hand onto pixels lie on the rays that nerfstudio generates through those pixels
    points = np.random.default_rng(0).uniform(-0.5, 0.5, (8, 3))
    for i, c2w in enumerate(poses):
        pixels = torch.from_numpy(np.stack([_pixel(c2w, p) for p in points]) / factor).float()
        rays = cameras.generate_rays(camera_indices=i, coords=pixels)
        origins, dirs = rays.origins.double().numpy(), rays.directions.double().numpy()
        rel = points - origins
        off_ray = np.linalg.norm(rel - (rel * dirs).sum(-1, keepdims=True) * dirs, axis=-1)
        assert off_ray.max() < 1e-4


def test_intrinsics_defaults(tmp_path, tiny_scene) -> None:
    """fl_x alone: fy = fx and the principal point at the image centre; camera_angle_y gives fy."""
    scene = _copy(tiny_scene, tmp_path)
    _edit_meta(scene, lambda meta: meta.pop("camera_angle_x"))
    _edit_meta(scene, _set_intrinsics(fl_x=FL_X))
    cameras = _parse(scene).cameras
    assert (float(cameras.fx[0]), float(cameras.fy[0]), float(cameras.cx[0]), float(cameras.cy[0])) == (30, 30, 8, 8)
    _edit_meta(scene, _set_intrinsics(camera_angle_y=_angle(FL_Y)))
    assert float(_parse(scene).cameras.fy[0]) == pytest.approx(FL_Y)


def test_focal_length_given_twice_must_agree(tmp_path, tiny_scene) -> None:
    scene = _copy(tiny_scene, tmp_path)
    _edit_meta(scene, _set_intrinsics(camera_angle_x=_angle(FL_X), fl_x=FL_X * 1.004))  # within 0.5 %: fl_x is used
    assert float(_parse(scene).cameras.fx[0]) == pytest.approx(FL_X * 1.004)
    _edit_meta(scene, _set_intrinsics(fl_x=FL_X * 1.01))
    both = (
        f"fl_x is 30.3 but camera_angle_x {_angle(FL_X):g} gives 30 (0.5 * 16 px / tan(camera_angle_x / 2)), 1% apart"
    )
    message = "transforms_train.json: " + re.escape(both)
    with pytest.raises(BlenderDataError, match=message):
        _parse(scene)
    _edit_meta(scene, _set_intrinsics(fl_x=FL_X, fl_y=FL_Y, camera_angle_y=_angle(FL_X)))
    with pytest.raises(BlenderDataError, match=r"fl_y is 26 but camera_angle_y .* gives 30"):
        _parse(scene)


def test_image_size_keys_must_match_the_images(tmp_path, tiny_scene) -> None:
    scene = _copy(tiny_scene, tmp_path)
    _edit_meta(scene, _set_intrinsics(w=32, h=16))
    with pytest.raises(BlenderDataError, match=r"transforms_train.json: w x h is 32x16, but the images are 16x16 \(.*"):
        _parse(scene)


def test_file_path_with_png_suffix(tmp_path, tiny_scene) -> None:
    scene = _copy(tiny_scene, tmp_path)

    def add_suffix(meta):
        for frame in meta["frames"]:
            frame["file_path"] += ".png"

    _edit_meta(scene, add_suffix)
    assert _parse(scene).image_filenames == [scene / "train" / f"r_{i}.png" for i in range(6)]
    _edit_meta(scene, lambda meta: meta["frames"][2].update(file_path="./train/r_2.exr"))
    (scene / "train" / "r_2.exr").write_bytes(b"\x76\x2f\x31\x01")
    with pytest.raises(BlenderDataError, match=r"r_2.exr: image of frame 2 in transforms_train.json: '.exr' files are"):
        _parse(scene)


@pytest.mark.parametrize(
    ("make", "mode"),
    [
        (lambda rgba: Image.fromarray(rgba).convert("P"), "P"),
        (lambda rgba: Image.fromarray(rgba[..., 0].astype(np.uint16) * 257), "I;16"),
        (lambda rgba: Image.fromarray(rgba).convert("LA"), "LA"),
    ],
    ids=["palette", "16-bit-gray", "gray-alpha"],
)
def test_images_that_nerfstudio_misreads_are_refused(tmp_path, tiny_scene, make, mode: str) -> None:
    scene = _copy(tiny_scene, tmp_path)
    image = scene / "train" / "r_1.png"
    make(np.asarray(Image.open(image))).save(image)
    with pytest.raises(ImageError, match=f"r_1.png: Pillow mode {mode}: nerfstudio's image loader reads only"):
        _parse(scene)


def test_16_bit_rgb_png_trains_at_8_bits(tmp_path, tiny_scene) -> None:
    """nerfstudio's loader (Pillow) reads a 16-bit RGB PNG at 8 bits: the high byte of every value."""
    from nerfstudio.data.datasets.base_dataset import InputDataset

    from tests.data.test_images import write_png16

    scene = _copy(tiny_scene, tmp_path)
    deep = (257 * np.random.default_rng(0).integers(0, 255, (SIZE, SIZE, 3)) + 1).astype(np.uint16)
    write_png16(scene / "train" / "r_0.png", deep)
    image = InputDataset(_parse(scene)).get_image_float32(0).numpy()
    np.testing.assert_array_equal(image, (deep >> 8).astype(np.float32) / 255.0)
