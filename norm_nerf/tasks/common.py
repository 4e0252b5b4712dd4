"""What every signal task shares: the CLI fields, building the network, fitting, writing results."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from norm_nerf.core import NetworkConfig, count_parameters
from norm_nerf.tasks.trainer import ConfigError, FitResult, TrainConfig, default_lr, fit


@dataclass
class TaskConfig:
    """Fields shared by all signal tasks (network, optimisation, output)."""

    method: str = "pe+cn"
    """Method: relu, pe, siren, wire, mfn, mfn-gabor, or <relu|pe|rff|hash>+<bn|ln|gn|cn|rms>."""
    depth: int = 10
    """Hidden layers of the network."""
    width: int = 28
    """Hidden features per layer."""
    steps: int = 2000
    """Training steps (full batch)."""
    lr: float | None = None
    """Adam learning rate; default 1e-2 for normalized nets (the papers), 1e-3 plain, 1e-4 SIREN, 5e-3 WIRE."""
    schedule: Literal["constant", "cosine", "exp"] = "constant"
    """Learning-rate schedule."""
    min_lr_ratio: float = 0.01
    """Final/initial learning rate for cosine and exp schedules, in (0, 1]."""
    num_frequencies: int = 10
    """PE octaves (sin/cos(2^k pi x), k < L)."""
    seed: int = 0
    """Seed of the network initialisation."""
    log_every: int = 10
    """Training-curve resolution in steps (>= 1)."""
    device: str = "cpu"
    """Torch device: cpu, cuda, cuda:<i> or mps; refused with the list of available ones when absent."""
    out: Path | None = None
    """Output folder (default: outputs/<task>/<time>)."""
    overwrite: bool = False
    """Allow writing into a non-empty --out folder."""
    progress: bool = True
    """Show a progress bar."""

    def network_config(self) -> NetworkConfig:
        return NetworkConfig(
            method=self.method, depth=self.depth, width=self.width, num_frequencies=self.num_frequencies, seed=self.seed
        )

    def train_config(self) -> TrainConfig:
        return TrainConfig(
            steps=self.steps,
            schedule=self.schedule,
            min_lr_ratio=self.min_lr_ratio,
            log_every=self.log_every,
            seed=self.seed,
            device=self.device,
            progress=self.progress,
        )

    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else default_lr(self.method)

    def check_task(self) -> None:
        """Task-specific checks (subclasses extend this); :func:`check_common` calls it."""


def check_common(cfg: TaskConfig) -> None:
    """Validate a task config with clear messages before any heavy work; every ``norm-inr`` task calls this.

    Network fields here, optimisation fields in :meth:`TrainConfig.check` (schedule ratio, ``--log-every``,
    ``--device``), task fields in :meth:`TaskConfig.check_task`; all raise :class:`ConfigError` (a ``ValueError``).
    """
    from norm_nerf.core import parse_method

    parse_method(cfg.method)
    if cfg.steps < 1:
        raise ConfigError(f"--steps must be >= 1, got {cfg.steps}")
    if cfg.depth < 1 or cfg.width < 1:
        raise ConfigError(f"--depth and --width must be >= 1, got {cfg.depth} and {cfg.width}")
    if cfg.lr is not None and not (cfg.lr > 0 and math.isfinite(cfg.lr)):
        raise ConfigError(f"--lr must be a positive number, got {cfg.lr}")
    cfg.train_config()  # TrainConfig checks its fields on construction
    cfg.check_task()


def fit_signal(cfg: TaskConfig, signal: Any, in_dim: int, out_dim: int, label: str) -> tuple[Any, FitResult]:
    """Build the network named by ``cfg`` and fit it to ``signal``; returns ``(net, result)``."""
    net = cfg.network_config().setup(in_dim, out_dim)
    result = fit(net, signal, cfg.train_config(), lr=cfg.learning_rate(), label=label)
    return net, result


def summarize(
    cfg: TaskConfig, task: str, net: Any, result: FitResult, extra: dict[str, Any], metric_name: str = "psnr"
) -> dict[str, Any]:
    """The ``metrics.json`` content: eval-mode metrics first, train-mode values under explicit names."""
    train_mode = {f"{k}_train_mode_final": v for k, v in result.train_mode_metrics.items()}
    return {
        "task": task,
        "method": cfg.method,
        "net": f"{cfg.depth}x{cfg.width}",
        **result.metrics,
        **train_mode,
        f"{metric_name}_best_train_mode": result.best_train_mode_metric,
        "params": count_parameters(net),
        "lr": cfg.learning_rate(),
        "steps": result.steps,
        "seconds": round(result.seconds, 3),
        "steps_per_second": round(result.steps / result.seconds, 3) if result.seconds > 0 else None,
        "metrics_mode": "eval mode, final model, running statistics recalibrated on the training data",
        **extra,
        "config": _jsonable(asdict(cfg)),
        "curve": {
            "step": result.curve_steps,
            f"train_mode_{metric_name}": result.curve_metric,
            "loss": result.curve_loss,
        },
    }


def write_metrics(out: Path, summary: dict[str, Any]) -> Path:
    path = out / "metrics.json"
    path.write_text(json.dumps(_jsonable(summary), indent=2))
    return path


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    return obj
