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
