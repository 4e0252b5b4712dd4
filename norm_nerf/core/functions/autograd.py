"""Shared pieces of the norms' custom autograd Functions (eager and compiled).

* :func:`remember_grads` / :func:`analytic_double_backward`: a fast backward is not itself differentiable (in-place
  ops, C++ kernels); under ``create_graph=True`` the decorated backward evaluates the layer's analytic gradients as
  differentiable expressions (:mod:`norm_nerf.core.norm_grads`) instead, so higher derivatives stay exact;
* :func:`reference_grads`: the same through a reference expression (synchronised statistics);
* :func:`kernel_args`: contiguous input and affine arguments for the C++ kernels;
* :func:`functorch_active`: custom Functions cannot run inside ``torch.func`` transforms; callers use the
  reference expressions there.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from torch import Tensor
from torch.autograd.function import FunctionCtx

from norm_nerf.core.norm_grads import Grads

AnalyticGrads = Callable[[Tensor, Tensor | None, Tensor], Grads]
"""``(x, weight, grad) -> (dx, d_weight, d_bias)`` as differentiable expressions (:mod:`norm_nerf.core.norm_grads`)."""


def functorch_active() -> bool:
    """Inside ``torch.func`` transforms (vmap, vjp, jacrev): custom autograd Functions are not supported there."""
    active = getattr(torch._C, "_are_functorch_transforms_active", None)
    return bool(active()) if active is not None else False


def remember_grads(
    ctx: FunctionCtx, weight: Tensor | None, bias: Tensor | None, num_inputs: int, grads: AnalyticGrads
) -> None:
    """Keep what :func:`analytic_double_backward` needs; the input ``x`` must be the first saved tensor."""
    ctx.params, ctx.num_inputs, ctx.grads = (weight, bias), num_inputs, grads


def analytic_double_backward(backward: Callable) -> Callable:
    """Decorate a fast ``backward`` so that it also works under ``create_graph=True`` (double backward).

    The fast backward passes are not themselves differentiable (they use in-place ops and C++ kernels). A double
    backward instead evaluates the layer's analytic gradients (registered with :func:`remember_grads`) as plain
    tensor expressions (:mod:`norm_nerf.core.norm_grads`) that autograd can differentiate again. The Function's
    first three inputs must be ``x, weight, bias``.
    """

    @functools.wraps(backward)
    def wrapper(ctx: FunctionCtx, grad: Tensor, *rest: Tensor | None) -> tuple[Tensor | None, ...]:
        if not torch.is_grad_enabled():
            return backward(ctx, grad, *rest)
        return differentiable_grads(ctx, grad)

    return wrapper


def differentiable_grads(ctx: FunctionCtx, grad: Tensor) -> tuple[Tensor | None, ...]:
    """The backward's outputs from the gradients registered with :func:`remember_grads`, as differentiable
    expressions (the double-backward branch of :func:`analytic_double_backward`)."""
    x, (weight, bias) = ctx.saved_tensors[0], ctx.params
    needed = [need and t is not None for t, need in zip((x, weight, bias), ctx.needs_input_grad)]
    grads = ctx.grads(x, weight, grad)
    return (*(g if need else None for g, need in zip(grads, needed)), *[None] * (ctx.num_inputs - 3))


def reference_grads(normalize: Callable[[Tensor], Tensor]) -> AnalyticGrads:
    """``(x, weight, grad) -> (dx, d_weight, d_bias)`` by autograd through a reference expression ``normalize``
    (``x -> normalized x``, no affine) with ``create_graph=True``, so differentiable again. The double backward of
    synchronised statistics: their reference expressions all-reduce with a differentiable collective
    (:func:`norm_nerf.core.distributed.column_moments`), which the closed forms of :mod:`norm_nerf.core.norm_grads`
    (local sums) do not."""

    def grads(x: Tensor, weight: Tensor | None, grad: Tensor) -> Grads:
        with torch.enable_grad():
            y = normalize(x)
            out = y if weight is None else y * weight
            inputs = [t for t in (x, weight) if t is not None and t.requires_grad]
            got = iter(torch.autograd.grad(out, inputs, grad, create_graph=True))
        dx = next(got) if x.requires_grad else None
        if weight is None:
            return dx, None, None
        return dx, (next(got) if weight.requires_grad else None), grad.sum(0)

    return grads


def affine_or_identity(y: Tensor, weight: Tensor | None, bias: Tensor | None) -> Tensor:
    """``y * weight + bias`` in place (``y`` is a buffer this module owns)."""
    if weight is not None:
        torch.addcmul(bias, y, weight, out=y)
    return y


def kernel_args(x: Tensor, weight: Tensor | None, bias: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
    """Contiguous input and affine parameters for a kernel (ones and zeros without affine).

    Callers pass a contiguous ``x`` (made so outside the Function): a copy made here would be saved for the double
    backward without its autograd history, and second derivatives through ``x`` would be lost.
    """
    c = x.shape[1]
    w = weight.detach().to(x.dtype).contiguous() if weight is not None else x.new_ones(c)
    b = bias.detach().to(x.dtype).contiguous() if bias is not None else x.new_zeros(c)
    return x.contiguous(), w, b
