"""RMS norm ``x * rsqrt(mean_j x_ij^2 + eps) * weight + bias`` as autograd Functions: the eager fast path
(:class:`RMSNormFunction`, every device), its C++ twin on float32 CPU tensors (:class:`CompiledRMSNormFunction`,
``csrc/norms.cpp``: one pass over each row forward, one backward) and the same over the Triton kernels on float32
CUDA tensors (:class:`TritonRMSNormFunction`, :mod:`norm_nerf.core.triton.rms_norm`). The reference expression lives
in :class:`norm_nerf.core.norms.RMSNorm`.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor
from torch.autograd.function import FunctionCtx

from norm_nerf.core.cpu_kernels import cpu_kernels
from norm_nerf.core.functions.autograd import (
    affine_or_identity,
    analytic_double_backward,
    kernel_args,
    remember_grads,
)
from norm_nerf.core.moments import colsum, rowsum
from norm_nerf.core.norm_grads import rms_norm_grads


class RMSNormFunction(torch.autograd.Function):
    """``y = x * rsqrt(mean_j x_ij^2 + eps) * weight + bias``; ``dx = q (h - x q^2 sum_j(h x) / C)``, ``h = g w``."""

    @staticmethod
    def forward(
        ctx: FunctionCtx,
        x: Tensor,
        weight: Tensor | None,
        bias: Tensor | None,
        eps: float,
    ) -> Tensor:
        c = x.shape[1]
        y = torch.mul(x, x)
        q = torch.rsqrt(rowsum(y) / c + eps)
        torch.mul(x, q.unsqueeze(1), out=y)
        ctx.save_for_backward(x, weight, q)
        remember_grads(ctx, weight, bias, num_inputs=4, grads=functools.partial(rms_norm_grads, eps=eps))
        return affine_or_identity(y, weight, bias)

    @staticmethod
    @analytic_double_backward
    def backward(ctx: FunctionCtx, grad: Tensor) -> tuple[Tensor, Tensor | None, Tensor | None, None]:
        x, weight, q = ctx.saved_tensors
        c = x.shape[1]
        grad = grad.contiguous()
        gamma = weight if weight is not None else x.new_ones(c)
        dx = grad * x
        hx = rowsum(dx, gamma)  # sum_j h x per row
        grad_weight = colsum(dx, q) if weight is not None else None
        # dx = q * (g gamma - x * q^2 hx / C)
        torch.mul(x, (-(q * q) * hx / c).unsqueeze(1), out=dx)
        dx.addcmul_(grad, gamma).mul_(q.unsqueeze(1))
        grad_bias = colsum(grad) if weight is not None else None
        return dx, grad_weight, grad_bias, None


class CompiledRMSNormFunction(torch.autograd.Function):
    """Train-mode RMS norm through the C++ kernel (one read of ``x`` forward, one of ``x`` and ``g`` backward);
    ``kernels``: the kernel module (default: ``cpu_kernels()``). A double backward differentiates the analytic
    expressions (:func:`norm_nerf.core.norm_grads.rms_norm_grads`)."""

    @staticmethod
    def forward(
        ctx: FunctionCtx,
        x: Tensor,
        weight: Tensor | None,
        bias: Tensor | None,
        eps: float,
        kernels: object | None = None,
    ) -> Tensor:
        kernels = cpu_kernels() if kernels is None else kernels
        x, w, b = kernel_args(x, weight, bias)
        y, inv = kernels.rms_norm_forward(x, w, b, eps)
        ctx.save_for_backward(x, w, inv)
        ctx.affine, ctx.kernels = weight is not None, kernels
        grads = functools.partial(rms_norm_grads, eps=eps)
        remember_grads(ctx, weight, bias, num_inputs=5, grads=grads)
        return y

    @staticmethod
    @analytic_double_backward
    def backward(ctx: FunctionCtx, grad: Tensor) -> tuple[Tensor, Tensor | None, Tensor | None, None, None]:
        x, w, inv = ctx.saved_tensors
        dx, dw, db = ctx.kernels.rms_norm_backward(grad.contiguous(), x, w, inv)
        return dx, (dw if ctx.affine else None), (db if ctx.affine else None), None, None


class TritonRMSNormFunction(CompiledRMSNormFunction):
    """:class:`CompiledRMSNormFunction` over the Triton kernels (``kernels``: a
    :class:`norm_nerf.core.triton.TritonNorms`)."""
