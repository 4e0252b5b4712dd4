"""Train a norm-* method in one process or in several started by ``torchrun`` (``torch.distributed``).

``torchrun`` starts the processes and sets ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``LOCAL_WORLD_SIZE``,
``GROUP_RANK`` and the rendezvous address; :func:`train` reads them, joins the process group (gloo on CPU, NCCL on
CUDA) and runs nerfstudio's own trainer in every process:

* every rank draws its own rays (nerfstudio seeds rank r with ``machine.seed + r``); DDP averages the gradients
  (:class:`~norm_nerf.ns.pipeline.NormPipeline`) and the norms all-reduce their batch statistics, so the ranks train
  the model one process would train on their rays together, and hold identical weights and statistics;
* the precise-BN recalibration before evaluations and checkpoints runs on every rank on its own rays, its
  statistics all-reduced as well;
* rank 0 alone writes: ``config.yml``, checkpoints, evaluation images, tensorboard, the viewer
  (:class:`~norm_nerf.ns.trainer.NormTrainer`); the others skip evaluation and meet rank 0 at the next step;
* a checkpoint holds the unwrapped model, so it resumes (``--load-dir``) in any number of processes;
* a rank that stops (an error, a kill) makes the others stop with a message that says so, rather than wait: gloo
  notices the closed connection at once; every collective has a time limit (:data:`TIMEOUT_ENV`, default 30 min as
  nerfstudio's launcher), and torchrun itself stops the other processes of a failed job.
"""

from __future__ import annotations

import os
import random
import sys
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from nerfstudio.engine.trainer import TrainerConfig
from nerfstudio.utils import comms, profiler

from norm_nerf.ns.pipeline import NormPipelineConfig

TIMEOUT_ENV = "NORM_NERF_DIST_TIMEOUT_S"
"""Environment variable: seconds a rank waits for the others at a collective before it stops (default 1800)."""
DEFAULT_TIMEOUT_S = 1800.0


class RankLostError(RuntimeError):
    """Another rank stopped (it failed or was killed) while this one waited for it."""


@dataclass(frozen=True)
class ProcessLayout:
    """Where this process sits among the processes of one training job."""

    rank: int
    """Global rank (0 writes the outputs)."""
    local_rank: int
    """Rank on this machine (the GPU index on CUDA)."""
    world_size: int
    """Number of processes of the job, on all machines."""
    local_world_size: int
    """Number of processes on this machine."""
    node_rank: int
    """Index of this machine."""

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0."""
        return self.rank == 0


def layout_from_env(environ: dict[str, str] | None = None) -> ProcessLayout:
    """The process layout torchrun (or ``srun`` with the same variables) set; one process when none is set."""
    env = os.environ if environ is None else environ
    names = ("RANK", "LOCAL_RANK", "WORLD_SIZE")
    if not any(n in env for n in names):
        return ProcessLayout(0, 0, 1, 1, 0)
    missing = [n for n in names if n not in env]
    if missing:
        raise ValueError(f"{', '.join(missing)} not set while {', '.join(n for n in names if n in env)} is: start "
                         "several processes with torchrun, which sets them all")  # fmt: skip
    values = {}
    for name in (*names, "LOCAL_WORLD_SIZE", "GROUP_RANK"):
        raw = env.get(name)
        if raw is None:
            continue
        try:
            values[name] = int(raw)
        except ValueError:
            raise ValueError(f"environment variable {name}={raw!r} is not an integer") from None
    world = values["WORLD_SIZE"]
    local_world = values.get("LOCAL_WORLD_SIZE", world)
    layout = ProcessLayout(values["RANK"], values["LOCAL_RANK"], world, local_world, values.get("GROUP_RANK", 0))
    if world < 1 or not 0 <= layout.rank < world or not 0 <= layout.local_rank < local_world <= world:
        raise ValueError(f"inconsistent process layout from the environment: {layout}")
    return layout


def collective_timeout(environ: dict[str, str] | None = None) -> timedelta:
    """The time limit of every collective: :data:`TIMEOUT_ENV` seconds, default 30 minutes."""
    env = os.environ if environ is None else environ
    raw = env.get(TIMEOUT_ENV, str(DEFAULT_TIMEOUT_S))
    try:
        seconds = float(raw)
    except ValueError:
        raise ValueError(f"{TIMEOUT_ENV}={raw!r} is not a number of seconds") from None
    if not seconds > 0:
        raise ValueError(f"{TIMEOUT_ENV} must be > 0 seconds, got {raw}")
    return timedelta(seconds=seconds)


def check_config(config: TrainerConfig, layout: ProcessLayout) -> None:
    """Refuse, before any process group exists, what cannot train in this layout."""
    if layout.world_size > 1 and not isinstance(config.pipeline, NormPipelineConfig):
        raise ValueError(f"{config.method_name}: several processes train the norm-* methods (their pipeline wraps "
                         "the model for CPU and GPU); for nerfstudio's own methods use ns-train "
                         "--machine.num-devices N on GPUs")  # fmt: skip
    device = config.machine.device_type
    if device == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("--machine.device-type cuda, but no CUDA device is visible; use --machine.device-type cpu")
        if layout.local_rank >= torch.cuda.device_count():
            count = torch.cuda.device_count()
            raise ValueError(f"local rank {layout.local_rank} needs GPU {layout.local_rank}, but only {count} are "
                             "visible: start at most that many processes per machine")  # fmt: skip
    elif device not in ("cpu",) and layout.world_size > 1:
        raise ValueError(f"--machine.device-type {device}: several processes train on cpu (gloo) or cuda (NCCL)")


def init_process_group(config: TrainerConfig, layout: ProcessLayout, timeout: timedelta) -> None:
    """Join the job's process group (from torchrun's rendezvous variables) and make nerfstudio's per-machine group."""
    cuda = config.machine.device_type == "cuda"
    if cuda:
        torch.cuda.set_device(layout.local_rank)
    dist.init_process_group("nccl" if cuda else "gloo", timeout=timeout)
    nodes = layout.world_size // layout.local_world_size
    for node in range(nodes):  # every rank creates every group (a collective); torchrun numbers ranks node by node
        group = dist.new_group(list(range(node * layout.local_world_size, (node + 1) * layout.local_world_size)))
        if node == layout.node_rank:
            comms.LOCAL_PROCESS_GROUP = group


def prepare_config(config: TrainerConfig, layout: ProcessLayout) -> None:
    """Make the config of every rank the same run: rank 0's timestamp (one output folder), the machine layout, and
    no viewer outside rank 0 (nerfstudio starts one on every machine's local rank 0)."""
    machine = config.machine
    machine.num_devices = layout.local_world_size
    machine.num_machines = layout.world_size // layout.local_world_size
    machine.machine_rank = layout.node_rank
    if layout.is_main:
        config.set_timestamp()
    if layout.world_size > 1:
        stamp = [config.timestamp]
        dist.broadcast_object_list(stamp, src=0)
        config.timestamp = stamp[0]
    if not layout.is_main and "viewer" in config.vis:
        # eval-enabling loggers stay on (rank 0 alone evaluates and writes; the trainer skips it elsewhere)
        config.vis = config.vis.split("+", 1)[1] if "+" in config.vis else "tensorboard"  # type: ignore[assignment]


def seed_rank(seed: int, rank: int) -> None:
    """Seed Python, NumPy and torch with ``seed + rank``, as nerfstudio's launcher seeds its ranks."""
    random.seed(seed + rank)
    np.random.seed(seed + rank)
    torch.manual_seed(seed + rank)


def quiet_unless_main(layout: ProcessLayout) -> None:
    """Only rank 0 prints nerfstudio's and our console output (errors still go to every rank's stderr)."""
    if layout.is_main:
        return
    from nerfstudio.utils.rich_utils import CONSOLE as NS_CONSOLE

    from norm_nerf.utils.console import CONSOLE

    NS_CONSOLE.quiet = True
    CONSOLE.quiet = True


def train(config: TrainerConfig) -> Any:
    """Train ``config`` in this process, alone or as one rank of a torchrun job; returns the trainer.

    Every rank runs this same function; :func:`layout_from_env` says which one it is.
    """
    layout = layout_from_env()
    check_config(config, layout)
    timeout = collective_timeout()
    if layout.world_size > 1:
        init_process_group(config, layout, timeout)
    try:
        quiet_unless_main(layout)
        trainer = setup_run(config, layout, announce=True)
        _train_or_explain(trainer, layout)
        return trainer
    finally:
        profiler.flush_profiler(config.logging)  # as ns-train: the timing summary (rank 0 holds the profiler)
        if layout.world_size > 1 and dist.is_initialized():
            dist.destroy_process_group()
            comms.LOCAL_PROCESS_GROUP = None


ONE_PROCESS = ProcessLayout(0, 0, 1, 1, 0)
"""The layout of a run in this process alone."""


def setup_run(config: TrainerConfig, layout: ProcessLayout = ONE_PROCESS, announce: bool = False) -> Any:
    """The trainer of ``config`` in this process, set up as ``ns-train`` sets one up: the layout's config
    (:func:`prepare_config`), ``config.yml`` written by rank 0 (after printing the config, with ``announce``), Python,
    NumPy and torch seeded with ``machine.seed + rank``, the trainer built and set up (data, model, checkpoint)."""
    prepare_config(config, layout)
    if layout.is_main:
        if announce:
            config.print_to_terminal()
        config.save_config()
    seed_rank(config.machine.seed, layout.rank)
    trainer = config.setup(local_rank=layout.local_rank, world_size=layout.world_size)
    trainer.setup()
    return trainer


def _train_or_explain(trainer: Any, layout: ProcessLayout) -> None:
    """``trainer.train()``; a collective that fails because another rank stopped becomes a :class:`RankLostError`."""
    try:
        trainer.train()
    except Exception as err:  # noqa: BLE001 - only communication failures are translated, the rest re-raised
        if layout.world_size == 1 or not _is_comm_failure(err):
            raise
        raise RankLostError(
            f"rank {layout.rank} of {layout.world_size}: lost contact with the other ranks at training step "
            f"{trainer.step} ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}). Another rank "
            f"stopped or was killed; its own output says why. {trainer.last_checkpoint_note()}"
        ) from err


_COMM_WORDS = ("gloo", "nccl", "connection", "timed out", "timeout", "broken pipe", "peer", "socket")


def _is_comm_failure(err: BaseException) -> bool:
    backend_error = getattr(dist, "DistBackendError", ())
    if backend_error and isinstance(err, backend_error):
        return True
    return isinstance(err, RuntimeError) and any(word in str(err).lower() for word in _COMM_WORDS)


def report(err: BaseException, layout: ProcessLayout | None = None) -> None:
    """Print a training error on this rank's stderr, prefixed with the rank when there are several."""
    layout = layout or layout_from_env()
    prefix = f"[rank {layout.rank}] " if layout.world_size > 1 else ""
    print(f"{prefix}error: {err}", file=sys.stderr, flush=True)
