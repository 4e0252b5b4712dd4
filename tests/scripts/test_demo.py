"""norm-demo nerf: normalized vs base method on a generated scene or an existing (downscaled) Blender scene."""

from __future__ import annotations

import json

import pytest


@pytest.mark.slow
def test_nerf_demo_on_an_existing_scene_downscaled(tiny_scene, tmp_path) -> None:
    from norm_nerf.scripts.demo import NerfDemoConfig, run_nerf_demo

    cfg = NerfDemoConfig(
        method="norm-nerf", norms=("cn", "none"), data=tiny_scene, downscale_factor=2, steps=12, rays=32,
        samples=4, width=16, out=tmp_path / "demo",
    )  # fmt: skip
    summary = run_nerf_demo(cfg)
    saved = json.loads((tmp_path / "demo" / "metrics.json").read_text())
    assert saved["results"].keys() == {"cn", "none"} and saved["downscale_factor"] == 2
    for norm, r in summary["results"].items():
        assert r["method"] == "norm-nerf" and r["norm"] == norm and r["views"] == 1
        assert 0 < r["psnr"] < 60 and r["train_rays_per_second"] > 0
        assert (tmp_path / "demo" / f"renders_norm-nerf-{norm}" / "metrics.json").is_file()
    figure = tmp_path / "demo" / "comparison.png"  # ground truth | cn | base, PSNR in the titles
    assert saved["comparison"] == str(figure) and figure.is_file() and figure.stat().st_size > 1000
    renders = tmp_path / "demo" / "renders_norm-nerf-cn"
    assert {p.name for p in (renders / "renders").iterdir()} == {p.name for p in (renders / "ground_truth").iterdir()}
    with pytest.raises(FileExistsError, match="--overwrite"):
        run_nerf_demo(cfg)  # never writes into a non-empty folder unasked
