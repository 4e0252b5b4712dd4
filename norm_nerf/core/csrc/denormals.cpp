// Flush-to-zero / denormals-are-zero for CPU training (norm_nerf/core/cpu_setup.py).
#include <ATen/Parallel.h>

#include "cpu_kernels.h"

#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
#define NORM_NERF_MXCSR 1
#endif

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
