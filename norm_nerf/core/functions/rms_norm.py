"""RMS norm ``x * rsqrt(mean_j x_ij^2 + eps) * weight + bias``: the reference expression and the train-mode back
ends, one place for the formula.

* :func:`rms_normalize`: the reference expression (no affine);
* :class:`RMSNormFunction`: the eager fast path (every device);
* :class:`KernelRMSNormFunction`: the same over fused kernels, the C++ ones on float32 CPU tensors
  (``csrc/norms.cpp``: one pass over each row forward, one backward) or the Triton ones on float32 CUDA tensors
  (:mod:`norm_nerf.core.triton.rms_norm`), which take the same arguments;
* :func:`train_rms_norm`: the table from back end to Function; the layer calls it.
"""

from __future__ import annotations

import functools

import torch
from jaxtyping import Float
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


class KernelRMSNormFunction(torch.autograd.Function):
    """Train-mode RMS norm through fused kernels (one read of ``x`` forward, one of ``x`` and ``g`` backward);
    ``kernels``: the C++ kernel module (default: ``cpu_kernels()``) or the Triton kernels, which share its signatures.
    A double backward differentiates the analytic expressions (:func:`norm_nerf.core.norm_grads.rms_norm_grads`)."""

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


def rms_normalize(x: Float[Tensor, "n c"], eps: float) -> Float[Tensor, "n c"]:
    """The reference expression: ``x * rsqrt(mean_j x_ij^2 + eps)``."""
    return x * torch.rsqrt((x * x).mean(dim=1, keepdim=True) + eps)


def train_rms_norm(
    x: Float[Tensor, "n c"], weight: Tensor | None, bias: Tensor | None, eps: float, kernels: object | None
) -> Float[Tensor, "n c"]:
    """Train-mode RMS norm of ``x`` through the back end ``kernels`` (from
    :func:`norm_nerf.core.functions.backend.select_kernels`): None for the eager Function, else the C++ or Triton
    kernels."""
    if kernels is None:
        return RMSNormFunction.apply(x, weight, bias, eps)
    return KernelRMSNormFunction.apply(x, weight, bias, eps, kernels)
