"""The ``norm-inr`` task commands: image, ct, mri, shape. Each fits one network and writes
``metrics.json`` (eval-mode metrics after recalibration first) and pictures into its output folder.

Changes made to an input (a CT image centre-cropped to a square or min-max scaled, a complex MRI volume replaced by
its magnitude) are printed as a ``notice:`` line on stderr and listed under ``notices`` in ``metrics.json``.
A folder of images writes one sub-folder per image, named by the file stem; stems shared by several files
(``a.png`` and ``a.jpg``) use the stem and the suffix instead (``a_png``, ``a_jpg``), so no result overwrites another.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from norm_nerf.tasks.common import TaskConfig, check_common, fit_signal, summarize, write_metrics
from norm_nerf.tasks.image import IMAGE_SUFFIXES, ImageError
from norm_nerf.tasks.trainer import ConfigError
from norm_nerf.utils.console import notice
from norm_nerf.utils.outputs import prepare_output_dir


@dataclass
class ImageTaskConfig(TaskConfig):
    """Fit an image (or every image of a folder, metrics averaged) with a coordinate network."""

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

    image: Path | None = None
    """Gray image or DICOM slice (.dcm); default: the Shepp-Logan phantom."""
    size: int = 128
    """Image side in pixels (the papers use 256)."""
    angles: int = 100
    """Number of projection angles in [0, 180) degrees used for supervision."""
    depth: int = 4
    """Hidden layers of the network."""
    width: int = 256
    """Hidden features per layer."""

    def check_task(self) -> None:
        if self.size < 8:
            raise ConfigError(f"--size must be >= 8 pixels, got {self.size}")
        if self.angles < 1:
            raise ConfigError(f"--angles must be >= 1, got {self.angles}")


@dataclass
class MRITaskConfig(TaskConfig):
    """3-D MRI: fit the volume so that its undersampled k-space matches the measurement."""

    volume: Path | None = None
    """NIfTI volume (.nii/.nii.gz); default: a generated 3-D Shepp-Logan phantom."""
    size: int = 32
    """Longer side of the volume after resampling (phantom: its side)."""
    sampling: float = 0.25
    """Fraction of phase-encoding k-space lines sampled (variable density, full centre)."""
    depth: int = 4
    """Hidden layers of the network."""
    width: int = 256
    """Hidden features per layer."""
    steps: int = 1000
    """Training steps (full batch)."""

    def check_task(self) -> None:
        from norm_nerf.tasks.mri import MIN_VOLUME_SIDE

        smallest = MIN_VOLUME_SIDE if self.volume is not None else 4  # the phantom needs 4
        if self.size < smallest:
            raise ConfigError(f"--size must be >= {smallest}, got {self.size}")
        if not 0.0 < self.sampling <= 1.0:
            raise ConfigError(f"--sampling must be in (0, 1], got {self.sampling}")


@dataclass
class ShapeTaskConfig(TaskConfig):
    """3-D occupancy of a mesh: BCE on grid labels, IoU on a held-out grid, marching-cubes export."""

    mesh: Path | None = None
    """Mesh file (.obj/.ply/.stl/...); default: a generated tilted torus."""
    grid: int = 64
    """Training grid resolution per axis (held-out grid: same size, shifted by half a voxel)."""
    batch_size: int = 16384
    """Points per training step, >= 1 (random grid points; a value >= grid^3 trains full batch)."""
    export_resolution: int = 128
    """Marching-cubes resolution of the exported surface per axis, >= 2."""
    depth: int = 2
    """Hidden layers of the network."""
    width: int = 256
    """Hidden features per layer."""
    steps: int = 1000
    """Training steps."""

    def check_task(self) -> None:
        from norm_nerf.tasks.shape import MIN_EXPORT_RESOLUTION, MIN_GRID

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


def _finish(cfg: TaskConfig, task: str, out: Path, net: Any, result: Any, extra: dict[str, Any]) -> dict[str, Any]:
    from norm_nerf.eval.plots import save_curves

    summary = summarize(cfg, task, net, result, extra, metric_name="iou" if task == "shape" else "psnr")
    summary["out"] = str(out)
    write_metrics(out, summary)
    ylabel = "train-mode IoU" if task == "shape" else "train-mode PSNR [dB]"
    save_curves({cfg.method: (result.curve_steps, result.curve_metric)}, out / "curve.png", ylabel=ylabel)
    torch.save(net.state_dict(), out / "model.pt")
    return summary


def _image_files(path: Path) -> list[Path]:
    """The image itself, or the images of a folder (by suffix, sorted by name)."""
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
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


def run_image(cfg: ImageTaskConfig) -> dict[str, Any]:
    """Fit one image or a folder of images; returns the ``metrics.json`` content."""
    check_common(cfg)
    out = prepare_output_dir(cfg.out, Path("outputs/image"), cfg.overwrite)
    if cfg.image is None:
        return _fit_one_image(cfg, None, out)
    files = _image_files(Path(cfg.image))
    if len(files) == 1:
        return _fit_one_image(cfg, files[0], out)
    names = image_output_names(files)
    per_image = {f.name: _fit_one_image(cfg, f, out / names[f]) for f in files}
    keys = ("psnr", "ssim", "psnr_train_mode_final", "psnr_best_train_mode", "bpp", "seconds")
    mean = {k: float(np.mean([r[k] for r in per_image.values()])) for k in keys}
    summary = {"task": "image", "method": cfg.method, "net": f"{cfg.depth}x{cfg.width}", "images": len(files)}
    summary.update(mean)
    summary.update(params=next(iter(per_image.values()))["params"], per_image=per_image)
    summary["metrics_mode"] = "mean over images of eval-mode metrics after recalibration"
    summary["out"] = str(out)
    write_metrics(out, summary)
    return summary


def _fit_one_image(cfg: ImageTaskConfig, path: Path | None, out: Path) -> dict[str, Any]:
    from norm_nerf.core import count_parameters
    from norm_nerf.eval.plots import save_panels, save_spectra
    from norm_nerf.tasks.image import ImageSignal, default_image, load_image

    out.mkdir(parents=True, exist_ok=True)
    img = default_image(cfg.resize) if path is None else load_image(path, resize=cfg.resize, gray=cfg.gray)
    signal = ImageSignal(img)
    net, result = fit_signal(cfg, signal, 2, signal.out_dim, label=f"{cfg.method} {path.name if path else 'astronaut'}")
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
    }
    return _finish(cfg, "image", out, net, result, extra)


def run_ct(cfg: CTTaskConfig) -> dict[str, Any]:
    """Sparse-view CT reconstruction; returns the ``metrics.json`` content."""
    from norm_nerf.eval.plots import save_panels, save_spectra
    from norm_nerf.tasks.ct import CTSignal, load_ct_image

    check_common(cfg)
    notices: list[str] = []
    signal = CTSignal(load_ct_image(cfg.image, cfg.size, notes=notices), cfg.angles)
    notices += signal.notes
    out = prepare_output_dir(cfg.out, Path("outputs/ct"), cfg.overwrite)
    for message in notices:
        notice(message)
    net, result = fit_signal(cfg, signal, 2, 1, label=f"{cfg.method} ct")
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
        "projection_psnr": signal.projection_psnr(result.prediction),
        "notices": notices,
    }
    return _finish(cfg, "ct", out, net, result, extra)


def run_mri(cfg: MRITaskConfig) -> dict[str, Any]:
    """3-D MRI from undersampled k-space; returns the ``metrics.json`` content."""
    from norm_nerf.eval.metrics import psnr
    from norm_nerf.eval.plots import save_panels
    from norm_nerf.tasks.mri import MRISignal, load_volume, shepp_logan_3d

    check_common(cfg)
    notices: list[str] = []
    volume = shepp_logan_3d(cfg.size) if cfg.volume is None else load_volume(cfg.volume, cfg.size, notes=notices)
    signal = MRISignal(volume, cfg.sampling, seed=cfg.seed)
    out = prepare_output_dir(cfg.out, Path("outputs/mri"), cfg.overwrite)
    for message in notices:
        notice(message)
    net, result = fit_signal(cfg, signal, 3, 1, label=f"{cfg.method} mri")
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
    return _finish(cfg, "mri", out, net, result, extra)


def run_shape(cfg: ShapeTaskConfig) -> dict[str, Any]:
    """3-D occupancy fitting with IoU and mesh export; returns the ``metrics.json`` content."""
    from norm_nerf.eval.plots import save_panels
    from norm_nerf.tasks.shape import OccupancySignal, default_shape, load_mesh

    check_common(cfg)
    vertices, faces = default_shape() if cfg.mesh is None else load_mesh(cfg.mesh)
    signal = OccupancySignal(vertices, faces, cfg.grid, cfg.batch_size)
    out = prepare_output_dir(cfg.out, Path("outputs/shape"), cfg.overwrite)
    net, result = fit_signal(cfg, signal, 3, 1, label=f"{cfg.method} shape")
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
        "mesh": str(cfg.mesh or "torus"),
        "grid": g,
        "surface": str(mesh_path),
        "surface_faces": faces,
        "notices": notices,
    }
    return _finish(cfg, "shape", out, net, result, extra)
