"""Softplus with compiled first and second derivatives, the activation of NeuS's SDF network.

``softplus_beta(x) = log(1 + exp(beta x)) / beta`` with beta = 100 on normalized pre-activations (about unit
scale) puts most entries far out in the tails, and ATen's float32 kernels (``softplus``, ``softplus_backward``
and the sigmoid expression autograd records for a second derivative) spend most of their time there in slow
paths: exponentials that overflow, sigmoids and products that are denormal. On a 2-core CPU the softplus ops of
the NeuS-shaped eikonal step cost 3-4x more in a cross-normalized network than in a plain one (same shapes).

:class:`Softplus` runs forward, backward and double backward as one C++ pass each (``softplus_*`` in
``csrc/softplus.cpp``: inlined exp/log1p polynomials, about 1 ulp; terms below 1e-33 taken as 0)
for float32 CPU tensors, and ATen's ``F.softplus`` everywhere else (float64, CUDA, ``torch.func`` transforms,
``torch.compile``, ``NORM_NERF_COMPILED=0``). A third derivative differentiates ``g * sigmoid(beta x)`` as a
plain expression. Tests compare all three derivatives with ATen in float64.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn
from torch.autograd.function import FunctionCtx

from norm_nerf.core.compat import is_compiling
from norm_nerf.core.cpu_kernels import cpu_kernels, kernel_applies, kernels_wanted
from norm_nerf.core.functions.autograd import functorch_active


class SoftplusFunction(torch.autograd.Function):
    """``softplus(x)`` through the kernel; its backward under ``create_graph`` is :class:`SoftplusGradFunction`."""

    @staticmethod
    def forward(ctx: FunctionCtx, x: Tensor, beta: float) -> Tensor:
        ctx.save_for_backward(x)
        ctx.beta = beta
        return cpu_kernels().softplus_forward(x, beta)

    @staticmethod
    def backward(ctx: FunctionCtx, grad: Tensor) -> tuple[Tensor, None]:
        (x,) = ctx.saved_tensors
        if torch.is_grad_enabled():
            return SoftplusGradFunction.apply(x, grad, ctx.beta), None
        return cpu_kernels().softplus_backward(grad.contiguous(), x, ctx.beta), None


class SoftplusGradFunction(torch.autograd.Function):
    """``(x, g) -> g * sigmoid(beta x)`` (softplus's input gradient) as a differentiable op: for an upstream ``v``,
    ``d/dg = v sigmoid(beta x)`` and ``d/dx = v g beta sigmoid(beta x) (1 - sigmoid(beta x))``."""

    @staticmethod
    def forward(ctx: FunctionCtx, x: Tensor, grad: Tensor, beta: float) -> Tensor:
        ctx.save_for_backward(x, grad)
        ctx.beta = beta
        return cpu_kernels().softplus_backward(grad.contiguous(), x, beta)

    @staticmethod
    def backward(ctx: FunctionCtx, v: Tensor) -> tuple[Tensor, Tensor, None]:
        x, grad = ctx.saved_tensors
        if torch.is_grad_enabled():  # a third derivative: the plain expression, differentiable again
            from torch.func import vjp

            _, pullback = vjp(lambda x, g: g * torch.sigmoid(ctx.beta * x), x, grad)
            dx, dg = pullback(v)
            return dx, dg, None
        dx, dg = cpu_kernels().softplus_double_backward(v.contiguous(), grad.detach().contiguous(), x, ctx.beta)
        return dx, dg, None


class Softplus(nn.Module):
    """``nn.Softplus(beta)`` (threshold 20 off the kernel path; the kernel is exact to float precision instead)
    whose float32 CPU path runs the compiled kernels when ``impl`` allows it and ``beta`` is finite and positive.

    Args:
        beta: the sharpness ``beta``.
        impl: ``auto`` (kernels on float32 CPU unless ``NORM_NERF_COMPILED=0``), ``compiled`` (kernels whenever they
            serve the input) or ``reference`` (always ATen's ``F.softplus``).
    """

    def __init__(self, beta: float = 1.0, impl: str = "auto") -> None:
        super().__init__()
        if impl not in ("auto", "compiled", "reference"):
            raise ValueError(f"Softplus impl must be auto, compiled or reference, got {impl!r}")
        self.beta, self.impl = float(beta), impl
        self._kernel_beta = 0.0 < self.beta < float("inf")  # the kernels' formulas assume a finite beta > 0

    def _use_kernels(self, x: Tensor) -> bool:
        if not (kernels_wanted(self.impl) and self._kernel_beta):
            return False
        return not (functorch_active() or is_compiling()) and kernel_applies(x)

    def forward(self, x: Float[Tensor, "*batch"]) -> Float[Tensor, "*batch"]:
        if self._use_kernels(x):
            return SoftplusFunction.apply(x.contiguous(), self.beta)
        return F.softplus(x, beta=self.beta)

    def extra_repr(self) -> str:
        return f"beta={self.beta}, impl={self.impl}"
