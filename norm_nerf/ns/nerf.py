"""norm-mipnerf and norm-nerf: nerfstudio's Mip-NeRF and vanilla NeRF with normalized field MLPs.

One module for both: Mip-NeRF's config extends NeRF's, and both build their fields alike (:func:`_field`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nerfstudio.field_components.encodings import NeRFEncoding
from nerfstudio.models.mipnerf import MipNerfModel
from nerfstudio.models.vanilla_nerf import NeRFModel, VanillaModelConfig
from torch import nn

from norm_nerf.core.norms import set_stat_slot
from norm_nerf.ns.base_model import NormModel, NormModelConfig
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


class SlotAfterCall(nn.Module):
    """Wraps a sampler: after it runs, the given field switches to another statistics slot.

    Mip-NeRF queries one field with uniform (coarse) samples and then with PDF (fine) samples; their
    feature statistics differ, so each pass keeps its own running statistics.
    """

    def __init__(self, sampler: nn.Module, field: nn.Module, slot: int) -> None:
        super().__init__()
        self.sampler = sampler
        self._field = [field]  # not a submodule: the field is registered by the model already
        self.slot = slot

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        out = self.sampler(*args, **kwargs)
        set_stat_slot(self._field[0], self.slot)
        return out


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
        self.sampler_pdf = SlotAfterCall(self.sampler_pdf, self.field, slot=1)

    def get_outputs(self, ray_bundle):
        set_stat_slot(self.field, 0)  # coarse pass; the PDF sampler switches to slot 1 for the fine pass
        try:
            return super().get_outputs(ray_bundle)
        finally:
            set_stat_slot(self.field, 0)
