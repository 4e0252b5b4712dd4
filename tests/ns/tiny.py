"""Tiny nerfstudio configs of the norm-* methods for tests: a few rays, samples and features, so that steps take
milliseconds on CPU."""

from __future__ import annotations

from pathlib import Path

from nerfstudio.engine.trainer import TrainerConfig

OBJECT_RADIUS = 0.6
"""Radius of the object of the conftest ``dtu_scan_neus`` scene (the SDF's initial sphere)."""


def tiny_config(method: str, data: Path, out: Path, steps: int, rays: int = 64, norm: str | None = None,
                recalibration_batches: int = 2) -> TrainerConfig:  # fmt: skip
    """``method`` (``norm-mipnerf``, ``norm-neus``, ``norm-neus-facto``, ...) shrunk to test size on ``data``."""
    from norm_nerf.core.hashgrid import HashGridConfig
    from norm_nerf.ns.runs import cpu_preset, method_config

    cfg = cpu_preset(method_config(method), data, out, steps=steps, rays=rays, samples=8, width=32)
    model = cfg.pipeline.model
    model.recalibration_batches = recalibration_batches
    if norm is not None:
        model.norm = norm
    if method.startswith("norm-neus"):
        cfg.pipeline.datamanager.dataparser.cache_dir = Path(out) / "cache"
        model.background_model = "none"
        model.sdf_field.sphere_radius = OBJECT_RADIUS
    if method == "norm-neus-facto":  # tiny hash grids and proposal networks
        model.num_neus_samples_per_ray, model.num_proposal_samples_per_ray = 8, (16, 8)
        model.sdf_field.grid = HashGridConfig(num_levels=4, log2_hashmap_size=12, max_resolution=64)
        model.proposal_net_args_list = [{"hidden_dim": 8, "log2_hashmap_size": 10, "num_levels": 4, "max_res": 32}] * 2
    return cfg
