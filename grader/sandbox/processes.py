"""Layer: process containment. Nothing the student started outlives the run.

**PID namespace** (root, or ``CAP_SYS_ADMIN``): for every run the fork server creates a fresh
PID namespace whose first process, its *init* (PID 1), is a tiny ``sleep`` that ends by itself
shortly after the run's wall limit. The student's child is forked into that namespace as
PID 2. When the run ends — finished, timed out, or the server gone — the init is killed (or
runs out), and the kernel kills every process left in the namespace: ``setsid``, double
forks and daemons included. Inside, the child sees only its own namespace (with its own
``/proc``, see :mod:`grader.sandbox.filesystem`): no other process can be named, let alone
signalled. (PID 1 is a separate program, not the student's child, because the kernel shields
an init from its own namespace's signals: a child that is PID 1 would not die of its own
``abort()``.)

**Fallback — the process group**: without namespaces (Docker's default, Gradescope, an
unprivileged user) the child leads its own session and process group, and the whole group is
killed after every run, while the dead child is still a zombie (so the group id cannot have
been reused). The system-call filter (:mod:`grader.sandbox.syscalls`) refuses ``setsid``,
``setpgid`` and any new process, so nothing can leave the group.

Child side: imports nothing of the grader's parent side.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import signal

from grader.sandbox import _libc

#: Seconds the run's init outlives the run's wall limit (then it ends, and with it the run).
INIT_MARGIN_S = 5.0


class PidNamespaces:
    """Server side: forks each child as PID 2 of a fresh PID namespace.

    Raises OSError from the constructor when this machine cannot (then the caller falls back
    to the process group).
    """

    def __init__(self) -> None:
        sleep = shutil.which("sleep", path="/usr/bin:/bin")
        if sleep is None:
            raise OSError(2, "no sleep program to serve as the run's init")
        self.sleep = sleep
        self.own = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)

    def fork(self, wall_s: float) -> tuple[int, int]:
        """``(child pid, init pid)`` in the server; ``(0, 0)`` in the child (which is PID 2).

        Raises OSError when the namespace or its init cannot be made (nothing is left).
        """
        _libc.unshare(_libc.CLONE_NEWPID)
        init = 0
        try:
            seconds = str(math.ceil(max(1.0, wall_s) + INIT_MARGIN_S))
            init = os.posix_spawn(
                self.sleep,
                ["sleep", seconds],
                {},
                file_actions=[
                    (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDWR, 0),
                    (os.POSIX_SPAWN_DUP2, 0, 1),
                    (os.POSIX_SPAWN_DUP2, 0, 2),
                ],
                setsid=True,
                setsigdef=(signal.SIGTERM, signal.SIGINT, signal.SIGHUP),
            )
            pid = os.fork()
        except BaseException:
            if init:
                kill_init(init)
            _libc.setns(self.own, _libc.CLONE_NEWPID)
            raise
        if pid == 0:
            return 0, 0
        _libc.setns(self.own, _libc.CLONE_NEWPID)  # the server's next children: its own ns
        return pid, init

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.own)


def kill_init(init: int) -> None:
    """Kill a run's init and reap it: the kernel then kills everything in its namespace."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(init, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(init, 0)


def kill_group(pid: int) -> None:
    """SIGKILL the process group led by ``pid`` (and ``pid`` itself)."""
    for kill in (os.killpg, os.kill):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            kill(pid, signal.SIGKILL)
