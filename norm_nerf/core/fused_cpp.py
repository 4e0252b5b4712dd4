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

Cross norm's double backward (``create_graph=True``, NeuS's eikonal loss): :class:`CompiledCrossNormGradFunction`
makes the first backward a differentiable op whose own backward is three passes (``cross_norm_double_backward``).

Softplus (:mod:`norm_nerf.core.softplus`): forward, backward and double backward, one vectorized pass each.
``flush_denormals``: FTZ/DAZ in every OpenMP thread (:mod:`norm_nerf.core.cpu_setup`).

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
#include <cstdint>
#include <cstring>
#include <vector>
#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
#define NORM_NERF_MXCSR 1
#endif

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

// Second derivatives of the cross norm (double backward, e.g. an eikonal loss). The layer's first backward
// dx = J^T (g w) is differentiated along v = dL/d(dx): dL/dg = w * (J v) (the forward-mode derivative of the
// normalized output along v), dL/dw = colsum(g * J v), and dL/dx = H v, the derivative of the analytic dx along v
// (see CompiledCrossNormGradFunction for the formulas). Three passes: (1) the derivatives of the statistics along v
// and the sums A, B of the first backward; (2) J v and the sums of the derivatives of dx's terms; (3) H v.
std::vector<torch::Tensor> cross_norm_double_backward(torch::Tensor v, torch::Tensor g, torch::Tensor x,
                                                      torch::Tensor w, torch::Tensor row_mean, torch::Tensor row_var,
                                                      torch::Tensor col_mean, torch::Tensor col_var, double eps) {
  const int64_t n = x.size(0), c = x.size(1);
  const float K = float(n + c), a = (K + 1.0f) / K, fn = float(n) / K, fc = float(c) / K;
  const float dn = float(denom(n)), dc = float(denom(c));
  const float *X = x.data_ptr<float>(), *G = g.data_ptr<float>(), *V = v.data_ptr<float>(), *W = w.data_ptr<float>();
  const float *RM = row_mean.data_ptr<float>(), *RV = row_var.data_ptr<float>();
  const float *CM = col_mean.data_ptr<float>(), *CV = col_var.data_ptr<float>();
  std::vector<float> vcol(c), zcol(c);
  for (int64_t j = 0; j < c; ++j) { vcol[j] = float(CV[j] + eps); zcol[j] = -fn * CM[j]; }
  auto gx = torch::empty_like(x);  // holds r between the passes, dL/dx on exit
  auto gg = torch::empty_like(x);  // dL/dg
  float *GX = gx.data_ptr<float>(), *GG = gg.data_ptr<float>();
  // pass 1: column sums of v, (x - colmean) v, u = g w z r^3; the same row sums
  std::vector<float> dmr(n), dbr(n), br(n);
  Partials<float> p1(n, c, 3, 64);
  at::parallel_for(0, p1.chunks, 1, [&](int64_t k0, int64_t k1) {
    std::vector<float> scratch(3 * c);
    float* __restrict__ T1 = scratch.data();
    float* __restrict__ T2 = T1 + c;
    float* __restrict__ T3 = T2 + c;
    const float *__restrict__ Wl = W, *__restrict__ CMl = CM;
    const float *__restrict__ VC = vcol.data(), *__restrict__ ZC = zcol.data();
    for (int64_t k = k0; k < k1; ++k) {
      float* __restrict__ sv = p1.data.data() + k * p1.width;
      float* __restrict__ sxv = sv + c;
      float* __restrict__ su = sxv + c;
      for (int64_t i = k * p1.rows_per_chunk; i < p1.end(k, n); ++i) {
        const float *__restrict__ xi = X + i * c, *__restrict__ gi = G + i * c, *__restrict__ vi = V + i * c;
        float* __restrict__ ri = GX + i * c;
        const float rho = RM[i], vrow = RV[i], zrow = -fc * rho;
#pragma omp simd
        for (int64_t j = 0; j < c; ++j) {
          const float r = 1.0f / std::sqrt(vrow + VC[j]);
          ri[j] = r;
          const float z = a * xi[j] + zrow + ZC[j];
          const float u = gi[j] * Wl[j] * z * r * r * r;
          sv[j] += vi[j]; sxv[j] += (xi[j] - CMl[j]) * vi[j]; su[j] += u;
          T1[j] = vi[j]; T2[j] = (xi[j] - rho) * vi[j]; T3[j] = u;
        }
        float s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;  // see ROW SUMS above
#pragma omp simd reduction(+ : s1, s2, s3)
        for (int64_t j = 0; j < c; ++j) { s1 += T1[j]; s2 += T2[j]; s3 += T3[j]; }
        dmr[i] = s1 / float(c); dbr[i] = 2.0f * s2 / dc; br[i] = s3 / dc;
      }
    }
  });
  std::vector<double> col = p1.total();
  std::vector<float> dmc(c), dac(c), ac(c);
  for (int64_t j = 0; j < c; ++j) {
    dmc[j] = float(col[j] / n); dac[j] = float(2.0 * col[c + j] / dn); ac[j] = float(col[2 * c + j] / dn);
  }
  // pass 2: t = J v (dz r + z dr), dL/dg = w t; column sums of g t, dp = h dr, du = h r^2 (dz r + 3 z dr); row sums
  std::vector<float> qr(n), dbbr(n);
  Partials<float> p2(n, c, 3, 64);
  at::parallel_for(0, p2.chunks, 1, [&](int64_t k0, int64_t k1) {
    std::vector<float> scratch(2 * c);
    float* __restrict__ T1 = scratch.data();
    float* __restrict__ T2 = T1 + c;
    const float *__restrict__ Wl = W, *__restrict__ ZC = zcol.data(), *__restrict__ DMC = dmc.data();
    const float* __restrict__ DAC = dac.data();
    for (int64_t k = k0; k < k1; ++k) {
      float* __restrict__ sgt = p2.data.data() + k * p2.width;
      float* __restrict__ sdp = sgt + c;
      float* __restrict__ sdu = sdp + c;
      for (int64_t i = k * p2.rows_per_chunk; i < p2.end(k, n); ++i) {
        const float *__restrict__ xi = X + i * c, *__restrict__ gi = G + i * c, *__restrict__ vi = V + i * c;
        const float* __restrict__ ri = GX + i * c;
        float* __restrict__ ti = GG + i * c;
        const float zrow = -fc * RM[i], dzrow = -fc * dmr[i], dbrow = dbr[i];
#pragma omp simd
        for (int64_t j = 0; j < c; ++j) {
          const float r = ri[j], z = a * xi[j] + zrow + ZC[j];
          const float dz = a * vi[j] - fn * DMC[j] + dzrow;
          const float dr = -0.5f * r * r * r * (DAC[j] + dbrow);
          const float t = dz * r + z * dr, h = gi[j] * Wl[j];
          const float dp = h * dr, du = h * r * r * (dz * r + 3.0f * z * dr);
          ti[j] = Wl[j] * t;
          sgt[j] += gi[j] * t; sdp[j] += dp; sdu[j] += du;
          T1[j] = dp; T2[j] = du;
        }
        float s1 = 0.0f, s2 = 0.0f;  // see ROW SUMS above
#pragma omp simd reduction(+ : s1, s2)
        for (int64_t j = 0; j < c; ++j) { s1 += T1[j]; s2 += T2[j]; }
        qr[i] = s1; dbbr[i] = s2 / dc;
      }
    }
  });
  col = p2.total();
  auto grad_w = torch::empty({c}, x.options());
  float* GW = grad_w.data_ptr<float>();
  std::vector<float> ec(c), lc(c), mc(c);  // per-column constant, v coefficient, x coefficient of H v
  for (int64_t j = 0; j < c; ++j) {
    GW[j] = float(col[j]);
    const float pj = float(col[c + j]), dAj = float(col[2 * c + j] / dn);
    ec[j] = -pj / K + dmc[j] * ac[j] + CM[j] * dAj;
    lc[j] = ac[j]; mc[j] = dAj;
  }
  // pass 3: H v = a dp - P_j/K - Q_i/K - (v - dm_j) A_j - (x - m_j) dA_j - (v - drho_i) B_i - (x - rho_i) dB_i
  at::parallel_for(0, n, 64, [&](int64_t i0, int64_t i1) {
    const float *__restrict__ Wl = W, *__restrict__ DAC = dac.data(), *__restrict__ EC = ec.data();
    const float *__restrict__ LC = lc.data(), *__restrict__ MC = mc.data();
    for (int64_t i = i0; i < i1; ++i) {
      const float *__restrict__ xi = X + i * c, *__restrict__ gi = G + i * c, *__restrict__ vi = V + i * c;
      float* __restrict__ oi = GX + i * c;  // r on entry
      const float er = -qr[i] / K + dmr[i] * br[i] + RM[i] * dbbr[i], lr = br[i], mr = dbbr[i], dbrow = dbr[i];
#pragma omp simd
      for (int64_t j = 0; j < c; ++j) {
        const float r = oi[j];
        const float dp = gi[j] * Wl[j] * (-0.5f * r * r * r * (DAC[j] + dbrow));
        oi[j] = a * dp + EC[j] + er - vi[j] * (LC[j] + lr) - xi[j] * (MC[j] + mr);
      }
    }
  });
  return {gx, gg, grad_w};
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

// SOFTPLUS (beta > 0): y = softplus(x) = max(x, 0) + log1p(e) / beta with e = exp(-beta |x|), its derivative
// sigmoid(beta x) and second derivative beta e / (1 + e)^2, one pass each. The exponential and log1p are inlined
// polynomials that `omp simd` vectorizes (libm calls, std::floor and selects of costly values do not vectorize here),
// about 1 ulp. Beyond beta |x| > 80 - log(beta) e is taken as 0 (the terms it feeds are below 1e-33 there; NaN still
// propagates), so no overflowing or denormal intermediate appears: a softplus with beta = 100 on normalized inputs
// spends most of ATen's time in those slow paths.
inline float exp_nonpositive(float t) {  // e^t for t in [-87, 0]: Cody-Waite reduction, degree-7 Taylor polynomial
  const float k = float(int32_t(t * 1.44269504088896341f - 0.5f));  // round(t / ln 2): truncation of a negative
  const float f = (t - k * 0.693145751953125f) - k * 1.42860682030941723e-06f;
  float p = 1.0f / 5040.0f;
  p = p * f + 1.0f / 720.0f; p = p * f + 1.0f / 120.0f; p = p * f + 1.0f / 24.0f;
  p = p * f + 1.0f / 6.0f; p = p * f + 0.5f; p = p * f + 1.0f; p = p * f + 1.0f;
  const int32_t bits = (int32_t(k) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(float));
  return p * scale;
}

inline float log1p_unit(float e) {  // log(1 + e) for e in [0, 1]: 2 atanh(s), s = e / (2 + e) <= 1/3
  const float s = e / (2.0f + e), s2 = s * s;
  float p = 1.0f / 15.0f;
  p = p * s2 + 1.0f / 13.0f; p = p * s2 + 1.0f / 11.0f; p = p * s2 + 1.0f / 9.0f; p = p * s2 + 1.0f / 7.0f;
  p = p * s2 + 1.0f / 5.0f; p = p * s2 + 1.0f / 3.0f; p = p * s2 + 1.0f;
  return 2.0f * s * p;
}

inline float softplus_cut(double beta) { return float(80.0 - std::max(0.0, std::log(beta))); }

inline float exp_neg_abs(float bx, float cut) {  // exp(-|bx|), 0 beyond the cut (a mask: a select would branch)
  const float a = std::fabs(bx);
  return exp_nonpositive(a < cut ? -a : -cut) * float(a < cut);
}

inline float sigmoid_of(float x, float e) {  // sigmoid(beta x) from e = exp(-beta |x|)
  const float s = 1.0f / (1.0f + e);
  return x >= 0.0f ? s : e * s;
}

template <typename F>
void elementwise(int64_t size, F f) {
  at::parallel_for(0, size, 16384, [&](int64_t i0, int64_t i1) { f(i0, i1); });
}

torch::Tensor softplus_forward(torch::Tensor x, double beta) {
  const float* X = x.data_ptr<float>();
  auto y = torch::empty_like(x);
  float* Y = y.data_ptr<float>();
  const float b = float(beta), ib = float(1.0 / beta), cut = softplus_cut(beta);
  elementwise(x.numel(), [&](int64_t i0, int64_t i1) {
    const float* __restrict__ Xl = X;
    float* __restrict__ Yl = Y;
#pragma omp simd
    for (int64_t i = i0; i < i1; ++i) {
      const float y = (Xl[i] > 0.0f ? Xl[i] : 0.0f) + log1p_unit(exp_neg_abs(b * Xl[i], cut)) * ib;
      Yl[i] = Xl[i] == Xl[i] ? y : Xl[i];  // NaN in, NaN out
    }
  });
  return y;
}

torch::Tensor softplus_backward(torch::Tensor g, torch::Tensor x, double beta) {
  const float *X = x.data_ptr<float>(), *G = g.data_ptr<float>();
  auto dx = torch::empty_like(x);
  float* D = dx.data_ptr<float>();
  const float b = float(beta), cut = softplus_cut(beta);
  elementwise(x.numel(), [&](int64_t i0, int64_t i1) {
    const float *__restrict__ Xl = X, *__restrict__ Gl = G;
    float* __restrict__ Dl = D;
#pragma omp simd
    for (int64_t i = i0; i < i1; ++i) {
      const float d = Gl[i] * sigmoid_of(Xl[i], exp_neg_abs(b * Xl[i], cut));
      Dl[i] = Xl[i] == Xl[i] ? d : Xl[i];
    }
  });
  return dx;
}

std::vector<torch::Tensor> softplus_double_backward(torch::Tensor v, torch::Tensor g, torch::Tensor x, double beta) {
  const float *X = x.data_ptr<float>(), *G = g.data_ptr<float>(), *V = v.data_ptr<float>();
  auto dx = torch::empty_like(x), dg = torch::empty_like(x);
  float *DX = dx.data_ptr<float>(), *DG = dg.data_ptr<float>();
  const float b = float(beta), cut = softplus_cut(beta);
  elementwise(x.numel(), [&](int64_t i0, int64_t i1) {
    const float *__restrict__ Xl = X, *__restrict__ Gl = G, *__restrict__ Vl = V;
    float *__restrict__ DXl = DX, *__restrict__ DGl = DG;
#pragma omp simd
    for (int64_t i = i0; i < i1; ++i) {
      const float e = exp_neg_abs(b * Xl[i], cut), s = 1.0f / (1.0f + e);
      const float dg = Vl[i] * sigmoid_of(Xl[i], e), dx = Vl[i] * Gl[i] * b * e * s * s;
      DGl[i] = Xl[i] == Xl[i] ? dg : Xl[i];
      DXl[i] = Xl[i] == Xl[i] ? dx : Xl[i];
    }
  });
  return {dx, dg};
}

// DENORMALS: set (or clear) flush-to-zero and denormals-are-zero in the calling thread and every thread of its OpenMP
// team, the threads ATen's parallel loops run on. Returns how many threads were set (0 where the CPU has no MXCSR).
int64_t flush_denormals(bool on) {
#ifdef NORM_NERF_MXCSR
  const unsigned int bits = 0x8040u;  // FTZ (bit 15) | DAZ (bit 6)
  int64_t count = 0;
#pragma omp parallel num_threads(at::get_num_threads()) reduction(+ : count)
  {
    const unsigned int csr = _mm_getcsr();
    _mm_setcsr(on ? (csr | bits) : (csr & ~bits));
    count += 1;
  }
  return count;
#else
  return 0;
#endif
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
    name = f"norm_nerf_norm_kernels_v10_{_cpu_tag()}"
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
                "cross_norm_double_backward",
                "rms_norm_forward",
                "rms_norm_backward",
                "softplus_forward",
                "softplus_backward",
                "softplus_double_backward",
                "flush_denormals",
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


def kernels_wanted(impl: str) -> bool:
    """Whether a layer's ``impl`` asks for the C++ kernels: ``compiled``, or ``auto`` unless disabled by environment."""
    return impl == "compiled" or (impl == "auto" and compiled_enabled())


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
    """Train-mode cross norm through the C++ kernel; same values, gradients and outputs as ``CrossNormFunction``.

    Its backward under ``create_graph=True`` (double backward) is :class:`CompiledCrossNormGradFunction`, whose own
    backward is a C++ kernel too.
    """

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
        ctx.save_for_backward(x, w, row_mean, row_var, col_mean, col_var, weight)
        ctx.eps = eps
        ctx.mark_non_differentiable(col_mean, col_var)
        return y, col_mean, col_var

    @staticmethod
    def backward(
        ctx: FunctionCtx, grad: Tensor, _gm: Tensor | None, _gv: Tensor | None
    ) -> tuple[Tensor | None, Tensor | None, Tensor | None, None]:
        x, w, *stats, weight = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph: the gradients as a differentiable op
            dx, dw, db = CompiledCrossNormGradFunction.apply(x, weight, grad, *stats, ctx.eps)
        else:
            dx, dw, db = norm_kernels().cross_norm_backward(grad.contiguous(), x, w, *stats, ctx.eps)
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        return (dx if need_x else None), (dw if need_w else None), (db if need_b else None), None


class CompiledCrossNormGradFunction(torch.autograd.Function):
    """The cross norm's first backward ``(x, weight, g) -> (dx, d_weight, d_bias)`` as a differentiable op.

    ``dx = J(x)^T (g w)`` with ``J`` the Jacobian of the normalized output ``yhat = z r`` (no affine), so for an
    upstream ``v = dL/d(dx)``: ``dL/dg = w (J v)``, ``dL/dw = colsum(g (J v))`` and ``dL/dx = H v``, the derivative of
    the analytic ``dx`` (see :func:`norm_nerf.core.norm_grads.cross_norm_grads`) along ``v`` with ``h = g w`` held
    fixed. With ``dm, drho`` (column and row means of ``v``), ``da = 2 colsum((x - m) v) / (N-1)``,
    ``db = 2 rowsum((x - rho) v) / (C-1)``, ``dz = (K+1)/K v - N/K dm - C/K drho`` and
    ``dr = -r^3 (da + db) / 2``: ``J v = dz r + z dr``, and with ``dp = h dr``, ``du = h r^2 (dz r + 3 z dr)``,
    ``A = colsum(h z r^3) / (N-1)``, ``B = rowsum(h z r^3) / (C-1)``::

        H v = (K+1)/K dp - colsum(dp)/K - rowsum(dp)/K - (v - dm) A - (x - m) colsum(du)/(N-1)
              - (v - drho) B - (x - rho) rowsum(du)/(C-1)

    The C++ kernel makes three passes over ``N x C`` (about 20 autograd ops per layer before, each a pass and most a
    fresh buffer). Upstream gradients of ``d_weight`` / ``d_bias`` (rare: only a loss on the weight gradients) add
    ``J^T (g v_w)`` to ``dL/dx`` and ``v_w yhat + v_b`` to ``dL/dg``. A third derivative (``create_graph`` in this
    backward) differentiates the analytic expressions of :mod:`norm_nerf.core.norm_grads` instead.
    """

    @staticmethod
    def forward(
        ctx: FunctionCtx,
        x: Tensor,
        weight: Tensor | None,
        grad: Tensor,
        row_mean: Tensor,
        row_var: Tensor,
        col_mean: Tensor,
        col_var: Tensor,
        eps: float,
    ) -> tuple[Tensor, Tensor, Tensor]:
        _, w, _ = _kernel_args(x, weight, None)
        stats = (row_mean, row_var, col_mean, col_var)
        dx, dw, db = norm_kernels().cross_norm_backward(grad.contiguous(), x, w, *stats, eps)
        ctx.save_for_backward(x, weight, grad, w, *stats)
        ctx.eps = eps
        ctx.set_materialize_grads(False)  # upstream gradients of d_weight/d_bias are usually absent: None, not zeros
        return dx, dw, db

    @staticmethod
    def backward(
        ctx: FunctionCtx, v: Tensor | None, v_w: Tensor | None, v_b: Tensor | None
    ) -> tuple[Tensor | None, ...]:
        x, weight, grad, w, *stats = ctx.saved_tensors
        if torch.is_grad_enabled():
            return (*_grad_of_grads(x, weight, grad, v, v_w, v_b, eps=ctx.eps), *[None] * 5)
        kernels, g = norm_kernels(), grad.detach().contiguous()
        v = torch.zeros_like(x) if v is None else v.contiguous()
        dx, dg, dw = kernels.cross_norm_double_backward(v, g, x.detach(), w, *stats, ctx.eps)
        if v_w is not None:  # d_weight = colsum(g yhat)
            dx += kernels.cross_norm_backward(g, x.detach(), v_w.contiguous(), *stats, ctx.eps)[0]
            ones, zeros = torch.ones_like(w), torch.zeros_like(w)
            dg += kernels.cross_norm_forward(x.detach(), ones, zeros, ctx.eps)[0] * v_w
        if v_b is not None:  # d_bias = colsum(g)
            dg += v_b
        return dx, (dw if weight is not None else None), dg, *[None] * 5


def _grad_of_grads(
    x: Tensor, weight: Tensor | None, grad: Tensor, *upstream: Tensor | None, eps: float
) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
    """The vector-Jacobian product of ``(x, weight, grad) -> cross_norm_grads(x, weight, grad)`` with ``upstream``,
    through the analytic expressions and differentiable again (a third derivative).

    ``torch.func.vjp`` differentiates the expressions with respect to their own arguments only: ``grad`` itself
    depends on ``x`` through the layer's output, and a plain ``autograd.grad`` with respect to ``x`` would count that
    path twice."""
    from torch.func import vjp

    def grads(x: Tensor, g: Tensor, *w: Tensor) -> tuple[Tensor, ...]:
        return tuple(o for o in cross_norm_grads(x, w[0] if w else None, g, eps) if o is not None)

    outputs, pullback = vjp(grads, x, grad, *([weight] if weight is not None else []))
    got = pullback(tuple(torch.zeros_like(o) if u is None else u for o, u in zip(outputs, upstream)))
    return got[0], (got[2] if weight is not None else None), got[1]


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
