"""Precise-BN style recalibration of the running statistics of every batch-dependent norm in a model."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from norm_nerf.core.norms import running_stat_norms


def recalibrate(
    model: nn.Module,
    batches: Iterable[Any],
    forward: Callable[[nn.Module, Any], Any] | None = None,
    max_batches: int | None = None,
) -> int:
    """Re-estimate the running statistics of all bn/gn/cn layers from data ("precise BN").

    The statistics are reset, then each batch is passed through the model in train mode under
    ``torch.no_grad()`` and the batch statistics are averaged with equal weights. Afterwards the
    eval-mode output on batches like these matches the train-mode output. Parameters are not changed;
    the train/eval flags of all modules are restored.

    Args:
        model: any module containing norm layers from :mod:`norm_nerf.core.norms`.
        batches: iterable of inputs; use training-sized batches drawn like the training data.
        forward: ``forward(model, batch)``; default ``model(batch)``.
        max_batches: stop after this many batches.

    Returns:
        The number of batches used (0 when the model has no batch-dependent norm).
    """
    norms = running_stat_norms(model)
    if not norms:
        return 0
    flags = {m: m.training for m in model.modules()}
    saved = [{k: v.clone() for k, v in m.named_buffers(recurse=False)} for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.recalibrating = True
    model.train()
    count = 0
    try:
        with torch.no_grad():
            for batch in batches:
                if max_batches is not None and count >= max_batches:
                    break
                if forward is None:
                    model(batch)
                else:
                    forward(model, batch)
                count += 1
    finally:
        for m in norms:
            m.recalibrating = False
        for m, flag in flags.items():
            m.training = flag
    if count == 0:
        for m, state in zip(norms, saved):
            m.load_state_dict({**m.state_dict(), **state})
        raise ValueError("recalibrate() got no batches: pass an iterable of training-sized inputs")
    return count
