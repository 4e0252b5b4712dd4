// The Python module of the CPU kernels (built by norm_nerf/core/cpu_kernels.py).
#include <torch/extension.h>

#include "cpu_kernels.h"

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("scale_shift_forward", &scale_shift_forward);
  m.def("scale_shift_backward", &scale_shift_backward);
  m.def("cross_norm_forward", &cross_norm_forward);
  m.def("cross_norm_backward", &cross_norm_backward);
  m.def("cross_norm_double_backward", &cross_norm_double_backward);
  m.def("rms_norm_forward", &rms_norm_forward);
  m.def("rms_norm_backward", &rms_norm_backward);
  m.def("softplus_forward", &softplus_forward);
  m.def("softplus_backward", &softplus_backward);
  m.def("softplus_double_backward", &softplus_double_backward);
  m.def("flush_denormals", &flush_denormals);
}
