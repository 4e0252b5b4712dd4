"""Empirical neural tangent kernel (NTK) of a coordinate network, with the normalization's batch coupling.

In train mode, batch/global/cross norm use statistics of the whole batch, so the output at point i depends on
*all* points and per-sample gradients are not independent. The NTK is therefore computed from ONE train-mode
forward pass over all P points::

    f = net(X) in train mode          (P outputs; X = all points at once)
    J = d f / d theta                 (P x n_params; row i = gradient of output i through the batch statistics)
    K = J J^T = sum_b J_b J_b^T       (P x P; b runs over the parameter tensors)

J is built with :func:`torch.func.vjp` over the parameter dict (:func:`torch.func.functional_call`) and
:func:`torch.func.vmap` over chunks of one-hot output cotangents (rows of J), so no Python loop runs over
points. For a network without batch-dependent layers this equals the usual per-sample-gradient NTK. Running
statistics are neither used nor changed (their updates are switched off during the computation, and all
buffers and train/eval flags are restored afterwards); this covers the norms of :mod:`norm_nerf.core.norms`, while
other layers that write buffers in forward (e.g. ``torch.nn.BatchNorm1d``) make :func:`torch.func.vjp` raise.
Complex parameters (WIRE) count as two real ones.

Cost, with n = n_params and c = ``chunk`` (default: :func:`auto_chunk`):

* memory: J is stored in float32, 4·P·n bytes (depth 4 x width 256 with 1-D input has n ≈ 199k, so
  P = 1024 needs ~0.8 GB and P = 2048 ~1.6 GB); a batched backward pass holds about c·P·width·4 bytes per
  layer; K is 8·P² bytes (float64, 32 MB for P = 2048). Memory grows linearly in P·n.
* time: P backward passes through the whole batch (O(P²·n), run c at a time) plus the Gram product in float64
  (O(P²·n)); time grows quadratically in P and linearly in n.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor, nn
from torch.func import functional_call, vjp, vmap

from norm_nerf.core import running_stat_norms
from norm_nerf.eval.plots import pyplot, save_figure

COUPLING_NOTE = (
    "train-mode batch coupling: K = J J^T with J the Jacobian of the outputs at all P points from ONE train-mode "
    "forward pass over the whole batch (bn/gn/cn use that batch's statistics); running statistics untouched"
)
"""How the NTK is computed, for logs and JSON."""
GRAM_COLUMNS = 8192
"""Parameters per float64 block of the Gram product (bounds the float64 copy of J)."""
CHUNK_ELEMENTS = 2**22
"""Default chunk: about this many elements (16 MB in float32) per batched hidden activation, c·P·width."""


def auto_chunk(net: nn.Module, points: int) -> int:
    """Rows per batched backward pass so that one batched activation (c·P·width floats) stays near 16 MB.

    Measured on CPU for relu+cn, 4x256, P = 1024: c = 16 took 16 s, c = 32 46 s; with c >= 32 the 32 MB+
    temporaries bypass glibc's heap, every allocation maps fresh pages (25M page faults against < 1M) and
    most of the time is spent in the kernel.
    """
    width = max((p.shape[0] for p in net.parameters() if p.dim() >= 1), default=1)
    return max(1, min(points, CHUNK_ELEMENTS // max(points * width, 1)))


def _never() -> bool:
    return False


@contextmanager
def batch_coupled_train_mode(net: nn.Module) -> Iterator[nn.Module]:
    """Put ``net`` in train mode (batch statistics) with running-statistic updates off; restore everything after.

    The buffers are copied before and written back afterwards, and every module's train/eval flag is restored.
    """
    flags = {m: m.training for m in net.modules()}
    saved = {name: buf.clone() for name, buf in net.named_buffers()}
    norms = running_stat_norms(net)
    for norm in norms:
        norm.should_update = _never  # instance attribute shadows the method: train mode without updates
    net.train()
    try:
        yield net
    finally:
        for norm in norms:
            del norm.should_update
        for module, flag in flags.items():
            module.training = flag
        with torch.no_grad():
            for name, buf in net.named_buffers():
                buf.copy_(saved[name])


def _real_rows(grad: Tensor) -> Float[Tensor, "c n"]:
    """Flatten per-row gradients to (rows, n); a complex parameter contributes its real and imaginary parts."""
    if grad.is_complex():
        grad = torch.view_as_real(grad)
    return grad.reshape(grad.shape[0], -1)


def jacobian_blocks(
    net: nn.Module, x: Float[Tensor, "p d"], output: int = 0, chunk: int | None = None
) -> dict[str, Float[Tensor, "p n"]]:
    """Jacobian of output ``output`` at all points w.r.t. each parameter tensor (train mode, one batch).

    Returns one float32 block ``(P, n_b)`` per trainable parameter; rows are computed ``chunk`` at a time
    (default :func:`auto_chunk`).
    """
    chunk = auto_chunk(net, x.shape[0]) if chunk is None else chunk
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    params = {name: p.detach() for name, p in net.named_parameters() if p.requires_grad}
    if not params:
        raise ValueError("the network has no trainable parameters; its NTK is zero")
    with batch_coupled_train_mode(net):
        out, pullback = vjp(lambda p: functional_call(net, p, (x,)), params)
        out = out.reshape(x.shape[0], -1)
        if not 0 <= output < out.shape[1]:
            raise ValueError(f"output index {output} out of range for a network with {out.shape[1]} outputs")
        points = out.shape[0]
        blocks: dict[str, Tensor] = {}
        for start in range(0, points, chunk):
            stop = min(start + chunk, points)
            cot = out.new_zeros((stop - start, *out.shape))
            cot[torch.arange(stop - start), torch.arange(start, stop), output] = 1.0
            (grads,) = vmap(pullback)(cot)
            for name, g in grads.items():
                g2 = _real_rows(g)
                if name not in blocks:
                    blocks[name] = g2.new_empty((points, g2.shape[1]))
                blocks[name][start:stop] = g2
    return blocks


def gram(blocks: dict[str, Float[Tensor, "p n"]]) -> Float[Tensor, "p p"]:
    """``K = sum_b J_b J_b^T`` accumulated in float64, ``GRAM_COLUMNS`` parameters at a time."""
    first = next(iter(blocks.values()))
    k = torch.zeros(first.shape[0], first.shape[0], dtype=torch.float64, device=first.device)
    for block in blocks.values():
        for part in block.split(GRAM_COLUMNS, dim=1):
            part64 = part.double()
            k.addmm_(part64, part64.T)
    return k


def empirical_ntk(
    net: nn.Module, x: Float[Tensor, "p d"], output: int | None = 0, chunk: int | None = None
) -> Float[Tensor, "p p"]:
    """The empirical NTK ``K = J J^T`` (float64) of ``net`` at the points ``x``, with train-mode batch coupling.

    Args:
        net: any module mapping ``(P, d)`` to ``(P, out_dim)``; left unchanged (parameters, buffers, modes).
        x: all P points, passed through the network as ONE batch.
        output: which output's kernel (default the first; networks here are built with ``out_dim=1``);
            ``None`` = trace over outputs, ``K = sum_o J_o J_o^T``.
        chunk: output rows per batched backward pass (memory ~ chunk·P·width·4 bytes per layer);
            None = :func:`auto_chunk`.
    """
    if x.dim() != 2 or x.shape[0] < 1:
        raise ValueError(f"empirical_ntk expects points of shape (P, d) with P >= 1, got {tuple(x.shape)}")
    if output is not None:
        return gram(jacobian_blocks(net, x, output, chunk))
    with torch.no_grad(), batch_coupled_train_mode(net):
        out_dim = net(x).reshape(x.shape[0], -1).shape[1]
    return sum(gram(jacobian_blocks(net, x, o, chunk)) for o in range(out_dim))


def ntk_eigenvalues(k: Float[Tensor, "p p"]) -> tuple[Float[Tensor, " p"], dict[str, float]]:
    """Ascending eigenvalues of the symmetric PSD kernel (float64); tiny negative round-off is clamped to 0.

    Returns ``(eigenvalues, report)`` with the number of clamped values and the most negative raw value.
    """
    k64 = k.double()
    eig = torch.linalg.eigvalsh(0.5 * (k64 + k64.T))
    negative = eig < 0
    report = {
        "clamped_negative": int(negative.sum()),
        "most_negative": float(eig.min().clamp_max(0.0)),
    }
    return eig.clamp_min(0.0), report


def roundoff_rtol(points: int) -> float:
    """Relative round-off floor of an NTK built from a float32 Jacobian: P x eps_float32² (see spectrum_summary)."""
    return points * torch.finfo(torch.float32).eps ** 2


def spectrum_summary(eig: Float[Tensor, " p"], rtol: float | None = None) -> dict[str, float | int]:
    """Summary statistics of NTK eigenvalues (clamped, any order).

    ``frac_below_1e-3_max`` is the fraction of eigenvalues below 1e-3 x max; ``condition_number`` is max over the
    smallest eigenvalue above ``rtol`` x max, and ``rank`` the number of eigenvalues above that tolerance.
    Default ``rtol`` = P x eps_float32², the round-off floor of a Gram matrix of a float32 Jacobian: a rounding
    error dJ ~ eps·|J| moves singular values of J by up to ||dJ|| <= eps·sqrt(trace K) <= eps·sqrt(P·max), so
    eigenvalues of K below eps²·P·max cannot be told from 0.
    """
    eig = eig.double().flatten()
    if eig.numel() == 0:
        raise ValueError("spectrum_summary needs at least one eigenvalue")
    top = float(eig.max())
    rtol = roundoff_rtol(eig.numel()) if rtol is None else rtol
    above = eig[eig > rtol * top]
    smallest = float(above.min()) if above.numel() else math.nan
    return {
        "mean": float(eig.mean()),
        "variance": float(eig.var(correction=0)),
        "max": top,
        "median": float(eig.median()),
        "median_over_max": float(eig.median()) / top if top > 0 else math.nan,
        "frac_below_1e-3_max": float((eig < 1e-3 * top).double().mean()),
        "condition_number": top / smallest if above.numel() else math.nan,
        "rank": int(above.numel()),
        "rank_rtol": rtol,
    }


def plot_eigenvalue_histograms(spectra: dict[str, Float[Tensor, " p"]], path: Path, title: str = "") -> Path:
    """One row per method: histograms of the eigenvalues (left) and of eigenvalue / max (right), log x axes.

    Eigenvalues below the round-off floor (:func:`roundoff_rtol` x max) are not drawn but counted in the panel;
    the dashed line is the median of all eigenvalues (absent when it lies below the floor).
    """
    plt = pyplot()
    rows = max(len(spectra), 1)
    fig, axes = plt.subplots(rows, 2, figsize=(10, 1.15 * rows + 1.0), sharex="col", squeeze=False)
    kept, dropped, medians = {}, {}, {}
    for method, eig in spectra.items():
        e = eig.double().cpu().numpy()
        above = e > roundoff_rtol(e.size) * e.max()
        kept[method], dropped[method], medians[method] = e[above], int((~above).sum()), np.median(e)
    for col, relative in enumerate((False, True)):
        values = {m: e / e.max() if relative else e for m, e in kept.items() if e.size}
        if not values:
            continue
        lo = min(v.min() for v in values.values())
        hi = max(v.max() for v in values.values())
        bins = np.geomspace(lo, hi * (1 + 1e-9), 60)
        for row, (method, v) in enumerate(values.items()):
            ax = axes[row, col]
            ax.hist(v, bins=bins, color=f"C{row}", alpha=0.8)
            median = medians[method] / kept[method].max() if relative else medians[method]
            if median >= lo:
                ax.axvline(median, color="k", lw=0.8, ls="--")
            ax.set_xscale("log")
            if dropped[method]:
                ax.text(0.01, 0.9, f"{dropped[method]} below round-off", transform=ax.transAxes, fontsize=7, va="top")
            ax.set_ylabel(method, rotation=0, ha="right", va="center", fontsize=9)
    axes[-1, 0].set_xlabel("NTK eigenvalue")
    axes[-1, 1].set_xlabel("NTK eigenvalue / max eigenvalue")
    fig.suptitle(title or "NTK eigenvalues (train-mode batch coupling); dashed: median")
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)
