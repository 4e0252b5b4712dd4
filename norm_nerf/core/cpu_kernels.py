"""Builds and loads the C++/OpenMP CPU kernels of ``norm_nerf/core/csrc`` (``impl="auto"``, the default, and
``"compiled"``).

The sources are compiled on first use with :func:`torch.utils.cpp_extension.load` (a C++ compiler and ninja are
needed; 20-100 s once, cached by torch afterwards; every build prints a one-line notice). The build is named by a
hash of the sources, the compiler flags, this CPU's feature flags (the build uses ``-march=native``) and the torch
version, so an edited source or another CPU gets a build of its own, a stale library is never loaded, and a
finished build is imported directly (another ``ninja`` on ``PATH`` does not rebuild it). When the build fails,
:func:`cpu_kernels` warns once and returns None and the callers use their eager twins. Only float32 CPU tensors
use the kernels; ``NORM_NERF_COMPILED=0`` keeps ``impl="auto"`` on the eager path (no build).

What the kernels compute, and why they are written as they are, is documented in the sources:
``norms.cpp`` (batch/global norm primitives, cross norm forward/backward/double backward, RMS norm),
``softplus.cpp`` (softplus and two derivatives), ``denormals.cpp`` (FTZ/DAZ in every OpenMP thread) and
``local_sum.cpp`` (the shared-memory sum over the ranks of one machine, :mod:`norm_nerf.core.local_sum`).
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

CSRC = Path(__file__).with_name("csrc")
"""Folder of the C++ sources (shipped as package data)."""
SOURCES = ("norms.cpp", "softplus.cpp", "denormals.cpp", "local_sum.cpp", "bindings.cpp")
"""Translation units of the extension, in ``CSRC``."""
HEADERS = ("cpu_kernels.h",)
"""Headers the translation units include (part of the build hash)."""
CFLAGS = ("-O3", "-fopenmp", "-march=native", "-fno-math-errno")
"""Compiler flags (part of the build hash)."""
LDFLAGS = ("-fopenmp",)
"""Linker flags."""


def _cpu_flags() -> str:
    """This CPU's feature flags (``-march=native`` builds must not be reused on a different CPU)."""
    try:
        return next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def build_name() -> str:
    """``norm_nerf_cpu_kernels_<hash>``: the hash covers sources, headers, flags, CPU features and torch version."""
    digest = hashlib.sha1()
    for name in (*SOURCES, *HEADERS):
        digest.update(name.encode() + b"\0" + (CSRC / name).read_bytes())
    digest.update(" ".join((*CFLAGS, *LDFLAGS, _cpu_flags(), torch.__version__)).encode())
    return f"norm_nerf_cpu_kernels_{digest.hexdigest()[:16]}"


def _built_library(name: str) -> Path | None:
    """The library ``name`` in torch's extension cache, if a build finished there (None when unsure)."""
    try:
        from torch.utils.cpp_extension import _get_build_directory

        return next(Path(_get_build_directory(name, verbose=False)).glob(f"{name}*.so"), None)
    except Exception:  # noqa: BLE001 - a private helper; without it we simply build (torch skips what is current)
        return None


def _load_built(name: str, library: Path) -> object | None:
    """Import a finished build directly: its name hashes everything it was built from, so it is current.

    Going through ``cpp_extension.load`` again would let incidental tool state (another ``ninja`` on ``PATH``)
    trigger a silent rebuild in every process.
    """
    try:
        from torch.utils.cpp_extension import _import_module_from_library

        return _import_module_from_library(name, str(library.parent), True)
    except Exception:  # noqa: BLE001 - a broken cache entry: rebuild it
        return None


@functools.cache
def cpu_kernels() -> object | None:
    """The compiled extension module, or None (with one warning) when it cannot be built here."""
    try:
        from torch.utils.cpp_extension import load

        name = build_name()
        library = _built_library(name)
        module = _load_built(name, library) if library is not None else None
        if module is not None:
            return module
        print(f"norm-nerf: building the C++ CPU kernels for this CPU ({name}; once, 20-100 s)", file=sys.stderr)
        return load(
            name=name,
            sources=[str(CSRC / s) for s in SOURCES],
            extra_include_paths=[str(CSRC)],
            extra_cflags=list(CFLAGS),
            extra_ldflags=list(LDFLAGS),
            verbose=False,
        )
    except Exception as err:  # noqa: BLE001 - any build failure means: use the eager fast path
        reason = f"{type(err).__name__}: {err}"
        warnings.warn(f"compiled CPU kernels unavailable ({reason}); using impl='fast'", stacklevel=2)
        return None


def compiled_enabled() -> bool:
    """False when the environment sets ``NORM_NERF_COMPILED=0`` (``impl="auto"`` then means ``"fast"``)."""
    return os.environ.get("NORM_NERF_COMPILED", "1").strip() != "0"


def kernels_wanted(impl: str) -> bool:
    """Whether a layer's ``impl`` asks for the C++ kernels: ``compiled``, or ``auto`` unless disabled by environment."""
    return impl == "compiled" or (impl == "auto" and compiled_enabled())


def kernel_applies(x: Tensor) -> bool:
    """Whether the compiled kernels serve ``x`` (float32 on the CPU) and could be built."""
    return x.device.type == "cpu" and x.dtype == torch.float32 and cpu_kernels() is not None
