"""norm-mipnerf and norm-nerf: nerfstudio's Mip-NeRF and vanilla NeRF with normalized field MLPs."""

from __future__ import annotations

from dataclasses import dataclass, field

from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackAttributes
from nerfstudio.field_components.encodings import NeRFEncoding
from nerfstudio.models.mipnerf import MipNerfModel
from nerfstudio.models.vanilla_nerf import NeRFModel, VanillaModelConfig

from norm_nerf.core.norms import set_stat_slot
from norm_nerf.ns.fields import NormModelOptions, NormNeRFField
from norm_nerf.ns.lpips import no_lpips_download
from norm_nerf.ns.statistics import SlotAfterCall, recalibration_callback


@dataclass
class NormNeRFModelConfig(NormModelOptions, VanillaModelConfig):
    """Vanilla NeRF (coarse + fine fields) with normalized MLPs."""

    _target: type = field(default_factory=lambda: NormNeRFModel)
    base_mlp_num_layers: int = 8
    """Hidden layers of the density trunk."""
    base_mlp_layer_width: int = 256
    """Width of the density trunk."""
    head_mlp_num_layers: int = 2
    """Hidden layers of the colour MLP."""
    head_mlp_layer_width: int = 128
    """Width of the colour MLP."""
    skip_connections: tuple[int, ...] = (4,)
    """Trunk layers that also receive the encoded position."""
    position_frequencies: int = 10
    """Octaves of the position encoding (Mip-NeRF uses 16 with its integrated encoding)."""


@dataclass
class NormMipNerfModelConfig(NormNeRFModelConfig):
    """Mip-NeRF (one field, integrated PE, coarse + fine passes) with normalized MLPs."""

    _target: type = field(default_factory=lambda: NormMipNerfModel)
    position_frequencies: int = 16
    """Octaves of the integrated position encoding."""


def _field(config: NormNeRFModelConfig, integrated: bool, num_slots: int) -> NormNeRFField:
    max_exp = float(config.position_frequencies) if integrated else 8.0
    position = NeRFEncoding(3, config.position_frequencies, 0.0, max_exp, include_input=True)
    direction = NeRFEncoding(3, 4, 0.0, 4.0, include_input=True)
    return NormNeRFField(
        position,
        direction,
        config.field_norm(num_slots),
        base_mlp_num_layers=config.base_mlp_num_layers,
        base_mlp_layer_width=config.base_mlp_layer_width,
        head_mlp_num_layers=config.head_mlp_num_layers,
        head_mlp_layer_width=config.head_mlp_layer_width,
        skip_connections=config.skip_connections,
        use_integrated_encoding=integrated,
    )


def with_fine_aliases(outputs: dict) -> dict:
    """Also expose the fine pass as ``rgb``/``depth``/``accumulation``: the names ns-render and the viewer default to
    (nerfstudio's NeRF and Mip-NeRF only output ``*_coarse`` and ``*_fine``)."""
    for name in ("rgb", "depth", "accumulation"):
        if f"{name}_fine" in outputs:
            outputs.setdefault(name, outputs[f"{name}_fine"])
    return outputs


class NormNeRFModel(NeRFModel):
    """Vanilla NeRF whose coarse and fine fields are :class:`NormNeRFField` (separate fields: one slot each)."""

    config: NormNeRFModelConfig

    def populate_modules(self) -> None:
        with no_lpips_download():
            super().populate_modules()
        self.field_coarse = _field(self.config, integrated=False, num_slots=1)
        self.field_fine = _field(self.config, integrated=False, num_slots=1)

    def get_outputs(self, ray_bundle):
        return with_fine_aliases(super().get_outputs(ray_bundle))

    def get_training_callbacks(
        self, training_callback_attributes: TrainingCallbackAttributes
    ) -> list[TrainingCallback]:
        return recalibration_callback(self, training_callback_attributes, self.config.recalibration_batches)


class NormMipNerfModel(MipNerfModel):
    """Mip-NeRF whose single field is a :class:`NormNeRFField` with two statistics slots (coarse, fine)."""

    config: NormMipNerfModelConfig

    def populate_modules(self) -> None:
        with no_lpips_download():
            super().populate_modules()
        self.field = _field(self.config, integrated=True, num_slots=2)
        self.sampler_pdf = SlotAfterCall(self.sampler_pdf, self.field, slot=1)

    def get_outputs(self, ray_bundle):
        set_stat_slot(self.field, 0)  # coarse pass; the PDF sampler switches to slot 1 for the fine pass
        try:
            return with_fine_aliases(super().get_outputs(ray_bundle))
        finally:
            set_stat_slot(self.field, 0)

    def get_training_callbacks(
        self, training_callback_attributes: TrainingCallbackAttributes
    ) -> list[TrainingCallback]:
        return recalibration_callback(self, training_callback_attributes, self.config.recalibration_batches)
