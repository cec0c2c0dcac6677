"""The fork server: a clean, preloaded interpreter that forks one sandboxed child per run.

Started by :class:`grader.sandbox.runner.Sandbox` as ``python -I -c <bootstrap>`` with a minimal
environment (no ``CNNLAB_*`` variables, no secret). It imports numpy, torch (optional), the
child-side grader modules (``grader.sandbox.harness``, ``grader.sandbox.harness_*``,
``grader.sandbox.child``, ``grader.sandbox.audit``, ``grader.sandbox.caseio``) and nothing else
of the grader, never ``cnnref``; then it answers requests, one at a time, as JSON lines on
stdin/stdout:

* ``{"op": "run", ...}``  ->  ``{"event": "started", "pid": N, "init": M}`` as soon as the child
  exists (``M``: the init of its PID namespace, 0 without one),
  then ``{"event": "exited", "pid": N, "code"|"signal": ..., "setup": ..., "cpu_s": ...,
  "maxrss_kb": ...}`` when it is gone. The server keeps the dead child as a zombie
  (``waitid(WNOWAIT)``) while it kills the child's process group, so the group id cannot
  have been reused, then reaps it.
* ``{"op": "ping"}``  ->  ``{"event": "pong"}``.

At start it works out which isolation layers this machine supports by trying them
(:func:`grader.sandbox.layers.prepare`) and prepares what it can once for all children (the
Landlock allow-list's descriptors, the seccomp filter); the ``ready`` message carries that
plan. Every child then puts the whole plan in place or fails its set-up.

The parent enforces the wall-clock limit by killing the child's process group (and the run's
init) itself.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import sys
import time
from typing import Any


def _preload_matplotlib() -> None:
    """matplotlib with the headless Agg backend and its font cache loaded (built once per
    machine in ``$MPLCONFIGDIR``, which the parent points at a cache folder of its own): a
    student's ``import matplotlib.pyplot`` is then free, reads no cache and starts no thread."""
    os.environ.setdefault("MPLBACKEND", "Agg")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.font_manager  # noqa: F401 - builds or reads the font cache now
        import matplotlib.pyplot as plt

        plt.figure().clf()
        plt.close("all")
    except Exception:  # noqa: BLE001 - no matplotlib: a student importing it gets the error
        pass


def _preload(preload_torch: bool, preload_optimizer: bool = True) -> list[str]:
    import collections  # noqa: F401 - common student imports, paid once here, not per child
    import dataclasses  # noqa: F401
    import encodings.cp437  # noqa: F401 - zipfile (np.load of .npz) needs it
    import functools  # noqa: F401
    import itertools  # noqa: F401
    import math  # noqa: F401
    import subprocess  # noqa: F401 - loads _posixsubprocess, which the child neuters
    import typing  # noqa: F401

    import numpy as np
    import numpy.lib.stride_tricks  # noqa: F401

    np.zeros((2, 2)) @ np.zeros((2, 2))
    if preload_torch:
        import torch
        import torch.nn.functional as F  # noqa: N812

        torch.set_num_threads(1)
        F.conv2d(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 3, 3)).sum()
        # The first optimizer step imports torch._dynamo (and sympy): ~2 s per child if
        # the server has not paid it once (only where an exercise trains).
        if preload_optimizer:
            weight = torch.nn.Parameter(torch.zeros(1))
            for opt in (torch.optim.SGD([weight], lr=0.1), torch.optim.Adam([weight], lr=0.1)):
                (weight * 2).sum().backward()
                opt.step()
    _preload_matplotlib()
    import importlib
    import pkgutil

    import grader.sandbox
    import grader.sandbox.child  # noqa: F401 - also imports grader.sandbox.harness, audit, caseio

    for info in pkgutil.iter_modules(grader.sandbox.__path__):
        if info.name.startswith("harness_"):
            importlib.import_module(f"grader.sandbox.{info.name}")
    return sorted(m for m in sys.modules if m == "grader" or m.startswith("grader."))


def _send(out: Any, message: dict[str, Any]) -> None:
    out.write(json.dumps(message) + "\n")
    out.flush()


#: Seconds past a run's wall limit after which the server kills the child itself.
BACKSTOP_MARGIN_S = 2.0


def _wait_for_exit(pid: int, limit: float) -> bool:
    """Wait up to ``limit`` seconds for child ``pid`` to exit (without reaping it).

    Returns whether it exited. Uses a pidfd where the kernel has them, else polls.
    """
    deadline = time.monotonic() + limit
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        fd = None
    try:
        while (remaining := deadline - time.monotonic()) > 0:
            if fd is not None:
                ready, _, _ = select.select([fd], [], [], remaining)
                if ready:
                    return True
            elif os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT | os.WNOHANG) is not None:
                return True
            else:
                time.sleep(0.01)
        return False
    finally:
        if fd is not None:
            os.close(fd)


class _Server:
    def __init__(self, config: dict[str, Any], grader_modules: list[str]) -> None:
        from grader.sandbox import layers

        self.grader_modules = grader_modules
        drop_to = config.get("drop_to")
        self.plan, self.res = layers.prepare(
            config.get("off", ()),
            config.get("forbidden", ()),
            tuple(drop_to) if drop_to else None,
            config.get("runs_dir") or os.getcwd(),
            config.get("extra_ro", ()),
            config.get("uid_why"),
            bool(config.get("lockdown")),
        )

    def ready(self) -> dict[str, Any]:
        with open("/proc/self/statm", "rb") as fh:
            vm = int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        dropped = self.res.landlock.dropped if self.res.landlock is not None else []
        return {
            "event": "ready",
            "pid": os.getpid(),
            "vm_bytes": vm,
            "modules": self.grader_modules,
            "plan": self.plan.to_json(),
            "dropped": dropped,
        }

    def run(self, req: dict[str, Any], out: Any) -> None:
        from grader.sandbox import processes
        from grader.sandbox.child import child_main

        req["policy"]["allowed_grader_modules"] = self.grader_modules
        wall = float(req["limits"].get("wall_s") or 0.0)
        read_fd, write_fd = os.pipe()
        t0 = time.monotonic()
        init = 0
        try:
            if self.res.pidns is not None:
                pid, init = self.res.pidns.fork(wall + BACKSTOP_MARGIN_S)
            else:
                pid = os.fork()
            spawned = time.monotonic() - t0
        except OSError as exc:
            os.close(read_fd)
            os.close(write_fd)
            _send(out, {"event": "error", "message": f"cannot start a child: {exc}"})
            return
        if pid == 0:  # the child
            try:
                os.close(read_fd)
                child_main(req, write_fd, self.plan, self.res)
            finally:
                os._exit(86)
        os.close(write_fd)
        _send(out, {"event": "started", "pid": pid, "init": init})
        if wall and not _wait_for_exit(pid, wall + BACKSTOP_MARGIN_S):
            # The parent kills at the wall limit; if it has not (it died, or was killed itself),
            # nothing else would ever stop a child that sleeps: the backstop does.
            processes.kill_group(pid)
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)  # dead, not yet reaped
        if init:  # the run's init takes every process of the namespace with it
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(init, signal.SIGKILL)
        processes.kill_group(pid)  # everything it started dies with it (same group)
        _, status, usage = os.wait4(pid, 0)
        t_reap = time.monotonic()
        if init:
            processes.kill_init(init)  # reaped only once the namespace is empty
        init_reap = time.monotonic() - t_reap
        wall = time.monotonic() - t0
        setup = b""
        while chunk := os.read(read_fd, 65536):
            setup += chunk
        os.close(read_fd)
        report: dict[str, Any] = {
            "event": "exited",
            "pid": pid,
            "wall_s": wall,
            "cpu_s": usage.ru_utime + usage.ru_stime,
            "maxrss_kb": usage.ru_maxrss,
            "spawn_s": spawned,
            "init_reap_s": init_reap,
            "setup": setup.decode("utf-8", errors="replace"),
            "code": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
            "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
        }
        _send(out, report)


def _drop_checkout_from_path() -> None:
    """The bootstrap put the folder holding ``grader/`` on ``sys.path``. When that folder is a
    source checkout (it holds ``cnnref/`` and ``solutions/``), the children need no more of
    it; when it is a site-packages folder (a wheel install), it stays: numpy, torch and their
    lazily imported dependencies live there (the Landlock allow-list keeps ``cnnref`` and the
    grader out of reach either way)."""
    import site
    import sysconfig

    repo = os.path.dirname(os.path.dirname(os.path.abspath(sys.modules["grader"].__file__)))
    sites = {os.path.realpath(p) for p in site.getsitepackages()}
    sites |= {os.path.realpath(sysconfig.get_paths()[k]) for k in ("purelib", "platlib")}
    if os.path.realpath(repo) in sites:
        return
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != repo]


def main() -> None:
    """Serve until stdin closes. ``argv[1]``: the JSON configuration from the parent."""
    config = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    inp, out = sys.stdin, sys.stdout
    # Nothing printed by a library may corrupt the protocol: stdout is ours alone.
    sys.stdout = sys.stderr
    if config.get("mplconfigdir"):
        os.environ["MPLCONFIGDIR"] = config["mplconfigdir"]
    grader_modules = _preload(
        bool(config.get("preload_torch", True)), bool(config.get("preload_optimizer", True))
    )
    _drop_checkout_from_path()
    import gc

    gc.freeze()  # children touch fewer of the server's pages (fewer copies, less memory)
    server = _Server(config, grader_modules)
    _send(out, server.ready())
    for line in inp:
        req = json.loads(line)
        if req.get("op") == "ping":
            _send(out, {"event": "pong"})
        elif req.get("op") == "run":
            server.run(req, out)
        else:
            _send(out, {"event": "error", "message": f"unknown op {req.get('op')!r}"})


if __name__ == "__main__":
    main()
