"""SIREN, WIRE and MFN: shapes, dtypes, initialisation, determinism under a seed."""

from __future__ import annotations

import math

import pytest
import torch

from norm_nerf.core import MFN, Siren, Wire, build_network, count_parameters

BASELINES = ["siren", "wire", "mfn", "mfn-gabor"]


@pytest.mark.parametrize("method", BASELINES)
def test_shapes_dtype_determinism(method: str) -> None:
    a = build_network(method, 2, 3, depth=3, width=16, seed=7)
    b = build_network(method, 2, 3, depth=3, width=16, seed=7)
    c = build_network(method, 2, 3, depth=3, width=16, seed=8)
    x = torch.rand(6, 5, 2) * 2 - 1
    ya, yb, yc = a(x), b(x), c(x)
    assert ya.shape == (6, 5, 3) and ya.dtype == torch.float32 and not ya.is_complex()
    assert torch.equal(ya, yb) and not torch.equal(ya, yc)
    ya.square().mean().backward()
    assert all(p.grad is not None for p in a.parameters())


def test_siren_initialisation() -> None:
    net = Siren(2, 1, depth=3, width=64, w0=30.0)
    assert net.layers[0].weight.abs().max() <= 1 / 2
    bound = math.sqrt(6 / 64) / 30
    assert net.layers[1].weight.abs().max() <= bound and net.layers[1].weight.abs().max() > 0.9 * bound
    # sin(w0 * .) activations: outputs of first layer span many periods over [-1, 1]
    h = torch.sin(30 * net.layers[0](torch.linspace(-1, 1, 1000)[:, None].expand(-1, 2)))
    assert h.abs().max() > 0.99


def test_wire_is_complex_inside_real_outside() -> None:
    net = Wire(2, 3, depth=3, width=28)
    assert not net.layers[0].weight.is_complex() and net.layers[1].weight.is_complex()
    assert net.layers[0].out_features == int(28 / math.sqrt(2))
    assert count_parameters(net) == sum(p.numel() * (2 if p.is_complex() else 1) for p in net.parameters())


def test_mfn_variants() -> None:
    gabor = MFN(2, 1, depth=4, width=8, kind="gabor")
    assert len(gabor.filters) == 4 and len(gabor.linears) == 3 and (gabor.filters[0].gamma > 0).all()
    with pytest.raises(ValueError, match="fourier' or 'gabor"):
        MFN(2, 1, 2, 8, kind="wavelet")  # type: ignore[arg-type]


@pytest.mark.parametrize("cls", [Siren, Wire, MFN])
def test_bad_sizes(cls) -> None:
    with pytest.raises(ValueError, match="depth"):
        cls(2, 1, 0, 8)
