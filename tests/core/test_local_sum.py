"""The shared-memory sum over the ranks of one machine (norm_nerf/core/local_sum.py, csrc/local_sum.cpp)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from norm_nerf.core.cpu_kernels import cpu_kernels
from norm_nerf.core.local_sum import CAPACITY_BYTES, shm_available
from tests.two_ranks import run_two_ranks

pytestmark = pytest.mark.skipif(cpu_kernels() is None, reason="the C++ kernels cannot be built here")
needs_shm = pytest.mark.skipif(not shm_available(), reason="no writable /dev/shm here: the sums go through gloo")


def _inputs(call: int, rank: int) -> torch.Tensor:
    """Call ``call``'s tensor on ``rank``: sizes and dtypes change from call to call, as the layers' sums do."""
    gen = torch.Generator().manual_seed(1000 * call + rank)
    dtype = torch.float64 if call % 3 else torch.float32
    return torch.randn(1 + call % 37, generator=gen, dtype=dtype) * 10 ** (call % 5)


def test_threads_as_ranks_get_the_in_order_sum_bitwise_over_many_calls() -> None:
    """Three ranks as threads (the kernel releases the GIL while it waits) make 400 sums of changing sizes through one
    region: each gets exactly rank 0 + rank 1 + rank 2, in that order, so the slots are never reused too early."""
    kernels, world, calls = cpu_kernels(), 3, 400
    region = torch.zeros(kernels.local_sum_region_bytes(world, CAPACITY_BYTES), dtype=torch.uint8)
    for rank in range(world):
        kernels.local_sum_register(region, rank)  # all this process: alive while a thread waits for another
    wrong: list[tuple[int, int]] = []

    def rank_main(rank: int) -> None:
        for call in range(1, calls + 1):
            t = _inputs(call, rank)
            kernels.local_sum_(t, region, rank, world, CAPACITY_BYTES, call, 60.0)
            want = _inputs(call, 0) + _inputs(call, 1) + _inputs(call, 2)
            if not torch.equal(t, want):
                wrong.append((rank, call))

    threads = [threading.Thread(target=rank_main, args=(r,)) for r in range(world)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert wrong == []


def _two_rank_region(rank_1_pid: int) -> torch.Tensor:
    """A region for two ranks: rank 0 is this process, rank 1 claims to be process ``rank_1_pid``."""
    kernels = cpu_kernels()
    region = torch.zeros(kernels.local_sum_region_bytes(2, CAPACITY_BYTES), dtype=torch.uint8)
    kernels.local_sum_register(region, 0)
    kernels.local_sum_register(region, 1)  # this process's start time in rank 1's line ...
    region[64:128].view(torch.int64)[1] = rank_1_pid  # ... with another pid: alive only if it is this process
    return region


def test_a_rank_that_never_arrives_times_out_with_its_number() -> None:
    region = _two_rank_region(os.getpid())
    assert cpu_kernels().local_sum_peers_alive(region, 2)
    with pytest.raises(RuntimeError, match=r"rank 1 did not reach call 1 within 0.05 s \(timed out"):
        cpu_kernels().local_sum_(torch.ones(3), region, 0, 2, CAPACITY_BYTES, 1, 0.05)


def test_a_rank_whose_process_exited_is_reported_at_once() -> None:
    """A waiting rank checks every 20 ms that the ranks it waits for still run (gloo notices a closed socket)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    region = _two_rank_region(child.pid)
    assert not cpu_kernels().local_sum_peers_alive(region, 2)
    start = time.perf_counter()
    with pytest.raises(RuntimeError, match=rf"lost its peer: rank 1 \(pid {child.pid}\) exited before call 1"):
        cpu_kernels().local_sum_(torch.ones(3), region, 0, 2, CAPACITY_BYTES, 1, 60.0)
    assert time.perf_counter() - start < 5


@pytest.mark.parametrize(
    ("tensor", "message"),
    [
        (torch.ones(CAPACITY_BYTES // 8 + 1, dtype=torch.float64), "exceed the region"),
        (torch.ones(3, dtype=torch.int64), "float32 or float64"),
        (torch.ones(4, 2).t(), "contiguous"),
    ],
)
def test_what_the_region_cannot_take_is_refused(tensor: torch.Tensor, message: str) -> None:
    kernels = cpu_kernels()
    region = torch.zeros(kernels.local_sum_region_bytes(1, CAPACITY_BYTES), dtype=torch.uint8)
    with pytest.raises(RuntimeError, match=message):
        kernels.local_sum_(tensor, region, 0, 1, CAPACITY_BYTES, 1, 1.0)


def _worker(rank: int, opt_out_rank: int | None) -> dict:
    import norm_nerf.core.distributed as distributed
    from norm_nerf.core.local_sum import world_local_sum

    if rank == opt_out_rank:
        os.environ["NORM_NERF_LOCAL_SUM"] = "0"
    local = world_local_sum()
    gloo: list[int] = []
    original = dist.all_reduce

    def counted(*args, **kwargs):
        gloo.append(1)
        return original(*args, **kwargs)

    dist.all_reduce = counted
    gen = torch.Generator().manual_seed(rank)
    small = torch.randn(513, generator=gen, dtype=torch.float64) * 1e3
    large = torch.randn(CAPACITY_BYTES // 4 + 1, generator=gen)  # one float32 more than the region takes
    ours = [distributed.all_reduce_sum_(small.clone()), distributed.all_reduce_sum_(large.clone())]
    sums_through_gloo = len(gloo)
    dist.all_reduce = original
    theirs = [small.clone(), large.clone()]
    for t in theirs:
        dist.all_reduce(t)
    return {
        "local": local is not None,
        "file_left": local is not None and Path(local.name).exists(),
        "sums_through_gloo": sums_through_gloo,
        "ours": ours,
        "theirs": theirs,
    }


@needs_shm
@pytest.mark.slow  # spawns two gloo processes
@pytest.mark.parametrize("opt_out_rank", [None, 1], ids=["both-ranks-agree", "rank-1-opts-out"])
def test_two_processes_sum_through_shared_memory_with_gloo_bits(opt_out_rank: int | None, tmp_path) -> None:
    """Two gloo processes: small sums go through the region (no gloo call) and equal gloo's bit for bit, a sum too
    large for the region goes through gloo, the region's file is gone once both mapped it, and one rank that sets
    ``NORM_NERF_LOCAL_SUM=0`` makes both use gloo (they must make the same calls)."""
    results = run_two_ranks(_worker, (opt_out_rank,), tmp_path)
    for res in results:
        assert res["local"] == (opt_out_rank is None)
        assert not res["file_left"]
        assert res["sums_through_gloo"] == (1 if opt_out_rank is None else 2)
        for ours, theirs in zip(res["ours"], res["theirs"]):
            assert torch.equal(ours, theirs)


@pytest.fixture
def one_rank_group(tmp_path):
    """A gloo process group of one rank in this process (and a fresh set-up of the region for it)."""
    import norm_nerf.core.local_sum as local_sum

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    local_sum._STATE.clear()
    try:
        yield local_sum
    finally:
        local_sum._STATE.clear()
        # torch 2.1.2: gloo's worker thread may still have to free a test's tensor, which takes the GIL, while
        # destroy_process_group holds the GIL and joins that thread; a moment without the GIL lets it finish
        time.sleep(0.05)
        dist.destroy_process_group()


@needs_shm
def test_the_region_is_private_prefaulted_and_unlinked(one_rank_group) -> None:
    local = one_rank_group.world_local_sum()
    assert local is not None and local.world == 1
    assert not Path(local.name).exists()
    assert one_rank_group.world_local_sum() is local  # set up once per process group
    t = torch.arange(5.0)
    assert torch.equal(local.sum_(t.clone()), t)
    path = one_rank_group._create(4096)
    try:
        assert path.stat().st_mode & 0o777 == 0o600
        assert path.read_bytes() == bytes(4096)  # written, not only sized: no SIGBUS when /dev/shm fills up later
    finally:
        path.unlink()


@pytest.mark.parametrize("failure", ["no-shm-dir", "shm-full", "opted-out"])
def test_without_room_in_dev_shm_the_sums_go_through_gloo(one_rank_group, monkeypatch, tmp_path, failure) -> None:
    import norm_nerf.core.distributed as distributed

    if failure == "no-shm-dir":
        monkeypatch.setattr(one_rank_group, "SHM_DIR", tmp_path / "missing")
    elif failure == "shm-full":
        monkeypatch.setattr(one_rank_group, "SHM_DIR", tmp_path)

        def full(*args, **kwargs):
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(one_rank_group.os, "write", full)
    else:
        monkeypatch.setenv("NORM_NERF_LOCAL_SUM", "0")
    assert one_rank_group.world_local_sum() is None
    assert list(tmp_path.glob("norm-nerf-sum-*")) == []
    t = torch.arange(5.0)
    assert torch.equal(distributed.all_reduce_sum_(t.clone()), t)


_SET_UP_AND_DESTROY = """
import sys, tempfile
from pathlib import Path
import torch.distributed as dist
import norm_nerf.core.local_sum as local_sum
for i in range(30):
    dist.init_process_group("gloo", init_method=f"file://{Path(tempfile.mkdtemp()) / 'store'}", rank=0, world_size=1)
    assert local_sum.world_local_sum() is not None
    dist.destroy_process_group()
"""


@needs_shm
def test_setting_up_never_hangs_destroy_process_group() -> None:
    """The set-up's collectives leave no tensor for gloo's threads to free later: with torch 2.1.2 that made
    ``destroy_process_group`` (which holds the GIL while it joins those threads) hang once in 2-30 set-ups."""
    done = subprocess.run([sys.executable, "-c", _SET_UP_AND_DESTROY], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
