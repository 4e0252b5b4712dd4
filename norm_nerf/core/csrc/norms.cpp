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

// The unbiased variance's denominator: count - 1, at least 1 (one sample has variance 0). Counts are doubles: with
// synchronised statistics they are the all-reduced number of rows of all ranks.
double denom(double count) { return count > 1 ? count - 1.0 : 1.0; }

// A float64 tensor of shape (rows, cols) holding `v` (sums that ranks add up: they are all-reduced in float64).
torch::Tensor doubles(const std::vector<double>& v, int64_t rows, int64_t cols) {
  auto t = torch::empty({rows, cols}, torch::dtype(torch::kFloat64));
  std::copy(v.begin(), v.end(), t.data_ptr<double>());
  return t;
}

// The values of a tensor of sums (float64 from these kernels, float32 from the Triton ones) as doubles.
std::vector<double> read_doubles(const torch::Tensor& t) {
  const auto d = t.to(torch::kFloat64).contiguous();
  return std::vector<double>(d.data_ptr<double>(), d.data_ptr<double>() + d.numel());
}

// POINTERS: inner loops read per-column inputs through local `__restrict__` copies made inside the parallel
// lambda. Through the lambda's by-reference capture (or a std::vector's data pointer) the compiler must reload the
// pointer after every store to another array, and those loops ran 2.5-3x slower.
// ROW SUMS: a loop that both reduces into scalars (omp simd reduction) and updates per-column arrays runs
// 2-3x slower here than two loops, one per job; row sums therefore get a loop of their own.

}  // namespace

// SPLIT: every batch-dependent norm is "partial sums over the rows (one reducing pass) -> statistics -> apply (one
// elementwise pass)", forward and backward. The sums are returned as tensors (float64 here) so that synchronised
// statistics can all-reduce them between the two halves (norm_nerf/core/functions/); the one-rank entry points
// (scale_shift_forward, ...) are the same halves called back to back. The Triton kernels have the same signatures.

// The first pass of bn/gn/cn: per column the sums of x and x^2 in double, shape (2, c) float64, and with row_stats
// every row's mean and unbiased variance (cross norm's per-point part; empty tensors otherwise).
std::vector<torch::Tensor> moment_sums(torch::Tensor x, bool row_stats) {
  const int64_t n = x.size(0), c = x.size(1);
  const float* X = x.data_ptr<float>();
  auto opts = x.options();
  auto row_mean = torch::empty({row_stats ? n : 0}, opts), row_var = torch::empty({row_stats ? n : 0}, opts);
  float *RM = row_mean.data_ptr<float>(), *RV = row_var.data_ptr<float>();
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
        if (!row_stats) continue;
        double s = 0.0, q = 0.0;  // the row's sums in a loop of their own (see ROW SUMS above)
#pragma omp simd reduction(+ : s, q)
        for (int64_t j = 0; j < c; ++j) {
          const double v = xi[j];
          s += v; q += v * v;
        }
        RM[i] = float(s / c);
        RV[i] = float(std::max(q - s * s / c, 0.0) / denom(c));
      }
    }
  });
  return {doubles(part.total(), 2, c), row_mean, row_var};
}

// y = (x - m) r w + b per column (mean and rstd per column, or shape (1,) with global_stats).
torch::Tensor scale_shift_apply(torch::Tensor x, torch::Tensor w, torch::Tensor b, torch::Tensor mean,
                                torch::Tensor rstd, bool global_stats) {
  const int64_t n = x.size(0), c = x.size(1);
  const float *X = x.data_ptr<float>(), *W = w.data_ptr<float>(), *B = b.data_ptr<float>();
  const float *MT = mean.data_ptr<float>(), *RT = rstd.data_ptr<float>();
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
  return y;
}

// Batch norm (per-column statistics) and global norm (one statistic over all entries) on one rank: moment_sums, the
// statistics (two-pass sums of squared deviations where the one-pass ones would lose more than 6 of double's 16
// digits, as norm_nerf/core/moments.py decides), then scale_shift_apply. Returns (y, mean, unbiased var, rstd): per
// column, or shape (1,) with global_stats; bn normalizes with the biased variance, gn with the unbiased one.
std::vector<torch::Tensor> scale_shift_forward(torch::Tensor x, torch::Tensor w, torch::Tensor b, double eps,
                                               bool global_stats) {
  const int64_t n = x.size(0), c = x.size(1), groups = global_stats ? 1 : c;
  const float* X = x.data_ptr<float>();
  const std::vector<double> tot = read_doubles(moment_sums(x, false)[0]);
  std::vector<double> s(groups, 0.0), q(groups, 0.0);
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
  return {scale_shift_apply(x, w, b, mean_t, rstd_t, global_stats), mean_t, var_t, rstd_t};
}

// The backward's reducing pass: per column sum g and sum g (x - m), shape (2, c) float64.
torch::Tensor scale_shift_backward_sums(torch::Tensor g, torch::Tensor x, torch::Tensor mean, bool global_stats) {
  const int64_t n = x.size(0), c = x.size(1);
  const float *G = g.data_ptr<float>(), *X = x.data_ptr<float>(), *MT = mean.data_ptr<float>();
  std::vector<float> m(c);
  for (int64_t j = 0; j < c; ++j) m[j] = MT[global_stats ? 0 : j];
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
  return doubles(part.total(), 2, c);
}

// The input gradient dx = r w g - r sum(h) / count - (x - m) r^3 sum(h (x - m)) / D with h = g w, from the column
// sums of scale_shift_backward_sums (of all ranks, with synchronised statistics) over `count` rows (sums per column,
// or over all entries with global_stats; D the variance's denominator).
torch::Tensor scale_shift_backward_apply(torch::Tensor g, torch::Tensor x, torch::Tensor w, torch::Tensor mean,
                                         torch::Tensor rstd, torch::Tensor sums, double count, bool global_stats) {
  const int64_t n = x.size(0), c = x.size(1);
  const float *G = g.data_ptr<float>(), *X = x.data_ptr<float>(), *W = w.data_ptr<float>();
  const float *MT = mean.data_ptr<float>(), *RT = rstd.data_ptr<float>();
  const std::vector<double> tot = read_doubles(sums);
  double h_sum_all = 0.0, h_xc_all = 0.0;
  for (int64_t j = 0; j < c; ++j) {
    h_sum_all += double(W[j]) * tot[j];
    h_xc_all += double(W[j]) * tot[c + j];
  }
  const double entries = global_stats ? count * double(c) : count;
  const double den = global_stats ? denom(entries) : entries;
  std::vector<float> p(c), a(c), sh(c);
  for (int64_t j = 0; j < c; ++j) {
    const double rj = RT[global_stats ? 0 : j], mj = MT[global_stats ? 0 : j];
    const double h_sum = global_stats ? h_sum_all : double(W[j]) * tot[j];
    const double h_xc = global_stats ? h_xc_all : double(W[j]) * tot[c + j];
    p[j] = float(rj * W[j]);
    a[j] = float(rj * rj * rj * h_xc / den);
    sh[j] = float(rj * h_sum / entries - mj * double(a[j]));  // -shift + m a, folded
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
  return dx;
}

// The input gradient of scale_shift_forward and the column sums of the affine gradients on one rank:
// returns (dx, sum g, sum g (x - m)) per column.
std::vector<torch::Tensor> scale_shift_backward(torch::Tensor g, torch::Tensor x, torch::Tensor w, torch::Tensor mean,
                                                torch::Tensor rstd, bool global_stats) {
  const auto sums = scale_shift_backward_sums(g, x, mean, global_stats);
  const auto dx = scale_shift_backward_apply(g, x, w, mean, rstd, sums, double(x.size(0)), global_stats);
  const auto f = sums.to(torch::kFloat32);
  return {dx, f[0], f[1]};
}

// Cross norm's elementwise pass: y = z r w + b with z = x - mu_ij = ((K+1) x - count m_j - C rho_i) / K,
// r = rsqrt(rho_var_i + col_var_j + eps), K = count + C (count: the rows behind the column statistics).
torch::Tensor cross_norm_apply(torch::Tensor x, torch::Tensor w, torch::Tensor b, torch::Tensor row_mean,
                               torch::Tensor row_var, torch::Tensor col_mean, torch::Tensor col_var, double count,
                               double eps) {
  const int64_t n = x.size(0), c = x.size(1);
  const double K = count + double(c);
  const float *X = x.data_ptr<float>(), *W = w.data_ptr<float>(), *B = b.data_ptr<float>();
  const float *RM = row_mean.data_ptr<float>(), *RV = row_var.data_ptr<float>();
  const float *CM = col_mean.data_ptr<float>(), *CV = col_var.data_ptr<float>();
  std::vector<float> bcol(c), vcol(c);
  for (int64_t j = 0; j < c; ++j) {
    bcol[j] = float(-count * CM[j] / K);
    vcol[j] = float(CV[j] + eps);
  }
  auto y = torch::empty_like(x);
  float* Y = y.data_ptr<float>();
  const float a = float((K + 1.0) / K);
  at::parallel_for(0, n, 64, [&](int64_t i0, int64_t i1) {
    const float *__restrict__ Wl = W, *__restrict__ Bl = B;  // see POINTERS above
    const float *__restrict__ BC = bcol.data(), *__restrict__ VC = vcol.data();
    for (int64_t i = i0; i < i1; ++i) {
      const float* __restrict__ xi = X + i * c;
      float* __restrict__ yi = Y + i * c;
      const float brow = float(-double(c) * RM[i] / K), vrow = RV[i];
#pragma omp simd
      for (int64_t j = 0; j < c; ++j)
        yi[j] = (a * xi[j] + brow + BC[j]) / std::sqrt(vrow + VC[j]) * Wl[j] + Bl[j];
    }
  });
  return y;
}

// Cross norm on one rank: moment_sums (row statistics and column sums in one pass), the column statistics, then
// cross_norm_apply. Returns (y, row_mean, row_var, col_mean, col_var), variances unbiased.
std::vector<torch::Tensor> cross_norm_forward(torch::Tensor x, torch::Tensor w, torch::Tensor b, double eps) {
  const int64_t n = x.size(0), c = x.size(1);
  const auto stats = moment_sums(x, true);
  const std::vector<double> col = read_doubles(stats[0]);
  auto col_mean = torch::empty({c}, x.options()), col_var = torch::empty({c}, x.options());
  float *CM = col_mean.data_ptr<float>(), *CV = col_var.data_ptr<float>();
  for (int64_t j = 0; j < c; ++j) {
    CM[j] = float(col[j] / n);
    CV[j] = float(std::max(col[c + j] - col[j] * col[j] / n, 0.0) / denom(n));
  }
  auto y = cross_norm_apply(x, w, b, stats[1], stats[2], col_mean, col_var, double(n), eps);
  return {y, stats[1], stats[2], col_mean, col_var};
}

// Cross norm backward, reducing pass: column sums (4, c) float64 of g, g yhat, g r and g z r^3; per row
// row_b = sum_j w g z r^3 / (C-1) and row_p = sum_j w g r; and `work`, an N x C buffer holding r (one square root
// per entry) that cross_norm_backward_apply overwrites with the gradient.
std::vector<torch::Tensor> cross_norm_backward_sums(torch::Tensor g, torch::Tensor x, torch::Tensor w,
                                                    torch::Tensor row_mean, torch::Tensor row_var,
                                                    torch::Tensor col_mean, torch::Tensor col_var, double count,
                                                    double eps) {
  const int64_t n = x.size(0), c = x.size(1);
  const float K = float(count + double(c)), a = (K + 1.0f) / K;
  const float *X = x.data_ptr<float>(), *G = g.data_ptr<float>(), *W = w.data_ptr<float>();
  const float *RM = row_mean.data_ptr<float>(), *RV = row_var.data_ptr<float>();
  const float *CM = col_mean.data_ptr<float>(), *CV = col_var.data_ptr<float>();
  std::vector<float> vcol(c), bcol(c);
  for (int64_t j = 0; j < c; ++j) { vcol[j] = float(CV[j] + eps); bcol[j] = -float(count) * CM[j] / K; }
  auto row_b = torch::empty({n}, x.options()), row_p = torch::empty({n}, x.options());
  float *BR = row_b.data_ptr<float>(), *PR = row_p.data_ptr<float>();
  Partials<float> part(n, c, 4, 64);  // sum g, sum g*yhat, sum g*r, sum g*z*r^3 per column
  auto work = torch::empty_like(x);
  float* R = work.data_ptr<float>();
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
        float* __restrict__ ri = R + i * c;
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
        BR[i] = float(wr / denom(c));
        PR[i] = pr;
      }
    }
  });
  return {doubles(part.total(), 4, c), row_b, row_p, work};
}

// Cross norm backward, elementwise pass: dx = (K+1)/K w g r - w colsum(g r)/K - rowsum(w g r)/K - (x - m_j) a_j
// - (x - rho_i) b_i with a_j = w_j colsum(g z r^3)_j / (count-1), from the column sums of cross_norm_backward_sums
// (of all ranks, with synchronised statistics); written into `work` (r on entry), which it returns.
torch::Tensor cross_norm_backward_apply(torch::Tensor g, torch::Tensor x, torch::Tensor w, torch::Tensor row_mean,
                                        torch::Tensor row_var, torch::Tensor col_mean, torch::Tensor col_var,
                                        torch::Tensor row_b, torch::Tensor row_p, torch::Tensor sums,
                                        torch::Tensor work, double count, double eps) {
  const int64_t n = x.size(0), c = x.size(1);
  const float K = float(count + double(c)), a = (K + 1.0f) / K;
  const float *X = x.data_ptr<float>(), *G = g.data_ptr<float>(), *W = w.data_ptr<float>();
  const float *RM = row_mean.data_ptr<float>(), *CM = col_mean.data_ptr<float>();
  const float *BR = row_b.data_ptr<float>(), *PR = row_p.data_ptr<float>();
  const std::vector<double> col = read_doubles(sums);
  std::vector<float> a_col(c), e_col(c), s_col(c);
  for (int64_t j = 0; j < c; ++j) {
    a_col[j] = float(W[j] * col[3 * c + j] / denom(count));
    e_col[j] = float(CM[j] * a_col[j] - W[j] * col[2 * c + j] / K);
    s_col[j] = a * W[j];
  }
  float* DX = work.data_ptr<float>();
  at::parallel_for(0, n, 64, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const float *__restrict__ xi = X + i * c, *__restrict__ gi = G + i * c;
      float* __restrict__ di = DX + i * c;  // r on entry, the gradient on exit
      const float br = BR[i], fr = RM[i] * BR[i] - PR[i] / K;
      const float *__restrict__ SC = s_col.data(), *__restrict__ EC = e_col.data(), *__restrict__ AC = a_col.data();
#pragma omp simd
      for (int64_t j = 0; j < c; ++j) di[j] = SC[j] * gi[j] * di[j] + EC[j] + fr - xi[j] * (AC[j] + br);
    }
  });
  return work;
}

// Cross norm backward on one rank: (dx, d_weight, d_bias).
std::vector<torch::Tensor> cross_norm_backward(torch::Tensor g, torch::Tensor x, torch::Tensor w,
                                               torch::Tensor row_mean, torch::Tensor row_var,
                                               torch::Tensor col_mean, torch::Tensor col_var, double eps) {
  const double n = double(x.size(0));
  const auto s = cross_norm_backward_sums(g, x, w, row_mean, row_var, col_mean, col_var, n, eps);
  const auto dx = cross_norm_backward_apply(g, x, w, row_mean, row_var, col_mean, col_var, s[1], s[2], s[0], s[3], n,
                                            eps);
  const auto f = s[0].to(torch::kFloat32);
  return {dx, f[1], f[0]};
}

// Second derivatives of the cross norm (double backward, e.g. an eikonal loss). The layer's first backward
// dx = J^T (g w) is differentiated along v = dL/d(dx): dL/dg = w * (J v) (the forward-mode derivative of the
// normalized output along v), dL/dw = colsum(g * J v), and dL/dx = H v, the derivative of the analytic dx along v
// (see KernelCrossNormGradFunction for the formulas). Three passes: (1) the derivatives of the statistics along v
// and the sums A, B of the first backward; (2) J v and the sums of the derivatives of dx's terms; (3) H v. As the
// first-order kernels, the passes are halves that synchronised statistics call with the column sums of all ranks
// (and their row count `count`) in between; cross_norm_double_backward runs them back to back on one rank.
namespace {

// The constants of the double backward for `count` rows behind the column statistics and c columns.
struct Double {
  float K, a, fn, fc, dn, dc;
  Double(double count, int64_t c)
      : K(float(count + double(c))), a((K + 1.0f) / K), fn(float(count) / K), fc(float(c) / K),
        dn(float(denom(count))), dc(float(denom(double(c)))) {}
};

}  // namespace

// Pass 1: column sums (3, c) float64 of v, (x - colmean) v and u = g w z r^3; per row (3, n) float: dm = rowmean(v),
// db = 2 rowsum((x - rho) v) / (C-1), b = rowsum(u) / (C-1); and `work`, N x C holding r (one square root per entry).
std::vector<torch::Tensor> cross_norm_double_backward_sums(torch::Tensor v, torch::Tensor g, torch::Tensor x,
                                                           torch::Tensor w, torch::Tensor row_mean,
                                                           torch::Tensor row_var, torch::Tensor col_mean,
                                                           torch::Tensor col_var, double count, double eps) {
  const int64_t n = x.size(0), c = x.size(1);
  const Double d(count, c);
  const float *X = x.data_ptr<float>(), *G = g.data_ptr<float>(), *V = v.data_ptr<float>(), *W = w.data_ptr<float>();
  const float *RM = row_mean.data_ptr<float>(), *RV = row_var.data_ptr<float>();
  const float *CM = col_mean.data_ptr<float>(), *CV = col_var.data_ptr<float>();
  std::vector<float> vcol(c), zcol(c);
  for (int64_t j = 0; j < c; ++j) { vcol[j] = float(CV[j] + eps); zcol[j] = -d.fn * CM[j]; }
  auto work = torch::empty_like(x);
  auto rows = torch::empty({3, n}, x.options());
  float *R = work.data_ptr<float>(), *DMR = rows.data_ptr<float>(), *DBR = DMR + n, *BR = DBR + n;
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
        float* __restrict__ ri = R + i * c;
        const float rho = RM[i], vrow = RV[i], zrow = -d.fc * rho;
#pragma omp simd
        for (int64_t j = 0; j < c; ++j) {
          const float r = 1.0f / std::sqrt(vrow + VC[j]);
          ri[j] = r;
          const float z = d.a * xi[j] + zrow + ZC[j];
          const float u = gi[j] * Wl[j] * z * r * r * r;
          sv[j] += vi[j]; sxv[j] += (xi[j] - CMl[j]) * vi[j]; su[j] += u;
          T1[j] = vi[j]; T2[j] = (xi[j] - rho) * vi[j]; T3[j] = u;
        }
        float s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;  // see ROW SUMS above
#pragma omp simd reduction(+ : s1, s2, s3)
        for (int64_t j = 0; j < c; ++j) { s1 += T1[j]; s2 += T2[j]; s3 += T3[j]; }
        DMR[i] = s1 / float(c); DBR[i] = 2.0f * s2 / d.dc; BR[i] = s3 / d.dc;
      }
    }
  });
  return {doubles(p1.total(), 3, c), rows, work};
}

// Pass 2, from pass 1's column sums `sums1` (of all ranks): t = J v = dz r + z dr; returns (column sums (3, c)
// float64 of g t, dp = h dr and du = h r^2 (dz r + 3 z dr); per row (2, n) float: rowsum(dp), rowsum(du) / (C-1);
// dL/dg = w t, N x C). r comes from `work` (the Triton twin recomputes it from the variances and eps).
std::vector<torch::Tensor> cross_norm_double_backward_sums2(torch::Tensor v, torch::Tensor g, torch::Tensor x,
                                                            torch::Tensor w, torch::Tensor row_mean,
                                                            torch::Tensor /*row_var*/, torch::Tensor col_mean,
                                                            torch::Tensor /*col_var*/, torch::Tensor rows1,
                                                            torch::Tensor sums1, torch::Tensor work, double count,
                                                            double /*eps*/) {
  const int64_t n = x.size(0), c = x.size(1);
  const Double d(count, c);
  const float *X = x.data_ptr<float>(), *G = g.data_ptr<float>(), *V = v.data_ptr<float>(), *W = w.data_ptr<float>();
  const float *RM = row_mean.data_ptr<float>(), *CM = col_mean.data_ptr<float>(), *R = work.data_ptr<float>();
  const float *DMR = rows1.data_ptr<float>(), *DBR = DMR + n;
  const std::vector<double> col = read_doubles(sums1);
  std::vector<float> zcol(c), dmc(c), dac(c);
  for (int64_t j = 0; j < c; ++j) {
    zcol[j] = -d.fn * CM[j]; dmc[j] = float(col[j] / count); dac[j] = float(2.0 * col[c + j] / d.dn);
  }
  auto gg = torch::empty_like(x);
  auto rows = torch::empty({2, n}, x.options());
  float *GG = gg.data_ptr<float>(), *QR = rows.data_ptr<float>(), *DBBR = QR + n;
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
        const float* __restrict__ ri = R + i * c;
        float* __restrict__ ti = GG + i * c;
        const float zrow = -d.fc * RM[i], dzrow = -d.fc * DMR[i], dbrow = DBR[i];
#pragma omp simd
        for (int64_t j = 0; j < c; ++j) {
          const float r = ri[j], z = d.a * xi[j] + zrow + ZC[j];
          const float dz = d.a * vi[j] - d.fn * DMC[j] + dzrow;
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
        QR[i] = s1; DBBR[i] = s2 / d.dc;
      }
    }
  });
  return {doubles(p2.total(), 3, c), rows, gg};
}

// Pass 3, from the column sums of passes 1 and 2 (of all ranks; sums2's first row, g t, is not read):
// H v = a dp - P_j/K - Q_i/K - (v - dm_j) A_j - (x - m_j) dA_j - (v - drho_i) B_i - (x - rho_i) dB_i, written into
// `work` (r on entry), which it returns.
torch::Tensor cross_norm_double_backward_apply(torch::Tensor v, torch::Tensor g, torch::Tensor x, torch::Tensor w,
                                               torch::Tensor row_mean, torch::Tensor /*row_var*/,
                                               torch::Tensor col_mean, torch::Tensor /*col_var*/, torch::Tensor rows1,
                                               torch::Tensor rows2, torch::Tensor sums1, torch::Tensor sums2,
                                               torch::Tensor work, double count, double /*eps*/) {
  const int64_t n = x.size(0), c = x.size(1);
  const Double d(count, c);
  const float *X = x.data_ptr<float>(), *G = g.data_ptr<float>(), *V = v.data_ptr<float>(), *W = w.data_ptr<float>();
  const float *RM = row_mean.data_ptr<float>(), *CM = col_mean.data_ptr<float>();
  const float *DMR = rows1.data_ptr<float>(), *DBR = DMR + n, *BR = DBR + n;
  const float *QR = rows2.data_ptr<float>(), *DBBR = QR + n;
  const std::vector<double> col1 = read_doubles(sums1), col2 = read_doubles(sums2);
  std::vector<float> dac(c), ec(c), lc(c), mc(c);  // dA, per-column constant, v coefficient, x coefficient of H v
  for (int64_t j = 0; j < c; ++j) {
    const float dmc = float(col1[j] / count), ac = float(col1[2 * c + j] / d.dn);
    const float pj = float(col2[c + j]), dAj = float(col2[2 * c + j] / d.dn);
    dac[j] = float(2.0 * col1[c + j] / d.dn);
    ec[j] = -pj / d.K + dmc * ac + CM[j] * dAj;
    lc[j] = ac; mc[j] = dAj;
  }
  float* GX = work.data_ptr<float>();
  at::parallel_for(0, n, 64, [&](int64_t i0, int64_t i1) {
    const float *__restrict__ Wl = W, *__restrict__ DAC = dac.data(), *__restrict__ EC = ec.data();
    const float *__restrict__ LC = lc.data(), *__restrict__ MC = mc.data();
    for (int64_t i = i0; i < i1; ++i) {
      const float *__restrict__ xi = X + i * c, *__restrict__ gi = G + i * c, *__restrict__ vi = V + i * c;
      float* __restrict__ oi = GX + i * c;  // r on entry
      const float er = -QR[i] / d.K + DMR[i] * BR[i] + RM[i] * DBBR[i], lr = BR[i], mr = DBBR[i], dbrow = DBR[i];
#pragma omp simd
      for (int64_t j = 0; j < c; ++j) {
        const float r = oi[j];
        const float dp = gi[j] * Wl[j] * (-0.5f * r * r * r * (DAC[j] + dbrow));
        oi[j] = d.a * dp + EC[j] + er - vi[j] * (LC[j] + lr) - xi[j] * (MC[j] + mr);
      }
    }
  });
  return work;
}

// The double backward on one rank: (dL/dx, dL/dg, dL/dw).
std::vector<torch::Tensor> cross_norm_double_backward(torch::Tensor v, torch::Tensor g, torch::Tensor x,
                                                      torch::Tensor w, torch::Tensor row_mean, torch::Tensor row_var,
                                                      torch::Tensor col_mean, torch::Tensor col_var, double eps) {
  const double n = double(x.size(0));
  const auto p1 = cross_norm_double_backward_sums(v, g, x, w, row_mean, row_var, col_mean, col_var, n, eps);
  const auto p2 =
      cross_norm_double_backward_sums2(v, g, x, w, row_mean, row_var, col_mean, col_var, p1[1], p1[0], p1[2], n, eps);
  const auto gx = cross_norm_double_backward_apply(v, g, x, w, row_mean, row_var, col_mean, col_var, p1[1], p2[1],
                                                   p1[0], p2[0], p1[2], n, eps);
  return {gx, p2[2], p2[0][0].to(torch::kFloat32)};
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
