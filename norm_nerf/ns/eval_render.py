"""Render every eval image of a trained nerfstudio run (eval mode, no gradients) for ``norm_nerf.eval.blender_eval``.

:func:`load_pipeline` is where every command that takes ``--load-config`` (norm-eval-blender, norm-extract-mesh, the
comparison helpers) reads a run: a missing, binary or malformed ``config.yml``, a YAML file that is no nerfstudio run
config, a run without checkpoints, or a checkpoint holding NaN/inf weights (a diverged run) is refused with one line
naming the file, before anything is rendered or written.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np


class RunConfigError(ValueError):
    """A ``--load-config`` file, or the run it points to, that cannot be loaded."""


class NonFiniteCheckpointError(ValueError):
    """A checkpoint whose weights hold NaN or inf: the run diverged, and its renders would score nonsense."""


class NonFiniteRenderError(ValueError):
    """A rendered view with NaN or inf pixels."""


def _yaml_problem(err: Exception) -> str:
    """One line from a PyYAML error: its problem and where it is."""
    problem = getattr(err, "problem", None) or (str(err).splitlines() or [type(err).__name__])[0]
    mark = getattr(err, "problem_mark", None)
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else problem


def read_run_config(config: Path) -> Any:
    """The ``TrainerConfig`` saved in a run's ``config.yml``, after checking that it is one and has checkpoints.

    FileNotFoundError for a missing file or checkpoint folder, :class:`RunConfigError` for a binary file, invalid
    YAML, YAML that is not a nerfstudio run config, or a method that is not installed.
    """
    import yaml
    from nerfstudio.engine.trainer import TrainerConfig

    config = Path(config)
    if not config.is_file():
        raise FileNotFoundError(f"{config}: run config not found")
    try:
        text = config.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise RunConfigError(f"{config}: not a text file (a run's config.yml is YAML written by ns-train)") from None
    try:
        loaded = yaml.load(text, Loader=yaml.Loader)  # as nerfstudio's eval_setup reads it (python objects)
    except yaml.YAMLError as err:
        raise RunConfigError(f"{config}: not valid YAML ({_yaml_problem(err)})") from None
    if not isinstance(loaded, TrainerConfig):
        raise RunConfigError(
            f"{config}: not a nerfstudio run config (the YAML holds a {type(loaded).__name__}, not a TrainerConfig; "
            "pass the config.yml that ns-train writes into the run folder)"
        )
    from nerfstudio.configs.method_configs import all_methods

    if loaded.method_name not in all_methods:
        raise RunConfigError(
            f"{config}: method {loaded.method_name!r} is not installed (nerfstudio knows no such method)"
        )
    ckpt_dir = Path(loaded.get_checkpoint_dir())
    if not (ckpt_dir.is_dir() and any(ckpt_dir.glob("step-*.ckpt"))):
        relative = "" if ckpt_dir.is_absolute() else f", relative to the current folder {Path.cwd()}"
        raise FileNotFoundError(f"{config}: no checkpoint (step-*.ckpt) in {ckpt_dir}{relative}")
    return loaded


def load_pipeline(config: Path, split: Literal["test", "val"] = "test", rays_per_chunk: int | None = None):
    """``(pipeline, checkpoint path, step)`` of a run's ``config.yml``, in eval mode, on CUDA if present else CPU.

    The config is checked first (:func:`read_run_config`); a checkpoint with NaN/inf weights raises
    :class:`NonFiniteCheckpointError`.
    """
    config = Path(config)
    read_run_config(config)
    from nerfstudio.utils.eval_utils import eval_setup

    from norm_nerf.ns.trainer import non_finite_tensors

    _, pipeline, ckpt, step = eval_setup(config, eval_num_rays_per_chunk=rays_per_chunk, test_mode=split)
    state = pipeline.state_dict()
    bad = non_finite_tensors(state)
    if bad:
        total = sum(hasattr(v, "is_floating_point") and v.is_floating_point() for v in state.values())
        raise NonFiniteCheckpointError(
            f"{ckpt}: {len(bad)} of {total} tensors hold NaN/inf (e.g. {', '.join(bad[:3])}): the run diverged at or "
            f"before step {step}, so its renders cannot be scored; retrain (check the data, or lower the learning rate)"
        )
    return pipeline, ckpt, step


def eval_images(pipeline) -> tuple[int, Iterator[tuple[str, np.ndarray, np.ndarray]]]:
    """Number of eval images and an iterator of ``(name, rendered RGB, ground-truth RGB)`` in [0, 1].

    A rendering with NaN/inf pixels raises :class:`NonFiniteRenderError` naming the view's image file.
    """
    import torch

    from norm_nerf.eval.blender_eval import composite

    dataset = pipeline.datamanager.eval_dataset
    filenames = dataset._dataparser_outputs.image_filenames

    def items() -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
        model = pipeline.model.eval()
        for i in range(len(dataset)):
            with torch.no_grad():
                outputs = model.get_outputs_for_camera(dataset.cameras[i : i + 1].to(model.device))
            rgb = outputs["rgb_fine"] if "rgb_fine" in outputs else outputs["rgb"]  # Mip-NeRF/NeRF: fine + coarse
            bad = int((~torch.isfinite(rgb)).sum())
            if bad:
                raise NonFiniteRenderError(
                    f"{filenames[i]}: the rendering of this view has {bad} of {rgb.numel()} non-finite values "
                    "(NaN/inf); refusing to score it"
                )
            gt = composite(dataset[i]["image"].double().numpy())  # RGBA left by the dataset goes on white
            yield Path(filenames[i]).stem, rgb.clamp(0, 1).double().cpu().numpy(), gt

    return len(dataset), items()
