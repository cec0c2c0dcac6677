"""The child's PEP 578 audit hook: a cheap first layer, and **not a barrier**.

It turns the common mistakes and casual attempts into readable messages ("importing 'cnnref'
is not allowed in graded code"). A determined student can switch it off from pure Python
(``tests/fixtures/security/case29_disable_hook.py`` does): what holds then are the
kernel-enforced layers (:mod:`grader.sandbox.layers`, docs/security.md).


:func:`install` is called in the sandboxed child after it has set itself up (own session,
temporary folder, resource limits, possibly an unprivileged uid) and before any student code
runs. A hook added with :func:`sys.addaudithook` cannot be removed from Python, and the hook
object itself is reachable only through the garbage collector, whose object-listing functions
the hook refuses. Its policy lives in immutable values captured by the closure.

What it refuses (raising :class:`PermissionError` in the student's code):

* importing ``cnnref``, ``solutions`` or any ``grader`` module that was not preloaded;
* opening (for reading or writing) any path inside a forbidden directory or file (the
  reference package, the grader package, the repository's ``solutions/``, the course secret
  file) and any ``/proc/<pid>/`` entry of another process; opening a directory (which would
  give a ``dir_fd`` for relative opens the hook could not resolve);
* opening for writing, creating, deleting, renaming or changing the mode/owner of anything
  outside the run's temporary folder (``/dev/null`` excepted);
* listing forbidden directories;
* creating processes: ``os.fork``/``forkpty``/``posix_spawn``/``exec*``/``spawn*``/``system``,
  ``subprocess.Popen``; sending signals to other processes;
* sockets (``socket.__new__``, ``connect``, ``bind``, ...);
* ``ctypes`` loading libraries or looking up symbols, raw memory reads (``string_at``,
  ``from_address``, ``addressof``);
* ``gc.get_objects``/``get_referrers``/``get_referents`` (the way to reach the hook itself);
* ``sys.addaudithook`` (a student hook could observe the grader) and ``sys.setprofile``-style
  interpreter hooks are left alone: they only see the student's own process.

What it cannot do is documented in ``docs/security.md``: C code, raw memory writes (numpy's
``__array_interface__``, unaudited ``ctypes`` calls) and Python's own introspection (a
traceback's frames reach the hook's helper functions) can disable it. The guarantees come
from the kernel layers and the process boundary: the reference, the expected outputs and
the secret never exist in the child's memory, the parent compares, and the run's processes
are killed as a whole.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass

#: Events that create processes or send signals: always refused.
PROCESS_EVENTS = frozenset(
    {
        "os.fork",
        "os.forkpty",
        "os.posix_spawn",
        "os.exec",
        "os.spawn",
        "os.system",
        "os.startfile",
        "subprocess.Popen",
        "pty.spawn",
        "os.killpg",
        "signal.pthread_kill",
        "os.setuid",
        "os.setgid",
    }
)
#: Network and foreign-code events: always refused.
FOREIGN_EVENTS = frozenset(
    {
        "socket.__new__",
        "socket.connect",
        "socket.bind",
        "socket.sendto",
        "socket.sendmsg",
        "socket.getaddrinfo",
        "socket.gethostbyname",
        "socket.gethostbyaddr",
        "ctypes.dlsym",
        "ctypes.dlsym/handle",
        "ctypes.string_at",
        "ctypes.wstring_at",
        "ctypes.cdata",
        "ctypes.cdata/buffer",
        "ctypes.addressof",
        "ctypes.call_function",
        "gc.get_objects",
        "gc.get_referrers",
        "gc.get_referents",
        "sqlite3.connect",
        "mmap.__new__",
        "os.link",
        "os.symlink",
    }
)
#: Events whose first argument is a path that is modified: only inside the work folder.
WRITE_PATH_EVENTS = frozenset(
    {
        "os.remove",
        "os.rmdir",
        "os.mkdir",
        "os.chmod",
        "os.chown",
        "os.truncate",
        "os.utime",
        "os.chflags",
        "os.lchflags",
        "os.setxattr",
        "os.removexattr",
        "shutil.rmtree",
        "shutil.copyfile",
        "shutil.copymode",
        "shutil.copystat",
        "shutil.move",
    }
)
LIST_EVENTS = frozenset({"os.listdir", "os.scandir", "glob.glob", "os.walk", "os.fwalk"})

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


@dataclass(frozen=True)
class Policy:
    """What the child may touch.

    Attributes:
        workdir: the run's temporary folder (absolute); the only place the child may write.
        forbidden: absolute paths (files or folders) the child may not open or list.
        blocked_modules: top-level module names that may never be imported.
        allowed_grader_modules: ``grader`` modules the child may keep importing (preloaded).
        library_dirs: folders (site-packages) whose shared libraries ``ctypes`` may load by
            absolute path, as ``import torch`` does; any other ``ctypes.dlopen`` is refused.
    """

    workdir: str
    forbidden: tuple[str, ...] = ()
    blocked_modules: tuple[str, ...] = ("cnnref", "solutions")
    allowed_grader_modules: tuple[str, ...] = ()
    library_dirs: tuple[str, ...] = ()


def _real(path: object) -> str | None:
    """``path`` resolved to an absolute real path, or ``None`` for a file descriptor."""
    if isinstance(path, int):
        return None
    try:
        p = os.fsdecode(os.fspath(path))  # type: ignore[arg-type]
    except TypeError:
        return None
    return os.path.realpath(p)


def _inside(path: str, roots: Iterable[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


def _other_proc(path: str, own: tuple[str, ...]) -> bool:
    if not path.startswith("/proc/"):
        return False
    first = path[len("/proc/") :].split("/", 1)[0]
    return first.isdigit() and first not in own


def make_hook(policy: Policy):  # noqa: C901 - one flat decision table reads best
    """The audit hook enforcing ``policy`` (a plain function; :func:`install` adds it)."""
    workdir = os.path.realpath(policy.workdir)
    writable = (workdir, "/dev/null")
    forbidden = tuple(os.path.realpath(p) for p in policy.forbidden)
    blocked = frozenset(policy.blocked_modules)
    allowed_grader = frozenset(policy.allowed_grader_modules)
    own_pid = (str(os.getpid()),)
    self_pid = os.getpid()
    process_events, foreign_events = PROCESS_EVENTS, FOREIGN_EVENTS
    write_events, list_events = WRITE_PATH_EVENTS, LIST_EVENTS
    write_flags = _WRITE_FLAGS
    realpath, isdir = _real, os.path.isdir
    reimport_blocked = frozenset(REIMPORT_BLOCKED)
    library_dirs = tuple(os.path.realpath(p) for p in policy.library_dirs)

    def refuse(what: str) -> None:
        raise PermissionError(f"{what} is not allowed in graded code")

    def check_read(path: str, what: str) -> None:
        if _inside(path, forbidden):
            refuse(f"{what} {path!r}")
        if _other_proc(path, own_pid):
            refuse(f"{what} another process's {path!r}")

    def check_write(path: str | None, what: str) -> None:
        if path is None or not _inside(path, writable):
            refuse(f"{what} {path!r} (only the current folder is writable)")
        check_read(path, what)

    def hook(event: str, args: tuple) -> None:
        if event == "open":
            path = realpath(args[0])
            if path is None:  # os.fdopen / open(fd): the fd was opened through this hook
                return
            mode, flags = args[1], args[2]
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and flags & write_flags
            )
            if writing:
                check_write(path, "writing to")
            else:
                check_read(path, "reading")
                if isdir(path) and not _inside(path, (workdir,)):
                    refuse(f"opening the folder {path!r}")
        elif event == "import":
            name = args[0]
            top = name.split(".", 1)[0]
            if top in blocked:
                refuse(f"importing {name!r}")
            if name in reimport_blocked:
                refuse(f"importing a fresh copy of {name!r}")
            if top == "grader" and name not in allowed_grader:
                refuse(f"importing the grader's module {name!r}")
            filename = args[1]
            if isinstance(filename, str) and filename:
                check_read(realpath(filename) or "", "importing")
        elif event in process_events or event in foreign_events:
            refuse(event)
        elif event == "os.kill":
            if args[0] not in (self_pid, 0):
                refuse("sending a signal to another process")
        elif event in write_events:
            check_write(realpath(args[0]), event)
        elif event == "os.rename":  # (src, dst, src_dir_fd, dst_dir_fd)
            if args[2] not in (None, -1) or args[3] not in (None, -1):
                refuse("os.rename with dir_fd")
            check_write(realpath(args[0]), "renaming")
            check_write(realpath(args[1]), "renaming to")
        elif event in list_events:
            path = realpath(args[0]) if args and args[0] is not None else realpath(".")
            if path is not None:
                check_read(path, "listing")
        elif event == "os.chdir":
            path = realpath(args[0])
            if path is not None:
                check_read(path, "changing into")
        elif event == "ctypes.dlopen":
            name = args[0]
            path = realpath(name) if isinstance(name, (str, bytes)) and name else None
            if path is None or not os.path.isabs(os.fsdecode(name)):
                refuse("ctypes.dlopen")
            if not _inside(path, library_dirs) or _inside(path, forbidden):
                refuse(f"ctypes.dlopen of {path!r}")
        elif event == "sys.addaudithook":
            refuse("adding an audit hook")

    return hook


#: Modules whose fresh copy would undo :func:`neuter`: importing them again is refused.
REIMPORT_BLOCKED = ("_posixsubprocess", "_thread", "_ctypes")


def neuter() -> None:
    """Replace the process and thread starters that Python 3.11 does not audit.

    ``_posixsubprocess.fork_exec`` (what ``subprocess`` uses after its audited ``Popen``
    event) and ``_thread.start_new_thread`` raise no audit event, so the child replaces them
    with functions that refuse; a fresh copy of those modules (``importlib`` on their spec)
    raises an ``import`` event, which the hook refuses. Threads die with the child anyway,
    and ``RLIMIT_AS``/``RLIMIT_NPROC`` bound how many can exist; numpy and torch do not
    need Python threads for the harnesses.
    """
    import _posixsubprocess
    import _thread
    import threading

    def start_new_thread(*args: object, **kwargs: object) -> int:
        raise PermissionError("starting a thread is not allowed in graded code")

    def fork_exec(*args: object, **kwargs: object) -> int:
        raise PermissionError("starting a process is not allowed in graded code")

    _thread.start_new_thread = start_new_thread  # type: ignore[assignment]
    if hasattr(_thread, "start_new"):
        _thread.start_new = start_new_thread  # type: ignore[attr-defined]
    threading._start_new_thread = start_new_thread  # type: ignore[attr-defined]
    _posixsubprocess.fork_exec = fork_exec  # type: ignore[attr-defined]


def install(policy: Policy) -> None:
    """Add the hook for ``policy`` to this interpreter for good; neuter the unaudited starters.

    No reference to the hook is kept anywhere but in the interpreter's hook list.
    """
    neuter()
    sys.addaudithook(make_hook(policy))
