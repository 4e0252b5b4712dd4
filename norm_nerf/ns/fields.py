"""NeRF / Mip-NeRF field whose MLPs are normalized ``NormMLP`` trunks from the shared core."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from nerfstudio.field_components.encodings import Encoding
from nerfstudio.fields.vanilla_nerf_field import NeRFField

from norm_nerf.core.mlp import NormMLP
from norm_nerf.core.norms import NormImpl, check_norm_kind

NormLayers = Literal["both", "base", "head"]


@dataclass
class FieldNormConfig:
    """Which normalization the field MLPs use and where."""

    norm: str = "cn"
    """Normalization after every hidden Linear: none, bn, ln, gn, cn (the papers' choice) or rms."""
    norm_layers: NormLayers = "both"
    """Which MLPs are normalized: both, base (density trunk) or head (colour MLP)."""
    momentum: float | None = 0.1
    """Momentum of the running statistics of bn/gn/cn (None = cumulative average)."""
    num_slots: int = 1
    """Independent running-statistics sets (Mip-NeRF uses 2: coarse and fine samples)."""
    impl: NormImpl = "auto"
    """Train-mode implementation of the norms (norm_nerf.core.norms: auto, fast, reference, compiled)."""

    def norm_for(self, part: Literal["base", "head"]) -> str:
        """The norm used by the ``base`` or ``head`` MLP."""
        kind = check_norm_kind(self.norm)
        return kind if self.norm_layers in ("both", part) else "none"

    def norm_opts(self) -> dict:
        return {"momentum": self.momentum, "num_slots": self.num_slots, "impl": self.impl}


@dataclass
class NormModelOptions:
    """The norm options every norm-* model config has (a base listed first, so its fields win)."""

    norm: Literal["none", "bn", "ln", "gn", "cn", "rms"] = "cn"
    """Normalization after every hidden Linear of the field networks; none = the base method."""
    norm_layers: NormLayers = "both"
    """Which field networks are normalized: both, base (density trunk / SDF network) or head (colour network)."""
    norm_momentum: float = 0.1
    """Momentum of the running statistics of bn/gn/cn."""
    norm_impl: NormImpl = "auto"
    """Norm implementation: auto (C++ kernels on CPU, built once; else fast), fast, reference or compiled."""
    recalibration_batches: int = 4
    """Training ray batches used to recalibrate running statistics before each evaluation/checkpoint (0 = off)."""

    def field_norm(self, num_slots: int = 1) -> FieldNormConfig:
        """The model's norm options as the field's :class:`FieldNormConfig`."""
        return FieldNormConfig(self.norm, self.norm_layers, self.norm_momentum, num_slots, self.norm_impl)


class _NsMLP(NormMLP):
    """``NormMLP`` with the ``get_out_dim`` method nerfstudio's fields call."""

    def get_out_dim(self) -> int:
        return self.feature_dim


class NormNeRFField(NeRFField):
    """nerfstudio's ``NeRFField`` with its base and head MLPs replaced by normalized trunks.

    The architecture (widths, depths, skip connections, ReLU outputs of both trunks, density and RGB
    heads) is the base field's; with ``norm="none"`` it is the same function family with the same
    number of parameters.
    """

    def __init__(
        self,
        position_encoding: Encoding,
        direction_encoding: Encoding,
        norm: FieldNormConfig,
        base_mlp_num_layers: int = 8,
        base_mlp_layer_width: int = 256,
        head_mlp_num_layers: int = 2,
        head_mlp_layer_width: int = 128,
        skip_connections: tuple[int, ...] = (4,),
        use_integrated_encoding: bool = False,
    ) -> None:
        super().__init__(
            position_encoding=position_encoding,
            direction_encoding=direction_encoding,
            base_mlp_num_layers=base_mlp_num_layers,
            base_mlp_layer_width=base_mlp_layer_width,
            head_mlp_num_layers=head_mlp_num_layers,
            head_mlp_layer_width=head_mlp_layer_width,
            skip_connections=skip_connections,
            use_integrated_encoding=use_integrated_encoding,
        )
        self.norm_config = norm
        self.mlp_base = _NsMLP(
            position_encoding.get_out_dim(),
            None,
            base_mlp_num_layers,
            base_mlp_layer_width,
            norm=norm.norm_for("base"),
            skips=tuple(s for s in skip_connections if 0 < s < base_mlp_num_layers),
            norm_opts=norm.norm_opts() if norm.norm_for("base") != "none" else None,
        )
        self.mlp_head = _NsMLP(
            base_mlp_layer_width + direction_encoding.get_out_dim(),
            None,
            head_mlp_num_layers,
            head_mlp_layer_width,
            norm=norm.norm_for("head"),
            norm_opts=norm.norm_opts() if norm.norm_for("head") != "none" else None,
        )
