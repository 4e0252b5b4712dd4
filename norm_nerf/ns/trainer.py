"""The trainer of the norm-* methods: nerfstudio's Trainer, stopped with a clear error when training diverges.

A non-finite training loss (NaN/inf in any loss term or their sum) or a non-finite model tensor (parameters,
running statistics: whatever a checkpoint would hold) raises :class:`NonFiniteTrainingError`, naming the step and
the likely cause, before that step's evaluation, recalibration or checkpoint. Every checkpoint is checked as well,
so a diverged model is never saved (with ``save_only_latest_checkpoint``, a save would delete the good ones).
nerfstudio saves nothing when ``train()`` raises, so the last checkpoint on disk stays the last good one.

The loss of every step is recorded on its device (no GPU synchronisation); the records and the tensors are
checked after every step on CPU, and on GPU every ``finite_check_every`` steps (default 50) and at every step
that evaluates, saves or ends the run. The step named is always the first one whose loss was non-finite.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackLocation
from nerfstudio.engine.trainer import Trainer, TrainerConfig
from nerfstudio.utils import comms
from nerfstudio.utils.misc import step_check

GPU_CHECK_EVERY = 50


class NonFiniteTrainingError(FloatingPointError):
    """Training produced a non-finite loss or model tensor; raised before anything of that step is saved."""


@dataclass
class NormTrainerConfig(TrainerConfig):
    """nerfstudio's TrainerConfig with checks that the loss and the model stay finite."""

    _target: type = field(default_factory=lambda: NormTrainer)
    """Target class to instantiate."""
    finite_check_every: int | None = None
    """Steps between finiteness checks of the loss and model (default: every step on CPU, every 50 on GPU, where
    a check waits for the device); steps that evaluate or save are always checked, and so is every checkpoint."""


def non_finite_tensors(state: dict[str, Any]) -> list[str]:
    """Names of the floating-point tensors of a state dict that hold NaN or inf (one synchronisation per device)."""
    named = [(k, v) for k, v in state.items() if isinstance(v, torch.Tensor) and v.is_floating_point()]
    if not named:
        return []
    by_device: dict[torch.device, list[tuple[str, torch.Tensor]]] = {}
    for name, value in named:
        by_device.setdefault(value.device, []).append((name, value))
    bad = []
    for group in by_device.values():
        flags = torch.stack([v.detach().isfinite().all() for _, v in group]).tolist()
        bad += [name for (name, _), ok in zip(group, flags) if not ok]
    return bad


class NormTrainer(Trainer):
    """nerfstudio's Trainer that raises :class:`NonFiniteTrainingError` instead of training on, or saving, NaNs."""

    config: NormTrainerConfig

    def __init__(self, config: NormTrainerConfig, local_rank: int = 0, world_size: int = 1) -> None:
        if config.finite_check_every is not None and config.finite_check_every < 1:
            raise ValueError(f"finite_check_every must be >= 1 (or None: automatic), got {config.finite_check_every}")
        super().__init__(config, local_rank, world_size)
        self._pending_losses: list[tuple[int, dict[str, torch.Tensor], torch.Tensor]] = []

    def setup(self, test_mode: Literal["test", "val", "inference"] = "val") -> None:
        """As nerfstudio's; the loss records start empty. With several processes, rank 0 alone writes the dataparser
        transform, and all ranks meet after the final checkpoint (before rank 0's viewer, if any, keeps running)."""
        super().setup(test_mode)
        self._pending_losses = []
        if self.world_size > 1:
            outputs = getattr(self.pipeline.datamanager, "train_dataparser_outputs", None)
            if outputs is not None and not comms.is_main_process():
                outputs.save_dataparser_transform = lambda path: None  # train() would write it on every rank
            meet = TrainingCallback([TrainingCallbackLocation.AFTER_TRAIN], lambda step: comms.synchronize())
            self.callbacks.append(meet)

    def eval_iteration(self, step: int) -> None:
        """nerfstudio's evaluation, on rank 0 only (the others go on to the next step and wait for rank 0 there).

        Evaluation runs in eval mode (running statistics, no collectives); the recalibration before it runs on every
        rank (:mod:`norm_nerf.ns.callbacks`)."""
        if comms.is_main_process():
            super().eval_iteration(step)

    def train_iteration(self, step: int):
        """One nerfstudio training iteration; its loss is recorded and, when a check is due, checked."""
        loss, loss_dict, metrics_dict = super().train_iteration(step)
        terms = {k: v.detach() for k, v in loss_dict.items() if isinstance(v, torch.Tensor)}
        self._pending_losses.append((step, terms, loss.detach()))
        if self._check_due(step):
            self.check_finite(step)
        return loss, loss_dict, metrics_dict

    def save_checkpoint(self, step: int) -> None:
        """nerfstudio's checkpoint, after checking the recorded losses and every tensor it would save."""
        self.check_finite(step)
        super().save_checkpoint(step)

    def _check_due(self, step: int) -> bool:
        cfg = self.config
        every = cfg.finite_check_every or (1 if torch.device(self.device).type == "cpu" else GPU_CHECK_EVERY)
        last = self._start_step + cfg.max_num_iterations - 1
        periods = (cfg.steps_per_save, cfg.steps_per_eval_batch, cfg.steps_per_eval_image)
        periods += (cfg.steps_per_eval_all_images,)
        return step == last or (step + 1) % every == 0 or any(step_check(step, p) for p in periods)

    def check_finite(self, step: int) -> None:
        """Raise :class:`NonFiniteTrainingError` if a loss recorded since the last check, or a tensor of the
        pipeline's state (what a checkpoint holds), is NaN or inf; ``step`` is the current step."""
        pending, self._pending_losses = self._pending_losses, []
        if pending:
            losses = [torch.cat([t.float().reshape(-1) for t in (*d.values(), total)]) for _, d, total in pending]
            flags = torch.stack([values.isfinite().all() for values in losses]).tolist()
            for (bad_step, terms, total), ok in zip(pending, flags):
                if not ok:
                    values = ", ".join(f"{k} {float(v.float().sum()):.4g}" for k, v in terms.items())
                    raise NonFiniteTrainingError(
                        f"training stopped at step {bad_step}: the training loss is {float(total):.4g} ({values}). "
                        f"Likely causes: NaN/inf in the inputs (poses, intrinsics or images of "
                        f"{self.config.data or self.config.pipeline.datamanager.data}), or a learning rate too high "
                        f"for this model ({self._lr_hint()}). {self.last_checkpoint_note()}"
                    )
        state = self.pipeline.state_dict()
        bad = non_finite_tensors(state)
        if bad:
            total = sum(isinstance(v, torch.Tensor) and v.is_floating_point() for v in state.values())
            raise NonFiniteTrainingError(
                f"training stopped at step {step}: {len(bad)} of {total} model tensors are non-finite (NaN/inf), e.g. "
                f"{', '.join(bad[:3])}, while the training loss was finite: non-finite gradients. Likely causes: a "
                f"learning rate too high for this model ({self._lr_hint()}), or NaN/inf in the inputs. "
                f"{self.last_checkpoint_note()}"
            )

    def _lr_hint(self) -> str:
        rates = {
            name: group["optimizer"].lr
            for name, group in self.config.optimizers.items()
            if getattr(group.get("optimizer"), "lr", None) is not None
        }
        if not rates:
            return "lower --optimizers.*.optimizer.lr"
        name, lr = next(iter(rates.items()))
        return f"{name} lr is {lr:g}; try e.g. --optimizers.{name}.optimizer.lr {lr / 10:g}"

    def last_checkpoint_note(self) -> str:
        """Which checkpoint on disk is the last one (a sentence for error messages)."""
        saved = sorted(Path(self.checkpoint_dir).glob("step-*.ckpt")) if Path(self.checkpoint_dir).is_dir() else []
        if not saved:
            return "No checkpoint was written."
        return f"Nothing was saved from this step on; the last checkpoint (finite) is {saved[-1]}."
