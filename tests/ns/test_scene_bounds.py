"""Near/far planes of norm-mipnerf and norm-nerf: Blender's 2 / 6 on Blender data, derived from the cameras and the
scene box on a capture in nerfstudio's own format (where 2 / 6 puts every sample outside the scene)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from norm_nerf.ns.scene_bounds import box_distances, near_far_for

BOX = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])


def test_box_distances_by_hand() -> None:
    d = box_distances(torch.tensor([[0.0, 0.0, 4.0], [0.0, 0.0, 0.0], [3.0, 4.0, 0.0]]), BOX)
    torch.testing.assert_close(d.nearest, torch.tensor([3.0, 0.0, math.hypot(2.0, 3.0)]))
    torch.testing.assert_close(d.farthest, torch.tensor([math.sqrt(27.0), math.sqrt(3.0), math.sqrt(16 + 25 + 1)]))
    torch.testing.assert_close(d.entry, torch.tensor([3.0, 0.0, 5.0 - 5.0 / 4.0]))  # |c| = 5; enters at y = 1
    torch.testing.assert_close(d.exit, torch.tensor([5.0, 1.0, 5.0 + 5.0 / 4.0]))
    assert near_far_for(d, BOX) == pytest.approx((0.01 * math.sqrt(12.0), math.sqrt(42.0)))


def _nerfstudio_capture(blender: Path, out: Path) -> Path:
    """The Blender scene's training views as a capture in nerfstudio's format (transforms.json, explicit intrinsics);
    nerfstudio-data rescales its cameras to about 1 unit from the origin."""
    meta = json.loads((blender / "transforms_train.json").read_text())
    out.mkdir()
    (out / "train").symlink_to(blender / "train")
    from PIL import Image

    w, h = Image.open(blender / "train" / "r_0.png").size
    fl = 0.5 * w / math.tan(0.5 * meta["camera_angle_x"])
    frames = [{"file_path": f"{f['file_path'].lstrip('./')}.png", "transform_matrix": f["transform_matrix"]}
              for f in meta["frames"]]  # fmt: skip
    doc = {"fl_x": fl, "fl_y": fl, "cx": w / 2, "cy": h / 2, "w": w, "h": h, "camera_model": "OPENCV", "frames": frames}
    (out / "transforms.json").write_text(json.dumps(doc))
    return out


def _pipeline(data: Path, parser: str, tmp_path: Path, near_far: tuple[float, float] | None = None):
    from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig

    from norm_nerf.ns.runs import cpu_preset, method_config

    cfg = cpu_preset(method_config("norm-mipnerf"), data, tmp_path, steps=1, rays=32, samples=8, width=16)
    if parser == "nerfstudio-data":
        cfg.pipeline.datamanager.dataparser = NerfstudioDataParserConfig(eval_mode="all")
    if near_far is not None:
        cfg.pipeline.model.collider_params = {"near_plane": near_far[0], "far_plane": near_far[1]}
    return cfg.pipeline.setup(device="cpu", test_mode="val")


def _fraction_of_samples_in_box(pipeline, planes: tuple[float, float]) -> float:
    """Of 64 evenly spaced samples on every pixel's ray of the first training camera, between the given planes."""
    cameras = pipeline.datamanager.train_dataset.cameras
    rays = cameras.generate_rays(camera_indices=0)
    t = torch.linspace(planes[0], planes[1], 64)
    points = rays.origins[..., None, :] + rays.directions[..., None, :] * t[:, None]
    aabb = pipeline.datamanager.train_dataset.scene_box.aabb
    inside = ((points >= aabb[0]) & (points <= aabb[1])).all(dim=-1)
    return float(inside.float().mean())


def test_blender_data_keeps_two_and_six(tiny_scene, tmp_path) -> None:
    model = _pipeline(tiny_scene, "norm-blender", tmp_path).model
    assert (model.collider.near_plane, model.collider.far_plane) == (2.0, 6.0)


def test_a_nerfstudio_capture_gets_planes_that_span_its_scene(tiny_scene, tmp_path, capsys) -> None:
    capture = _nerfstudio_capture(tiny_scene, tmp_path / "capture")
    pipeline = _pipeline(capture, "nerfstudio-data", tmp_path)
    model = pipeline.model
    planes = (model.collider.near_plane, model.collider.far_plane)
    assert model.config.collider_params == {"near_plane": planes[0], "far_plane": planes[1]}
    assert "notice: " in capsys.readouterr().out and planes != (2.0, 6.0)
    blender = _fraction_of_samples_in_box(pipeline, (2.0, 6.0))
    derived = _fraction_of_samples_in_box(pipeline, planes)
    print(f"samples inside the scene box: {blender:.3f} with 2 / 6, {derived:.3f} with {planes}")
    assert blender < 0.05 and derived > 0.3


def test_planes_set_outside_the_scene_are_refused(tiny_scene, tmp_path) -> None:
    capture = _nerfstudio_capture(tiny_scene, tmp_path / "capture")
    with pytest.raises(ValueError, match=r"capture: between near 10 and far 20 no camera's rays reach the scene box.*"
                       r"--pipeline.model.collider-params near_plane NEAR far_plane FAR"):  # fmt: skip
        _pipeline(capture, "nerfstudio-data", tmp_path, near_far=(10.0, 20.0))
    _pipeline(capture, "nerfstudio-data", tmp_path, near_far=(0.1, 3.0))  # set by the user, reaching the box: kept
