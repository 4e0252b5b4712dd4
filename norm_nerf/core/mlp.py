"""``NormMLP``: Linear -> norm -> activation for every hidden layer, a plain Linear output layer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, get_args

import torch
from jaxtyping import Float
from torch import Tensor, nn

from norm_nerf.core.norms import build_norm, check_norm_kind
from norm_nerf.core.softplus import Softplus

Activation = Literal["relu", "softplus", "sigmoid", "tanh", "gelu", "silu", "none"]
ACTIVATIONS: tuple[str, ...] = get_args(Activation)


def build_activation(name: str | None, softplus_beta: float = 100.0) -> nn.Module:
    """A fresh activation module by name (``none``/None gives the identity)."""
    key = "none" if name is None else str(name).lower()
    table = {
        "relu": lambda: nn.ReLU(),
        "softplus": lambda: Softplus(beta=softplus_beta),
        "sigmoid": lambda: nn.Sigmoid(),
        "tanh": lambda: nn.Tanh(),
        "gelu": lambda: nn.GELU(),
        "silu": lambda: nn.SiLU(),
        "none": lambda: nn.Identity(),
    }
    if key not in table:
        raise ValueError(f"unknown activation {name!r}; valid activations are: {', '.join(ACTIVATIONS)}")
    return table[key]()


class NormMLP(nn.Module):
    """A coordinate MLP with a normalization after every hidden Linear, before its activation.

    ``depth`` hidden layers (Linear(width) -> norm -> activation) followed by an output Linear with no
    norm (and an optional output activation). Hidden layer ``i`` listed in ``skips`` receives the MLP input
    concatenated to the previous features (as in NeRF/Mip-NeRF/NeuS). With ``out_dim=None`` there is no
    output layer and the last hidden features are returned (a trunk for separate heads).

    Args:
        in_dim: input features.
        out_dim: output features, or None for no output layer.
        depth: number of hidden layers (>= 1 when ``out_dim`` is None, else >= 0).
        width: hidden features.
        norm: ``none|bn|ln|gn|cn|rms``.
        activation: hidden activation name.
        output_activation: activation after the output layer (None = linear).
        skips: hidden layer indices (1..depth-1) that also receive the input.
        norm_opts: options passed to :func:`norm_nerf.core.norms.build_norm` (momentum, sync, ...).
        softplus_beta: beta of softplus activations.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int | None,
        depth: int,
        width: int,
        norm: str = "none",
        activation: str = "relu",
        output_activation: str | None = None,
        skips: Sequence[int] = (),
        norm_opts: dict | None = None,
        softplus_beta: float = 100.0,
    ) -> None:
        super().__init__()
        self.norm_kind = check_norm_kind(norm)
        if in_dim < 1 or width < 1 or depth < 0 or (out_dim is not None and out_dim < 1):
            raise ValueError(
                f"NormMLP: need in_dim >= 1, width >= 1, depth >= 0, out_dim >= 1; got in_dim={in_dim}, "
                f"width={width}, depth={depth}, out_dim={out_dim}"
            )
        if out_dim is None and depth < 1:
            raise ValueError("NormMLP: out_dim=None (no output layer) needs depth >= 1")
        bad = [s for s in skips if not 1 <= s < depth]
        if bad:
            raise ValueError(f"NormMLP: skip indices must be in 1..{depth - 1}, got {bad}")
        self.in_dim, self.out_dim, self.depth, self.width = in_dim, out_dim, depth, width
        self.skips = tuple(sorted(set(skips)))
        self.layers = nn.ModuleList()
        self.norms = nn.ModuleList()
        self.acts = nn.ModuleList()
        for i in range(depth):
            fan_in = in_dim if i == 0 else width + (in_dim if i in self.skips else 0)
            self.layers.append(nn.Linear(fan_in, width))
            self.norms.append(build_norm(self.norm_kind, width, **(norm_opts or {})))
            self.acts.append(build_activation(activation, softplus_beta))
        self.output = None if out_dim is None else nn.Linear(width if depth else in_dim, out_dim)
        self.output_act = build_activation(output_activation, softplus_beta)
        self.feature_dim = out_dim if out_dim is not None else width

    def forward(self, x: Float[Tensor, "*batch in_dim"]) -> Float[Tensor, "*batch out_dim"]:
        if x.dim() == 0 or x.shape[-1] != self.in_dim:
            raise ValueError(f"NormMLP expects inputs of shape (..., {self.in_dim}), got {tuple(x.shape)}")
        h = x
        for i, (layer, norm, act) in enumerate(zip(self.layers, self.norms, self.acts)):
            if i in self.skips:
                h = torch.cat([h, x], dim=-1)
            h = act(norm(layer(h)))
        if self.output is not None:
            h = self.output(h)
        return self.output_act(h)
