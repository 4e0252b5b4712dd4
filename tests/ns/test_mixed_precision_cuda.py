"""``--mixed-precision True`` on CUDA: a norm-* method trains under torch.autocast with finite losses (issue 19).

The norms themselves are tested under CPU autocast in tests/core/test_mixed_precision.py; this runs nerfstudio's
trainer with ``mixed_precision=True`` where a GPU exists, and is skipped elsewhere.
"""

from __future__ import annotations

import pytest
import torch

pytestmark = [
    pytest.mark.slow,  # trains nerfstudio
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (nerfstudio's autocast runs on the GPU)"),
]


@pytest.mark.parametrize("method", ["norm-mipnerf", "norm-neus-facto"])
def test_norm_method_trains_with_mixed_precision_on_cuda(method, tiny_scene, dtu_scan_neus, tmp_path) -> None:
    from norm_nerf.core import running_stat_norms
    from norm_nerf.ns.runs import cpu_preset, method_config, setup_trainer

    data = tiny_scene if method == "norm-mipnerf" else dtu_scan_neus
    cfg = cpu_preset(method_config(method), data, tmp_path / "runs", steps=6, rays=64, samples=8, width=32)
    cfg.mixed_precision = True
    cfg.machine.device_type = "cuda"
    trainer = setup_trainer(cfg)
    assert trainer.mixed_precision
    trainer.train()
    model = trainer.pipeline.model
    for norm in running_stat_norms(model):
        for buf in norm.buffers():
            assert not buf.is_floating_point() or (buf.dtype == torch.float32 and torch.isfinite(buf).all())
    for name, p in model.named_parameters():
        assert p.dtype == torch.float32 and torch.isfinite(p).all(), name
