"""norm-mipnerf / norm-nerf on CPU: registration, training, checkpoints, eval-mode statistics."""

from __future__ import annotations

import pytest
import torch

from norm_nerf.core.norms import RunningStatsNorm


def _load(config_yml):
    from nerfstudio.utils.eval_utils import eval_setup

    _, pipeline, ckpt, step = eval_setup(config_yml, test_mode="test")
    return pipeline, ckpt, step


def test_methods_are_registered() -> None:
    from nerfstudio.plugins.registry import discover_methods

    methods, descriptions = discover_methods()
    assert {"norm-mipnerf", "norm-nerf"} <= set(methods)
    assert "normalized" in descriptions["norm-mipnerf"]


def test_none_matches_base_field_parameter_count() -> None:
    from nerfstudio.field_components.encodings import NeRFEncoding
    from nerfstudio.fields.vanilla_nerf_field import NeRFField

    from norm_nerf.ns.fields import NormNeRFField, NormOptions

    pos, dirs = NeRFEncoding(3, 10, 0.0, 8.0, True), NeRFEncoding(3, 4, 0.0, 4.0, True)
    base = NeRFField(pos, dirs)
    ours = NormNeRFField(pos, dirs, NormOptions(norm="none"))
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(ours) == count(base)
    cn = NormNeRFField(pos, dirs, NormOptions(norm="cn"))
    assert count(cn) == count(base) + 2 * (8 * 256 + 2 * 128)  # affine weight+bias per normalized channel
    head_only = NormNeRFField(pos, dirs, NormOptions(norm="bn", norm_layers="head"))
    assert sum(isinstance(m, RunningStatsNorm) for m in head_only.mlp_base.modules()) == 0
    assert sum(isinstance(m, RunningStatsNorm) for m in head_only.mlp_head.modules()) == 2


@pytest.mark.slow  # mipnerf_run trains norm-mipnerf
def test_train_checkpoint_load_and_eval(mipnerf_run) -> None:
    pipeline, ckpt, step = _load(mipnerf_run)
    assert ckpt.name.endswith(".ckpt") and step == 11
    model = pipeline.model
    norms = [m for m in model.modules() if isinstance(m, RunningStatsNorm)]
    assert norms and all(m.num_slots == 2 for m in norms)
    # both statistics slots (coarse and fine pass) were recalibrated and saved in the checkpoint
    assert all((m.num_batches_tracked > 0).all() for m in norms)
    saved = torch.load(ckpt, map_location="cpu", weights_only=False)["pipeline"]
    key = next(k for k in saved if k.endswith("running_mean"))
    assert saved[key].shape[0] == 2
    metrics = pipeline.get_average_eval_image_metrics()
    assert torch.isfinite(torch.tensor(metrics["psnr"]))
    assert "fine_lpips" in metrics  # NaN without the offline weights, never a download


@pytest.mark.slow
def test_eval_rendering_is_chunk_invariant(mipnerf_run) -> None:
    pipeline, _, _ = _load(mipnerf_run)
    model = pipeline.model.eval()
    camera = pipeline.datamanager.eval_dataset.cameras[0:1]
    images = []
    for chunk in (37, 256):  # 16x16 = 256 rays: many small chunks vs one
        model.config.eval_num_rays_per_chunk = chunk
        images.append(model.get_outputs_for_camera(camera)["rgb_fine"])
    torch.testing.assert_close(images[0], images[1], rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_no_grad_queries_leave_statistics_untouched(mipnerf_run) -> None:
    pipeline, _, _ = _load(mipnerf_run)
    model = pipeline.model.train()
    before = {k: v.clone() for k, v in model.state_dict().items() if "running" in k or "tracked" in k}
    ray_bundle, _ = pipeline.datamanager.next_train(0)
    with torch.no_grad():
        model(ray_bundle)
    after = model.state_dict()
    assert before and all(torch.equal(after[k], v) for k, v in before.items())
    model(ray_bundle)  # a training pass (with gradients) updates them
    assert any(not torch.equal(model.state_dict()[k], v) for k, v in before.items())


@pytest.mark.slow  # mipnerf_run trains
def test_mipnerf_coarse_and_fine_passes_use_their_own_statistics_slots(mipnerf_run) -> None:
    """One training pass counts one batch in slot 0 (uniform samples) and one in slot 1 (PDF samples), and leaves
    the field in slot 0."""
    pipeline, _, _ = _load(mipnerf_run)
    model = pipeline.model.train()
    norms = [m for m in model.field.modules() if isinstance(m, RunningStatsNorm)]
    before = [m.num_batches_tracked.clone() for m in norms]
    ray_bundle, _ = pipeline.datamanager.next_train(0)
    model(ray_bundle)
    for m, tracked in zip(norms, before):
        assert (m.num_batches_tracked - tracked).tolist() == [1, 1] and m.slot == 0


@pytest.mark.slow
def test_norm_nerf_trains_with_norm_none(tiny_scene, tmp_path) -> None:
    from norm_nerf.ns.runs import cpu_preset, method_config, train

    cfg = cpu_preset(method_config("norm-nerf"), tiny_scene, tmp_path, steps=3, rays=32, samples=8, width=16)
    cfg.pipeline.model.norm = "none"
    config_yml = train(cfg)
    pipeline, _, _ = _load(config_yml)
    assert not any(isinstance(m, RunningStatsNorm) for m in pipeline.model.modules())
