"""OutputOptions (--out/--overwrite of every writing command) and the one JSON policy."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import pytest

from norm_nerf.utils.jsonio import write_json
from norm_nerf.utils.outputs import OutputOptions


@dataclass
class _Command(OutputOptions):
    output_root = Path("unused")
    size: int = 1


def test_output_options_make_the_folder_and_refuse_a_full_one(tmp_path) -> None:
    cfg = _Command(out=tmp_path / "run")
    assert cfg.prepare_output() == tmp_path / "run" and (tmp_path / "run").is_dir()
    (tmp_path / "run" / "mine.txt").write_text("user data")
    with pytest.raises(FileExistsError, match="--overwrite"):
        cfg.prepare_output()
    assert _Command(out=tmp_path / "run", overwrite=True).prepare_output().is_dir()


def test_without_out_a_time_stamped_folder_under_the_commands_root(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(_Command, "output_root", tmp_path / "outputs" / "cmd")
    first, second = _Command().prepare_output(), _Command().prepare_output()
    assert first.parent == second.parent == tmp_path / "outputs" / "cmd" and first != second


def test_write_json_is_strict_with_null_for_non_finite_numbers(tmp_path) -> None:
    path = write_json(tmp_path / "m.json", {"a": math.nan, "b": [math.inf, 1.0], "p": Path("x"), "t": (1, 2)})
    assert json.loads(path.read_text()) == {"a": None, "b": [None, 1.0], "p": "x", "t": [1, 2]}
    assert "NaN" not in path.read_text() and "Infinity" not in path.read_text()
