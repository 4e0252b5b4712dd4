"""Render every eval image of a trained nerfstudio run (eval mode, no gradients) for ``norm_nerf.eval.blender_eval``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import numpy as np


def load_pipeline(config: Path, split: Literal["test", "val"] = "test", rays_per_chunk: int | None = None):
    """``(pipeline, checkpoint path, step)`` of a run's ``config.yml``, in eval mode, on CUDA if present else CPU."""
    config = Path(config)
    if not config.is_file():
        raise FileNotFoundError(f"{config}: run config not found")
    from nerfstudio.utils.eval_utils import eval_setup

    _, pipeline, ckpt, step = eval_setup(config, eval_num_rays_per_chunk=rays_per_chunk, test_mode=split)
    return pipeline, ckpt, step


def eval_images(pipeline) -> tuple[int, Iterator[tuple[str, np.ndarray, np.ndarray]]]:
    """Number of eval images and an iterator of ``(name, rendered RGB, ground-truth RGB)`` in [0, 1]."""
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
            gt = composite(dataset[i]["image"].double().numpy())  # RGBA left by the dataset goes on white
            yield Path(filenames[i]).stem, rgb.clamp(0, 1).double().cpu().numpy(), gt

    return len(dataset), items()
