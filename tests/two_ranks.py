"""Run a worker function in several gloo processes on CPU and collect the result file each rank writes: either in a
process group made here (:func:`run_two_ranks`), or with torchrun's environment so the code under test joins the
group itself (:func:`run_as_torchrun`)."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(rank: int, world: int, port: int, work: Callable[..., dict], args: tuple, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), GLOO_SOCKET_IFNAME="lo")
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        _save_result(rank, work(rank, *args), out_dir)
        dist.barrier()  # nobody tears down gloo while the other rank still talks to it
    finally:
        dist.destroy_process_group()


def _as_torchrun(rank: int, world: int, port: int, work: Callable[..., dict], args: tuple, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), GLOO_SOCKET_IFNAME="lo")
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), LOCAL_WORLD_SIZE=str(world),
                      GROUP_RANK="0")  # fmt: skip
    if world == 1:
        for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK"):
            del os.environ[name]
    _save_result(rank, work(rank, *args), out_dir)


def _save_result(rank: int, result: dict, out_dir: str) -> None:
    tmp = os.path.join(out_dir, f"rank{rank}.tmp")
    torch.save(result, tmp)
    os.replace(tmp, os.path.join(out_dir, f"rank{rank}.pt"))  # atomic


def _spawn(target: Callable[..., None], world: int, work: Callable[..., dict], args: tuple, tmp_path: Path,
           attempts: int, timeout: float) -> list[dict] | None:  # fmt: skip
    ctx = mp.get_context("spawn")
    for _ in range(attempts):
        for r in range(world):
            (tmp_path / f"rank{r}.pt").unlink(missing_ok=True)
        port = free_port()
        procs = [ctx.Process(target=target, args=(r, world, port, work, args, str(tmp_path))) for r in range(world)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(timeout=timeout)
            if p.is_alive():
                p.kill()
        if all((tmp_path / f"rank{r}.pt").is_file() for r in range(world)):
            return [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(world)]
    return None


def run_two_ranks(work: Callable[..., dict], args: tuple, tmp_path: Path, attempts: int = 3) -> list[dict]:
    """``[work(0, *args), work(1, *args)]`` computed in two gloo ranks (``work`` must be a module-level function).

    gloo's threads sometimes abort at interpreter exit ("terminate called without an active exception") after the
    work is done, so the exit code is not the verdict: the result files are. A run that produced no results is
    retried on a fresh port."""
    results = _spawn(_rank_main, 2, work, args, tmp_path, attempts, timeout=180)
    if results is None:
        raise AssertionError(f"two-rank gloo run produced no results in {attempts} attempts")
    return results


def run_as_torchrun(work: Callable[..., dict], args: tuple, tmp_path: Path, world: int = 2,
                    timeout: float = 300) -> list[dict]:  # fmt: skip
    """``[work(r, *args) for r in range(world)]``, each in a process with the variables torchrun sets (``RANK``,
    ``WORLD_SIZE``, ``MASTER_ADDR``, ...; none for ``world`` 1), so the code under test initialises the process
    group itself. ``work`` returns what the rank reports (a dict); a rank that reports nothing fails the test."""
    results = _spawn(_as_torchrun, world, work, args, tmp_path, attempts=1, timeout=timeout)
    if results is None:
        missing = [r for r in range(world) if not (tmp_path / f"rank{r}.pt").is_file()]
        raise AssertionError(f"ranks {missing} of {world} reported no result")
    return results
