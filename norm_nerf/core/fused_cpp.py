"""Compiled norm kernels for CPUs: C++/OpenMP built on first use (``impl="auto"``, the default, and ``"compiled"``).

Cross norm: the eager fast path (:class:`norm_nerf.core.fused.CrossNormFunction`) still makes about 18 full
passes over the ``N x C`` activations per forward+backward and allocates five ``N x C`` buffers. This kernel needs two
passes forward (statistics; output) and two backward (six reductions; input gradient), allocates only the
output and the input gradient, and saves nothing but per-row and per-column vectors: every entry's ``r`` and
centred value are recomputed in registers. (How the loops are written matters as much as the pass count: see
the POINTERS and ROW SUMS notes in the source.) The forward statistics are accumulated in double precision (one
pass is then exact enough for float32 data); the backward column sums add float partials of 64 rows in double.

Batch and global norm: :class:`norm_nerf.core.fused.ScaleShiftNormFunction` takes two primitives from here,
``column_sums(x, y)`` (``sum_i x_ij`` and ``sum_i x_ij y_ij`` in double, one read of both) and
``scale_add(g, x, p, q, s)`` (``g p_j + x q_j + s_j``, the input gradient in one pass), which save the
``x * x`` and ``g * x`` buffers and two passes of the eager version.

RMS norm: one pass over each row forward (its sum of squares, then the output while the row is in cache) and
one backward (the row's ``sum_j g w x``, the input gradient, and column partials for the affine gradients).

The module is JIT-compiled with :func:`torch.utils.cpp_extension.load_inline` (a C++ compiler and ninja are
needed; one to two minutes the first time, cached afterwards). When that fails, :func:`norm_kernels` warns once
and returns None and the layers use the eager fast path. Only float32 CPU tensors use the kernels;
``NORM_NERF_COMPILED=0`` keeps ``impl="auto"`` on the eager path (no build).
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import sys
import warnings
from pathlib import Path

import torch
from torch import Tensor
from torch.autograd.function import FunctionCtx

from norm_nerf.core.fused import analytic_double_backward, remember_grads
from norm_nerf.core.norm_grads import cross_norm_grads, rms_norm_grads

_SOURCE = r"""
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <cmath>
#include <vector>

namespace {

// Column partial sums per chunk of rows, added up in double after the parallel loop: deterministic (the chunking
// does not depend on the thread count) and float partials only ever sum `rows_per_chunk` terms.
template <typename Acc>
struct Partials {
  int64_t chunks, rows_per_chunk, width;
  std::vector<Acc> data;
  Partials(int64_t n, int64_t c, int64_t sums, int64_t rows) {
    rows_per_chunk = rows;
    chunks = (n + rows - 1) / rows;
    width = c * sums;
    data.assign(chunks * width, Acc(0));
  }
  int64_t end(int64_t k, int64_t n) const { return std::min(n, (k + 1) * rows_per_chunk); }
  std::vector<double> total() const {
    std::vector<double> out(width, 0.0);
    for (int64_t k = 0; k < chunks; ++k)
      for (int64_t j = 0; j < width; ++j) out[j] += double(data[k * width + j]);
    return out;
  }
};

double denom(int64_t count) { return count > 1 ? double(count - 1) : 1.0; }

// POINTERS: inner loops read per-column inputs through local `__restrict__` copies made inside the parallel
// lambda. Through the lambda's by-reference capture (or a std::vector's data pointer) the compiler must reload the
// pointer after every store to another array, and those loops ran 2.5-3x slower.
// ROW SUMS: a loop that both reduces into scalars (omp simd reduction) and updates per-column arrays runs
// 2-3x slower here than two loops, one per job; row sums therefore get a loop of their own.

}  // namespace

std::vector<torch::Tensor> column_sums(torch::Tensor x, torch::Tensor y) {
  const int64_t n = x.size(0), c = x.size(1);
  const float *X = x.data_ptr<float>(), *Y = y.data_ptr<float>();
  Partials<double> part(n, c, 2, 1024);
  at::parallel_for(0, part.chunks, 1, [&](int64_t k0, int64_t k1) {
    for (int64_t k = k0; k < k1; ++k) {
      double* __restrict__ s = part.data.data() + k * part.width;
      double* __restrict__ q = s + c;
      for (int64_t i = k * part.rows_per_chunk; i < part.end(k, n); ++i) {
        const float *__restrict__ xi = X + i * c, *__restrict__ yi = Y + i * c;
#pragma omp simd
        for (int64_t j = 0; j < c; ++j) {
          const double v = xi[j];
          s[j] += v; q[j] += v * yi[j];
        }
      }
    }
  });
  const std::vector<double> tot = part.total();
  auto opts = x.options().dtype(torch::kFloat64);
  auto s = torch::empty({c}, opts), q = torch::empty({c}, opts);
  std::copy(tot.begin(), tot.begin() + c, s.data_ptr<double>());
  std::copy(tot.begin() + c, tot.end(), q.data_ptr<double>());
  return {s, q};
}

torch::Tensor scale_add(torch::Tensor g, torch::Tensor x, torch::Tensor p, torch::Tensor q, torch::Tensor s) {
  const int64_t n = x.size(0), c = x.size(1);
  const float *G = g.data_ptr<float>(), *X = x.data_ptr<float>();
  const float *P = p.data_ptr<float>(), *Q = q.data_ptr<float>(), *S = s.data_ptr<float>();
  auto out = torch::empty_like(x);
  float* O = out.data_ptr<float>();
  at::parallel_for(0, n, 64, [&](int64_t i0, int64_t i1) {
    const float *__restrict__ Pl = P, *__restrict__ Ql = Q, *__restrict__ Sl = S;  // see POINTERS above
    for (int64_t i = i0; i < i1; ++i) {
      const float *__restrict__ gi = G + i * c, *__restrict__ xi = X + i * c;
      float* __restrict__ oi = O + i * c;
#pragma omp simd
      for (int64_t j = 0; j < c; ++j) oi[j] = gi[j] * Pl[j] + xi[j] * Ql[j] + Sl[j];
    }
  });
  return out;
}

std::vector<torch::Tensor> cross_norm_forward(torch::Tensor x, torch::Tensor w, torch::Tensor b, double eps) {
  const int64_t n = x.size(0), c = x.size(1);
  const double K = double(n + c);
  const float* X = x.data_ptr<float>();
  auto opts = x.options();
  auto row_mean = torch::empty({n}, opts), row_var = torch::empty({n}, opts);
  float* RM = row_mean.data_ptr<float>(); float* RV = row_var.data_ptr<float>();
  std::vector<double> row_s(n);
  Partials<double> part(n, c, 2, 1024);
  at::parallel_for(0, part.chunks, 1, [&](int64_t k0, int64_t k1) {
    for (int64_t k = k0; k < k1; ++k) {
      double* cs = part.data.data() + k * part.width; double* cq = cs + c;
      for (int64_t i = k * part.rows_per_chunk; i < part.end(k, n); ++i) {
        const float* __restrict__ xi = X + i * c;
#pragma omp simd
        for (int64_t j = 0; j < c; ++j) {
          const double v = xi[j];
          cs[j] += v; cq[j] += v * v;
        }
        double s = 0.0, q = 0.0;  // the row's sums in a loop of their own (see ROW SUMS above)
#pragma omp simd reduction(+ : s, q)
        for (int64_t j = 0; j < c; ++j) {
          const double v = xi[j];
          s += v; q += v * v;
        }
        row_s[i] = s;
        RM[i] = float(s / c);
        RV[i] = float(std::max(q - s * s / c, 0.0) / denom(c));
      }
    }
  });
  const std::vector<double> col = part.total();
  auto col_mean = torch::empty({c}, opts), col_var = torch::empty({c}, opts);
  float* CM = col_mean.data_ptr<float>(); float* CV = col_var.data_ptr<float>();
  std::vector<float> bcol(c), vcol(c);
  for (int64_t j = 0; j < c; ++j) {
    CM[j] = float(col[j] / n);
    CV[j] = float(std::max(col[c + j] - col[j] * col[j] / n, 0.0) / denom(n));
    bcol[j] = float(-col[j] / K);
    vcol[j] = float(CV[j] + eps);
  }
  auto y = torch::empty_like(x);
  float* Y = y.data_ptr<float>();
  const float* W = w.data_ptr<float>(); const float* B = b.data_ptr<float>();
  const float a = float((K + 1.0) / K);
  at::parallel_for(0, n, 64, [&](int64_t i0, int64_t i1) {
    const float *__restrict__ Wl = W, *__restrict__ Bl = B;  // see POINTERS above
    const float *__restrict__ BC = bcol.data(), *__restrict__ VC = vcol.data();
    for (int64_t i = i0; i < i1; ++i) {
      const float* __restrict__ xi = X + i * c;
      float* __restrict__ yi = Y + i * c;
      const float brow = float(-row_s[i] / K), vrow = RV[i];
#pragma omp simd
      for (int64_t j = 0; j < c; ++j)
        yi[j] = (a * xi[j] + brow + BC[j]) / std::sqrt(vrow + VC[j]) * Wl[j] + Bl[j];
    }
  });
  return {y, row_mean, row_var, col_mean, col_var};
}

std::vector<torch::Tensor> cross_norm_backward(torch::Tensor g, torch::Tensor x, torch::Tensor w,
                                               torch::Tensor row_mean, torch::Tensor row_var,
                                               torch::Tensor col_mean, torch::Tensor col_var, double eps) {
  const int64_t n = x.size(0), c = x.size(1);
  const float K = float(n + c), a = (K + 1.0f) / K;
  const float *X = x.data_ptr<float>(), *G = g.data_ptr<float>(), *W = w.data_ptr<float>();
  const float *RM = row_mean.data_ptr<float>(), *RV = row_var.data_ptr<float>();
  const float *CM = col_mean.data_ptr<float>(), *CV = col_var.data_ptr<float>();
  std::vector<float> vcol(c), bcol(c);
  for (int64_t j = 0; j < c; ++j) { vcol[j] = float(CV[j] + eps); bcol[j] = -float(n) * CM[j] / K; }
  std::vector<float> f_row(n), b_row(n);
  Partials<float> part(n, c, 4, 64);  // sum g, sum g*yhat, sum g*r, sum g*z*r^3 per column
  auto dx = torch::empty_like(x);  // holds r between the two passes (one square root per entry)
  float* DX = dx.data_ptr<float>();
  at::parallel_for(0, part.chunks, 1, [&](int64_t k0, int64_t k1) {
    std::vector<float> scratch(2 * c);  // per-entry terms of the two row sums (see ROW SUMS above)
    float* __restrict__ T1 = scratch.data();
    float* __restrict__ T2 = T1 + c;
    const float *__restrict__ Wl = W, *__restrict__ BC = bcol.data(), *__restrict__ VC = vcol.data();
    for (int64_t k = k0; k < k1; ++k) {
      float* __restrict__ sg = part.data.data() + k * part.width;
      float* __restrict__ sgy = sg + c;
      float* __restrict__ sp = sgy + c;
      float* __restrict__ su = sp + c;
      for (int64_t i = k * part.rows_per_chunk; i < part.end(k, n); ++i) {
        const float *__restrict__ xi = X + i * c, *__restrict__ gi = G + i * c;
        float* __restrict__ ri = DX + i * c;
        const float brow = -float(c) * RM[i] / K, vrow = RV[i];
#pragma omp simd
        for (int64_t j = 0; j < c; ++j) {
          const float r = 1.0f / std::sqrt(vrow + VC[j]);
          ri[j] = r;
          const float yh = (a * xi[j] + brow + BC[j]) * r;
          const float gr = gi[j] * r, u = gr * yh * r;
          sg[j] += gi[j]; sgy[j] += gi[j] * yh; sp[j] += gr; su[j] += u;
          T1[j] = Wl[j] * gr; T2[j] = Wl[j] * u;
        }
        float pr = 0.0f, wr = 0.0f;
#pragma omp simd reduction(+ : pr, wr)
        for (int64_t j = 0; j < c; ++j) { pr += T1[j]; wr += T2[j]; }
        b_row[i] = float(wr / denom(c));
        f_row[i] = RM[i] * b_row[i] - pr / K;
      }
    }
  });
  const std::vector<double> col = part.total();
  std::vector<float> a_col(c), e_col(c), s_col(c);
  auto grad_w = torch::empty({c}, x.options()), grad_b = torch::empty({c}, x.options());
  float *GW = grad_w.data_ptr<float>(), *GB = grad_b.data_ptr<float>();
  for (int64_t j = 0; j < c; ++j) {
    GB[j] = float(col[j]); GW[j] = float(col[c + j]);
    a_col[j] = float(W[j] * col[3 * c + j] / denom(n));
    e_col[j] = float(CM[j] * a_col[j] - W[j] * col[2 * c + j] / K);
    s_col[j] = a * W[j];
  }
  at::parallel_for(0, n, 64, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const float *__restrict__ xi = X + i * c, *__restrict__ gi = G + i * c;
      float* __restrict__ di = DX + i * c;  // r on entry, the gradient on exit
      const float br = b_row[i], fr = f_row[i];
      const float *__restrict__ SC = s_col.data(), *__restrict__ EC = e_col.data(), *__restrict__ AC = a_col.data();
#pragma omp simd
      for (int64_t j = 0; j < c; ++j) di[j] = SC[j] * gi[j] * di[j] + EC[j] + fr - xi[j] * (AC[j] + br);
    }
  });
  return {dx, grad_w, grad_b};
}

std::vector<torch::Tensor> rms_norm_forward(torch::Tensor x, torch::Tensor w, torch::Tensor b, double eps) {
  const int64_t n = x.size(0), c = x.size(1);
  const float *X = x.data_ptr<float>(), *W = w.data_ptr<float>(), *B = b.data_ptr<float>();
  auto y = torch::empty_like(x);
  auto inv = torch::empty({n}, x.options());
  float *Y = y.data_ptr<float>(), *Q = inv.data_ptr<float>();
  at::parallel_for(0, n, 64, [&](int64_t i0, int64_t i1) {
    const float *__restrict__ Wl = W, *__restrict__ Bl = B;  // see POINTERS above
    for (int64_t i = i0; i < i1; ++i) {
      const float* __restrict__ xi = X + i * c;
      float* __restrict__ yi = Y + i * c;
      double ss = 0.0;
#pragma omp simd reduction(+ : ss)
      for (int64_t j = 0; j < c; ++j) ss += double(xi[j]) * xi[j];
      const float q = float(1.0 / std::sqrt(ss / c + eps));
      Q[i] = q;
#pragma omp simd
      for (int64_t j = 0; j < c; ++j) yi[j] = xi[j] * q * Wl[j] + Bl[j];
    }
  });
  return {y, inv};
}

std::vector<torch::Tensor> rms_norm_backward(torch::Tensor g, torch::Tensor x, torch::Tensor w, torch::Tensor inv) {
  const int64_t n = x.size(0), c = x.size(1);
  const float *X = x.data_ptr<float>(), *G = g.data_ptr<float>(), *W = w.data_ptr<float>();
  const float* Q = inv.data_ptr<float>();
  auto dx = torch::empty_like(x);
  float* DX = dx.data_ptr<float>();
  Partials<float> part(n, c, 2, 64);  // sum g * x * q and sum g per column
  at::parallel_for(0, part.chunks, 1, [&](int64_t k0, int64_t k1) {
    const float* __restrict__ Wl = W;  // see POINTERS above
    for (int64_t k = k0; k < k1; ++k) {
      float* __restrict__ sw = part.data.data() + k * part.width;
      float* __restrict__ sb = sw + c;
      for (int64_t i = k * part.rows_per_chunk; i < part.end(k, n); ++i) {
        const float *__restrict__ xi = X + i * c, *__restrict__ gi = G + i * c;
        float* __restrict__ di = DX + i * c;
        const float q = Q[i];
        float hx = 0.0f;  // the row sum in a loop of its own (see ROW SUMS above)
#pragma omp simd reduction(+ : hx)
        for (int64_t j = 0; j < c; ++j) hx += gi[j] * Wl[j] * xi[j];
        const float a = q * q * hx / float(c);
#pragma omp simd
        for (int64_t j = 0; j < c; ++j) {
          sw[j] += gi[j] * xi[j] * q; sb[j] += gi[j];
          di[j] = q * (gi[j] * Wl[j] - xi[j] * a);
        }
      }
    }
  });
  const std::vector<double> col = part.total();
  auto grad_w = torch::empty({c}, x.options()), grad_b = torch::empty({c}, x.options());
  float *GW = grad_w.data_ptr<float>(), *GB = grad_b.data_ptr<float>();
  for (int64_t j = 0; j < c; ++j) { GW[j] = float(col[j]); GB[j] = float(col[c + j]); }
  return {dx, grad_w, grad_b};
}
"""


def _cpu_tag() -> str:
    """A short hash of the CPU's feature flags: the build uses ``-march=native``, so the cached library must
    not be reused on a different CPU (torch's extension cache is keyed by name and source only)."""
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        flags = platform.processor() or platform.machine()
    return hashlib.sha1(flags.encode()).hexdigest()[:10]


def _is_built(name: str) -> bool:
    """Whether torch's extension cache already holds the built library ``name`` (False when unsure)."""
    try:
        from torch.utils.cpp_extension import _get_build_directory

        return any(Path(_get_build_directory(name, verbose=False)).glob(f"{name}*.so"))
    except Exception:  # noqa: BLE001 - a private helper; only decides whether to print the build notice
        return False


@functools.cache
def norm_kernels() -> object | None:
    """The compiled extension module, or None (with one warning) when it cannot be built here."""
    name = f"norm_nerf_norm_kernels_v9_{_cpu_tag()}"
    try:
        from torch.utils.cpp_extension import load_inline

        if not _is_built(name):
            print(f"norm-nerf: building the C++ norm kernels for this CPU ({name}; once, 20-100 s)", file=sys.stderr)
        return load_inline(
            name=name,
            cpp_sources=_SOURCE,
            functions=[
                "column_sums",
                "scale_add",
                "cross_norm_forward",
                "cross_norm_backward",
                "rms_norm_forward",
                "rms_norm_backward",
            ],
            extra_cflags=["-O3", "-fopenmp", "-march=native", "-fno-math-errno"],
            extra_ldflags=["-fopenmp"],
            verbose=False,
        )
    except Exception as err:  # noqa: BLE001 - any build failure means: use the eager fast path
        warnings.warn(
            f"compiled norm kernels unavailable ({type(err).__name__}: {err}); using impl='fast'", stacklevel=2
        )
        return None


def compiled_enabled() -> bool:
    """False when the environment sets ``NORM_NERF_COMPILED=0`` (``impl="auto"`` then means ``"fast"``)."""
    return os.environ.get("NORM_NERF_COMPILED", "1").strip() != "0"


def kernel_applies(x: Tensor) -> bool:
    """Whether the compiled kernels serve ``x`` (float32 on the CPU) and could be built."""
    return x.device.type == "cpu" and x.dtype == torch.float32 and norm_kernels() is not None


def _kernel_args(x: Tensor, weight: Tensor | None, bias: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
    """Contiguous input and affine parameters for a kernel (ones and zeros without affine).

    Callers pass a contiguous ``x`` (made so outside the Function): a copy made here would be saved for the double
    backward without its autograd history, and second derivatives through ``x`` would be lost.
    """
    c = x.shape[1]
    w = weight.detach().contiguous() if weight is not None else x.new_ones(c)
    b = bias.detach().contiguous() if bias is not None else x.new_zeros(c)
    return x.contiguous(), w, b


class CompiledCrossNormFunction(torch.autograd.Function):
    """Train-mode cross norm through the C++ kernel; same values, gradients and outputs as ``CrossNormFunction``."""

    @staticmethod
    def forward(
        ctx: FunctionCtx,
        x: Tensor,
        weight: Tensor | None,
        bias: Tensor | None,
        eps: float,
    ) -> tuple[Tensor, Tensor, Tensor]:
        x, w, b = _kernel_args(x, weight, bias)
        y, row_mean, row_var, col_mean, col_var = norm_kernels().cross_norm_forward(x, w, b, eps)
        ctx.save_for_backward(x, w, row_mean, row_var, col_mean, col_var)
        ctx.eps, ctx.affine = eps, weight is not None
        grads = functools.partial(cross_norm_grads, eps=eps)
        remember_grads(ctx, weight, bias, num_inputs=4, grads=grads)
        ctx.mark_non_differentiable(col_mean, col_var)
        return y, col_mean, col_var

    @staticmethod
    @analytic_double_backward
    def backward(
        ctx: FunctionCtx, grad: Tensor, _gm: Tensor | None, _gv: Tensor | None
    ) -> tuple[Tensor, Tensor | None, Tensor | None, None]:
        x, w, row_mean, row_var, col_mean, col_var = ctx.saved_tensors
        dx, dw, db = norm_kernels().cross_norm_backward(
            grad.contiguous(), x, w, row_mean, row_var, col_mean, col_var, ctx.eps
        )
        return dx, (dw if ctx.affine else None), (db if ctx.affine else None), None


class CompiledRMSNormFunction(torch.autograd.Function):
    """Train-mode RMS norm through the C++ kernel (one read of ``x`` forward, one of ``x`` and ``g`` backward)."""

    @staticmethod
    def forward(
        ctx: FunctionCtx,
        x: Tensor,
        weight: Tensor | None,
        bias: Tensor | None,
        eps: float,
    ) -> Tensor:
        x, w, b = _kernel_args(x, weight, bias)
        y, inv = norm_kernels().rms_norm_forward(x, w, b, eps)
        ctx.save_for_backward(x, w, inv)
        ctx.affine = weight is not None
        grads = functools.partial(rms_norm_grads, eps=eps)
        remember_grads(ctx, weight, bias, num_inputs=4, grads=grads)
        return y

    @staticmethod
    @analytic_double_backward
    def backward(ctx: FunctionCtx, grad: Tensor) -> tuple[Tensor, Tensor | None, Tensor | None, None]:
        x, w, inv = ctx.saved_tensors
        dx, dw, db = norm_kernels().rms_norm_backward(grad.contiguous(), x, w, inv)
        return dx, (dw if ctx.affine else None), (db if ctx.affine else None), None
