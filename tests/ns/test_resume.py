"""A run resumed from a checkpoint continues exactly as the uninterrupted run (weights, optimizer, statistics)."""

from __future__ import annotations

import pytest
import torch

pytestmark = pytest.mark.slow  # trains norm-mipnerf twice (trainer.train())


def _train_seeded(config) -> dict[str, torch.Tensor]:
    """Train seeded as ns-train seeds (the cached image order depends on it), with torch's RNG reseeded from the step
    number before every iteration (ray sampling and stratified samples then depend only on the step); return the
    final model state."""
    from norm_nerf.ns.runs import setup_trainer

    trainer = setup_trainer(config)
    iteration = trainer.train_iteration

    def seeded(step: int):
        torch.manual_seed(1000 + step)
        return iteration(step)

    trainer.train_iteration = seeded
    trainer.train()
    return {k: v.detach().clone() for k, v in trainer.pipeline.model.state_dict().items()}


def test_resumed_run_continues_identically(tiny_scene, tmp_path) -> None:
    from norm_nerf.ns.runs import cpu_preset, method_config

    def config(steps: int):
        cfg = cpu_preset(method_config("norm-mipnerf"), tiny_scene, tmp_path, steps=steps, rays=32, samples=4,
                         width=16)  # fmt: skip
        cfg.pipeline.model.norm = "bn"  # running statistics with momentum: a lost update would show
        cfg.pipeline.model.recalibration_batches = 1
        cfg.steps_per_save = 3
        cfg.save_only_latest_checkpoint = False
        return cfg

    full = config(6)
    full.experiment_name = "full"
    uninterrupted = _train_seeded(full)  # steps 0..5, checkpoint (after recalibration) at step 3
    resumed_cfg = config(6)
    resumed_cfg.experiment_name = "resumed"
    resumed_cfg.load_dir = full.get_checkpoint_dir()
    resumed_cfg.load_step = 3
    resumed = _train_seeded(resumed_cfg)  # steps 4, 5 from the step-3 checkpoint: 6 steps in all, as the full run
    assert uninterrupted.keys() == resumed.keys()
    assert any("running_mean" in k for k in resumed)
    for key, value in uninterrupted.items():
        torch.testing.assert_close(resumed[key], value, rtol=1e-6, atol=1e-7, msg=key)
    step3 = torch.load(full.get_checkpoint_dir() / "step-000000003.ckpt", map_location="cpu", weights_only=False)
    assert any(not torch.equal(step3["pipeline"][f"_model.{k}"], v) for k, v in uninterrupted.items() if "weight" in k)
