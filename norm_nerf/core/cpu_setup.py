"""Process settings for training nerfstudio methods on a CPU: keep freed memory, flush denormal floats to zero.

Denormal floats (below 1.2e-38 in float32) take a slow microcode path on x86 CPUs, tens of times slower per operation.
They are common in a NeuS step: softplus with beta = 100 on normalized pre-activations has derivatives down to
e^-75, and the backward passes multiply such factors together. Flush-to-zero (FTZ) and denormals-are-zero (DAZ)
treat them as zero, which changes no result that float32 resolves (TensorFlow sets the same on CPUs by default;
PyTorch does not).

``NORM_NERF_FLUSH_DENORMALS=0`` leaves the floating-point mode alone; ``NORM_NERF_RETAIN_MEMORY=0`` the allocator.
"""

from __future__ import annotations

import os
import warnings

import torch

from norm_nerf.core.cpu_kernels import compiled_enabled, cpu_kernels
from norm_nerf.utils.cpu_memory import retain_freed_memory

_flushed: dict[int, int] = {}


def flush_denormals() -> int:
    """Set FTZ/DAZ in this thread and in every intra-op (OpenMP) thread torch uses now; returns how many threads.

    Needs the compiled kernels (:func:`norm_nerf.core.cpu_kernels.cpu_kernels`) to reach the worker threads; without
    them only this thread is set (``torch.set_flush_denormal``). Returns 0 when opted out or unsupported. Applied once
    per thread count: call it again after ``torch.set_num_threads``.
    """
    if os.environ.get("NORM_NERF_FLUSH_DENORMALS", "1").strip() == "0":
        return 0
    threads = torch.get_num_threads()
    if threads not in _flushed:
        kernels = cpu_kernels() if compiled_enabled() else None
        main = torch.set_flush_denormal(True)
        _flushed[threads] = int(kernels.flush_denormals(True)) if kernels is not None else int(main)
        # numpy notices the flushed mode when it computes float limits and warns each time; it is intended here
        warnings.filterwarnings("ignore", message="The value of the smallest subnormal", category=UserWarning)
    return _flushed[threads]


def prepare_cpu_training() -> None:
    """The settings CPU training runs with: :func:`retain_freed_memory` and :func:`flush_denormals`."""
    retain_freed_memory()
    flush_denormals()
