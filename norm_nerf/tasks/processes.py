"""Child processes that live and die with their parent, and a folder lock held while they run (``norm-inr table``).

* :func:`run_commands` runs commands as parallel child processes. On Linux each child asks the kernel for SIGKILL
  when its parent dies (``prctl(PR_SET_PDEATHSIG)``), so a ``kill -9`` of the parent ends them too; all are started
  from the calling thread, as :func:`_die_with_parent` explains. The children stay in the parent's process group, so
  a Ctrl-C in the terminal reaches them as well; an exception in the parent (KeyboardInterrupt, or SystemExit from
  :func:`exit_on_sigterm`) stops the running children before it propagates.
* :func:`lock_folder` takes ``fcntl.flock`` on ``<folder>/.table.lock`` (which holds the holder's PID), so a second
  run on the same folder is refused naming that PID. The kernel releases the lock when every process holding it has
  ended, so a holder that died never blocks a later run; the children hold it too (it is passed to them), so the
  folder stays locked while any of them still runs.
"""

from __future__ import annotations

import ctypes
import errno
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from norm_nerf.utils.atomic import NoSpaceError

__all__ = ["FolderBusyError", "LOCK_NAME", "Command", "exit_on_sigterm", "lock_folder", "run_commands"]

LOCK_NAME = ".table.lock"
"""The lock file in a locked folder."""
_PR_SET_PDEATHSIG = 1
"""``prctl`` option from ``<linux/prctl.h>``: the signal a process gets when its parent dies."""
_POLL_S = 0.1
"""How often :func:`run_commands` looks for ended children."""
_STOP_GRACE_S = 5.0
"""How long a child stopped with SIGTERM has to end before SIGKILL."""


class FolderBusyError(ValueError):
    """Another process holds a folder's lock; a ValueError so that the command line reports it in one line."""


@dataclass
class Command:
    """One child process to run: its command line, where its output goes and its environment."""

    args: list[str]
    """The command line."""
    log: Path
    """File that receives the child's stdout and stderr (replaced)."""
    env: dict[str, str]
    """The child's environment."""


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity (``taskset``, a cgroup CPU set) where the platform
    reports one, else ``os.cpu_count()``."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def _die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the kernel SIGKILL the child when its parent dies (Linux; None elsewhere).

    PR_SET_PDEATHSIG fires when the *thread* that forked the child ends (prctl(2)), not only the process. A pool
    worker thread that started a child could end while the parent runs on and take the child with it, so
    :func:`run_commands` forks from the calling thread, which outlives every child it starts. The libc function is
    looked up here, in the parent, so that the forked child only calls it. If the parent died between fork and
    prctl, the child is already re-parented and ends itself.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGKILL)

    return preexec


def _start(command: Command, preexec: Callable[[], None] | None, keep_fds: tuple[int, ...]) -> subprocess.Popen:
    """Start one child, its output to its log (the parent's copy of the log is closed at once)."""
    command.log.parent.mkdir(parents=True, exist_ok=True)
    with open(command.log, "w") as log:
        # no start_new_session: the child stays in the parent's process group, so a Ctrl-C reaches it
        return subprocess.Popen(
            command.args, stdout=log, stderr=subprocess.STDOUT, env=command.env, preexec_fn=preexec, pass_fds=keep_fds
        )


def _stop(procs: list[subprocess.Popen]) -> None:
    """SIGTERM the running children, then SIGKILL those still running after :data:`_STOP_GRACE_S`."""
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    deadline = time.monotonic() + _STOP_GRACE_S
    for proc in procs:
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_commands(
    commands: Sequence[Command], jobs: int, done: Callable[[int, int], None], keep_fds: tuple[int, ...] = ()
) -> None:
    """Run ``commands``, at most ``jobs`` at a time; ``done(index, returncode)`` as each ends (in the calling thread).

    Every child is started from the calling thread (see :func:`_die_with_parent`) and gets the file descriptors
    ``keep_fds`` (a folder lock). If anything interrupts the loop, the running children are stopped first.
    """
    preexec = _die_with_parent()
    pending = list(enumerate(commands))
    running: dict[int, subprocess.Popen] = {}
    try:
        while pending or running:
            while pending and len(running) < jobs:
                index, command = pending.pop(0)
                running[index] = _start(command, preexec, keep_fds)
            ended = [(i, p.returncode) for i, p in running.items() if p.poll() is not None]
            for index, returncode in ended:
                del running[index]
                done(index, returncode)
            if not ended:
                time.sleep(_POLL_S)
    finally:
        _stop(list(running.values()))


@contextmanager
def exit_on_sigterm() -> Iterator[None]:
    """Within the block, SIGTERM raises ``SystemExit(143)`` in the main thread, so that clean-up (stopping the
    children) runs; Python's default for SIGTERM is to die at once. Elsewhere than the main thread: no change."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum: int, frame: object) -> None:
        print("terminated (SIGTERM); stopping the running cells", file=sys.stderr)
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _holder(fd: int) -> str:
    """``PID n`` of the lock's holder as its file records it (it writes it just after locking; waits up to 1 s)."""
    for _ in range(10):
        text = os.pread(fd, 32, 0).decode(errors="replace").strip()
        if text.isdigit():
            return f"PID {text}"
        time.sleep(0.1)
    return "PID unknown"


def _lock(fd: int, folder: Path) -> None:
    """``flock`` ``fd`` without waiting; a held lock is :class:`FolderBusyError` naming the holder."""
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(fd)
        raise FolderBusyError(
            f"{folder}: another norm-inr table ({holder}) is running in this folder, or cells it started still run; "
            "wait for it to end or choose another --out"
        ) from None


@contextmanager
def lock_folder(folder: Path) -> Iterator[int | None]:
    """Hold ``<folder>/.table.lock`` for the block; yields its file descriptor (None where ``fcntl`` is missing).

    Raises :class:`FolderBusyError` naming the holder's PID when another process holds it.
    """
    try:
        import fcntl  # noqa: F401  (POSIX only)
    except ImportError:
        yield None
        return
    path = folder / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        _lock(fd, folder)
        _record_pid(fd, path)
        yield fd
    finally:
        os.close(fd)


def _record_pid(fd: int, path: Path) -> None:
    """Write this process's PID into the lock file, in place at a fixed width, so that a file an earlier run left
    needs no new disk space. A full disk is :class:`~norm_nerf.utils.atomic.NoSpaceError`; a lock file just made is
    then removed rather than left empty."""
    try:
        os.pwrite(fd, f"{os.getpid():>10}\n".encode(), 0)
    except OSError as err:
        if err.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        if os.fstat(fd).st_size == 0:
            path.unlink(missing_ok=True)
        raise NoSpaceError(path) from None
