"""norm-mipnerf and norm-nerf: nerfstudio's Mip-NeRF and vanilla NeRF with normalized field MLPs.

One module for both: Mip-NeRF's config extends NeRF's, and both build their fields alike (:func:`_field`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nerfstudio.cameras.rays import RayBundle, RaySamples
from nerfstudio.field_components.encodings import NeRFEncoding
from nerfstudio.field_components.field_heads import FieldHeadNames
from nerfstudio.model_components.losses import scale_gradients_by_distance_squared
from nerfstudio.models.mipnerf import MipNerfModel
from nerfstudio.models.vanilla_nerf import NeRFModel, VanillaModelConfig
from torch import Tensor

from norm_nerf.core.norms import stat_slot
from norm_nerf.ns.base_model import NormModel, NormModelConfig, with_fine_aliases
from norm_nerf.ns.fields import NormNeRFField


@dataclass
class NormNeRFModelConfig(NormModelConfig, VanillaModelConfig):
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
        config.norm_options(),
        base_mlp_num_layers=config.base_mlp_num_layers,
        base_mlp_layer_width=config.base_mlp_layer_width,
        head_mlp_num_layers=config.head_mlp_num_layers,
        head_mlp_layer_width=config.head_mlp_layer_width,
        skip_connections=config.skip_connections,
        use_integrated_encoding=integrated,
        num_slots=num_slots,
    )


class NormNeRFModel(NormModel, NeRFModel):
    """Vanilla NeRF whose coarse and fine fields are :class:`NormNeRFField` (separate fields: one slot each)."""

    config: NormNeRFModelConfig

    def populate_modules(self) -> None:
        super().populate_modules()
        self.field_coarse = _field(self.config, integrated=False, num_slots=1)
        self.field_fine = _field(self.config, integrated=False, num_slots=1)


class NormMipNerfModel(NormModel, MipNerfModel):
    """Mip-NeRF whose single field is a :class:`NormNeRFField` with two statistics slots (coarse, fine)."""

    config: NormMipNerfModelConfig

    def populate_modules(self) -> None:
        super().populate_modules()
        self.field = _field(self.config, integrated=True, num_slots=2)

    def get_outputs(self, ray_bundle: RayBundle) -> dict[str, Tensor]:
        """nerfstudio's Mip-NeRF passes, each with its own running statistics: the coarse pass (uniform samples) in
        slot 0, the fine pass (PDF samples) in slot 1; the fine pass also under the plain output names."""
        uniform = self.sampler_uniform(ray_bundle)
        coarse = self._render_pass(uniform, slot=0)
        fine = self._render_pass(self.sampler_pdf(ray_bundle, uniform, coarse["weights"]), slot=1)
        outputs = {f"{name}_{which}": out[name] for name in ("rgb", "accumulation", "depth")
                   for which, out in (("coarse", coarse), ("fine", fine))}  # fmt: skip
        return with_fine_aliases(outputs)

    def _render_pass(self, samples: RaySamples, slot: int) -> dict[str, Tensor]:
        """One pass of the field over ``samples`` with statistics slot ``slot``: weights, rgb, accumulation, depth."""
        with stat_slot(self.field, slot):
            field_outputs = self.field.forward(samples)
        if self.config.use_gradient_scaling:
            field_outputs = scale_gradients_by_distance_squared(field_outputs, samples)
        weights = samples.get_weights(field_outputs[FieldHeadNames.DENSITY])
        return {
            "weights": weights,
            "rgb": self.renderer_rgb(rgb=field_outputs[FieldHeadNames.RGB], weights=weights),
            "accumulation": self.renderer_accumulation(weights),
            "depth": self.renderer_depth(weights, samples),
        }
