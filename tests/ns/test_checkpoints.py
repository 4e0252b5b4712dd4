"""A checkpoint whose model does not fit the config is refused, naming the settings on both sides (no training)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
import torch

from norm_nerf.core.norms import build_norm
from norm_nerf.ns.checkpoints import SETTINGS_KEY, CheckpointMismatchError, check_fits, model_settings


@dataclass
class _Sdf:
    hidden_dim: int = 8


@dataclass
class _Model:
    _target: type = object
    norm: str = "cn"
    norm_layers: str = "both"
    width: int = 8
    skips: tuple[int, ...] = (4,)
    sdf_field: _Sdf = field(default_factory=_Sdf)


def _state(norm: str, width: int = 8) -> dict[str, torch.Tensor]:
    return {f"field.norm.{k}": v for k, v in build_norm(norm, width).state_dict().items()}


def _checkpoint(config: _Model, record: bool = True) -> dict:
    saved = {f"_model.{k}": v for k, v in _state(config.norm, config.width).items()}
    return {**saved, SETTINGS_KEY: model_settings(config)} if record else saved


def test_settings_are_plain_and_flattened() -> None:
    assert model_settings(_Model()) == {"norm": "cn", "norm_layers": "both", "width": 8, "skips": [4],
                                        "sdf_field.hidden_dim": 8}  # fmt: skip


def test_the_same_settings_fit() -> None:
    check_fits(_Model(), _state("cn"), _checkpoint(_Model()))
    check_fits(_Model(), _state("cn"), _checkpoint(_Model(), record=False))  # a checkpoint from before the record


@pytest.mark.parametrize("norm", ["bn", "ln", "rms", "gn", "none"])
def test_another_norm_is_refused_naming_both(norm: str) -> None:
    ours = _Model(norm=norm)
    state = _state(norm) if norm != "none" else {}
    with pytest.raises(CheckpointMismatchError, match=rf"with --pipeline.model.norm cn \(this config: {norm}\)"):
        check_fits(ours, state, _checkpoint(_Model()))


def test_ln_and_rms_hold_the_same_tensors_and_still_differ() -> None:
    with pytest.raises(CheckpointMismatchError, match=r"norm ln \(this config: rms\).*\(the same tensors\)"):
        check_fits(_Model(norm="rms"), _state("rms"), _checkpoint(_Model(norm="ln")))


def test_a_width_is_named_when_the_tensors_differ() -> None:
    with pytest.raises(CheckpointMismatchError, match=r"--pipeline.model.width 8 \(this config: 16\).*other shapes"):
        check_fits(_Model(width=16), _state("cn", 16), _checkpoint(_Model()))
    check_fits(_Model(), _state("cn"), _checkpoint(_Model(skips=(3,))))  # a setting that changes no tensor: kept


def test_without_a_record_the_tensors_are_named() -> None:
    with pytest.raises(CheckpointMismatchError, match=r"1 tensors only in the checkpoint, e.g. field.norm.running_n"):
        check_fits(_Model(norm="bn"), _state("bn"), _checkpoint(_Model(), record=False))
