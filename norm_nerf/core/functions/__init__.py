"""The norms' operations, one module each (reference expression, eager and kernel autograd Functions, the table from
back end to Function), and :mod:`.backend`, the one place that picks the back end."""

from norm_nerf.core.functions.backend import backend_of, select_kernels
from norm_nerf.core.functions.cross_norm import (
    CrossNormFunction,
    KernelCrossNormFunction,
    KernelCrossNormGradFunction,
    cross_normalize,
    train_cross_norm,
)
from norm_nerf.core.functions.rms_norm import KernelRMSNormFunction, RMSNormFunction, rms_normalize, train_rms_norm
from norm_nerf.core.functions.scale_shift import (
    KernelScaleShiftNormFunction,
    ScaleShiftNormFunction,
    train_scale_shift,
)

__all__ = [
    "backend_of",
    "CrossNormFunction",
    "KernelCrossNormFunction",
    "KernelCrossNormGradFunction",
    "KernelRMSNormFunction",
    "KernelScaleShiftNormFunction",
    "RMSNormFunction",
    "ScaleShiftNormFunction",
    "cross_normalize",
    "rms_normalize",
    "select_kernels",
    "train_cross_norm",
    "train_rms_norm",
    "train_scale_shift",
]
