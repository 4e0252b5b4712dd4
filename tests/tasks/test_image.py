"""Image task: loading (8/16-bit, RGBA, bad files), end-to-end runs, honest metrics."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from norm_nerf.core.grids import pixel_grid
from norm_nerf.data.images import ImageError, load_image
from norm_nerf.tasks.image import ImageSignal, ImageTaskConfig, run_image
from norm_nerf.tasks.trainer import TrainConfig, fit


def _png(path, arr, mode=None):
    Image.fromarray(arr, mode=mode).save(path)
    return path


def test_pixel_grid_order_and_range() -> None:
    g = pixel_grid(2, 4)
    assert g.shape == (8, 2)
    torch.testing.assert_close(g[0], torch.tensor([-0.75, -0.5]))  # (x, y) of the top-left pixel centre
    torch.testing.assert_close(g[1], torch.tensor([-0.25, -0.5]))  # next pixel along the row: x grows


def test_load_8bit_16bit_rgba(tmp_path) -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (6, 5, 3), dtype=np.uint8)
    img = load_image(_png(tmp_path / "a.png", rgb))
    assert img.shape == (6, 5, 3) and img.dtype == torch.float32
    torch.testing.assert_close(img, torch.from_numpy(rgb).float() / 255)
    deep = np.full((4, 4), 65535, dtype=np.uint16)
    deep[0, 0] = 0
    img16 = load_image(_png(tmp_path / "b.png", deep))
    assert img16.shape == (4, 4, 1) and img16.max() == 1.0 and img16.min() == 0.0
    rgba = np.zeros((3, 3, 4), dtype=np.uint8)
    rgba[..., 0] = 255  # red, alpha 0 on the left half of the pixels
    rgba[:, 1:, 3] = 255
    img_a = load_image(_png(tmp_path / "c.png", rgba))
    assert img_a.shape == (3, 3, 3)
    torch.testing.assert_close(img_a[0, 0], torch.ones(3))  # transparent -> white
    torch.testing.assert_close(img_a[0, 2], torch.tensor([1.0, 0.0, 0.0]))


def test_bad_images(tmp_path) -> None:
    bad = tmp_path / "not_an_image.png"
    bad.write_text("hello")
    with pytest.raises(ImageError, match="not_an_image.png: not a readable image"):
        load_image(bad)
    with pytest.raises(ImageError, match="no such file"):
        load_image(tmp_path / "missing.png")
    small = _png(tmp_path / "s.png", np.zeros((8, 8, 3), dtype=np.uint8))
    with pytest.raises(ImageError, match="larger than the image"):
        load_image(small, resize=16)
    assert load_image(small, resize=4).shape == (4, 4, 3)


def test_fit_reports_eval_mode_after_recalibration() -> None:
    torch.manual_seed(0)
    signal = ImageSignal(torch.rand(12, 12, 3))
    from norm_nerf.core import build_network

    net = build_network("pe+bn", 2, 3, depth=2, width=16, seed=0)
    res = fit(net, signal, TrainConfig(steps=30, progress=False), lr=1e-2)
    assert not net.training  # the returned model is in eval mode
    from norm_nerf.tasks.trainer import predict

    again = signal.metrics(predict(net, signal.coords, chunk=7))
    assert res.metrics["psnr"] == pytest.approx(again["psnr"], abs=1e-4)
    assert res.best_train_mode_metric >= min(res.curve_metric)
    assert len(res.curve_steps) == len(res.curve_metric) > 1


def test_run_image_end_to_end(tmp_path) -> None:
    rgb = (np.random.default_rng(1).random((16, 16, 3)) * 255).astype(np.uint8)
    path = _png(tmp_path / "x.png", rgb)
    cfg = ImageTaskConfig().replace(
        image=path, resize=None, method="relu+cn", depth=2, width=8, steps=5, out=tmp_path / "o"
    )
    cfg.train.progress = False
    summary = run_image(cfg)
    files = {p.name for p in (tmp_path / "o").iterdir()}
    assert {"metrics.json", "reconstruction.png", "spectrum.png", "curve.png", "model.pt"} <= files
    saved = json.loads((tmp_path / "o" / "metrics.json").read_text())
    for key in ("psnr", "ssim", "params", "bpp", "seconds", "steps", "psnr_train_mode_final", "psnr_best_train_mode"):
        assert key in saved
    assert saved["bpp"] == pytest.approx(saved["params"] * 32 / 256)
    assert summary["psnr"] == saved["psnr"]
    # the output folder is not overwritten without asking
    with pytest.raises(FileExistsError, match="--overwrite"):
        run_image(cfg)


def test_run_image_folder_averages(tmp_path) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(2):
        _png(folder / f"{i}.png", (np.random.default_rng(i).random((8, 8, 3)) * 255).astype(np.uint8))
    cfg = ImageTaskConfig().replace(
        image=folder, resize=None, method="pe", depth=1, width=8, steps=3, out=tmp_path / "o"
    )
    cfg.train.progress = False
    summary = run_image(cfg)
    per = summary["per_image"]
    assert summary["images"] == 2
    assert summary["psnr"] == pytest.approx(np.mean([r["psnr"] for r in per.values()]))


def test_zero_steps_and_bad_method_are_clear(tmp_path) -> None:
    with pytest.raises(ValueError, match="--steps must be >= 1"):
        run_image(ImageTaskConfig().replace(steps=0, out=tmp_path / "a"))
    with pytest.raises(ValueError, match="unknown norm 'xx'; valid norms are"):
        run_image(ImageTaskConfig().replace(method="relu+xx", out=tmp_path / "b"))


def test_folder_mean_caps_an_exact_match_at_the_stated_psnr(tmp_path, monkeypatch) -> None:
    """An exact match has infinite PSNR; capped per image (as norm-eval-blender does), the folder mean stays finite."""
    from norm_nerf.eval.metrics import PSNR_CAP_DB
    from norm_nerf.tasks import image

    folder = tmp_path / "imgs"
    folder.mkdir()
    for name in ("exact", "other"):
        _png(folder / f"{name}.png", (np.random.default_rng(3).random((8, 8, 3)) * 255).astype(np.uint8))
    real = image.fit_signal

    def exact_match_for_one(cfg, signal, in_dim, out_dim, label):
        net, result = real(cfg, signal, in_dim, out_dim, label)
        if "exact" in label:  # as if the network reproduced the image: MSE 0, scored by the signal's own metrics
            result.prediction = signal.target.clone()
            result.metrics = result.train_mode_metrics = signal.metrics(result.prediction)
            result.best_train_mode_metric = signal.quick_metric(result.prediction, torch.zeros(()))
        return net, result

    monkeypatch.setattr(image, "fit_signal", exact_match_for_one)
    cfg = ImageTaskConfig().replace(image=folder, resize=None, method="relu", depth=1, width=4, steps=2)
    cfg.out, cfg.train.progress = tmp_path / "o", False
    summary = run_image(cfg)
    saved = json.loads((tmp_path / "o" / "metrics.json").read_text())
    exact, other = saved["per_image"]["exact.png"], saved["per_image"]["other.png"]
    assert exact["psnr"] == exact["psnr_best_train_mode"] == PSNR_CAP_DB == saved["psnr_cap_db"] == 100.0
    assert exact["psnr_capped"] == 1 and other["psnr_capped"] == 0 and saved["psnr_capped"] == 1
    assert saved["psnr"] == pytest.approx((PSNR_CAP_DB + other["psnr"]) / 2) == summary["psnr"]
    assert "capped at psnr_cap_db" in saved["means"] and "arithmetic mean" in saved["means"]


def test_image_demo_is_made_of_task_runs(tmp_path) -> None:
    """norm-demo image runs norm-inr image per method (runs/<method>/metrics.json) and compares their summaries."""
    from norm_nerf.scripts.demo import ImageDemoConfig, run_image_demo

    cfg = ImageDemoConfig(methods=("relu", "pe+cn"), size=16, depth=1, width=4, steps=2, progress=False)
    cfg.out = tmp_path / "demo"
    summary = run_image_demo(cfg)
    saved = json.loads((tmp_path / "demo" / "metrics.json").read_text())
    assert saved["results"].keys() == {"relu", "pe+cn"} and saved["size"] == [16, 16, 3]
    for method, folder in (("relu", "relu"), ("pe+cn", "pe_cn")):
        run = json.loads((tmp_path / "demo" / "runs" / folder / "metrics.json").read_text())
        assert run["psnr"] == saved["results"][method]["psnr"] == summary["results"][method]["psnr"]
        assert run["config"]["network"]["method"] == method and run["config"]["train"]["steps"] == 2
    assert (tmp_path / "demo" / "reconstructions.png").is_file() and (tmp_path / "demo" / "recon_pe_cn.png").is_file()
