"""A norm-* training whose loss or gradients become non-finite stops with a clear error naming the step, and never
saves the diverged model (over the good checkpoint or anywhere)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from norm_nerf.ns.trainer import NonFiniteTrainingError, NormTrainerConfig, non_finite_tensors

NAN = float("nan")


def _config(tiny_scene: Path, tmp_path: Path, steps: int = 8, save_every: int = 2):
    from norm_nerf.ns.runs import cpu_preset, method_config

    cfg = cpu_preset(method_config("norm-mipnerf"), tiny_scene, tmp_path, steps=steps, rays=32, samples=4, width=16)
    cfg.pipeline.model.recalibration_batches = 1
    cfg.steps_per_save = save_every
    return cfg


def _poison_loss(trainer, at_step: int) -> None:
    """Multiply the fine RGB loss by NaN at ``at_step`` (as a NaN pose or a diverging lr would make it)."""
    original = trainer.pipeline.get_train_loss_dict

    def poisoned(step: int):
        outputs, loss_dict, metrics = original(step=step)
        if step == at_step:
            loss_dict["rgb_loss_fine"] = loss_dict["rgb_loss_fine"] * NAN
        return outputs, loss_dict, metrics

    trainer.pipeline.get_train_loss_dict = poisoned


def _poison_gradient(trainer, at_step: int) -> None:
    """A NaN gradient for one parameter at ``at_step`` while the loss stays finite."""
    original = trainer.pipeline.get_train_loss_dict
    armed = [False]

    def poisoned(step: int):
        armed[0] = step == at_step
        return original(step=step)

    next(trainer.pipeline.model.field.parameters()).register_hook(lambda grad: grad * NAN if armed[0] else grad)
    trainer.pipeline.get_train_loss_dict = poisoned


def _checkpoints(cfg) -> list[Path]:
    return sorted(cfg.get_checkpoint_dir().glob("*.ckpt"))


def _all_finite(ckpt: Path) -> bool:
    return not non_finite_tensors(torch.load(ckpt, map_location="cpu", weights_only=False)["pipeline"])


def test_method_configs_use_the_checking_trainer() -> None:
    from norm_nerf.ns.runs import method_config

    for name in ("norm-mipnerf", "norm-nerf", "norm-neus", "norm-neus-facto"):
        assert isinstance(method_config(name), NormTrainerConfig)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("poison", "check_every", "message"),
    [
        (_poison_loss, None, r"step 3: the training loss is nan \(rgb_loss_coarse [0-9.e-]+, rgb_loss_fine nan\)"),
        (_poison_gradient, None, r"step 3: \d+ of \d+ model tensors are non-finite .* non-finite gradients"),
        (_poison_loss, 5, r"step 3: the training loss is nan"),  # found at step 4 (checked every 5), named exactly
    ],
)
def test_divergence_stops_and_keeps_the_good_checkpoint(tiny_scene, tmp_path, poison, check_every, message) -> None:
    from norm_nerf.ns.runs import setup_trainer

    cfg = _config(tiny_scene, tmp_path, save_every=100 if check_every else 2)
    cfg.finite_check_every = check_every
    trainer = setup_trainer(cfg)
    poison(trainer, at_step=3)
    with pytest.raises(NonFiniteTrainingError, match=message) as info:
        trainer.train()
    assert "learning rate too high" in str(info.value) and "NaN/inf in the inputs" in str(info.value)
    saved = _checkpoints(cfg)
    if check_every:  # no save was due before the failure
        assert saved == [] and "No checkpoint was written" in str(info.value)
    else:  # the step-2 checkpoint is the last one, still finite; nothing of step 3 on was saved
        assert [p.name for p in saved] == ["step-000000002.ckpt"] and _all_finite(saved[0])
        assert str(saved[0]) in str(info.value)


@pytest.mark.slow
def test_a_diverged_model_is_never_checkpointed(tiny_scene, tmp_path) -> None:
    from norm_nerf.ns.runs import setup_trainer

    cfg = _config(tiny_scene, tmp_path, steps=2)
    trainer = setup_trainer(cfg)
    trainer.train()
    (good,) = _checkpoints(cfg)
    with torch.no_grad():
        next(trainer.pipeline.model.field.parameters()).fill_(NAN)
    with pytest.raises(NonFiniteTrainingError, match=r"model tensors are non-finite"):
        trainer.save_checkpoint(5)
    assert _checkpoints(cfg) == [good] and _all_finite(good)


def test_check_period_must_be_positive(tmp_path) -> None:
    with pytest.raises(ValueError, match="finite_check_every must be >= 1"):
        NormTrainerConfig(output_dir=tmp_path, finite_check_every=0).setup()


def test_non_finite_tensors_names_them() -> None:
    state = {"a": torch.zeros(3), "b": torch.tensor([1.0, NAN]), "c": torch.tensor([float("inf")]),
             "steps": torch.tensor([3])}  # fmt: skip
    assert non_finite_tensors(state) == ["b", "c"]
    assert non_finite_tensors({}) == []
