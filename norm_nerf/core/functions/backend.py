"""Which back end runs a norm's train-mode forward: the one place that decides (module docstring of
:mod:`norm_nerf.core.norms` for the rules of each ``impl``).

A back end is what the operations' ``train_*`` entries take (:mod:`.cross_norm`, :mod:`.scale_shift`,
:mod:`.rms_norm`): None for the eager Functions, the C++ kernel module (``cpu_kernels()``) or the Triton kernels
(:class:`~norm_nerf.core.triton.TritonNorms`, the same call signatures).
"""

from __future__ import annotations

from jaxtyping import Float
from torch import Tensor

from norm_nerf.core.cpu_kernels import cpu_kernels, kernel_applies, kernels_wanted
from norm_nerf.core.triton import triton_enabled, triton_kernels_for


def select_kernels(impl: str, x: Float[Tensor, "n c"]) -> object | None:
    """The kernels ``impl`` asks for that serve the flattened input ``x``: the Triton kernels, the C++ kernels, or
    None (the eager Functions)."""
    if impl == "triton" or (impl == "auto" and x.device.type != "cpu" and triton_enabled()):
        kernels = triton_kernels_for(x)
        if kernels is not None or impl == "triton":
            return kernels
    if kernels_wanted(impl) and kernel_applies(x):
        return cpu_kernels()
    return None


_VIEWS = ("ViewBackward0", "UnsafeViewBackward0", "ReshapeAliasBackward0")


def backend_of(y: Tensor) -> str:
    """Which back end computed the train-mode output ``y`` of a norm layer: ``"triton"``, ``"compiled"`` (the C++
    kernels), ``"eager"`` (the eager Functions) or ``"other"`` (reference expressions, a native op, no graph)."""
    fn = y.grad_fn
    while fn is not None and type(fn).__name__ in _VIEWS:  # the reshape back to (..., C)
        fn = fn.next_functions[0][0]
    if fn is None or not type(fn).__name__.endswith("NormFunctionBackward"):
        return "other"
    kernels = getattr(fn, "kernels", None)  # the Function's ctx is its backward node
    if kernels is None:
        return "eager"
    return "triton" if type(kernels).__name__ == "TritonNorms" else "compiled"
