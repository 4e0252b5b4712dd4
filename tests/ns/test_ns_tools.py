"""nerfstudio's own tools on trained norm-mipnerf / norm-nerf runs, on CPU: ns-eval (PSNR, SSIM, LPIPS under the plain
names), ns-export pointcloud, and the viewer's default output (``rgb``, the fine pass).

The surface methods' side (``forward_geonetwork``, ``ns-export marching-cubes``) is in ``test_neus.py``, next to their
trained runs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from norm_nerf.eval.lpips import alexnet_weights_path, lpips_available
from norm_nerf.ns.base_model import with_fine_aliases, with_plain_metrics
from tests.ns.ns_cli import require_open3d, run_ns


def _load(config_yml: Path):
    from nerfstudio.utils.eval_utils import eval_setup

    return eval_setup(config_yml, test_mode="test")[1]


@pytest.fixture(scope="module", params=["norm-mipnerf", "norm-nerf"])
def nerf_run_32(request, blender_scene_32, tmp_path_factory) -> Path:
    """norm-mipnerf / norm-nerf (cn) trained 6 steps on the 32 x 32 px scene (large enough for LPIPS); config.yml."""
    from norm_nerf.ns.runs import cpu_preset, method_config, train

    cfg = cpu_preset(method_config(request.param), blender_scene_32, tmp_path_factory.mktemp("runs32"), steps=6,
                     rays=64, samples=8, width=32)  # fmt: skip
    cfg.pipeline.model.recalibration_batches = 1
    return train(cfg)


# ---- what the models give nerfstudio's tools ----


def test_fine_pass_comes_first_under_the_plain_names() -> None:
    fine = {name: torch.full((2, 1), float(i)) for i, name in enumerate(("rgb", "accumulation", "depth"))}
    outputs = {
        "rgb_coarse": torch.zeros(2, 3),
        "rgb_fine": fine["rgb"],
        "accumulation_coarse": torch.zeros(2, 1),
        "accumulation_fine": fine["accumulation"],
        "depth_coarse": torch.zeros(2, 1),
        "depth_fine": fine["depth"],
    }  # fmt: skip  (nerfstudio's Mip-NeRF order: rgb_coarse first)
    aliased = with_fine_aliases(outputs)
    assert list(aliased)[:3] == ["rgb", "accumulation", "depth"]  # the viewer opens on the first output
    assert all(aliased[name] is fine[name] for name in fine) and set(outputs) < set(aliased)
    surface = {"rgb": fine["rgb"], "accumulation": fine["accumulation"], "depth": fine["depth"], "normal": 1}
    assert list(with_fine_aliases(surface)) == list(surface)  # NeuS: plain names already, already first


def test_plain_metric_names_come_first() -> None:
    nerf = {"psnr": 20.0, "coarse_psnr": 19.0, "fine_psnr": 20.0, "fine_ssim": 0.7, "fine_lpips": 0.3}
    plain = with_plain_metrics(nerf)
    assert list(plain)[:3] == ["psnr", "ssim", "lpips"] and (plain["ssim"], plain["lpips"]) == (0.7, 0.3)
    assert {k: plain[k] for k in nerf} == nerf
    surface = {"psnr": 20.0, "ssim": 0.7, "lpips": 0.3}
    assert with_plain_metrics(surface) == surface


@pytest.mark.slow  # mipnerf_run trains norm-mipnerf
def test_outputs_start_with_the_final_render(mipnerf_run) -> None:
    pipeline = _load(mipnerf_run)
    camera = pipeline.datamanager.eval_dataset.cameras[0:1]
    outputs = pipeline.model.get_outputs_for_camera(camera)
    assert list(outputs)[:3] == ["rgb", "accumulation", "depth"]
    torch.testing.assert_close(outputs["rgb"], outputs["rgb_fine"], rtol=0, atol=0)


@pytest.mark.slow  # mipnerf_run trains norm-mipnerf; a viser server
def test_viewer_control_panel_opens_on_rgb(mipnerf_run) -> None:
    """The viewer's render loop hands ``list(outputs.keys())`` to its control panel, whose output dropdown takes the
    first option (nerfstudio/viewer/render_state_machine.py, control_panel.py): that must be ``rgb``."""
    import socket

    import viser
    from nerfstudio.viewer.control_panel import ControlPanel

    pipeline = _load(mipnerf_run)
    outputs = pipeline.model.get_outputs_for_camera(pipeline.datamanager.eval_dataset.cameras[0:1])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = viser.ViserServer(host="127.0.0.1", port=port, verbose=False)
    try:
        panel = ControlPanel(server, False, 1.0, lambda: None, lambda _: None, lambda _: None)
        assert panel.output_render == "not set"
        panel.update_output_options(list(outputs.keys()))
        assert panel.output_render == "rgb"
    finally:
        server.stop()


# ---- ns-eval ----


@pytest.mark.slow  # trains, then runs ns-eval in a subprocess
def test_ns_eval_writes_psnr_ssim_lpips(nerf_run_32, tmp_path) -> None:
    from norm_nerf.ns.evaluate import evaluate_run

    done = run_ns("ns-eval", "--load-config", str(nerf_run_32), "--output-path", "out.json", cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    record = json.loads((tmp_path / "out.json").read_text())
    results = record["results"]
    assert record["method_name"] in ("norm-mipnerf", "norm-nerf")
    assert list(results)[:6] == ["psnr", "psnr_std", "ssim", "ssim_std", "lpips", "lpips_std"]
    assert math.isfinite(results["psnr"]) and 0 < results["ssim"] <= 1
    if not lpips_available():
        pytest.skip(f"LPIPS weights {alexnet_weights_path()} absent (norm-lpips-weights builds them): PSNR/SSIM only")
    assert math.isfinite(results["lpips"]) and results["lpips"] == results["fine_lpips"]
    # the same test view scored by our own evaluation (norm-eval-blender: eval mode, fine pass, white background)
    ours = evaluate_run(nerf_run_32, tmp_path / "ours")
    assert ours["views"] == 1
    assert results["lpips"] == pytest.approx(ours["lpips"], abs=1e-4)
    assert results["psnr"] == pytest.approx(ours["psnr"], abs=1e-3)


# ---- ns-export pointcloud ----


@pytest.mark.slow  # trains, then runs ns-export in a subprocess
def test_ns_export_pointcloud_on_cpu(nerf_run_32, tmp_path) -> None:
    require_open3d()
    import open3d as o3d
    from nerfstudio.scripts.exporter import validate_pipeline

    with pytest.raises(SystemExit):  # the default --normal-method model_output: our NeRF models have no normals
        validate_pipeline("model_output", "normals", _load(nerf_run_32))
    out = tmp_path / "pc"
    done = run_ns("ns-export", "pointcloud", "--load-config", str(nerf_run_32), "--output-dir", str(out),
                "--num-points", "2000", "--num-rays-per-batch", "256", "--normal-method", "open3d",
                cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    pcd = o3d.io.read_point_cloud(str(out / "point_cloud.ply"))
    points, colors, normals = (np.asarray(a) for a in (pcd.points, pcd.colors, pcd.normals))
    assert 1000 <= len(points) <= 2000 + 256  # opaque samples of whole batches, minus the outliers removed
    assert colors.shape == points.shape and normals.shape == points.shape
    assert np.isfinite(points).all() and (colors >= 0).all() and (colors <= 1).all()
    np.testing.assert_allclose(np.linalg.norm(normals, axis=1), 1.0, atol=1e-4)
