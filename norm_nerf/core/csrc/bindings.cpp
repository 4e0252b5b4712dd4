// The Python module of the CPU kernels (built by norm_nerf/core/cpu_kernels.py).
#include <torch/extension.h>

#include "cpu_kernels.h"

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("moment_sums", &moment_sums);
  m.def("scale_shift_apply", &scale_shift_apply);
  m.def("scale_shift_backward_sums", &scale_shift_backward_sums);
  m.def("scale_shift_backward_apply", &scale_shift_backward_apply);
  m.def("cross_norm_apply", &cross_norm_apply);
  m.def("cross_norm_backward_sums", &cross_norm_backward_sums);
  m.def("cross_norm_backward_apply", &cross_norm_backward_apply);
  m.def("scale_shift_forward", &scale_shift_forward);
  m.def("scale_shift_backward", &scale_shift_backward);
  m.def("cross_norm_forward", &cross_norm_forward);
  m.def("cross_norm_backward", &cross_norm_backward);
  m.def("cross_norm_double_backward", &cross_norm_double_backward);
  m.def("cross_norm_double_backward_sums", &cross_norm_double_backward_sums);
  m.def("cross_norm_double_backward_sums2", &cross_norm_double_backward_sums2);
  m.def("cross_norm_double_backward_apply", &cross_norm_double_backward_apply);
  m.def("rms_norm_forward", &rms_norm_forward);
  m.def("rms_norm_backward", &rms_norm_backward);
  m.def("softplus_forward", &softplus_forward);
  m.def("softplus_backward", &softplus_backward);
  m.def("softplus_double_backward", &softplus_double_backward);
  m.def("flush_denormals", &flush_denormals);
  m.def("local_sum_region_bytes", &local_sum_region_bytes);
  m.def("local_sum_register", &local_sum_register);
  m.def("local_sum_peers_alive", &local_sum_peers_alive);
  m.def("local_sum_", &local_sum_, py::call_guard<py::gil_scoped_release>());  // waits for the other ranks
}
