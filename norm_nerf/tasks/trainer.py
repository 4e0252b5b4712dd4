"""One training loop for every signal: fit a coordinate network, report honest eval-mode metrics.

A *signal* (image, CT, MRI, occupancy) provides the network inputs, a loss on the network output and
quality metrics of a full prediction. The loop trains with Adam, tracks the train-mode metric seen
during training, then recalibrates the running statistics of the norms and reports **eval-mode**
metrics of the final model (the headline numbers), next to the final and best train-mode ones.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Literal, Protocol

import torch
from jaxtyping import Float
from torch import Tensor, nn

from norm_nerf.core import parse_method, recalibrate


class Signal(Protocol):
    """What the trainer needs from a task."""

    coords: Float[Tensor, "p d"]
    """All network inputs (coordinates in [-1, 1])."""

    def loss(self, pred: Float[Tensor, "p out"]) -> Tensor:
        """Training loss of a prediction at all coordinates."""
        ...

    def metrics(self, pred: Float[Tensor, "p out"]) -> dict[str, float]:
        """Quality metrics of a prediction at all coordinates (``psnr`` at least)."""
        ...

    def quick_metric(self, pred: Float[Tensor, "p out"], loss: Tensor) -> float:
        """A cheap metric (PSNR) of the training forward pass, for curves and the best-seen value."""
        ...


@dataclass
class TrainConfig:
    """Optimisation settings shared by all signal tasks."""

    steps: int = 2000
    """Number of optimisation steps (full batch)."""
    lr: float | None = None
    """Adam learning rate; None picks the method's default (1e-2 with a norm, as in the papers)."""
    schedule: Literal["constant", "cosine", "exp"] = "constant"
    """Learning-rate schedule."""
    min_lr_ratio: float = 0.01
    """Final learning rate as a fraction of the initial one (cosine/exp schedules)."""
    log_every: int = 10
    """Record the training curve every this many steps."""
    chunk: int = 65536
    """Points per forward pass when evaluating."""
    seed: int = 0
    """Seed for the network initialisation."""
    device: str = "cpu"
    """Torch device."""
    progress: bool = True
    """Show a progress bar."""


def default_lr(method: str) -> float:
    """The learning rate the papers (and the authors' code) use for each kind of network."""
    head, norm = parse_method(method)
    if norm != "none":
        return 1e-2
    return {"siren": 1e-4, "wire": 5e-3}.get(head, 1e-3)


@dataclass
class FitResult:
    """Outcome of :func:`fit`: eval-mode metrics are the result; train-mode values are labelled as such."""

    metrics: dict[str, float]
    """Eval-mode metrics of the final model after recalibration (the headline numbers)."""
    train_mode_metrics: dict[str, float]
    """Metrics of the final model in train mode (batch statistics)."""
    best_train_mode_metric: float
    """Best quick metric (PSNR) seen during training, in train mode (what the authors' code reports)."""
    curve_steps: list[int] = field(default_factory=list)
    curve_metric: list[float] = field(default_factory=list)
    curve_loss: list[float] = field(default_factory=list)
    seconds: float = 0.0
    steps: int = 0
    prediction: Tensor | None = None
    """Eval-mode prediction at all coordinates (detached, CPU)."""


@torch.no_grad()
def predict(net: nn.Module, coords: Tensor, chunk: int = 65536) -> Tensor:
    """Network output at ``coords`` in chunks (eval-mode output does not depend on the chunk size)."""
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    return torch.cat([net(part) for part in coords.split(chunk)])


def _lr_lambda(cfg: TrainConfig):
    def factor(step: int) -> float:
        t = min(step / max(cfg.steps, 1), 1.0)
        if cfg.schedule == "cosine":
            return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t))
        if cfg.schedule == "exp":
            return cfg.min_lr_ratio**t
        return 1.0

    return factor


def fit(net: nn.Module, signal: Signal, cfg: TrainConfig, lr: float, label: str = "fit") -> FitResult:
    """Train ``net`` on ``signal`` full-batch for ``cfg.steps`` steps and evaluate it honestly."""
    if cfg.steps < 0:
        raise ValueError(f"steps must be >= 0, got {cfg.steps}")
    device = torch.device(cfg.device)
    net = net.to(device)
    coords = signal.coords.to(device)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(cfg))
    result = FitResult(metrics={}, train_mode_metrics={}, best_train_mode_metric=-math.inf)
    start = time.perf_counter()
    net.train()
    with _progress(cfg.progress, label, cfg.steps) as advance:
        for step in range(cfg.steps):
            pred = net(coords)
            loss = signal.loss(pred)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"{label}: loss became {loss.item()} at step {step}; try a smaller --lr")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            metric = signal.quick_metric(pred.detach(), loss.detach())
            result.best_train_mode_metric = max(result.best_train_mode_metric, metric)
            if step % cfg.log_every == 0 or step == cfg.steps - 1:
                result.curve_steps.append(step)
                result.curve_metric.append(metric)
                result.curve_loss.append(float(loss.item()))
            advance(metric)
    result.seconds = time.perf_counter() - start
    result.steps = cfg.steps
    with torch.no_grad():
        result.train_mode_metrics = signal.metrics(net(coords).cpu())
    recalibrate(net, [coords])
    net.eval()
    pred = predict(net, coords, cfg.chunk).cpu()
    result.metrics = signal.metrics(pred)
    result.prediction = pred
    return result


class _progress:
    """A rich progress bar that shows the running metric; a no-op when disabled."""

    def __init__(self, enabled: bool, label: str, total: int) -> None:
        self.enabled, self.label, self.total = enabled, label, total

    def __enter__(self):
        if not self.enabled:
            return lambda metric: None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._bar = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[m]}"),
            TimeRemainingColumn(), transient=False,
        )  # fmt: skip
        self._bar.__enter__()
        task = self._bar.add_task(self.label, total=self.total, m="")

        def advance(metric: float) -> None:
            self._bar.update(task, advance=1, m=f"train-mode PSNR {metric:6.2f} dB")

        return advance

    def __exit__(self, *exc) -> None:
        if self.enabled:
            self._bar.__exit__(*exc)
