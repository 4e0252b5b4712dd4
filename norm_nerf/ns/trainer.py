"""The trainer of the norm-* methods: nerfstudio's Trainer, stopped with a clear error when training diverges.

A non-finite training loss (NaN/inf in any loss term or their sum) or a non-finite model tensor (parameters,
running statistics: whatever a checkpoint would hold) raises :class:`NonFiniteTrainingError`, naming the step and
the likely cause, before that step's evaluation, recalibration or checkpoint. Every checkpoint is checked as well,
so a diverged model is never saved (with ``save_only_latest_checkpoint``, a save would delete the good ones).
nerfstudio saves nothing when ``train()`` raises, so the last checkpoint on disk stays the last good one.

The loss of every step is recorded on its device (no GPU synchronisation); the records and the tensors are
checked after every step on CPU, and on GPU every ``finite_check_every`` steps (default 50) and at every step
that evaluates, saves or ends the run. The step named is always the first one whose loss was non-finite.

What else differs from nerfstudio's Trainer, so that no work is lost and no error hides in a traceback:

* checkpoints are written whole or not at all (a temporary file beside the checkpoint folder, then a rename), with
  the model's settings, and a checkpoint that does not fit the config is refused (:mod:`norm_nerf.ns.checkpoints`);
* Ctrl-C (one process) finishes the current step, saves a checkpoint, prints how to resume and exits with 130;
* a resumed run stops at ``--max-num-iterations`` (nerfstudio trains that many steps more);
* with ``one_line_errors`` (the default), input errors, a full disk and divergence print one line and exit with 2,
  and a run that fails before its first step leaves no run folder behind.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackLocation
from nerfstudio.engine.trainer import Trainer, TrainerConfig
from nerfstudio.utils import comms, writer
from nerfstudio.utils.misc import step_check

from norm_nerf.core.saving import save_atomically
from norm_nerf.ns.callbacks import recalibrate_model
from norm_nerf.ns.checkpoints import CheckpointMismatchError
from norm_nerf.utils.atomic import NoSpaceError

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
    one_line_errors: bool = True
    """Input errors, a full disk and divergence end the run with one line on stderr and exit status 2 (False: they
    are raised, for callers in Python)."""


USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, NoSpaceError, FloatingPointError)
"""What a user can fix (data, settings, disk space, learning rate): reported in one line, not as a traceback."""


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
        self._last_done = -1
        self._interrupted = False

    def setup(self, test_mode: Literal["test", "val", "inference"] = "val") -> None:
        """As nerfstudio's; the loss records start empty. With several processes, rank 0 alone writes the dataparser
        transform, and all ranks meet after the final checkpoint (before rank 0's viewer, if any, keeps running).
        A resumed run trains up to ``max_num_iterations`` steps in all."""
        with self._user_errors(before_first_step=True):
            super().setup(test_mode)
        self._pending_losses = []
        self._last_done = self._start_step - 1
        if self.world_size > 1:
            outputs = getattr(self.pipeline.datamanager, "train_dataparser_outputs", None)
            if outputs is not None and not comms.is_main_process():
                outputs.save_dataparser_transform = lambda path: None  # train() would write it on every rank
            meet = TrainingCallback([TrainingCallbackLocation.AFTER_TRAIN], lambda step: comms.synchronize())
            self.callbacks.append(meet)

    def _load_checkpoint(self) -> None:
        """nerfstudio's load; a checkpoint that does not fit the config is refused, naming it. The run then ends at
        step ``max_num_iterations`` (the total, as in a run that was never interrupted)."""
        try:
            super()._load_checkpoint()
        except CheckpointMismatchError as err:
            source = self.config.load_checkpoint or self.config.load_dir
            raise CheckpointMismatchError(f"{source}: {err}") from None
        if self._start_step > 0:
            total = self.config.max_num_iterations
            self.config.max_num_iterations = max(total - self._start_step, 0)
            if self.config.max_num_iterations == 0:
                done = self._start_step - 1
                print(f"the checkpoint is at step {done}, which already reaches --max-num-iterations {total}: nothing "
                      "to train (raise --max-num-iterations to train on)", file=sys.stderr)  # fmt: skip

    def train(self) -> None:
        """nerfstudio's training loop; Ctrl-C saves a checkpoint and exits with 130 (see the module docstring)."""
        if self.config.max_num_iterations == 0:
            return
        with self._user_errors(), self._interrupt_stops():
            super().train()
        if self._interrupted:
            raise SystemExit(130)

    @contextlib.contextmanager
    def _user_errors(self, before_first_step: bool = False) -> Iterator[None]:
        """Report :data:`USER_ERRORS` in one line with exit status 2 (``one_line_errors``); before the first step,
        also remove the run folder ns-train made for a run that never started."""
        try:
            yield
        except USER_ERRORS as err:
            if before_first_step and comms.is_main_process():
                _remove_unstarted_run(self.base_dir)
            if not self.config.one_line_errors:
                raise
            prefix = f"[rank {comms.get_rank()}] " if self.world_size > 1 else ""
            print(f"{prefix}error: {err}", file=sys.stderr, flush=True)
            raise SystemExit(2) from None

    @contextlib.contextmanager
    def _interrupt_stops(self) -> Iterator[None]:
        """In one process: the first Ctrl-C stops training after the current step (nerfstudio's ``stop_training``),
        a second one at once."""
        if self.world_size > 1 or threading.current_thread() is not threading.main_thread():
            yield
            return

        def stop(signum: int, frame: Any) -> None:
            if self._interrupted:
                raise KeyboardInterrupt
            self._interrupted = self.stop_training = True
            print("\ninterrupted: saving a checkpoint after this step (Ctrl-C again to quit at once)", file=sys.stderr)

        previous = signal.signal(signal.SIGINT, stop)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    def _after_train(self) -> None:
        """nerfstudio's end of training; after Ctrl-C, the checkpoint of the last finished step (recalibrated, as
        every checkpoint) and how to resume, instead of the viewer's wait."""
        if not self._interrupted:
            super()._after_train()
            return
        self.training_state = "completed"
        if self._last_done < self._start_step:
            print("interrupted before the first step finished: nothing new to save", file=sys.stderr)
            return
        self.step = self._last_done
        batches = getattr(self.pipeline.model.config, "recalibration_batches", 0)
        if batches > 0:
            recalibrate_model(self.pipeline.model, self.pipeline.datamanager, self.step, batches)
        self.save_checkpoint(self.step)
        writer.write_out_storage()
        print(f"saved {self.checkpoint_dir / _checkpoint_name(self.step)}; to resume, run the same command with "
              f"--load-dir {self.checkpoint_dir}", file=sys.stderr)  # fmt: skip

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
        self._last_done = step
        return loss, loss_dict, metrics_dict

    def save_checkpoint(self, step: int) -> None:
        """nerfstudio's checkpoint (same name and content, plus the model's settings), after checking the recorded
        losses and every tensor it would save; written whole or not at all (rank 0 alone writes)."""
        self.check_finite(step)
        if not comms.is_main_process():
            return
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        path = self.checkpoint_dir / _checkpoint_name(step)
        pipeline = self.pipeline
        state = {
            "step": step,
            "pipeline": pipeline.checkpoint_state() if hasattr(pipeline, "checkpoint_state") else pipeline.state_dict(),
            "optimizers": {k: v.state_dict() for k, v in self.optimizers.optimizers.items()},
            "schedulers": {k: v.state_dict() for k, v in self.optimizers.schedulers.items()},
            "scalers": self.grad_scaler.state_dict(),
        }
        save_atomically(state, path, tmp_dir=self.checkpoint_dir.parent)  # the folder holds only whole checkpoints
        if self.config.save_only_latest_checkpoint:
            for old in self.checkpoint_dir.glob("*.ckpt"):
                if old != path:
                    old.unlink()

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


def _checkpoint_name(step: int) -> str:
    """nerfstudio's checkpoint file name (its loaders parse the step from it)."""
    return f"step-{step:09d}.ckpt"


def _remove_unstarted_run(base_dir: Path) -> None:
    """Remove the folder ns-train made for this run (its ``config.yml``) when that is all it holds, and the empty
    experiment and method folders above it; a folder with anything else in it stays."""
    base_dir = Path(base_dir)
    if not base_dir.is_dir() or any(p.name != "config.yml" for p in base_dir.iterdir()):
        return
    (base_dir / "config.yml").unlink(missing_ok=True)
    for folder in (base_dir, base_dir.parent, base_dir.parent.parent):
        try:
            folder.rmdir()  # only when empty
        except OSError:
            return
