"""norm-neus / norm-neus-facto on CPU: SDF field, geometric init under normalization, training, statistics, mesh."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import trimesh
from torch import nn

from norm_nerf.core.hashgrid import HashGridConfig
from norm_nerf.core.norms import RunningStatsNorm
from norm_nerf.ns.fields import NormOptions
from norm_nerf.ns.mesh import NoSurfaceError, marching_cubes, mesh_of_model, model_to_world, sdf_grid
from norm_nerf.ns.sdf_field import NormSDFField, NormSDFFieldConfig
from tests.ns.tiny import OBJECT_RADIUS, tiny_config

RADIUS = 0.5
SCENE_CENTER, SCENE_RADIUS_MM = (30.0, -20.0, 50.0), 200.0


def _field(norm: str, norm_layers: str = "both", **kw) -> NormSDFField:
    return NormSDFField(NormSDFFieldConfig(sphere_radius=RADIUS, norm=NormOptions(norm, norm_layers), **kw))


def _ball(n: int = 2048, seed: int = 1) -> torch.Tensor:
    """Points uniformly distributed in the unit ball."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g)
    return x / x.norm(dim=-1, keepdim=True) * torch.rand(n, 1, generator=g) ** (1 / 3)


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _stats(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items() if "running" in k or "tracked" in k}


# ---- the field: geometric initialisation, parameters, statistics ----


def test_neus_geometric_init_without_norm_is_a_sphere() -> None:
    x = _ball()
    field = _field("none")
    assert field.geometric_init == "neus"
    with torch.no_grad():
        err = (field.geometry(x)[0] - (x.norm(dim=-1, keepdim=True) - RADIUS)).abs()
    # Atzmon & Lipman's init is approximate: softplus offsets grow towards the centre and the random features make
    # the sphere lumpy (zero crossing between radius 0.34 and 0.63 over 200 directions); measured max 0.28, mean 0.09
    assert err.max() < 0.35 and err.mean() < 0.12
    shell = (x.norm(dim=-1) - RADIUS).abs() < 0.1
    assert err[shell].mean() < 0.08  # near the initial surface (measured 0.066)


@pytest.mark.parametrize("norm", ["cn", "bn", "ln", "gn", "rms"])
def test_sphere_init_survives_normalization(norm: str) -> None:
    x = _ball()
    sphere = x.norm(dim=-1, keepdim=True) - RADIUS
    field = _field(norm)
    assert field.geometric_init == "sphere"
    with torch.no_grad():
        torch.testing.assert_close(field.geometry(x)[0], sphere, atol=1e-5, rtol=0)  # train mode, batch stats
        torch.testing.assert_close(field.geometry(x[:7])[0], sphere[:7], atol=1e-5, rtol=0)  # another batch
        field.eval()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "never saw a training batch"
            torch.testing.assert_close(field.geometry(x)[0], sphere, atol=1e-5, rtol=0)
    # the SDF row starts at zero but trains: its weight-norm gain gets a gradient
    field.train()
    field.geometry(x)[0].square().mean().backward()
    gain = field.sdf_mlp.output.parametrizations.weight.original0
    assert gain.grad[0].abs().item() > 0


@pytest.mark.parametrize("norm", ["cn", "bn", "ln"])
def test_neus_init_is_no_sphere_under_normalization(norm: str) -> None:
    """Why the sphere term exists: Atzmon & Lipman's init with a norm in every layer is far from |x| - r."""
    x = _ball()
    field = _field(norm, geometric_init="neus")
    with torch.no_grad():
        err = (field.geometry(x)[0] - (x.norm(dim=-1, keepdim=True) - RADIUS)).abs()
    assert err.mean() > 1.0  # measured 6-10 (cn, bn, ln)


def test_parameter_counts() -> None:
    def linear(i: int, o: int) -> int:
        return i * o + o + o  # weight, bias and the weight-norm gain

    pos, dirs, w, feat = 3 + 3 * 2 * 6, 3 + 3 * 2 * 4, 256, 256
    sdf_net = linear(pos, w) + 6 * linear(w, w) + linear(w + pos, w) + linear(w, 1 + feat)
    color_net = linear(3 + dirs + 3 + feat, w) + 3 * linear(w, w) + linear(w, 3)
    expected = sdf_net + color_net + 1  # + NeuS's inverse deviation
    assert _count(_field("none")) == expected
    assert _count(_field("none", geometric_init="sphere")) == expected  # the sphere term has no parameters
    assert _count(_field("cn")) == expected + 2 * (8 * 256 + 4 * 256)  # affine weight + bias per channel
    base_only = _field("bn", norm_layers="base")
    assert sum(isinstance(m, RunningStatsNorm) for m in base_only.color_mlp.modules()) == 0
    assert sum(isinstance(m, RunningStatsNorm) for m in base_only.sdf_mlp.modules()) == 8


@pytest.mark.parametrize("norm", ["none", "bn", "ln", "gn", "cn", "rms"])
@pytest.mark.parametrize("grid", [False, True])
def test_eikonal_loss_differentiates_the_sdf_network_twice(norm: str, grid: bool) -> None:
    small = {"grid": HashGridConfig(num_levels=3, log2_hashmap_size=10, max_resolution=32)} if grid else {}
    field = _field(norm, hidden_dim=32, geo_feat_dim=16, hidden_dim_color=16, use_grid_feature=grid, **small)
    x = _ball(64)
    sdf, feature, gradient = field.sdf_and_gradient(x)
    rgb = field.color_mlp(torch.cat([x, field.direction_encoding(x), gradient, feature], dim=-1))
    ((gradient.norm(dim=-1) - 1).square().mean() + rgb.mean()).backward()  # eikonal + a colour loss
    first = field.sdf_mlp.layers[0]
    weight_grad = first.parametrizations.weight.original1.grad
    assert weight_grad is not None and torch.isfinite(weight_grad).all() and weight_grad.abs().sum() > 0
    if grid:
        assert field.position_encoding.grid.table.grad is not None


def test_sdf_queries_never_update_statistics() -> None:
    field = _field("cn", hidden_dim=32, geo_feat_dim=16, hidden_dim_color=16)
    before = _stats(field)
    x = _ball(64)
    field.sdf(x)  # with gradients enabled, in train mode: still a query
    assert all(torch.equal(field.state_dict()[k], v) for k, v in before.items())
    field.sdf_and_gradient(x)  # a training pass (gradients enabled) updates them
    assert any(not torch.equal(field.state_dict()[k], v) for k, v in before.items())
    before = _stats(field)
    with torch.no_grad():
        sdf, _, gradient = field.sdf_and_gradient(x)  # normals need autograd, yet no statistics update
    assert all(torch.equal(field.state_dict()[k], v) for k, v in before.items())
    assert not sdf.requires_grad and torch.isfinite(gradient).all()


def test_recalibration_counts_rendering_passes_not_sampler_queries() -> None:
    from norm_nerf.core.recalibrate import recalibrate

    field = _field("cn", hidden_dim=32, geo_feat_dim=16, hidden_dim_color=16)
    x = _ball(64)

    def sampler_then_render(f: NormSDFField, batch: torch.Tensor) -> None:
        f.sdf(batch * 0.5)  # an up-sampler query: other points, must not enter the statistics
        f.sdf_and_gradient(batch)

    recalibrate(field, [x], forward=sampler_then_render)
    only_render = _field("cn", hidden_dim=32, geo_feat_dim=16, hidden_dim_color=16)
    only_render.load_state_dict(field.state_dict())
    recalibrate(only_render, [x], forward=lambda f, batch: f.sdf_and_gradient(batch))
    after, expected = _stats(field), _stats(only_render)
    assert all(torch.equal(after[k], v) for k, v in expected.items())


@pytest.mark.parametrize("grid", [False, True])
def test_forward_geonetwork_is_the_eval_mode_sdf(grid: bool) -> None:
    """What ``ns-export marching-cubes`` calls (``field.forward_geonetwork(x)[:, 0]``, nerfstudio's SDFField shape:
    ``(n, 1 + geo_feat_dim)``, SDF first): our eval-mode SDF query, whatever the field's mode and the chunking."""
    kw = {"use_grid_feature": True, "grid": HashGridConfig(num_levels=2, log2_hashmap_size=8)} if grid else {}
    field = _field("cn", hidden_dim=32, geo_feat_dim=16, hidden_dim_color=16, **kw)
    field.sdf_and_gradient(_ball(256, seed=2))  # a training pass: running statistics away from their init
    x = _ball(300)
    before = _stats(field)
    out = field.forward_geonetwork(x, chunk=37)  # train mode, gradients enabled, 9 chunks
    assert field.training and out.shape == (300, 17) and not out.requires_grad
    assert all(torch.equal(field.state_dict()[k], v) for k, v in before.items())  # a query: no statistics update
    field.eval()
    with torch.no_grad():
        sdf, feature = field.geometry(x)
    torch.testing.assert_close(out[:, 0], field.sdf(x)[:, 0], rtol=1e-5, atol=1e-6)  # = mesh.py's SDF
    torch.testing.assert_close(out, torch.cat([sdf, feature], dim=-1), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(field.forward_geonetwork(x.reshape(3, 100, 3)).reshape(300, 17), out, rtol=1e-5,
                               atol=1e-6)  # fmt: skip
    assert not field.training


def test_marching_cubes_exporter_without_cuda_points_at_norm_extract_mesh(monkeypatch) -> None:
    """The check our surface models run while ns-export marching-cubes loads them: only in that exporter's process
    (told by its command line), only without CUDA."""
    from norm_nerf.ns.exporter import NeedsCudaError, check_marching_cubes_device, marching_cubes_export

    config = "outputs/scan/norm-neus/run/config.yml"
    assert marching_cubes_export(["/env/bin/ns-export", "marching-cubes", "--load-config", config]) == config
    assert marching_cubes_export(["exporter.py", "marching-cubes", f"--load-config={config}"]) == config
    assert marching_cubes_export(["/env/bin/ns-export", "pointcloud", "--load-config", config]) is None
    assert marching_cubes_export(["/env/bin/ns-viewer", "--load-config", config]) is None
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    check_marching_cubes_device()  # pytest's own command line: nothing
    monkeypatch.setattr(sys, "argv", ["/env/bin/ns-export", "pointcloud", "--load-config", config])
    check_marching_cubes_device()  # another exporter: nothing
    monkeypatch.setattr(sys, "argv", ["/env/bin/ns-export", "marching-cubes", "--load-config", config])
    with pytest.raises(NeedsCudaError) as info:
        check_marching_cubes_device()
    message = str(info.value.code)
    assert "needs CUDA" in message and "nerfstudio/exporter/marching_cubes.py" in message
    assert f"norm-extract-mesh --load-config {config}" in message
    assert isinstance(info.value, SystemExit)  # the CLI exits 1 with the message, no traceback
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    check_marching_cubes_device()  # with CUDA nerfstudio's exporter runs


# ---- mesh export helpers ----


def test_marching_cubes_of_an_analytic_sphere() -> None:
    bounds = (-1.0, -1.0, -1.0, 1.0, 1.0, 1.5)
    centre = torch.tensor([0.3, -0.2, 0.1])
    grid = sdf_grid(lambda p: (p - centre).norm(dim=-1, keepdim=True) - 0.4, bounds, 40, chunk=777, progress=False)
    vertices, faces = marching_cubes(grid, bounds)
    mesh = trimesh.Trimesh(vertices, faces, process=False)
    np.testing.assert_allclose(np.linalg.norm(vertices - centre.numpy(), axis=1), 0.4, atol=2e-3)
    assert mesh.is_watertight and mesh.volume == pytest.approx(4 / 3 * np.pi * 0.4**3, rel=0.02)  # outward faces
    with pytest.raises(NoSurfaceError, match="no crossing of level 0 "):
        marching_cubes(grid + 10.0, bounds)
    with pytest.raises(ValueError, match="max must exceed"):
        sdf_grid(lambda p: p[:, :1], (0, 0, 0, 1, -1, 1), 8)


def test_model_to_world_undoes_a_dataparser_transform() -> None:
    rng = np.random.default_rng(0)
    R, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    R *= np.sign(np.linalg.det(R))
    transform, scale = np.concatenate([R, rng.normal(size=(3, 1))], axis=1), 0.37
    world = rng.normal(size=(10, 3))
    model = scale * (world @ transform[:, :3].T + transform[:, 3])  # what nerfstudio's dataparsers do
    np.testing.assert_allclose(model_to_world(model, transform=transform, scale=scale), world, atol=1e-12)
    S = np.diag([2.0, 2.0, 2.0, 1.0])
    S[:3, 3] = [1.0, 2.0, 3.0]
    np.testing.assert_allclose(model_to_world(model, scale_mat=S), 2.0 * model + [1.0, 2.0, 3.0])


@pytest.mark.parametrize(("norm", "init"), [("none", "sphere"), ("cn", "auto")])
def test_initial_sphere_lands_in_world_coordinates(norm: str, init: str) -> None:
    """An untrained field's mesh is the init sphere; through a known scale_mat it lands on the world sphere."""
    S = np.diag([SCENE_RADIUS_MM] * 3 + [1.0])
    S[:3, 3] = SCENE_CENTER
    field = _field(norm, geometric_init=init, hidden_dim=64, geo_feat_dim=16, hidden_dim_color=16)
    outputs = SimpleNamespace(scene_box=SimpleNamespace(aabb=torch.tensor([[-1.0] * 3, [1.0] * 3])),
                              metadata={"scale_mat": torch.from_numpy(S)})  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # cn in eval mode before any training batch
        mesh = mesh_of_model(SimpleNamespace(field=field, eval=field.eval), outputs, 32, progress=False)
    radii = np.linalg.norm(mesh.vertices - SCENE_CENTER, axis=1) / SCENE_RADIUS_MM
    np.testing.assert_allclose(radii, RADIUS, atol=2e-3)
    assert mesh.volume > 0


# ---- the method: registration, training, checkpoints, eval mode, mesh export ----


def test_surface_methods_are_registered() -> None:
    from nerfstudio.plugins.registry import discover_methods

    from norm_nerf.ns.dtu_dataparser import NormDTUDataParserConfig
    from norm_nerf.ns.runs import method_config

    methods, descriptions = discover_methods()
    for name in ("norm-neus", "norm-neus-facto"):
        assert name in methods and "normalized" in descriptions[name]
        cfg = method_config(name)
        assert cfg.pipeline.model.norm == "cn"
        assert isinstance(cfg.pipeline.datamanager.dataparser, NormDTUDataParserConfig)
    assert method_config("norm-neus-facto").pipeline.model.sdf_field.use_grid_feature


@pytest.fixture(scope="module", params=["norm-neus", "norm-neus-facto"])
def neus_run(request, dtu_scan_neus, tmp_path_factory) -> Path:
    """A surface method (cn) trained 12 steps on the tiny scan, initial sphere = the object; returns config.yml."""
    from norm_nerf.ns.runs import train

    cfg = tiny_config(request.param, dtu_scan_neus, tmp_path_factory.mktemp("neus_runs"), steps=12)
    return train(cfg)


def _load(config_yml: Path):
    from nerfstudio.utils.eval_utils import eval_setup

    _, pipeline, ckpt, step = eval_setup(config_yml, test_mode="test")
    return pipeline, ckpt, step


@pytest.mark.slow
def test_train_checkpoint_load_and_eval(neus_run) -> None:
    pipeline, ckpt, step = _load(neus_run)
    assert ckpt.name.endswith(".ckpt") and step == 11
    norms = [m for m in pipeline.model.modules() if isinstance(m, RunningStatsNorm)]
    layers = pipeline.model.config.sdf_field.num_layers + pipeline.model.config.sdf_field.num_layers_color
    assert len(norms) == layers and all((m.num_batches_tracked > 0).all() for m in norms)  # recalibrated, saved
    saved = torch.load(ckpt, map_location="cpu", weights_only=False)["pipeline"]
    assert any(k.endswith("running_n") for k in saved)
    metrics = pipeline.get_average_eval_image_metrics()
    assert np.isfinite(metrics["psnr"]) and "lpips" in metrics  # LPIPS: NaN offline, never a download


@pytest.mark.slow
def test_eval_rendering_is_chunk_invariant(neus_run) -> None:
    pipeline, _, _ = _load(neus_run)
    model = pipeline.model.eval()
    camera = pipeline.datamanager.eval_dataset.cameras[0:1]
    images = []
    for chunk in (37, 1024):  # 20 x 15 = 300 rays: many small chunks vs one
        model.config.eval_num_rays_per_chunk = chunk
        outputs = model.get_outputs_for_camera(camera)  # normals need autograd even under no_grad
        images.append(torch.cat([outputs["rgb"], outputs["normal"]], dim=-1))
    torch.testing.assert_close(images[0], images[1], rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_no_grad_passes_leave_statistics_untouched(neus_run) -> None:
    pipeline, _, _ = _load(neus_run)
    model = pipeline.model.train()
    before = _stats(model)
    ray_bundle, _ = pipeline.datamanager.next_train(0)
    with torch.no_grad():
        model(ray_bundle)  # sampler queries and the field pass (which computes normals with autograd)
    assert before and all(torch.equal(model.state_dict()[k], v) for k, v in before.items())
    model(ray_bundle)  # a training pass updates them; the sampler's queries inside it do not
    assert any(not torch.equal(model.state_dict()[k], v) for k, v in before.items())


@pytest.mark.slow
def test_norm_neus_trains_with_norm_none(dtu_scan_neus, tmp_path) -> None:
    from norm_nerf.ns.runs import cpu_preset, method_config, train

    cfg = cpu_preset(method_config("norm-neus"), dtu_scan_neus, tmp_path, steps=3, rays=32, samples=8, width=16)
    cfg.pipeline.datamanager.dataparser.cache_dir = tmp_path / "cache"
    cfg.pipeline.model.norm = "none"
    cfg.pipeline.model.background_model = "none"
    pipeline, _, _ = _load(train(cfg))
    assert not any(isinstance(m, RunningStatsNorm) for m in pipeline.model.modules())
    assert pipeline.model.field.geometric_init == "neus"


@pytest.mark.slow
def test_exported_mesh_is_in_world_coordinates_for_norm_eval_dtu(neus_run, dtu_scan_neus, tmp_path) -> None:
    from norm_nerf.eval.mesh_eval import EvalDTUConfig, evaluate_mesh_file
    from norm_nerf.ns.mesh import ExtractMeshConfig, export_run_mesh

    out = tmp_path / "mesh.ply"
    export_run_mesh(ExtractMeshConfig(load_config=neus_run, out=out, resolution=40))
    mesh = trimesh.load(out, process=False)
    radii = np.linalg.norm(mesh.vertices - SCENE_CENTER, axis=1)
    np.testing.assert_allclose(radii, OBJECT_RADIUS * SCENE_RADIUS_MM, rtol=0.01)  # 12 steps: still the init sphere
    cfg = EvalDTUConfig(mesh=out, scan_dir=dtu_scan_neus, gt_dir=dtu_scan_neus / "gt", scan=1, mesh_in_world=True,
                        density=2.0, out=tmp_path / "eval")  # fmt: skip
    metrics = evaluate_mesh_file(cfg).checked()
    assert metrics["overall"] < 2.0  # mm; the object is a 120 mm sphere


@pytest.mark.slow
def test_nerfstudio_marching_cubes_path_on_cpu_matches_our_mesh(neus_run) -> None:
    """nerfstudio's multi-resolution SDF evaluation (the functions ``ns-export marching-cubes`` runs, with its call
    ``field.forward_geonetwork(x)[:, 0]``) and skimage's marching cubes, on a 64^3 crop on CPU (nerfstudio's own driver
    moves 512^3 crops to CUDA), give the surface of our mesh export on the same grid."""
    from nerfstudio.exporter.marching_cubes import create_point_pyramid, evaluate_multiresolution_sdf, evaluate_sdf
    from scipy.spatial import cKDTree
    from skimage import measure

    pipeline, _, _ = _load(neus_run)
    field, n = pipeline.model.field, 64
    axis = np.linspace(-1.0, 1.0, n)
    xx, yy, zz = np.meshgrid(axis, axis, axis, indexing="ij")
    points = torch.tensor(np.vstack([xx.ravel(), yy.ravel(), zz.ravel()]).T, dtype=torch.float)
    points = points.reshape(n, n, n, 3).permute(3, 0, 1, 2)
    with torch.no_grad():  # as nerfstudio's generate_mesh_with_multires_marching_cubes
        sdf = evaluate_multiresolution_sdf(
            lambda p: evaluate_sdf(lambda x: field.forward_geonetwork(x)[:, 0].contiguous(), p),
            create_point_pyramid(points), None, 1.0, -1.0, n,
        ).numpy()  # fmt: skip
    verts, _, _, _ = measure.marching_cubes(sdf.reshape(n, n, n), level=0.0, spacing=(2.0 / (n - 1),) * 3)
    verts = verts - 1.0
    ours = mesh_of_model(pipeline.model, pipeline.datamanager.train_dataparser_outputs, n, (-1, -1, -1, 1, 1, 1),
                         world=False, progress=False)  # fmt: skip
    np.testing.assert_allclose(np.linalg.norm(verts, axis=1), OBJECT_RADIUS, atol=0.02)  # still the initial sphere
    for a, b in ((verts, ours.vertices), (ours.vertices, verts)):  # the same edge crossings of the same grid
        assert cKDTree(b).query(a)[0].max() < 1e-4


@pytest.mark.slow  # ns-export in a subprocess
def test_ns_export_marching_cubes_without_cuda_points_at_norm_extract_mesh(neus_run, tmp_path) -> None:
    from tests.ns.ns_cli import require_open3d, run_ns

    if torch.cuda.is_available():
        pytest.skip("CUDA present: nerfstudio's marching-cubes exporter runs")
    require_open3d()
    out = tmp_path / "mesh"
    done = run_ns("ns-export", "marching-cubes", "--load-config", str(neus_run), "--output-dir", str(out), cwd=tmp_path)
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Traceback" not in done.stderr and "needs CUDA" in done.stderr, done.stderr[-3000:]
    assert f"norm-extract-mesh --load-config {neus_run} --resolution 256 --out mesh.ply" in done.stderr
    assert not list(out.glob("*"))  # stopped while loading the run, before anything is written


@pytest.mark.slow  # ns-eval in a subprocess
def test_ns_eval_of_a_surface_run(neus_run, tmp_path) -> None:
    import json
    import math

    from tests.ns.ns_cli import run_ns

    done = run_ns("ns-eval", "--load-config", str(neus_run), "--output-path", "out.json", cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads((tmp_path / "out.json").read_text())["results"]
    assert list(results)[:6] == ["psnr", "psnr_std", "ssim", "ssim_std", "lpips", "lpips_std"]
    assert math.isfinite(results["psnr"]) and math.isfinite(results["ssim"])
    assert math.isnan(results["lpips"])  # 20 x 15 px views: below the 31 px AlexNet needs (tests/ns/test_ns_tools.py)


def test_rays_missing_the_box_get_a_finite_empty_segment() -> None:
    from nerfstudio.cameras.rays import RayBundle
    from nerfstudio.data.scene_box import SceneBox
    from nerfstudio.model_components.scene_colliders import AABBBoxCollider

    from norm_nerf.ns.neus import MissSafeBoxCollider

    box = SceneBox(aabb=torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]]))
    origins = torch.tensor([[1.57, 1.32, 2.19], [0.0, 0.0, 3.0], [0.0, 0.0, 3.0]])
    directions = torch.nn.functional.normalize(torch.tensor([[-0.5626, -1.2e-4, -0.8267], [0.0, 0.0, -1.0],
                                                             [0.0, 0.0, 1.0]]), dim=-1)  # fmt: skip

    def bundle():
        return RayBundle(origins=origins.clone(), directions=directions.clone(), pixel_area=torch.ones(3, 1))

    ours = MissSafeBoxCollider(box, near_plane=0.05)(bundle())
    theirs = AABBBoxCollider(box, near_plane=0.05)(bundle())
    assert theirs.nears[0, 0] > 1000  # nerfstudio: beyond the background far plane (NaN background samples)
    torch.testing.assert_close(ours.nears[1:2], theirs.nears[1:2])  # a hit is unchanged: enters at 2, exits at 4
    torch.testing.assert_close(ours.fars[1:2], theirs.fars[1:2])
    centre_t = -(origins[0] * directions[0]).sum()
    torch.testing.assert_close(ours.nears[0, 0], centre_t)  # a miss: empty segment at the closest approach
    assert 0 < ours.fars[0, 0] - ours.nears[0, 0] < 1e-5
    assert ours.nears[2, 0] == 0.05 and ours.fars[2, 0] < 1  # box behind the camera: empty segment at the near plane
