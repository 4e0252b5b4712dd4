"""Multiresolution hash grid (Instant-NGP) in plain torch, with tinycudann as an optional fast path.

The torch implementation reproduces tinycudann's ``HashGrid`` exactly — level scales and resolutions,
dense indexing for coarse levels, the coherent prime hash, the parameter layout (levels padded to a
multiple of 8 entries) and linear interpolation — so that parameters can be moved between the two and
the outputs compared. Inputs are expected in ``[0, 1]^d``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from jaxtyping import Float
from torch import Tensor, nn

_PRIMES = (1, 2654435761, 805459861, 3674653429, 2097192037, 1434869437, 2165219737)
_U32 = 0xFFFFFFFF


def tcnn_available() -> bool:
    """True when tinycudann imports and a CUDA device is present."""
    if not torch.cuda.is_available():
        return False
    try:
        import tinycudann  # noqa: F401
    except Exception:  # ImportError, or a broken build raising OSError/RuntimeError
        return False
    return True


def level_layout(
    in_dim: int, num_levels: int, base_resolution: int, per_level_scale: float, log2_hashmap_size: int
) -> tuple[list[float], list[int], list[int]]:
    """Per-level scale, resolution and parameter offset (entries), as tinycudann computes them.

    Returns ``(scales, resolutions, offsets)`` with ``len(offsets) == num_levels + 1``.
    """
    scales, resolutions, offsets = [], [], [0]
    log2_scale = math.log2(per_level_scale)
    for level in range(num_levels):
        scale = 2.0 ** (level * log2_scale) * base_resolution - 1.0
        resolution = math.ceil(scale) + 1
        dense = min(resolution**in_dim, 2**31 - 1)
        params = min(-(-dense // 8) * 8, 2**log2_hashmap_size)
        scales.append(scale)
        resolutions.append(resolution)
        offsets.append(offsets[-1] + params)
    return scales, resolutions, offsets


HashGridImpl = Literal["torch", "tcnn", "auto"]


@dataclass
class HashGridConfig:
    """The options of a multiresolution hash grid: one config for the core's ``hash`` networks
    (:class:`~norm_nerf.core.network.NetworkConfig`) and the NeuS-facto SDF field."""

    num_levels: int = 16
    """Number of levels L."""
    features_per_level: int = 2
    """Features F per level."""
    log2_hashmap_size: int = 19
    """log2 of the table size per level (at most 2^T entries)."""
    base_resolution: int = 16
    """Resolution of the coarsest level."""
    max_resolution: int = 2048
    """Resolution of the finest level (sets the per-level scale)."""
    implementation: HashGridImpl = "auto"
    """torch, tcnn (error when unavailable) or auto (tcnn when installed and CUDA is present)."""

    def setup(self, in_dim: int = 3) -> HashGridEncoding:
        """The encoding of ``in_dim``-D inputs in [0, 1]^d."""
        return HashGridEncoding(
            in_dim,
            num_levels=self.num_levels,
            features_per_level=self.features_per_level,
            log2_hashmap_size=self.log2_hashmap_size,
            base_resolution=self.base_resolution,
            max_resolution=self.max_resolution,
            implementation=self.implementation,
        )


class HashGridEncoding(nn.Module):
    """Multiresolution hash encoding with ``num_levels * features_per_level`` outputs.

    Args:
        in_dim: input dimension d (2 or 3 typically); inputs in [0, 1].
        num_levels: L levels.
        features_per_level: F features per level.
        log2_hashmap_size: T; at most ``2^T`` entries per level.
        base_resolution: resolution of the coarsest level.
        max_resolution: resolution of the finest level (sets the per-level scale).
        implementation: ``torch``, ``tcnn`` (error when unavailable) or ``auto`` (tcnn when available).
    """

    def __init__(
        self,
        in_dim: int = 3,
        num_levels: int = 16,
        features_per_level: int = 2,
        log2_hashmap_size: int = 19,
        base_resolution: int = 16,
        max_resolution: int = 2048,
        implementation: HashGridImpl = "auto",
    ) -> None:
        super().__init__()
        if not 1 <= in_dim <= len(_PRIMES):
            raise ValueError(f"HashGridEncoding: in_dim must be in 1..{len(_PRIMES)}, got {in_dim}")
        if num_levels < 1 or features_per_level < 1 or base_resolution < 1 or max_resolution < base_resolution:
            raise ValueError(
                "HashGridEncoding: need num_levels, features_per_level, base_resolution >= 1 and "
                f"max_resolution >= base_resolution; got {num_levels}, {features_per_level}, {base_resolution}, "
                f"{max_resolution}"
            )
        if implementation not in ("torch", "tcnn", "auto"):
            raise ValueError(f"HashGridEncoding: implementation must be torch, tcnn or auto, got {implementation!r}")
        self.in_dim = in_dim
        self.num_levels = num_levels
        self.features_per_level = features_per_level
        self.log2_hashmap_size = log2_hashmap_size
        self.base_resolution = base_resolution
        self.per_level_scale = (
            math.exp(math.log(max_resolution / base_resolution) / (num_levels - 1)) if num_levels > 1 else 1.0
        )
        self.out_dim = num_levels * features_per_level
        scales, resolutions, offsets = level_layout(
            in_dim, num_levels, base_resolution, self.per_level_scale, log2_hashmap_size
        )
        self.register_buffer("scales", torch.tensor(scales, dtype=torch.float32), persistent=False)
        self.register_buffer("resolutions", torch.tensor(resolutions, dtype=torch.long), persistent=False)
        self.register_buffer("offsets", torch.tensor(offsets, dtype=torch.long), persistent=False)
        sizes = torch.tensor([offsets[i + 1] - offsets[i] for i in range(num_levels)], dtype=torch.long)
        self.register_buffer("sizes", sizes, persistent=False)
        # the 2^d cell corners as 0/1 offsets (a buffer: a tensor built from a list in forward is a host-to-device
        # copy per step on a GPU)
        corners = [[(k >> dim) & 1 for dim in range(in_dim)] for k in range(2**in_dim)]
        self.register_buffer("corners", torch.tensor(corners, dtype=torch.long), persistent=False)
        use_tcnn = implementation == "tcnn" or (implementation == "auto" and tcnn_available())
        if implementation == "tcnn" and not tcnn_available():
            raise RuntimeError("HashGridEncoding(implementation='tcnn'): tinycudann or CUDA is not available")
        self.implementation = "tcnn" if use_tcnn else "torch"
        self.tcnn_encoding = self._build_tcnn() if use_tcnn else None
        if self.tcnn_encoding is None:
            self.table = nn.Parameter(torch.empty(offsets[-1], features_per_level).uniform_(-1e-4, 1e-4))

    def tcnn_config(self) -> dict:
        """The tinycudann encoding config equivalent to this grid."""
        return {
            "otype": "HashGrid",
            "n_levels": self.num_levels,
            "n_features_per_level": self.features_per_level,
            "log2_hashmap_size": self.log2_hashmap_size,
            "base_resolution": self.base_resolution,
            "per_level_scale": self.per_level_scale,
            "interpolation": "Linear",
        }

    def _build_tcnn(self) -> nn.Module:
        import tinycudann as tcnn

        return tcnn.Encoding(n_input_dims=self.in_dim, encoding_config=self.tcnn_config())

    def _corner_indices(self, pos_grid: Tensor) -> Tensor:
        """Table rows for integer grid positions ``pos_grid`` of shape (N, L, K, d) -> (N, L, K)."""
        res = self.resolutions.view(1, -1, 1)
        dense = torch.zeros_like(pos_grid[..., 0])
        stride = torch.ones_like(res)
        for dim in range(self.in_dim):
            dense = dense + pos_grid[..., dim] * stride
            stride = torch.clamp(stride * res, max=2**40)  # only compared with the table size
        hashed = torch.zeros_like(dense)
        for dim in range(self.in_dim):
            hashed = hashed ^ ((pos_grid[..., dim] * _PRIMES[dim]) & _U32)
        use_hash = stride > self.sizes.view(1, -1, 1)
        index = torch.where(use_hash, hashed, dense) % self.sizes.view(1, -1, 1)
        return index + self.offsets[:-1].view(1, -1, 1)

    def forward(self, x: Float[Tensor, "*batch d"]) -> Float[Tensor, "*batch out"]:
        if x.dim() == 0 or x.shape[-1] != self.in_dim:
            raise ValueError(f"HashGridEncoding expects inputs of shape (..., {self.in_dim}), got {tuple(x.shape)}")
        if self.tcnn_encoding is not None:
            flat = x.reshape(-1, self.in_dim)
            return self.tcnn_encoding(flat).to(x.dtype).reshape(*x.shape[:-1], self.out_dim)
        flat = x.reshape(-1, self.in_dim).to(self.table.dtype)
        pos = flat[:, None, :] * self.scales.to(flat.dtype).view(1, -1, 1) + 0.5  # (N, L, d)
        base = torch.floor(pos)
        frac = pos - base
        corners = self.corners  # (K, d)
        pos_grid = base.long()[:, :, None, :] + corners  # (N, L, K, d)
        cf = corners.to(frac.dtype)
        weights = torch.prod(cf * frac[:, :, None, :] + (1 - cf) * (1 - frac[:, :, None, :]), dim=-1)  # (N, L, K)
        rows = self._corner_indices(pos_grid)
        feats = self.table[rows]  # (N, L, K, F)
        out = (weights[..., None] * feats).sum(dim=2)  # (N, L, F)
        return out.reshape(*x.shape[:-1], self.out_dim).to(x.dtype)
