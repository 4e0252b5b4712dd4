"""norm-neus and norm-neus-facto read nerfstudio's ``sdfstudio-data`` layout (``meta_data.json``), as downloaded by
``ns-download-data sdfstudio``: a scan written in that layout trains a few steps with a finite loss, and its rays
meet the object."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.ns.tiny import tiny_config

pytestmark = pytest.mark.slow  # trains norm-neus


def _sdfstudio_scan(neus_scan: Path, out: Path) -> Path:
    """The NeuS-layout scan's training views in the sdfstudio layout: OpenCV camera-to-world matrices in the unit
    sphere's frame, 4x4 intrinsics, the scene box [-1, 1]^3."""
    from norm_nerf.ns.dtu_dataparser import NormDTUDataParserConfig

    outputs = NormDTUDataParserConfig(data=neus_scan, eval_mode="all").setup().get_dataparser_outputs("train")
    cams = outputs.cameras
    frames = []
    for i, image in enumerate(outputs.image_filenames):
        c2w = torch.eye(4)
        c2w[:3] = cams.camera_to_worlds[i]
        c2w[:3, 1:3] *= -1  # nerfstudio's (OpenGL) axes to OpenCV's, as sdfstudio stores them
        k = torch.eye(4)
        k[0, 0], k[1, 1], k[0, 2], k[1, 2] = (float(v[i]) for v in (cams.fx, cams.fy, cams.cx, cams.cy))
        frames.append({"rgb_path": str(Path(image).resolve()), "camtoworld": c2w.tolist(), "intrinsics": k.tolist()})
    meta = {"height": int(cams.height[0]), "width": int(cams.width[0]), "has_mono_prior": False, "frames": frames,
            "scene_box": {"aabb": [[-1, -1, -1], [1, 1, 1]], "near": 0.05, "far": 2.5, "radius": 1.0,
                          "collider_type": "box"}}  # fmt: skip
    out.mkdir()
    (out / "meta_data.json").write_text(json.dumps(meta))
    return out


@pytest.mark.parametrize("method", ["norm-neus", "norm-neus-facto"])
def test_surface_methods_train_on_sdfstudio_data(method: str, dtu_scan_neus, tmp_path) -> None:
    from nerfstudio.data.dataparsers.sdfstudio_dataparser import SDFStudioDataParserConfig

    from norm_nerf.ns.runs import setup_trainer

    data = _sdfstudio_scan(dtu_scan_neus, tmp_path / "sdfstudio")
    cfg = tiny_config(method, data, tmp_path / "out", steps=3)
    cfg.pipeline.datamanager.dataparser = SDFStudioDataParserConfig()
    trainer = setup_trainer(cfg)
    cameras = trainer.pipeline.datamanager.train_dataset.cameras
    rays = cameras.generate_rays(camera_indices=0)
    centre = (rays.shape[0] // 2, rays.shape[1] // 2)
    origin, direction = rays.origins[centre], rays.directions[centre]
    closest = origin - (origin @ direction) * direction  # the ray through the image centre passes through the object
    assert float(closest.norm()) < 1.0
    trainer.train()
    losses = trainer.pipeline.get_train_loss_dict(step=3)[1]
    assert all(torch.isfinite(v).all() for v in losses.values())
