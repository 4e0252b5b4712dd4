"""Triton kernels for the train-mode norms on CUDA tensors (``impl="auto"`` and ``"triton"``): the loader.

The kernels live beside their C++ twins as source files, one module per family: :mod:`.moments` (batch statistics
shared by bn/gn/cn), :mod:`.cross_norm`, :mod:`.scale_shift` (bn and gn) and :mod:`.rms_norm`; launch geometry in
:mod:`.launch`. This module imports none of them, nor triton, until a kernel is first wanted: the core imports and
runs without triton (CPU-only torch wheels have none).

:func:`triton_kernels_for` returns the kernels (a :class:`TritonNorms`) for a flattened ``N x C`` float32 input they
serve, else None:

* CUDA tensors, when triton imports and the kernels passed a one-time check on that device (:func:`_self_check`:
  every kernel on a small matrix against the eager Functions; on any failure one warning and the eager ``fast``
  path from then on);
* CPU tensors only under Triton's interpreter: ``TRITON_INTERPRET=1`` set *before triton is imported* (triton.language
  decorates its own helpers at import), as in ``TRITON_INTERPRET=1 python ...``. The tests run the kernels that way
  in a subprocess (``tests/core/test_triton.py``).

``NORM_NERF_TRITON=0`` keeps ``impl="auto"`` off the kernels (:func:`triton_enabled`); ``impl="triton"`` asks for them
explicitly.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import warnings
from types import ModuleType

import torch
from torch import Tensor

from norm_nerf.core.compat import is_compiling
from norm_nerf.core.triton.launch import INTERPRETER_CONFIG, MAX_CHANNELS, LaunchConfig, gpu_config

__all__ = [
    "TritonNorms",
    "interpreting",
    "triton_available",
    "triton_enabled",
    "triton_kernels",
    "triton_kernels_for",
]


def triton_enabled() -> bool:
    """False when the environment sets ``NORM_NERF_TRITON=0`` (``impl="auto"`` then uses the eager Functions)."""
    return os.environ.get("NORM_NERF_TRITON", "1").strip() != "0"


@functools.cache
def triton_available() -> bool:
    """Whether triton imports (it ships with the CUDA torch wheels)."""
    if importlib.util.find_spec("triton") is None:
        return False
    try:
        import triton  # noqa: F401
        import triton.language  # noqa: F401
    except Exception:  # noqa: BLE001 - a broken install counts as absent
        return False
    return True


@functools.cache
def interpreting() -> bool:
    """Whether the imported triton runs kernels in its interpreter (``TRITON_INTERPRET=1`` at its import; fixed for
    the process from then on)."""
    if not triton_available():
        return False
    import triton.language as tl

    return type(tl.sum).__name__ == "InterpretedFunction"


class TritonNorms:
    """The Triton kernels with the call signatures of the C++ ones (``cpu_kernels()``) where both exist, the halves
    of the batch-dependent norms included (``moment_sums``, ``*_apply``, ``*_backward_sums``, ``*_backward_apply``:
    synchronised statistics all-reduce the sums between them).

    Inputs are contiguous float32 ``N x C`` matrices and contiguous float32 per-channel affine vectors
    (:func:`norm_nerf.core.functions.autograd.kernel_args`); ``config`` picks tiles and program counts per device.
    """

    def __init__(self, modules: dict[str, ModuleType], configs: dict[torch.device, LaunchConfig] | None = None):
        self._m = modules
        self._configs = dict(configs or {})

    def config(self, x: Tensor) -> LaunchConfig:
        """The launch configuration for ``x``'s device."""
        cfg = self._configs.get(x.device)
        if cfg is None:
            if x.device.type == "cuda":
                props = torch.cuda.get_device_properties(x.device)
                cfg = gpu_config(props.multi_processor_count)
            else:
                cfg = INTERPRETER_CONFIG
            self._configs[x.device] = cfg
        return cfg

    def with_config(self, config: LaunchConfig) -> TritonNorms:
        """The same kernels launched with ``config`` on every device (tests: other tile sizes)."""
        return _FixedConfig(self._m, config)

    def cross_norm_forward(self, x: Tensor, w: Tensor, b: Tensor, eps: float) -> tuple[Tensor, ...]:
        with _on_device(x):
            return self._m["cross_norm"].forward(x, w, b, eps, self.config(x))

    def moment_sums(self, x: Tensor, row_stats: bool) -> tuple[Tensor, Tensor, Tensor]:
        """``(column sums of x and x*x (2, C) float64, row_mean, row_var)``: the first half of bn/gn/cn."""
        with _on_device(x):
            return self._m["moments"].moment_sums(x, row_stats, self.config(x))

    def cross_norm_apply(
        self, x: Tensor, w: Tensor, b: Tensor, row_mean: Tensor, row_var: Tensor, col_mean: Tensor, col_var: Tensor,
        count: float, eps: float,
    ) -> Tensor:  # fmt: skip
        with _on_device(x):
            stats = (row_mean, row_var, col_mean, col_var)
            return self._m["cross_norm"].apply(x, w, b, *stats, count, eps, self.config(x))

    def cross_norm_backward_sums(
        self, g: Tensor, x: Tensor, w: Tensor, row_mean: Tensor, row_var: Tensor, col_mean: Tensor,
        col_var: Tensor, count: float, eps: float,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:  # fmt: skip
        with _on_device(x):
            stats = (row_mean, row_var, col_mean, col_var)
            return self._m["cross_norm"].backward_sums(g, x, w, *stats, count, eps, self.config(x))

    def cross_norm_backward_apply(
        self, g: Tensor, x: Tensor, w: Tensor, row_mean: Tensor, row_var: Tensor, col_mean: Tensor,
        col_var: Tensor, row_b: Tensor, row_p: Tensor, sums: Tensor, work: Tensor, count: float, eps: float,
    ) -> Tensor:  # fmt: skip
        with _on_device(x):
            stats = (row_mean, row_var, col_mean, col_var)
            rows = (row_b, row_p, sums, work)
            return self._m["cross_norm"].backward_apply(g, x, w, *stats, *rows, count, eps, self.config(x))

    def cross_norm_backward(
        self, g: Tensor, x: Tensor, w: Tensor, row_mean: Tensor, row_var: Tensor, col_mean: Tensor,
        col_var: Tensor, eps: float,
    ) -> tuple[Tensor, Tensor, Tensor]:  # fmt: skip
        with _on_device(x):
            stats = (row_mean, row_var, col_mean, col_var)
            return self._m["cross_norm"].backward(g, x, w, *stats, eps, self.config(x))

    def cross_norm_double_backward(
        self, v: Tensor, g: Tensor, x: Tensor, w: Tensor, row_mean: Tensor, row_var: Tensor, col_mean: Tensor,
        col_var: Tensor, eps: float,
    ) -> tuple[Tensor, Tensor, Tensor]:  # fmt: skip
        with _on_device(x):
            stats = (row_mean, row_var, col_mean, col_var)
            return self._m["cross_norm"].double_backward(v, g, x, w, *stats, eps, self.config(x))

    def cross_norm_double_backward_sums(
        self, v: Tensor, g: Tensor, x: Tensor, w: Tensor, row_mean: Tensor, row_var: Tensor, col_mean: Tensor,
        col_var: Tensor, count: float, eps: float,
    ) -> tuple[Tensor, Tensor, Tensor]:  # fmt: skip
        with _on_device(x):
            stats = (row_mean, row_var, col_mean, col_var)
            return self._m["cross_norm"].double_backward_sums(v, g, x, w, *stats, count, eps, self.config(x))

    def cross_norm_double_backward_sums2(
        self, v: Tensor, g: Tensor, x: Tensor, w: Tensor, row_mean: Tensor, row_var: Tensor, col_mean: Tensor,
        col_var: Tensor, rows1: Tensor, sums1: Tensor, work: Tensor, count: float, eps: float,
    ) -> tuple[Tensor, Tensor, Tensor]:  # fmt: skip
        with _on_device(x):
            stats = (row_mean, row_var, col_mean, col_var)
            module = self._m["cross_norm"]
            return module.double_backward_sums2(v, g, x, w, *stats, rows1, sums1, work, count, eps, self.config(x))

    def cross_norm_double_backward_apply(
        self, v: Tensor, g: Tensor, x: Tensor, w: Tensor, row_mean: Tensor, row_var: Tensor, col_mean: Tensor,
        col_var: Tensor, rows1: Tensor, rows2: Tensor, sums1: Tensor, sums2: Tensor, work: Tensor, count: float,
        eps: float,
    ) -> Tensor:  # fmt: skip
        with _on_device(x):
            stats, rows = (row_mean, row_var, col_mean, col_var), (rows1, rows2, sums1, sums2, work)
            return self._m["cross_norm"].double_backward_apply(v, g, x, w, *stats, *rows, count, eps, self.config(x))

    def rms_norm_forward(self, x: Tensor, w: Tensor, b: Tensor, eps: float) -> tuple[Tensor, Tensor]:
        with _on_device(x):
            return self._m["rms_norm"].forward(x, w, b, eps, self.config(x))

    def rms_norm_backward(self, g: Tensor, x: Tensor, w: Tensor, inv: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        with _on_device(x):
            return self._m["rms_norm"].backward(g, x, w, inv, self.config(x))

    def scale_shift_forward(self, x: Tensor, w: Tensor, b: Tensor, eps: float, global_stats: bool):
        """``(y, mean, unbiased_var, rstd)`` of batch (``global_stats=False``) or global norm."""
        with _on_device(x):
            return self._m["scale_shift"].forward(x, w, b, eps, global_stats, self.config(x))

    def scale_shift_apply(
        self, x: Tensor, w: Tensor, b: Tensor, mean: Tensor, rstd: Tensor, global_stats: bool
    ) -> Tensor:
        with _on_device(x):
            return self._m["scale_shift"].apply(x, w, b, mean, rstd, global_stats, self.config(x))

    def scale_shift_backward_sums(self, g: Tensor, x: Tensor, mean: Tensor, global_stats: bool) -> Tensor:
        with _on_device(x):
            return self._m["scale_shift"].backward_sums(g, x, mean, global_stats, self.config(x))

    def scale_shift_backward_apply(
        self, g: Tensor, x: Tensor, w: Tensor, mean: Tensor, rstd: Tensor, sums: Tensor, count: float,
        global_stats: bool,
    ) -> Tensor:  # fmt: skip
        with _on_device(x):
            return self._m["scale_shift"].backward_apply(g, x, w, mean, rstd, sums, count, global_stats, self.config(x))

    def scale_shift_backward(self, g: Tensor, x: Tensor, w: Tensor, mean: Tensor, rstd: Tensor, global_stats: bool):
        """``(dx, sum g, sum g (x - m))`` (column sums)."""
        with _on_device(x):
            return self._m["scale_shift"].backward(g, x, w, mean, rstd, global_stats, self.config(x))


class _FixedConfig(TritonNorms):
    def __init__(self, modules: dict[str, ModuleType], config: LaunchConfig) -> None:
        super().__init__(modules)
        self._fixed = config

    def config(self, x: Tensor) -> LaunchConfig:
        return self._fixed


def _on_device(x: Tensor):
    """Triton launches on the current CUDA device: make it ``x``'s (a no-op on the CPU and on the current one)."""
    if x.device.type == "cuda" and x.device.index is not None and x.device.index != torch.cuda.current_device():
        return torch.cuda.device(x.device)
    return _NULL


class _Null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


_NULL = _Null()
FAMILIES = ("moments", "cross_norm", "scale_shift", "rms_norm")
"""The kernel modules of this package."""


MIN_TRITON = (3, 0)
"""The oldest triton the kernels are written for (``TRITON_INTERPRET`` and the 3.x language); torch 2.1's triton 2.1.0
gets one warning and the eager ``fast`` path."""


def triton_version() -> tuple[int, ...]:
    """(major, minor) of the installed triton, e.g. ``(3, 8)``; ``(0,)`` when it has no readable version."""
    import triton

    try:
        return tuple(int(part) for part in str(triton.__version__).split(".")[:2])
    except ValueError:
        return (0,)


@functools.cache
def triton_kernels() -> TritonNorms | None:
    """Import triton and the kernel modules (once); None, with one warning, when that fails or the installed triton
    is older than :data:`MIN_TRITON`."""
    if not triton_available():
        return None
    if triton_version() < MIN_TRITON:
        import triton

        warnings.warn(
            f"triton {triton.__version__} is older than {'.'.join(map(str, MIN_TRITON))}, which norm-nerf's Triton "
            "norm kernels need; using impl='fast' (NORM_NERF_TRITON=0 silences this)",
            stacklevel=2,
        )
        return None
    try:
        modules = {name: importlib.import_module(f"{__name__}.{name}") for name in FAMILIES}
    except Exception as err:  # noqa: BLE001 - a triton without what the kernels use: the eager path
        warnings.warn(f"Triton norm kernels unavailable ({type(err).__name__}: {err}); using impl='fast'", stacklevel=2)
        return None
    return TritonNorms(modules)


def triton_kernels_for(x: Tensor) -> TritonNorms | None:
    """The kernels when they serve the flattened input ``x`` (float32, 2-D, 1 <= C <= 8192, N >= 1; CUDA, or the CPU
    under the interpreter), else None. Never inside ``torch.compile`` (its tracing does not see through them)."""
    if x.dtype != torch.float32 or x.dim() != 2 or x.shape[0] < 1 or not 1 <= x.shape[1] <= MAX_CHANNELS:
        return None
    kind = x.device.type
    if kind not in ("cuda", "cpu") or is_compiling():
        return None
    if kind == "cpu":
        return triton_kernels() if interpreting() else None
    if interpreting():
        return None
    kernels = triton_kernels()
    if kernels is None or not _self_check(x.device):
        return None
    return kernels


@functools.cache
def _self_check(device: torch.device) -> bool:
    """Run every kernel once on a small matrix of ``device`` against the eager Functions (see the module docstring);
    False, with one warning, when anything fails to compile, launch or match."""
    from norm_nerf.core.triton import selfcheck

    try:
        selfcheck.run(triton_kernels(), device)
    except Exception as err:  # noqa: BLE001 - compiler, driver or numerical failure: the eager path
        warnings.warn(
            f"Triton norm kernels failed their check on {device} ({type(err).__name__}: {err}); using impl='fast' "
            "there (NORM_NERF_TRITON=0 silences this)",
            stacklevel=3,
        )
        return False
    return True
