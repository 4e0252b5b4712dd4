"""norm-extract-mesh: a grid of fewer than 2 points per axis is refused up front (it would write an empty PLY)."""

from __future__ import annotations

import sys

import pytest
from norm_nerf.scripts import extract_mesh

from norm_nerf.ns.mesh import grid_axes


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
