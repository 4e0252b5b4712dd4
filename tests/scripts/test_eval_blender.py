"""norm-eval-blender: hand-computed PSNR/SSIM, white compositing, LPIPS reporting, errors, and a trained run."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from norm_nerf.scripts.eval_blender import EvalBlenderConfig, run
from PIL import Image

from norm_nerf.eval.blender_eval import pair_images
from norm_nerf.eval.lpips import lpips_available
from norm_nerf.eval.metrics import PSNR_CAP_DB
from tests.eval.image_pairs import S, closed_form, offset_case, save_image


def test_constant_offset_psnr_and_ssim(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "no_torch_home"))  # no LPIPS weights here
    pred, gt, cases = offset_case(tmp_path)
    summary = run(EvalBlenderConfig(pred_dir=pred, gt_dir=gt, out=tmp_path / "out"))
    rows = {r["name"]: r for r in summary["images"]}
    for name, (c, d) in cases.items():
        psnr, ssim = closed_form(c, d)
        assert rows[name]["psnr"] == pytest.approx(psnr, abs=1e-5)
        assert rows[name]["ssim"] == pytest.approx(ssim, abs=1e-5)
    assert summary["mean"]["psnr"] == pytest.approx(np.mean([closed_form(*v)[0] for v in cases.values()]), abs=1e-5)
    # LPIPS without weights: null, with a reason naming the command - not a crash, not a silent skip
    assert summary["mean"]["lpips"] is None and all(r["lpips"] is None for r in summary["images"])
    assert "norm-lpips-weights" in summary["lpips_missing_reason"]
    out = tmp_path / "out"
    assert json.loads((out / "metrics.json").read_text()) == summary
    table = (out / "table.md").read_text()
    assert "| **mean** |" in table and "norm-lpips-weights" in table
    assert sorted(p.name for p in (out / "panels").iterdir()) == ["a.png", "b.png"]


def test_rgba_ground_truth_is_composited_on_white(tmp_path) -> None:
    save_image(tmp_path / "gt", "clear", (0, 0, 0, 0), channels=4)  # fully transparent -> white
    save_image(tmp_path / "pred", "clear", 255)
    save_image(tmp_path / "gt", "half", (0, 0, 0, 128), channels=4)  # black at alpha 128/255 -> 127/255
    save_image(tmp_path / "pred", "half", 127)
    summary = run(
        EvalBlenderConfig(pred_dir=tmp_path / "pred", gt_dir=tmp_path / "gt", out=tmp_path / "o", panels=False)
    )
    for row in summary["images"]:
        assert row["psnr"] == PSNR_CAP_DB  # a perfect match: capped (JSON has no inf)
        assert row["ssim"] == pytest.approx(1.0)
    json.loads((tmp_path / "o" / "metrics.json").read_text(), parse_constant=pytest.fail)  # no Infinity/NaN in it


def test_a_perfect_match_is_capped_and_the_mean_stays_a_number(tmp_path, capsys) -> None:
    pred, gt, cases = offset_case(tmp_path)
    shutil.copy(gt / "a.png", pred / "a.png")  # exact match: MSE 0, PSNR inf before capping
    summary = run(EvalBlenderConfig(pred_dir=pred, gt_dir=gt, out=tmp_path / "o", panels=False))
    rows = {r["name"]: r for r in summary["images"]}
    assert rows["a"]["psnr"] == PSNR_CAP_DB == 100.0
    assert summary["mean"]["psnr"] == pytest.approx((PSNR_CAP_DB + closed_form(*cases["b"])[0]) / 2, abs=1e-5)
    assert summary["psnr_capped"] == 1
    assert "capped at 100 dB" in summary["settings"]["psnr"] and "mean of the capped" in summary["settings"]["psnr"]
    assert "PSNR capped at 100 dB for 1 image(s)" in (tmp_path / "o" / "table.md").read_text()
    assert "PSNR capped at 100 dB for 1 image(s)" in capsys.readouterr().out


@pytest.mark.skipif(not lpips_available(), reason="AlexNet weights absent (norm-lpips-weights)")
def test_lpips_with_weights(tmp_path) -> None:
    pred, gt, _ = offset_case(tmp_path)
    shutil.copy(gt / "a.png", pred / "a.png")  # identical pair
    summary = run(EvalBlenderConfig(pred_dir=pred, gt_dir=gt, out=tmp_path / "o", panels=False))
    rows = {r["name"]: r for r in summary["images"]}
    assert rows["a"]["lpips"] == pytest.approx(0.0, abs=1e-6)
    assert rows["b"]["lpips"] is not None and rows["b"]["lpips"] >= 0
    assert summary["lpips_missing_reason"] is None and summary["mean"]["lpips"] is not None


def test_mismatched_sizes(tmp_path) -> None:
    pred, gt, _ = offset_case(tmp_path)
    Image.fromarray(np.zeros((S, S + 2, 3), dtype=np.uint8)).save(pred / "b.png")
    with pytest.raises(ValueError, match=r"b.png is 42x40 but .*b.png is 40x40"):
        run(EvalBlenderConfig(pred_dir=pred, gt_dir=gt, out=tmp_path / "o"))
    assert not (tmp_path / "o").exists()  # checked before anything is written


def test_missing_or_empty_dirs_and_bad_arguments(tmp_path) -> None:
    pred, gt, _ = offset_case(tmp_path)
    with pytest.raises(FileNotFoundError, match="nope: prediction folder not found"):
        pair_images(tmp_path / "nope", gt)
    with pytest.raises(FileNotFoundError, match="nope: ground-truth folder not found"):
        pair_images(pred, tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no images"):
        pair_images(pred, tmp_path / "empty")
    with pytest.raises(ValueError, match="not both"):
        run(EvalBlenderConfig(load_config=tmp_path / "c.yml", pred_dir=pred, gt_dir=gt))
    with pytest.raises(ValueError, match="--pred-dir and --gt-dir"):
        run(EvalBlenderConfig(pred_dir=pred))
    with pytest.raises(FileNotFoundError, match="c.yml: run config not found"):
        run(EvalBlenderConfig(load_config=tmp_path / "c.yml"))


@pytest.mark.slow
def test_load_config_renders_the_test_views(blender_scene_32, tmp_path) -> None:
    scene = blender_scene_32
    ns_train = Path(sys.executable).parent / "ns-train"
    cmd = [str(ns_train), "norm-mipnerf", "--data", str(scene), "--output-dir", str(tmp_path / "runs"),
           "--max-num-iterations", "3", "--pipeline.model.base-mlp-layer-width", "32",
           "--pipeline.model.head-mlp-layer-width", "16", "--pipeline.model.num-coarse-samples", "8",
           "--pipeline.model.num-importance-samples", "8", "--pipeline.datamanager.train-num-rays-per-batch", "32",
           "--vis", "tensorboard", "--viewer.quit-on-train-completion", "True"]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True, cwd=tmp_path, timeout=120)
    (config,) = (tmp_path / "runs").rglob("config.yml")
    summary = run(EvalBlenderConfig(load_config=config, out=tmp_path / "eval"))
    assert summary["count"] == 1 and summary["source"]["model_mode"] == "eval"
    assert summary["images"][0]["name"] == "r_0" and 0 < summary["mean"]["psnr"] < 60
    assert (tmp_path / "eval" / "panels" / "r_0.png").is_file()
    if lpips_available():
        assert summary["mean"]["lpips"] is not None
