"""Mixed precision: every norm computes its statistics in float32 and returns the input's dtype (issue 19).

Under ``torch.autocast`` a Linear hands the norms bfloat16/float16 activations; sums over many points overflow
float16 and lose bits in bfloat16. Checked on the CPU against a float32 reference within low-precision tolerances.
"""

from __future__ import annotations

import pytest
import torch

from norm_nerf.core import NormMLP, build_norm, running_stat_norms
from norm_nerf.core.norms import NORM_IMPLS

KINDS = ("bn", "ln", "gn", "cn", "rms")


def _pair(kind: str, impl: str, c: int = 24) -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(0)
    a = build_norm(kind, c, impl=impl)
    with torch.no_grad():
        a.weight.uniform_(0.5, 1.5)
        a.bias.uniform_(-0.5, 0.5)
    b = build_norm(kind, c, impl=impl)
    b.load_state_dict(a.state_dict())
    return a, b


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("impl", NORM_IMPLS)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_input_matches_float32(kind: str, impl: str, dtype: torch.dtype) -> None:
    low, ref = _pair(kind, impl)
    # a large offset and many points: fp16 sums of x^2 overflow (65504), bf16 sums lose the spread
    x = (torch.randn(3000, 24) * 3 + 40).to(dtype)
    x_low = x.clone().requires_grad_(True)
    x_ref = x.float().requires_grad_(True)
    y_low, y_ref = low(x_low), ref(x_ref)
    assert y_low.dtype == dtype
    assert torch.isfinite(y_low.float()).all()
    tol = 2e-2 if dtype == torch.float16 else 6e-2
    torch.testing.assert_close(y_low.float(), y_ref, atol=tol, rtol=tol)
    g = torch.randn_like(y_ref)
    (y_low.float() * g).sum().backward()
    (y_ref * g).sum().backward()
    assert x_low.grad.dtype == dtype and low.weight.grad.dtype == torch.float32
    torch.testing.assert_close(low.weight.grad, ref.weight.grad, atol=tol * 30, rtol=tol)
    torch.testing.assert_close(low.bias.grad, ref.bias.grad, atol=tol * 30, rtol=tol)
    torch.testing.assert_close(x_low.grad.float(), x_ref.grad, atol=tol, rtol=tol)
    for a, b in zip(running_stat_norms(low), running_stat_norms(ref)):
        for name, buf in a.named_buffers():
            assert buf.dtype == dict(b.named_buffers())[name].dtype  # float32 stays float32
            torch.testing.assert_close(buf.float(), dict(b.named_buffers())[name].float(), atol=1e-3, rtol=1e-3)


@pytest.mark.parametrize("kind", KINDS)
def test_mlp_under_cpu_autocast(kind: str) -> None:
    """A normalized MLP under ``torch.autocast("cpu", bfloat16)``: outputs, gradients and running statistics as in
    float32 within bfloat16's tolerance; running statistics remain float32."""
    torch.manual_seed(0)
    net = NormMLP(3, 1, depth=3, width=32, norm=kind)
    ref = NormMLP(3, 1, depth=3, width=32, norm=kind)
    ref.load_state_dict(net.state_dict())
    x = torch.rand(2048, 3) * 2 - 1
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = net(x)
    y_ref = ref(x)
    assert y.dtype == torch.bfloat16
    torch.testing.assert_close(y.float(), y_ref, atol=0.1, rtol=0.1)
    y.float().square().mean().backward()
    y_ref.square().mean().backward()
    for (name, p), q in zip(net.named_parameters(), ref.parameters()):
        assert p.grad.dtype == torch.float32, name
        assert torch.isfinite(p.grad).all(), name
        scale = q.grad.abs().max().clamp_min(1e-3)
        assert (p.grad - q.grad).abs().max() <= 0.15 * scale, name
    for a in running_stat_norms(net):
        assert all(b.dtype == torch.float32 for b in a.buffers() if b.is_floating_point())


def test_cast_model_keeps_its_dtype() -> None:
    """A model cast to bfloat16 as a whole: output and parameter gradients in bfloat16, statistics in float32."""
    norm = build_norm("cn", 16).to(torch.bfloat16)
    x = (torch.randn(4096, 16) + 100).to(torch.bfloat16)
    y = norm(x)
    assert y.dtype == torch.bfloat16 and torch.isfinite(y.float()).all()
    y.float().sum().backward()
    assert norm.weight.grad.dtype == torch.bfloat16
    ref = build_norm("cn", 16)(x.float())
    torch.testing.assert_close(y.float(), ref, atol=6e-2, rtol=6e-2)
