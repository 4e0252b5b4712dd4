"""Issue 14: impossible training settings are refused in one place (TrainConfig.check via check_common), with
the option named; the best train-mode metric includes the final model; shape options are checked up front."""

from __future__ import annotations

import json

import pytest
import torch

from norm_nerf.tasks.common import check_common
from norm_nerf.tasks.image import ImageTaskConfig
from norm_nerf.tasks.shape import ShapeTaskConfig, run_shape
from norm_nerf.tasks.trainer import ConfigError, TrainConfig, _lr_lambda, check_device, fit


@pytest.mark.parametrize("schedule", ["cosine", "exp"])
@pytest.mark.parametrize("ratio", [-1.0, 0.0, 1.5, float("nan")])
def test_decaying_schedules_need_a_ratio_in_0_1(schedule: str, ratio: float) -> None:
    with pytest.raises(ConfigError, match=rf"--min-lr-ratio must be in \(0, 1\] for the {schedule} schedule"):
        TrainConfig(schedule=schedule, min_lr_ratio=ratio)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="--min-lr-ratio"):
        check_common(ImageTaskConfig().replace(schedule=schedule, min_lr_ratio=ratio))  # type: ignore[arg-type]


def test_valid_ratios_give_a_decreasing_positive_schedule() -> None:
    TrainConfig(schedule="constant", min_lr_ratio=-1.0)  # unused by the constant schedule
    for schedule in ("cosine", "exp"):
        f = _lr_lambda(TrainConfig(steps=10, schedule=schedule, min_lr_ratio=0.1))  # type: ignore[arg-type]
        values = [f(s) for s in range(11)]
        assert values[0] == pytest.approx(1.0) and values[-1] == pytest.approx(0.1)
        assert all(a >= b > 0 for a, b in zip(values, values[1:]))


def test_log_every_zero_is_refused() -> None:
    with pytest.raises(ConfigError, match="--log-every must be >= 1"):
        check_common(ImageTaskConfig().replace(log_every=0))


def test_unknown_and_unavailable_devices_list_what_is_available(monkeypatch) -> None:
    with pytest.raises(ConfigError, match=r"unknown --device 'gpu'; available here: cpu"):
        check_common(ImageTaskConfig().replace(device="gpu"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match=r"--device cuda: no CUDA GPU is available here; available: cpu"):
        check_common(ImageTaskConfig().replace(device="cuda"))
    with pytest.raises(ConfigError, match="--device cuda:1: no CUDA GPU"):
        TrainConfig(device="cuda:1")
    assert check_device("cpu") == torch.device("cpu")


def test_cuda_index_beyond_the_gpus_is_refused(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ConfigError, match=r"--device cuda:3: only 1 CUDA GPU\(s\) here; available: cpu, cuda, cuda:0"):
        check_device("cuda:3")


@pytest.mark.parametrize("batch", [0, -5])
def test_shape_batch_size_must_be_positive(tmp_path, batch: int) -> None:
    cfg = ShapeTaskConfig().replace(grid=8, batch_size=batch, steps=1, out=tmp_path / "s", progress=False)
    with pytest.raises(ConfigError, match=rf"--batch-size must be >= 1 .*got {batch}"):
        run_shape(cfg)
    assert not (tmp_path / "s").exists()


def test_shape_export_resolution_below_two_is_refused(tmp_path) -> None:
    cfg = ShapeTaskConfig().replace(grid=8, export_resolution=1, steps=1, out=tmp_path / "s", progress=False)
    with pytest.raises(ConfigError, match="--export-resolution must be >= 2"):
        run_shape(cfg)
    assert not (tmp_path / "s").exists()


def test_shape_run_records_the_surface_size(tmp_path) -> None:
    cfg = ShapeTaskConfig().replace(grid=8, batch_size=128, export_resolution=8, steps=2, method="relu", width=8)
    cfg.out, cfg.train.progress = tmp_path / "s", False
    summary = run_shape(cfg)
    saved = json.loads((tmp_path / "s" / "metrics.json").read_text())
    assert saved["surface_faces"] == summary["surface_faces"] >= 0
    assert (saved["surface_faces"] == 0) == bool(saved["notices"])


class _FixedSignal:
    """A signal whose per-step metric (0 dB) is always below its final evaluation (5 dB)."""

    def __init__(self) -> None:
        self.coords = torch.linspace(-1, 1, 8)[:, None]

    def loss(self, pred: torch.Tensor, idx: torch.Tensor | None = None) -> torch.Tensor:
        return pred.square().mean()

    def quick_metric(self, pred: torch.Tensor, loss: torch.Tensor, idx: torch.Tensor | None = None) -> float:
        return 0.0

    def metrics(self, pred: torch.Tensor) -> dict[str, float]:
        return {"psnr": 5.0}


def test_best_train_mode_metric_includes_the_final_evaluation() -> None:
    net = torch.nn.Linear(1, 1)
    result = fit(net, _FixedSignal(), TrainConfig(steps=2, progress=False), lr=1e-3)
    assert result.train_mode_metrics["psnr"] == 5.0
    assert result.best_train_mode_metric == 5.0  # was 0.0: only the pre-update per-step values counted
    assert result.best_train_mode_metric >= max(result.curve_metric)


def test_fit_callback_sees_every_state_before_its_update() -> None:
    """One training loop: the per-step callback (what the spectral-bias analysis records through) sees step 0 (the
    initialisation) to step ``steps`` (the final parameters), each before that step's update."""
    net = torch.nn.Linear(1, 1)
    signal = _FixedSignal()
    seen: list[tuple[int, float]] = []

    def callback(step: int, pred: torch.Tensor, loss: float) -> None:
        assert not pred.requires_grad and pred.shape == (8, 1)
        with torch.no_grad():
            assert loss == pytest.approx(float(net(signal.coords).square().mean()))  # the current parameters
        seen.append((step, loss))

    fit(net, signal, TrainConfig(steps=5, progress=False), lr=1e-2, callback=callback)
    assert [s for s, _ in seen] == list(range(6))
    assert seen[-1][1] < seen[0][1]
