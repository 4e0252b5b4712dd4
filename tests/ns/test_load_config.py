"""Loading a trained run (what every --load-config does): runs without checkpoints, diverged checkpoints and NaN
renders give one clear error naming the file, before anything is written (broken config files:
tests/scripts/test_load_config.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from norm_nerf.scripts import eval_blender

from norm_nerf.ns.eval_render import (
    NonFiniteCheckpointError,
    NonFiniteRenderError,
    eval_images,
    load_pipeline,
    read_run_config,
)


def _main(monkeypatch, script, name: str, *argv: str) -> None:
    monkeypatch.setattr(sys, "argv", [name, *argv])
    script.entrypoint()


def _copy_run(config_yml: Path, dest: Path, poison: bool = False, keep_checkpoints: bool = True) -> Path:
    """The run of ``config_yml`` under ``dest`` (its config pointing there); optionally NaN in one weight."""
    cfg = read_run_config(config_yml)
    source_ckpts = cfg.get_checkpoint_dir()
    cfg.output_dir = dest
    cfg.get_base_dir().mkdir(parents=True)
    cfg.save_config()
    target = cfg.get_checkpoint_dir()
    target.mkdir(parents=True)
    if keep_checkpoints:
        for ckpt in source_ckpts.glob("*.ckpt"):
            state = torch.load(ckpt, map_location="cpu", weights_only=False)
            if poison:
                key = next(k for k in state["pipeline"] if k.endswith("weight"))
                state["pipeline"][key] = torch.full_like(state["pipeline"][key], float("nan"))
            torch.save(state, target / ckpt.name)
    return cfg.get_base_dir() / "config.yml"


@pytest.mark.slow  # mipnerf_run trains norm-mipnerf
def test_a_run_without_checkpoints_is_named(mipnerf_run, tmp_path) -> None:
    config = _copy_run(mipnerf_run, tmp_path / "copy", keep_checkpoints=False)
    with pytest.raises(FileNotFoundError, match=r"config.yml: no checkpoint \(step-\*.ckpt\) in .*nerfstudio_models"):
        load_pipeline(config)


@pytest.mark.slow
def test_a_diverged_checkpoint_is_refused(mipnerf_run, tmp_path, monkeypatch, capsys) -> None:
    config = _copy_run(mipnerf_run, tmp_path / "copy", poison=True)
    with pytest.raises(NonFiniteCheckpointError, match=r"step-0+11.ckpt: \d+ of \d+ tensors hold NaN/inf .*diverged"):
        load_pipeline(config)
    with pytest.raises(SystemExit):
        _main(
            monkeypatch, eval_blender, "norm-eval-blender", "--load-config", str(config), "--out", str(tmp_path / "e")
        )
    assert "hold NaN/inf" in capsys.readouterr().err and not (tmp_path / "e").exists()


@pytest.mark.slow
def test_nan_renders_are_refused_not_scored(mipnerf_run, monkeypatch) -> None:
    pipeline, _, _ = load_pipeline(mipnerf_run)
    model = pipeline.model
    render = model.get_outputs_for_camera

    def nan_render(camera, *args, **kwargs):
        outputs = render(camera, *args, **kwargs)
        outputs["rgb_fine"] = outputs["rgb_fine"] * float("nan")
        return outputs

    monkeypatch.setattr(model, "get_outputs_for_camera", nan_render)
    _, items = eval_images(pipeline)
    with pytest.raises(NonFiniteRenderError, match=r"test/r_0.png: the rendering of this view has \d+ of \d+ non-fin"):
        next(items)


@pytest.mark.slow
def test_a_valid_run_still_loads(mipnerf_run, tmp_path) -> None:
    config = _copy_run(mipnerf_run, tmp_path / "copy")
    _, ckpt, step = load_pipeline(config)
    assert step == 11 and ckpt.parent == read_run_config(config).get_checkpoint_dir()
