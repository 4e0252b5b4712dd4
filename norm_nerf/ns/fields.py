"""The norm options of the norm-* models (:class:`NormOptions`), and the NeRF / Mip-NeRF field whose MLPs are
normalized ``NormMLP`` trunks from the shared core."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Literal

from nerfstudio.field_components.encodings import Encoding
from nerfstudio.field_components.field_heads import DensityFieldHead, RGBFieldHead
from nerfstudio.fields.base_field import Field
from nerfstudio.fields.vanilla_nerf_field import NeRFField
from torch import nn

from norm_nerf.core.mlp import NormMLP
from norm_nerf.core.norms import NormImpl, NormKind, check_norm_kind

NormLayers = Literal["both", "base", "head"]


@dataclass
class NormOptions:
    """The normalization of a norm-* model's field networks: the one norm-options type of the nerfstudio models.

    Every norm-* model config inherits it (flags ``--pipeline.model.norm``, ``--pipeline.model.norm-layers``, ...),
    and the fields take it; kinds and implementations are core's :data:`~norm_nerf.core.norms.NormKind` and
    :data:`~norm_nerf.core.norms.NormImpl`.
    """

    norm: NormKind = "cn"
    """Normalization after every hidden Linear of the field networks: none (the base method), bn, ln, gn, cn (the
    papers' choice) or rms."""
    norm_layers: NormLayers = "both"
    """Which field networks are normalized: both, base (density trunk / SDF network) or head (colour network)."""
    norm_momentum: float | None = 0.1
    """Momentum of the running statistics of bn/gn/cn (None = cumulative average)."""
    norm_impl: NormImpl = "auto"
    """Norm implementation: auto (Triton kernels on CUDA, C++ kernels on the CPU, else fast), fast (eager), reference,
    compiled (C++ kernels, built once) or triton (Triton kernels)."""

    def norm_options(self) -> NormOptions:
        """These options alone (of a model config that inherits them), for a field."""
        return NormOptions(**{f.name: getattr(self, f.name) for f in fields(NormOptions)})

    def mlp_norm(self, part: Literal["base", "head"], num_slots: int = 1) -> dict:
        """``norm`` and ``norm_opts`` of :class:`~norm_nerf.core.mlp.NormMLP` for the ``base`` or ``head`` network
        (``num_slots`` independent running-statistics sets: Mip-NeRF uses 2, coarse and fine samples)."""
        kind = check_norm_kind(self.norm) if self.norm_layers in ("both", part) else "none"
        opts = {"momentum": self.norm_momentum, "num_slots": num_slots, "impl": self.norm_impl}
        return {"norm": kind, "norm_opts": opts if kind != "none" else None}


class _NsMLP(NormMLP):
    """``NormMLP`` with the ``get_out_dim`` method nerfstudio's fields call."""

    def get_out_dim(self) -> int:
        return self.feature_dim


class NormNeRFField(NeRFField):
    """nerfstudio's ``NeRFField`` (its forward passes) with normalized trunks as its base and head MLPs (only these are
    built).

    The architecture (widths, depths, skip connections, ReLU outputs of both trunks, density and RGB
    heads) is the base field's; with ``norm="none"`` it is the same function family with the same
    number of parameters.
    """

    def __init__(
        self,
        position_encoding: Encoding,
        direction_encoding: Encoding,
        norm: NormOptions,
        base_mlp_num_layers: int = 8,
        base_mlp_layer_width: int = 256,
        head_mlp_num_layers: int = 2,
        head_mlp_layer_width: int = 128,
        skip_connections: tuple[int, ...] = (4,),
        use_integrated_encoding: bool = False,
        num_slots: int = 1,
    ) -> None:
        Field.__init__(self)  # NeRFField's own __init__ would build MLPs that ours replace
        self.position_encoding = position_encoding
        self.direction_encoding = direction_encoding
        self.use_integrated_encoding = use_integrated_encoding
        self.spatial_distortion = None
        self.norm_config = norm
        self.mlp_base = _NsMLP(
            position_encoding.get_out_dim(),
            None,
            base_mlp_num_layers,
            base_mlp_layer_width,
            skips=tuple(s for s in skip_connections if 0 < s < base_mlp_num_layers),
            **norm.mlp_norm("base", num_slots),
        )
        self.field_output_density = DensityFieldHead(in_dim=self.mlp_base.get_out_dim())
        self.mlp_head = _NsMLP(
            base_mlp_layer_width + direction_encoding.get_out_dim(),
            None,
            head_mlp_num_layers,
            head_mlp_layer_width,
            **norm.mlp_norm("head", num_slots),
        )
        self.field_heads = nn.ModuleList([RGBFieldHead(in_dim=self.mlp_head.get_out_dim())])
