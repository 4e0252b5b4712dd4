"""Issue 14: CT and MRI say what they do to an input (centre crop, min-max scaling, complex magnitude), on stderr
and in metrics.json; SSIM-sized minimum volume sides."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

from norm_nerf.tasks.ct import CTSignal, CTTaskConfig, load_ct_image, run_ct
from norm_nerf.tasks.mri import MRISignal, MRITaskConfig, VolumeError, load_volume, run_mri


def _gray_png(path, h: int, w: int):
    from PIL import Image

    Image.fromarray(np.random.default_rng(0).integers(0, 256, (h, w), dtype=np.uint8)).save(path)
    return path


def test_ct_non_square_image_is_cropped_with_a_notice(tmp_path, capsys) -> None:
    path = _gray_png(tmp_path / "wide.png", 20, 40)
    notes: list[str] = []
    img = load_ct_image(path, 16, notes=notes)
    assert img.shape == (16, 16)  # --size is the side of the (cropped) square
    assert any("non-square image 40x20 centre-cropped to 20x20" in n for n in notes)
    cfg = CTTaskConfig().replace(
        image=path, size=16, angles=4, depth=1, width=8, steps=2, out=tmp_path / "ct", progress=False
    )
    run_ct(cfg)
    assert "notice:" in capsys.readouterr().err
    saved = json.loads((tmp_path / "ct" / "metrics.json").read_text())
    assert saved["size"] == 16
    assert any("centre-cropped" in n for n in saved["notices"])
    with pytest.raises(ValueError, match=r"--size 32 is larger than the image \(20x20 after centre-cropping 40x20"):
        load_ct_image(path, 32)


def test_ct_signal_records_its_own_crop() -> None:
    signal = CTSignal(torch.rand(10, 12), num_angles=3)
    assert signal.n == 10 and signal.notes == ["non-square CT image 12x10 centre-cropped to 10x10"]
    assert CTSignal(torch.rand(10, 10), num_angles=3).notes == []


def test_ct_float_tiff_is_min_max_scaled_with_a_notice(tmp_path) -> None:
    import tifffile

    arr = np.linspace(0, 1000, 16 * 16, dtype=np.float32).reshape(16, 16)
    tifffile.imwrite(tmp_path / "hu.tif", arr)
    notes: list[str] = []
    img = load_ct_image(tmp_path / "hu.tif", 16, notes=notes)
    torch.testing.assert_close(img, torch.from_numpy(arr / 1000))  # not clipped to 1 (was 99.6 % ones)
    assert any("values in [0, 1000] min-max scaled to [0, 1]" in n for n in notes)


def test_mri_complex_nifti_uses_the_magnitude_with_a_notice(tmp_path, capsys) -> None:
    import nibabel as nib

    rng = np.random.default_rng(0)
    z = (rng.random((6, 7, 8)) + 1j * rng.random((6, 7, 8))).astype(np.complex64)
    path = tmp_path / "c.nii.gz"
    nib.save(nib.Nifti1Image(z, np.eye(4)), str(path))
    notes: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("error", np.exceptions.ComplexWarning)  # no silent real-part cast
        vol = load_volume(path, None, notes=notes)
    mag = np.abs(z).astype(np.float64)
    lo, hi = mag.min(), np.percentile(mag, 99.9)
    torch.testing.assert_close(vol, torch.from_numpy(np.clip((mag - lo) / (hi - lo), 0, 1)).float())
    assert notes and "magnitude" in notes[0] and str(path) in notes[0]
    cfg = MRITaskConfig().replace(volume=path, size=8, depth=1, width=8, steps=2, out=tmp_path / "mri", progress=False)
    run_mri(cfg)
    assert "magnitude" in capsys.readouterr().err
    saved = json.loads((tmp_path / "mri" / "metrics.json").read_text())
    assert any("magnitude" in n for n in saved["notices"])


def test_mri_volume_sides_must_fit_the_ssim_window(tmp_path) -> None:
    import nibabel as nib

    path = tmp_path / "thin.nii.gz"
    nib.save(nib.Nifti1Image(np.random.default_rng(0).random((32, 32, 4)).astype(np.float32), np.eye(4)), str(path))
    with pytest.raises(VolumeError, match=r"thin.nii.gz: --size 16 would make the volume \(16, 16, 2\)"):
        load_volume(path, 16)
    with pytest.raises(VolumeError, match="every side >= 3"):
        MRISignal(torch.rand(8, 8, 2))


def test_mri_anisotropic_volume_gets_a_finite_ssim() -> None:
    torch.manual_seed(0)
    vol = torch.rand(32, 16, 8)
    signal = MRISignal(vol, 0.5)
    metrics = signal.metrics((vol * 0.9).reshape(-1, 1))
    assert np.isfinite(metrics["ssim"]) and 0 < metrics["ssim"] < 1
