"""Method strings -> networks: parsing, the papers' 13 methods, options, errors."""

from __future__ import annotations

import pytest
import torch

from norm_nerf.core import PAPER_METHODS, HashGridConfig, build_network, count_parameters, parse_method
from norm_nerf.core.norms import CrossNorm


def test_parse_method() -> None:
    assert parse_method("relu") == ("relu", "none")
    assert parse_method("PE+CN") == ("pe", "cn")
    assert parse_method("hash+bn") == ("hash", "bn")
    assert parse_method("mfn-gabor") == ("mfn-gabor", "none")


@pytest.mark.parametrize(
    "bad, match",
    [
        ("tanh", "unknown method 'tanh'"),
        ("pe+xn", "unknown norm 'xn'; valid norms are"),
        ("siren+bn", "baselines .* take no normalization"),
    ],
)
def test_parse_errors(bad: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        parse_method(bad)


@pytest.mark.parametrize("method", PAPER_METHODS)
def test_paper_methods_build_and_train_step(method: str) -> None:
    net = build_network(method, 2, 3, depth=3, width=12, seed=0)
    x = torch.rand(64, 2) * 2 - 1
    loss = (net(x) - x.sum(-1, keepdim=True)).square().mean()
    loss.backward()
    assert torch.isfinite(loss)


def test_norm_is_placed_and_pe_changes_input_size() -> None:
    net = build_network("pe+cn", 2, 3, depth=2, width=8, num_frequencies=4)
    assert sum(isinstance(m, CrossNorm) for m in net.modules()) == 2
    assert net.body.layers[0].in_features == 2 * (1 + 2 * 4)
    assert count_parameters(build_network("relu", 2, 3, 2, 8)) == (2 * 8 + 8) + (8 * 8 + 8) + (8 * 3 + 3)


def test_hash_network_maps_coordinates_to_unit_cube() -> None:
    grid = HashGridConfig(num_levels=2, log2_hashmap_size=10, max_resolution=32)
    net = build_network("hash+ln", 3, 1, depth=1, width=8, hash_grid=grid)
    assert net(torch.rand(5, 3) * 2 - 1).shape == (5, 1)


def test_build_network_errors() -> None:
    with pytest.raises(TypeError, match="unknown options \\['num_freqs'\\]"):
        build_network("pe", 2, 3, num_freqs=4)
    with pytest.raises(ValueError, match=r"expects coordinates of shape \(\.\.\., 2\)"):
        build_network("pe+cn", 2, 3, 2, 8)(torch.rand(4, 3))
    with pytest.raises(ValueError, match="out_dim"):
        build_network("relu", 2, 0, 2, 8)
