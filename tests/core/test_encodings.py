"""Encodings: values by hand, shapes, dtypes, determinism, IPE against Monte Carlo, hash grid checks."""

from __future__ import annotations

import math

import pytest
import torch

from norm_nerf.core import FourierEncoding, GaussianFourierEncoding, HashGridEncoding, IntegratedFourierEncoding
from norm_nerf.core.hashgrid import level_layout, tcnn_available


def test_fourier_encoding_by_hand() -> None:
    enc = FourierEncoding(1, num_frequencies=2)
    y = enc(torch.tensor([[0.5]], dtype=torch.float64))
    # [x, sin(pi x), sin(2 pi x), cos(pi x), cos(2 pi x)] at x = 0.5
    torch.testing.assert_close(y, torch.tensor([[0.5, 1.0, 0.0, 0.0, -1.0]], dtype=torch.float64))
    assert enc.out_dim == 5 and FourierEncoding(2, 10).out_dim == 42
    assert FourierEncoding(3, 4, include_input=False).out_dim == 24


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_encodings_keep_shape_and_dtype(dtype: torch.dtype) -> None:
    x = torch.rand(4, 5, 2, dtype=dtype) * 2 - 1
    for enc in [FourierEncoding(2, 3), GaussianFourierEncoding(2, 16), IntegratedFourierEncoding(2, 3)]:
        y = enc(x)
        assert y.shape == (4, 5, enc.out_dim) and y.dtype == dtype


def test_integrated_encoding_zero_variance_is_pe_and_matches_monte_carlo() -> None:
    ipe = IntegratedFourierEncoding(2, 4, include_input=False).double()
    mean = torch.tensor([[0.3, -0.2]], dtype=torch.float64)
    torch.testing.assert_close(ipe(mean, torch.zeros_like(mean)), FourierEncoding(2, 4, False).double()(mean))
    var = torch.tensor([[0.01, 0.002]], dtype=torch.float64)
    gen = torch.Generator().manual_seed(0)
    samples = mean + var.sqrt() * torch.randn(200_000, 2, generator=gen, dtype=torch.float64)
    mc = FourierEncoding(2, 4, False).double()(samples).mean(0, keepdim=True)
    torch.testing.assert_close(ipe(mean, var), mc, atol=5e-3, rtol=0)
    with pytest.raises(ValueError, match="var shape"):
        ipe(mean, torch.zeros(1, 3))


def test_gaussian_features_seeded() -> None:
    a, b, c = (GaussianFourierEncoding(2, 8, 5.0, seed=s) for s in (1, 1, 2))
    assert torch.equal(a.B, b.B) and not torch.equal(a.B, c.B)
    assert a.B.std() > 2.0  # sigma 5


def test_encoding_errors() -> None:
    with pytest.raises(ValueError, match=r"shape \(\.\.\., 2\)"):
        FourierEncoding(2, 3)(torch.rand(3, 3))
    with pytest.raises(ValueError):
        GaussianFourierEncoding(2, 8, sigma=0.0)


def _grid(**kw) -> HashGridEncoding:
    opts = dict(in_dim=2, num_levels=4, features_per_level=2, log2_hashmap_size=8, base_resolution=4)
    opts.update(kw)
    return HashGridEncoding(max_resolution=32, implementation="torch", **opts)


def test_hash_grid_layout_like_tcnn() -> None:
    scales, res, offsets = level_layout(2, 4, 4, 2.0, 8)
    assert scales == [3.0, 7.0, 15.0, 31.0] and res == [4, 8, 16, 32]
    # 16 -> 16 entries, 64 -> 64, 256 -> 256 (= 2^8), 1024 -> capped at 256
    assert offsets == [0, 16, 80, 336, 592]


def test_hash_grid_vertex_values_and_interpolation() -> None:
    grid = _grid().double()
    with torch.no_grad():
        grid.table.copy_(torch.arange(grid.table.numel(), dtype=torch.float64).view_as(grid.table))
    # Level 0: scale 3, pos = 3x + 0.5. At x = (1/6, 1/2): pos = (1, 2) exactly -> dense row 1 + 2*4 = 9.
    y = grid(torch.tensor([[1 / 6, 1 / 2]], dtype=torch.float64))
    torch.testing.assert_close(y[0, :2], grid.table[9])
    # halfway between rows 9 and 10 along x
    y = grid(torch.tensor([[1 / 6 + 1 / 6, 1 / 2]], dtype=torch.float64))
    torch.testing.assert_close(y[0, :2], 0.5 * (grid.table[9] + grid.table[10]))


def test_hash_grid_hashes_fine_levels() -> None:
    grid = _grid().double()
    with torch.no_grad():
        grid.table.copy_(torch.arange(grid.table.numel(), dtype=torch.float64).view_as(grid.table))
    # Level 3: scale 31, resolution 32 (1024 > 256 entries) -> hashed. Vertex (3, 5): x = (3 - 0.5) / 31.
    x = torch.tensor([[2.5 / 31, 4.5 / 31]], dtype=torch.float64)
    row = ((3 * 1) ^ ((5 * 2654435761) & 0xFFFFFFFF)) % 256 + 336
    torch.testing.assert_close(grid(x)[0, 6:8], grid.table[row], atol=1e-6, rtol=0)


def test_hash_grid_gradients_and_determinism() -> None:
    torch.manual_seed(5)
    a = _grid()
    torch.manual_seed(5)
    b = _grid()
    assert torch.equal(a.table, b.table)
    x = torch.rand(100, 2)
    y = a(x)
    assert y.shape == (100, 8) and y.dtype == torch.float32
    y.square().sum().backward()
    assert a.table.grad is not None and a.table.grad.abs().sum() > 0


def test_hash_grid_bad_args() -> None:
    with pytest.raises(ValueError, match="max_resolution"):
        HashGridEncoding(2, base_resolution=16, max_resolution=8, implementation="torch")
    with pytest.raises(ValueError, match="implementation"):
        HashGridEncoding(2, implementation="cuda")  # type: ignore[arg-type]


@pytest.mark.skipif(not tcnn_available(), reason="tinycudann with CUDA not available")
def test_hash_grid_torch_matches_tcnn() -> None:
    torch.manual_seed(0)
    ref = HashGridEncoding(3, num_levels=8, log2_hashmap_size=12, max_resolution=256, implementation="torch").cuda()
    fast = HashGridEncoding(3, num_levels=8, log2_hashmap_size=12, max_resolution=256, implementation="tcnn").cuda()
    with torch.no_grad():
        fast.tcnn_encoding.params.copy_(ref.table.reshape(-1).to(fast.tcnn_encoding.params.dtype))
    x = torch.rand(4096, 3, device="cuda")
    torch.testing.assert_close(fast(x), ref(x), atol=2e-3, rtol=1e-2)
    assert math.isclose(fast.per_level_scale, ref.per_level_scale)
