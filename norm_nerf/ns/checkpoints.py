"""Checkpoints of the norm-* methods: which model settings they were trained with, and whether they fit a config.

nerfstudio loads a pipeline state that does not fit the model by dropping what does not match (``strict=False``
after a failed strict load): a ``cn`` checkpoint resumed with ``--pipeline.model.norm bn`` trains a different model
without a word. Our pipeline records the model's settings in every checkpoint (:data:`SETTINGS_KEY`, plain values:
nothing else reads it) and refuses, before loading, a checkpoint whose tensors or norm settings differ from the
config, naming the settings on both sides (:func:`check_fits`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import torch

SETTINGS_KEY = "norm_nerf_model_settings"
"""Key of the settings record in a pipeline state (beside the ``_model.*`` tensors)."""
NORM_SETTINGS = ("norm", "norm_layers")
"""Settings that change the function but not always the tensors (ln and rms hold the same ones): always compared."""


class CheckpointMismatchError(ValueError):
    """A checkpoint's model does not fit the config that loads it."""


def model_settings(config: Any, prefix: str = "") -> dict[str, Any]:
    """The plain-valued settings of a model config, nested configs flattened as ``sdf_field.hidden_dim``."""
    settings: dict[str, Any] = {}
    for f in dataclasses.fields(config):
        if f.name.startswith("_"):
            continue
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            settings.update(model_settings(value, f"{prefix}{f.name}."))
        elif isinstance(value, bool | int | float | str) or value is None:
            settings[prefix + f.name] = value
        elif isinstance(value, tuple | list) and all(isinstance(v, bool | int | float | str) for v in value):
            settings[prefix + f.name] = list(value)
    return settings


def _flag(name: str) -> str:
    return "--pipeline.model." + name.replace("_", "-")


def _show(value: Any) -> str:
    return " ".join(map(str, value)) if isinstance(value, list) else str(value)


def _tensor_differences(model_state: Mapping[str, torch.Tensor], loaded: Mapping[str, Any]) -> list[str]:
    """What differs between the model's tensors and a checkpoint's (``_model.`` keys), a few examples each."""
    theirs = {k[len("_model.") :]: v for k, v in loaded.items() if k.startswith("_model.") and torch.is_tensor(v)}
    missing = [k for k in model_state if k not in theirs]
    extra = [k for k in theirs if k not in model_state]
    shapes = [f"{k} {tuple(theirs[k].shape)} vs {tuple(v.shape)}" for k, v in model_state.items()
              if k in theirs and theirs[k].shape != v.shape]  # fmt: skip
    parts = []
    for what, names in (("missing from the checkpoint", missing), ("only in the checkpoint", extra),
                        ("of other shapes (checkpoint vs config)", shapes)):  # fmt: skip
        if names:
            parts.append(f"{len(names)} tensors {what}, e.g. {', '.join(names[:2])}")
    return parts


def check_fits(model_config: Any, model_state: Mapping[str, torch.Tensor], loaded: Mapping[str, Any]) -> None:
    """Raise :class:`CheckpointMismatchError` unless the pipeline state ``loaded`` fits a model of ``model_config``
    whose state is ``model_state``: the same tensors (names and shapes) and the same norm settings."""
    ours = model_settings(model_config)
    recorded = loaded.get(SETTINGS_KEY)
    recorded = recorded if isinstance(recorded, dict) else None
    tensors = _tensor_differences(model_state, loaded)
    if recorded is not None:
        differing = [k for k in recorded if k in ours and recorded[k] != ours[k]]
        norm_differs = [k for k in differing if k.rsplit(".", 1)[-1] in NORM_SETTINGS]
        if tensors or norm_differs:
            named = ", ".join(f"{_flag(k)} {_show(recorded[k])} (this config: {_show(ours[k])})" for k in differing)
            raise CheckpointMismatchError(
                f"the checkpoint was trained with {named or 'other settings'}; set the checkpoint's values to resume "
                f"or evaluate it, or train anew without --load-dir ({'; '.join(tensors) or 'the same tensors'})"
            )
    elif tensors:
        raise CheckpointMismatchError(
            f"the checkpoint does not fit this config's model ({'; '.join(tensors)}); it was trained with other "
            "settings (norm, norm layers, widths or depths): set them as they were, or train anew without --load-dir"
        )
