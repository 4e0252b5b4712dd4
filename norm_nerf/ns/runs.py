"""Build and run norm-* trainings in-process: method configs, small CPU presets, train, reload."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nerfstudio.engine.trainer import TrainerConfig
from nerfstudio.plugins.registry import discover_methods

from norm_nerf.ns.trainer import NormTrainerConfig


def method_config(name: str) -> TrainerConfig:
    """A fresh copy of the TrainerConfig of one of our methods (``norm-mipnerf``, ``norm-nerf``, ...).

    Looked up in nerfstudio's plugin registry (the ``nerfstudio.method_configs`` entry points, as ``ns-train`` finds
    them); ours are the methods trained by :class:`~norm_nerf.ns.trainer.NormTrainerConfig`.
    """
    methods, _ = discover_methods()
    ours = {method: config for method, config in methods.items() if isinstance(config, NormTrainerConfig)}
    if name not in ours:
        raise ValueError(f"unknown norm-nerf method {name!r}; available: {', '.join(sorted(ours))}")
    return copy.deepcopy(ours[name])


def cpu_preset(
    config: TrainerConfig,
    data: Path,
    output_dir: Path,
    steps: int,
    rays: int = 256,
    samples: int = 32,
    width: int = 128,
    eval_every: int | None = None,
) -> TrainerConfig:
    """Shrink a config for CPU: fewer rays and samples, narrower MLPs, tensorboard logging, no viewer."""
    config.pipeline.datamanager.data = Path(data)
    config.output_dir = Path(output_dir)
    config.max_num_iterations = steps
    config.vis = "tensorboard"
    config.viewer.quit_on_train_completion = True
    never = 10**9
    config.steps_per_eval_image = config.steps_per_eval_batch = eval_every or never
    config.steps_per_eval_all_images = never
    config.steps_per_save = eval_every or steps
    config.pipeline.datamanager.train_num_rays_per_batch = rays
    config.pipeline.datamanager.eval_num_rays_per_batch = rays
    model = config.pipeline.model
    for attr in ("num_coarse_samples", "num_importance_samples", "num_samples", "num_samples_importance"):
        if hasattr(model, attr):
            setattr(model, attr, samples)
    for attr, value in (("base_mlp_layer_width", width), ("head_mlp_layer_width", max(width // 2, 8))):
        if hasattr(model, attr):
            setattr(model, attr, value)
    sdf_field = getattr(model, "sdf_field", None)  # NeuS: SDF network, geometry feature and colour network
    for attr in ("hidden_dim", "geo_feat_dim", "hidden_dim_color"):
        if hasattr(sdf_field, attr):
            setattr(sdf_field, attr, width)
    model.eval_num_rays_per_chunk = 1024
    return config


def train(config: TrainerConfig, step_seconds: list[float] | None = None) -> Path:
    """Train in this process (plain data manager, one device); returns the saved ``config.yml``.

    With ``step_seconds`` the wall time of every training iteration (forward, backward, optimizer step; not the
    callbacks, evaluation or checkpointing) is appended to that list.
    """
    trainer = setup_trainer(config)
    if step_seconds is not None:
        trainer.train_iteration = _timed(trainer.train_iteration, step_seconds)
    trainer.train()
    return config.get_base_dir() / "config.yml"


def setup_trainer(config: TrainerConfig):
    """The trainer of ``config`` in this process, set up exactly as ``ns-train`` sets up rank 0
    (:func:`norm_nerf.ns.launch.setup_run`: timestamp, ``config.yml``, seeds), so in-process runs are as reproducible
    as ``ns-train`` runs. Errors are raised (``one_line_errors`` off), not turned into an exit."""
    from norm_nerf.ns.launch import setup_run

    if isinstance(config, NormTrainerConfig):
        config.one_line_errors = False  # raised to the Python caller
    return setup_run(config)


def _timed(fn: Callable[[int], Any], seconds: list[float]) -> Callable[[int], Any]:
    import torch

    def wrapper(step: int) -> Any:
        start = time.perf_counter()
        out = fn(step)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - start)
        return out

    return wrapper
