"""A one-time check of the Triton kernels on a device: every kernel on a 37 x 5 matrix (several tiles, masked
columns) against float64 autograd of the reference layers, on the same device (the tests also run it on other
shapes and launch configurations).

Run by :func:`norm_nerf.core.triton.triton_kernels_for` before the kernels first serve a CUDA device (a compiler,
driver or numerical failure then means one warning and the eager path, not a failed training step). It draws its
data from its own generator, so the caller's random state is untouched.
"""

from __future__ import annotations

import torch
from torch import Tensor

SHAPE = (37, 5)
EPS = 1e-5


def _close(got: Tensor, want: Tensor, what: str) -> None:
    want = want.detach()
    tol = 1e-3 * max(1.0, float(want.abs().max()))
    err = float((got.detach().double() - want).abs().max())
    if not err <= tol:  # also catches NaN
        raise AssertionError(f"{what}: max error {err:.3g} > {tol:.3g}")


def run(kernels: object, device: torch.device, shape: tuple[int, int] = SHAPE) -> None:
    """Raise on the first kernel output that differs from the reference by more than float32 tolerance."""
    from norm_nerf.core.norms import build_norm

    gen = torch.Generator().manual_seed(0)
    n, c = shape

    def draw(*shape: int, scale: float = 1.0, offset: float = 0.0) -> Tensor:
        return (torch.randn(*shape, generator=gen, dtype=torch.float64) * scale + offset).to(device)

    x, g, v = draw(n, c, scale=2.0, offset=1.0), draw(n, c), draw(n, c)
    w, b = draw(c, scale=0.2, offset=1.0), draw(c)
    x32, g32, v32, w32, b32 = (t.float().contiguous() for t in (x, g, v, w, b))
    with torch.inference_mode(False), torch.enable_grad(), torch.autocast(device.type, enabled=False):
        for kind in ("cn", "bn", "gn", "rms"):
            ref = build_norm(kind, c, impl="reference").to(device=device, dtype=torch.float64).train()
            with torch.no_grad():
                ref.weight.copy_(w)
                ref.bias.copy_(b)
            xr, gr = x.clone().requires_grad_(True), g.clone().requires_grad_(True)
            y = ref(xr)
            dx, dw, db = torch.autograd.grad(y, [xr, ref.weight, ref.bias], gr, create_graph=kind == "cn")
            if kind == "cn":
                y32, *stats = kernels.cross_norm_forward(x32, w32, b32, EPS)
                got = kernels.cross_norm_backward(g32, x32, w32, *stats, EPS)
                gx, gg, gw = torch.autograd.grad(dx, [xr, gr, ref.weight], v)
                for out, want, what in zip(
                    kernels.cross_norm_double_backward(v32, g32, x32, w32, *stats, EPS),
                    (gx, gg, gw),
                    ("cn double backward dx", "cn double backward dg", "cn double backward dw"),
                ):
                    _close(out, want, what)
            elif kind == "rms":
                y32, inv = kernels.rms_norm_forward(x32, w32, b32, EPS)
                got = kernels.rms_norm_backward(g32, x32, w32, inv)
            else:
                global_stats = kind == "gn"
                y32, mean, _, rstd = kernels.scale_shift_forward(x32, w32, b32, EPS, global_stats)
                dx32, s_g, s_gx = kernels.scale_shift_backward(g32, x32, w32, mean, rstd, global_stats)
                got = (dx32, s_gx * rstd, s_g)
            _close(y32, y, f"{kind} forward")
            for out, want, what in zip(got, (dx, dw, db), ("dx", "d_weight", "d_bias")):
                _close(out, want, f"{kind} {what}")
