"""Several processes (torchrun's environment, gloo on CPU): the ranks train the model one process trains on their rays
together, rank 0 alone writes, checkpoints resume in any number of processes, and a rank that dies stops the others
with a clear message."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.ns.tiny import tiny_config
from tests.two_ranks import free_port, run_as_torchrun

pytestmark = pytest.mark.slow  # spawns training processes

RAYS = 32
"""Rays of one step in all: one process draws them all, two ranks draw half each."""
STEPS = 3
RAY_SEED = 1234


def _fixed_rays() -> None:
    """In this process: every training batch (and recalibration batch) is a fixed function of the step, the same in
    every process, and rank r of W trains on its W-th of it; samples along rays are not jittered. Then two ranks see
    exactly the rays one process sees."""
    import torch.distributed as dist
    from nerfstudio.data.datamanagers.base_datamanager import VanillaDataManager

    from norm_nerf.ns.pipeline import NormPipeline

    def next_train(self, step: int):
        images = next(self.iter_train_image_dataloader)
        order = torch.argsort(images["image_idx"])  # the cached order depends on the rank's seed
        images = {k: v[order] if isinstance(v, torch.Tensor) and len(v) == len(order) else v for k, v in images.items()}
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RAY_SEED + step)
            batch = self.train_pixel_sampler.sample(images)
        rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
        n = len(batch["indices"]) // world
        part = slice(rank * n, (rank + 1) * n)
        batch = {k: v[part] if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        return self.train_ray_generator(batch["indices"]), batch

    init = NormPipeline.__init__

    def pipeline_init(self, *args, **kwargs) -> None:
        init(self, *args, **kwargs)
        for module in self.model.modules():
            if hasattr(module, "train_stratified"):
                module.train_stratified = False

    VanillaDataManager.next_train = next_train
    NormPipeline.__init__ = pipeline_init


def _config(method: str, norm: str, data: str, out: str):
    cfg = tiny_config(method, Path(data), Path(out), steps=STEPS, rays=RAYS, norm=norm, recalibration_batches=1)
    cfg.experiment_name = "run"
    return cfg


def _train_fixed(rank: int, method: str, norm: str, data: str, out: str) -> dict:
    """Train with :func:`_fixed_rays` through norm-train's code path; the rank's final state."""
    _fixed_rays()
    from norm_nerf.ns.launch import train

    trainer = train(_config(method, norm, data, out))
    return {
        "model": {k: v.detach().clone() for k, v in trainer.pipeline.model.state_dict().items()},
        "optimizers": {k: o.state_dict()["state"] for k, o in trainer.optimizers.optimizers.items()},
        "checkpoints": sorted(str(p) for p in Path(trainer.checkpoint_dir).glob("*.ckpt")),
    }


def _assert_states_close(a: dict, b: dict, what: str, exact: bool) -> None:
    tol = {"rtol": 0.0, "atol": 0.0} if exact else {"rtol": 1e-4, "atol": 1e-6}
    assert a.keys() == b.keys(), what
    for key, value in a.items():
        if isinstance(value, dict):
            _assert_states_close(value, b[key], f"{what}.{key}", exact)
        elif isinstance(value, torch.Tensor):
            torch.testing.assert_close(b[key], value, **tol, msg=f"{what}.{key}")


@pytest.mark.parametrize(("method", "norm"), [("norm-mipnerf", "cn"), ("norm-mipnerf", "none"),
                                              ("norm-neus-facto", "cn")])  # fmt: skip
def test_two_ranks_train_the_one_process_model(method, norm, request, tmp_path) -> None:
    data = request.getfixturevalue("dtu_scan_neus" if "neus" in method else "tiny_scene")
    one = run_as_torchrun(_train_fixed, (method, norm, str(data), str(tmp_path / "one")), tmp_path, world=1)[0]
    ranks = run_as_torchrun(_train_fixed, (method, norm, str(data), str(tmp_path / "two")), tmp_path, world=2)
    assert any("running_mean" in k for k in one["model"]) == (norm != "none")
    # the ranks hold the same model and optimizer state: gradients and statistics are all-reduced
    _assert_states_close(ranks[0]["model"], ranks[1]["model"], "model", exact=True)
    _assert_states_close(ranks[0]["optimizers"], ranks[1]["optimizers"], "optimizer", exact=True)
    # ... which is the one-process model trained on their rays together
    _assert_states_close(one["model"], ranks[0]["model"], "model", exact=False)
    _assert_states_close(one["optimizers"], ranks[0]["optimizers"], "optimizer", exact=False)
    assert ranks[1]["checkpoints"] == ranks[0]["checkpoints"] and len(ranks[0]["checkpoints"]) == 1
    saved = torch.load(ranks[0]["checkpoints"][0], map_location="cpu", weights_only=False)["pipeline"]
    assert not any(".module." in k for k in saved)  # the unwrapped model's keys, whatever the world size
    for key in one["model"]:
        torch.testing.assert_close(saved[f"_model.{key}"], ranks[0]["model"][key], rtol=0, atol=0, msg=key)


def _torchrun(*args: str, procs: int, cwd: Path, timeout: float = 420) -> subprocess.CompletedProcess:
    """``torchrun --nproc-per-node procs -m norm_nerf.scripts.train ARGS`` (``norm-train ARGS`` for one process)."""
    cmd = [sys.executable, "-m", "norm_nerf.scripts.train"]
    if procs > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(procs), "--master-port",
               str(free_port()), "-m", "norm_nerf.scripts.train"]  # fmt: skip
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1"}
    return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env)


def _cli_args(data: Path, out: Path, name: str, steps: int, *extra: str) -> list[str]:
    return ["norm-mipnerf", "--data", str(data), "--output-dir", str(out), "--experiment-name", name,
            "--timestamp", name, "--max-num-iterations", str(steps), "--vis", "tensorboard",
            "--viewer.quit-on-train-completion", "True", "--steps-per-save", "2",
            "--save-only-latest-checkpoint", "False", "--steps-per-eval-batch", "2", "--steps-per-eval-image", "100",
            "--steps-per-eval-all-images", "1000", "--pipeline.datamanager.train-num-rays-per-batch", "32",
            "--pipeline.model.num-coarse-samples", "8", "--pipeline.model.num-importance-samples", "8",
            "--pipeline.model.base-mlp-layer-width", "32", "--pipeline.model.head-mlp-layer-width", "16",
            "--pipeline.model.recalibration-batches", "1", *extra]  # fmt: skip


def _steps(run: Path) -> list[int]:
    return sorted(int(p.stem.split("-")[1]) for p in (run / "nerfstudio_models").glob("step-*.ckpt"))


def test_torchrun_trains_and_checkpoints_resume_in_one_or_two_processes(tiny_scene, tmp_path) -> None:
    out = tmp_path / "outputs"
    first = _torchrun(*_cli_args(tiny_scene, out, "two", 4), procs=2, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    run = out / "two" / "norm-mipnerf" / "two"
    assert _steps(run) == [2, 3]
    assert (run / "config.yml").is_file() and (run / "dataparser_transforms.json").is_file()
    events = list(run.rglob("events.out.tfevents.*"))
    assert len(events) == 1  # rank 0 alone writes tensorboard
    assert "Training Finished" in first.stdout and first.stdout.count("Training Finished") == 1  # rank 0 prints
    ckpt = run / "nerfstudio_models"
    for procs, name in ((1, "resumed1"), (2, "resumed2")):
        resumed = _torchrun(*_cli_args(tiny_scene, out, name, 5, "--load-dir", str(ckpt), "--load-step", "2"),
                            procs=procs, cwd=tmp_path)  # fmt: skip
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        assert "Done loading Nerfstudio checkpoint" in resumed.stdout
        assert _steps(out / name / "norm-mipnerf" / name) == [4], name  # steps 3 and 4: 5 steps in all


def _die_at_step_two(rank: int, data: str, out: str) -> dict:
    """Rank 1 exits abruptly at step 2 (as a killed process would); rank 0 reports what it raised, and when."""
    from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackLocation

    from norm_nerf.ns.launch import RankLostError, train
    from norm_nerf.ns.trainer import NormTrainer

    setup = NormTrainer.setup

    def setup_then_die(self, *args, **kwargs) -> None:
        setup(self, *args, **kwargs)
        if rank == 1:
            before = TrainingCallbackLocation.BEFORE_TRAIN_ITERATION
            self.callbacks.append(TrainingCallback([before], lambda step: step == 2 and os._exit(3)))

    NormTrainer.setup = setup_then_die
    cfg = tiny_config("norm-mipnerf", Path(data), Path(out), steps=50, rays=32)
    try:
        train(cfg)
    except RankLostError as err:
        return {"error": str(err), "at": time.time()}
    return {"error": None, "at": time.time()}


def test_a_rank_that_dies_stops_the_others_with_a_clear_message(tiny_scene, tmp_path) -> None:
    start = time.time()
    with pytest.raises(AssertionError, match=r"ranks \[1\] of 2 reported no result"):
        run_as_torchrun(_die_at_step_two, (str(tiny_scene), str(tmp_path / "out")), tmp_path, world=2, timeout=120)
    report = torch.load(tmp_path / "rank0.pt", weights_only=False)
    assert report["error"] is not None, "rank 0 trained on alone"
    assert "rank 0 of 2: lost contact with the other ranks at training step 2" in report["error"]
    assert "Another rank stopped or was killed" in report["error"]
    assert report["at"] - start < 90  # seconds, imports and setup included: no wait for the 30-minute timeout


def test_several_processes_refuse_other_methods_and_bad_layouts(monkeypatch) -> None:
    from norm_nerf.ns.launch import check_config, collective_timeout, layout_from_env
    from norm_nerf.ns.runs import method_config

    assert layout_from_env({}).world_size == 1
    two = layout_from_env({"RANK": "1", "LOCAL_RANK": "1", "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2"})
    assert (two.rank, two.world_size, two.is_main) == (1, 2, False)
    with pytest.raises(ValueError, match="WORLD_SIZE not set while RANK"):
        layout_from_env({"RANK": "0"})
    with pytest.raises(ValueError, match="RANK='x' is not an integer"):
        layout_from_env({"RANK": "x", "LOCAL_RANK": "0", "WORLD_SIZE": "2"})
    with pytest.raises(ValueError, match="inconsistent process layout"):
        layout_from_env({"RANK": "2", "LOCAL_RANK": "0", "WORLD_SIZE": "2"})
    with pytest.raises(ValueError, match="must be > 0 seconds"):
        collective_timeout({"NORM_NERF_DIST_TIMEOUT_S": "0"})
    assert collective_timeout({}).total_seconds() == 1800
    cfg = method_config("norm-mipnerf")
    cfg.machine.device_type = "cpu"
    check_config(cfg, two)  # ours: fine
    from nerfstudio.configs.method_configs import method_configs

    with pytest.raises(ValueError, match="nerfacto: several processes train the norm-\\* methods"):
        check_config(method_configs["nerfacto"], two)
