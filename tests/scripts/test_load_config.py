"""--load-config of norm-eval-blender and norm-extract-mesh: a broken config file gives one clear line naming the
file, before anything is written."""

from __future__ import annotations

import sys

import pytest
from norm_nerf.scripts import eval_blender, extract_mesh

from norm_nerf.ns.eval_render import RunConfigError, read_run_config


def _main(monkeypatch, script, name: str, *argv: str) -> None:
    monkeypatch.setattr(sys, "argv", [name, *argv])
    script.entrypoint()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe", r"config.yml: not a text file"),
        (b"method_name: [unclosed\nother: 1\n", r"config.yml: not valid YAML \(.* at line \d+, column \d+\)"),
        (b"a: 1\n  b: 2\n", r"config.yml: not valid YAML"),
        (b"!!python/object:no_such_module.Config {}\n", r"config.yml: not valid YAML \(cannot find module"),
        (b"just: a dict\n", r"config.yml: not a nerfstudio run config \(the YAML holds a dict"),
        (b"", r"config.yml: not a nerfstudio run config \(the YAML holds a NoneType"),
    ],
)
def test_bad_config_files_are_one_line_errors(monkeypatch, tmp_path, capsys, content, message) -> None:
    config = tmp_path / "config.yml"
    config.write_bytes(content)
    with pytest.raises(RunConfigError, match=message):
        read_run_config(config)
    for script, name, extra in ((eval_blender, "norm-eval-blender", ["--out", str(tmp_path / "e")]),
                                (extract_mesh, "norm-extract-mesh", ["--out", str(tmp_path / "m.ply")])):  # fmt: skip
        with pytest.raises(SystemExit) as info:
            _main(monkeypatch, script, name, "--load-config", str(config), *extra)
        err = capsys.readouterr().err
        assert info.value.code == 2 and err.startswith(f"error: {config}: ") and err.count("\n") == 1, err
    assert not (tmp_path / "e").exists() and not (tmp_path / "m.ply").exists()
