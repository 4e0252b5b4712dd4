// Train-mode norm kernels on float32 CPU tensors; the Python side is norm_nerf/core/functions/.
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "cpu_kernels.h"

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

// Batch norm (per-column statistics) and global norm (one statistic over all entries), the signatures of the Triton
// kernels (norm_nerf/core/triton/scale_shift.py). Forward: column sums and squares in double (one pass), the
// statistics (two-pass sums of squared deviations where the one-pass ones would lose more than 6 of double's 16
// digits, as norm_nerf/core/moments.py decides), then y = x * p + q per column. Returns (y, mean, unbiased var, rstd):
// per column, or shape (1,) with global_stats; bn normalizes with the biased variance, gn with the unbiased one.
std::vector<torch::Tensor> scale_shift_forward(torch::Tensor x, torch::Tensor w, torch::Tensor b, double eps,
                                               bool global_stats) {
  const int64_t n = x.size(0), c = x.size(1), groups = global_stats ? 1 : c;
  const float* X = x.data_ptr<float>();
  Partials<double> part(n, c, 2, 1024);
  at::parallel_for(0, part.chunks, 1, [&](int64_t k0, int64_t k1) {
    for (int64_t k = k0; k < k1; ++k) {
      double* __restrict__ cs = part.data.data() + k * part.width;
      double* __restrict__ cq = cs + c;
      for (int64_t i = k * part.rows_per_chunk; i < part.end(k, n); ++i) {
        const float* __restrict__ xi = X + i * c;
#pragma omp simd
        for (int64_t j = 0; j < c; ++j) {
          const double v = xi[j];
          cs[j] += v; cq[j] += v * v;
        }
      }
    }
  });
  std::vector<double> tot = part.total(), s(groups, 0.0), q(groups, 0.0);
  for (int64_t j = 0; j < c; ++j) {
    s[global_stats ? 0 : j] += tot[j];
    q[global_stats ? 0 : j] += tot[c + j];
  }
  const int64_t count = global_stats ? n * c : n;
  std::vector<double> mean(groups), centred(groups);
  bool two_pass = false;
  for (int64_t j = 0; j < groups; ++j) {
    mean[j] = s[j] / double(count);
    centred[j] = q[j] - s[j] * mean[j];
    two_pass = two_pass || q[j] - 1e6 * centred[j] > 0.0;
  }
  if (two_pass) {  // sums of squared deviations from the mean, in double, per chunk of rows
    Partials<double> dev(n, c, 1, 1024);
    const double* M = mean.data();
    at::parallel_for(0, dev.chunks, 1, [&](int64_t k0, int64_t k1) {
      for (int64_t k = k0; k < k1; ++k) {
        double* __restrict__ d = dev.data.data() + k * dev.width;
        for (int64_t i = k * dev.rows_per_chunk; i < dev.end(k, n); ++i) {
          const float* __restrict__ xi = X + i * c;
          for (int64_t j = 0; j < c; ++j) {
            const double e = double(xi[j]) - M[global_stats ? 0 : j];
            d[j] += e * e;
          }
        }
      }
    });
    const std::vector<double> dtot = dev.total();
    std::fill(centred.begin(), centred.end(), 0.0);
    for (int64_t j = 0; j < c; ++j) centred[global_stats ? 0 : j] += dtot[j];
  }
  auto opts = x.options();
  auto mean_t = torch::empty({groups}, opts), var_t = torch::empty({groups}, opts);
  auto rstd_t = torch::empty({groups}, opts);
  float *MT = mean_t.data_ptr<float>(), *VT = var_t.data_ptr<float>(), *RT = rstd_t.data_ptr<float>();
  const double norm_den = global_stats ? denom(count) : double(count);
  for (int64_t j = 0; j < groups; ++j) {
    const double cen = std::max(centred[j], 0.0);
    MT[j] = float(mean[j]);
    VT[j] = float(cen / denom(count));
    RT[j] = float(1.0 / std::sqrt(double(float(cen / norm_den)) + eps));
  }
  const float *W = w.data_ptr<float>(), *B = b.data_ptr<float>();
  std::vector<float> p(c), sh(c);
  for (int64_t j = 0; j < c; ++j) {
    const int64_t k = global_stats ? 0 : j;
    p[j] = RT[k] * W[j];
    sh[j] = B[j] - MT[k] * p[j];
  }
  auto y = torch::empty_like(x);
  float* Y = y.data_ptr<float>();
  at::parallel_for(0, n, 64, [&](int64_t i0, int64_t i1) {
    const float *__restrict__ P = p.data(), *__restrict__ S = sh.data();  // see POINTERS above
    for (int64_t i = i0; i < i1; ++i) {
      const float* __restrict__ xi = X + i * c;
      float* __restrict__ yi = Y + i * c;
#pragma omp simd
      for (int64_t j = 0; j < c; ++j) yi[j] = xi[j] * P[j] + S[j];
    }
  });
  return {y, mean_t, var_t, rstd_t};
}

// The input gradient of scale_shift_forward and the column sums of the affine gradients:
// dx = r w g - r mean(h) - (x - m) r^3 sum(h (x - m)) / D with h = g w (sums per column, or over all entries), and
// returns (dx, sum g, sum g (x - m)) per column.
std::vector<torch::Tensor> scale_shift_backward(torch::Tensor g, torch::Tensor x, torch::Tensor w, torch::Tensor mean,
                                                torch::Tensor rstd, bool global_stats) {
  const int64_t n = x.size(0), c = x.size(1);
  const float *G = g.data_ptr<float>(), *X = x.data_ptr<float>(), *W = w.data_ptr<float>();
  const float *MT = mean.data_ptr<float>(), *RT = rstd.data_ptr<float>();
  std::vector<float> m(c), r(c);
  for (int64_t j = 0; j < c; ++j) {
    m[j] = MT[global_stats ? 0 : j];
    r[j] = RT[global_stats ? 0 : j];
  }
  Partials<double> part(n, c, 2, 1024);
  at::parallel_for(0, part.chunks, 1, [&](int64_t k0, int64_t k1) {
    const float* __restrict__ Ml = m.data();  // see POINTERS above
    for (int64_t k = k0; k < k1; ++k) {
      double* __restrict__ gs = part.data.data() + k * part.width;
      double* __restrict__ gx = gs + c;
      for (int64_t i = k * part.rows_per_chunk; i < part.end(k, n); ++i) {
        const float *__restrict__ gi = G + i * c, *__restrict__ xi = X + i * c;
#pragma omp simd
        for (int64_t j = 0; j < c; ++j) {
          const double gv = gi[j];
          gs[j] += gv; gx[j] += gv * double(xi[j] - Ml[j]);
        }
      }
    }
  });
  const std::vector<double> tot = part.total();
  auto opts = x.options();
  auto g_sum = torch::empty({c}, opts), g_xc = torch::empty({c}, opts);
  float *GS = g_sum.data_ptr<float>(), *GX = g_xc.data_ptr<float>();
  double h_sum_all = 0.0, h_xc_all = 0.0;
  for (int64_t j = 0; j < c; ++j) {
    GS[j] = float(tot[j]);
    GX[j] = float(tot[c + j]);
    h_sum_all += double(W[j]) * tot[j];
    h_xc_all += double(W[j]) * tot[c + j];
  }
  const int64_t count = global_stats ? n * c : n;
  const double den = global_stats ? denom(count) : double(count);
  std::vector<float> p(c), a(c), sh(c);
  for (int64_t j = 0; j < c; ++j) {
    const double rj = r[j];
    const double h_sum = global_stats ? h_sum_all : double(W[j]) * tot[j];
    const double h_xc = global_stats ? h_xc_all : double(W[j]) * tot[c + j];
    p[j] = float(rj * W[j]);
    a[j] = float(rj * rj * rj * h_xc / den);
    sh[j] = float(rj * h_sum / double(count) - double(m[j]) * double(a[j]));  // -shift + m a, folded
  }
  auto dx = torch::empty_like(x);
  float* DX = dx.data_ptr<float>();
  at::parallel_for(0, n, 64, [&](int64_t i0, int64_t i1) {
    const float *__restrict__ P = p.data(), *__restrict__ A = a.data(), *__restrict__ S = sh.data();
    for (int64_t i = i0; i < i1; ++i) {
      const float *__restrict__ gi = G + i * c, *__restrict__ xi = X + i * c;
      float* __restrict__ di = DX + i * c;
#pragma omp simd
      for (int64_t j = 0; j < c; ++j) di[j] = gi[j] * P[j] - xi[j] * A[j] - S[j];
    }
  });
  return {dx, g_sum, g_xc};
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
