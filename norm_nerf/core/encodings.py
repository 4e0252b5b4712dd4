"""Input encodings for coordinate networks (torch only).

* :class:`FourierEncoding` — the papers' PE: raw coords + sin/cos(2^k pi x), k = 0..L-1.
* :class:`GaussianFourierEncoding` — random Fourier features sin/cos(2 pi B x), B ~ N(0, sigma^2).
* :class:`IntegratedFourierEncoding` — Mip-NeRF's integrated PE of Gaussians (mean, diagonal covariance).
* :class:`HashGridEncoding` in :mod:`norm_nerf.core.hashgrid` — multiresolution hash grid.

Every encoding has ``in_dim`` and ``out_dim`` attributes.
"""

from __future__ import annotations

import math

import torch
from jaxtyping import Float
from torch import Tensor, nn


def _check_last_dim(name: str, x: Tensor, dim: int) -> None:
    if x.dim() == 0 or x.shape[-1] != dim:
        raise ValueError(f"{name} expects inputs of shape (..., {dim}), got {tuple(x.shape)}")


class FourierEncoding(nn.Module):
    """The papers' positional encoding ``[x, sin(2^k pi x), cos(2^k pi x)]`` for k = 0..num_frequencies-1.

    Args:
        in_dim: coordinate dimension d (coordinates are expected in [-1, 1]).
        num_frequencies: L; output dimension is ``d * (include_input + 2 L)``. The papers use L = 10.
        include_input: prepend the raw coordinates.
    """

    def __init__(self, in_dim: int, num_frequencies: int = 10, include_input: bool = True) -> None:
        super().__init__()
        if in_dim < 1 or num_frequencies < 0:
            raise ValueError(
                f"FourierEncoding: need in_dim >= 1 and num_frequencies >= 0, got {in_dim}, {num_frequencies}"
            )
        self.in_dim = in_dim
        self.num_frequencies = num_frequencies
        self.include_input = include_input
        self.register_buffer("freqs", math.pi * 2.0 ** torch.arange(num_frequencies, dtype=torch.float32))
        self.out_dim = in_dim * (int(include_input) + 2 * num_frequencies)

    def _scaled(self, x: Tensor) -> Tensor:
        return (x[..., None, :] * self.freqs.to(x.dtype)[:, None]).flatten(-2)

    def forward(self, x: Float[Tensor, "*batch d"]) -> Float[Tensor, "*batch out"]:
        _check_last_dim("FourierEncoding", x, self.in_dim)
        scaled = self._scaled(x)
        parts = [x] if self.include_input else []
        return torch.cat([*parts, torch.sin(scaled), torch.cos(scaled)], dim=-1)


class IntegratedFourierEncoding(FourierEncoding):
    """Mip-NeRF's integrated PE: the expected PE of a Gaussian with mean ``x`` and diagonal covariance ``var``.

    ``E[sin(w x)] = sin(w mu) exp(-w^2 var / 2)``; with ``var = 0`` it equals :class:`FourierEncoding`
    (the raw-input part, when included, is the mean).
    """

    def forward(  # type: ignore[override]
        self, x: Float[Tensor, "*batch d"], var: Float[Tensor, "*batch d"] | None = None
    ) -> Float[Tensor, "*batch out"]:
        _check_last_dim("IntegratedFourierEncoding", x, self.in_dim)
        if var is None:
            return super().forward(x)
        if var.shape != x.shape:
            raise ValueError(f"IntegratedFourierEncoding: var shape {tuple(var.shape)} != mean shape {tuple(x.shape)}")
        scaled = self._scaled(x)
        damp = torch.exp(-0.5 * self._scaled_var(var))
        parts = [x] if self.include_input else []
        return torch.cat([*parts, torch.sin(scaled) * damp, torch.cos(scaled) * damp], dim=-1)

    def _scaled_var(self, var: Tensor) -> Tensor:
        return (var[..., None, :] * (self.freqs.to(var.dtype) ** 2)[:, None]).flatten(-2)


class GaussianFourierEncoding(nn.Module):
    """Random Fourier features ``[sin(2 pi B x), cos(2 pi B x)]`` with ``B ~ N(0, sigma^2)`` (Tancik et al.).

    Args:
        in_dim: coordinate dimension d.
        num_features: rows m of B; output dimension ``2 m (+ d with include_input)``.
        sigma: standard deviation of B (the bandwidth).
        seed: seed of the generator that draws B (B is a buffer, saved with the model).
        include_input: prepend the raw coordinates.
    """

    def __init__(
        self, in_dim: int, num_features: int = 256, sigma: float = 10.0, seed: int = 0, include_input: bool = False
    ) -> None:
        super().__init__()
        if in_dim < 1 or num_features < 1 or sigma <= 0:
            raise ValueError(
                f"GaussianFourierEncoding: need in_dim >= 1, num_features >= 1, sigma > 0; got {in_dim}, "
                f"{num_features}, {sigma}"
            )
        gen = torch.Generator().manual_seed(seed)
        self.in_dim = in_dim
        self.include_input = include_input
        self.register_buffer("B", torch.randn(num_features, in_dim, generator=gen) * sigma)
        self.out_dim = 2 * num_features + (in_dim if include_input else 0)

    def forward(self, x: Float[Tensor, "*batch d"]) -> Float[Tensor, "*batch out"]:
        _check_last_dim("GaussianFourierEncoding", x, self.in_dim)
        proj = 2.0 * math.pi * (x @ self.B.to(x.dtype).T)
        parts = [x] if self.include_input else []
        return torch.cat([*parts, torch.sin(proj), torch.cos(proj)], dim=-1)
