"""A tiny Blender-layout scene and a tiny trained norm-mipnerf run, shared by the nerfstudio tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_scene(tmp_path_factory) -> Path:
    from norm_nerf.data.blender import BlenderSceneConfig, write_blender_scene

    out = tmp_path_factory.mktemp("scene") / "blender"
    cfg = BlenderSceneConfig(out=out, views=6, val_views=1, test_views=1, size=16, supersample=1, progress=False)
    return write_blender_scene(cfg)


@pytest.fixture(scope="session")
def mipnerf_run(tiny_scene, tmp_path_factory) -> Path:
    """norm-mipnerf trained 12 steps (checkpoint at the end); returns its config.yml."""
    from norm_nerf.ns.runs import cpu_preset, method_config, train

    cfg = cpu_preset(method_config("norm-mipnerf"), tiny_scene, tmp_path_factory.mktemp("runs"), steps=12,
                     rays=64, samples=8, width=32)  # fmt: skip
    cfg.pipeline.model.recalibration_batches = 2
    return train(cfg)
