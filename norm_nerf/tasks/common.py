"""What every signal task shares: the config (network, training and output options nested), building the
network, fitting, the ``metrics.json`` content.

A task config nests :class:`~norm_nerf.core.NetworkConfig` (``network``) and
:class:`~norm_nerf.tasks.trainer.TrainConfig` (``train``) instead of copying their fields, so every network
option (``--norm-momentum``, the ``--hash-*`` and ``--rff-*`` options, ...) and every training option can be set
from ``norm-inr``. Their flags keep the short spellings (``--method``, ``--depth``, ``--steps``, ``--lr``, ...): the
nested configs are shown without a prefix (the hash grid's options keep theirs: ``--hash-grid.num-levels``).
``--seed`` is the run's one seed: the network initialisation, the
mini-batch draws, the recalibration batches and the MRI sampling mask.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Annotated, Any, ClassVar

import tyro
from torch import nn

from norm_nerf.core import NetworkConfig, count_parameters, default_lr, parse_method
from norm_nerf.core.saving import save_atomically
from norm_nerf.eval.plots import save_curves
from norm_nerf.tasks.trainer import ConfigError, FitResult, Signal, TrainConfig, convergence, fit
from norm_nerf.utils.jsonio import jsonable, write_json
from norm_nerf.utils.outputs import OutputOptions

NetworkOptions = Annotated[NetworkConfig, tyro.conf.arg(name=""), tyro.conf.SuppressFixed]
"""The nested network config as ``norm-inr`` shows it: its fields as ``--method``, ``--depth``, ... (no prefix; its
own nested hash-grid config keeps its prefix, ``--hash-grid.num-levels``)."""


@dataclass
class ParsedTrainConfig(TrainConfig):
    """A :class:`TrainConfig` as the command line builds it: checked by :func:`check_common` before any work, not on
    construction, so that a bad value (``--device gpu``) is a one-line error, not one wrapped by the parser."""

    def __post_init__(self) -> None:
        """No check here; every task runner calls :func:`check_common` first."""


TrainOptions = Annotated[TrainConfig, tyro.conf.OmitArgPrefixes, tyro.conf.arg(constructor=ParsedTrainConfig)]
"""The nested training config as ``norm-inr`` shows it: ``--steps``, ``--lr``, ``--schedule``, ... (no prefix)."""
NESTED = ("network", "train")
"""The nested configs of a task config, in the order their options are looked up by :meth:`TaskConfig.replace`."""


def network_defaults(**values: Any) -> Any:
    """A task's default network (pe+cn, 10x28, 10 PE octaves, seed 0, with ``values`` changed) as a dataclass field."""
    return field(default_factory=lambda: NetworkConfig(**{"method": "pe+cn", "seed": 0, **values}))


def train_defaults(**values: Any) -> Any:
    """A task's default training settings (2000 steps, cosine decay, with ``values`` changed) as a dataclass field."""
    return field(default_factory=lambda: TrainConfig(**values))


@dataclass(frozen=True)
class TablePreset:
    """A size preset of ``norm-inr table`` for one task (``--preset cpu|paper``)."""

    nets: tuple[str, ...]
    """Networks as DEPTHxWIDTH."""
    steps: int
    """Training steps per cell."""
    flags: tuple[str, ...]
    """The task's flags for every cell."""


@dataclass
class TaskConfig(OutputOptions):
    """Fields shared by all signal tasks: the network, the training and the output folder."""

    task: ClassVar[str] = "task"
    """The task's name (``norm-inr <task>``, ``metrics.json``'s ``task``)."""
    input_field: ClassVar[str | None] = None
    """The field that names the task's input file (``norm-inr table --inputs`` fills it)."""
    metric: ClassVar[str] = "psnr"
    """The headline metric: training curves, convergence, the table's cells and its settled orderings use it."""
    second_metric: ClassVar[tuple[str, str] | None] = None
    """A second metric and its column title: averaged and shown beside the first, not used for convergence."""
    curve_label: ClassVar[str] = "train-mode PSNR [dB]"
    """The y-axis of the training curve."""
    presets: ClassVar[dict[str, TablePreset]] = {}
    """``norm-inr table`` presets by name (``cpu``, ``paper``)."""

    network: NetworkOptions = network_defaults()
    """The coordinate network (method, depth, width, encoding and norm options)."""
    train: TrainOptions = train_defaults()
    """Optimisation (steps, learning rate and schedule, device, progress bar)."""

    def __post_init__(self) -> None:
        # --seed is the run's one seed: the trainer's draws follow the network's initialisation seed.
        self.train.seed = 0 if self.network.seed is None else self.network.seed

    def learning_rate(self) -> float:
        """``--lr``, or the method's default learning rate (:func:`norm_nerf.core.default_lr`)."""
        return self.train.lr if self.train.lr is not None else default_lr(self.network.method)

    def replace(self, **options: Any) -> TaskConfig:
        """A copy with options set by their ``norm-inr`` names, routed to the task, ``network`` or ``train``.

        ``ImageTaskConfig().replace(method="relu", depth=2, steps=5, out=path)`` is what
        ``norm-inr image --method relu --depth 2 --steps 5 --out PATH`` parses to; unknown names raise TypeError.
        """
        own = {f.name for f in fields(self)}
        nested: dict[str, dict[str, Any]] = {name: {} for name in NESTED}
        top: dict[str, Any] = {}
        for key, value in options.items():
            if key in own:
                top[key] = value
                continue
            for name in NESTED:
                if key in {f.name for f in fields(getattr(self, name))}:
                    nested[name][key] = value
                    break
            else:
                raise TypeError(f"{type(self).__name__}: unknown option {key!r}")
        for name in NESTED:  # fresh nested configs: a copy never shares them with the original
            base = top.pop(name, getattr(self, name))
            top[name] = dataclasses.replace(base, **nested[name])
        return dataclasses.replace(self, **top)

    def check_task(self) -> None:
        """Task-specific checks (subclasses extend this); :func:`check_common` calls it."""

    def run(self) -> dict[str, Any]:
        """Fit the task's signal and write its results; returns the ``metrics.json`` content."""
        raise NotImplementedError(f"{type(self).__name__} does not say how it runs")


def flat_settings(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A recorded task config (``metrics.json``'s ``config``) keyed by option name, the nested configs flattened.

    Option names are unique across a task config and its nested configs (the network's and the trainer's
    ``seed`` are one ``--seed``), so ``{"network": {"method": ..., "hash_grid": {"num_levels": ...}}, "train":
    {"steps": ...}, "image": ...}`` becomes ``{"method": ..., "hash_grid.num_levels": ..., "steps": ...,
    "image": ...}``, as the flags are spelled; a flat record (older ``norm-inr``) stays as it is.
    """
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(flat_settings(value, "" if not prefix and key in NESTED else f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def check_common(cfg: TaskConfig) -> None:
    """Validate a task config with clear messages before any heavy work; every ``norm-inr`` task calls this.

    Network fields here, optimisation fields in :meth:`TrainConfig.check` (schedule ratio, ``--log-every``,
    ``--device``), task fields in :meth:`TaskConfig.check_task`; all raise :class:`ConfigError` (a ``ValueError``).
    """
    net = cfg.network
    parse_method(net.method)
    if cfg.train.steps < 1:
        raise ConfigError(f"--steps must be >= 1, got {cfg.train.steps}")
    if net.depth < 1 or net.width < 1:
        raise ConfigError(f"--depth and --width must be >= 1, got {net.depth} and {net.width}")
    cfg.train.check()  # --lr, --schedule/--min-lr-ratio, --log-every, --device (changed since construction?)
    cfg.check_task()


def fit_signal(cfg: TaskConfig, signal: Signal, in_dim: int, out_dim: int, label: str) -> tuple[nn.Module, FitResult]:
    """Build the network named by ``cfg`` and fit it to ``signal``; returns ``(net, result)``."""
    net = cfg.network.setup(in_dim, out_dim)
    result = fit(net, signal, cfg.train, lr=cfg.learning_rate(), label=label)
    return net, result


def summarize(
    cfg: TaskConfig, net: nn.Module, result: FitResult, extra: dict[str, Any], metric_name: str = "psnr"
) -> dict[str, Any]:
    """The ``metrics.json`` content: eval-mode metrics first, train-mode values under explicit names."""
    train_mode = {f"{k}_train_mode_final": v for k, v in result.train_mode_metrics.items()}
    return {
        "task": cfg.task,
        "method": cfg.network.method,
        "net": f"{cfg.network.depth}x{cfg.network.width}",
        **result.metrics,
        **train_mode,
        f"{metric_name}_best_train_mode": result.best_train_mode_metric,
        "params": count_parameters(net),
        "lr": cfg.learning_rate(),
        "steps": result.steps,
        "seconds": round(result.seconds, 3),
        "steps_per_second": round(result.steps / result.seconds, 3) if result.seconds > 0 else None,
        "metrics_mode": "eval mode, final model, running statistics recalibrated on the training data",
        "convergence": convergence(result.curve_steps, result.curve_metric, metric_name),
        **extra,
        "config": jsonable(asdict(cfg)),
        "curve": {
            "step": result.curve_steps,
            f"train_mode_{metric_name}": result.curve_metric,
            "loss": result.curve_loss,
        },
    }


def write_metrics(out: Path, summary: dict[str, Any]) -> Path:
    """``out/metrics.json`` by the package's JSON policy (strict JSON, non-finite numbers as null)."""
    return write_json(out / "metrics.json", summary)


def finish_run(cfg: TaskConfig, out: Path, net: nn.Module, result: FitResult, extra: dict[str, Any]) -> dict[str, Any]:
    """Record a finished fit in ``out``: its curve, the model, and ``metrics.json`` (last: a folder with it holds
    every file of the run); returns the ``metrics.json`` content (``extra``: the task's own entries)."""
    summary = summarize(cfg, net, result, extra, metric_name=cfg.metric)
    summary["out"] = str(out)
    curves = {cfg.network.method: (result.curve_steps, result.curve_metric)}
    save_curves(curves, out / "curve.png", ylabel=cfg.curve_label)
    save_atomically(net.state_dict(), out / "model.pt")
    write_metrics(out, summary)
    return summary
