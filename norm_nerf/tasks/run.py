"""The signal tasks: image, ct, mri, shape. Each fits one network and writes ``metrics.json`` (eval-mode metrics
after recalibration first) and pictures into its output folder.

Changes made to an input (a CT image centre-cropped to a square or min-max scaled, a complex MRI volume replaced by
its magnitude) are printed as a ``notice:`` line on stderr and listed under ``notices`` in ``metrics.json``.
A folder of images writes one sub-folder per image, named by the file stem; stems shared by several files
(``a.png`` and ``a.jpg``) use the stem and the suffix instead (``a_png``, ``a_jpg``), so no result overwrites another.

Every file is written whole or not at all (:mod:`norm_nerf.utils.atomic`), ``metrics.json`` last, so a folder that
holds it holds every file of the run (``norm-inr table`` keeps such cells). A full disk stops the run with one line
naming the folder (``norm-inr`` exits 2) and leaves no empty or truncated file.

The tasks' own command line, what ``norm-inr <task>`` and every cell of ``norm-inr table`` run::

    python -m norm_nerf.tasks image --method pe+cn --steps 2000 --out DIR

:func:`parse_task` turns ``<task> <flags>`` into a config, :func:`run_task` runs it, :func:`print_summary` prints
the headline numbers; :func:`main` is the three in a row.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import torch
import tyro
from torch import nn

from norm_nerf.core import count_parameters
from norm_nerf.core.network import NetworkConfig
from norm_nerf.core.saving import save_atomically
from norm_nerf.data.images import IMAGE_SUFFIXES, ImageError, list_images, load_image
from norm_nerf.eval.metrics import PSNR_CAP_DB, psnr
from norm_nerf.eval.plots import save_curves, save_panels, save_spectra
from norm_nerf.tasks.common import (
    NetworkOptions,
    TaskConfig,
    TrainOptions,
    check_common,
    fit_signal,
    network_defaults,
    summarize,
    train_defaults,
    write_metrics,
)
from norm_nerf.tasks.ct import CTSignal, load_ct_image, matched_octaves, nyquist_octaves
from norm_nerf.tasks.image import ImageSignal, default_image
from norm_nerf.tasks.mri import MIN_VOLUME_SIDE, MRISignal, load_volume, shepp_logan_3d
from norm_nerf.tasks.shape import MIN_EXPORT_RESOLUTION, MIN_GRID, OccupancySignal, default_shape, load_shape
from norm_nerf.tasks.trainer import ConfigError, FitResult, predict
from norm_nerf.utils.console import CONSOLE, notice


@dataclass
class ImageTaskConfig(TaskConfig):
    """Fit an image (or every image of a folder, metrics averaged) with a coordinate network."""

    task = "image"
    output_root = Path("outputs/image")
    input_field = "image"

    image: Path | None = None
    """Image file or folder of images; default: scikit-image's bundled astronaut picture."""
    resize: int | None = 128
    """Longer side after area downsampling (None = full size; never upsamples)."""
    gray: bool = False
    """Convert to gray before fitting."""

    def check_task(self) -> None:
        if self.resize is not None and self.resize < 1:
            raise ConfigError(f"--resize must be >= 1 (or None for full size), got {self.resize}")


@dataclass
class CTTaskConfig(TaskConfig):
    """Sparse-view parallel-beam CT: fit density so that its Radon transform matches the projections."""

    task = "ct"
    output_root = Path("outputs/ct")
    input_field = "image"

    network: NetworkOptions = network_defaults(depth=4, width=256)
    """The coordinate network (default 4x256)."""
    image: Path | None = None
    """Gray image or DICOM slice (.dcm); default: the Shepp-Logan phantom."""
    size: int = 128
    """Image side in pixels (the papers use 256)."""
    angles: int = 100
    """Number of projection angles in [0, 180) degrees used for supervision."""
    pe_octaves: int | Literal["auto"] | None = None
    """PE octaves L: auto = log2(size) + 2 (the papers' 10 at 256^2, 9 at 128^2), a number sets L, None keeps
    --num-frequencies."""

    def check_task(self) -> None:
        if self.size < 8:
            raise ConfigError(f"--size must be >= 8 pixels, got {self.size}")
        if self.angles < 1:
            raise ConfigError(f"--angles must be >= 1, got {self.angles}")
        if isinstance(self.pe_octaves, int) and self.pe_octaves < 0:
            raise ConfigError(f"--pe-octaves must be >= 0 or auto, got {self.pe_octaves}")
        if self.pe_octaves is not None and self.network.num_frequencies != NetworkConfig.num_frequencies:
            raise ConfigError(
                f"--pe-octaves {self.pe_octaves} and --num-frequencies {self.network.num_frequencies} both set the "
                "PE octaves; give one of them"
            )

    def octaves(self) -> int:
        """The PE octaves the network gets: ``--pe-octaves`` resolved against ``--size``, else ``--num-frequencies``."""
        if self.pe_octaves is None:
            return self.network.num_frequencies
        return matched_octaves(self.size) if self.pe_octaves == "auto" else self.pe_octaves

    def fit_config(self) -> CTTaskConfig:
        """A copy whose network has :meth:`octaves` octaves (the recorded config keeps the options as given)."""
        return dataclasses.replace(self, network=dataclasses.replace(self.network, num_frequencies=self.octaves()))


@dataclass
class MRITaskConfig(TaskConfig):
    """3-D MRI: fit the volume so that its undersampled k-space matches the measurement."""

    task = "mri"
    output_root = Path("outputs/mri")
    input_field = "volume"

    network: NetworkOptions = network_defaults(depth=4, width=256)
    """The coordinate network (default 4x256)."""
    train: TrainOptions = train_defaults(steps=1000)
    """Optimisation (default 1000 steps)."""
    volume: Path | None = None
    """NIfTI volume (.nii/.nii.gz); default: a generated 3-D Shepp-Logan phantom."""
    size: int = 32
    """Longer side of the volume after resampling (phantom: its side)."""
    sampling: float = 0.25
    """Fraction of phase-encoding k-space lines sampled (variable density, full centre)."""

    def check_task(self) -> None:
        smallest = MIN_VOLUME_SIDE if self.volume is not None else 4  # the phantom needs 4
        if self.size < smallest:
            raise ConfigError(f"--size must be >= {smallest}, got {self.size}")
        if not 0.0 < self.sampling <= 1.0:
            raise ConfigError(f"--sampling must be in (0, 1], got {self.sampling}")


@dataclass
class ShapeTaskConfig(TaskConfig):
    """3-D occupancy of a mesh: BCE on grid labels, IoU on a held-out grid, marching-cubes export."""

    task = "shape"
    output_root = Path("outputs/shape")
    input_field = "mesh"

    network: NetworkOptions = network_defaults(depth=2, width=256)
    """The coordinate network (default 2x256)."""
    train: TrainOptions = train_defaults(steps=1000)
    """Optimisation (default 1000 steps)."""
    mesh: Path | None = None
    """Mesh file (.obj/.ply/.stl/...); default: a generated tilted torus."""
    grid: int = 64
    """Training grid resolution per axis (held-out grid: same size, shifted by half a voxel)."""
    batch_size: int = 16384
    """Points per training step, >= 1 (random grid points; a value >= grid^3 trains full batch)."""
    export_resolution: int = 128
    """Marching-cubes resolution of the exported surface per axis, >= 2."""

    def check_task(self) -> None:
        if self.grid < MIN_GRID:
            raise ConfigError(f"--grid must be >= {MIN_GRID}, got {self.grid}")
        if self.batch_size < 1:
            raise ConfigError(
                f"--batch-size must be >= 1 (points per step; >= grid^3 = {self.grid**3} trains full batch), "
                f"got {self.batch_size}"
            )
        if self.export_resolution < MIN_EXPORT_RESOLUTION:
            raise ConfigError(
                f"--export-resolution must be >= {MIN_EXPORT_RESOLUTION} (marching cubes needs a grid of at least "
                f"{MIN_EXPORT_RESOLUTION}^3 points), got {self.export_resolution}"
            )


TASKS: dict[str, type[TaskConfig]] = {
    "image": ImageTaskConfig,
    "ct": CTTaskConfig,
    "mri": MRITaskConfig,
    "shape": ShapeTaskConfig,
}
"""The tasks by name."""
TaskCommand = (
    Annotated[ImageTaskConfig, tyro.conf.subcommand("image")]
    | Annotated[CTTaskConfig, tyro.conf.subcommand("ct")]
    | Annotated[MRITaskConfig, tyro.conf.subcommand("mri")]
    | Annotated[ShapeTaskConfig, tyro.conf.subcommand("shape")]
)
"""``<task> <flags>``: the command line of the tasks (``norm-inr`` offers the same subcommands)."""
HEADLINE = (
    "psnr",
    "ssim",
    "iou",
    "iou_train_grid",
    "psnr_train_mode_final",
    "psnr_best_train_mode",
    "iou_best_train_mode",
    "seconds",
)
"""The summary entries :func:`print_summary` shows."""


def _finish(cfg: TaskConfig, out: Path, net: nn.Module, result: FitResult, extra: dict[str, Any]) -> dict[str, Any]:
    summary = summarize(cfg, net, result, extra, metric_name="iou" if cfg.task == "shape" else "psnr")
    summary["out"] = str(out)
    ylabel = "train-mode IoU" if cfg.task == "shape" else "train-mode PSNR [dB]"
    save_curves({cfg.network.method: (result.curve_steps, result.curve_metric)}, out / "curve.png", ylabel=ylabel)
    save_atomically(net.state_dict(), out / "model.pt")
    write_metrics(out, summary)  # last: a folder with metrics.json holds every file of the run
    return summary


def _image_files(path: Path) -> list[Path]:
    """The image itself, or the images of a folder (by suffix, sorted by name)."""
    if path.is_dir():
        files = list_images(path)
        if not files:
            raise ImageError(f"{path}: folder contains no images ({', '.join(IMAGE_SUFFIXES)})")
        return files
    return [path]


def image_output_names(files: list[Path]) -> dict[Path, str]:
    """A distinct output sub-folder name per image: the stem, or ``<stem>_<suffix>`` when stems collide.

    Collisions are found case-insensitively (``A.png`` and ``a.jpg`` would share a folder on macOS/Windows); a name
    still taken after that gets ``_2``, ``_3``, ...
    """
    stems: dict[str, int] = {}
    for f in files:
        stems[f.stem.casefold()] = stems.get(f.stem.casefold(), 0) + 1
    names: dict[Path, str] = {}
    taken: set[str] = set()
    for f in files:
        name = f.stem if stems[f.stem.casefold()] == 1 else f"{f.stem}_{f.suffix.lstrip('.')}"
        candidate, i = name, 2
        while candidate.casefold() in taken:
            candidate, i = f"{name}_{i}", i + 1
        taken.add(candidate.casefold())
        names[f] = candidate
    return names


IMAGE_MEAN_KEYS = ("psnr", "ssim", "psnr_train_mode_final", "psnr_best_train_mode", "bpp", "seconds")
"""The per-image values a folder's ``metrics.json`` averages."""


def run_image(cfg: ImageTaskConfig) -> dict[str, Any]:
    """Fit one image or a folder of images; returns the ``metrics.json`` content.

    PSNR values are capped at ``PSNR_CAP_DB`` (100 dB) per image, so an exact match counts as 100 dB, not inf; a
    folder's numbers are arithmetic means over its images of those per-image values (``means`` says so).
    """
    check_common(cfg)
    out = cfg.prepare_output()
    if cfg.image is None:
        return fit_image(cfg, None, out).summary
    files = _image_files(Path(cfg.image))
    if len(files) == 1:
        return fit_image(cfg, files[0], out).summary
    names = image_output_names(files)
    per_image = {f.name: fit_image(cfg, f, out / names[f]).summary for f in files}
    mean = {k: float(np.mean([r[k] for r in per_image.values()])) for k in IMAGE_MEAN_KEYS}
    net = cfg.network
    summary = {"task": "image", "method": net.method, "net": f"{net.depth}x{net.width}", "images": len(files)}
    summary.update(mean)
    summary.update(
        psnr_cap_db=PSNR_CAP_DB,
        psnr_capped=sum(r["psnr_capped"] for r in per_image.values()),
        params=next(iter(per_image.values()))["params"],
        per_image=per_image,
    )
    summary["metrics_mode"] = "mean over images of eval-mode metrics after recalibration"
    summary["means"] = (
        f"arithmetic mean over the images of the per-image values ({', '.join(IMAGE_MEAN_KEYS)}); PSNR values are "
        "capped at psnr_cap_db per image before averaging (psnr_capped counts the images at the cap)"
    )
    summary["out"] = str(out)
    write_metrics(out, summary)
    return summary


@dataclass
class ImageFit:
    """One fitted image: its ``metrics.json`` content and the pictures (H, W, C) in [0, 1]."""

    summary: dict[str, Any]
    target: np.ndarray
    prediction: np.ndarray


def fit_image(cfg: ImageTaskConfig, path: Path | None, out: Path) -> ImageFit:
    """Fit one image (``path`` None: the default picture) and write its results into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    img = default_image(cfg.resize) if path is None else load_image(path, resize=cfg.resize, gray=cfg.gray)
    signal = ImageSignal(img)
    label = f"{cfg.network.method} {path.name if path else 'astronaut'}"
    net, result = fit_signal(cfg, signal, 2, signal.out_dim, label=label)
    pred = signal.as_image(result.prediction).numpy()
    target = signal.image.numpy()
    save_panels({"target": target, "reconstruction": pred}, out / "reconstruction.png", ("reconstruction", "target"))
    save_spectra(target, pred, out / "spectrum.png")
    params = count_parameters(net)
    extra = {
        "image": str(path or "skimage.data.astronaut"),
        "size": list(img.shape),
        "bpp": params * 32 / (signal.height * signal.width),
        "bits_per_param": 32,
        "psnr_cap_db": PSNR_CAP_DB,  # the image signal's PSNR values are capped there (an exact match)
        "psnr_capped": int(result.metrics["psnr"] >= PSNR_CAP_DB),
    }
    summary = _finish(cfg, out, net, result, extra)
    return ImageFit(summary, target, pred)


def run_ct(cfg: CTTaskConfig) -> dict[str, Any]:
    """Sparse-view CT reconstruction; returns the ``metrics.json`` content."""
    check_common(cfg)
    notices: list[str] = []
    signal = CTSignal(load_ct_image(cfg.image, cfg.size, notes=notices), cfg.angles)
    notices += signal.notes
    out = cfg.prepare_output()
    for message in notices:
        notice(message)
    net, result = fit_signal(cfg.fit_config(), signal, 2, 1, label=f"{cfg.network.method} ct")
    pred = signal.as_image(result.prediction).numpy()
    target = signal.image.numpy()
    sino = signal.sinogram.numpy()
    save_panels(
        {"target": target, "reconstruction": pred, "sinogram (measured)": sino / sino.max()},
        out / "reconstruction.png",
        ("reconstruction", "target"),
    )
    save_spectra(target, pred, out / "spectrum.png")
    extra = {
        "image": str(cfg.image or "skimage.data.shepp_logan_phantom"),
        "size": signal.n,
        "angles": cfg.angles,
        "pe_octaves_used": cfg.octaves(),
        "nyquist_octaves": nyquist_octaves(signal.n),
        "projection_psnr": signal.projection_psnr(result.prediction),
        "notices": notices,
    }
    return _finish(cfg, out, net, result, extra)


def run_mri(cfg: MRITaskConfig) -> dict[str, Any]:
    """3-D MRI from undersampled k-space; returns the ``metrics.json`` content."""
    check_common(cfg)
    notices: list[str] = []
    volume = shepp_logan_3d(cfg.size) if cfg.volume is None else load_volume(cfg.volume, cfg.size, notes=notices)
    signal = MRISignal(volume, cfg.sampling, seed=cfg.train.seed)
    out = cfg.prepare_output()
    for message in notices:
        notice(message)
    net, result = fit_signal(cfg, signal, 3, 1, label=f"{cfg.network.method} mri")
    pred = signal.as_volume(result.prediction)
    zero_filled = signal.zero_filled()
    mid = volume.shape[0] // 2
    save_panels(
        {"target": volume[mid].numpy(), "reconstruction": pred[mid].numpy(), "zero-filled": zero_filled[mid].numpy()},
        out / "reconstruction.png",
        ("reconstruction", "target"),
    )
    extra = {
        "volume": str(cfg.volume or "shepp_logan_3d"),
        "shape": list(volume.shape),
        "sampling_fraction": signal.fraction,
        "zero_filled_psnr": psnr(zero_filled, volume),
        "notices": notices,
    }
    return _finish(cfg, out, net, result, extra)


def run_shape(cfg: ShapeTaskConfig) -> dict[str, Any]:
    """3-D occupancy fitting with IoU and mesh export; returns the ``metrics.json`` content."""
    check_common(cfg)
    vertices, faces = default_shape() if cfg.mesh is None else load_shape(cfg.mesh)
    signal = OccupancySignal(vertices, faces, cfg.grid, cfg.batch_size)
    out = cfg.prepare_output()
    net, result = fit_signal(cfg, signal, 3, 1, label=f"{cfg.network.method} shape")
    with torch.no_grad():  # the final model in eval mode, as the held-out metrics
        device = next(net.parameters()).device
        train_grid = signal.train_grid_metrics(predict(net, signal.coords.to(device), cfg.train.chunk).cpu())
    g = cfg.grid
    pred = (result.prediction.reshape(g, g, g) > 0).float().numpy()
    gt = signal.held_out.reshape(g, g, g).float().numpy()
    save_panels({"held-out labels (z mid)": gt[g // 2], "prediction": pred[g // 2]}, out / "slices.png")
    mesh_path, faces = signal.export_mesh(net, out / "surface.ply", cfg.export_resolution)
    notices = []
    if faces == 0:
        notices.append(f"{mesh_path}: the learned occupancy has no surface at probability 0.5; the mesh is empty")
        notice(notices[-1])
    extra = {
        **train_grid,
        "mesh": str(cfg.mesh or "torus"),
        "grid": g,
        "surface": str(mesh_path),
        "surface_faces": faces,
        "notices": notices,
    }
    return _finish(cfg, out, net, result, extra)


RUNNERS = {ImageTaskConfig: run_image, CTTaskConfig: run_ct, MRITaskConfig: run_mri, ShapeTaskConfig: run_shape}


def parse_task(args: Sequence[str], prog: str = "python -m norm_nerf.tasks", return_unknown_args: bool = False) -> Any:
    """The config of ``<task> <flags>`` (tyro; ``--help`` and bad flags exit as tyro does). With
    ``return_unknown_args``: ``(config, flags it does not know)``, so a caller can name them itself."""
    return tyro.cli(TaskCommand, args=list(args), prog=prog, return_unknown_args=return_unknown_args)  # type: ignore[call-overload]


def run_task(cfg: TaskConfig) -> dict[str, Any]:
    """Run the task ``cfg`` configures; returns its ``metrics.json`` content."""
    return RUNNERS[type(cfg)](cfg)


def print_summary(summary: dict[str, Any]) -> None:
    """The headline numbers of a task run and where its files are."""
    CONSOLE.print({k: summary[k] for k in HEADLINE if k in summary})
    out = summary.get("out", "the output folder")
    CONSOLE.print(f"[bold]metrics.json and pictures written to {out}[/bold]")


def main(args: Sequence[str] | None = None) -> dict[str, Any]:
    """``python -m norm_nerf.tasks <task> <flags>``: parse, run, print; returns the summary."""
    summary = run_task(parse_task(sys.argv[1:] if args is None else args))
    print_summary(summary)
    return summary
