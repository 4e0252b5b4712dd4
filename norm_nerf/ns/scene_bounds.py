"""Near and far planes of the NeRF / Mip-NeRF models from the parsed scene, where the Blender default does not fit.

Both models sample every ray between ``collider_params`` near and far, 2 and 6 by default: Blender's synthetic
scenes, cameras 4 units from the origin. nerfstudio's parsers of real captures (``nerfstudio-data``, ``colmap``,
...) scale the cameras to about 1 unit from the origin, so with 2 / 6 every sample lies beyond the scene and the
model learns nothing, silently. :func:`resolve_near_far` therefore

* keeps 2 / 6 on Blender-layout data (``norm-blender``, ``blender-data``): the papers' setting;
* elsewhere, when ``collider_params`` is still 2 / 6, derives the planes from the cameras and the scene box: near
  is the smallest distance of a camera to the box (at least 1 % of its diagonal), far the largest distance of a
  camera to a box corner, so every ray's samples span the box; it prints them, with the flag that sets them;
* refuses planes (set by the user) between which no camera's central ray meets the scene box, naming the flag.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

DEFAULT_NEAR_FAR = (2.0, 6.0)
"""nerfstudio's (and Blender's) default ``collider_params``."""
FLAG = "--pipeline.model.collider-params near_plane NEAR far_plane FAR"


@dataclass(frozen=True)
class BoxDistances:
    """How far the cameras are from the scene box."""

    nearest: Float[Tensor, " cameras"]
    """Distance of each camera to the nearest point of the box (0 inside it)."""
    farthest: Float[Tensor, " cameras"]
    """Distance of each camera to the farthest corner of the box."""
    entry: Float[Tensor, " cameras"]
    """Where the ray from each camera through the box centre enters the box (0 inside it)."""
    exit: Float[Tensor, " cameras"]
    """Where that ray leaves the box."""


def box_distances(origins: Float[Tensor, "cameras 3"], aabb: Float[Tensor, "2 3"]) -> BoxDistances:
    """The distances of :class:`BoxDistances` for cameras at ``origins`` and the box ``aabb`` (min and max corner)."""
    lo, hi = aabb[0], aabb[1]
    nearest = (origins - torch.maximum(torch.minimum(origins, hi), lo)).norm(dim=-1)
    corners = torch.stack(torch.meshgrid(*[torch.stack([lo[i], hi[i]]) for i in range(3)], indexing="ij"), -1)
    farthest = (origins[:, None] - corners.reshape(1, 8, 3)).norm(dim=-1).amax(dim=1)
    direction = (lo + hi) / 2 - origins
    length = direction.norm(dim=-1, keepdim=True)
    at_centre = length < 1e-9  # a camera at the box centre: any direction; take +z
    direction = torch.where(at_centre, torch.tensor([0.0, 0.0, 1.0]).to(origins), direction / length.clamp_min(1e-12))
    safe = torch.where(direction.abs() < 1e-12, torch.full_like(direction, 1e-12), direction)
    t_lo, t_hi = (lo - origins) / safe, (hi - origins) / safe
    entry = torch.minimum(t_lo, t_hi).amax(dim=-1).clamp_min(0.0)
    exit_ = torch.maximum(t_lo, t_hi).amin(dim=-1)
    return BoxDistances(nearest, farthest, entry, exit_)


def near_far_for(distances: BoxDistances, aabb: Float[Tensor, "2 3"]) -> tuple[float, float]:
    """Planes between which every camera's rays span the box (see the module docstring)."""
    diagonal = float((aabb[1] - aabb[0]).norm())
    return max(float(distances.nearest.min()), 0.01 * diagonal), float(distances.farthest.max())


def _is_blender_layout(dataparser_config: Any) -> bool:
    from nerfstudio.data.dataparsers.blender_dataparser import BlenderDataParserConfig

    return isinstance(dataparser_config, BlenderDataParserConfig)


def resolve_near_far(model: Any, datamanager: Any) -> None:
    """Set, or check, the near and far planes of a NeRF / Mip-NeRF ``model`` for the scene of ``datamanager``."""
    config = model.config
    params = dict(config.collider_params or {})
    near_far = (params.get("near_plane"), params.get("far_plane"))
    dataparser = datamanager.config.dataparser
    if _is_blender_layout(dataparser) or model.collider is None:
        return
    dataset = datamanager.train_dataset
    aabb = dataset.scene_box.aabb.float()
    distances = box_distances(dataset.cameras.camera_to_worlds[:, :3, 3].float(), aabb)
    data = datamanager.config.data or dataparser.data
    if near_far == DEFAULT_NEAR_FAR:
        near, far = near_far_for(distances, aabb)
        config.collider_params = {**params, "near_plane": near, "far_plane": far}
        model.collider.near_plane, model.collider.far_plane = near, far
        print(f"notice: {data}: near/far planes {near:.3g} / {far:.3g} from its cameras and scene box (Blender's "
              f"2 / 6 would put every sample outside it); to choose them, set {FLAG}")  # fmt: skip
        return
    near, far = float(near_far[0]), float(near_far[1])
    if not bool(((near < distances.exit) & (far > distances.entry)).any()):
        raise ValueError(
            f"{data}: between near {near:g} and far {far:g} no camera's rays reach the scene box (the cameras are "
            f"{float(distances.nearest.min()):.3g} to {float(distances.farthest.max()):.3g} from it): set "
            f"{FLAG} within that range, or leave them at 2 / 6 to derive them from the scene"
        )
