"""nerfstudio training callbacks of the norm-* models: running statistics recalibrated on training rays before every
evaluation and checkpoint (precise-BN), and the CPU training settings."""

from __future__ import annotations

from typing import Any

import torch
from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackAttributes, TrainingCallbackLocation

from norm_nerf.core.cpu_setup import prepare_cpu_training
from norm_nerf.core.norms import running_stat_norms
from norm_nerf.core.recalibrate import recalibrate


def recalibrate_model(model: Any, datamanager: Any, step: int, num_batches: int) -> int:
    """Precise-BN for a nerfstudio model: re-estimate statistics from ``num_batches`` training ray batches."""
    if not running_stat_norms(model):
        return 0
    batches = [datamanager.next_train(step)[0] for _ in range(num_batches)]
    return recalibrate(model, batches, forward=lambda m, ray_bundle: m(ray_bundle))  # forward applies the collider


def recalibration_callback(model: Any, attrs: TrainingCallbackAttributes, num_batches: int) -> list[TrainingCallback]:
    """A callback that recalibrates right before every evaluation and every checkpoint (and at the end).

    On CPU it also applies the CPU training settings (:func:`norm_nerf.core.cpu_setup.prepare_cpu_training`: freed
    memory kept for reuse, denormals flushed to zero), for every norm including ``none``, so normalized and base runs
    are timed alike."""
    trainer, pipeline = attrs.trainer, attrs.pipeline
    if pipeline is not None and torch.device(pipeline.device).type == "cpu":
        prepare_cpu_training()
    if trainer is None or pipeline is None or not running_stat_norms(model) or num_batches < 1:
        return []
    cfg = trainer.config
    periods = [cfg.steps_per_eval_image, cfg.steps_per_eval_batch, cfg.steps_per_eval_all_images, cfg.steps_per_save]

    def maybe_recalibrate(step: int) -> None:
        last = trainer._start_step + cfg.max_num_iterations - 1
        due = step == last or (step > 0 and any(p and p > 0 and step % p == 0 for p in periods))
        if due:
            recalibrate_model(model, pipeline.datamanager, step, num_batches)

    return [TrainingCallback([TrainingCallbackLocation.AFTER_TRAIN_ITERATION], maybe_recalibrate)]
