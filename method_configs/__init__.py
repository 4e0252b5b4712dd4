"""nerfstudio method specifications of norm-nerf (entry point group ``nerfstudio.method_configs``).

Every method is its base nerfstudio method with normalized field MLPs; ``--pipeline.model.norm none``
runs the base method through the same code. Defaults: Blender data (``norm-blender``: nerfstudio's parser
with input checks), the plain (in-process) data manager, CPU when no GPU is present.
"""

from __future__ import annotations

import torch
from nerfstudio.configs.base_config import MachineConfig
from nerfstudio.data.datamanagers.base_datamanager import VanillaDataManagerConfig
from nerfstudio.engine.optimizers import RAdamOptimizerConfig
from nerfstudio.engine.trainer import TrainerConfig
from nerfstudio.pipelines.base_pipeline import VanillaPipelineConfig
from nerfstudio.plugins.types import MethodSpecification

from norm_nerf.ns.blender_dataparser import NormBlenderDataParserConfig
from norm_nerf.ns.models import NormMipNerfModelConfig, NormNeRFModelConfig


def _machine() -> MachineConfig:
    return MachineConfig(device_type="cuda" if torch.cuda.is_available() else "cpu")


def _fields_optimizer() -> dict:
    return {"fields": {"optimizer": RAdamOptimizerConfig(lr=5e-4, eps=1e-08), "scheduler": None}}


norm_mipnerf = MethodSpecification(
    config=TrainerConfig(
        method_name="norm-mipnerf",
        machine=_machine(),
        pipeline=VanillaPipelineConfig(
            datamanager=VanillaDataManagerConfig(
                dataparser=NormBlenderDataParserConfig(), train_num_rays_per_batch=1024
            ),
            model=NormMipNerfModelConfig(
                loss_coefficients={"rgb_loss_coarse": 0.1, "rgb_loss_fine": 1.0},
                num_coarse_samples=128,
                num_importance_samples=128,
                eval_num_rays_per_chunk=1024,
            ),
        ),
        optimizers=_fields_optimizer(),
    ),
    description="Mip-NeRF with normalized (default: cross-normalized) field MLPs (Cai et al., CVPR 2024).",
)

norm_nerf = MethodSpecification(
    config=TrainerConfig(
        method_name="norm-nerf",
        machine=_machine(),
        pipeline=VanillaPipelineConfig(
            datamanager=VanillaDataManagerConfig(dataparser=NormBlenderDataParserConfig()),
            model=NormNeRFModelConfig(),
        ),
        optimizers=_fields_optimizer(),
    ),
    description="Vanilla NeRF with normalized (default: cross-normalized) field MLPs.",
)
