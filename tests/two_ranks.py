"""Run a worker function in two gloo processes on CPU and collect the result file each rank writes."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(rank: int, world: int, port: int, work: Callable[..., dict], args: tuple, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), GLOO_SOCKET_IFNAME="lo")
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        result = work(rank, *args)
        tmp = os.path.join(out_dir, f"rank{rank}.tmp")
        torch.save(result, tmp)
        os.replace(tmp, os.path.join(out_dir, f"rank{rank}.pt"))  # atomic
        dist.barrier()  # nobody tears down gloo while the other rank still talks to it
    finally:
        dist.destroy_process_group()


def run_two_ranks(work: Callable[..., dict], args: tuple, tmp_path: Path, attempts: int = 3) -> list[dict]:
    """``[work(0, *args), work(1, *args)]`` computed in two gloo ranks (``work`` must be a module-level function).

    gloo's threads sometimes abort at interpreter exit ("terminate called without an active exception") after the
    work is done, so the exit code is not the verdict: the result files are. A run that produced no results is
    retried on a fresh port."""
    ctx = mp.get_context("spawn")
    for _ in range(attempts):
        for r in range(2):
            (tmp_path / f"rank{r}.pt").unlink(missing_ok=True)
        port = _free_port()
        procs = [ctx.Process(target=_rank_main, args=(r, 2, port, work, args, str(tmp_path))) for r in range(2)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(timeout=180)
            if p.is_alive():
                p.kill()
        if all((tmp_path / f"rank{r}.pt").is_file() for r in range(2)):
            return [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]
    raise AssertionError(f"two-rank gloo run produced no results in {attempts} attempts")
