"""Baseline coordinate networks from the papers' comparisons: SIREN, WIRE and MFN (Fourier / Gabor).

``depth`` counts the activated (or multiplicative) layers, as for :class:`~norm_nerf.core.mlp.NormMLP`,
followed by one linear output layer.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from jaxtyping import Float
from torch import Tensor, nn


def _check_sizes(name: str, in_dim: int, out_dim: int, depth: int, width: int) -> None:
    if in_dim < 1 or out_dim < 1 or depth < 1 or width < 1:
        raise ValueError(
            f"{name}: need in_dim, out_dim, depth, width >= 1; got in_dim={in_dim}, out_dim={out_dim}, "
            f"depth={depth}, width={width}"
        )


def _check_input(name: str, x: Tensor, in_dim: int) -> None:
    if x.dim() == 0 or x.shape[-1] != in_dim:
        raise ValueError(f"{name} expects inputs of shape (..., {in_dim}), got {tuple(x.shape)}")


class Siren(nn.Module):
    """SIREN (Sitzmann et al. 2020): sin(w0 (W x + b)) layers with the paper's initialisation.

    First layer weights ~ U(-1/in, 1/in); later layers ~ U(-sqrt(6/fan_in)/w0, sqrt(6/fan_in)/w0).
    """

    def __init__(self, in_dim: int, out_dim: int, depth: int, width: int, w0: float = 30.0) -> None:
        super().__init__()
        _check_sizes("Siren", in_dim, out_dim, depth, width)
        self.in_dim, self.out_dim, self.w0 = in_dim, out_dim, w0
        dims = [in_dim] + [width] * depth
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.output = nn.Linear(width, out_dim)
        with torch.no_grad():
            for i, layer in enumerate([*self.layers, self.output]):
                bound = 1.0 / layer.in_features if i == 0 else math.sqrt(6.0 / layer.in_features) / w0
                layer.weight.uniform_(-bound, bound)

    def forward(self, x: Float[Tensor, "*batch in_dim"]) -> Float[Tensor, "*batch out_dim"]:
        _check_input("Siren", x, self.in_dim)
        h = x
        for layer in self.layers:
            h = torch.sin(self.w0 * layer(h))
        return self.output(h)


class Wire(nn.Module):
    """WIRE (Saragadam et al. 2023): complex Gabor wavelet activations ``exp(j w0 z - |s0 z|^2)``.

    The first layer is real, the others complex; the hidden width is divided by sqrt(2) (as in the
    authors' code) so the real parameter count matches a real network; the output is the real part.
    """

    def __init__(
        self, in_dim: int, out_dim: int, depth: int, width: int, omega: float = 20.0, scale: float = 10.0
    ) -> None:
        super().__init__()
        _check_sizes("Wire", in_dim, out_dim, depth, width)
        self.in_dim, self.out_dim, self.omega, self.scale = in_dim, out_dim, omega, scale
        cw = max(1, int(width / math.sqrt(2)))
        self.layers = nn.ModuleList([nn.Linear(in_dim, cw)])
        self.layers.extend(nn.Linear(cw, cw, dtype=torch.cfloat) for _ in range(depth - 1))
        self.output = nn.Linear(cw, out_dim, dtype=torch.cfloat)

    def forward(self, x: Float[Tensor, "*batch in_dim"]) -> Float[Tensor, "*batch out_dim"]:
        _check_input("Wire", x, self.in_dim)
        h = x
        for layer in self.layers:
            if h.is_complex() != layer.weight.is_complex():
                h = h.to(layer.weight.dtype)
            z = layer(h)
            h = torch.exp(1j * self.omega * z - (self.scale * z).abs().square())
        return self.output(h).real


class _FourierFilter(nn.Module):
    def __init__(self, in_dim: int, width: int, weight_scale: float) -> None:
        super().__init__()
        self.linear = nn.Linear(in_dim, width)
        with torch.no_grad():
            self.linear.weight.mul_(weight_scale)
            self.linear.bias.uniform_(-math.pi, math.pi)

    def forward(self, x: Tensor) -> Tensor:
        return torch.sin(self.linear(x))


class _GaborFilter(nn.Module):
    def __init__(self, in_dim: int, width: int, weight_scale: float, alpha: float, beta: float) -> None:
        super().__init__()
        self.linear = nn.Linear(in_dim, width)
        self.mu = nn.Parameter(2.0 * torch.rand(width, in_dim) - 1.0)
        self.gamma = nn.Parameter(torch.distributions.Gamma(alpha, beta).sample((width,)))
        with torch.no_grad():
            self.linear.weight.mul_(weight_scale * torch.sqrt(self.gamma[:, None]))
            self.linear.bias.uniform_(-math.pi, math.pi)

    def forward(self, x: Tensor) -> Tensor:
        sq = (x * x).sum(-1, keepdim=True) + (self.mu * self.mu).sum(-1) - 2.0 * x @ self.mu.T
        return torch.sin(self.linear(x)) * torch.exp(-0.5 * sq * self.gamma)


class MFN(nn.Module):
    """Multiplicative filter network (Fathony et al. 2021), Fourier or Gabor filters.

    ``z_1 = g_1(x)``, ``z_{i+1} = (W_i z_i + b_i) * g_{i+1}(x)`` for ``depth`` filters, then a linear output.
    Filter frequencies are scaled by ``input_scale / sqrt(depth)`` as in the authors' code.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        depth: int,
        width: int,
        kind: Literal["fourier", "gabor"] = "fourier",
        input_scale: float = 256.0,
        alpha: float = 6.0,
        beta: float = 1.0,
    ) -> None:
        super().__init__()
        _check_sizes("MFN", in_dim, out_dim, depth, width)
        if kind not in ("fourier", "gabor"):
            raise ValueError(f"MFN: kind must be 'fourier' or 'gabor', got {kind!r}")
        self.in_dim, self.out_dim, self.kind = in_dim, out_dim, kind
        scale = input_scale / math.sqrt(depth)
        if kind == "fourier":
            self.filters = nn.ModuleList(_FourierFilter(in_dim, width, scale) for _ in range(depth))
        else:
            self.filters = nn.ModuleList(_GaborFilter(in_dim, width, scale, alpha / depth, beta) for _ in range(depth))
        self.linears = nn.ModuleList(nn.Linear(width, width) for _ in range(depth - 1))
        bound = math.sqrt(1.0 / width)
        with torch.no_grad():
            for lin in self.linears:
                lin.weight.uniform_(-bound, bound)
        self.output = nn.Linear(width, out_dim)

    def forward(self, x: Float[Tensor, "*batch in_dim"]) -> Float[Tensor, "*batch out_dim"]:
        _check_input("MFN", x, self.in_dim)
        z = self.filters[0](x)
        for filt, lin in zip(self.filters[1:], self.linears):
            z = lin(z) * filt(x)
        return self.output(z)
