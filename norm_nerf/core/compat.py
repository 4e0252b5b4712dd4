"""The torch APIs that moved between the oldest torch we support (2.1, nerfstudio's install guide) and today's.

One place for them, so that the rest of the code calls one name and never checks ``hasattr`` itself. Each entry
says where the API lives in which releases.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable

import torch

__all__ = ["TORCH_VERSION", "is_compiling"]

TORCH_VERSION: tuple[int, ...] = tuple(int(p) for p in torch.__version__.split("+")[0].split(".")[:2])
"""(major, minor) of the imported torch, e.g. ``(2, 1)``."""


@functools.cache
def _is_compiling_fn() -> Callable[[], bool]:
    """``torch.compiler.is_compiling`` (torch >= 2.3), else ``torch._dynamo.is_compiling`` (2.1 and 2.2)."""
    compiler = getattr(torch, "compiler", None)
    if compiler is not None and hasattr(compiler, "is_compiling"):
        return compiler.is_compiling
    dynamo = importlib.import_module("torch._dynamo")  # heavy: imported only on a torch without the public name
    return dynamo.is_compiling


def is_compiling() -> bool:
    """Whether the caller runs inside ``torch.compile``'s tracing (then custom kernels must stay out of the way)."""
    return _is_compiling_fn()()
