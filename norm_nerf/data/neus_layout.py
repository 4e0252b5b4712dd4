"""Read a scan in the NeuS/IDR layout: cameras in the unit-sphere frame, image and mask files, checked.

Layout::

    image/000000.png ...     RGB images (any of data.images.IMAGE_SUFFIXES), the i-th in sorted order belongs to
                             world_mat_i
    mask/000.png ...         optional foreground masks, as many as images, paired in sorted order
    cameras_sphere.npz       world_mat_i = K [R | t] (OpenCV axes, pixel centres at integer u, v) and scale_mat_i
                             (world = scale_mat @ normalised; NeuS uses one scale_mat for all views)

``P_i = world_mat_i @ scale_mat_i`` projects normalised (unit-sphere) points; :func:`decompose_projection` splits it
into ``K`` and an OpenCV camera-to-normalised-world pose, as IDR's ``load_K_Rt_from_P`` does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from jaxtyping import Bool, Float

from norm_nerf.data import derived
from norm_nerf.data.images import IMAGE_SUFFIXES, list_images

CAMERA_FILE = "cameras_sphere.npz"


def decompose_projection(
    P: Float[np.ndarray, "3 4"],
) -> tuple[Float[np.ndarray, "3 3"], Float[np.ndarray, "4 4"]]:
    """Intrinsics ``K`` (``K[2, 2] = 1``, positive focal lengths) and the OpenCV camera-to-world pose of ``P``.

    RQ decomposition of the left 3 x 3 block ``M = K R``. RQ fixes ``K`` and ``R`` only up to the signs of ``K``'s
    columns and the matching rows of ``R``: these are flipped so that ``K`` has a positive diagonal. If ``R`` then has
    determinant -1, ``P`` was given up to a negative factor; ``P`` and ``-P`` project every point identically (the
    same camera), so ``R`` is negated. The overall sign and scale of ``P`` thus do not matter, and an export that puts
    a negative focal length in ``K`` together with a flipped row of ``R`` (the same product) reads as the camera it is.

    The pose looks along its +z axis. Whether the scene is in front is not decided here: a matrix that mirrors the
    image (one image axis flipped, which no pinhole camera does) comes out as a camera facing away from what it
    projects; :func:`camera_from_projection` refuses those.
    """
    from scipy.linalg import rq

    P = np.asarray(P, dtype=np.float64)[:3, :4]
    M = P[:, :3]
    if not np.isfinite(P).all() or abs(np.linalg.det(M)) <= 1e-12 * np.abs(M).max() ** 3:
        raise ValueError("projection matrix is singular or not finite")
    K, R = rq(M)
    D = np.diag(np.sign(np.diag(K)))
    K, R = K @ D, D @ R  # positive diagonal of K; D is its own inverse
    if np.linalg.det(R) < 0:  # P was given up to a negative factor
        R = -R
    c2w = np.eye(4)
    c2w[:3, :3] = R.T
    c2w[:3, 3] = -np.linalg.solve(M, P[:, 3])  # camera centre: the null space of P
    return K / K[2, 2], c2w


def camera_from_projection(
    P: Float[np.ndarray, "3 4"], where: str
) -> tuple[Float[np.ndarray, "3 3"], Float[np.ndarray, "4 4"]]:
    """:func:`decompose_projection` of a camera that must look at the unit sphere's centre (the origin).

    ValueError, prefixed with ``where``, when the matrix is singular or the origin lies behind the camera: a camera
    facing away from the object, or a matrix that mirrors the image. Either way no pinhole camera with positive focal
    lengths sees the object through ``P``, and training on it would only sample empty space.
    """
    try:
        K, c2w = decompose_projection(P)
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from None
    depth = float(c2w[:3, 2] @ -c2w[:3, 3])  # the origin along the viewing axis (+z, OpenCV)
    if depth <= 0:
        raise ValueError(
            f"{where}: the unit sphere's centre is behind the camera (depth {depth:.3g}): the camera faces away from "
            "the object, or the matrix mirrors the image (a negative focal length without the matching flip of R)"
        )
    return K, c2w


def opencv_to_opengl(c2w: Float[np.ndarray, "*batch 4 4"]) -> Float[np.ndarray, "*batch 4 4"]:
    """Camera-to-world from OpenCV axes (x right, y down, z forward) to OpenGL/nerfstudio (x right, y up, z back)."""
    out = np.array(c2w, dtype=np.float64, copy=True)
    out[..., :3, 1:3] *= -1.0
    return out


def similarity_parts(scale_mat: Float[np.ndarray, "4 4"]) -> tuple[float, np.ndarray, np.ndarray] | None:
    """``(s, R, c)`` with ``scale_mat = [[s R, c], [0, 1]]`` (R a rotation, s > 0), or None for other matrices."""
    A, c = scale_mat[:3, :3], scale_mat[:3, 3]
    det = np.linalg.det(A)
    if det <= 0 or not np.allclose(scale_mat[3], [0.0, 0.0, 0.0, 1.0]):
        return None
    s = float(np.cbrt(det))
    R = A / s
    return (s, R, c.copy()) if np.allclose(R @ R.T, np.eye(3), atol=1e-6) else None


def normalized_to_world(points: Float[np.ndarray, "n 3"], scale_mat: Float[np.ndarray, "4 4"]) -> np.ndarray:
    """Map unit-sphere (normalised) points, e.g. an exported mesh's vertices, back to world coordinates."""
    return np.asarray(points, dtype=np.float64) @ scale_mat[:3, :3].T + scale_mat[:3, 3]


def _image_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image file; ValueError naming the file when it cannot be read."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            size = img.size
            img.verify()  # checks the whole file (PNG CRCs), without keeping the pixels
    except (OSError, UnidentifiedImageError, SyntaxError) as err:
        raise ValueError(f"{path}: cannot read image ({err})") from err
    return size


def _list_images(folder: Path, allow_empty: bool = False) -> list[Path]:
    """The image files of ``folder`` in sorted order; FileNotFoundError when it is missing (or, unless
    ``allow_empty``, has none)."""
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: folder not found")
    files = list_images(folder)
    if not files and not allow_empty:
        raise FileNotFoundError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)})")
    return files


def _load_matrices(cam_path: Path, views: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """``world_mat_i`` and ``scale_mat_i`` for every view (``views[i]`` names view i in errors), checked."""
    try:
        cams = dict(np.load(cam_path))
    except Exception as err:  # zip/pickle/format errors of all kinds
        raise ValueError(f"{cam_path}: cannot read camera file ({err})") from err
    if not views:  # the views are the cameras: world_mat_0 ... world_mat_{n-1}
        views = [f"view {i}" for i in range(sum(re.fullmatch(r"world_mat_\d+", k) is not None for k in cams))]
        if not views:
            raise ValueError(f"{cam_path}: no world_mat_<i> entries")
    mats: dict[str, list[np.ndarray]] = {"world_mat": [], "scale_mat": []}
    for i, view in enumerate(views):
        for name, out in mats.items():
            key = f"{name}_{i}"
            if key not in cams:
                raise ValueError(f"{cam_path}: no {key} for {view}")
            mat = np.asarray(cams[key], dtype=np.float64)
            if mat.shape not in ((4, 4), (3, 4)) or not np.isfinite(mat).all():
                raise ValueError(f"{cam_path}: {key} must be a finite 3 x 4 or 4 x 4 matrix, got shape {mat.shape}")
            out.append(np.vstack([mat[:3], [0.0, 0.0, 0.0, 1.0]]))
    return np.stack(mats["world_mat"]), np.stack(mats["scale_mat"])


MASK_THRESHOLD = 127
"""A mask pixel is foreground when its gray value (0-255; RGB masks are converted to luminance) exceeds this.

NeuS masks are RGB PNGs with 0/255 in all three channels, where every rule agrees. Antialiased edges (values in
between) count as foreground when the pixel is at least half covered: the rule of NeuS's training (``mask > 0.5``),
of our scene writer (coverage >= 0.5) and of the downscaled masks (a majority of the block). Only the DTU culling
might prefer any non-zero pixel, and it dilates the masks by 24 px (at 1600 px width), so half a pixel at an edge does
not change which vertices it keeps."""


def read_mask(path: Path) -> Bool[np.ndarray, "h w"]:
    """The foreground of a mask file (:data:`MASK_THRESHOLD`); ValueError naming the file when it cannot be read."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            gray = np.asarray(img.convert("L"))
    except (OSError, UnidentifiedImageError) as err:
        raise ValueError(f"{path}: cannot read mask ({err})") from err
    return gray > MASK_THRESHOLD


def write_mask(src: Path, dst: Path, factor: int = 1) -> Path:
    """``dst``: the mask ``src`` as one channel of 0/255 (nerfstudio's mask format), downscaled by ``factor`` (a
    pixel is foreground where most of its block is; the right/bottom remainder is cropped)."""
    from PIL import Image

    foreground = read_mask(src)
    if factor > 1:
        foreground = derived.block_average(foreground.astype(np.float64), factor) >= 0.5
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".tmp.png")
    Image.fromarray(foreground.astype(np.uint8) * 255).save(tmp)
    tmp.replace(dst)
    return dst


@dataclass(frozen=True)
class NeuSScan:
    """A checked NeuS/IDR scan: files, per-view intrinsics and poses in the normalised frame, and ``scale_mat``.

    The one reader of the layout: the ``norm-dtu`` dataparser (images, optionally masks) and the DTU evaluation
    (cameras and masks) both load scans with :meth:`load`, and every mask is read by :func:`read_mask`.
    """

    root: Path
    """Scan folder."""
    image_paths: list[Path] | None
    """Images in view order (None when not loaded)."""
    mask_paths: list[Path] | None
    """Foreground masks in view order (None when not loaded)."""
    sizes: list[tuple[int, int]] | None
    """(width, height) of every view: of its image, else of its mask (None when neither was loaded)."""
    intrinsics: Float[np.ndarray, "n 3 3"]
    """``K`` of every view, pixel centres at integer coordinates (IDR convention)."""
    c2w_opencv: Float[np.ndarray, "n 4 4"]
    """Camera-to-normalised-world poses, OpenCV camera axes."""
    scale_mat: Float[np.ndarray, "4 4"]
    """Normalised (unit sphere) to world coordinates, shared by all views."""
    world_mats: Float[np.ndarray, "n 4 4"]
    """The raw ``world_mat_i`` (world to pixels)."""

    @staticmethod
    def load(root: Path | str, masks: bool = False, images: bool = True) -> NeuSScan:
        """Read and check ``cameras_sphere.npz``, ``image/`` (with ``images``) and ``mask/`` (with ``masks``).

        The i-th image (and mask) in sorted order is view i, with ``world_mat_i`` and ``scale_mat_i``; without
        ``images`` the views are ``world_mat_0 ... world_mat_{n-1}``. One ``scale_mat`` for all views; masks as many
        as views, each of its image's size; every camera must face the unit sphere's centre
        (:func:`camera_from_projection`); every file error names the file.
        """
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"{root}: DTU/NeuS scan folder not found")
        cam_path = root / CAMERA_FILE
        if not cam_path.is_file():
            raise FileNotFoundError(f"{cam_path}: camera file not found")
        image_paths = _list_images(root / "image") if images else None
        views = [f"image {p}" for p in image_paths] if image_paths is not None else []
        world_mats, scale_mats = _load_matrices(cam_path, views)
        n = len(world_mats)
        if not np.allclose(scale_mats, scale_mats[0], rtol=1e-6, atol=1e-9):
            bad = int(np.argmax(np.abs(scale_mats - scale_mats[0]).reshape(n, -1).max(1)))
            raise ValueError(f"{cam_path}: scale_mat_{bad} differs from scale_mat_0 (one frame is expected)")
        sizes = [_image_size(p) for p in image_paths] if image_paths is not None else None
        mask_paths = None
        if masks:
            mask_dir = root / "mask"
            mask_paths = _list_images(mask_dir, allow_empty=True)  # a count mismatch says more than "no images"
            if len(mask_paths) != n:
                views_of = f"{n} images in {root / 'image'}" if images else f"{n} cameras in {cam_path}"
                raise ValueError(f"{mask_dir}: {len(mask_paths)} {'masks' if images else 'mask PNGs'} for {views_of}")
            mask_sizes = [_image_size(p) for p in mask_paths]
            for i, (mask, size) in enumerate(zip(mask_paths, mask_sizes)):
                if sizes is not None and size != sizes[i]:
                    raise ValueError(f"{mask}: mask size {size} differs from {image_paths[i]} {sizes[i]}")
            sizes = sizes or mask_sizes
        Ks, poses = [], []
        for i, (world_mat, scale_mat) in enumerate(zip(world_mats, scale_mats)):
            where = f"{cam_path}: camera {i} (world_mat_{i}{f', {views[i]}' if views else ''})"
            K, c2w = camera_from_projection((world_mat @ scale_mat)[:3], where)
            Ks.append(K)
            poses.append(c2w)
        return NeuSScan(root, image_paths, mask_paths, sizes, np.stack(Ks), np.stack(poses), scale_mats[0], world_mats)

    def read_masks(self) -> list[Bool[np.ndarray, "h w"]]:
        """The foreground of every view's mask (:func:`read_mask`); needs a scan loaded with ``masks``."""
        if self.mask_paths is None:
            raise ValueError(f"{self.root}: the scan was loaded without masks (NeuSScan.load(..., masks=True))")
        return [read_mask(p) for p in self.mask_paths]
