"""norm-make-scene: subcommands, help text from the field docstrings, one-line errors with exit status 2."""

from __future__ import annotations

import dataclasses
import sys

import pytest
from norm_nerf.scripts import make_scene

from norm_nerf.data.blender import BlenderSceneConfig
from norm_nerf.data.dtu import DTUSceneConfig


def _main(monkeypatch, *argv: str) -> None:
    monkeypatch.setattr(sys, "argv", ["norm-make-scene", *argv])
    make_scene.entrypoint()


@pytest.mark.parametrize("config", [BlenderSceneConfig, DTUSceneConfig])
def test_every_field_has_a_help_line(config) -> None:
    import inspect

    for f in dataclasses.fields(config):
        owner = next(c for c in config.__mro__ if f.name in vars(c).get("__annotations__", {}))  # inherited fields too
        source = inspect.getsource(owner)
        after = source.split(f"\n    {f.name}:", 1)[1].split("\n", 2)[1].strip()
        assert after.startswith('"""'), f"{owner.__name__}.{f.name} has no docstring line"


def test_both_subcommands_write_scenes(monkeypatch, tmp_path) -> None:
    _main(monkeypatch, "blender", "--out", str(tmp_path / "b"), "--views", "1", "--val-views", "1",
          "--test-views", "1", "--size", "16", "--detail", "1", "--no-progress")  # fmt: skip
    assert (tmp_path / "b" / "transforms_train.json").is_file() and (tmp_path / "b" / "train" / "r_0.png").is_file()
    _main(monkeypatch, "dtu", "--out", str(tmp_path / "d"), "--views", "2", "--size", "16", "--detail", "1",
          "--gt-density", "2.0", "--scan", "7", "--no-progress")  # fmt: skip
    assert (tmp_path / "d" / "gt" / "ObsMask" / "ObsMask7_10.mat").is_file()
    assert (tmp_path / "d" / "mask" / "001.png").is_file()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["blender", "--views", "0"], "views must be >= 1"),
        (["dtu", "--size", "4"], "size and height must be >= 8"),
        (["blender", "--mesh", "/no/such/bunny.obj"], "/no/such/bunny.obj: mesh file not found"),
    ],
)
def test_user_errors_are_one_line(monkeypatch, tmp_path, capsys, argv, message) -> None:
    with pytest.raises(SystemExit) as exit_info:
        _main(monkeypatch, *argv, "--out", str(tmp_path / "x"))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {message}" or (err.startswith("error: ") and message in err and "\n" not in err)
    assert not (tmp_path / "x").exists()


def test_existing_output_is_not_overwritten(monkeypatch, tmp_path, capsys) -> None:
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "keep.txt").write_text("mine")
    with pytest.raises(SystemExit):
        _main(monkeypatch, "blender", "--out", str(tmp_path / "x"), "--views", "1", "--size", "16")
    assert "not empty" in capsys.readouterr().err
