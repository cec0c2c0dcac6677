"""Layer: the filesystem allow-list (Landlock) and the private mount namespace.

**Landlock** (Linux 5.13+, works unprivileged and inside Docker): the child may *read* only
the Python runtime (the standard library, ``libpython``), the site-packages entries of the
packages it needs (numpy, torch, matplotlib and what they require, found from their
distributions' metadata), the system's shared libraries and a few device and ``/proc``
entries; it may *write* only its own run folder, and may create there only regular files and
folders (no FIFOs, devices, sockets or symlinks). No file may be executed. It is an
allow-list: everything not named here — the reference (``cnnref``), the grader beyond what
the fork server already imported, ``solutions/``, the course secret, other submissions, other
runs' folders, the gradebook, ``.git`` objects, wheels and sdists, pip caches, editable-install
paths, the ``cnnlab`` install records and any package registered in the entry-point group
``cnnlab.exercises`` — is out of reach, wherever a copy of it lies. Where the kernel's
Landlock ABI has them, TCP ``bind``/``connect`` are refused (ABI 4) and signals and abstract
UNIX sockets are scoped to the run (ABI 6).

Landlock is bound here with ``ctypes`` (three system calls) rather than the ``landlock`` PyPI
package: that package (1.0.0.dev5, alpha) decides failure from ``errno`` instead of the return
value, cannot give a file its own (file-only) rights, and knows neither the network rules
(ABI 4) nor the scopes (ABI 6).

The fork server opens every allowed path once (``O_PATH``) with :func:`prepare`; each child
builds its ruleset from those descriptors plus its own run folder and ``/proc`` entry
(:func:`restrict`), because a rule taken on a path *before* a new mount covers it does not
cover the new mount.

**Mount namespace** (root, or ``CAP_SYS_ADMIN``): :func:`private_mounts` gives the child its
own view: everything read-only, ``nosuid`` and private (nothing propagates back),
fresh ``tmpfs`` on ``/tmp`` and ``/dev/shm`` (other runs' folders and shared-memory files
vanish, and what the child leaves there dies with it), its run folder put back read-write at
the same path, and a fresh ``/proc`` showing only the run's own PID namespace.

Child side: imports nothing of the grader's parent side.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import importlib.metadata
import os
import re
import stat
import sys
import sysconfig
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from grader.sandbox import _libc

# --------------------------------------------------------------------------- Landlock ABI

CREATE_RULESET_VERSION = 1 << 0
RULE_PATH_BENEATH = 1

EXECUTE = 1 << 0
WRITE_FILE = 1 << 1
READ_FILE = 1 << 2
READ_DIR = 1 << 3
REMOVE_DIR = 1 << 4
REMOVE_FILE = 1 << 5
MAKE_CHAR = 1 << 6
MAKE_DIR = 1 << 7
MAKE_REG = 1 << 8
MAKE_SOCK = 1 << 9
MAKE_FIFO = 1 << 10
MAKE_BLOCK = 1 << 11
MAKE_SYM = 1 << 12
REFER = 1 << 13  # ABI 2
TRUNCATE = 1 << 14  # ABI 3
IOCTL_DEV = 1 << 15  # ABI 5
NET_BIND_TCP = 1 << 0  # ABI 4
NET_CONNECT_TCP = 1 << 1
SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0  # ABI 6
SCOPE_SIGNAL = 1 << 1

#: Every filesystem right each ABI handles (what the ruleset refuses unless a rule allows it).
_FS_BY_ABI = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 4: (1 << 15) - 1}
FILE_RIGHTS = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV
READ_ONLY = READ_FILE | READ_DIR
READ_WRITE = READ_ONLY | WRITE_FILE | TRUNCATE | REMOVE_DIR | REMOVE_FILE | MAKE_DIR | MAKE_REG
READ_WRITE |= REFER


def handled_fs(abi: int) -> int:
    return _FS_BY_ABI.get(abi, (1 << 16) - 1)


class _RulesetAttr(ctypes.Structure):
    _fields_ = [
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    ]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1  # the kernel's struct is packed: 12 bytes
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def abi_version() -> int:
    """The kernel's Landlock ABI version; 0 when Landlock is missing, disabled or blocked
    (``ENOSYS``, ``EOPNOTSUPP``, or ``EPERM`` from a container's seccomp profile)."""
    if not _libc.SUPPORTED or _libc.libc is None:
        return 0
    try:
        return _libc.syscall(
            _libc.NR_landlock_create_ruleset,
            None,
            ctypes.c_size_t(0),
            ctypes.c_uint32(CREATE_RULESET_VERSION),
            what="landlock_create_ruleset",
        )
    except OSError:
        return 0


def create_ruleset(abi: int) -> int:
    """A new ruleset handling every right ``abi`` knows (plus TCP and scopes where known)."""
    attr = _RulesetAttr(handled_fs(abi), 0, 0)
    size = 8
    if abi >= 4:
        attr.handled_access_net = NET_BIND_TCP | NET_CONNECT_TCP  # and no rule allows any
        size = 16
    if abi >= 6:
        attr.scoped = SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL
        size = 24
    return _libc.syscall(
        _libc.NR_landlock_create_ruleset,
        ctypes.byref(attr),
        ctypes.c_size_t(size),
        ctypes.c_uint32(0),
        what="landlock_create_ruleset",
    )


def add_rule(ruleset_fd: int, path_fd: int, access: int) -> None:
    attr = _PathBeneathAttr(access, path_fd)
    _libc.syscall(
        _libc.NR_landlock_add_rule,
        ctypes.c_int(ruleset_fd),
        ctypes.c_int(RULE_PATH_BENEATH),
        ctypes.byref(attr),
        ctypes.c_uint32(0),
        what="landlock_add_rule",
    )


def restrict_self(ruleset_fd: int) -> None:
    """Enforce the ruleset on this (single-threaded) process and all it starts; for good.
    Needs ``no_new_privs`` first."""
    _libc.syscall(
        _libc.NR_landlock_restrict_self,
        ctypes.c_int(ruleset_fd),
        ctypes.c_uint32(0),
        what="landlock_restrict_self",
    )


# --------------------------------------------------------------------------- the allow-list

#: Packages the child may import (with everything their distributions require).
CHILD_PACKAGES = ("numpy", "torch", "matplotlib")
#: Top-level names never allowed, whatever distribution ships them.
NEVER = frozenset({"cnnref", "grader", "solutions", "exercises", "cnnlab"})
ENTRY_POINT_GROUP = "cnnlab.exercises"
_REQ_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _dist_tops(dist: importlib.metadata.Distribution) -> set[str]:
    """Top-level entries of site-packages that ``dist`` installed (from RECORD, quickly)."""
    tops: set[str] = set()
    text = dist.read_text("RECORD") or dist.read_text("installed-files.txt") or ""
    for line in text.splitlines():
        first = line.split(",", 1)[0].split("/", 1)[0].strip('"')
        if first and first not in ("..", "."):
            tops.add(first)
    if not tops:
        for name in (dist.read_text("top_level.txt") or "").split():
            tops.add(name)
    return tops


def excluded_distributions() -> set[str]:
    """Normalised names of ``cnnlab`` and of every distribution with an entry point in the
    group ``cnnlab.exercises`` (instructors' plugins hold references)."""
    names = {"cnnlab"}
    try:
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist = getattr(ep, "dist", None)
            if dist is not None:
                names.add(_norm(dist.metadata["Name"] or ""))
    except Exception:  # noqa: BLE001 - broken metadata must not open anything up
        pass
    return names


def _package_closure(roots: Iterable[str], excluded: set[str]) -> list:
    seen: dict[str, importlib.metadata.Distribution] = {}
    todo = list(roots)
    while todo:
        name = _norm(todo.pop())
        if name in seen or name in excluded:
            continue
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        seen[name] = dist
        for req in dist.requires or ():
            if "extra ==" in req.replace('"', "").replace("'", ""):
                continue
            m = _REQ_NAME.match(req)
            if m:
                todo.append(m.group(1))
    return list(seen.values())


def _within(path: str, roots: Iterable[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


def excluded_tops(excluded: set[str]) -> set[str]:
    """Real paths of everything the excluded distributions installed in site-packages."""
    out: set[str] = set()
    for dist in importlib.metadata.distributions():
        try:
            name = _norm(dist.metadata["Name"] or "")
        except Exception:  # noqa: BLE001
            continue
        if name in excluded:
            for top in _dist_tops(dist):
                out.add(os.path.realpath(str(dist.locate_file(top))))
            out.add(os.path.realpath(str(getattr(dist, "_path", ""))))
    return out


def allow_list(
    forbidden: Sequence[str] = (),
    packages: Sequence[str] = CHILD_PACKAGES,
    extra_ro: Sequence[str] = (),
) -> tuple[list[tuple[str, int]], list[str]]:
    """``([(path, rights)], [dropped paths])``: what a child may read (and ``/dev/null`` write).

    The standard library is allowed entry by entry (it holds ``site-packages`` in many
    layouts), site-packages by the top-level entries of the ``packages``' distributions and
    their requirements. A rule that would contain a ``forbidden`` path, ``cnnlab``'s own files,
    a plugin's, or a name in :data:`NEVER` is dropped and listed in the second value.
    """
    rules: list[tuple[str, int]] = []
    dropped: list[str] = []
    stdlib = os.path.dirname(os.__file__)
    sites = {
        os.path.realpath(p) for p in sys.path if p.endswith(("site-packages", "dist-packages"))
    }
    sites |= {os.path.realpath(sysconfig.get_paths()[k]) for k in ("purelib", "platlib")}
    try:
        entries = sorted(os.listdir(stdlib))
    except OSError:
        entries = []
    for name in entries:
        path = os.path.join(stdlib, name)
        if name in ("site-packages", "dist-packages") or os.path.realpath(path) in sites:
            continue
        if name.endswith(".pth") or name in NEVER:
            continue
        rules.append((path, READ_ONLY))
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    for var in ("LDLIBRARY", "INSTSONAME"):
        lib = sysconfig.get_config_var(var)
        if libdir and lib and ".so" in lib:
            rules.append((os.path.join(libdir, lib), READ_FILE))
    excluded = excluded_distributions()
    for dist in _package_closure(packages, excluded):
        for top in sorted(_dist_tops(dist)):
            if top in NEVER or top.split(".")[0] in NEVER or top.endswith(".pth"):
                continue
            if top == "__pycache__" or top.startswith("__editable__"):
                continue
            rules.append((str(dist.locate_file(top)), READ_ONLY))
    multiarch = sysconfig.get_config_var("MULTIARCH") or f"{os.uname().machine}-linux-gnu"
    for path, rights in (
        (f"/usr/lib/{multiarch}", READ_ONLY),
        (f"/lib/{multiarch}", READ_ONLY),
        ("/lib64", READ_ONLY),
        ("/usr/lib64", READ_ONLY),
        ("/usr/lib/locale", READ_ONLY),
        ("/etc/ld.so.cache", READ_FILE),
        ("/etc/localtime", READ_FILE),
        ("/usr/share/zoneinfo", READ_ONLY),
        ("/dev/null", READ_FILE | WRITE_FILE),
        ("/dev/zero", READ_FILE),
        ("/dev/urandom", READ_FILE),
        ("/dev/random", READ_FILE),
        ("/sys/devices/system/cpu", READ_ONLY),
        *((p, READ_ONLY) for p in extra_ro),
    ):
        rules.append((path, rights))
    bad = {os.path.realpath(p) for p in forbidden} | excluded_tops(excluded)
    bad.discard("")
    kept: list[tuple[str, int]] = []
    seen: set[str] = set()
    for path, rights in rules:
        if not os.path.lexists(path):
            continue
        real = os.path.realpath(path)
        if real in seen:
            continue
        if any(_within(b, [real]) for b in bad) or os.path.basename(real) in NEVER:
            dropped.append(path)
            continue
        seen.add(real)
        kept.append((real, rights))
    return kept, dropped


@dataclass
class Prepared:
    """The allow-list opened once in the fork server: ``(O_PATH fd, rights)`` per rule."""

    abi: int
    fds: list[tuple[int, int]]
    paths: list[str]
    dropped: list[str]

    def close(self) -> None:
        for fd, _ in self.fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.fds = []


def prepare(rules: Sequence[tuple[str, int]], abi: int, dropped: Sequence[str] = ()) -> Prepared:
    """Open each rule's path (``O_PATH|O_CLOEXEC``: inherited by ``fork``, not by ``exec``)."""
    fds: list[tuple[int, int]] = []
    paths: list[str] = []
    handled = handled_fs(abi)
    for path, rights in rules:
        try:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        except OSError:
            continue
        if not stat.S_ISDIR(os.fstat(fd).st_mode):
            rights &= FILE_RIGHTS
        fds.append((fd, rights & handled))
        paths.append(path)
    return Prepared(abi, fds, paths, list(dropped))


def restrict(prepared: Prepared, workdir: str, proc_entries: Sequence[str] = ()) -> None:
    """In the child: the allow-list plus ``workdir`` read-write (regular files and folders
    only) and ``proc_entries`` read-only, enforced for good. Raises OSError on any failure."""
    handled = handled_fs(prepared.abi)
    ruleset = create_ruleset(prepared.abi)
    try:
        for fd, rights in prepared.fds:
            add_rule(ruleset, fd, rights)
        own: list[tuple[str, int]] = [(workdir, READ_WRITE)]
        own += [(p, READ_ONLY) for p in proc_entries]
        for path, rights in own:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            try:
                if not stat.S_ISDIR(os.fstat(fd).st_mode):
                    rights &= FILE_RIGHTS
                add_rule(ruleset, fd, rights & handled)
            finally:
                os.close(fd)
        _libc.no_new_privs()
        restrict_self(ruleset)
    finally:
        os.close(ruleset)
    prepared.close()  # the child's copies of the descriptors are no longer needed


def proc_entries() -> list[str]:
    """The ``/proc`` entries a child may read: its own, and the CPU and memory summaries."""
    own = os.path.realpath("/proc/self")
    return [p for p in (own, "/proc/cpuinfo", "/proc/meminfo") if os.path.exists(p)]


# --------------------------------------------------------------------------- mount namespace

AT_FDCWD = -100
AT_RECURSIVE = 0x8000
OPEN_TREE_CLONE = 1
MOVE_MOUNT_F_EMPTY_PATH = 0x4
MOUNT_ATTR_RDONLY, MOUNT_ATTR_NOSUID, MOUNT_ATTR_NODEV, MOUNT_ATTR_NOEXEC = 1, 2, 4, 8
MS_NOSUID, MS_NODEV, MS_NOEXEC = 2, 4, 8
MS_PRIVATE = 1 << 18
TMPFS_SIZE = "64m"


class _MountAttr(ctypes.Structure):
    _fields_ = [
        ("attr_set", ctypes.c_uint64),
        ("attr_clr", ctypes.c_uint64),
        ("propagation", ctypes.c_uint64),
        ("userns_fd", ctypes.c_uint64),
    ]


def _mount_setattr(path: str, set_: int, clear: int, propagation: int, recursive: bool) -> None:
    attr = _MountAttr(set_, clear, propagation, 0)
    _libc.syscall(
        _libc.NR_mount_setattr,
        ctypes.c_int(AT_FDCWD),
        path.encode(),
        ctypes.c_uint(AT_RECURSIVE if recursive else 0),
        ctypes.byref(attr),
        ctypes.c_size_t(ctypes.sizeof(attr)),
        what=f"mount_setattr {path}",
    )


def _clone_tree(path: str) -> int:
    return _libc.syscall(
        _libc.NR_open_tree,
        ctypes.c_int(AT_FDCWD),
        path.encode(),
        ctypes.c_uint(OPEN_TREE_CLONE | os.O_CLOEXEC),
        what=f"open_tree {path}",
    )


def _move_mount(fd: int, target: str) -> None:
    _libc.syscall(
        _libc.NR_move_mount,
        ctypes.c_int(fd),
        b"",
        ctypes.c_int(AT_FDCWD),
        target.encode(),
        ctypes.c_uint(MOVE_MOUNT_F_EMPTY_PATH),
        what=f"move_mount {target}",
    )


def private_mounts(workdir: str, new_proc: bool) -> None:
    """In a fresh mount namespace (after ``unshare(CLONE_NEWNS)``): see the module doc."""
    # nodev would break /dev/null itself; device nodes cannot be made anyway (seccomp,
    # Landlock), and the fresh tmpfs below are nodev.
    _mount_setattr("/", MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID, 0, MS_PRIVATE, True)
    keep = _clone_tree(workdir)  # a detached copy of the run folder, before /tmp is covered
    try:
        for target in ("/tmp", "/dev/shm"):
            if os.path.isdir(target):
                _libc.mount(
                    "tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV, f"mode=1777,size={TMPFS_SIZE}"
                )
        try:
            os.makedirs(workdir, exist_ok=True)  # inside a fresh tmpfs when it was under /tmp
        except OSError as exc:
            if exc.errno != errno.EROFS:
                raise
        _move_mount(keep, workdir)
    finally:
        os.close(keep)
    _mount_setattr(workdir, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, MOUNT_ATTR_RDONLY, 0, False)
    if new_proc:
        _libc.mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None)
