"""CT (Radon vs skimage) and MRI (exact FFT forward model, NIfTI checks), end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from norm_nerf.tasks.ct import CTSignal, CTTaskConfig, angles_deg, circle_mask, radon, run_ct
from norm_nerf.tasks.mri import (
    MRISignal,
    MRITaskConfig,
    VolumeError,
    load_volume,
    run_mri,
    sampling_mask,
    shepp_logan_3d,
)


def test_radon_matches_skimage() -> None:
    from skimage.data import shepp_logan_phantom
    from skimage.transform import radon as sk_radon
    from skimage.transform import resize

    img = resize(shepp_logan_phantom(), (48, 48), anti_aliasing=True) * circle_mask(48).numpy()
    theta = angles_deg(17)
    ours = radon(torch.from_numpy(img), theta).numpy()
    ref = sk_radon(img, theta=theta.numpy(), circle=True)
    np.testing.assert_allclose(ours, ref, atol=1e-9)


def test_ct_loss_zero_at_truth_and_gradients_flow() -> None:
    sig = CTSignal(torch.rand(16, 16), num_angles=8)
    truth = sig.image.reshape(-1, 1)
    assert sig.loss(truth).item() < 1e-10
    pred = torch.zeros_like(truth, requires_grad=True)
    sig.loss(pred).backward()
    assert pred.grad.abs().sum() > 0


def test_mri_forward_model_is_exact_fft() -> None:
    vol = shepp_logan_3d(8)
    sig = MRISignal(vol, fraction=0.5)
    k = torch.fft.fftn(vol, norm="ortho")
    torch.testing.assert_close(sig.kspace, k * sig.mask)
    assert sig.loss(vol.reshape(-1, 1)).item() < 1e-10
    assert 0.45 < sig.fraction < 0.55


def test_sampling_mask_properties() -> None:
    m = sampling_mask((4, 32, 32), 0.3, seed=1)
    assert m.shape == (4, 32, 32) and torch.equal(m[0], m[3])  # full along the readout axis
    assert m[0, 0, 0]  # k-space centre always sampled
    assert abs(m.float().mean().item() - 0.3) < 0.01
    with pytest.raises(ValueError, match="--sampling"):
        sampling_mask((4, 8, 8), 0.0)


def test_nifti_checks(tmp_path) -> None:
    import nibabel as nib

    arr = np.random.default_rng(0).random((6, 7, 8)).astype(np.float32)
    good = tmp_path / "v.nii.gz"
    nib.save(nib.Nifti1Image(arr, np.eye(4)), str(good))
    vol = load_volume(good, None)
    assert vol.shape == (6, 7, 8) and vol.min() >= 0 and vol.max() <= 1
    arr[1, 2, 3] = np.nan
    bad = tmp_path / "nan.nii.gz"
    nib.save(nib.Nifti1Image(arr, np.eye(4)), str(bad))
    with pytest.raises(VolumeError, match="nan.nii.gz: volume contains 1 NaN"):
        load_volume(bad, None)
    junk = tmp_path / "junk.nii.gz"
    junk.write_bytes(b"nope")
    with pytest.raises(VolumeError, match="junk.nii.gz: not a readable NIfTI"):
        load_volume(junk, None)


def test_run_ct_and_mri_end_to_end(tmp_path) -> None:
    ct = CTTaskConfig().replace(size=16, angles=6, method="pe+cn", depth=2, width=16, steps=4, out=tmp_path / "ct")
    ct.train.progress = False
    s = run_ct(ct)
    assert {"psnr", "ssim", "projection_psnr", "angles"} <= set(s)
    assert (tmp_path / "ct" / "reconstruction.png").is_file()
    mri = MRITaskConfig().replace(size=8, method="relu+bn", depth=2, width=16, steps=4, out=tmp_path / "mri")
    mri.train.progress = False
    s = run_mri(mri)
    saved = json.loads((tmp_path / "mri" / "metrics.json").read_text())
    assert saved["psnr"] == s["psnr"] and "zero_filled_psnr" in saved


def test_pe_octaves_auto_keeps_the_papers_relation_to_the_grid(tmp_path) -> None:
    from norm_nerf.tasks.ct import matched_octaves, nyquist_octaves
    from norm_nerf.tasks.run import parse_task

    assert [matched_octaves(n) for n in (256, 128, 64)] == [10, 9, 8]  # the papers' 10 at 256^2
    assert [nyquist_octaves(n) for n in (256, 128, 64, 100)] == [8, 7, 6, 6]  # 2^k <= n/2 for k < L
    assert parse_task(["ct", "--size", "128", "--pe-octaves", "auto"]).octaves() == 9
    assert parse_task(["ct", "--pe-octaves", "5"]).octaves() == 5
    assert parse_task(["ct", "--num-frequencies", "6"]).octaves() == 6  # the explicit number stays
    with pytest.raises(ValueError, match="give one of them"):
        parse_task(["ct", "--pe-octaves", "auto", "--num-frequencies", "6"]).check_task()
    cfg = CTTaskConfig().replace(
        size=16, angles=4, depth=1, width=8, steps=2, method="pe", out=tmp_path / "ct", progress=False
    )
    cfg.pe_octaves = "auto"
    saved = run_ct(cfg)
    assert saved["pe_octaves_used"] == 6 and saved["nyquist_octaves"] == 4
    assert saved["config"]["pe_octaves"] == "auto" and saved["config"]["network"]["num_frequencies"] == 10
    assert saved["params"] == 8 * 2 * (1 + 2 * 6) + 8 + 8 + 1  # the network got 6 octaves
