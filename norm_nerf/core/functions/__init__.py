"""The norms' train-mode autograd Functions: eager fast paths and their C++ and Triton twins (see each module)."""

from norm_nerf.core.functions.cross_norm import (
    CompiledCrossNormFunction,
    CompiledCrossNormGradFunction,
    CrossNormFunction,
    TritonCrossNormFunction,
    TritonCrossNormGradFunction,
)
from norm_nerf.core.functions.rms_norm import CompiledRMSNormFunction, RMSNormFunction, TritonRMSNormFunction
from norm_nerf.core.functions.scale_shift import ScaleShiftNormFunction, TritonScaleShiftNormFunction

__all__ = [
    "CompiledCrossNormFunction",
    "CompiledCrossNormGradFunction",
    "CompiledRMSNormFunction",
    "CrossNormFunction",
    "RMSNormFunction",
    "ScaleShiftNormFunction",
    "TritonCrossNormFunction",
    "TritonCrossNormGradFunction",
    "TritonRMSNormFunction",
    "TritonScaleShiftNormFunction",
]
