"""One training loop for every signal: fit a coordinate network, report honest eval-mode metrics.

A *signal* (image, CT, MRI, occupancy, or the analysis' grid signals) provides the network inputs, a loss on the
network output and quality metrics of a full prediction. The loop trains with Adam, tracks the train-mode metric
seen during training, then recalibrates the running statistics of the norms and reports **eval-mode** metrics of
the final model (the headline numbers), next to the final and best train-mode ones. A per-step callback sees every
state of the parameters (the spectral-bias analysis records its NTK and band errors through it).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

import torch
import tyro
from jaxtyping import Float
from rich.progress import TextColumn
from torch import Tensor, nn

from norm_nerf.core import LayerNorm, recalibrate
from norm_nerf.core.cpu_kernels import cpu_kernels, kernels_wanted
from norm_nerf.utils.console import progress


class Signal(Protocol):
    """What the trainer needs from a task."""

    coords: Float[Tensor, "p d"]
    """All network inputs (coordinates in [-1, 1])."""

    def loss(self, pred: Float[Tensor, "b out"], idx: Tensor | None = None) -> Tensor:
        """Training loss of a prediction at ``coords[idx]`` (all coordinates when ``idx`` is None)."""
        ...

    def metrics(self, pred: Float[Tensor, "p out"]) -> dict[str, float]:
        """Quality metrics of a prediction at all evaluation coordinates (``psnr`` or ``iou`` at least)."""
        ...

    def quick_metric(self, pred: Float[Tensor, "b out"], loss: Tensor, idx: Tensor | None = None) -> float:
        """A cheap metric of the training forward pass, for curves and the best-seen value."""
        ...


def signal_metric_name(signal: Signal) -> str:
    """Name of the quick metric (``psnr`` unless the signal says otherwise, e.g. ``iou``)."""
    return getattr(signal, "metric_name", "psnr")


def signal_eval_coords(signal: Signal) -> Tensor:
    """Coordinates at which the final metrics are computed (a held-out grid for occupancy)."""
    return getattr(signal, "eval_coords", signal.coords)


def signal_batch_size(signal: Signal) -> int | None:
    """Training batch size; None = full batch."""
    return getattr(signal, "batch_size", None)


class ConfigError(ValueError):
    """A user-facing problem with a training or task setting (names the option and the accepted values)."""


SCHEDULES = ("constant", "cosine", "exp")
"""Learning-rate schedules; cosine and exp decay to ``min_lr_ratio`` times the initial rate."""


def available_devices() -> list[str]:
    """Torch devices usable here: ``cpu``, then ``cuda`` (and ``cuda:<i>`` per GPU) and ``mps`` when present."""
    devices = ["cpu"]
    if torch.cuda.is_available():
        count = torch.cuda.device_count()
        devices += ["cuda"] + [f"cuda:{i}" for i in range(count)]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        devices.append("mps")
    return devices


def check_device(name: str) -> torch.device:
    """``name`` as a torch device, or a :class:`ConfigError` that lists the devices available here."""
    if name == "cpu":
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError, TypeError):
        raise ConfigError(f"unknown --device {name!r}; available here: {', '.join(available_devices())}") from None
    available = available_devices()
    if device.type == "cpu":
        return device
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {name}: no CUDA GPU is available here; available: {', '.join(available)}")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(
                f"--device {name}: only {torch.cuda.device_count()} CUDA GPU(s) here; available: {', '.join(available)}"
            )
        return device
    if device.type == "mps" and "mps" in available:
        return device
    raise ConfigError(f"--device {name}: not available here; available: {', '.join(available)}")


@dataclass
class TrainConfig:
    """Optimisation settings shared by all signal tasks (checked on construction, :meth:`check`)."""

    steps: int = 2000
    """Training steps (one Adam update each; full batch unless the task draws mini-batches)."""
    lr: float | None = None
    """Adam learning rate; default 1e-2 for normalized nets (the papers), 1e-3 plain, 1e-4 SIREN, 5e-3 WIRE."""
    schedule: Literal["constant", "cosine", "exp"] = "cosine"
    """Learning-rate schedule (cosine to --min-lr-ratio by default: the final model is then also the best one)."""
    min_lr_ratio: float = 0.01
    """Final/initial learning rate for cosine and exp schedules, in (0, 1]."""
    log_every: int = 10
    """Training-curve resolution in steps (>= 1)."""
    chunk: int = 65536
    """Points per forward pass when evaluating."""
    recalib_batches: int = 8
    """Training-sized batches used to recalibrate running statistics (mini-batch signals)."""
    seed: tyro.conf.Suppress[int] = 0
    """Seed of the mini-batch draws and the recalibration batches (the task configs set it to the run's --seed)."""
    device: str = "cpu"
    """Torch device: cpu, cuda, cuda:<i> or mps; refused with the list of available ones when absent."""
    progress: bool = True
    """Show a progress bar."""

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> None:
        """Refuse impossible settings with a :class:`ConfigError` naming the option (the one place for these rules)."""
        if self.steps < 0:
            raise ConfigError(f"--steps must be >= 0, got {self.steps}")
        if self.lr is not None and not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"--lr must be a positive number, got {self.lr}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"--schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        if self.schedule != "constant" and not (0 < self.min_lr_ratio <= 1):
            raise ConfigError(
                f"--min-lr-ratio must be in (0, 1] for the {self.schedule} schedule (final/initial learning rate), "
                f"got {self.min_lr_ratio}"
            )
        if self.log_every < 1:
            raise ConfigError(f"--log-every must be >= 1 (steps between curve points), got {self.log_every}")
        if self.chunk < 1:
            raise ConfigError(f"chunk must be >= 1, got {self.chunk}")
        if self.recalib_batches < 1:
            raise ConfigError(f"recalib_batches must be >= 1, got {self.recalib_batches}")
        check_device(self.device)


CONVERGENCE_RULE = (
    "gain of the train-mode metric over the last 10% of the steps (mean of the curve over the last 2% of the steps "
    "minus its mean over the 2% before 90%) below the threshold"
)
"""When a training curve counts as flattened (recorded in every ``metrics.json``; the tables flag the others)."""
CONVERGENCE_THRESHOLD = {"psnr": 0.1, "iou": 0.002}
"""Largest gain over the last 10% of the steps of a converged run, per metric (dB for PSNR)."""


def convergence(steps: list[int], curve: list[float], metric: str) -> dict[str, float | bool | str | None]:
    """Whether a training curve has flattened by :data:`CONVERGENCE_RULE`.

    Returns ``rule``, ``threshold``, ``gain_last_10pct`` and ``converged`` (None where the curve is too short or the
    metric has no threshold). Windows of 2% of the steps smooth out the noise of mini-batch metrics.
    """
    threshold = CONVERGENCE_THRESHOLD.get(metric)
    record: dict[str, float | bool | str | None] = {"rule": CONVERGENCE_RULE, "threshold": threshold}
    points = [(s, v) for s, v in zip(steps, curve) if v is not None and math.isfinite(v)]
    if threshold is None or len(points) < 3:
        return {**record, "gain_last_10pct": None, "converged": None}
    last = points[-1][0]

    def window(lo: float, hi: float) -> float:
        inside = [v for s, v in points if lo * last <= s <= hi * last]
        if inside:
            return sum(inside) / len(inside)
        at = 0.5 * (lo + hi) * last  # a sparse curve: interpolate linearly at the window's centre
        after = next(k for k, (s, _) in enumerate(points) if s >= at)
        (s0, v0), (s1, v1) = points[max(after - 1, 0)], points[after]
        return v1 if s1 == s0 else v0 + (v1 - v0) * (at - s0) / (s1 - s0)

    gain = window(0.98, 1.0) - window(0.88, 0.90)
    return {**record, "gain_last_10pct": gain, "converged": bool(gain < threshold)}


StepCallback = Callable[[int, Tensor, float], None]
"""``callback(step, pred, loss)`` of :func:`fit`: ``step`` updates applied so far, the detached train-mode output of
those parameters and its loss."""


@dataclass
class FitResult:
    """Outcome of :func:`fit`: eval-mode metrics are the result; train-mode values are labelled as such."""

    metrics: dict[str, float]
    """Eval-mode metrics of the final model after recalibration (the headline numbers)."""
    train_mode_metrics: dict[str, float]
    """Metrics of the final model in train mode (batch statistics)."""
    best_train_mode_metric: float
    """Best train-mode metric: the best quick metric seen during training (what the authors' code reports) or the
    final train-mode evaluation, whichever is higher (the per-step value is taken before that step's update)."""
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


def fit(
    net: nn.Module,
    signal: Signal,
    cfg: TrainConfig,
    lr: float,
    label: str = "fit",
    callback: StepCallback | None = None,
) -> FitResult:
    """Train ``net`` on ``signal`` for ``cfg.steps`` steps and evaluate it honestly.

    ``callback(step, pred, loss)``, when given, sees every state of the parameters: for ``step`` = 0 ..
    ``cfg.steps - 1`` it runs after the backward pass and before that step's update, with the step's train-mode
    output (at the step's training points: all coordinates for a full-batch signal), so it may inspect ``net`` at
    exactly the parameters of ``pred``; after the last update it runs once more with ``step = cfg.steps`` and the
    train-mode output at all coordinates (no gradients). ``pred`` is detached; ``loss`` is a float.
    """
    cfg.check()  # the fields may have been changed after construction
    if not (lr > 0 and math.isfinite(lr)):
        raise ConfigError(f"--lr must be a positive number, got {lr}")
    device = check_device(cfg.device)
    net = net.to(device)
    coords = signal.coords.to(device)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(cfg))
    result = FitResult(metrics={}, train_mode_metrics={}, best_train_mode_metric=-math.inf)
    if device.type == "cpu" and _wants_cpu_kernels(net):
        cpu_kernels()  # a first-use build (20-100 s, once) must not count as training time
    start = time.perf_counter()
    batch = signal_batch_size(signal)
    if batch is not None and batch < 1:
        raise ConfigError(f"--batch-size must be >= 1 (points per step; more than the data = full batch), got {batch}")
    gen = torch.Generator().manual_seed(cfg.seed)
    net.train()
    with _progress(cfg.progress, label, cfg.steps, signal_metric_name(signal)) as advance:
        for step in range(cfg.steps):
            idx = None
            if batch is not None and batch < len(coords):
                idx = torch.randint(len(coords), (batch,), generator=gen).to(device)
            pred = net(coords if idx is None else coords[idx])
            loss = signal.loss(pred, idx)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"{label}: loss became {loss.item()} at step {step}; try a smaller --lr")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if callback is not None:
                callback(step, pred.detach(), float(loss.detach()))
            opt.step()
            sched.step()
            metric = signal.quick_metric(pred.detach(), loss.detach(), idx)
            if not math.isnan(metric):
                result.best_train_mode_metric = max(result.best_train_mode_metric, metric)
            if step % cfg.log_every == 0 or step == cfg.steps - 1:
                result.curve_steps.append(step)
                result.curve_metric.append(metric)
                result.curve_loss.append(float(loss.item()))
            advance(metric)
    if callback is not None:
        with torch.no_grad():
            pred = net(coords)
            callback(cfg.steps, pred, float(signal.loss(pred)))
    result.seconds = time.perf_counter() - start
    result.steps = cfg.steps
    eval_coords = signal_eval_coords(signal).to(device)
    batch = signal_batch_size(signal)
    with torch.no_grad():  # train mode = batch statistics of training-sized batches
        result.train_mode_metrics = signal.metrics(predict(net, eval_coords, batch or len(eval_coords)).cpu())
    final = result.train_mode_metrics.get(signal_metric_name(signal))
    if final is not None and not math.isnan(final):  # the best includes the final model
        result.best_train_mode_metric = max(result.best_train_mode_metric, final)
    recalibrate(net, _recalibration_batches(coords, batch, cfg.recalib_batches, gen))
    net.eval()
    pred = predict(net, eval_coords, cfg.chunk).cpu()
    result.metrics = signal.metrics(pred)
    result.prediction = pred
    return result


def _wants_cpu_kernels(net: nn.Module) -> bool:
    """Whether a module of ``net`` would run the C++ kernels (a norm other than ``ln``, or a softplus, whose ``impl``
    asks for them): only then is their build warmed up before the timed loop."""
    return any(
        kernels_wanted(m.impl)
        for m in net.modules()
        if isinstance(getattr(m, "impl", None), str) and not isinstance(m, LayerNorm)
    )


def _recalibration_batches(coords: Tensor, batch: int | None, count: int, gen: torch.Generator) -> list[Tensor]:
    if batch is None or batch >= len(coords):
        return [coords]
    return [
        coords[torch.randperm(len(coords), generator=gen, device="cpu")[:batch].to(coords.device)] for _ in range(count)
    ]


class _progress:
    """The package's progress bar (:func:`norm_nerf.utils.console.progress`) with the running metric."""

    def __init__(self, enabled: bool, label: str, total: int, metric: str) -> None:
        self.enabled, self.label, self.total, self.metric = enabled, label, total, metric

    def __enter__(self) -> Callable[[float], None]:
        self._bar = progress(TextColumn("{task.fields[m]}"), enabled=self.enabled)
        self._bar.__enter__()
        task = self._bar.add_task(self.label, total=self.total, m="")

        def advance(metric: float) -> None:
            if self.enabled:
                self._bar.update(task, advance=1, m=f"train-mode {self.metric} {metric:7.3f}")

        return advance

    def __exit__(self, *exc) -> None:
        self._bar.__exit__(*exc)
