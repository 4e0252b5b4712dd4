"""norm-eval-dtu: DTU mode and plain mode on a generated scene, metrics.json, error clouds, user errors in one line,
and a mesh in the wrong units or coordinates reported naming the mesh file that looks off."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import trimesh
from norm_nerf.scripts import eval_dtu


def _main(monkeypatch, *argv: str) -> None:
    monkeypatch.setattr(sys, "argv", ["norm-eval-dtu", *argv])
    eval_dtu.entrypoint()


def test_dtu_mode(monkeypatch, tmp_path, dtu_scan_small) -> None:
    mesh = trimesh.load(dtu_scan_small / "gt" / "object_normalized.ply", process=False)
    mesh.vertices = mesh.vertices * 1.05  # 24 mm sphere -> 25.2 mm
    mesh.export(tmp_path / "recon.ply")
    out = tmp_path / "eval"
    _main(monkeypatch, "--mesh", str(tmp_path / "recon.ply"), "--scan-dir", str(dtu_scan_small), "--gt-dir",
          str(dtu_scan_small / "gt"), "--scan", "3", "--out", str(out), "--density", "1.0")  # fmt: skip
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["mode"] == "dtu"
    for key in ("mean_d2s", "mean_s2d", "overall"):
        assert metrics[key] == pytest.approx(1.2, rel=0.05)
    assert metrics["counts"]["data_in_obs"] > 1000 and metrics["params"]["density"] == 1.0
    cloud = trimesh.load(out / "vis_d2s.ply")
    colors = np.asarray(cloud.colors)[:, :3]
    assert len(cloud.vertices) == metrics["counts"]["data"]
    assert (colors[:, 0] == 255).all() and colors[:, 1].mean() < 255 * 0.95  # white -> red at 1.2 / 10 mm
    assert (out / "vis_s2d.ply").is_file() and (out / "mesh_culled_world.ply").is_file()


def test_plain_mode(monkeypatch, tmp_path, dtu_scan_small) -> None:
    world = dtu_scan_small / "gt" / "object_world.ply"
    out = tmp_path / "eval"
    _main(monkeypatch, "--mesh", str(world), "--gt-mesh", str(world), "--out", str(out), "--density", "1.0")
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["mode"] == "plain" and metrics["overall"] == 0.0
    assert (out / "vis_d2s.ply").is_file() and (out / "vis_s2d.ply").is_file()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([], "DTU mode needs --scan-dir, --gt-dir and --scan"),
        (["--gt-mesh", "MESH", "--scan", "3"], "either --gt-mesh"),
        (["--scan-dir", "SCAN", "--gt-dir", "GT", "--scan", "9"], "stl009_total.ply: DTU ground-truth file not found"),
        (["--scan-dir", "SCAN", "--gt-dir", "GT", "--scan", "3", "--mesh-in-world"], "no distances below max_dist"),
    ],
)
def test_user_errors_are_one_line(monkeypatch, tmp_path, capsys, dtu_scan_small, extra, message) -> None:
    mesh = str(dtu_scan_small / "gt" / "object_normalized.ply")
    subst = {"MESH": mesh, "SCAN": str(dtu_scan_small), "GT": str(dtu_scan_small / "gt")}
    with pytest.raises(SystemExit) as exit_info:
        _main(monkeypatch, "--mesh", mesh, "--out", str(tmp_path / "e"), *[subst.get(a, a) for a in extra])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_missing_mesh_file(monkeypatch, tmp_path, capsys) -> None:
    with pytest.raises(SystemExit):
        _main(monkeypatch, "--mesh", str(tmp_path / "none.ply"), "--gt-mesh", str(tmp_path / "none.ply"))
    assert "none.ply: mesh file not found" in capsys.readouterr().err


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


@pytest.mark.parametrize("huge", ["mesh", "gt"])
def test_plain_mode_names_the_mesh_in_other_units(monkeypatch, capsys, tmp_path, dtu_scan_small, huge) -> None:
    """One mesh in micrometres (x1000): sampling it would exceed the point limit; the error names that file."""
    world = str(dtu_scan_small / "gt" / "object_world.ply")
    big = str(_scaled(dtu_scan_small, tmp_path, "in_um.ply", 1000.0))
    mesh, gt = (big, world) if huge == "mesh" else (world, big)
    err = _error(monkeypatch, capsys, tmp_path, "--mesh", mesh, "--gt-mesh", gt)
    assert err.startswith(f"error: {big}: sampling a surface") and "right units" in err
    flags = ("--mesh", "--gt-mesh") if huge == "mesh" else ("--gt-mesh", "--mesh")
    assert f"the bounding box of {flags[0]} {big} (diagonal 8.3" in err and "is 1e+03 times larger than that" in err
    assert f"of {flags[1]} {world} (83." in err and "one of them is in other units" in err


def test_plain_mode_without_close_points_names_both_meshes(monkeypatch, capsys, tmp_path, dtu_scan_small) -> None:
    """The reference in metres (x0.001) next to a mesh in mm: no distance below max_dist."""
    world = str(dtu_scan_small / "gt" / "object_world.ply")
    small = str(_scaled(dtu_scan_small, tmp_path, "in_m.ply", 0.001))
    err = _error(monkeypatch, capsys, tmp_path, "--mesh", world, "--gt-mesh", small)
    assert err.startswith(f"error: {world}: no distances below max_dist")
    assert f"the bounding box of --mesh {world}" in err and f"than that of --gt-mesh {small}" in err


def test_dtu_mode_names_the_mesh(monkeypatch, capsys, tmp_path, dtu_scan_small) -> None:
    dtu = ["--scan-dir", str(dtu_scan_small), "--gt-dir", str(dtu_scan_small / "gt"), "--scan", "3"]
    world = str(dtu_scan_small / "gt" / "object_world.ply")
    err = _error(monkeypatch, capsys, tmp_path, "--mesh", world, *dtu)  # a world mesh read as normalised
    assert err.startswith(f"error: {world}: ") and "mesh-in-world" in err
    normalised = str(dtu_scan_small / "gt" / "object_normalized.ply")
    err = _error(monkeypatch, capsys, tmp_path, "--mesh", normalised, *dtu, "--mesh-in-world")
    assert err.startswith(f"error: {normalised}: no distances below max_dist") and "mesh-in-world" in err
    assert f"--mesh {normalised} looks off" in err and "times smaller than the ground truth of scan 3" in err
