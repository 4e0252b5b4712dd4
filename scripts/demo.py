"""norm-demo: the main job on embedded defaults (no downloads).

* ``norm-demo nerf`` (what ``./bin/demo`` runs): generates a small textured Blender-layout scene, trains
  ``norm-mipnerf`` with cross normalization and the plain Mip-NeRF (``--pipeline.model.norm none``) for the
  same short budget on CPU, evaluates both on the test views in eval mode, and writes renders + JSON.
* ``norm-demo image``: fits scikit-image's bundled astronaut picture with plain and normalized networks.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import tyro

from norm_nerf.data.blender import BlenderSceneConfig, write_blender_scene
from norm_nerf.data.images import load_image
from norm_nerf.eval.metrics import to_uint8
from norm_nerf.eval.plots import save_curves, save_image, save_image_grid, save_panels
from norm_nerf.tasks.image import ImageTaskConfig, fit_image
from norm_nerf.utils.cli import run_cli
from norm_nerf.utils.console import CONSOLE, print_table
from norm_nerf.utils.jsonio import write_json
from norm_nerf.utils.outputs import OutputOptions

DEMO_KEYS = ("psnr", "ssim", "psnr_train_mode_final", "psnr_best_train_mode", "params", "lr", "steps", "seconds", "out")
"""What the image demo keeps of each method's task summary (its ``metrics.json`` is in the method's folder)."""


@dataclass
class ImageDemoConfig(OutputOptions):
    """Fit one image with several methods and compare them (eval-mode metrics)."""

    output_root = Path("outputs/demo")

    methods: tuple[str, ...] = ("relu", "pe", "relu+cn", "pe+cn")
    """Methods to compare (see README: relu, pe, siren, wire, mfn, relu+bn, pe+cn, ...)."""
    image: Path | None = None
    """Image to fit; default: scikit-image's bundled astronaut picture."""
    size: int = 128
    """Longer image side after downsampling."""
    depth: int = 10
    """Hidden layers."""
    width: int = 28
    """Hidden features."""
    steps: int = 300
    """Training steps per method (full batch)."""
    seed: int = 0
    """Seed for the network initialisation."""
    progress: bool = True
    """Show progress bars."""

    def task(self, method: str) -> ImageTaskConfig:
        """The ``norm-inr image`` run of one method."""
        options = {"depth": self.depth, "width": self.width, "steps": self.steps, "seed": self.seed}
        return ImageTaskConfig(image=self.image, resize=self.size).replace(
            method=method, progress=self.progress, **options
        )


def run_image_demo(cfg: ImageDemoConfig) -> dict:
    """Run the demo and return the results dictionary (also written to ``metrics.json``).

    Each method is one ``norm-inr image`` run (:func:`norm_nerf.tasks.image.fit_image`) into ``runs/<method>/``;
    the demo puts their reconstructions side by side.
    """
    out = cfg.prepare_output()
    fits = {m: fit_image(cfg.task(m), cfg.image, out / "runs" / m.replace("+", "_")) for m in cfg.methods}
    results = {m: {k: f.summary[k] for k in DEMO_KEYS} for m, f in fits.items()}
    first = next(iter(fits.values()))
    summary = {
        "task": "image",
        "image": first.summary["image"],
        "size": first.summary["size"],
        "net": f"{cfg.depth}x{cfg.width}",
        "note": "psnr/ssim are eval-mode metrics of the final model after recalibrating running statistics",
        "results": results,
    }
    write_json(out / "metrics.json", summary)
    titles = {m: f"{m}: {r['psnr']:.2f} dB" for m, r in results.items()}
    preds = {m: f.prediction for m, f in fits.items()}
    save_image_grid(first.target, preds, out / "reconstructions.png", titles)
    curves = {m: (f.summary["curve"]["step"], f.summary["curve"]["train_mode_psnr"]) for m, f in fits.items()}
    save_curves(curves, out / "curves.png")
    for method, pred in preds.items():
        save_image(to_uint8(pred.squeeze()), out / f"recon_{method.replace('+', '_')}.png")
    rows = [
        [m, f"{r['psnr']:.2f}", f"{r['ssim']:.3f}", f"{r['psnr_train_mode_final']:.2f}",
         f"{r['psnr_best_train_mode']:.2f}", f"{r['seconds']:.1f}"]
        for m, r in results.items()
    ]  # fmt: skip
    columns = ("method", "PSNR", "SSIM", "train-mode final", "best train-mode", "s")
    print_table(f"image fit, {cfg.depth}x{cfg.width}, {cfg.steps} steps (eval mode after recalibration)", columns, rows)
    CONSOLE.print(
        f"Results written to [bold]{out.resolve()}[/bold] (metrics.json, reconstructions.png, curves.png, runs/)"
    )
    return summary


@dataclass
class NerfDemoConfig(OutputOptions):
    """Train a normalized method (default norm-mipnerf, cross norm) and its base (norm none) on the same scene for the
    same steps, and compare them on the test views in eval mode."""

    output_root = Path("outputs/demo")

    method: Literal["norm-mipnerf", "norm-nerf"] = "norm-mipnerf"
    """nerfstudio method to train."""
    norms: tuple[str, ...] = ("cn", "none")
    """Norms to train (none = the base method through the same code)."""
    data: Path | None = None
    """An existing Blender-layout scene (e.g. data/blender/lego); default: generate one into the output."""
    downscale_factor: int = 1
    """Image downscale for --data (8 turns lego's 800x800 into 100x100), cached under outputs/cache."""
    steps: int = 1000
    """Training steps per run."""
    lr: float | None = 2e-3
    """Initial learning rate of the fields' optimizer, the same for every norm (None: the method's own, 5e-4 for
    Mip-NeRF; 2e-3 reaches more in the demo's short run for both norms)."""
    size: int = 48
    """Image side of the generated scene in pixels."""
    views: int = 40
    """Training views of the generated scene."""
    shape: Literal["sphere", "torus", "box", "bumpy", "capsule"] = "torus"
    """Procedural object of the generated scene."""
    checker_period: float = 0.5
    """Checker cell size of the generated scene's texture (unit-sphere units; 0.5: cells a short run can learn)."""
    stripe_depth: float = 0.0
    """Darkening by the generated texture's thin stripes, in [0, 1] (0: none; norm-make-scene's default is 0.35)."""
    rays: int = 256
    """Rays per training batch."""
    samples: int = 32
    """Coarse and fine samples per ray."""
    width: int = 128
    """Width of the density trunk (the colour MLP gets half)."""


def run_nerf_demo(cfg: NerfDemoConfig) -> dict:
    """Run the nerfstudio demo and return the results dictionary (also written to ``metrics.json``)."""
    from norm_nerf.ns.compare import train_and_score  # nerfstudio: imported when the nerf demo runs

    out = cfg.prepare_output()
    if cfg.data is None:
        CONSOLE.print(f"[bold]1/{len(cfg.norms) + 1}[/bold] generating a {cfg.size}x{cfg.size} {cfg.shape} scene")
        scene_cfg = BlenderSceneConfig(
            out=out / "scene", shape=cfg.shape, views=cfg.views, val_views=2, test_views=4, size=cfg.size,
            checker_period=cfg.checker_period, stripe_depth=cfg.stripe_depth, overwrite=cfg.overwrite,
        )  # fmt: skip
        scene = write_blender_scene(scene_cfg)
        scene_name = f"a generated {cfg.shape}, {cfg.size}^2"
    else:
        scene, scene_name = cfg.data, f"{cfg.data.name} (downscale x{cfg.downscale_factor})"
    results = {}
    for k, norm in enumerate(cfg.norms, start=2):
        CONSOLE.print(f"[bold]{k}/{len(cfg.norms) + 1}[/bold] training {cfg.method} --pipeline.model.norm {norm}")
        options = {"downscale_factor": cfg.downscale_factor} if cfg.data is not None else None
        results[norm] = train_and_score(
            cfg.method, norm, scene, out, cfg.steps, cfg.rays, cfg.samples, cfg.width, options, lr=cfg.lr
        )  # fmt: skip
    figure = save_comparison(out, cfg.method, list(cfg.norms))
    summary = {
        "method": cfg.method,
        "scene": str(scene),
        "downscale_factor": cfg.downscale_factor if cfg.data is not None else 1,
        "steps": cfg.steps,
        "rays": cfg.rays,
        "samples": cfg.samples,
        "width": cfg.width,
        "lr": cfg.lr,
        "note": "test-view metrics in eval mode (running statistics recalibrated on training rays before saving)",
        "results": results,
        "comparison": str(figure),
    }
    write_json(out / "metrics.json", summary)
    rows = [
        [norm, _fmt(r["psnr"], ".2f"), _fmt(r["ssim"], ".3f"), _fmt(r["lpips"], ".3f"),
         f"{r['train_rays_per_second']:.0f}", f"{r['train_seconds']:.0f}"]
        for norm, r in results.items()
    ]  # fmt: skip
    title = f"{cfg.method} on {scene_name}, {cfg.steps} steps, test views"
    print_table(title, ["norm", "PSNR", "SSIM", "LPIPS", "rays/s (train)", "train s"], rows)
    CONSOLE.print(f"Comparison figure: [bold]{figure.resolve()}[/bold]")
    CONSOLE.print(f"Results written to [bold]{out.resolve()}[/bold] (metrics.json, renders_*/, runs/)")
    for r in results.values():
        CONSOLE.print(f"  view it: ns-viewer --load-config {r['config']}")
    return summary


def save_comparison(out: Path, method: str, norms: list[str]) -> Path:
    """``comparison.png``: the first test view's ground truth beside every norm's render, PSNR in the titles."""
    folders = {norm: out / f"renders_{method}-{norm}" for norm in norms}
    first = folders[norms[0]]
    view = json.loads((first / "metrics.json").read_text())["images"][0]["name"]
    panels = {"ground truth": load_image(first / "ground_truth" / f"{view}.png").numpy()}
    for norm, folder in folders.items():
        scores = {s["name"]: s for s in json.loads((folder / "metrics.json").read_text())["images"]}
        label = "base (norm none)" if norm == "none" else f"norm {norm}"
        panels[f"{label}: {scores[view]['psnr']:.2f} dB"] = load_image(folder / "renders" / f"{view}.png").numpy()
    return save_panels(panels, out / "comparison.png")


def _fmt(value: float | None, spec: str) -> str:
    """A metric for the console table; None (e.g. LPIPS without weights, SSIM of a tiny image) is "n/a"."""
    return "n/a" if value is None else format(value, spec)


Command = (
    Annotated[NerfDemoConfig, tyro.conf.subcommand("nerf", default=NerfDemoConfig())]
    | Annotated[ImageDemoConfig, tyro.conf.subcommand("image")]
)


def _dispatch(cfg: NerfDemoConfig | ImageDemoConfig) -> dict:
    return run_nerf_demo(cfg) if isinstance(cfg, NerfDemoConfig) else run_image_demo(cfg)


def entrypoint() -> None:
    """Console script ``norm-demo``."""
    run_cli(lambda: _dispatch(tyro.cli(Command)))  # type: ignore[call-overload]


if __name__ == "__main__":
    entrypoint()
