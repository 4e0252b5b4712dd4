"""What every norm-* model adds to its nerfstudio base model: norm options, recalibration, lazy LPIPS, fine aliases.

:class:`NormModelConfig` is listed first among a model config's bases (its fields win) and :class:`NormModel` first
among the model's bases, so nerfstudio's model runs inside these hooks:

* ``populate_modules`` builds the base model's LPIPS as :class:`~norm_nerf.eval.lpips.LazyLPIPS` (no download);
* ``get_training_callbacks`` adds the recalibration of running statistics before every evaluation and checkpoint
  (:func:`norm_nerf.ns.callbacks.recalibration_callback`) to the base model's callbacks;
* ``get_outputs`` also exposes a fine pass (NeRF, Mip-NeRF: ``*_fine``) under the plain names, first (the viewer
  opens on the first output);
* ``get_image_metrics_and_images`` reports ``psnr``, ``ssim`` and ``lpips`` under these plain names (NeRF, Mip-NeRF:
  of the fine pass), first, so ``ns-eval`` writes the same three keys for every norm-* method.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackAttributes

from norm_nerf.ns.callbacks import recalibration_callback
from norm_nerf.ns.fields import NormOptions
from norm_nerf.ns.lpips import no_lpips_download


@dataclass
class NormModelConfig(NormOptions):
    """The options every norm-* model config has: the field networks' norm and the recalibration."""

    recalibration_batches: int = 4
    """Training ray batches used to recalibrate running statistics before each evaluation/checkpoint (0 = off)."""


PLAIN_OUTPUTS = ("rgb", "accumulation", "depth")
"""The outputs every norm-* model has under these names, in this order (nerfstudio's surface models' order)."""
PLAIN_METRICS = ("psnr", "ssim", "lpips")
"""The image metrics every norm-* model reports under these names, first."""


def with_fine_aliases(outputs: dict) -> dict:
    """The outputs with the fine pass also as ``rgb``/``accumulation``/``depth``, and these first.

    nerfstudio's NeRF and Mip-NeRF only output ``*_coarse`` and ``*_fine`` (``rgb_coarse`` first); ns-render,
    ns-export and the viewer default to the plain names, and the viewer opens on the first output of the dict.
    """
    return _plain_first(outputs, PLAIN_OUTPUTS, "{}_fine")


def with_plain_metrics(metrics: dict) -> dict:
    """The image metrics with ``psnr``/``ssim``/``lpips`` first, taken from ``fine_*`` where only those exist
    (nerfstudio's NeRF and Mip-NeRF report ``fine_ssim``/``fine_lpips`` but no ``ssim``/``lpips``)."""
    return _plain_first(metrics, PLAIN_METRICS, "fine_{}")


def _plain_first(values: dict, names: tuple[str, ...], fine: str) -> dict:
    """``values`` with ``names`` first, each taken from the ``fine.format(name)`` entry where it is missing."""
    plain = {name: values.get(name, values.get(fine.format(name))) for name in names}
    plain = {name: value for name, value in plain.items() if value is not None}
    return {**plain, **{name: value for name, value in values.items() if name not in plain}}


class NormModel:
    """Mixin of the norm-* models, listed before their nerfstudio base model (see the module docstring)."""

    config: NormModelConfig

    def populate_modules(self) -> None:
        with no_lpips_download():
            super().populate_modules()  # type: ignore[misc]

    def get_training_callbacks(
        self, training_callback_attributes: TrainingCallbackAttributes
    ) -> list[TrainingCallback]:
        callbacks = super().get_training_callbacks(training_callback_attributes)  # type: ignore[misc]
        recalibration = recalibration_callback(self, training_callback_attributes, self.config.recalibration_batches)
        return callbacks + recalibration

    def get_outputs(self, ray_bundle: Any) -> dict:
        return with_fine_aliases(super().get_outputs(ray_bundle))  # type: ignore[misc]

    def get_image_metrics_and_images(self, outputs: dict, batch: dict) -> tuple[dict, dict]:
        metrics, images = super().get_image_metrics_and_images(outputs, batch)  # type: ignore[misc]
        return with_plain_metrics(metrics), images
