"""NeuS SDF field whose SDF and colour networks are normalized ``NormMLP``s from the shared core (plain torch).

nerfstudio's ``SDFField`` builds a tinycudann hash grid unconditionally and cannot run on CPU; this field is
the NeuS architecture of Wang et al. (2021) on our core: positional encoding of x (``sin/cos(2^k x)``,
k < 6, plus x), an 8 x 256 softplus(beta = 100) SDF network with a skip connection at layer 4 that outputs
the SDF and a 256-d geometry feature, a 4 x 256 ReLU colour network on (x, view direction, SDF gradient,
feature) with a sigmoid output, and NeuS's learnable inverse deviation ``s``. Normals are the autograd
gradient of the SDF, also in eval mode; the eikonal loss differentiates the SDF network twice: compiled cross norm
and the softplus activations do it in C++ kernels (:class:`norm_nerf.core.functions.KernelCrossNormGradFunction`,
:mod:`norm_nerf.core.softplus`), the other norms through their analytic gradients written as differentiable
expressions (:mod:`norm_nerf.core.norm_grads`). With ``use_grid_feature`` (neus-facto) a
multiresolution hash grid (core ``HashGridEncoding``: plain torch, tinycudann when installed) adds features of x.

Geometric initialisation (the surface starts as a sphere of radius r) and normalization:

* ``neus``: the initialisation of Atzmon & Lipman as NeuS uses it. It relies on the network being
  positively homogeneous in x (first layer on raw x only, no biases, ReLU-like softplus), so the expected
  output grows like |x|. A norm after every hidden Linear breaks this: layer/RMS norm divide every
  point's features by their own scale (the output no longer depends on |x|), batch/global/cross norm
  subtract and divide by statistics of the whole batch (the output depends on which other points are in
  the batch). No choice of weights gives |x| - r for every batch.
* ``sphere`` (default with a norm): the SDF is ``|x| - r + f(x)`` where ``f`` is the normalized network
  and the SDF row of its output layer starts at zero. The initial SDF is exactly the sphere's, in train
  and eval mode and for any batch; the parameter-free term adds nothing to the parameter count; the
  network's own initialisation (and so its normalized spectrum) is untouched; the eikonal loss starts at
  0. The term stays: the network learns the difference between the surface and the sphere.
* ``auto``: ``neus`` when the SDF network has no norm (the base NeuS), ``sphere`` otherwise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
import tyro
from jaxtyping import Float
from nerfstudio.cameras.rays import RaySamples
from nerfstudio.field_components.field_heads import FieldHeadNames
from nerfstudio.fields.base_field import Field, FieldConfig
from nerfstudio.fields.sdf_field import LearnedVariance
from torch import Tensor, nn

from norm_nerf.core.encodings import FourierEncoding
from norm_nerf.core.hashgrid import HashGridConfig, HashGridEncoding
from norm_nerf.core.mlp import NormMLP
from norm_nerf.core.norms import frozen_statistics, running_stat_norms
from norm_nerf.ns.fields import NormOptions

GeometricInit = Literal["auto", "neus", "sphere"]


@dataclass
class NormSDFFieldConfig(FieldConfig):
    """NeuS SDF + colour networks as normalized MLPs (the norm itself comes from the model's norm options)."""

    _target: type = field(default_factory=lambda: NormSDFField)
    """Target class to instantiate."""
    num_layers: int = 8
    """Hidden layers of the SDF network."""
    hidden_dim: int = 256
    """Width of the SDF network."""
    geo_feat_dim: int = 256
    """Geometry feature passed from the SDF network to the colour network."""
    skip_connections: tuple[int, ...] = (4,)
    """SDF-network layers that also receive the encoded position."""
    position_frequencies: int = 6
    """Octaves of the position encoding sin/cos(2^k x), k < L (NeuS: 6)."""
    direction_frequencies: int = 4
    """Octaves of the view-direction encoding (NeuS: 4)."""
    num_layers_color: int = 4
    """Hidden layers of the colour network."""
    hidden_dim_color: int = 256
    """Width of the colour network."""
    use_grid_feature: bool = False
    """Also feed a multiresolution hash-grid encoding of x to the SDF network (neus-facto)."""
    grid: HashGridConfig = field(default_factory=HashGridConfig)
    """The hash grid of use_grid_feature (core's HashGridConfig; flags --pipeline.model.sdf-field.grid.num-levels,
    .grid.log2-hashmap-size, ...)."""
    softplus_beta: float = 100.0
    """Beta of the SDF network's softplus activations."""
    weight_norm: bool = True
    """Weight normalization of every Linear layer, as in NeuS."""
    geometric_init: GeometricInit = "auto"
    """Initial sphere: neus (Atzmon & Lipman), sphere (|x| - r + zero-initialised network), auto (neus iff no norm)."""
    sphere_radius: float = 0.5
    """Radius r of the initial sphere (NeuS on DTU: 0.5)."""
    inv_s_init: float = 0.3
    """Initial value v of the inverse deviation s = exp(10 v) (NeuS: 0.3)."""
    norm: tyro.conf.Suppress[NormOptions] = field(default_factory=NormOptions)
    """Normalization of the two networks; set by the model from its --pipeline.model.norm* options."""


def resolve_geometric_init(mode: str, sdf_norm: str) -> Literal["neus", "sphere"]:
    """The initialisation actually used for ``mode`` when the SDF network uses norm ``sdf_norm``."""
    if mode == "auto":
        return "neus" if sdf_norm == "none" else "sphere"
    if mode not in ("neus", "sphere"):
        raise ValueError(f"geometric_init must be auto, neus or sphere, got {mode!r}")
    return mode  # type: ignore[return-value]


@torch.no_grad()
def neus_geometric_init(mlp: NormMLP, raw_dims: int, radius: float) -> None:
    """Atzmon & Lipman's initialisation as NeuS applies it: the output approximates ``|x| - radius``.

    Only the first ``raw_dims`` input features (the raw coordinates) reach the first layer and the skip
    layers; hidden weights are He-normal with zero biases; the output layer is ``sqrt(pi / width)`` with
    bias ``-radius``. NeuS divides the skip concatenation by sqrt(2); here the skip layer's weights are.
    """
    if mlp.output is None:
        raise ValueError("neus_geometric_init needs an MLP with an output layer")
    for i, layer in enumerate(mlp.layers):
        std = math.sqrt(2.0 / layer.out_features)
        nn.init.zeros_(layer.bias)
        if i == 0:
            nn.init.zeros_(layer.weight)
            nn.init.normal_(layer.weight[:, :raw_dims], 0.0, std)
        elif i in mlp.skips:
            nn.init.normal_(layer.weight, 0.0, std / math.sqrt(2.0))
            nn.init.zeros_(layer.weight[:, mlp.width + raw_dims :])  # the encoded part of the skip input
        else:
            nn.init.normal_(layer.weight, 0.0, std)
    nn.init.normal_(mlp.output.weight, math.sqrt(math.pi / mlp.output.in_features), 1e-4)
    nn.init.constant_(mlp.output.bias, -radius)


@torch.no_grad()
def zero_sdf_row(mlp: NormMLP) -> None:
    """Start the SDF output (row 0 of the output layer) at exactly zero; the feature rows keep their init.

    With weight normalization (w = g v / |v|) only the gain g is zeroed: a zero v would make w = 0 / 0.
    """
    if mlp.output is None:
        raise ValueError("zero_sdf_row needs an MLP with an output layer")
    parametrized = getattr(mlp.output, "parametrizations", None)
    if parametrized is not None and "weight" in parametrized:
        parametrized.weight.original0[0].zero_()  # the gain g of weight_norm
    else:
        mlp.output.weight[0].zero_()
    mlp.output.bias[0].zero_()


def apply_weight_norm(mlp: NormMLP) -> None:
    """Weight normalization (w = g v / |v|) of every Linear of ``mlp``; the function is unchanged."""
    for layer in [*mlp.layers, *([mlp.output] if mlp.output is not None else [])]:
        nn.utils.parametrizations.weight_norm(layer)


def neus_alpha(
    sdf: Float[Tensor, "*batch 1"],
    gradients: Float[Tensor, "*batch 3"],
    directions: Float[Tensor, "*batch 3"],
    deltas: Float[Tensor, "*batch 1"],
    inv_s: Float[Tensor, "1"],
    cos_anneal_ratio: float,
) -> Float[Tensor, "*batch 1"]:
    """NeuS's discrete opacity of a section: the drop of the logistic CDF of the SDF across it.

    The SDF at the section ends is extrapolated from its centre with slope ``cos`` (ray direction · SDF
    gradient), annealed from a "never dead" half-cosine towards the true one early in training.
    """
    cos = (directions * gradients).sum(-1, keepdim=True)
    slope = -(F.relu(0.5 - 0.5 * cos) * (1.0 - cos_anneal_ratio) + F.relu(-cos) * cos_anneal_ratio)
    half = slope * deltas * 0.5
    cdf_prev = torch.sigmoid((sdf - half) * inv_s)
    cdf_next = torch.sigmoid((sdf + half) * inv_s)
    return ((cdf_prev - cdf_next + 1e-5) / (cdf_prev + 1e-5)).clip(0.0, 1.0)


class NeuSEncoding(nn.Module):
    """``[x, sin(2^k x), cos(2^k x)]`` for k < L (the core PE, which uses 2^k pi x, fed with x / pi), optionally
    followed by a hash-grid encoding of x mapped from the box [-1, 1]^3 to [0, 1]^3 (plain torch, or tinycudann when
    installed). The raw coordinates come first: NeuS's geometric init reads only them."""

    def __init__(self, num_frequencies: int, grid: HashGridEncoding | None = None) -> None:
        super().__init__()
        self.pe = FourierEncoding(3, num_frequencies, include_input=False)
        self.grid = grid
        self.out_dim = 3 + self.pe.out_dim + (grid.out_dim if grid is not None else 0)

    def forward(self, x: Float[Tensor, "*batch 3"]) -> Float[Tensor, "*batch out"]:
        parts = [x, self.pe(x / math.pi)]
        if self.grid is not None:
            parts.append(self.grid(((x + 1.0) * 0.5).clamp(0.0, 1.0)))
        return torch.cat(parts, dim=-1)


class NormSDFField(Field):
    """NeuS field (SDF + colour) on the core's normalized MLPs; see the module docstring.

    Args:
        config: the field configuration (``config.norm`` chooses the normalization).
        aabb: scene box (unused: NeuS works inside the unit sphere; kept for nerfstudio's interface).
        num_images: training images (unused: no appearance embedding, as in NeuS).
        use_average_appearance_embedding: unused (no appearance embedding).
        spatial_distortion: unused (the SDF lives in the unit sphere; the hash grid, when on, reads [-1, 1]^3 as is).
    """

    config: NormSDFFieldConfig

    def __init__(
        self,
        config: NormSDFFieldConfig,
        aabb: Float[Tensor, "2 3"] | None = None,
        num_images: int = 0,
        use_average_appearance_embedding: bool = False,
        spatial_distortion: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        norm = config.norm
        grid = config.grid.setup(3) if config.use_grid_feature else None
        self.position_encoding = NeuSEncoding(config.position_frequencies, grid)
        self.direction_encoding = NeuSEncoding(config.direction_frequencies)
        sdf_norm = norm.mlp_norm("base")
        self.sdf_mlp = NormMLP(
            self.position_encoding.out_dim,
            1 + config.geo_feat_dim,
            config.num_layers,
            config.hidden_dim,
            activation="softplus",
            skips=tuple(s for s in config.skip_connections if 0 < s < config.num_layers),
            # the eikonal loss differentiates the SDF twice (double backward: see the module docstring)
            softplus_beta=config.softplus_beta,
            **sdf_norm,
        )
        color_in = 3 + self.direction_encoding.out_dim + 3 + config.geo_feat_dim
        self.color_mlp = NormMLP(
            color_in,
            3,
            config.num_layers_color,
            config.hidden_dim_color,
            activation="relu",
            output_activation="sigmoid",
            **norm.mlp_norm("head"),
        )
        self.geometric_init = resolve_geometric_init(config.geometric_init, sdf_norm["norm"])
        if self.geometric_init == "neus":
            neus_geometric_init(self.sdf_mlp, raw_dims=3, radius=config.sphere_radius)
        if config.weight_norm:
            apply_weight_norm(self.sdf_mlp)
            apply_weight_norm(self.color_mlp)
        if self.geometric_init == "sphere":
            zero_sdf_row(self.sdf_mlp)
        self.deviation_network = LearnedVariance(init_val=config.inv_s_init)
        self._cos_anneal_ratio = 1.0

    def set_cos_anneal_ratio(self, anneal: float) -> None:
        """NeuS's cosine annealing ratio (0 -> 1 over the first training steps)."""
        self._cos_anneal_ratio = float(anneal)

    def _updates_statistics(self) -> bool:
        return any(m.should_update() for m in running_stat_norms(self))

    def geometry(self, x: Float[Tensor, "*batch 3"]) -> tuple[Float[Tensor, "*batch 1"], Float[Tensor, "*batch f"]]:
        """SDF and geometry feature at positions ``x`` (normalised scene coordinates)."""
        h = self.sdf_mlp(self.position_encoding(x))
        sdf, feature = h.split([1, self.config.geo_feat_dim], dim=-1)
        if self.geometric_init == "sphere":
            sdf = sdf + (torch.linalg.vector_norm(x, dim=-1, keepdim=True) - self.config.sphere_radius)
        return sdf, feature

    def sdf(self, x: Float[Tensor, "*batch 3"]) -> Float[Tensor, "*batch 1"]:
        """The SDF at ``x``, as a query: running statistics are never updated (mesh export, samplers)."""
        with frozen_statistics(self):
            return self.geometry(x)[0]

    def forward_geonetwork(
        self, inputs: Float[Tensor, "*batch 3"], chunk: int = 65536
    ) -> Float[Tensor, "*batch geo_features+1"]:
        """SDF (column 0) and geometry feature at ``inputs``: the interface of nerfstudio's ``SDFField`` that
        ``ns-export marching-cubes`` calls (``field.forward_geonetwork(x)[:, 0]``, under ``torch.no_grad``).

        A query, as :meth:`sdf` and :func:`norm_nerf.ns.mesh.mesh_of_model`: the field is evaluated in eval mode (the
        running statistics, so a point's SDF does not depend on the other points of the call; the mode is restored
        afterwards), without updating statistics, without an autograd graph, ``chunk`` points per forward pass.
        """
        if chunk < 1:
            raise ValueError(f"chunk must be >= 1, got {chunk}")
        points = inputs.reshape(-1, 3)
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad(), frozen_statistics(self):
                parts = [torch.cat(self.geometry(x), dim=-1) for x in points.split(chunk)]
        finally:
            self.train(was_training)
        out = torch.cat(parts) if parts else points.new_zeros(0, 1 + self.config.geo_feat_dim)
        return out.reshape(*inputs.shape[:-1], out.shape[-1])

    def get_sdf(self, ray_samples: RaySamples) -> Float[Tensor, "*batch 1"]:
        """The SDF at the samples' start positions (NeuS's up-sampler calls this under ``no_grad``)."""
        positions = ray_samples.frustums.get_start_positions()
        return self.sdf(positions.reshape(-1, 3)).reshape(*positions.shape[:-1], 1)

    def sdf_and_gradient(
        self, x: Float[Tensor, "n 3"]
    ) -> tuple[Float[Tensor, "n 1"], Float[Tensor, "n f"], Float[Tensor, "n 3"]]:
        """SDF, feature and SDF gradient (autograd, also under ``no_grad`` / in eval mode).

        When called without gradients (rendering, evaluation) the gradient is not part of a graph and the
        running statistics are not updated, even in train mode.
        """
        training_pass = torch.is_grad_enabled()
        with frozen_statistics(self, enabled=not self._updates_statistics()), torch.enable_grad():
            if not x.requires_grad:
                x = x.detach().requires_grad_(True)
            sdf, feature = self.geometry(x)
            (gradient,) = torch.autograd.grad(sdf, x, torch.ones_like(sdf), create_graph=training_pass)
        if not training_pass:
            sdf, feature = sdf.detach(), feature.detach()
        return sdf, feature, gradient

    def get_outputs(  # type: ignore[override]
        self, ray_samples: RaySamples, density_embedding: Tensor | None = None, return_alphas: bool = False
    ) -> dict[FieldHeadNames, Tensor]:
        """RGB, SDF, normals, SDF gradients (and NeuS alphas) at the samples."""
        shape = ray_samples.frustums.shape
        positions = ray_samples.frustums.get_start_positions().reshape(-1, 3)
        directions = ray_samples.frustums.directions.reshape(-1, 3)
        sdf, feature, gradient = self.sdf_and_gradient(positions)
        color_in = torch.cat([positions, self.direction_encoding(directions), gradient, feature], dim=-1)
        rgb = self.color_mlp(color_in)
        sdf, gradient, rgb = (t.reshape(*shape, -1) for t in (sdf, gradient, rgb))
        outputs = {
            FieldHeadNames.RGB: rgb,
            FieldHeadNames.SDF: sdf,
            FieldHeadNames.NORMALS: F.normalize(gradient, dim=-1),
            FieldHeadNames.GRADIENT: gradient,
        }
        if return_alphas:
            inv_s = self.deviation_network.get_variance()
            outputs[FieldHeadNames.ALPHA] = neus_alpha(
                sdf, gradient, ray_samples.frustums.directions, ray_samples.deltas, inv_s, self._cos_anneal_ratio
            )
        return outputs

    def get_density(self, ray_samples: RaySamples):  # type: ignore[override]
        raise NotImplementedError("NormSDFField is an SDF field: use get_sdf / get_outputs(return_alphas=True)")

    def forward(  # type: ignore[override]
        self, ray_samples: RaySamples, compute_normals: bool = False, return_alphas: bool = False
    ) -> dict[FieldHeadNames, Tensor]:
        return self.get_outputs(ray_samples, return_alphas=return_alphas)
