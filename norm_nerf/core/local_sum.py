"""The all-reduce of synchronised statistics between processes of one machine, through shared memory.

Every batch-dependent norm layer makes one small all-reduce per pass (a few hundred numbers), and one layer's
statistics are needed before the next layer can run, so a step waits for about 40 of them (norm-mipnerf). Through
gloo's sockets one costs 1-2 ms on a CPU, most of a layer's compute; through a shared memory region it costs
microseconds. :func:`world_local_sum` sets one up for the default process group when

* the group's backend is gloo (CPU training; NCCL groups keep NCCL),
* every rank can map the same file in ``/dev/shm`` and sees the others' processes (one machine, one PID
  namespace: a rank waiting at a sum checks every 20 ms that the ranks it waits for still run, and raises when one
  has exited, as gloo does when a socket closes),
* the C++ kernels are built (``local_sum_`` is one of them), and
* no rank sets ``NORM_NERF_LOCAL_SUM=0``;

otherwise the statistics go through ``torch.distributed.all_reduce`` as before. The ranks agree on the choice when the
first synchronised layer runs (a broadcast of the file's name, two gloo all-reduces), so they always make the same
calls. The sum adds the ranks' rows in rank order: every rank gets the same bits, and with two ranks the same bits as
gloo.
"""

from __future__ import annotations

import os
import uuid
import weakref
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
from torch import Tensor

from norm_nerf.core.cpu_kernels import cpu_kernels

CAPACITY_BYTES = 64 * 1024
"""Largest tensor, in bytes per rank, that the shared region takes (8192 float64 sums); larger ones use gloo."""
DEFAULT_TIMEOUT_S = 1800.0
"""How long a rank waits for the others at one sum before it raises, where the process group's own timeout (that of
every gloo collective) cannot be read."""
SHM_DIR = Path("/dev/shm")
"""Where the region's file is made (and unlinked once every rank has mapped it)."""
_PREFIX = "norm-nerf-sum-"
_NAME_DIGITS = 32  # a uuid4's hex digits after the prefix


@dataclass
class LocalSum:
    """A shared memory region through which the ranks of one machine sum small CPU tensors (see the module)."""

    region: Tensor
    """The mapped file (uint8)."""
    name: str
    """The file's path (unlinked once every rank had mapped it)."""
    rank: int
    """This process's rank."""
    world: int
    """The number of ranks."""
    kernels: object
    """The C++ kernel module (``local_sum_``)."""
    timeout_s: float
    """How long a rank waits for the others at one sum before it raises."""
    calls: int = field(default=0)
    """Sums made so far (the call number all ranks share)."""

    def fits(self, t: Tensor) -> bool:
        """Whether ``t`` can go through the region (a float CPU tensor of at most ``CAPACITY_BYTES``)."""
        return (
            t.device.type == "cpu"
            and t.dtype in (torch.float32, torch.float64)
            and t.numel() * t.element_size() <= CAPACITY_BYTES
        )

    def sum_(self, t: Tensor) -> Tensor:
        """Replace the contiguous tensor ``t`` (see :meth:`fits`) by its sum over the ranks; returns ``t``."""
        self.calls += 1
        self.kernels.local_sum_(t, self.region, self.rank, self.world, CAPACITY_BYTES, self.calls, self.timeout_s)
        return t


_STATE: dict[str, object] = {}
_SENT: list[Tensor] = []
"""The set-up's collective tensors, kept until the next set-up. Where gloo's worker thread drops the last reference to
a tensor Python has let go of, it needs the GIL; ``destroy_process_group`` holds the GIL while it joins that thread
(seen with torch 2.1.2: one hang in every 2-30 set-ups)."""


def world_local_sum() -> LocalSum | None:
    """The :class:`LocalSum` of the default process group, set up on first use (a collective call: every rank makes
    it at the same point, its first synchronised statistics), or None where it cannot or should not be used."""
    if not (dist.is_available() and dist.is_initialized()):
        return None
    group = dist.group.WORLD
    known = _STATE.get("group")
    if known is None or known() is not group:
        # a weak reference: a destroyed group is not kept alive here
        _STATE.update(group=weakref.ref(group), local=_set_up())
    return _STATE["local"]  # type: ignore[return-value]


def _set_up() -> LocalSum | None:
    _SENT.clear()
    if dist.get_backend() != "gloo":  # the same on every rank: no collective needed to agree
        return None
    rank, world = dist.get_rank(), dist.get_world_size()
    kernels = cpu_kernels()
    wanted = os.environ.get("NORM_NERF_LOCAL_SUM", "1") != "0" and kernels is not None and shm_available()
    size = kernels.local_sum_region_bytes(world, CAPACITY_BYTES) if kernels is not None else 0
    path = _create(size) if rank == 0 and wanted else None
    name = _broadcast_name(path)
    region = _map(name, size) if wanted else None
    if region is not None:
        kernels.local_sum_register(region, rank)
    agreed = _everyone(region is not None)  # every rank mapped rank 0's file and registered its process
    agreed = agreed and _everyone(kernels.local_sum_peers_alive(region, world))  # and sees the others' processes
    if path is not None:
        path.unlink(missing_ok=True)
    if not agreed:
        return None
    return LocalSum(region=region, name=name, rank=rank, world=world, kernels=kernels, timeout_s=_timeout_s())


def shm_available() -> bool:
    """Whether ``SHM_DIR`` exists and this process may make files in it."""
    return SHM_DIR.is_dir() and os.access(SHM_DIR, os.W_OK | os.X_OK)


def _broadcast_name(path: Path | None) -> str | None:
    """Rank 0's ``path`` (a file in ``SHM_DIR`` named by :func:`_create`) on every rank, None where rank 0 has none.

    A plain tensor broadcast of the name's hex digits."""
    digits = torch.zeros(_NAME_DIGITS, dtype=torch.uint8)
    if path is not None:
        digits.copy_(torch.frombuffer(bytearray(path.name.removeprefix(_PREFIX).encode()), dtype=torch.uint8))
    dist.broadcast(digits, src=0)
    _SENT.append(digits)
    if not bool(digits.any()):
        return None
    return str(SHM_DIR / (_PREFIX + bytes(digits.tolist()).decode()))


def _create(size: int) -> Path | None:
    """A new file of ``size`` zero bytes in ``SHM_DIR``, readable by this user only, or None when there is no room.

    The zeros are written, not only a length set, so that the pages exist now: a shared memory page that cannot be
    allocated later (``/dev/shm`` full) would kill the process with SIGBUS instead of raising. Zeros also start every
    rank's flag below the first call number."""
    path = SHM_DIR / f"{_PREFIX}{uuid.uuid4().hex}"
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except OSError:
        return None
    try:
        zeros = memoryview(bytes(size))
        while zeros:
            zeros = zeros[os.write(fd, zeros) :]
        return path
    except OSError:
        path.unlink(missing_ok=True)
        return None
    finally:
        os.close(fd)


def _everyone(ok: bool) -> bool:
    """Whether ``ok`` holds on every rank (one gloo all-reduce)."""
    flag = torch.tensor([1 if ok else 0], dtype=torch.int32)
    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    _SENT.append(flag)
    return bool(flag)


def _map(name: str | None, size: int) -> Tensor | None:
    """Rank 0's file mapped into this process, or None when it is not there (another machine) or unreadable."""
    if name is None or not Path(name).is_file() or Path(name).stat().st_size != size:
        return None
    try:
        return torch.from_file(name, shared=True, size=size, dtype=torch.uint8)
    except (OSError, RuntimeError):
        return None


def _timeout_s() -> float:
    """The default process group's timeout in seconds (``init_process_group(timeout=...)``), else the default."""
    try:
        return dist.group.WORLD._get_backend(torch.device("cpu")).options._timeout.total_seconds()
    except (AttributeError, RuntimeError):  # private API: older or newer torch
        return DEFAULT_TIMEOUT_S
