"""The norms' train-mode autograd Functions: eager fast paths and their C++ twins (see each module)."""

from norm_nerf.core.functions.cross_norm import (
    CompiledCrossNormFunction,
    CompiledCrossNormGradFunction,
    CrossNormFunction,
)
from norm_nerf.core.functions.rms_norm import CompiledRMSNormFunction, RMSNormFunction
from norm_nerf.core.functions.scale_shift import ScaleShiftNormFunction

__all__ = [
    "CompiledCrossNormFunction",
    "CompiledCrossNormGradFunction",
    "CompiledRMSNormFunction",
    "CrossNormFunction",
    "RMSNormFunction",
    "ScaleShiftNormFunction",
]
