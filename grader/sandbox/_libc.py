"""The few raw Linux calls the isolation layers need, through ``ctypes`` on the C library.

Python 3.11 has no ``os.unshare``/``os.setns``/``mount``/``prctl`` and no binding of the
Landlock or capability system calls, so the layer modules use these thin wrappers. Every
wrapper raises :class:`OSError` with the call's errno; nothing here is specific to cnnlab.

Child side: imported by the fork server before it forks; imports nothing of the grader.
"""

from __future__ import annotations

import ctypes
import os
import platform

MACHINE = platform.machine()

#: System call numbers that differ between the two architectures cnnlab supports.
#: (Landlock's 444-446, ``mount_setattr`` 442, ``open_tree`` 428, ``move_mount`` 429 and
#: ``pidfd_open`` 434 come from the generic table and are the same on both.)
_NR = {
    "x86_64": {"setns": 308, "capset": 126, "seccomp": 317, "unshare": 272},
    "aarch64": {"setns": 268, "capset": 91, "seccomp": 277, "unshare": 97},
}
NR_landlock_create_ruleset = 444
NR_landlock_add_rule = 445
NR_landlock_restrict_self = 446
NR_open_tree = 428
NR_move_mount = 429
NR_mount_setattr = 442

#: Whether this architecture's numbers are known (else the layers that need them are missing).
SUPPORTED = MACHINE in _NR

try:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    libc.prctl.argtypes += [ctypes.c_ulong]
    libc.prctl.restype = ctypes.c_int
    libc.unshare.argtypes = [ctypes.c_int]
    libc.unshare.restype = ctypes.c_int
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p]
    libc.mount.argtypes += [ctypes.c_ulong, ctypes.c_void_p]
    libc.mount.restype = ctypes.c_int
except (OSError, AttributeError):  # not glibc/musl on Linux: every layer that needs it is missing
    libc = None


def nr(name: str) -> int:
    """This architecture's number of system call ``name`` (``KeyError`` if unknown)."""
    return _NR[MACHINE][name]


def fail(what: str) -> OSError:
    err = ctypes.get_errno()
    return OSError(err, f"{what}: {os.strerror(err)}")


def syscall(number: int, *args: object, what: str = "syscall") -> int:
    """``syscall(number, *args)``; raises OSError when it returns a negative value."""
    if libc is None:
        raise OSError(38, f"{what}: no C library")
    ret = libc.syscall(ctypes.c_long(number), *args)
    if ret < 0:
        raise fail(what)
    return int(ret)


def prctl(option: int, a2: int = 0, a3: int = 0, a4: int = 0, a5: int = 0) -> int:
    if libc is None:
        raise OSError(38, "prctl: no C library")
    ret = libc.prctl(option, a2, a3, a4, a5)
    if ret < 0:
        raise fail(f"prctl({option})")
    return ret


PR_SET_PDEATHSIG = 1
PR_GET_SECCOMP = 21
PR_CAPBSET_DROP = 24
PR_SET_SECUREBITS = 28
PR_SET_NO_NEW_PRIVS = 38
PR_GET_NO_NEW_PRIVS = 39
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4


def no_new_privs() -> None:
    """``PR_SET_NO_NEW_PRIVS``: no exec can ever grant privileges again (needed by Landlock
    and seccomp for an unprivileged caller)."""
    prctl(PR_SET_NO_NEW_PRIVS, 1)


def unshare(flags: int) -> None:
    if libc is None:
        raise OSError(38, "unshare: no C library")
    if libc.unshare(flags) < 0:
        raise fail(f"unshare({flags:#x})")


def setns(fd: int, nstype: int) -> None:
    syscall(nr("setns"), ctypes.c_int(fd), ctypes.c_int(nstype), what="setns")


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None):
    if libc is None:
        raise OSError(38, "mount: no C library")

    def enc(s: str | None) -> bytes | None:
        return None if s is None else s.encode()

    if libc.mount(enc(source), enc(target), enc(fstype), flags, enc(data)) < 0:
        raise fail(f"mount {fstype or source} on {target}")


CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
CLONE_THREAD = 0x00010000
