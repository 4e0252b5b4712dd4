"""``norm-dtu``: nerfstudio dataparser for scans in the NeuS/IDR layout (DTU as NeuS ships it, ``norm-make-scene dtu``).

Cameras: ``world_mat_i @ scale_mat_i`` is decomposed into ``K`` and a pose in the normalised frame, where the object
lies in the unit sphere; poses are converted from OpenCV to nerfstudio's OpenGL camera axes. IDR puts pixel centres
at integer coordinates, nerfstudio at ``j + 0.5``, so ``cx = K[0, 2] + 0.5`` (and ``cy`` alike). The scene box is
[-1, 1]^3. A camera that does not face the unit sphere's centre is refused (``neus_layout.camera_from_projection``), and
so are images of modes that nerfstudio's image loader misreads (``images.nerfstudio_image_size``).

Back to world coordinates: ``metadata["scale_mat"]`` (world = scale_mat @ normalised), also written into
``dataparser_transforms.json`` next to nerfstudio's own ``transform``/``scale``, which encode the same similarity
(normalised = scale * (transform @ world)) so nerfstudio's tools map poses back to world units.

Derived files (never written into the data folder): nerfstudio wants one-channel masks while NeuS masks are RGB, and
``downscale_factor`` > 1 needs smaller images. Both are written once under ``cache_dir``. Downscaling crops the
right/bottom remainder so that width and height divide by the factor, averages factor x factor pixel blocks (masks:
foreground where at least half the block is), and divides fx, fy, cx, cy (nerfstudio's pixel-edge convention) by the
factor, so every ray still passes through the same scene point.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from nerfstudio.cameras.cameras import Cameras, CameraType
from nerfstudio.data.dataparsers.base_dataparser import DataParser, DataParserConfig, DataparserOutputs
from nerfstudio.data.scene_box import SceneBox
from nerfstudio.plugins.registry_dataparser import DataParserSpecification

from norm_nerf.data import derived
from norm_nerf.data.images import nerfstudio_image_size
from norm_nerf.data.neus_layout import NeuSScan, opencv_to_opengl, similarity_parts, write_mask

DEFAULT_CACHE_ROOT = Path("outputs/cache/norm-dtu")


@dataclass
class NeuSDataparserOutputs(DataparserOutputs):
    """nerfstudio's outputs; ``save_dataparser_transform`` also writes ``scale_mat`` (normalised to world)."""

    def save_dataparser_transform(self, path: Path) -> None:
        """nerfstudio's ``transform`` and ``scale`` plus ``scale_mat``."""
        super().save_dataparser_transform(path)
        data = json.loads(Path(path).read_text())
        data["scale_mat"] = np.asarray(self.metadata["scale_mat"]).tolist()
        Path(path).write_text(json.dumps(data, indent=4))


@dataclass
class NormDTUDataParserConfig(DataParserConfig):
    """Scans in the NeuS/IDR layout (image/, mask/, cameras_sphere.npz), object in the unit sphere."""

    _target: type = field(default_factory=lambda: NormDTUDataParser)
    """Target class to instantiate."""
    data: Path = Path("data/dtu/scan65")
    """Scan folder (image/, mask/, cameras_sphere.npz)."""
    use_masks: bool = False
    """Pass the foreground masks (mask/) to nerfstudio as mask_filenames: only foreground pixels are sampled."""
    downscale_factor: int = 1
    """Integer image downscale (block average); intrinsics are scaled to match, copies go to cache_dir."""
    eval_mode: Literal["interval", "all"] = "interval"
    """'interval': every eval_interval-th view (0, n, 2n, ...) is held out for eval; 'all': all views in both."""
    eval_interval: int = 8
    """Hold-out interval for eval_mode 'interval'."""
    cache_dir: Path | None = None
    """Folder for derived files (one-channel masks, downscaled images); default outputs/cache/norm-dtu/<scan>-<hash>."""


def split_indices(n: int, split: str, mode: str, interval: int) -> list[int]:
    """View indices of a split: eval ('val', 'test', 'inference') gets every ``interval``-th view, train the rest."""
    if mode == "all":
        return list(range(n))
    if mode != "interval":
        raise ValueError(f"eval_mode must be 'interval' or 'all', got {mode!r}")
    if interval < 2:
        raise ValueError(f"eval_interval must be >= 2 (or use eval_mode all), got {interval}")
    held_out = set(range(0, n, interval))
    if split == "train":
        return [i for i in range(n) if i not in held_out]
    if split in ("val", "test", "inference"):
        return sorted(held_out)
    raise ValueError(f"unknown split {split!r} (train, val, test, inference)")


def default_cache_dir(data: Path) -> Path:
    """``outputs/cache/norm-dtu/<scan name>-<hash of its absolute path>``."""
    return derived.default_cache_dir(DEFAULT_CACHE_ROOT, data)


@dataclass
class NormDTUDataParser(DataParser):
    """Builds nerfstudio cameras, file lists and the scene box from a NeuS/IDR scan."""

    config: NormDTUDataParserConfig

    def _cache_files(self, paths: list[Path], kind: str, mask: bool) -> list[Path]:
        factor = self.config.downscale_factor
        root = Path(self.config.cache_dir or default_cache_dir(self.config.data)) / f"x{factor}" / kind
        pairs = [(p, root / f"{p.stem}.png") for p in paths]
        # NeuS masks are RGB: nerfstudio gets one channel of 0/255, by the layout's one mask rule (read_mask)
        make = (
            partial(write_mask, factor=factor) if mask else partial(derived.write_downscaled, factor=factor, kind="rgb")
        )
        return derived.cache_files(pairs, make, f"norm-dtu: writing {kind} x{factor}")

    def _generate_dataparser_outputs(self, split: str = "train", **kwargs) -> NeuSDataparserOutputs:
        cfg = self.config
        if cfg.downscale_factor < 1:
            raise ValueError(f"downscale_factor must be >= 1, got {cfg.downscale_factor}")
        scan = NeuSScan.load(cfg.data, masks=cfg.use_masks)
        idx = split_indices(len(scan.image_paths), split, cfg.eval_mode, cfg.eval_interval)
        if not idx:
            raise ValueError(f"{cfg.data}: split {split!r} is empty ({len(scan.image_paths)} views)")
        f = cfg.downscale_factor
        images = [scan.image_paths[i] for i in idx]
        for path in images:
            nerfstudio_image_size(path)  # refuses the image modes that nerfstudio's loader misreads
        if f > 1:
            images = self._cache_files(images, "image", mask=False)
        masks = None
        if scan.mask_paths is not None:
            masks = self._cache_files([scan.mask_paths[i] for i in idx], "mask", mask=True)
        K = torch.from_numpy(scan.intrinsics[idx]).float()
        sizes = torch.tensor([scan.sizes[i] for i in idx], dtype=torch.int64) // f
        c2w = torch.from_numpy(opencv_to_opengl(scan.c2w_opencv[idx])[:, :3, :4]).float()
        cameras = Cameras(
            camera_to_worlds=c2w,
            fx=K[:, 0, 0:1] / f,
            fy=K[:, 1, 1:2] / f,
            cx=(K[:, 0, 2:3] + 0.5) / f,
            cy=(K[:, 1, 2:3] + 0.5) / f,
            width=sizes[:, 0:1],
            height=sizes[:, 1:2],
            camera_type=CameraType.PERSPECTIVE,
        )
        transform, scale = torch.eye(4)[:3], 1.0
        parts = similarity_parts(scan.scale_mat)
        if parts is not None:  # normalised = (1 / s) R^T (world - c) = scale * (transform @ world)
            s, R, c = parts
            transform = torch.from_numpy(np.concatenate([R.T, (-R.T @ c)[:, None]], axis=1)).float()
            scale = 1.0 / s
        return NeuSDataparserOutputs(
            image_filenames=images,
            cameras=cameras,
            scene_box=SceneBox(aabb=torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])),
            mask_filenames=masks,
            metadata={"scale_mat": torch.from_numpy(scan.scale_mat), "view_indices": idx},
            dataparser_transform=transform,
            dataparser_scale=scale,
        )


norm_dtu = DataParserSpecification(
    config=NormDTUDataParserConfig(),
    description="NeuS/IDR layout (DTU scans, norm-make-scene dtu): cameras_sphere.npz, image/, mask/; unit sphere.",
)
