"""What every norm-* model adds to its nerfstudio base model: norm options, recalibration, lazy LPIPS, fine aliases.

:class:`NormModelConfig` is listed first among a model config's bases (its fields win) and :class:`NormModel` first
among the model's bases, so nerfstudio's model runs inside these hooks:

* ``populate_modules`` builds the base model's LPIPS as :class:`~norm_nerf.eval.lpips.LazyLPIPS` (no download);
* ``get_training_callbacks`` adds the recalibration of running statistics before every evaluation and checkpoint
  (:func:`norm_nerf.ns.callbacks.recalibration_callback`) to the base model's callbacks;
* ``get_outputs`` also exposes a fine pass (NeRF, Mip-NeRF: ``*_fine``) under the plain names.
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


def with_fine_aliases(outputs: dict) -> dict:
    """Also expose the fine pass as ``rgb``/``depth``/``accumulation``: the names ns-render and the viewer default to
    (nerfstudio's NeRF and Mip-NeRF only output ``*_coarse`` and ``*_fine``)."""
    for name in ("rgb", "depth", "accumulation"):
        if f"{name}_fine" in outputs:
            outputs.setdefault(name, outputs[f"{name}_fine"])
    return outputs


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
