"""Layer: the system-call filter (seccomp, with ``no_new_privs``) and the empty network namespace.

The filter is written with libseccomp (through ``pyseccomp``, its ctypes binding: the syscall
numbers of each architecture come from libseccomp, not from a table of ours). It is compiled
to BPF once in the fork server (:func:`build`) and each child only loads those bytes
(:func:`load`, one ``seccomp(2)`` call). Default: allow; refused with ``EPERM``:

* inspecting or signalling other processes: ``ptrace``, ``process_vm_readv``/``writev``,
  ``pidfd_open``/``pidfd_send_signal``/``pidfd_getfd``, ``kcmp``, ``process_madvise``;
  ``kill``/``tgkill``/``tkill`` aimed at any pid but the child's own; ``prlimit64``,
  ``sched_set*``, ``setpriority`` and ``ioprio_set`` on another process;
* starting processes or programs: ``fork``, ``vfork``, ``clone`` without ``CLONE_THREAD``
  (``clone3`` answers ``ENOSYS`` so that the C library falls back to ``clone``), ``execve``,
  ``execveat``; leaving the process group: ``setsid``, ``setpgid``;
* special files and the mount table: ``mknod``/``mknodat`` (so ``mkfifo``), ``mount``,
  ``umount2``, the new mount API, ``pivot_root``, ``chroot``, ``open_by_handle_at``;
* namespaces: ``unshare``, ``setns``; identity: ``setuid`` and friends, ``capset``;
* kernel attack surface: ``bpf``, ``keyctl``/``add_key``/``request_key``, ``io_uring_*``,
  ``perf_event_open``, ``userfaultfd``, ``fanotify_init``, modules, ``kexec``, ``reboot``,
  swap, clocks, ``syslog``, ``acct``, ``iopl``/``ioperm``, ``ioctl(TIOCSTI)``;
* sockets (``socket``; ``socketpair`` stays: it reaches nothing) and objects that outlive the
  process: SysV ``shmget``/``semget``/``msgget``, ``mq_open``.

Where the kernel lets the child have its own network namespace (root), it also gets one with
no interface at all (:data:`NETWORK_NAMESPACE`, done by :mod:`grader.sandbox.layers` with the
other namespaces): nothing to connect to even for code the filter would let through.

Child side: imports nothing of the grader's parent side; ``pyseccomp`` only in the server.
"""

from __future__ import annotations

import ctypes
import errno
import os

from grader.sandbox import _libc

NETWORK_NAMESPACE = _libc.CLONE_NEWNET

DENIED = (
    # other processes
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "pidfd_open",
    "pidfd_send_signal",
    "pidfd_getfd",
    "kcmp",
    "process_madvise",
    "process_mrelease",
    "move_pages",
    "migrate_pages",
    # processes and programs
    "fork",
    "vfork",
    "execve",
    "execveat",
    "setsid",
    "setpgid",
    # special files, mounts, roots
    "mknod",
    "mknodat",
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "open_tree",
    "move_mount",
    "mount_setattr",
    "open_by_handle_at",
    "name_to_handle_at",
    "statmount",
    "listmount",
    # namespaces and identity
    "unshare",
    "setns",
    "setuid",
    "setgid",
    "setreuid",
    "setregid",
    "setresuid",
    "setresgid",
    "setgroups",
    "setfsuid",
    "setfsgid",
    "capset",
    # kernel attack surface and administration
    "bpf",
    "keyctl",
    "add_key",
    "request_key",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "perf_event_open",
    "userfaultfd",
    "fanotify_init",
    "lookup_dcookie",
    "quotactl",
    "quotactl_fd",
    "memfd_secret",
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "reboot",
    "swapon",
    "swapoff",
    "acct",
    "syslog",
    "settimeofday",
    "clock_settime",
    "clock_adjtime",
    "adjtimex",
    "iopl",
    "ioperm",
    "vhangup",
    "uselib",
    # network and objects that outlive the process
    "socket",
    "shmget",
    "semget",
    "msgget",
    "mq_open",
)
#: Aimed at a pid (first argument): refused unless it is the child's own.
OWN_PID_ONLY = ("kill", "tgkill", "tkill")
TIOCSTI = 0x5412
SECCOMP_SET_MODE_FILTER = 1
SECCOMP_FILTER_FLAG_SPEC_ALLOW = 1 << 2


def available() -> str | None:
    """``None`` when a filter can be built here, else why not (for ``cnnlab doctor``)."""
    if not _libc.SUPPORTED:
        return f"no system-call numbers for {_libc.MACHINE}"
    try:
        import pyseccomp  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - a missing libseccomp raises RuntimeError
        return f"pyseccomp/libseccomp not usable ({type(exc).__name__}: {exc})"
    return None


def build(own_pid: int) -> tuple[bytes, list[str]]:
    """The filter for a child whose pid (as it sees itself) is ``own_pid``, as BPF bytes,
    plus the names libseccomp does not know on this architecture (left out)."""
    import pyseccomp as sc

    filt = sc.SyscallFilter(sc.ALLOW)
    filt.set_attr(sc.Attr.CTL_NNP, 0)  # the child sets no_new_privs itself
    eperm = sc.ERRNO(errno.EPERM)
    unknown: list[str] = []

    def rule(action: int, name: str, *args: object) -> None:
        try:
            filt.add_rule(action, name, *args)
        except (OSError, ValueError, RuntimeError):
            unknown.append(name)

    for name in DENIED:
        rule(eperm, name)
    for name in OWN_PID_ONLY:
        rule(eperm, name, sc.Arg(0, sc.NE, own_pid))
    rule(eperm, "prlimit64", sc.Arg(0, sc.NE, 0))
    for name in ("sched_setaffinity", "sched_setscheduler", "sched_setparam", "sched_setattr"):
        rule(eperm, name, sc.Arg(0, sc.NE, 0))  # only on itself (pid 0)
    for name in ("setpriority", "ioprio_set"):
        rule(eperm, name, sc.Arg(1, sc.NE, 0))  # (which, who): who 0 is itself
    rule(eperm, "clone", sc.Arg(0, sc.MASKED_EQ, _libc.CLONE_THREAD, 0))
    rule(sc.ERRNO(errno.ENOSYS), "clone3")
    rule(eperm, "ioctl", sc.Arg(1, sc.EQ, TIOCSTI))
    fd = os.memfd_create("cnnlab-seccomp", os.MFD_CLOEXEC)
    try:
        with os.fdopen(os.dup(fd), "wb", closefd=True) as fh:
            filt.export_bpf(fh)
        size = os.lseek(fd, 0, os.SEEK_END)
        os.lseek(fd, 0, os.SEEK_SET)
        data = b""
        while len(data) < size:
            chunk = os.read(fd, size - len(data))
            if not chunk:
                break
            data += chunk
    finally:
        os.close(fd)
    if not data or len(data) % 8:
        raise OSError(errno.EINVAL, "libseccomp exported an empty or malformed filter")
    return data, unknown


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def load(bpf: bytes) -> None:
    """Install ``bpf`` on this process (inherited by any thread it starts). Needs
    ``no_new_privs`` (set here). Raises OSError."""
    _libc.no_new_privs()
    buf = ctypes.create_string_buffer(bpf, len(bpf))
    prog = _SockFprog(len(bpf) // 8, ctypes.addressof(buf))
    for flags in (SECCOMP_FILTER_FLAG_SPEC_ALLOW, 0):  # SPEC_ALLOW needs Linux 4.17
        try:
            _libc.syscall(
                _libc.nr("seccomp"),
                ctypes.c_uint(SECCOMP_SET_MODE_FILTER),
                ctypes.c_uint(flags),
                ctypes.byref(prog),
                what="seccomp",
            )
            return
        except OSError as exc:
            if exc.errno != errno.EINVAL or flags == 0:
                raise
