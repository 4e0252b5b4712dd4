"""The Blender evaluation's scoring: NaN/inf refused, file names matched, the table's missing values."""

from __future__ import annotations

import numpy as np
import pytest

from norm_nerf.eval.blender_eval import NonFiniteImageError, evaluate, markdown_table, pair_images, score_image
from tests.eval.image_pairs import S, offset_case


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_predictions_are_refused_not_scored(tmp_path, bad) -> None:
    gt = np.full((S, S, 3), 0.5)
    pred = gt.copy()
    pred[3, 4, 1] = bad
    items = [("good", gt.copy(), gt), ("r_7", pred, gt)]
    with pytest.raises(NonFiniteImageError, match=r"r_7: the prediction has 1 of 4800 non-finite values"):
        evaluate(iter(items), tmp_path, {}, total=2, panels=False)
    assert not (tmp_path / "metrics.json").exists()
    with pytest.raises(NonFiniteImageError, match=r"x: the ground truth has 1 of"):
        score_image("x", gt, pred, None)


def test_mismatched_names(tmp_path) -> None:
    pred, gt, _ = offset_case(tmp_path)
    (pred / "b.png").rename(pred / "c.png")
    with pytest.raises(ValueError, match=r"only in predictions \['c'\], only in ground truth \['b'\]"):
        pair_images(pred, gt)


def test_table_formats_missing_values() -> None:
    summary = {"images": [{"name": "x", "psnr": None, "ssim": 1.0, "lpips": None}],
               "mean": {"psnr": None, "ssim": 1.0, "lpips": None}, "lpips_missing_reason": "why"}  # fmt: skip
    table = markdown_table(summary)
    assert "| x | n/a | 1.0000 | n/a |" in table and "LPIPS missing: why" in table
