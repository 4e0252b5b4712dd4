"""norm-neus and norm-neus-facto: nerfstudio's NeuS and NeuS-facto (SDF volume rendering, eikonal loss; up-sampling
or proposal networks) on our normalized SDF field."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

import torch
from nerfstudio.cameras.rays import RayBundle
from nerfstudio.model_components.scene_colliders import AABBBoxCollider
from nerfstudio.models.neus import NeuSModel, NeuSModelConfig
from nerfstudio.models.neus_facto import NeuSFactoModel, NeuSFactoModelConfig

from norm_nerf.ns.base_model import NormModel, NormModelConfig
from norm_nerf.ns.exporter import check_marching_cubes_device
from norm_nerf.ns.sdf_field import NormSDFFieldConfig


@dataclass
class NormSurfaceOptions(NormModelConfig):
    """Options shared by the normalized surface models (listed first in their bases, so they win)."""

    cos_anneal_end: int = 50000
    """Steps over which NeuS's cosine annealing ratio goes from 0 to 1 (0 = no annealing)."""
    sdf_field: NormSDFFieldConfig = field(default_factory=NormSDFFieldConfig)
    """The SDF field (architecture and geometric initialisation)."""


@dataclass
class NormNeuSModelConfig(NormSurfaceOptions, NeuSModelConfig):
    """NeuS with normalized SDF and colour networks (plain torch: runs on CPU)."""

    _target: type = field(default_factory=lambda: NormNeuSModel)


def _facto_field() -> NormSDFFieldConfig:
    """NeuS-facto's field: hash-grid features let a 2-layer SDF and colour network suffice."""
    return NormSDFFieldConfig(use_grid_feature=True, num_layers=2, num_layers_color=2, inv_s_init=0.8)


@dataclass
class NormNeuSFactoModelConfig(NormSurfaceOptions, NeuSFactoModelConfig):
    """NeuS-facto (hash grid, proposal networks) with normalized SDF and colour networks."""

    _target: type = field(default_factory=lambda: NormNeuSFactoModel)
    sdf_field: NormSDFFieldConfig = field(default_factory=_facto_field)
    """The SDF field (hash grid + small networks; architecture and geometric initialisation)."""
    background_model: Literal["grid", "mlp", "none"] = "none"
    """Background model (NeuS-facto: none)."""


class MissSafeBoxCollider(AABBBoxCollider):
    """nerfstudio's box collider, except for rays that miss the box.

    For those nerfstudio returns ``near = far`` at the largest slab entry, which can lie beyond the background
    model's far plane (e.g. 2652 for a nearly axis-parallel ray) and makes the background samples, and the pixel,
    NaN. Here a ray that misses gets an empty segment at its closest approach to the box centre instead: no
    foreground, and a valid background interval behind it.
    """

    def set_nears_and_fars(self, ray_bundle: RayBundle) -> RayBundle:
        ray_bundle = super().set_nears_and_fars(ray_bundle)
        origins, directions = ray_bundle.origins, ray_bundle.directions
        entry, exit_ = self._intersect_slabs(origins, directions)
        miss = exit_ <= entry.clamp_min(0.0)  # no part of the box in front of the camera
        if miss.any():
            centre = self.scene_box.aabb.mean(dim=0)
            t = ((centre - origins) * directions).sum(-1) / (directions * directions).sum(-1).clamp_min(1e-12)
            near_plane = self.near_plane if self.training else 0.0
            t = t.clamp_min(near_plane)[..., None]
            ray_bundle.nears = torch.where(miss[..., None], t, ray_bundle.nears)
            ray_bundle.fars = torch.where(miss[..., None], t + 1e-6, ray_bundle.fars)
        return ray_bundle

    def _intersect_slabs(self, origins: torch.Tensor, directions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Entry and exit distances of the rays through the box's slabs (entry >= exit: the line misses it)."""
        inv = 1.0 / torch.where(directions.abs() < 1e-12, torch.full_like(directions, 1e-12), directions)
        t1 = (self.scene_box.aabb[0] - origins) * inv
        t2 = (self.scene_box.aabb[1] - origins) * inv
        entry = torch.minimum(t1, t2).amax(dim=-1)
        return entry, torch.maximum(t1, t2).amin(dim=-1)


class _NormSurfaceModel(NormModel):
    """The normalized parts of a surface model: our field with the model's norm, the annealing length, a collider for
    rays that miss the box, and :class:`~norm_nerf.ns.base_model.NormModel`'s hooks (lazy LPIPS, recalibration).

    Running statistics describe the field's rendering pass (the samples it is trained on); sampler SDF queries
    never update them, and in eval mode every query (sampler, rendering, mesh export) uses them, so the model
    has one eval-mode SDF. Normals need autograd in eval mode too: the field enables gradients for them itself.
    ``ns-export marching-cubes`` without CUDA stops here with a pointer to ``norm-extract-mesh``
    (:func:`norm_nerf.ns.exporter.check_marching_cubes_device`).
    """

    config: NormSurfaceOptions

    def populate_modules(self) -> None:
        check_marching_cubes_device()
        self.config.sdf_field = dataclasses.replace(self.config.sdf_field, norm=self.config.norm_options())
        super().populate_modules()
        self.anneal_end = self.config.cos_anneal_end
        if type(self.collider) is AABBBoxCollider:  # type: ignore[attr-defined]
            self.collider = MissSafeBoxCollider(self.scene_box, near_plane=self.collider.near_plane)


class NormNeuSModel(_NormSurfaceModel, NeuSModel):
    """NeuS (up-sampling by the SDF itself) whose field is a :class:`~norm_nerf.ns.sdf_field.NormSDFField`."""

    config: NormNeuSModelConfig


class NormNeuSFactoModel(_NormSurfaceModel, NeuSFactoModel):
    """NeuS-facto (proposal networks, hash-grid SDF features) whose field is a ``NormSDFField``."""

    config: NormNeuSFactoModelConfig
