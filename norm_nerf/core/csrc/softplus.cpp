// Softplus and its derivatives on float32 CPU tensors; the Python side is norm_nerf/core/softplus.py.
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "cpu_kernels.h"

// SOFTPLUS (beta > 0): y = softplus(x) = max(x, 0) + log1p(e) / beta with e = exp(-beta |x|), its derivative
// sigmoid(beta x) and second derivative beta e / (1 + e)^2, one pass each. The exponential and log1p are inlined
// polynomials that `omp simd` vectorizes (libm calls, std::floor and selects of costly values do not vectorize here),
// about 1 ulp. Beyond beta |x| > 80 - log(beta) e is taken as 0 (the terms it feeds are below 1e-33 there; NaN still
// propagates), so no overflowing or denormal intermediate appears: a softplus with beta = 100 on normalized inputs
// spends most of ATen's time in those slow paths.
namespace {

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

}  // namespace

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
