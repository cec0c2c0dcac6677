"""Layer: privileges. The child keeps no capability, and runs as an unprivileged uid when it can.

:func:`drop_capabilities` empties the bounding set (no later ``execve`` could regain a
capability), the ambient set, then the effective, permitted and inheritable sets, and locks
the "securebits" so that uid 0 regains nothing either. A child that still runs as uid 0 then
has no more power than an ordinary user who happens to own root's files: it cannot override
file permissions, signal other users' processes, mount, load modules or change its limits.

:func:`become` switches to an unprivileged uid/gid (``nobody`` by default), chosen by the
parent only when the Python runtime and the packages the child needs are readable by that
user (:func:`runtime_readable_by_others`): a child that cannot read the standard library
cannot import anything lazily. Where they are not (a pyenv under a ``0700`` ``/root``), the
child stays uid 0 without capabilities and the other layers hold the line.

Child side: imports nothing of the grader's parent side.
"""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Iterable
from pathlib import Path

from grader.sandbox import _libc

SECBIT_NOROOT = 1 << 0
SECBIT_NOROOT_LOCKED = 1 << 1
SECBIT_NO_SETUID_FIXUP = 1 << 2
SECBIT_NO_SETUID_FIXUP_LOCKED = 1 << 3
SECBIT_KEEP_CAPS_LOCKED = 1 << 5
SECBIT_NO_CAP_AMBIENT_RAISE = 1 << 6
SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED = 1 << 7
_CAP_VERSION_3 = 0x20080522


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def all_capabilities(pid: str = "self") -> dict[str, int]:
    """Every capability set of a process (``CapEff``, ``CapPrm``, ``CapBnd``...), one read."""
    out = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("Cap"):
                name, value = line.split(":", 1)
                out[name] = int(value.split()[0], 16)
    return out


def capabilities(kind: str = "CapEff", pid: str = "self") -> int:
    """A capability set of a process (``CapEff``, ``CapPrm``, ``CapBnd``...) as an integer."""
    return all_capabilities(pid).get(kind, 0)


def _last_cap() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap", encoding="ascii") as fh:
            return int(fh.read())
    except OSError:
        return 63


CAP_SETPCAP = 8


#: Read once, in the fork server (children need no /proc for it).
LAST_CAP = _last_cap()


def drop_bounding_set() -> None:
    """Empty the bounding and ambient sets (no later ``execve`` could regain a capability).
    Needs ``CAP_SETPCAP``: call it before switching uid; a no-op without it."""
    if not capabilities("CapEff") & (1 << CAP_SETPCAP):
        return
    _empty_bounding_and_ambient()


def _empty_bounding_and_ambient() -> None:
    """Drop every capability of the bounding set and clear the ambient set (needs
    ``CAP_SETPCAP``). Raises OSError."""
    for cap in range(LAST_CAP + 1):
        try:
            _libc.prctl(_libc.PR_CAPBSET_DROP, cap)
        except OSError as exc:
            if exc.errno != errno.EINVAL:  # a capability this kernel does not have
                raise
    _libc.prctl(_libc.PR_CAP_AMBIENT, _libc.PR_CAP_AMBIENT_CLEAR_ALL)


def drop_capabilities() -> None:
    """Empty every capability set of this process, bounding set included, and (for uid 0)
    lock the securebits so that root regains nothing. Raises OSError."""
    caps = all_capabilities()
    held = caps.get("CapEff") or caps.get("CapPrm")
    if not held and (os.geteuid() != 0 or caps.get("CapBnd", 0) == 0):
        return  # unprivileged: nothing left to drop (the bounding set went before setuid)
    if not caps.get("CapEff", 0) & (1 << CAP_SETPCAP):
        _capset_zero()
        return
    _libc.prctl(
        _libc.PR_SET_SECUREBITS,
        SECBIT_NOROOT
        | SECBIT_NOROOT_LOCKED
        | SECBIT_NO_SETUID_FIXUP
        | SECBIT_NO_SETUID_FIXUP_LOCKED
        | SECBIT_KEEP_CAPS_LOCKED
        | SECBIT_NO_CAP_AMBIENT_RAISE
        | SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED,
    )
    _empty_bounding_and_ambient()
    _capset_zero()


def _capset_zero() -> None:
    header = _CapHeader(_CAP_VERSION_3, 0)
    data = (_CapData * 2)()
    _libc.syscall(_libc.nr("capset"), ctypes.byref(header), data, what="capset")
    caps = all_capabilities()
    if caps.get("CapEff") or caps.get("CapPrm"):
        raise OSError(errno.EPERM, "capabilities are still held after dropping them")
    if os.geteuid() == 0 and caps.get("CapBnd"):
        raise OSError(errno.EPERM, "the bounding set is not empty")


def become(uid: int, gid: int, workdir: str) -> None:
    """Give ``workdir`` (and what is in it) to ``uid`` and switch to ``uid``/``gid`` for good
    (the kernel then clears every capability). Call after :func:`drop_bounding_set` and
    before :func:`drop_capabilities` (it needs ``CAP_CHOWN``, ``CAP_SETUID``...)."""
    for entry in os.scandir(workdir):
        os.chown(entry.path, uid, gid, follow_symlinks=False)
    os.chown(workdir, uid, gid)
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    if os.getresuid() != (uid, uid, uid) or os.getresgid() != (gid, gid, gid):
        raise OSError(errno.EPERM, "could not drop to the unprivileged user")


def _readable_by_others(path: Path) -> bool:
    try:
        p = path.resolve()
        mode = p.stat().st_mode
        if not mode & 0o004 or (p.is_dir() and not mode & 0o001):
            return False
        return all(parent.stat().st_mode & 0o001 for parent in p.parents)
    except OSError:
        return False


def runtime_readable_by_others(paths: Iterable[str | os.PathLike[str]]) -> bool:
    """Whether another user could read every one of ``paths`` (each folder on the way
    searchable by others): the test for running the child as ``nobody``."""
    return all(_readable_by_others(Path(p)) for p in paths)
