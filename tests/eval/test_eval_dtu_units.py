"""norm-eval-dtu: a mesh in the wrong units or coordinates is reported naming the mesh file that looks off."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import trimesh
from norm_nerf.scripts import eval_dtu

from norm_nerf.data.dtu import DTUSceneConfig, write_dtu_scene
from norm_nerf.eval.dtu import bbox_diagonal, size_mismatch


@pytest.fixture(scope="module")
def scan(tmp_path_factory):
    cfg = DTUSceneConfig(
        out=tmp_path_factory.mktemp("dtu") / "scan", scan=3, views=3, size=32, sphere_radius_mm=40.0, detail=3,
        gt_density=1.0, progress=False,
    )  # fmt: skip
    return write_dtu_scene(cfg)


def _scaled(scan, tmp_path, name: str, factor: float, source: str = "object_world.ply"):
    mesh = trimesh.load(scan / "gt" / source, process=False)
    mesh.vertices = mesh.vertices * factor
    path = tmp_path / name
    mesh.export(path)
    return path


def _error(monkeypatch, capsys, tmp_path, *argv: str) -> str:
    monkeypatch.setattr(sys, "argv", ["norm-eval-dtu", *argv, "--out", str(tmp_path / "e"), "--density", "1.0"])
    with pytest.raises(SystemExit) as info:
        eval_dtu.entrypoint()
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    return err


def test_size_mismatch_names_the_odd_one() -> None:
    unit = np.array([[0.0, 0, 0], [1, 1, 1]])
    assert bbox_diagonal(unit) == pytest.approx(3**0.5)
    assert size_mismatch("a.ply", unit, "b.ply", unit * 5) == ""
    both = size_mismatch("a.ply", unit, "b.ply", unit * 1000, trusted_reference=False)
    assert "the bounding box of b.ply (diagonal 1732) is 1e+03 times larger than that of a.ply (1.732)" in both
    assert "a.ply looks off" in size_mismatch("a.ply", unit * 1000, "b.ply", unit) and "1e+03 times larger" in (
        size_mismatch("a.ply", unit * 1000, "b.ply", unit)
    )
    assert "1e+03 times smaller" in size_mismatch("a.ply", unit, "b.ply", unit * 1000)


@pytest.mark.parametrize("huge", ["mesh", "gt"])
def test_plain_mode_names_the_mesh_in_other_units(monkeypatch, capsys, tmp_path, scan, huge) -> None:
    """One mesh in micrometres (x1000): sampling it would exceed the point limit; the error names that file."""
    world = str(scan / "gt" / "object_world.ply")
    big = str(_scaled(scan, tmp_path, "in_um.ply", 1000.0))
    mesh, gt = (big, world) if huge == "mesh" else (world, big)
    err = _error(monkeypatch, capsys, tmp_path, "--mesh", mesh, "--gt-mesh", gt)
    assert err.startswith(f"error: {big}: sampling a surface") and "right units" in err
    flags = ("--mesh", "--gt-mesh") if huge == "mesh" else ("--gt-mesh", "--mesh")
    assert f"the bounding box of {flags[0]} {big} (diagonal 8.3" in err and "is 1e+03 times larger than that" in err
    assert f"of {flags[1]} {world} (83." in err and "one of them is in other units" in err


def test_plain_mode_without_close_points_names_both_meshes(monkeypatch, capsys, tmp_path, scan) -> None:
    """The reference in metres (x0.001) next to a mesh in mm: no distance below max_dist."""
    world = str(scan / "gt" / "object_world.ply")
    small = str(_scaled(scan, tmp_path, "in_m.ply", 0.001))
    err = _error(monkeypatch, capsys, tmp_path, "--mesh", world, "--gt-mesh", small)
    assert err.startswith(f"error: {world}: no distances below max_dist")
    assert f"the bounding box of --mesh {world}" in err and f"than that of --gt-mesh {small}" in err


def test_dtu_mode_names_the_mesh(monkeypatch, capsys, tmp_path, scan) -> None:
    dtu = ["--scan-dir", str(scan), "--gt-dir", str(scan / "gt"), "--scan", "3"]
    world = str(scan / "gt" / "object_world.ply")
    err = _error(monkeypatch, capsys, tmp_path, "--mesh", world, *dtu)  # a world mesh read as normalised
    assert err.startswith(f"error: {world}: ") and "mesh-in-world" in err
    normalised = str(scan / "gt" / "object_normalized.ply")
    err = _error(monkeypatch, capsys, tmp_path, "--mesh", normalised, *dtu, "--mesh-in-world")
    assert err.startswith(f"error: {normalised}: no distances below max_dist") and "mesh-in-world" in err
    assert f"--mesh {normalised} looks off" in err and "times smaller than the ground truth of scan 3" in err
