"""The field core: norms, normalized MLPs, encodings, baselines, recalibration (torch only, no nerfstudio)."""

from norm_nerf.core.baselines import MFN, Siren, Wire
from norm_nerf.core.encodings import FourierEncoding, GaussianFourierEncoding, IntegratedFourierEncoding
from norm_nerf.core.grids import pixel_grid, voxel_grid
from norm_nerf.core.hashgrid import HashGridConfig, HashGridEncoding, tcnn_available
from norm_nerf.core.mlp import NormMLP, build_activation
from norm_nerf.core.network import (
    PAPER_METHODS,
    CoordinateNetwork,
    NetworkConfig,
    build_network,
    count_parameters,
    default_lr,
    parse_method,
)
from norm_nerf.core.norms import (
    NORM_KINDS,
    BatchNorm,
    CrossNorm,
    GlobalNorm,
    LayerNorm,
    NormKind,
    RMSNorm,
    RunningStatsNorm,
    build_norm,
    frozen_statistics,
    running_stat_norms,
    set_stat_slot,
    stat_slot,
)
from norm_nerf.core.recalibrate import recalibrate

__all__ = [
    "MFN",
    "NORM_KINDS",
    "PAPER_METHODS",
    "BatchNorm",
    "CoordinateNetwork",
    "CrossNorm",
    "FourierEncoding",
    "GaussianFourierEncoding",
    "GlobalNorm",
    "HashGridConfig",
    "HashGridEncoding",
    "IntegratedFourierEncoding",
    "LayerNorm",
    "NetworkConfig",
    "NormKind",
    "NormMLP",
    "RMSNorm",
    "RunningStatsNorm",
    "Siren",
    "Wire",
    "build_activation",
    "build_network",
    "build_norm",
    "count_parameters",
    "default_lr",
    "parse_method",
    "pixel_grid",
    "recalibrate",
    "running_stat_norms",
    "frozen_statistics",
    "set_stat_slot",
    "stat_slot",
    "voxel_grid",
    "tcnn_available",
]
