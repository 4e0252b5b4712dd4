"""Band errors, the training loop, and smoke tests of the ntk/freq runners and the stand-alone CLI."""

from __future__ import annotations

import json
import math
import sys

import pytest
import torch

from norm_nerf.analysis.freq import (
    SINE_FREQUENCIES,
    band_edges,
    band_relative_error,
    multi_sine,
    train_full_batch,
    uniform_grid,
)
from norm_nerf.analysis.run import FreqConfig, NtkConfig, main, run_freq, run_ntk
from norm_nerf.core import build_network


@pytest.mark.parametrize("shape", [(64, 1), (16, 12, 3)])
def test_band_error_is_zero_for_perfect_fit_and_one_for_zero_prediction(shape: tuple[int, ...]) -> None:
    target = torch.randn(shape)
    assert torch.equal(band_relative_error(target.clone(), target, 4), torch.zeros(4, dtype=torch.float64))
    ones = band_relative_error(torch.zeros(shape), target, 4)
    assert torch.allclose(ones, torch.ones(4, dtype=torch.float64), atol=1e-12)


def test_default_bands_hold_one_sine_each_and_localise_errors() -> None:
    x = uniform_grid(256)
    target = multi_sine(x)
    assert band_edges(target, 5).tolist() == [0.0, 9.0, 18.0, 27.0, 36.0, 45.0]
    sines = torch.sin(math.pi * (x + 1) * torch.tensor(SINE_FREQUENCIES, dtype=torch.float32))
    peak = sines.sum(-1, keepdim=True).abs().max()
    assert torch.allclose(target, sines.sum(-1, keepdim=True) / peak)
    err = band_relative_error(target + 0.5 * sines[:, 3:4] / peak, target, 5)  # half of the 35-cycle sine
    assert torch.allclose(err, torch.tensor([0.0, 0.0, 0.0, 0.5, 0.0], dtype=torch.float64), atol=1e-5)


def test_band_without_target_energy_is_nan_and_bad_input_is_rejected() -> None:
    x = uniform_grid(64)
    target = torch.sin(math.pi * 2 * (x + 1))
    err = band_relative_error(torch.zeros_like(target), target, 2, max_freq=20)
    assert err[0] == pytest.approx(1.0) and math.isnan(err[1])
    with pytest.raises(ValueError, match="shapes differ"):
        band_relative_error(target[:10], target, 2)
    with pytest.raises(ValueError, match="num_bands"):
        band_relative_error(target, target, 0)


def test_train_full_batch_calls_back_with_every_state() -> None:
    x = uniform_grid(32)
    y = multi_sine(x, (1,))
    net = build_network("relu+bn", 1, 1, depth=2, width=16, seed=0)
    seen: list[tuple[int, float]] = []

    def callback(step: int, pred: torch.Tensor, loss: float) -> None:
        assert not pred.requires_grad and pred.shape == y.shape
        assert loss == pytest.approx(float((pred - y).square().mean()), rel=1e-5)
        seen.append((step, loss))

    train_full_batch(net, x, y, steps=20, lr=1e-2, callback=callback)
    assert [s for s, _ in seen] == list(range(21))
    assert seen[-1][1] < 0.5 * seen[0][1]
    with pytest.raises(ValueError, match="steps"):
        train_full_batch(net, x, y, steps=0, lr=1e-2, callback=callback)


def test_run_ntk_smoke(tmp_path) -> None:
    cfg = NtkConfig(
        methods=("relu", "relu+cn"), depth=2, width=8, points=96, every=4, steps=8, out=tmp_path, progress=False
    )
    result = run_ntk(cfg)
    saved = json.loads((tmp_path / "ntk.json").read_text())
    assert (tmp_path / "ntk_eigenvalues.png").stat().st_size > 0
    assert "train-mode batch coupling" in saved["batch_coupling"]
    assert set(saved["methods"]) == {"relu", "relu+cn"} and saved["points"] == 96
    record = saved["methods"]["relu+cn"]
    expected = {"mean", "variance", "max", "median_over_max", "frac_below_1e-3_max", "condition_number", "rank"}
    assert expected <= set(record["init"]) and {"clamped_negative", "most_negative"} <= set(record["init"])
    assert len(record["eigenvalues_init"]) == 96 and [h["step"] for h in record["training"]] == [4, 8]
    assert result["methods"]["relu"]["init"]["max"] == pytest.approx(saved["methods"]["relu"]["init"]["max"])


def test_run_ntk_2d_grid(tmp_path) -> None:
    cfg = NtkConfig(methods=("pe+cn",), depth=1, width=8, points=36, dim=2, out=tmp_path, progress=False)
    assert len(run_ntk(cfg)["methods"]["pe+cn"]["eigenvalues_init"]) == 36


@pytest.mark.parametrize("signal", ["1d", "image"])
def test_run_freq_smoke(tmp_path, signal: str) -> None:
    cfg = FreqConfig(
        methods=("relu", "pe+cn"), depth=2, width=16, steps=6, signal=signal, size=16, points=128, num_bands=4,
        log_every=4, out=tmp_path, progress=False,
    )  # fmt: skip
    run_freq(cfg)
    saved = json.loads((tmp_path / "freq.json").read_text())
    assert (tmp_path / "freq_error.png").stat().st_size > 0
    assert len(saved["band_edges"]) == 5 and "train mode" in saved["prediction_mode"]
    record = saved["methods"]["pe+cn"]
    assert record["steps"] == [0, 4, 6] and len(record["band_error"]) == 3 and len(record["final_band_error"]) == 4
    assert record["band_error"][0] != record["band_error"][-1]


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        (NtkConfig(methods=("relu+xx",)), "relu\\+xx"),
        (NtkConfig(points=1), "--points must be >= 2"),
        (NtkConfig(dim=3), "--dim must be 1 or 2"),  # type: ignore[arg-type]
        (NtkConfig(dim=2, points=50), "square"),
        (NtkConfig(every=5, steps=0), "--steps must be >= 1"),
        (NtkConfig(methods=()), "--methods is empty"),
        (FreqConfig(steps=0), "--steps must be >= 1"),
        (FreqConfig(num_bands=0), "--num-bands"),
        (FreqConfig(points=64), "Nyquist"),
    ],
)
def test_bad_configs_raise_clear_errors(tmp_path, cfg, message: str) -> None:
    cfg.out = tmp_path / "never"
    run = run_ntk if isinstance(cfg, NtkConfig) else run_freq
    with pytest.raises(ValueError, match=message):
        run(cfg)
    assert not cfg.out.exists()


def test_stand_alone_cli(tmp_path, monkeypatch, capsys) -> None:
    args = ["ntk", "--methods", "relu", "--depth", "1", "--width", "4", "--points", "16", "--no-progress"]
    monkeypatch.setattr(sys, "argv", ["cli", *args, "--out", str(tmp_path / "ok")])
    main()
    assert (tmp_path / "ok" / "ntk.json").exists()
    monkeypatch.setattr(sys, "argv", ["cli", "ntk", "--points", "1", "--out", str(tmp_path / "bad")])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2 and "--points must be >= 2" in capsys.readouterr().err
