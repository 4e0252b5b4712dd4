"""norm-eval-dtu: DTU mode and plain mode on a generated scene, metrics.json, error clouds, user errors."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import trimesh
from norm_nerf.scripts import eval_dtu

from norm_nerf.data.dtu import DTUSceneConfig, write_dtu_scene


@pytest.fixture(scope="module")
def scan(tmp_path_factory):
    cfg = DTUSceneConfig(
        out=tmp_path_factory.mktemp("dtu") / "scan", scan=3, views=3, size=32, sphere_radius_mm=40.0, detail=3,
        gt_density=1.0, progress=False,
    )  # fmt: skip
    return write_dtu_scene(cfg)


def _main(monkeypatch, *argv: str) -> None:
    monkeypatch.setattr(sys, "argv", ["norm-eval-dtu", *argv])
    eval_dtu.entrypoint()


def test_dtu_mode(monkeypatch, tmp_path, scan) -> None:
    mesh = trimesh.load(scan / "gt" / "object_normalized.ply", process=False)
    mesh.vertices = mesh.vertices * 1.05  # 24 mm sphere -> 25.2 mm
    mesh.export(tmp_path / "recon.ply")
    out = tmp_path / "eval"
    _main(monkeypatch, "--mesh", str(tmp_path / "recon.ply"), "--scan-dir", str(scan), "--gt-dir", str(scan / "gt"),
          "--scan", "3", "--out", str(out), "--density", "1.0")  # fmt: skip
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


def test_plain_mode(monkeypatch, tmp_path, scan) -> None:
    world = scan / "gt" / "object_world.ply"
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
def test_user_errors_are_one_line(monkeypatch, tmp_path, capsys, scan, extra, message) -> None:
    mesh = str(scan / "gt" / "object_normalized.ply")
    subst = {"MESH": mesh, "SCAN": str(scan), "GT": str(scan / "gt")}
    with pytest.raises(SystemExit) as exit_info:
        _main(monkeypatch, "--mesh", mesh, "--out", str(tmp_path / "e"), *[subst.get(a, a) for a in extra])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_missing_mesh_file(monkeypatch, tmp_path, capsys) -> None:
    with pytest.raises(SystemExit):
        _main(monkeypatch, "--mesh", str(tmp_path / "none.ply"), "--gt-mesh", str(tmp_path / "none.ply"))
    assert "none.ply: mesh file not found" in capsys.readouterr().err
