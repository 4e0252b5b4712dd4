"""norm-extract-mesh: settings that cannot work (a grid of fewer than 2 points per axis, which would write an empty
PLY; an existing output; not a .ply) are refused before the run is loaded."""

from __future__ import annotations

import sys

import pytest
from norm_nerf.scripts import extract_mesh
from norm_nerf.scripts.extract_mesh import run

from norm_nerf.ns.mesh import ExtractMeshConfig, grid_axes


@pytest.mark.parametrize("resolution", [1, 0, -4])
def test_resolution_below_2_is_refused_before_loading(monkeypatch, capsys, tmp_path, resolution) -> None:
    config = tmp_path / "config.yml"  # never read: the arguments are checked first
    out = tmp_path / "mesh.ply"
    argv = ["norm-extract-mesh", "--load-config", str(config), "--out", str(out), "--resolution", str(resolution)]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as info:
        extract_mesh.entrypoint()
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.count("\n") == 1
    assert err.startswith(f"error: need --resolution >= 2 and --chunk >= 1, got {resolution} and 65536")
    assert not out.exists()
    with pytest.raises(ValueError, match=f"resolution must be >= 2, got {resolution}"):
        grid_axes((0, 0, 0, 1, 1, 1), resolution)


def test_extract_mesh_refuses_to_overwrite(tmp_path) -> None:
    existing = tmp_path / "mesh.ply"
    existing.write_text("mine")
    with pytest.raises(FileExistsError, match="--overwrite"):
        run(ExtractMeshConfig(load_config=tmp_path / "config.yml", out=existing))
    assert existing.read_text() == "mine"
    with pytest.raises(ValueError, match=r"\.ply"):
        run(ExtractMeshConfig(load_config=tmp_path / "config.yml", out=tmp_path / "mesh.obj"))
    with pytest.raises(FileNotFoundError, match="config.yml"):
        run(ExtractMeshConfig(load_config=tmp_path / "config.yml", out=tmp_path / "new.ply"))
