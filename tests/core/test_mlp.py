"""NormMLP structure: norm after every hidden Linear, none after the output, skips, fresh modules."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from norm_nerf.core import NormMLP
from norm_nerf.core.norms import CrossNorm


def test_structure_and_order() -> None:
    mlp = NormMLP(3, 2, depth=4, width=16, norm="cn")
    assert len(mlp.layers) == len(mlp.norms) == len(mlp.acts) == 4
    assert all(isinstance(n, CrossNorm) for n in mlp.norms)
    assert isinstance(mlp.output, nn.Linear) and mlp.output.out_features == 2
    # modules are fresh per layer, not shared
    assert len({id(n) for n in mlp.norms}) == 4 and len({id(a) for a in mlp.acts}) == 4
    # Linear -> norm -> activation: recompute by hand
    x = torch.randn(32, 3)
    h = x
    for lin, norm in zip(mlp.layers, mlp.norms):
        h = torch.relu(norm(lin(h)))
    torch.testing.assert_close(mlp(x), mlp.output(h))


def test_no_norm_after_output_layer() -> None:
    mlp = NormMLP(2, 5, depth=2, width=8, norm="bn")
    norm_modules = [m for m in mlp.modules() if isinstance(m, nn.Module) and hasattr(m, "running_mean")]
    assert len(norm_modules) == 2
    y = mlp(torch.randn(64, 2))
    # an output BN would force zero mean per channel; a plain Linear does not
    assert y.mean(0).abs().max() > 1e-3


def test_skips_concatenate_the_input() -> None:
    mlp = NormMLP(3, 1, depth=4, width=8, skips=(2,))
    assert mlp.layers[2].in_features == 8 + 3 and mlp.layers[1].in_features == 8
    assert mlp(torch.randn(5, 3)).shape == (5, 1)


def test_output_activation_and_trunk_mode() -> None:
    mlp = NormMLP(2, 3, depth=2, width=8, output_activation="sigmoid")
    y = mlp(torch.randn(100, 2) * 10)
    assert (y > 0).all() and (y < 1).all()
    trunk = NormMLP(2, None, depth=2, width=8, norm="ln")
    assert trunk(torch.randn(4, 2)).shape == (4, 8) and trunk.feature_dim == 8


def test_depth_zero_is_linear() -> None:
    mlp = NormMLP(2, 3, depth=0, width=8)
    assert mlp(torch.randn(4, 7, 2)).shape == (4, 7, 3)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="unknown norm 'xn'"):
        NormMLP(2, 1, 2, 8, norm="xn")
    with pytest.raises(ValueError, match="unknown activation"):
        NormMLP(2, 1, 2, 8, activation="swishy")
    with pytest.raises(ValueError, match="skip indices"):
        NormMLP(2, 1, 2, 8, skips=(5,))
    with pytest.raises(ValueError, match=r"expects inputs of shape \(\.\.\., 2\)"):
        NormMLP(2, 1, 2, 8)(torch.randn(4, 3))
