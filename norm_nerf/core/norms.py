"""Normalization layers for coordinate networks: batch, layer, global, cross and RMS norm.

Every layer takes inputs of shape ``(..., C)``, flattens the leading dimensions to ``N`` points and
normalizes the ``N x C`` matrix as in docs/design.md §2, followed by a learnable per-channel affine
(weight initialised to 1, bias to 0).

Batch-dependent layers (``bn``, ``gn``, ``cn``) keep running estimates of their batch-dependent parts
and use them in eval mode, so that eval output does not depend on chunking or batch composition:

* running statistics are updated only in train mode *with gradients enabled* (a sampler's density
  query under ``torch.no_grad()`` is not a training batch), unless ``update_under_no_grad=True``;
* :func:`norm_nerf.core.recalibrate` re-estimates them from data (precise BN);
* with ``torch.distributed`` initialised (``sync=True``, more than one rank), batch statistics are those of all
  ranks: ONE all-reduce per layer and pass packs everything the pass needs (forward: count, column sums and sums of
  squares; backward: the column sums of the input gradient; the per-row part of ``cn`` needs none).

Every layer's train-mode forward is selected with ``impl``:

* ``"fast"``: fused native kernels for ``bn``/``ln`` and the custom autograd Functions of
  :mod:`norm_nerf.core.functions` for ``gn``/``cn``/``rms`` (eager torch; every device);
* ``"compiled"``: ``"fast"`` plus, for ``bn``/``gn``/``cn``/``rms`` on float32 CPU tensors, the C++/OpenMP
  kernels of ``norm_nerf/core/csrc`` (:mod:`norm_nerf.core.cpu_kernels`: built once on first use; ``"fast"`` when
  they cannot be built);
* ``"triton"``: ``"fast"`` plus, for ``bn``/``gn``/``cn``/``rms`` on float32 CUDA tensors, the Triton kernels of
  :mod:`norm_nerf.core.triton` (on CPU tensors only under Triton's interpreter, ``TRITON_INTERPRET=1``; ``"fast"``
  wherever they do not serve);
* ``"auto"`` (default): ``"triton"`` for CUDA tensors unless the environment sets ``NORM_NERF_TRITON=0``,
  ``"compiled"`` for CPU tensors unless it sets ``NORM_NERF_COMPILED=0``, else ``"fast"``;
* ``"reference"``: the plain tensor expressions below, differentiated by autograd.

float16/bfloat16 inputs (and any input under ``torch.autocast``) reach all of them as float32.

The first norm layer built on the CPU keeps freed memory in the process for reuse
(:func:`norm_nerf.utils.cpu_memory.retain_freed_memory`: glibc would otherwise unmap every freed activation above
32 MiB and page-fault it in again next step, which costs more than the normalization itself); set
``NORM_NERF_RETAIN_MEMORY=0`` before building the layers to leave the allocator alone.

All give the same values, gradients and running statistics; eval mode and ``torch.func`` transforms (vmap/jacrev,
as in the NTK analysis) always use the reference expressions, and a double backward (``create_graph=True``) through
a fast, compiled or triton layer evaluates its analytic gradient as a differentiable expression
(:mod:`norm_nerf.core.norm_grads`), except for cross norm's compiled and triton paths, whose double backward has
kernels of its own.

Synchronised statistics (several ranks) run through the compiled or triton kernels where they serve the input, in
halves with the all-reduce between them (:mod:`norm_nerf.core.functions`); elsewhere (``fast``, float64, ...)
through the reference expressions, which make the same one all-reduce per pass. Which of the two runs must not
depend on a rank's own batch (every rank makes the same collectives): N = 1 on a rank takes the kernels too. Their
double backward differentiates the reference expressions with the forward's all-reduced sums.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

from norm_nerf.core.distributed import column_moments, synced
from norm_nerf.core.functions import (
    cross_normalize,
    rms_normalize,
    select_kernels,
    train_cross_norm,
    train_rms_norm,
    train_scale_shift,
)
from norm_nerf.core.functions.autograd import functorch_active
from norm_nerf.core.moments import mean_var, standardize, unbiased_denominator
from norm_nerf.utils.cpu_memory import retain_freed_memory

NormKind = Literal["none", "bn", "ln", "gn", "cn", "rms"]
"""Valid normalization names (the CLI spelling)."""
NORM_KINDS: tuple[str, ...] = get_args(NormKind)
NormImpl = Literal["auto", "fast", "reference", "compiled", "triton"]
"""Train-mode forward: auto (Triton kernels on CUDA, C++ kernels on the CPU, else fast), fast (eager), reference,
compiled (C++ kernels), triton (Triton kernels)."""
NORM_IMPLS: tuple[str, ...] = get_args(NormImpl)
EPS = 1e-5
LOW_PRECISION = (torch.float16, torch.bfloat16)
"""Input dtypes that are normalized in float32 and returned in their own dtype."""


def _autocast_active(x: Tensor) -> bool:
    """Whether ``torch.autocast`` is on for ``x``'s device (it would otherwise run our sums in low precision)."""
    try:
        return torch.is_autocast_enabled(x.device.type)
    except (TypeError, RuntimeError):  # a device type autocast does not know (meta) or an older torch
        return False


class _AffineNorm(nn.Module):
    """Shared parts: input checks, flattening to ``(N, C)``, the per-channel affine and the ``impl`` switch."""

    def __init__(self, num_features: int, eps: float = EPS, affine: bool = True, impl: NormImpl = "auto") -> None:
        super().__init__()
        if int(num_features) < 1:
            raise ValueError(f"{type(self).__name__}: num_features must be a positive integer, got {num_features!r}")
        if impl not in NORM_IMPLS:
            raise ValueError(f"{type(self).__name__}: impl must be one of {', '.join(NORM_IMPLS)}, got {impl!r}")
        self.num_features = int(num_features)
        self.eps = float(eps)
        self.affine = affine
        self.impl = impl
        if affine:
            self.weight = nn.Parameter(torch.ones(self.num_features))
            self.bias = nn.Parameter(torch.zeros(self.num_features))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if self.weight is None or self.weight.device.type == "cpu":
            retain_freed_memory()  # once per process; NORM_NERF_RETAIN_MEMORY=0 opts out (utils/cpu_memory.py)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, affine={self.affine}, impl={self.impl}"

    def _flatten(self, x: Float[Tensor, "*batch c"]) -> Float[Tensor, "n c"]:
        if x.dim() == 0 or x.shape[-1] != self.num_features:
            raise ValueError(
                f"{type(self).__name__} expects inputs of shape (..., {self.num_features}), got {tuple(x.shape)}"
            )
        return x.reshape(-1, self.num_features)

    def _apply_affine(self, y: Float[Tensor, "n c"]) -> Float[Tensor, "n c"]:
        if self.weight is None:
            return y
        return torch.addcmul(self.bias, y, self.weight)

    def _normalize(self, x: Float[Tensor, "n c"]) -> Float[Tensor, "n c"]:
        raise NotImplementedError

    def _kernel_input(self, x: Float[Tensor, "n c"]) -> tuple[object | None, Float[Tensor, "n c"]]:
        """The Triton or C++ kernels that ``impl`` asks for and that serve ``x``
        (:func:`~norm_nerf.core.functions.backend.select_kernels`), else None;
        with kernels, ``x`` made contiguous here, outside their autograd Function, so that autograd records the copy
        (a double backward needs the input's history)."""
        kernels = select_kernels(self.impl, x)
        return kernels, (x if kernels is None else x.contiguous())

    def forward(self, x: Float[Tensor, "*batch c"]) -> Float[Tensor, "*batch c"]:
        """Normalize ``x``; float16/bfloat16 inputs (e.g. from a Linear under ``torch.autocast``) are normalized in
        float32 with autocast off (sums over many points overflow float16 and lose bits in bfloat16) and returned
        in their own dtype; running statistics stay in their buffers' dtype (float32 unless the module is cast)."""
        if x.dtype in LOW_PRECISION or _autocast_active(x):
            with torch.autocast(device_type=x.device.type, enabled=False):
                x32 = x.float() if x.dtype in LOW_PRECISION else x
                return self._forward(x32).to(x.dtype)
        return self._forward(x)

    def _forward(self, x: Float[Tensor, "*batch c"]) -> Float[Tensor, "*batch c"]:
        return self._apply_affine(self._normalize(self._flatten(x))).reshape(x.shape)


class LayerNorm(_AffineNorm):
    """``ln``: per point, mean and (biased) variance over the C channels (fast: ``F.layer_norm``)."""

    def _forward(self, x: Float[Tensor, "*batch c"]) -> Float[Tensor, "*batch c"]:
        if self.impl == "reference":
            return super()._forward(x)
        self._flatten(x)  # shape check only
        return F.layer_norm(x, (self.num_features,), self.weight, self.bias, self.eps)

    def _normalize(self, x: Float[Tensor, "n c"]) -> Float[Tensor, "n c"]:
        c = x.shape[1]
        mean, var = mean_var(x, dim=1)
        return standardize(x, mean, var * (unbiased_denominator(c) / c), self.eps)


class RMSNorm(_AffineNorm):
    """``rms``: per point, divide by the root mean square over the channels (no centring)."""

    def _forward(self, x: Float[Tensor, "*batch c"]) -> Float[Tensor, "*batch c"]:
        if self.impl == "reference" or functorch_active():
            return super()._forward(x)
        kernels, x2 = self._kernel_input(self._flatten(x))
        return train_rms_norm(x2, self.weight, self.bias, self.eps, kernels).reshape(x.shape)

    def _normalize(self, x: Float[Tensor, "n c"]) -> Float[Tensor, "n c"]:
        return rms_normalize(x, self.eps)


class RunningStatsNorm(_AffineNorm):
    """Base of the batch-dependent norms: running estimates, update policy, eval mode, recalibration.

    Args:
        num_features: channels C.
        eps: added to the variance.
        momentum: weight of the newest batch in the running estimates; ``None`` = cumulative average.
        sync: all-reduce batch statistics across ranks when ``torch.distributed`` is initialised.
        update_under_no_grad: also update running statistics for train-mode passes under ``no_grad``.
        num_slots: independent sets of running statistics, chosen with :func:`stat_slot` (e.g. one per
            render pass when a network sees differently distributed inputs, like Mip-NeRF's coarse and fine
            samples).
        impl: ``"auto"``, ``"fast"``, ``"reference"``, ``"compiled"`` or ``"triton"`` train-mode forward (module
            docstring).
    """

    def __init__(
        self,
        num_features: int,
        eps: float = EPS,
        momentum: float | None = 0.1,
        affine: bool = True,
        sync: bool = True,
        update_under_no_grad: bool = False,
        num_slots: int = 1,
        impl: NormImpl = "auto",
    ) -> None:
        super().__init__(num_features, eps, affine, impl)
        if num_slots < 1:
            raise ValueError(f"{type(self).__name__}: num_slots must be >= 1, got {num_slots}")
        self.num_slots = int(num_slots)
        self.slot = 0
        if momentum is not None and not 0.0 < momentum <= 1.0:
            raise ValueError(f"{type(self).__name__}: momentum must be in (0, 1] or None, got {momentum!r}")
        self.momentum = momentum
        self.sync = sync
        self.update_under_no_grad = update_under_no_grad
        self.recalibrating = False
        self._frozen = False  # no running-statistics updates (set by frozen_statistics)
        self._init_values: dict[str, float] = {}
        self.register_buffer("num_batches_tracked", torch.zeros(self.num_slots, dtype=torch.long))
        self._checked_untracked = False  # the first eval pass warns when no training batch was ever seen

    def _register_stat(self, name: str, size: int, init: float) -> None:
        self._init_values[name] = init
        self.register_buffer(name, torch.full((self.num_slots, size), init))

    def stat(self, name: str) -> Tensor:
        """The running statistic ``name`` of the current slot."""
        return getattr(self, name)[self.slot]

    def tracked(self) -> int:
        """Training batches seen by the current slot."""
        return int(self.num_batches_tracked[self.slot].item())

    def reset_running_stats(self) -> None:
        """Set running estimates back to their initial values."""
        for name, init in self._init_values.items():
            getattr(self, name).fill_(init)
        self.num_batches_tracked.zero_()

    def should_update(self) -> bool:
        """Whether the current forward pass updates the running statistics."""
        if self._frozen or not self.training:
            return False
        return torch.is_grad_enabled() or self.update_under_no_grad or self.recalibrating

    @torch.no_grad()
    def _update(self, **stats: Tensor | float) -> None:
        factor = self._next_factor()
        for name, value in stats.items():
            buf = self.stat(name)
            if isinstance(value, Tensor):
                buf.lerp_(value.detach().reshape(buf.shape).to(buf.dtype), factor)
            else:  # a batch size: no host-to-device copy needed
                buf.mul_(1.0 - factor).add_(factor * value)

    def _cumulative(self) -> bool:
        """Whether the running estimates are plain averages over the batches seen (weight 1 / batches)."""
        return self.momentum is None or self.recalibrating

    def _next_factor(self) -> float | Tensor:
        """Count a training batch in the current slot and return its weight in the running estimates: the momentum,
        or for plain averages ``1 / batches`` as a 0-dim tensor in the statistics' dtype on their device (reading
        the count on the host would be a device-to-host sync per layer and step)."""
        self.num_batches_tracked[self.slot] += 1
        if self._cumulative():
            dtype = getattr(self, next(iter(self._init_values))).dtype
            return torch.reciprocal(self.num_batches_tracked[self.slot].to(dtype))
        return self.momentum

    def _train_normalize(self, x: Float[Tensor, "n c"]) -> Float[Tensor, "n c"]:
        raise NotImplementedError

    def _synced(self) -> bool:
        """Whether batch statistics are all-reduced across ranks now (``sync`` and more than one rank)."""
        return synced(self.sync)

    def _train_kernels(self, x: Float[Tensor, "n c"]) -> tuple[bool, object | None, Float[Tensor, "n c"]]:
        """``(served, kernels, x)``: whether the Functions of :mod:`norm_nerf.core.functions` serve this pass, with the
        kernels and their input (:meth:`_kernel_input`). One rank: train mode, any back end. Synced statistics: only
        through kernels (C++ or Triton, one all-reduce per pass); without them the reference expressions. Eval mode,
        N = 0 and ``torch.func`` transforms use the reference. Under sync nothing here depends on the local batch
        beyond N = 0 (an error in train mode): every rank must take the same path and make the same collectives."""
        if self.impl == "reference" or not self.training or x.shape[0] == 0 or functorch_active():
            return False, None, x
        kernels, x2 = self._kernel_input(x)
        if kernels is None and self._synced():
            return False, None, x
        return True, kernels, x2

    def _scale_shift_forward(
        self, x: Float[Tensor, "*batch c"], x2: Float[Tensor, "n c"], kernels: object | None, global_stats: bool
    ) -> Float[Tensor, "*batch c"]:
        """Train-mode bn/gn of ``x`` (flattened: ``x2``, from :meth:`_kernel_input` with its ``kernels``) through
        :func:`~norm_nerf.core.functions.scale_shift.train_scale_shift`, updating the running mean/variance."""
        y, mean, var = train_scale_shift(x2, self.weight, self.bias, self.eps, global_stats, kernels, self._synced())
        if self.should_update():
            self._update(running_mean=mean, running_var=var)
        return y.reshape(x.shape)

    def _eval_normalize(self, x: Float[Tensor, "n c"]) -> Float[Tensor, "n c"]:
        raise NotImplementedError

    def _normalize(self, x: Float[Tensor, "n c"]) -> Float[Tensor, "n c"]:
        if self.training:
            if x.shape[0] == 0:
                raise ValueError(f"{type(self).__name__}: got an empty batch (N=0) in train mode")
            return self._train_normalize(x)
        if not self._checked_untracked:
            self._checked_untracked = True
            if self.tracked() == 0:
                warnings.warn(
                    f"{type(self).__name__} is in eval mode but has never seen a training batch; its running "
                    "statistics are the initial values. Train it or call norm_nerf.core.recalibrate(model, batches).",
                    stacklevel=3,
                )
        return self._eval_normalize(x)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, momentum={self.momentum}, sync={self.sync}"


class BatchNorm(RunningStatsNorm):
    """``bn``: per channel, mean and variance over the N points (as ``BatchNorm1d``).

    Train mode normalizes with the biased batch variance; the running variance is the unbiased one,
    exactly as in ``torch.nn.BatchNorm1d``.
    """

    def __init__(self, num_features: int, **kwargs) -> None:
        super().__init__(num_features, **kwargs)
        self._register_stat("running_mean", num_features, 0.0)
        self._register_stat("running_var", num_features, 1.0)

    def _forward(self, x: Float[Tensor, "*batch c"]) -> Float[Tensor, "*batch c"]:
        x2 = self._flatten(x)
        if self._synced():  # the kernels' synced Function, or the reference: the same choice on every rank
            served, kernels, x_kernel = self._train_kernels(x2)
            if not served:
                return super()._forward(x)
            return self._scale_shift_forward(x, x_kernel, kernels, global_stats=False)
        if self.impl == "reference" or x2.shape[0] < 2 or (not self.training and not self._checked_untracked):
            return super()._forward(x)  # generic path: N = 1, or the untrained-eval warning
        update = self.training and self.should_update()
        if self.training and not functorch_active():
            kernels, x_kernel = self._kernel_input(x2)
            if kernels is not None or (update and self._cumulative()):  # F.batch_norm wants a float momentum
                return self._scale_shift_forward(x, x_kernel, kernels, global_stats=False)
        # Fused native kernel; identical statistics and running-update rule (lerp by the same factor).
        factor = self._next_factor() if update else 0.0
        if isinstance(factor, Tensor):  # plain averages inside torch.func transforms: the float costs a sync
            factor = float(factor)
        use_running = update or not self.training
        y = F.batch_norm(
            x2,
            self.stat("running_mean") if use_running else None,
            self.stat("running_var") if use_running else None,
            self.weight,
            self.bias,
            self.training,
            factor,
            self.eps,
        )
        return y.reshape(x.shape)

    def _train_normalize(self, x: Float[Tensor, "n c"]) -> Float[Tensor, "n c"]:
        n, mean, var = column_moments(x, sync=self.sync)
        if self.should_update():
            self._update(running_mean=mean, running_var=var)
        var_biased = var * (unbiased_denominator(n) / n)
        return standardize(x, mean, var_biased, self.eps)

    def _eval_normalize(self, x: Float[Tensor, "n c"]) -> Float[Tensor, "n c"]:
        return standardize(x, self.stat("running_mean"), self.stat("running_var"), self.eps)


class GlobalNorm(RunningStatsNorm):
    """``gn``: one mean and one (unbiased) variance over all N*C entries (the papers' global norm)."""

    def __init__(self, num_features: int, **kwargs) -> None:
        super().__init__(num_features, **kwargs)
        self._register_stat("running_mean", 1, 0.0)
        self._register_stat("running_var", 1, 1.0)

    def _forward(self, x: Float[Tensor, "*batch c"]) -> Float[Tensor, "*batch c"]:
        served, kernels, x2 = self._train_kernels(self._flatten(x))
        if not served:
            return super()._forward(x)
        return self._scale_shift_forward(x, x2, kernels, global_stats=True)

    def _train_normalize(self, x: Float[Tensor, "n c"]) -> Float[Tensor, "n c"]:
        _, mean, var = column_moments(x.reshape(-1, 1), sync=self.sync)
        if self.should_update():
            self._update(running_mean=mean, running_var=var)
        return standardize(x, mean, var, self.eps)

    def _eval_normalize(self, x: Float[Tensor, "n c"]) -> Float[Tensor, "n c"]:
        return standardize(x, self.stat("running_mean"), self.stat("running_var"), self.eps)


class CrossNorm(RunningStatsNorm):
    """``cn``: mean over the row+column "cross" through each entry, variance = column var + row var.

    For entry (i, j) of the N x C matrix::

        mu_ij    = (sum_k x_kj + sum_l x_il - x_ij) / (N + C)
        sigma2_ij = Var_N(x)_j + Var_C(x)_i          (both unbiased, as in the authors' code)

    In eval mode the column parts (``N * mean_j`` and ``Var_N(x)_j``) come from running estimates of the
    per-channel mean and variance and of the training batch size N; the row parts are per point.
    """

    def __init__(self, num_features: int, **kwargs) -> None:
        super().__init__(num_features, **kwargs)
        self._register_stat("running_mean", num_features, 0.0)
        self._register_stat("running_var", num_features, 1.0)
        self._register_stat("running_n", 1, 0.0)

    def _forward(self, x: Float[Tensor, "*batch c"]) -> Float[Tensor, "*batch c"]:
        served, kernels, x2 = self._train_kernels(self._flatten(x))
        if not served:
            return super()._forward(x)
        sync = self._synced()
        y, mean, var, rows = train_cross_norm(x2, self.weight, self.bias, self.eps, kernels, sync)
        if self.should_update():  # the local count as a float: no host-to-device copy
            self._update(running_mean=mean, running_var=var, running_n=rows if sync else float(x2.shape[0]))
        return y.reshape(x.shape)

    def _train_normalize(self, x: Float[Tensor, "n c"]) -> Float[Tensor, "n c"]:
        n, mean, var = column_moments(x, sync=self.sync)
        if self.should_update():
            self._update(running_mean=mean, running_var=var, running_n=n)
        return cross_normalize(x, n, mean, var, self.eps)

    def _eval_normalize(self, x: Float[Tensor, "n c"]) -> Float[Tensor, "n c"]:
        return cross_normalize(x, self.stat("running_n"), self.stat("running_mean"), self.stat("running_var"), self.eps)


_BUILDERS: dict[str, type[nn.Module]] = {
    "bn": BatchNorm,
    "ln": LayerNorm,
    "gn": GlobalNorm,
    "cn": CrossNorm,
    "rms": RMSNorm,
}
_RUNNING_OPTS = ("momentum", "sync", "update_under_no_grad", "num_slots")
_COMMON_OPTS = ("eps", "affine", "impl")


def check_norm_kind(kind: str) -> str:
    """Return the canonical (lower-case) norm name or raise a ValueError listing the valid ones."""
    key = str(kind).strip().lower()
    if key not in NORM_KINDS:
        raise ValueError(f"unknown norm {kind!r}; valid norms are: {', '.join(NORM_KINDS)}")
    return key


def build_norm(kind: str, num_features: int, **opts) -> nn.Module:
    """Build a normalization layer for inputs of shape ``(..., num_features)``.

    Args:
        kind: one of ``none``, ``bn`` (batch), ``ln`` (layer), ``gn`` (global), ``cn`` (cross), ``rms``.
        num_features: channels C of the input.
        **opts: ``eps``, ``affine``, ``impl`` (``"auto"`` default, ``"fast"``, ``"reference"``, ``"compiled"``,
            ``"triton"``) for all;
            ``momentum``, ``sync``, ``update_under_no_grad``, ``num_slots`` for bn/gn/cn (ignored by the others,
            which have no running statistics).
    """
    key = check_norm_kind(kind)
    if key == "none":
        return nn.Identity()
    cls = _BUILDERS[key]
    if not issubclass(cls, RunningStatsNorm):
        opts = {k: v for k, v in opts.items() if k not in _RUNNING_OPTS}
    unknown = set(opts) - {*_COMMON_OPTS, *_RUNNING_OPTS}
    if unknown:
        raise TypeError(f"build_norm({key!r}): unknown options {sorted(unknown)}")
    return cls(num_features, **opts)


def running_stat_norms(module: nn.Module) -> list[RunningStatsNorm]:
    """All batch-dependent norm layers (bn/gn/cn) inside ``module``."""
    return [m for m in module.modules() if isinstance(m, RunningStatsNorm)]


def set_stat_slot(module: nn.Module, slot: int) -> list[int]:
    """Select running-statistics slot ``slot`` in every bn/gn/cn layer of ``module``; returns the previous slots."""
    norms = running_stat_norms(module)
    for m in norms:
        if not 0 <= slot < m.num_slots:
            raise ValueError(f"stat_slot({slot}): {type(m).__name__} has {m.num_slots} slot(s)")
    previous = [m.slot for m in norms]
    for m in norms:
        m.slot = slot
    return previous


@contextmanager
def stat_slot(module: nn.Module, slot: int) -> Iterator[None]:
    """Use running-statistics slot ``slot`` in every bn/gn/cn layer of ``module`` inside the block."""
    norms = running_stat_norms(module)
    previous = set_stat_slot(module, slot)
    try:
        yield
    finally:
        for m, prev in zip(norms, previous):
            m.slot = prev


@contextmanager
def frozen_statistics(module: nn.Module, enabled: bool = True) -> Iterator[None]:
    """Inside the block, no bn/gn/cn layer of ``module`` updates its running statistics (when ``enabled``).

    Train-mode passes still normalize with their batch statistics. For queries that are not training passes but
    run with gradients enabled (e.g. SDF normals computed by autograd inside a ``torch.no_grad()`` render, or a
    sampler's queries during recalibration).
    """
    norms = running_stat_norms(module) if enabled else []
    previous = [m._frozen for m in norms]
    for m in norms:
        m._frozen = True
    try:
        yield
    finally:
        for m, prev in zip(norms, previous):
            m._frozen = prev
