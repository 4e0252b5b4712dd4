"""What users do with ``ns-train norm-*``: resume with other settings, press Ctrl-C, point at broken data, fill the
disk. Each ends in one line (no traceback), loses no finished work and leaves no half-written file or empty run."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import fill_disk

pytestmark = pytest.mark.slow  # trains norm-mipnerf, mostly through ns-train in a subprocess

NS_TRAIN = str(Path(sys.executable).parent / "ns-train")


def _args(data: Path, out: Path, steps: int, *extra: str) -> list[str]:
    return [NS_TRAIN, "norm-mipnerf", "--data", str(data), "--output-dir", str(out), "--experiment-name", "x",
            "--timestamp", "t", "--max-num-iterations", str(steps), "--vis", "tensorboard",
            "--viewer.quit-on-train-completion", "True", "--steps-per-eval-batch", "100000",
            "--steps-per-eval-image", "100000", "--steps-per-eval-all-images", "100000",
            "--pipeline.datamanager.train-num-rays-per-batch", "32", "--pipeline.model.num-coarse-samples", "8",
            "--pipeline.model.num-importance-samples", "8", "--pipeline.model.base-mlp-layer-width", "32",
            "--pipeline.model.head-mlp-layer-width", "16", "--pipeline.model.recalibration-batches", "1",
            *extra]  # fmt: skip


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=600, cwd=cwd)


def _steps(run: Path) -> list[int]:
    return sorted(int(p.stem.split("-")[1]) for p in (run / "nerfstudio_models").glob("step-*.ckpt"))


def _one_line_error(done: subprocess.CompletedProcess, code: int = 2) -> str:
    assert done.returncode == code, done.stdout[-2000:] + done.stderr[-3000:]
    assert "Traceback" not in done.stderr and "Traceback" not in done.stdout, done.stderr[-3000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, done.stderr[-3000:]
    return errors[0]


def test_resume_with_another_norm_is_refused_and_leaves_no_run(mipnerf_run, tiny_scene, tmp_path) -> None:
    """A cn checkpoint resumed with bn: nerfstudio would drop cn's extra tensors and train another model."""
    from norm_nerf.ns.checkpoints import CheckpointMismatchError
    from norm_nerf.ns.runs import cpu_preset, method_config, setup_trainer

    cfg = cpu_preset(method_config("norm-mipnerf"), tiny_scene, tmp_path, steps=20, rays=64, samples=8, width=32)
    cfg.pipeline.model.norm = "bn"
    cfg.load_dir = mipnerf_run.parent / "nerfstudio_models"
    with pytest.raises(CheckpointMismatchError, match=r"nerfstudio_models: the checkpoint was trained with "
                       r"--pipeline.model.norm cn \(this config: bn\)"):  # fmt: skip
        setup_trainer(cfg)
    assert not cfg.get_base_dir().exists()  # the run never started: no folder with a lone config.yml


def test_ctrl_c_saves_a_checkpoint_and_the_resumed_run_stops_at_max_iterations(tiny_scene, tmp_path) -> None:
    out = tmp_path / "outputs"
    run = out / "x" / "norm-mipnerf" / "t"
    proc = subprocess.Popen(_args(tiny_scene, out, 100000, "--steps-per-save", "100000"), cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.monotonic() + 300
    while not (run / "dataparser_transforms.json").exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)  # train() writes it before the first step
    time.sleep(3.0)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 130, stdout[-2000:] + stderr[-3000:]
    assert "Traceback" not in stderr + stdout, stderr[-3000:]
    steps = _steps(run)
    assert len(steps) == 1 and steps[0] > 0, stderr[-2000:]
    assert f"saved {run / 'nerfstudio_models' / f'step-{steps[0]:09d}.ckpt'}" in stderr
    assert f"--load-dir {run / 'nerfstudio_models'}" in stderr
    assert not list(run.glob(".*.partial"))

    total = steps[0] + 3  # nerfstudio would train that many steps more; ours ends at step total - 1
    resumed = _run(_args(tiny_scene, out, total, "--timestamp", "r", "--load-dir", str(run / "nerfstudio_models")),
                   tmp_path)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert _steps(out / "x" / "norm-mipnerf" / "r") == [total - 1]
    resumed_ckpts = str(out / "x" / "norm-mipnerf" / "r" / "nerfstudio_models")
    again = _run(_args(tiny_scene, out, total, "--timestamp", "q", "--load-dir", resumed_ckpts), tmp_path)
    assert again.returncode == 0 and "nothing to train" in again.stderr, again.stderr[-3000:]


def test_a_data_error_under_ns_train_is_one_line_and_leaves_no_run(tiny_scene, tmp_path) -> None:
    scene = tmp_path / "scene"
    shutil.copytree(tiny_scene, scene)
    (scene / "train" / "r_1.png").unlink()
    out = tmp_path / "outputs"
    line = _one_line_error(_run(_args(scene, out, 5), tmp_path))
    assert "r_1" in line and "not found" in line
    assert not (out / "x").exists()


def test_a_full_disk_during_a_checkpoint_is_one_line_and_keeps_the_good_one(tiny_scene, tmp_path, small_disk) -> None:
    """On a small file system: the first checkpoint fits; then it is filled up to half a checkpoint's room."""
    out = small_disk / "outputs"
    first = _run(_args(tiny_scene, out, 2, "--steps-per-save", "1"), tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    run = out / "x" / "norm-mipnerf" / "t"
    size = max(p.stat().st_size for p in (run / "nerfstudio_models").glob("*.ckpt"))
    for p in (run / "nerfstudio_models").glob("*.ckpt"):
        if p.stem != "step-000000001":
            p.unlink()
    fill_disk(small_disk, size // 2)
    resumed = _run(_args(tiny_scene, out, 4, "--timestamp", "t", "--steps-per-save", "1",
                         "--load-dir", str(run / "nerfstudio_models")), tmp_path)  # fmt: skip
    line = _one_line_error(resumed)
    assert line.startswith(f"error: no space left on {small_disk}"), line
    assert _steps(run) == [1]
    assert not [p for p in small_disk.rglob("*") if p.name.endswith(".partial")]
    torch.load(run / "nerfstudio_models" / "step-000000001.ckpt", map_location="cpu", weights_only=False)
    assert os.path.getsize(run / "nerfstudio_models" / "step-000000001.ckpt") == size
