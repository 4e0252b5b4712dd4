"""nerfstudio method specifications of norm-nerf (entry point group ``nerfstudio.method_configs``).

Every method is its base nerfstudio method with normalized field MLPs; ``--pipeline.model.norm none``
runs the base method through the same code. Defaults: Blender data (``norm-blender``: nerfstudio's parser
with input checks; ``norm-neus``: NeuS/DTU scans, ``norm-dtu``), the plain (in-process) data manager, CPU when
no GPU is present, and a trainer that stops with a clear error (naming the step) when the training loss or the
model becomes non-finite, before anything diverged is saved (``norm_nerf.ns.trainer``).
"""

from __future__ import annotations

import torch
from nerfstudio.configs.base_config import MachineConfig
from nerfstudio.data.datamanagers.base_datamanager import VanillaDataManagerConfig
from nerfstudio.engine.optimizers import AdamOptimizerConfig, RAdamOptimizerConfig
from nerfstudio.engine.schedulers import CosineDecaySchedulerConfig, MultiStepSchedulerConfig
from nerfstudio.models.base_model import ModelConfig
from nerfstudio.plugins.types import MethodSpecification

from norm_nerf.ns.blender_dataparser import NormBlenderDataParserConfig
from norm_nerf.ns.dtu_dataparser import NormDTUDataParserConfig
from norm_nerf.ns.nerf import NormMipNerfModelConfig, NormNeRFModelConfig
from norm_nerf.ns.neus import NormNeuSFactoModelConfig, NormNeuSModelConfig
from norm_nerf.ns.pipeline import NormPipelineConfig
from norm_nerf.ns.trainer import NormTrainerConfig


def _machine() -> MachineConfig:
    return MachineConfig(device_type="cuda" if torch.cuda.is_available() else "cpu")


def _fields_optimizer() -> dict:
    return {"fields": {"optimizer": RAdamOptimizerConfig(lr=5e-4, eps=1e-08), "scheduler": None}}


norm_mipnerf = MethodSpecification(
    config=NormTrainerConfig(
        method_name="norm-mipnerf",
        machine=_machine(),
        pipeline=NormPipelineConfig(
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
    config=NormTrainerConfig(
        method_name="norm-nerf",
        machine=_machine(),
        pipeline=NormPipelineConfig(
            datamanager=VanillaDataManagerConfig(dataparser=NormBlenderDataParserConfig()),
            model=NormNeRFModelConfig(),
        ),
        optimizers=_fields_optimizer(),
    ),
    description="Vanilla NeRF with normalized (default: cross-normalized) field MLPs.",
)


def _neus_optimizer(warm_up: int, steps: int) -> dict:
    """NeuS: Adam 5e-4, linear warm-up then cosine decay to 5 % (fields and background alike)."""

    def group() -> dict:
        return {
            "optimizer": AdamOptimizerConfig(lr=5e-4, eps=1e-15),
            "scheduler": CosineDecaySchedulerConfig(warm_up_end=warm_up, learning_rate_alpha=0.05, max_steps=steps),
        }

    return {"fields": group(), "field_background": group()}


def _surface_method(
    name: str, model: ModelConfig, rays: int, steps: int, eval_image_every: int, save_every: int, optimizers: dict
) -> NormTrainerConfig:
    """A surface method on NeuS/DTU scans (norm-dtu) with the plain data manager; evaluates one image at a time."""
    return NormTrainerConfig(
        method_name=name,
        machine=_machine(),
        steps_per_eval_image=eval_image_every,
        steps_per_eval_batch=5000,
        steps_per_save=save_every,
        steps_per_eval_all_images=1000000,
        max_num_iterations=steps,
        pipeline=NormPipelineConfig(
            datamanager=VanillaDataManagerConfig(
                dataparser=NormDTUDataParserConfig(), train_num_rays_per_batch=rays, eval_num_rays_per_batch=rays
            ),
            model=model,
        ),
        optimizers=optimizers,
    )


norm_neus = MethodSpecification(
    config=_surface_method(
        "norm-neus",
        NormNeuSModelConfig(eval_num_rays_per_chunk=1024),
        rays=512,
        steps=300000,
        eval_image_every=500,
        save_every=20000,
        optimizers=_neus_optimizer(warm_up=5000, steps=300000),
    ),
    description="NeuS surface reconstruction with normalized (default: cross-normalized) SDF and colour MLPs.",
)

_proposal_optimizer = {
    "optimizer": AdamOptimizerConfig(lr=1e-2, eps=1e-15),
    "scheduler": MultiStepSchedulerConfig(max_steps=20001, milestones=(10000, 1500, 18000)),
}
norm_neus_facto = MethodSpecification(
    config=_surface_method(
        "norm-neus-facto",
        NormNeuSFactoModelConfig(eval_num_rays_per_chunk=2048),
        rays=2048,
        steps=20001,
        eval_image_every=5000,
        save_every=2000,
        optimizers={**_neus_optimizer(warm_up=500, steps=20001), "proposal_networks": _proposal_optimizer},
    ),
    description="NeuS-facto (hash grid, proposal networks) with normalized SDF and colour MLPs; plain torch on CPU.",
)
