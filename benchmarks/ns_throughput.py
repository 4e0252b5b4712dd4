"""Training throughput and quality of each norm-* nerfstudio method against its base (``--pipeline.model.norm none``).

Every method is trained with every norm on the same generated scene (Blender layout for the radiance methods, the
NeuS/DTU layout for the surface methods) for the same number of steps at the same CPU-sized config, then scored on
its test views in eval mode. Speed is the median wall time of a training iteration (forward, backward, optimizer
step; the first 5 skipped), stated as a ratio to the base method measured in the same run (shared, noisy machine).

    .venv/bin/python benchmarks/ns_throughput.py [--methods norm-mipnerf norm-nerf norm-neus] [--norms none cn]
        [--steps 200] [--out benchmarks/results/ns_throughput.json]

``--scene DIR`` trains the surface methods on a real scan in the NeuS/DTU layout instead (e.g. ``../shared/data/dtu/
scan65``, with ``--downscale-factor``); chamfer is scored only where ``DIR/gt`` holds DTU-style ground truth.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from _report import machine_info, settings, write_report

SURFACE_METHODS = ("norm-neus", "norm-neus-facto")


def _scenes(work: Path, size: int, dtu_scene: Path | None = None) -> dict[str, Path]:
    """A Blender-layout torus and a NeuS/DTU-layout torus, generated once into ``work`` (the latter only when no
    ``dtu_scene`` is given)."""
    from norm_nerf.data.blender import BlenderSceneConfig, write_blender_scene
    from norm_nerf.data.dtu import DTUSceneConfig, write_dtu_scene

    blender, dtu = work / "scene_blender", dtu_scene or work / "scene_dtu"
    if not (blender / "transforms_test.json").is_file():
        write_blender_scene(BlenderSceneConfig(out=blender, shape="torus", views=24, val_views=1, test_views=2,
                                               size=size, overwrite=True))  # fmt: skip
    if not (dtu / "cameras_sphere.npz").is_file():
        write_dtu_scene(DTUSceneConfig(out=dtu, shape="torus", views=24, size=size, overwrite=True))
    return {"blender": blender, "dtu": dtu}


def _plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(results)
    norms = sorted({n for r in results.values() for n in r}, key=lambda n: (n != "none", n))
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))
    width = 0.8 / len(norms)
    for k, norm in enumerate(norms):
        xs = [i + k * width for i in range(len(methods))]
        axes[0].bar(xs, [results[m].get(norm, {}).get("rays_per_second_ratio", 0) for m in methods], width, label=norm)
        axes[1].bar(xs, [results[m].get(norm, {}).get("psnr") or 0 for m in methods], width, label=norm)
    for ax, title in zip(axes, ("training rays/s, ratio to norm none", "test-view PSNR [dB], eval mode")):
        ax.set_xticks([i + width * (len(norms) - 1) / 2 for i in range(len(methods))], methods)
        ax.set_title(title)
        ax.legend()
    axes[0].axhline(0.85, color="k", lw=0.8, ls="--")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    from norm_nerf.ns.compare import chamfer_of_run, train_and_score
    from norm_nerf.ns.mesh import NoSurfaceError

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="+", default=["norm-mipnerf", "norm-nerf", "norm-neus", "norm-neus-facto"])
    parser.add_argument("--norms", nargs="+", default=["none", "cn"])
    parser.add_argument("--impl", default="auto", choices=["auto", "fast", "reference", "compiled"], help="norm impl")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--rays", type=int, default=256)
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--mesh-resolution", type=int, default=128, help="marching-cubes grid for surface methods")
    parser.add_argument("--size", type=int, default=40, help="image width of the generated scenes")
    parser.add_argument("--scene", type=Path, default=None, help="a NeuS/DTU-layout scan for the surface methods")
    parser.add_argument("--downscale-factor", type=int, default=1, help="norm-dtu downscaling of --scene's images")
    parser.add_argument("--work", type=Path, default=Path("outputs/bench_ns"), help="scenes, runs and renders")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/ns_throughput.json"))
    args = parser.parse_args()
    if "none" not in args.norms:
        args.norms = ["none", *args.norms]
    dataparser: dict = {}
    if args.scene is not None:
        if not (args.scene / "cameras_sphere.npz").is_file():
            parser.error(f"--scene {args.scene}: no cameras_sphere.npz (expected the NeuS/DTU layout)")
        dataparser = {"downscale_factor": args.downscale_factor}
    scenes = _scenes(args.work, args.size, args.scene)
    results: dict[str, dict[str, dict]] = {}
    for method in args.methods:
        surface = method in SURFACE_METHODS
        scene = scenes["dtu" if surface else "blender"]
        results[method] = {}
        for norm in args.norms:
            out = args.work / f"{method}-{norm}"
            r = train_and_score(method, norm, scene, out, args.steps, args.rays, args.samples, args.width,
                                dataparser_options=dataparser if surface else None,
                                model_options={"norm_impl": args.impl})  # fmt: skip
            results[method][norm] = {k: r[k] for k in ("psnr", "ssim", "lpips", "train_rays_per_second",
                                                          "step_seconds_median", "train_seconds")}  # fmt: skip
            if surface and (scene / "gt").is_dir():  # the generated scan's ground truth: scan 1 under scene_dtu/gt
                try:
                    chamfer = chamfer_of_run(r["config"], scene, scene / "gt", 1, out, args.mesh_resolution)
                    results[method][norm]["chamfer_mm"] = chamfer["overall"]
                except NoSurfaceError as err:  # a result, not a crash: this run lost (or never found) its surface
                    results[method][norm].update(chamfer_mm=None, no_surface=str(err))
        base = results[method]["none"]["train_rays_per_second"]
        for r in results[method].values():
            r["rays_per_second_ratio"] = r["train_rays_per_second"] / base
        print(method, json.dumps(results[method], indent=1))
    report = {
        "machine": machine_info(),
        "config": settings(args),
        "note": "same scene, steps and config per method; speed = median iteration time, ratios within one run",
        "results": results,
    }
    write_report(report, args.out, lambda path: _plot(results, path))


if __name__ == "__main__":
    main()
