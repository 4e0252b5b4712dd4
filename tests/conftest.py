"""Shared test helpers: tiny scenes made once per session (Blender and NeuS/DTU layouts, a 12-step norm-mipnerf run),
and the optional ../shared/data folder.

Tests read the scenes; a test that changes one copies it first (``shutil.copytree``)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

# The denormal flush (norm_nerf.core.cpu_setup) is process state that in-process nerfstudio runs would switch on for
# every later test; tests/core/test_cpu_setup.py checks it in subprocesses instead.
os.environ["NORM_NERF_FLUSH_DENORMALS"] = "0"


@pytest.fixture
def shared_data() -> Path:
    """The shared data folder, or skip with a reason when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data folder {SHARED_DATA} not present")
    return SHARED_DATA


@pytest.fixture
def small_disk(tmp_path) -> Path:
    """A real, small file system (a 4 MiB tmpfs; needs root): writes beyond it fail with ENOSPC (a test fills it
    first with :func:`fill_disk`). Skips where it cannot be mounted."""
    mount = tmp_path / "small_disk"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True)
    if made.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def fill_disk(disk: Path, leave: int) -> None:
    """Fill the file system of ``disk`` with one file so that about ``leave`` bytes stay free."""
    free = shutil.disk_usage(disk).free
    (disk / "filler").write_bytes(b"\0" * max(free - leave, 0))


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    yield


# ---- scenes, each written once per session ----


def _dtu_scene(tmp_path_factory, name: str, **kw) -> Path:
    from norm_nerf.data.dtu import DTUSceneConfig, write_dtu_scene

    return write_dtu_scene(DTUSceneConfig(out=tmp_path_factory.mktemp(name) / "scan", progress=False, **kw))


@pytest.fixture(scope="session")
def dtu_scan_small(tmp_path_factory) -> Path:
    """Scan 3: a sphere seen by 3 views of 32 x 24 px, unit sphere of 40 mm; ground truth at 1 mm (norm-eval-dtu)."""
    return _dtu_scene(tmp_path_factory, "dtu_small", scan=3, views=3, size=32, sphere_radius_mm=40.0, detail=3,
                      gt_density=1.0)  # fmt: skip


@pytest.fixture(scope="session")
def dtu_scan_protocol(tmp_path_factory) -> Path:
    """Scan 1: a 30 mm sphere (unit sphere of 50 mm) in 5 views of 40 x 30 px, ground truth at 0.5 mm, ObsMask margin
    15 mm (the DTU protocol end to end)."""
    return _dtu_scene(tmp_path_factory, "dtu_protocol", views=5, size=40, height=30, sphere_radius_mm=50.0, detail=4,
                      gt_density=0.5, obs_margin=15.0)  # fmt: skip


@pytest.fixture(scope="session")
def dtu_scan_parser(tmp_path_factory) -> Path:
    """Scan 1: 5 views of 32 x 24 px, unit sphere of 50 mm around (30, -20, 50) mm (the norm-dtu dataparser)."""
    return _dtu_scene(tmp_path_factory, "dtu_parser", views=5, size=32, height=24, detail=3, sphere_radius_mm=50.0,
                      center_mm=(30.0, -20.0, 50.0), gt_density=1.0)  # fmt: skip


@pytest.fixture(scope="session")
def dtu_scan_neus(tmp_path_factory) -> Path:
    """Scan 1: an object of radius 0.6 in a unit sphere of 200 mm around (30, -20, 50) mm, 5 views of 20 x 15 px
    (norm-neus training)."""
    return _dtu_scene(tmp_path_factory, "dtu_neus", views=5, size=20, gt_density=2.0, sphere_radius_mm=200.0,
                      center_mm=(30.0, -20.0, 50.0), object_radius=0.6)  # fmt: skip


def _blender_scene(tmp_path_factory, name: str, **kw) -> Path:
    from norm_nerf.data.blender import BlenderSceneConfig, write_blender_scene

    out = tmp_path_factory.mktemp(name) / "blender"
    return write_blender_scene(BlenderSceneConfig(out=out, val_views=1, test_views=1, progress=False, **kw))


@pytest.fixture(scope="session")
def tiny_scene(tmp_path_factory) -> Path:
    """A Blender-layout scene of 6 training views of 16 x 16 px (the nerfstudio methods)."""
    return _blender_scene(tmp_path_factory, "scene", views=6, size=16, supersample=1)


@pytest.fixture(scope="session")
def blender_scene_32(tmp_path_factory) -> Path:
    """A Blender-layout scene of 4 training views of 32 x 32 px: large enough for LPIPS (norm-eval-blender)."""
    return _blender_scene(tmp_path_factory, "scene32", views=4, size=32)


@pytest.fixture(scope="session")
def mipnerf_run(tiny_scene, tmp_path_factory) -> Path:
    """norm-mipnerf trained 12 steps on :func:`tiny_scene` (checkpoint at the end); returns its config.yml."""
    from norm_nerf.ns.runs import cpu_preset, method_config, train

    cfg = cpu_preset(method_config("norm-mipnerf"), tiny_scene, tmp_path_factory.mktemp("runs"), steps=12,
                     rays=64, samples=8, width=32)  # fmt: skip
    cfg.pipeline.model.recalibration_batches = 2
    return train(cfg)
