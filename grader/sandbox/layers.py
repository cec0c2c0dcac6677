"""Which isolation layers a child gets, and putting them in place after the fork.

The fork server finds out once, at start, which layers this machine supports by *trying*
them in a throw-away child (:func:`probe`): the result is a :class:`Plan`. From then on every
child must put every layer of the plan in place (:func:`enter`) before any student code runs,
or it reports a set-up failure and the run is a grader failure — never a silently weaker run.

Order in the child (each step needs the privileges the next ones drop): own session; the
mount, network and IPC namespaces with the private mounts; resource limits; the unprivileged
uid; no capabilities; the Landlock allow-list; the seccomp filter. The PID namespace is made
by the server around the fork (:mod:`grader.sandbox.processes`). The audit hook comes last,
in :mod:`grader.sandbox.child`.

Layers can be switched off for tests and ``cnnlab doctor`` only: ``Sandbox(layers_off=...)``
or the environment variable :data:`LAYERS_OFF_ENV` (comma-separated names of :data:`LAYERS`).

Child side: imports nothing of the grader's parent side.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from grader.sandbox import _libc, filesystem, limits, privileges, processes, syscalls

#: Every layer, in the order a reader meets them in docs/security.md.
LAYERS = (
    "landlock",
    "lockdown",
    "mount_ns",
    "pid_ns",
    "net_ns",
    "ipc_ns",
    "seccomp",
    "capabilities",
    "uid",
    "rlimits",
    "audit",
)
#: What each layer is, in a few words (``cnnlab doctor``).
DESCRIPTIONS = {
    "landlock": "filesystem allow-list (Landlock)",
    "lockdown": "single-use container: reference locked away, child unprivileged",
    "mount_ns": "private mounts: read-only /, own /tmp, /dev/shm, /proc",
    "pid_ns": "PID namespace per run (everything dies with the run)",
    "net_ns": "network namespace without interfaces",
    "ipc_ns": "IPC namespace (SysV objects die with the run)",
    "seccomp": "system-call filter (seccomp)",
    "capabilities": "no capabilities (bounding set too)",
    "uid": "unprivileged uid",
    "rlimits": "resource limits (CPU, memory, files, processes)",
    "audit": "in-process audit hook (a convenience, not a barrier)",
}
#: The layers that keep the reference and classmates' files unreadable (either is enough).
FILESYSTEM_LAYERS = ("landlock", "lockdown")
LAYERS_OFF_ENV = "CNNLAB_SANDBOX_LAYERS_OFF"


def layers_off_from_env() -> frozenset[str]:
    raw = os.environ.get(LAYERS_OFF_ENV, "")
    names = {n.strip() for n in raw.split(",") if n.strip()}
    unknown = names - set(LAYERS)
    if unknown:
        raise ValueError(f"${LAYERS_OFF_ENV}: unknown layer(s) {sorted(unknown)}; known: {LAYERS}")
    return frozenset(names)


@dataclass
class Plan:
    """The layers every child of a fork server gets.

    Attributes:
        on: ``{layer: True}`` for each layer every child must put in place.
        why_not: ``{layer: reason}`` for each layer that is not on.
        landlock_abi: the kernel's Landlock ABI (0: none).
        uid: ``[uid, gid]`` the child switches to, or ``None``.
    """

    on: dict[str, bool] = field(default_factory=dict)
    why_not: dict[str, str] = field(default_factory=dict)
    landlock_abi: int = 0
    uid: list[int] | None = None

    def has(self, layer: str) -> bool:
        return bool(self.on.get(layer))

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Plan:
        return cls(**data)

    def missing(self, layer: str, reason: str) -> None:
        self.on.pop(layer, None)
        self.why_not[layer] = reason


@dataclass
class Resources:
    """What the server prepared once for its children (never sent anywhere)."""

    runs_dir: str = ""
    keep_ro: list[str] = field(default_factory=list)
    landlock: filesystem.Prepared | None = None
    pidns: processes.PidNamespaces | None = None
    bpf_pid2: bytes | None = None


def _ns_flags(plan: Plan) -> int:
    flags = 0
    if plan.has("mount_ns"):
        flags |= _libc.CLONE_NEWNS
    if plan.has("net_ns"):
        flags |= syscalls.NETWORK_NAMESPACE
    if plan.has("ipc_ns"):
        flags |= _libc.CLONE_NEWIPC
    return flags


class LayerError(Exception):
    """A layer of the plan could not be put in place in the child (a grader failure)."""


#: Seconds each set-up step took in this child (``namespaces`` is the one ``unshare`` call
#: for the mount, network and IPC namespaces); reported to the parent for the benchmark.
TIMES: dict[str, float] = {}


def enter(
    plan: Plan,
    res: Resources,
    workdir: str,
    rlimits: dict[str, Any] | None,
    after_mounts: Any = None,
    *args: Any,
) -> list[str]:
    """In a freshly forked child: put every layer of ``plan`` in place, in order.

    ``after_mounts(*args)`` runs once the namespaces and mounts are in place and before the
    limits and privileges are dropped (the child's own files and descriptors).

    Returns the layers in place. Raises :class:`LayerError` naming the layer that failed: the
    caller reports it as a set-up failure (a grader failure).
    """
    done: list[str] = []

    def step(layer: str, fn: Any, *args: Any) -> None:
        t0 = time.perf_counter()
        try:
            fn(*args)
        except Exception as exc:  # noqa: BLE001 - re-raised with the layer's name
            raise LayerError(f"layer {layer}: {exc}") from exc
        TIMES[layer] = time.perf_counter() - t0
        done.append(layer)

    os.setsid()
    _libc.prctl(_libc.PR_SET_PDEATHSIG, 9)  # the server gone: SIGKILL (the init ends anyway)
    if plan.has("pid_ns"):
        if os.getpid() != 2:
            raise LayerError(f"layer pid_ns: the child is pid {os.getpid()}, not 2")
        done.append("pid_ns")
    flags = _ns_flags(plan)
    if flags:
        step("namespaces", _libc.unshare, flags)
        done.pop()
        done += [n for n in ("net_ns", "ipc_ns") if plan.has(n)]
    TIMES.pop("mount_ns", None)
    if plan.has("mount_ns"):
        keep = res.runs_dir or os.path.dirname(workdir)
        step("mount_ns", filesystem.private_mounts, keep, plan.has("pid_ns"), res.keep_ro)
    if after_mounts is not None:
        after_mounts(*args)
    if rlimits is not None and plan.has("rlimits"):
        step("rlimits", limits.set_rlimits, rlimits)
    if plan.uid is not None and plan.has("uid"):
        if plan.has("capabilities"):
            step("bounding_set", privileges.drop_bounding_set)
            done.pop()
        step("uid", privileges.become, plan.uid[0], plan.uid[1], workdir)
    if plan.has("lockdown"):  # the parent locked the reference away; it holds for non-root
        if os.geteuid() == 0:
            raise LayerError("layer lockdown: the child still runs as root")
        done.append("lockdown")
    if plan.has("capabilities"):
        step("capabilities", privileges.drop_capabilities)
    if plan.has("landlock"):
        if res.landlock is None:
            raise LayerError("layer landlock: the allow-list was not prepared")
        step("landlock", filesystem.restrict, res.landlock)
    if plan.has("seccomp"):
        bpf = res.bpf_pid2 if os.getpid() == 2 and res.bpf_pid2 else None
        if bpf is None:
            bpf = syscalls.build(os.getpid())[0]
        step("seccomp", syscalls.load, bpf)
    return done


def prepare(
    off: Iterable[str],
    forbidden: Iterable[str],
    drop_to: tuple[int, int] | None,
    runs_dir: str,
    extra_ro: Iterable[str] = (),
    uid_why: str | None = None,
    locked: bool = False,
) -> tuple[Plan, Resources]:
    """Server side, once: what this machine supports (minus ``off``), and the resources.

    ``runs_dir`` is the folder that holds the current run's folder (and nothing else): the
    only place a child may write.

    Each namespace and layer is tried for real in a throw-away child (:func:`_probe_child`).
    """
    off = frozenset(off)
    plan = Plan()
    res = Resources(runs_dir=runs_dir, keep_ro=filesystem.runtime_under_covered())
    for name in off:
        plan.why_not[name] = "switched off (tests/doctor)"
    want = [n for n in LAYERS if n not in off]
    plan.on = {n: True for n in want}
    if _libc.libc is None or not _libc.SUPPORTED:
        for name in ("landlock", "mount_ns", "pid_ns", "net_ns", "ipc_ns", "seccomp"):
            if name in plan.on:
                plan.missing(name, f"no raw system calls on {_libc.MACHINE}")
    if plan.has("landlock"):
        abi = filesystem.abi_version()
        if abi <= 0:
            plan.missing("landlock", "the kernel has no Landlock (Linux 5.13+), or it is blocked")
        else:
            plan.landlock_abi = abi
            rules, dropped = filesystem.allow_list(list(forbidden), extra_ro=list(extra_ro))
            try:
                res.landlock = filesystem.prepare(rules, abi, runs_dir, dropped)
            except OSError as exc:
                plan.missing("landlock", f"cannot build the ruleset ({exc})")
    if plan.has("seccomp"):
        why = syscalls.available()
        if why:
            plan.missing("seccomp", why)
    if "lockdown" in plan.on and not (locked and drop_to is not None):
        plan.missing(
            "lockdown",
            "only in a single-use grading container (the Gradescope autograder) whose child "
            "runs as an unprivileged uid",
        )
    if drop_to is None and "uid" in plan.on:
        plan.missing("uid", uid_why or "not root, or the runtime is not readable by 'nobody'")
    elif drop_to is not None and "uid" in plan.on:
        plan.uid = [drop_to[0], drop_to[1]]
    results = _probe_child(plan, res)
    for name, reason in results.items():
        if reason and name in plan.on:
            plan.missing(name, reason)
    if plan.has("pid_ns"):
        try:
            res.pidns = processes.PidNamespaces()
        except OSError as exc:
            plan.missing("pid_ns", str(exc))
    if plan.has("seccomp") and plan.has("pid_ns"):
        res.bpf_pid2 = syscalls.build(2)[0]
    return plan, res


def _probe_child(plan: Plan, res: Resources) -> dict[str, str]:
    """Try the namespaces, the mounts and the layers in a forked child; ``{layer: why not}``
    (an empty reason: it works). The PID namespace is tried in the server itself."""
    out: dict[str, str] = {}
    if plan.has("pid_ns"):
        try:
            pidns = processes.PidNamespaces()
            pid, init = pidns.fork(1.0)
            if pid == 0:
                os._exit(0 if os.getpid() == 2 else 1)
            _, status = os.waitpid(pid, 0)
            processes.kill_init(init)
            pidns.close()
            if status != 0:
                out["pid_ns"] = "the child did not get pid 2 in its namespace"
        except OSError as exc:
            out["pid_ns"] = f"cannot make a PID namespace ({exc.strerror or exc})"
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the throw-away child
        report: dict[str, str] = {}
        try:
            os.close(read_fd)
            for name, flag in (
                ("mount_ns", _libc.CLONE_NEWNS),
                ("net_ns", _libc.CLONE_NEWNET),
                ("ipc_ns", _libc.CLONE_NEWIPC),
            ):
                if plan.has(name):
                    try:
                        _libc.unshare(flag)
                        report[name] = ""
                    except OSError as exc:
                        report[name] = f"cannot unshare ({exc.strerror or exc})"
            if report.get("mount_ns") == "":
                try:
                    filesystem.private_mounts(res.runs_dir, False, res.keep_ro)
                except OSError as exc:
                    report["mount_ns"] = f"cannot set up the private mounts ({exc})"
            if plan.has("capabilities"):
                try:
                    privileges.drop_capabilities()
                    report["capabilities"] = ""
                except OSError as exc:
                    report["capabilities"] = f"cannot drop capabilities ({exc})"
            if plan.has("landlock") and res.landlock is not None:
                try:
                    filesystem.restrict(res.landlock)
                    report["landlock"] = ""
                except OSError as exc:
                    report["landlock"] = f"cannot restrict ({exc})"
            if plan.has("seccomp"):
                try:
                    syscalls.load(syscalls.build(os.getpid())[0])
                    report["seccomp"] = ""
                except OSError as exc:
                    report["seccomp"] = f"cannot load a filter ({exc})"
            os.write(write_fd, json.dumps(report).encode())
        finally:
            os._exit(0)
    os.close(write_fd)
    data = b""
    while chunk := os.read(read_fd, 65536):
        data += chunk
    os.close(read_fd)
    os.waitpid(pid, 0)
    try:
        out.update(json.loads(data or b"{}"))
    except ValueError:
        out["seccomp"] = "the probe child died"
    return out


def filesystem_layer_probe() -> str | None:
    """Whether the filesystem layer (Landlock) holds here, tried for real and cheaply: a
    forked child restricts itself to nothing and must then be refused reading ``/``.

    Returns ``None`` when it holds, else why not (for the ``--allow-weak-sandbox`` gate of
    ``cnnlab batch``, the Gradescope autograder and ``cnnlab grade``'s one-line note).
    """
    try:
        off = layers_off_from_env()
    except ValueError as exc:
        return str(exc)
    if "landlock" in off:
        return f"switched off (${LAYERS_OFF_ENV})"
    abi = filesystem.abi_version()
    if abi <= 0 and os.environ.get(filesystem.SINGLE_USE_ENV) == "1" and lockdown_possible():
        return None  # the single-use container locks the reference away instead
    if abi <= 0:
        return "the kernel has no Landlock (Linux 5.13+ with landlock in lsm=), or it is blocked"
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(read_fd)
            ruleset = filesystem.create_ruleset(abi)
            _libc.no_new_privs()
            filesystem.restrict_self(ruleset)
            try:
                os.listdir("/")
            except PermissionError:
                code = 0
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            os.write(write_fd, str(exc).encode()[:500])
        finally:
            os._exit(code)
    os.close(write_fd)
    message = b""
    while chunk := os.read(read_fd, 4096):
        message += chunk
    os.close(read_fd)
    _, status = os.waitpid(pid, 0)
    if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
        return None
    return f"Landlock could not be applied ({message.decode(errors='replace') or 'no refusal'})"


def lockdown_possible() -> bool:
    """Whether this process could lock the reference away and run children as ``nobody``:
    root, a ``nobody`` user, and a Python runtime that ``nobody`` can read."""
    import pwd

    import numpy

    if os.geteuid() != 0:
        return False
    try:
        pwd.getpwnam("nobody")
    except KeyError:
        return False
    return privileges.runtime_readable_by_others(
        [os.path.dirname(os.__file__), os.path.dirname(numpy.__file__)]
    )
