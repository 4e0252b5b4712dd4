"""The pipeline of the norm-* methods: nerfstudio's VanillaPipeline, with data parallelism that also works on CPU.

nerfstudio 1.1.5 wraps the model as ``DDP(model, device_ids=[local_rank])`` and waits at
``barrier(device_ids=[local_rank])``; both are CUDA-only, so several CPU (gloo) processes cannot train. This pipeline
builds nerfstudio's pipeline for one process and wraps the model itself:

* ``device_ids`` only for a CUDA model (CPU modules take none), a plain ``barrier()`` on gloo;
* ``broadcast_buffers=False``: the norms all-reduce their batch statistics (``norm_nerf.core.distributed``), so every
  rank already holds the same running statistics; DDP's per-step broadcast from rank 0 would only hide a rank
  whose statistics differ (the multi-process tests compare them);
* checkpoints hold the unwrapped model's keys (``_model.field...``, not ``_model.module.field...``) whatever the
  world size, so any tool reads them and a run resumes in any number of processes.
"""

from __future__ import annotations

import typing
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.distributed as dist
from nerfstudio.model_components.scene_colliders import NearFarCollider
from nerfstudio.models.base_model import Model
from nerfstudio.pipelines.base_pipeline import VanillaPipeline, VanillaPipelineConfig
from torch.cuda.amp.grad_scaler import GradScaler
from torch.nn.parallel import DistributedDataParallel as DDP

from norm_nerf.ns.checkpoints import SETTINGS_KEY, check_fits, model_settings
from norm_nerf.ns.scene_bounds import resolve_near_far

_DDP_PREFIX = "_model.module."


@dataclass
class NormPipelineConfig(VanillaPipelineConfig):
    """nerfstudio's VanillaPipelineConfig; several processes (torchrun) work on CPU (gloo) as on GPU (NCCL)."""

    _target: type = field(default_factory=lambda: NormPipeline)
    """Target class to instantiate."""


class NormPipeline(VanillaPipeline):
    """VanillaPipeline whose model is wrapped in DDP in a way that works on CPU and GPU alike (see module doc)."""

    config: NormPipelineConfig

    def __init__(
        self,
        config: NormPipelineConfig,
        device: str,
        test_mode: Literal["test", "val", "inference"] = "val",
        world_size: int = 1,
        local_rank: int = 0,
        grad_scaler: GradScaler | None = None,
    ) -> None:
        super().__init__(config, device, test_mode, world_size=1, local_rank=local_rank, grad_scaler=grad_scaler)
        if isinstance(getattr(self._model, "collider", None), NearFarCollider):  # NeRF, Mip-NeRF
            resolve_near_far(self._model, self.datamanager)
        self.world_size = world_size
        if world_size > 1:
            cuda = torch.device(device).type == "cuda"
            ids = [torch.device(device).index or 0] if cuda else None
            ddp = DDP(self._model, device_ids=ids, find_unused_parameters=True, broadcast_buffers=False)
            self._model = typing.cast(Model, ddp)
            dist.barrier(device_ids=ids)

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """The pipeline's state with the keys of the unwrapped model, in one process or several (nerfstudio's loader
        drops the state's version metadata anyway, so none is kept)."""
        state = super().state_dict(*args, **kwargs)
        if not any(k.startswith(_DDP_PREFIX) for k in state):
            return state
        return OrderedDict(
            ("_model." + k[len(_DDP_PREFIX) :] if k.startswith(_DDP_PREFIX) else k, v) for k, v in state.items()
        )

    def checkpoint_state(self) -> dict[str, Any]:
        """What a checkpoint holds of the pipeline: :meth:`state_dict` and the model's settings
        (:data:`~norm_nerf.ns.checkpoints.SETTINGS_KEY`), which :meth:`load_pipeline` compares with the config."""
        return {**self.state_dict(), SETTINGS_KEY: model_settings(self.model.config)}

    def load_pipeline(self, loaded_state: dict[str, Any], step: int) -> None:
        """nerfstudio's load, after refusing a checkpoint whose model does not fit this config
        (:func:`~norm_nerf.ns.checkpoints.check_fits`; nerfstudio itself drops what does not match)."""
        state = {_unwrapped_key(k): v for k, v in loaded_state.items()}
        check_fits(self.model.config, self.model.state_dict(), state)
        state.pop(SETTINGS_KEY, None)
        super().load_pipeline(state, step)


def _unwrapped_key(key: str) -> str:
    """A checkpoint key without DDP's ``module.`` (saved by another trainer from a wrapped model)."""
    for wrapped, plain in (("module.", ""), (_DDP_PREFIX, "_model.")):
        if key.startswith(wrapped):
            key = plain + key[len(wrapped) :]
    return key
