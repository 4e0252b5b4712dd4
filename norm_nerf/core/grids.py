"""Sample-centre coordinate grids in [-1, 1]: the inputs of every coordinate network on a regular signal."""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor


def pixel_grid(height: int, width: int) -> Float[Tensor, "hw 2"]:
    """Pixel-centre coordinates ``(x, y)`` in [-1, 1], row-major (row = y)."""
    ys = (torch.arange(height, dtype=torch.float32) + 0.5) / height * 2 - 1
    xs = (torch.arange(width, dtype=torch.float32) + 0.5) / width * 2 - 1
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([xx, yy], dim=-1).reshape(-1, 2)


def voxel_grid(shape: tuple[int, ...]) -> Float[Tensor, "p d"]:
    """Voxel-centre coordinates in [-1, 1]; the last coordinate runs along the first axis (x = last axis)."""
    axes = [(torch.arange(n, dtype=torch.float32) + 0.5) / n * 2 - 1 for n in shape]
    mesh = torch.meshgrid(*axes, indexing="ij")
    return torch.stack(mesh[::-1], dim=-1).reshape(-1, len(shape))
