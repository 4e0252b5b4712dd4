"""norm-neus: nerfstudio's NeuS (SDF volume rendering, eikonal loss, up-sampling) on our normalized SDF field."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackAttributes
from nerfstudio.models.neus import NeuSModel, NeuSModelConfig

from norm_nerf.ns.fields import FieldNormConfig
from norm_nerf.ns.lpips import no_lpips_download
from norm_nerf.ns.sdf_field import NormSDFFieldConfig
from norm_nerf.ns.statistics import recalibration_callback


@dataclass
class NormNeuSModelConfig(NeuSModelConfig):
    """NeuS with normalized SDF and colour networks (plain torch: runs on CPU)."""

    _target: type = field(default_factory=lambda: NormNeuSModel)
    norm: Literal["none", "bn", "ln", "gn", "cn", "rms"] = "cn"
    """Normalization after every hidden Linear of the SDF and colour networks; none = the base NeuS."""
    norm_layers: Literal["both", "base", "head"] = "both"
    """Which networks are normalized: both, base (SDF network) or head (colour network)."""
    norm_momentum: float = 0.1
    """Momentum of the running statistics of bn/gn/cn."""
    recalibration_batches: int = 4
    """Training ray batches used to recalibrate running statistics before each evaluation/checkpoint (0 = off)."""
    cos_anneal_end: int = 50000
    """Steps over which NeuS's cosine annealing ratio goes from 0 to 1 (0 = no annealing)."""
    sdf_field: NormSDFFieldConfig = field(default_factory=NormSDFFieldConfig)
    """The SDF field (architecture and geometric initialisation)."""

    def field_norm(self) -> FieldNormConfig:
        """The model's norm options as the field's :class:`FieldNormConfig`."""
        return FieldNormConfig(self.norm, self.norm_layers, self.norm_momentum, num_slots=1)


class NormNeuSModel(NeuSModel):
    """NeuS whose field is a :class:`~norm_nerf.ns.sdf_field.NormSDFField`.

    Running statistics describe the field's rendering pass (the samples it is trained on); the up-sampler's
    SDF queries never update them, and in eval mode every query (sampler, rendering, mesh export) uses
    them, so the model has one eval-mode SDF. Normals need autograd in eval mode too: the field enables
    gradients for them itself.
    """

    config: NormNeuSModelConfig

    def populate_modules(self) -> None:
        self.config.sdf_field = dataclasses.replace(self.config.sdf_field, norm=self.config.field_norm())
        with no_lpips_download():
            super().populate_modules()
        self.anneal_end = self.config.cos_anneal_end

    def get_training_callbacks(
        self, training_callback_attributes: TrainingCallbackAttributes
    ) -> list[TrainingCallback]:
        callbacks = super().get_training_callbacks(training_callback_attributes)  # cosine annealing
        recalibration = recalibration_callback(self, training_callback_attributes, self.config.recalibration_batches)
        return callbacks + recalibration
