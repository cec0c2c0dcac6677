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

The fork server builds the ruleset once (:func:`prepare`); each child only applies it
(:func:`restrict`, one system call). The one writable folder is the sandbox's ``runs``
folder, which holds only the current run's folder (one run at a time per fork server); the
private mounts put that very folder back (a Landlock rule on a folder hidden under a new mount
would not cover the new mount). The child gets no ``/proc`` at all: what it needs from there
is read before the layers go up.

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

#: Top-level names never allowed, whatever distribution ships them.
NEVER = frozenset({"cnnref", "grader", "solutions", "exercises", "cnnlab"})
ENTRY_POINT_GROUP = "cnnlab.exercises"


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


def excluded_paths(excluded: set[str]) -> set[str]:
    """Real paths of everything the excluded distributions installed in site-packages (their
    packages, modules and install records)."""
    out: set[str] = set()
    for dist in importlib.metadata.distributions():
        try:
            name = _norm(dist.metadata["Name"] or "")
        except Exception:  # noqa: BLE001
            continue
        if name in excluded:
            for top in _dist_tops(dist):
                out.add(os.path.realpath(str(dist.locate_file(top))))
            record_dir = getattr(dist, "_path", None)
            if record_dir:
                out.add(os.path.realpath(str(record_dir)))
    out.discard("")
    return out


def _denied_name(name: str) -> bool:
    """Site-packages entries never allowed by name: the grader's, editable-install finders
    and their ``.pth`` hooks, and the shared ``__pycache__`` (it holds the finders' bytecode)."""
    low = name.lower()
    stem = re.split(r"[-.]", low, maxsplit=1)[0]
    return (
        stem in NEVER
        or low.startswith(("__editable__", "cnnlab", "cnnref"))
        or low.endswith((".pth", ".egg-link"))
        or low == "__pycache__"
    )


def _within(path: str, roots: Iterable[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


def site_dirs() -> list[str]:
    """The site-packages folders on ``sys.path`` (a venv's and the base interpreter's)."""
    found: list[str] = []
    candidates = [p for p in sys.path if p.rstrip("/").endswith(("site-packages", "dist-packages"))]
    candidates += [sysconfig.get_paths()[k] for k in ("purelib", "platlib")]
    for p in candidates:
        real = os.path.realpath(p)
        if os.path.isdir(real) and real not in found:
            found.append(real)
    return found


def allow_list(
    forbidden: Sequence[str] = (), extra_ro: Sequence[str] = ()
) -> tuple[list[tuple[str, int]], list[str]]:
    """``([(path, rights)], [dropped paths])``: what a child may read (and ``/dev/null`` write).

    The standard library is allowed entry by entry (it holds ``site-packages`` in many
    layouts); each site-packages folder entry by entry, less ``cnnlab``'s own files, those of
    every plugin distribution (entry-point group ``cnnlab.exercises``), editable-install
    finders, ``.pth`` files and the names in :data:`NEVER` (lazily imported dependencies of
    torch, numpy and matplotlib are spread all over site-packages: a closer list breaks their
    ``try: import x`` probes). A rule that would contain a ``forbidden`` path is dropped and
    listed in the second value.
    """
    rules: list[tuple[str, int]] = []
    dropped: list[str] = []
    stdlib = os.path.realpath(os.path.dirname(os.__file__))
    sites = site_dirs()
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
    excluded = excluded_paths(excluded_distributions())
    for site in sites:
        try:
            names = sorted(os.listdir(site))
        except OSError:
            continue
        for name in names:
            path = os.path.join(site, name)
            if _denied_name(name) or os.path.realpath(path) in excluded:
                dropped.append(path)
                continue
            rules.append((path, READ_ONLY))
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
    bad = {os.path.realpath(p) for p in forbidden if p} | excluded
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
    """The allow-list as a Landlock ruleset built once in the fork server.

    Attributes:
        abi: the kernel's Landlock ABI.
        ruleset_fd: the ruleset (inherited by every fork; only ever applied, never changed
            after it is built: a rule added in a child would reach every later child).
        paths: the paths allowed (read-only, but ``/dev/null`` and ``runs_dir``).
        runs_dir: the one folder the child may write: it holds only the current run's folder.
        dropped: candidate paths left out because they are or hold something forbidden.
    """

    abi: int
    ruleset_fd: int
    paths: list[str]
    runs_dir: str
    dropped: list[str]

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.ruleset_fd)


def prepare(
    rules: Sequence[tuple[str, int]], abi: int, runs_dir: str, dropped: Sequence[str] = ()
) -> Prepared:
    """Build the ruleset: ``rules`` plus ``runs_dir`` read-write (regular files and folders
    only: no FIFOs, devices, sockets or symlinks; nothing executable). Raises OSError."""
    handled = handled_fs(abi)
    ruleset = create_ruleset(abi)
    paths: list[str] = []
    try:
        for path, rights in [*rules, (runs_dir, READ_WRITE)]:
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                if not stat.S_ISDIR(os.fstat(fd).st_mode):
                    rights &= FILE_RIGHTS
                add_rule(ruleset, fd, rights & handled)
            finally:
                os.close(fd)
            paths.append(path)
    except BaseException:
        os.close(ruleset)
        raise
    os.set_inheritable(ruleset, False)  # kept across fork, never across exec
    return Prepared(abi, ruleset, paths, runs_dir, list(dropped))


def restrict(prepared: Prepared) -> None:
    """In the child: enforce the server's ruleset for good (``no_new_privs`` first)."""
    _libc.no_new_privs()
    restrict_self(prepared.ruleset_fd)
    prepared.close()  # the child's copy of the descriptor


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


COVERED = ("/tmp", "/dev/shm")


def runtime_under_covered() -> list[str]:
    """The Python installation's folders that lie under ``/tmp`` or ``/dev/shm`` (a venv made
    there): the private mounts put them back, read-only, or lazy imports would fail."""
    candidates = {sys.prefix, sys.base_prefix, sys.exec_prefix, os.path.dirname(os.__file__)}
    candidates |= set(site_dirs())
    found = sorted(
        {
            os.path.realpath(p)
            for p in candidates
            if any(_within(os.path.realpath(p), [c]) for c in COVERED)
        }
    )
    return [p for p in found if not any(q != p and _within(p, [q]) for q in found)]


def private_mounts(keep: str, new_proc: bool, keep_ro: Sequence[str] = ()) -> None:
    """In a fresh mount namespace (after ``unshare(CLONE_NEWNS)``): see the module doc.

    ``keep`` is the folder put back read-write at its own path: the Landlock rule names that
    folder's inode (the sandbox's ``runs`` folder, holding only the current run). ``keep_ro``
    are folders under ``/tmp`` or ``/dev/shm`` put back read-only (the runtime's, see
    :func:`runtime_under_covered`)."""
    # nodev would break /dev/null itself; device nodes cannot be made anyway (seccomp,
    # Landlock), and the fresh tmpfs below are nodev.
    _mount_setattr("/", MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID, 0, MS_PRIVATE, True)
    ro_clones: list[tuple[str, int]] = []  # detached copies, read-only like their source now
    try:
        for path in keep_ro:
            ro_clones.append((path, _clone_tree(path)))
        _private_mounts(keep, new_proc, ro_clones)
    finally:
        for _, fd in ro_clones:
            with contextlib.suppress(OSError):
                os.close(fd)


def _private_mounts(keep: str, new_proc: bool, ro_clones: list[tuple[str, int]]) -> None:
    workdir = keep
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
        for path, fd in ro_clones:
            with contextlib.suppress(FileExistsError):
                os.makedirs(path)
            _move_mount(fd, path)
    finally:
        os.close(keep)
    _mount_setattr(workdir, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, MOUNT_ATTR_RDONLY, 0, False)
    if new_proc:
        _libc.mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None)


# --------------------------------------------------------------------------- single-use lockdown

#: Set (to ``1``) by the Gradescope autograder in its single-use container only: the sandbox
#: may then lock the reference away for good once the expected outputs are computed.
SINGLE_USE_ENV = "CNNLAB_SINGLE_USE_CONTAINER"


def lock_down(paths: Iterable[str]) -> list[str]:
    """Make each of ``paths`` unreachable for every user but its owner (``chmod go-rwx`` on
    the path itself: a folder that others cannot search hides all it holds). For a
    **single-use grading container** without Landlock: once the expected outputs are
    computed, the reference, the grader's own files, the wheel and the secret are locked, and
    the child runs as an unprivileged uid. Never call it on a machine that outlives the
    grading. Returns the paths locked."""
    locked = []
    for path in paths:
        try:
            mode = os.stat(path, follow_symlinks=False).st_mode
        except OSError:
            continue
        if stat.S_ISLNK(mode):
            continue
        try:
            os.chmod(path, stat.S_IMODE(mode) & 0o700)
        except OSError:
            continue
        locked.append(path)
    return locked
