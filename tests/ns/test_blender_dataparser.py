"""norm-blender: broken Blender-layout datasets give clear errors naming the file."""

from __future__ import annotations

import json
import shutil

import pytest
from PIL import Image

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
    import numpy as np
    import torch
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
        (lambda meta: meta.pop("camera_angle_x"), r"has no camera_angle_x"),
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
