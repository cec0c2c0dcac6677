"""Running untrusted student code: one fresh, limited child process per (submission, exercise).

The parent (this module) never imports student code and never unpickles anything. A
:class:`Sandbox` owns a *fork server* (``grader.sandbox.forkserver``): a long-lived helper started
from a clean interpreter (``python -I``, minimal environment, no course secret) that has
numpy, torch and the child-side grader modules already imported, so that each run costs a
``fork`` (milliseconds) rather than an interpreter start (a second or more).

One :meth:`Sandbox.run`:

1. makes a fresh temporary folder and writes the submission's source (JSON) and each case
   (``case_NNN.in.npz``, via :mod:`grader.sandbox.caseio`) into it;
2. asks the server to fork a child (see ``grader.sandbox.child``): own session and process group,
   resource limits, the audit hook (``grader.sandbox.audit``), output captured to a capped file;
3. waits at most the wall-clock limit, then kills the child's whole process group with
   ``SIGKILL`` — finished or not, the group is killed after every run;
4. only after the child is gone, reads each case's status file and output ``.npz`` strictly
   (``allow_pickle=False``, exact ``np.ndarray``, numeric dtype) and decides each case's
   :class:`CaseOutcome`; the child's stdout is captured for display and never parsed.

A fault of the grader itself (the server cannot start or dies, the temporary folder cannot be
written, the child could not set itself up) raises :class:`grader.errors.GraderFailure`; it is
never turned into a student status.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pwd
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path
from typing import Any, Literal

import numpy as np

from grader.errors import GraderFailure
from grader.plugins import plugin_package_paths, plugin_packages
from grader.sandbox import caseio
from grader.sandbox.child import (
    OUTPUT_FILE,
    PROGRESS_BYTES,
    PROGRESS_FILE,
    SUBMISSION_DIR,
    SUBMISSION_FILE,
    case_in,
    case_out,
    case_status,
)
from grader.sandbox.filesystem import SINGLE_USE_ENV
from grader.sandbox.layers import FILESYSTEM_LAYERS, LAYERS, Plan, layers_off_from_env
from grader.sandbox.limits import ContainerMemory
from grader.sandbox.privileges import runtime_readable_by_others
from grader.submission import Submission

log = logging.getLogger(__name__)

CaseStatus = Literal["ok", "not_implemented", "error", "timeout", "memory", "crashed"]
CHILD_STATUSES = frozenset({"ok", "not_implemented", "error", "memory"})
STATUS_FILE_BYTES = 16 * 1024
SERVER_START_S = 120.0
#: How long the server may take to fork and to report a killed child before it is at fault.
SERVER_REPLY_S = 20.0
_MB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """Resource limits of one sandboxed run (all cases of one exercise).

    Attributes:
        wall_s: wall-clock seconds before the parent kills the process group.
        cpu_s: CPU seconds (``RLIMIT_CPU``; at least the wall limit of a run).
        memory_mb: address space the child may add on top of the preloaded interpreter
            (``RLIMIT_AS`` = current size + this).
        nproc: ``RLIMIT_NPROC`` (only enforced for an unprivileged child; as root the audit
            hook refuses process creation instead).
        fsize_mb: largest file the child may write (``RLIMIT_FSIZE``), output capture included.
        output_bytes: how much of the child's printed output is kept.
    """

    wall_s: float = 10.0
    cpu_s: float = 10.0
    memory_mb: int = 1024
    nproc: int = 64
    fsize_mb: int = 16
    output_bytes: int = 64 * 1024


@dataclass(frozen=True)
class CaseOutcome:
    """What happened on one case.

    Attributes:
        status: ``ok`` (``outputs`` holds the student's arrays), ``not_implemented``,
            ``error``, ``timeout``, ``memory`` or ``crashed``.
        outputs: ``{name: np.ndarray}`` (plain, numeric, validated) when ``ok``, else ``None``.
        message: one readable line saying what went wrong (empty when ``ok``).
    """

    status: CaseStatus
    outputs: dict[str, np.ndarray] | None
    message: str


@dataclass(frozen=True)
class RunOutcome:
    """One :meth:`Sandbox.run`.

    Attributes:
        cases: one :class:`CaseOutcome` per requested case, in order, always.
        output: the child's printed output (stdout and stderr), capped, decoded with
            ``errors="replace"``. Shown to the student; never parsed.
        wall_s: wall-clock seconds of the run, parent side, files included.
        child: details for diagnostics and benchmarks (pid, exit code or signal, CPU seconds,
            peak RSS, the child-side wall time).
    """

    cases: tuple[CaseOutcome, ...]
    output: str
    wall_s: float
    child: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


def default_forbidden_paths() -> list[Path]:
    """What the child may never open: the reference (``cnnref`` and every exercise plugin's
    packages), the grader, ``solutions/``, the secret.

    Found without importing ``cnnref``. ``$CNNLAB_COURSE_SECRET_FILE`` is read from the
    parent's environment here; only the *path* goes to the fork server.
    """
    paths: list[Path] = []
    spec = find_spec("cnnref")
    if spec is not None and spec.submodule_search_locations:
        paths += [Path(p) for p in spec.submodule_search_locations]
    grader_dir = Path(__file__).resolve().parent.parent
    paths.append(grader_dir)
    for root in {grader_dir.parent, *(p.parent for p in paths[:-1])}:
        if (root / "solutions").exists():
            paths.append(root / "solutions")
        if (root / ".course_secret").exists():
            paths.append(root / ".course_secret")
    secret_file = os.environ.get("CNNLAB_COURSE_SECRET_FILE")
    if secret_file:
        paths.append(Path(secret_file))
    paths += plugin_package_paths()  # instructors' plugins hold references too
    return [p.resolve() for p in paths]


def _why_no_unprivileged_user() -> str:
    if os.geteuid() != 0:
        return "the grader does not run as root (its children are unprivileged already)"
    try:
        pwd.getpwnam("nobody")
    except KeyError:
        return "there is no 'nobody' user"
    return (
        "the Python runtime, numpy or torch is not readable by 'nobody' (e.g. a pyenv under "
        "a 0700 /root): the child keeps uid 0, without any capability"
    )


def _unprivileged_user() -> tuple[int, int] | None:
    """(uid, gid) of ``nobody`` when running as root and ``nobody`` could run Python here.

    If the interpreter, numpy or torch live where ``nobody`` cannot read them (say a pyenv
    under a ``0700`` ``/root``), a child that dropped to ``nobody`` could not import anything
    lazily, so it keeps uid 0 (without any capability) and the other layers hold.
    """
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam("nobody")
    except KeyError:
        return None
    needed = [Path(os.__file__).parent, Path(np.__file__).parent]
    torch_spec = find_spec("torch")
    if torch_spec is not None and torch_spec.origin:
        needed.append(Path(torch_spec.origin).parent)
    if not runtime_readable_by_others(needed):
        return None
    return entry.pw_uid, entry.pw_gid


def _library_dirs() -> list[str]:
    """Where ``import torch`` may ``ctypes``-load its shared libraries from: site-packages."""
    import site
    import sysconfig

    dirs = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    dirs.update(site.getsitepackages())
    return sorted(dirs)


#: Extra paths (``os.pathsep``-separated) a single-use container locks away: the autograder's
#: source folder with the wheel.
LOCK_EXTRA_ENV = "CNNLAB_LOCK_DOWN"

#: The folder of a sandbox's base that holds the current run's folder (and nothing else).
RUNS_DIR = "runs"


def _matplotlib_cache_dir() -> str | None:
    """A folder of this user's own for matplotlib's font cache (built once per machine by
    the fork server): ``$XDG_CACHE_HOME/cnnlab/matplotlib``."""
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    path = os.path.join(root, "cnnlab", "matplotlib")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError:
        return None
    return path


def _minimal_env(workdir: str) -> dict[str, str]:
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "HOME": workdir,
        "TMPDIR": workdir,
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "PYTHONHASHSEED": "0",
        "PYTHONDONTWRITEBYTECODE": "1",
        # who the student is to libraries that ask (torch._dynamo's cache folder): without
        # these, getpass reads /etc/passwd and tries nscd's socket
        "LOGNAME": "student",
        "USER": "student",
        "MPLBACKEND": "Agg",
    }


class _Server:
    """The running fork server process and its line protocol."""

    def __init__(self, config: dict[str, Any], base: Path) -> None:
        self.log_path = base / "forkserver.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - lives as long as the server
        root = str(Path(__file__).resolve().parents[2])
        bootstrap = (
            f"import sys; sys.path.insert(0, {root!r}); "
            "from grader.sandbox.forkserver import main; main()"
        )
        argv = [sys.executable, "-I", "-c", bootstrap, json.dumps(config)]
        try:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._log,
                env=_minimal_env(str(base)),
                cwd=str(base),
                close_fds=True,
                start_new_session=True,
            )
        except OSError as exc:
            raise GraderFailure(f"cannot start the sandbox's fork server: {exc}") from exc
        self._buf = b""
        ready = self.read(SERVER_START_S)
        if ready.get("event") != "ready":
            raise GraderFailure(f"the fork server did not start properly: {ready}")
        self.pid: int = ready["pid"]
        self.vm_bytes: int = ready["vm_bytes"]
        self.plan = Plan.from_json(ready["plan"])
        self.dropped: list[str] = list(ready.get("dropped", ()))

    def log_tail(self) -> str:
        try:
            data = self.log_path.read_bytes()[-2000:]
        except OSError:
            return ""
        return data.decode("utf-8", errors="replace").strip()

    def send(self, message: dict[str, Any]) -> None:
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write((json.dumps(message) + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            raise GraderFailure(
                f"the sandbox's fork server is gone ({exc}); log: {self.log_tail()}"
            ) from exc

    def read(self, timeout: float | None) -> dict[str, Any]:
        """The next JSON line; ``{}`` on timeout; GraderFailure if the server died."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = None if timeout is None else time.monotonic() + timeout
        while b"\n" not in self._buf:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                return {}
            chunk = os.read(fd, 65536)
            if not chunk:
                code = self.proc.poll()
                raise GraderFailure(
                    f"the sandbox's fork server exited (status {code}); log: {self.log_tail()}"
                )
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        try:
            return json.loads(line)
        except ValueError as exc:
            raise GraderFailure(f"garbled message from the fork server: {line[:200]!r}") from exc

    def alive(self) -> bool:
        if self.proc.poll() is not None:
            return False
        try:  # a process that was killed but not yet torn down is not alive either
            with open(f"/proc/{self.proc.pid}/stat", "rb") as fh:
                return fh.read().rsplit(b")", 1)[1].split()[0] not in (b"Z", b"X")
        except (OSError, IndexError):
            return False

    def close(self) -> None:
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):  # SIGKILL does not fail
            self.proc.wait(timeout=10)
        self._log.close()


class _ServerGone(GraderFailure):
    """The fork server was found dead before it started the run's child."""


def _kill_group(pid: int, init: int = 0) -> None:
    """SIGKILL the run's init (its PID namespace dies with it) and the child's group."""
    targets = [(os.kill, init)] if init else []
    targets += [(os.killpg, pid), (os.kill, pid)]
    for kill, target in targets:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            kill(target, signal.SIGKILL)


class Sandbox:
    """Runs student functions in sandboxed children. A context manager; not thread-safe.

    Args:
        limits: default resource limits of every run.
        preload_torch: import torch in the fork server (costs its start-up ~1-2 s once;
            without it a child that imports torch pays that on every run).
        preload_optimizer: with ``preload_torch``, also take one SGD and one Adam step in
            the fork server (the first step imports ``torch._dynamo`` and sympy: ~2 s, paid
            once there instead of in every child that trains).
        drop_privileges: run children as ``nobody`` when the grader runs as root (the
            default, ``None``, does so when possible; ``False`` never does).
        forbidden_paths: extra files/folders the child may not open, on top of
            :func:`default_forbidden_paths` (the Landlock allow-list never covers them).
        workroot: where the per-run temporary folders go (default: the system temp dir).
        layers_off: isolation layers to leave out (names of
            :data:`grader.sandbox.layers.LAYERS`): for tests and ``cnnlab doctor`` only,
            never for grading. ``$CNNLAB_SANDBOX_LAYERS_OFF`` adds to it.

    Which layers hold is known once the fork server has started (:attr:`plan`,
    :meth:`weak_reasons`). A child that cannot put every layer of the plan in place makes
    its run a grader failure.

    Example::

        with Sandbox(Limits(wall_s=5)) as box:
            outcome = box.run(load_submission("exercises/"), harness="call",
                              function="conv_output_size",
                              cases=[{"n_in": 32, "kernel_size": 3}])
        outcome.cases[0].status, outcome.cases[0].outputs
    """

    def __init__(
        self,
        limits: Limits = Limits(),  # noqa: B008 - frozen dataclass, safe default
        *,
        preload_torch: bool = True,
        preload_optimizer: bool = True,
        drop_privileges: bool | None = None,
        forbidden_paths: Iterable[str | os.PathLike[str]] = (),
        workroot: str | os.PathLike[str] | None = None,
        layers_off: Iterable[str] = (),
    ) -> None:
        self.limits = limits
        self.preload_torch = preload_torch
        self.preload_optimizer = preload_optimizer
        self.layers_off = frozenset(layers_off) | layers_off_from_env()
        unknown = self.layers_off - set(LAYERS)
        if unknown:
            raise ValueError(f"unknown sandbox layer(s) {sorted(unknown)}; known: {LAYERS}")
        self.drop_to = None if drop_privileges is False else _unprivileged_user()
        if drop_privileges and self.drop_to is None:
            raise GraderFailure("drop_privileges=True needs root and a 'nobody' user")
        self.forbidden = [str(p) for p in default_forbidden_paths()]
        self.forbidden += [str(Path(p).resolve()) for p in forbidden_paths]
        self._workroot = workroot
        self._base: Path | None = None
        self._server: _Server | None = None
        self._lock = threading.Lock()
        self._runs = 0
        self.memory = ContainerMemory.detect()
        #: What was locked away for a single-use container (see :meth:`_single_use_lockdown`).
        self.locked: list[str] = []

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:  # pragma: no cover - best effort at interpreter exit
        with contextlib.suppress(Exception):
            self.close()

    def start(self) -> None:
        """Start the fork server now (otherwise the first :meth:`run` does)."""
        if self._server is not None and self._server.alive():
            return
        if self._server is not None:
            self._server.close()
            self._server = None
        if self._base is None:
            try:
                self._base = Path(tempfile.mkdtemp(prefix="cnnlab-sandbox-", dir=self._workroot))
                os.chmod(self._base, 0o711)  # an unprivileged child may pass, not list
                (self._base / RUNS_DIR).mkdir(mode=0o711)
            except OSError as exc:
                raise GraderFailure(f"cannot create the sandbox's temporary folder: {exc}") from exc
        self._single_use_lockdown()
        config = {
            "lockdown": bool(self.locked),
            "preload_torch": self.preload_torch,
            "preload_optimizer": self.preload_optimizer,
            "off": sorted(self.layers_off),
            "forbidden": [*self.forbidden, str(self._base / "forkserver.log")],
            "drop_to": list(self.drop_to) if self.drop_to else None,
            "uid_why": None if self.drop_to else _why_no_unprivileged_user(),
            "runs_dir": str(self._base / RUNS_DIR),
            "mplconfigdir": _matplotlib_cache_dir(),
        }
        self._server = _Server(config, self._base)

    def _single_use_lockdown(self) -> None:
        """In a single-use grading container (``$CNNLAB_SINGLE_USE_CONTAINER=1``, set by the
        Gradescope autograder) whose children run as an unprivileged uid: lock the reference,
        the grader, ``solutions/``, the secret, cnnlab's install records, plugins and the
        autograder's source folder (the wheel) away for good, before any child exists. The
        expected outputs are computed by then (the engine prepares before it starts the
        sandbox). A filesystem layer where Landlock is missing."""
        if self.locked or os.environ.get(SINGLE_USE_ENV) != "1" or self.drop_to is None:
            return
        if "lockdown" in self.layers_off:
            return
        from grader.sandbox.filesystem import excluded_distributions, excluded_paths, lock_down

        targets = [*self.forbidden, *sorted(excluded_paths(excluded_distributions()))]
        targets += [p for p in os.environ.get(LOCK_EXTRA_ENV, "").split(os.pathsep) if p]
        self.locked = lock_down(targets)

    @property
    def plan(self) -> Plan:
        """The layers every child gets on this machine (starts the fork server if needed)."""
        self.start()
        assert self._server is not None
        return self._server.plan

    def weak_reasons(self) -> list[str]:
        """Why grading here is not safe for credit: one line per missing filesystem layer
        (empty when the reference, solutions and classmates are out of the child's reach)."""
        plan = self.plan
        if any(plan.has(layer) for layer in FILESYSTEM_LAYERS):
            return []
        return [
            f"no {layer} ({plan.why_not.get(layer, 'not available')})"
            for layer in FILESYSTEM_LAYERS
        ]

    def close(self) -> None:
        """Stop the fork server and remove the temporary folders."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        base, self._base = self._base, None
        if base is not None:
            remove_tree(base)

    @property
    def server_pid(self) -> int | None:
        return self._server.pid if self._server is not None else None

    # ------------------------------------------------------------------ running

    def run(
        self,
        submission: Submission,
        *,
        harness: str,
        function: str,
        cases: Sequence[dict[str, Any]],
        module_hint: str | None = None,
        timeout_s: float | None = None,
        max_output_bytes: int | None = None,
    ) -> RunOutcome:
        """Run ``harness`` on every case in one fresh child.

        Args:
            submission: the student's source (:func:`grader.submission.load_submission`).
            harness: key of ``grader.sandbox.harness.HARNESSES`` (e.g. ``"call"``).
            function: the student function the harness calls.
            cases: keyword arguments of each call (see :func:`grader.sandbox.caseio.encode_case`).
            module_hint: module to look in first (the exercise's topic, e.g. ``"pooling"``).
            timeout_s: wall-clock limit of this run (default ``limits.wall_s``); the CPU
                limit is raised to match when it is larger.
            max_output_bytes: the most bytes of arrays one case may return (the size of the
                expected outputs, plus slack); an output file declaring more is refused
                before anything is decompressed. Default: :data:`DEFAULT_OUTPUT_BYTES`.

        Returns:
            One :class:`CaseOutcome` per case. A timeout or crash on case ``k`` keeps the
            results of cases before ``k`` and gives ``k`` and later cases that status.

        Raises:
            GraderFailure: the sandbox itself failed (not the student's fault).
        """
        with self._lock:
            return self._run(
                submission,
                harness,
                function,
                list(cases),
                module_hint,
                timeout_s,
                max_output_bytes or DEFAULT_OUTPUT_BYTES,
            )

    def _memory(self) -> tuple[int, str]:
        """The run's memory limit (MB above the interpreter) and the message naming it."""
        mb = self.limits.memory_mb
        message = f"ran out of memory (limit {mb} MB above the interpreter)"
        headroom = self.memory.headroom_mb()
        if headroom is not None and headroom < mb:
            total = (self.memory.limit_bytes or 0) // _MB
            mb = max(16, headroom)
            message = (
                f"ran out of memory (limit {mb} MB: what the grading container's {total} MB "
                "leave for your code)"
            )
        return mb, message

    def _write_inputs(
        self, workdir: Path, submission: Submission, cases: list[dict[str, Any]]
    ) -> None:
        """The run folder: the cases, and the submission's own copy in ``submission/``
        (the child's working directory; its modules' ``__file__`` point there)."""
        workdir.mkdir(mode=0o700, exist_ok=True)  # made by mkdtemp (mode 0700)
        code_dir = workdir / SUBMISSION_DIR
        code_dir.mkdir(mode=0o700)
        data = json.loads(submission.to_json())
        files: dict[str, str] = {}
        used: set[str] = set()
        # The student's files keep their places relative to each other (a module reads a data
        # file beside it, in its own sub-folder): paths inside the submission, never outside.
        for name, source in submission.modules.items():
            rel = _inside_copy(submission.files.get(name) or "") or f"{name}.py"
            if rel in used:
                rel = f"{name}.py"
            used.add(rel)
            target = code_dir / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(source, encoding="utf-8")
            files[name] = str(target)
        for rel, content in submission.data.items():
            rel = _inside_copy(rel)
            if not rel or rel in used or any(rel.startswith(u + "/") for u in used):
                continue
            target = code_dir / rel
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(content)
            except (FileExistsError, IsADirectoryError, NotADirectoryError):
                continue  # a data file where a folder of the copy is: the code comes first
        data["files"] = files
        data["path"] = str(code_dir)
        (workdir / SUBMISSION_FILE).write_text(json.dumps(data), encoding="utf-8")
        for i, case in enumerate(cases):
            caseio.save_npz(workdir / case_in(i), caseio.encode_case(case))

    def _run(
        self,
        submission: Submission,
        harness: str,
        function: str,
        cases: list[dict[str, Any]],
        module_hint: str | None,
        timeout_s: float | None,
        max_output_bytes: int,
    ) -> RunOutcome:
        t0 = time.monotonic()
        self.start()
        assert self._server is not None and self._base is not None
        server = self._server
        wall_limit = float(self.limits.wall_s if timeout_s is None else timeout_s)
        cpu_limit = max(float(self.limits.cpu_s), wall_limit if timeout_s is not None else 0.0)
        self._runs += 1
        runs = self._base / RUNS_DIR
        _empty_folder(runs)  # whatever an earlier child left (it could write all of runs/)
        try:  # a name no earlier child could guess and take first
            workdir = Path(tempfile.mkdtemp(prefix=f"run-{self._runs:05d}-", dir=runs))
            self._write_inputs(workdir, submission, cases)
        except caseio.CaseEncodingError:
            _empty_folder(runs)
            raise
        except OSError as exc:
            _empty_folder(runs)
            raise GraderFailure(f"cannot write the sandbox's input files: {exc}") from exc
        memory_mb, memory_message = self._memory()
        limits = {
            "wall_s": wall_limit,
            "cpu_s": cpu_limit,
            "memory_mb": memory_mb,
            "memory_message": memory_message,
            "nproc": self.limits.nproc,
            "fsize_mb": self.limits.fsize_mb,
            "output_bytes": self.limits.output_bytes,
        }
        request = {
            "op": "run",
            "workdir": str(workdir),
            "harness": harness,
            "function": function,
            "module_hint": module_hint,
            "n_cases": len(cases),
            "limits": limits,
            "env": _minimal_env(str(workdir)),
            "policy": {
                "forbidden": self.forbidden,
                "blocked_modules": ["cnnref", "solutions", *plugin_packages()],
                "allowed_grader_modules": [],  # the server fills in what it preloaded
                "library_dirs": _library_dirs(),
            },
        }
        oom_before = self.memory.oom_kills()
        try:
            try:
                report, timed_out = self._exchange(server, request, wall_limit)
            except _ServerGone:  # it died between runs (killed, or out of memory): restart once
                self._discard_server()
                self.start()
                assert self._server is not None
                server = self._server
                report, timed_out = self._exchange(server, request, wall_limit)
            report["oom_killed"] = self.memory.oom_kills() > oom_before
            report["memory_message"] = memory_message
            outcome = self._collect(
                workdir, len(cases), report, timed_out, wall_limit, cpu_limit, max_output_bytes
            )
            if len(outcome[0]) and outcome[0][-1].status in ("timeout", "memory", "crashed"):
                outcome = (_locate_stop(workdir, outcome[0], submission), outcome[1])
        except GraderFailure:
            self._discard_server()
            raise
        finally:
            _empty_folder(runs)  # nothing the child wrote outlives its run
        return RunOutcome(
            cases=outcome[0], output=outcome[1], wall_s=time.monotonic() - t0, child=report
        )

    def _discard_server(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None

    def _exchange(
        self, server: _Server, request: dict[str, Any], wall_limit: float
    ) -> tuple[dict[str, Any], bool]:
        try:
            server.send(request)
            started = server.read(SERVER_REPLY_S)
        except GraderFailure as exc:
            if server.alive():
                raise
            raise _ServerGone(str(exc)) from exc
        if started.get("event") != "started":
            raise GraderFailure(f"the fork server did not start a child: {started or 'no reply'}")
        pid = int(started["pid"])
        init = int(started.get("init") or 0)
        timed_out = False
        report = server.read(wall_limit)
        if not report:  # the wall-clock limit: kill the whole run from outside
            timed_out = True
            _kill_group(pid, init)
            report = server.read(SERVER_REPLY_S)
            if not report:
                raise GraderFailure(f"the fork server did not reap child {pid} after SIGKILL")
        _kill_group(pid)  # finished or not: nothing the child started outlives the run
        if report.get("event") != "exited" or report.get("pid") != pid:
            raise GraderFailure(f"unexpected message from the fork server: {report}")
        setup = str(report.get("setup", ""))
        if not setup.startswith("S"):
            raise GraderFailure(
                f"the sandboxed child could not set itself up: {setup[1:] or 'no report'}"
            )
        try:
            setup_report = json.loads(setup[1:] or "{}")
            in_place = list(setup_report["layers"])
        except (ValueError, KeyError, TypeError) as exc:
            raise GraderFailure(f"garbled set-up report from the child: {setup[:200]!r}") from exc
        missing = sorted(set(server.plan.on) - set(in_place))
        if missing:  # fail closed: a layer this machine has was not put in place
            raise GraderFailure(f"the sandboxed child lacks the layer(s) {', '.join(missing)}")
        report["layers"] = in_place
        report["setup_s"] = setup_report.get("seconds", {})
        report["init"] = init
        return report, timed_out

    def _collect(
        self,
        workdir: Path,
        n_cases: int,
        report: dict[str, Any],
        timed_out: bool,
        wall_limit: float,
        cpu_limit: float,
        max_output_bytes: int,
    ) -> tuple[tuple[CaseOutcome, ...], str]:
        output = _read_output(workdir / OUTPUT_FILE, self.limits.output_bytes)
        results: list[CaseOutcome] = []
        for i in range(n_cases):
            try:
                status_bytes = caseio.read_regular(workdir / case_status(i), STATUS_FILE_BYTES)
            except FileNotFoundError:
                break
            except caseio.BadArrayFile as exc:
                results.append(
                    CaseOutcome("error", None, f"the result of case {i} was tampered with ({exc})")
                )
                continue
            results.append(_read_case(workdir, i, status_bytes, max_output_bytes))
        if len(results) < n_cases:
            status, message = self._verdict(report, timed_out, wall_limit, cpu_limit)
            results += [CaseOutcome(status, None, message)] * (n_cases - len(results))
        return tuple(results), output

    def _verdict(
        self, report: dict[str, Any], timed_out: bool, wall_limit: float, cpu_limit: float
    ) -> tuple[CaseStatus, str]:
        """Why the child stopped before writing every case (status for the rest)."""
        sig, code = report.get("signal"), report.get("code")
        cpu = float(report.get("cpu_s") or 0.0)
        if timed_out:
            return "timeout", f"killed after {wall_limit:.1f} s (time limit)"
        if sig == signal.SIGXCPU or (sig == signal.SIGKILL and cpu >= cpu_limit - 0.05):
            return "timeout", f"killed after {cpu_limit:.1f} s of CPU time (time limit)"
        if sig == signal.SIGKILL and report.get("oom_killed"):
            return "memory", (
                f"{report.get('memory_message') or 'ran out of memory'}; the kernel's "
                f"out-of-memory killer stopped it ({self.memory.describe()})"
            )
        if sig is not None:
            name = _signal_name(sig)
            if sig in (signal.SIGSEGV, signal.SIGABRT, signal.SIGBUS) and self._near_memory(report):
                return "memory", (
                    f"{report.get('memory_message') or 'ran out of memory'} "
                    f"(the process died with {name})"
                )
            return "crashed", f"crashed with {name}"
        return "crashed", f"exited with status {code} before returning a result"

    def _near_memory(self, report: dict[str, Any]) -> bool:
        peak = int(report.get("maxrss_kb") or 0) * 1024
        return peak >= 0.8 * self.limits.memory_mb * _MB


def read_progress(workdir: Path, submission: Submission) -> tuple[str, bool] | None:
    """Where the student's code was being loaded when the child stopped, from its
    :data:`PROGRESS_FILE`: ``(where, in_notebook)``, ``where`` being a file of the submission
    or a notebook and its cell. ``None`` when it stopped elsewhere (in a case), when nothing
    was recorded, or when the text names no file of this submission: the student's code can
    write the run folder, so the marker is only believed when it names one of their files."""
    try:
        raw = caseio.read_regular(workdir / PROGRESS_FILE, PROGRESS_BYTES)
    except (OSError, caseio.BadArrayFile):
        return None
    parts = raw.decode("utf-8", "replace").split("\t")
    if len(parts) != 3 or parts[0] != "load" or parts[2] not in ("file", "notebook"):
        return None
    where, in_notebook = parts[1], parts[2] == "notebook"
    files = {str(f) for f in submission.files.values()}
    names = files | {f.rsplit("/", 1)[-1] for f in files}
    owner = where.split(", ", 1)[0] if in_notebook else where
    if owner not in names or not where.isprintable():
        return None
    return where, in_notebook


def _locate_stop(
    workdir: Path, cases: tuple[CaseOutcome, ...], submission: Submission
) -> tuple[CaseOutcome, ...]:
    """``cases`` with the message of the cases a timeout, a crash or a blow-up stopped told
    where it happened when that was while loading the student's code: code at the top level
    of a file (or in a notebook cell) runs every time the file is graded, before any function
    is called, and is the usual cause of a "timeout" in every case."""
    progress = read_progress(workdir, submission)
    if progress is None:
        return cases
    where, notebook = progress
    stopped = cases[-1]
    advice = ""
    if stopped.status == "timeout":
        advice = (
            "; code outside any function runs whenever your work is graded: put a long "
            "computation, a training run or an endless loop inside a function"
            + (
                ", or in a cell of its own that defines nothing (grading skips such cells)"
                if notebook
                else ', or under `if __name__ == "__main__":`'
            )
        )
    message = (
        f"{stopped.message} while your code was being loaded ({where} had not finished){advice}"
    )
    return tuple(
        CaseOutcome(c.status, c.outputs, message)
        if c.status == stopped.status and c.message == stopped.message
        else c
        for c in cases
    )


#: Default bound on the arrays one case may return (bytes) when the caller gives none.
DEFAULT_OUTPUT_BYTES = 64 * _MB


def _inside_copy(rel: str) -> str:
    """``rel`` (a path inside the submission) as a relative POSIX path that stays inside the
    run's copy, or ``""``: no absolute path, no ``..``, no hidden part."""
    parts = [p for p in rel.replace("\\", "/").split("/") if p not in ("", ".")]
    if not parts or rel.startswith("/") or any(p == ".." or p.startswith(".") for p in parts):
        return ""
    return "/".join(parts)


def remove_tree(path: Path) -> None:
    """Remove ``path`` and everything under it, whatever a child made there: never raises.

    ``shutil.rmtree`` recurses once per folder level (Python 3.11), so a chain of a few
    thousand nested folders raises ``RecursionError``; coreutils' ``rm -rf`` (fts, no depth
    limit, never follows links) removes what it leaves. What even that cannot remove is logged.
    """
    with contextlib.suppress(RecursionError):
        shutil.rmtree(path, ignore_errors=True)
    if not os.path.lexists(path):
        return
    try:
        subprocess.run(
            ["rm", "-rf", "--one-file-system", "--", str(path)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=120,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        log.warning("cannot remove %s: %s", path, exc)
        return
    if os.path.lexists(path):
        log.warning("cannot remove %s completely", path)


def _empty_folder(folder: Path) -> None:
    """Remove everything inside ``folder`` (not the folder itself); never raises."""
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        remove_tree(folder / name)


def _signal_name(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


def _read_output(path: Path, cap: int) -> str:
    """The child's printed output: the first ``cap`` bytes of a regular file, never a FIFO,
    device or link (opened ``O_NOFOLLOW|O_NONBLOCK`` and checked with ``fstat``)."""
    try:
        data, size = caseio.read_regular_prefix(path, cap)
    except (OSError, caseio.BadArrayFile):
        return ""
    text = data.decode("utf-8", errors="replace")
    if size > cap:
        text += f"\n[... output cut: {size} bytes printed, the first {cap} kept]"
    return text


def _read_case(workdir: Path, i: int, status_bytes: bytes, max_output_bytes: int) -> CaseOutcome:
    """Case ``i``'s status and outputs, validated; anything odd is the student's error."""
    try:
        record = json.loads(status_bytes.decode("utf-8", errors="replace"))
        status, message = record["status"], record["message"]
        if status not in CHILD_STATUSES or not isinstance(message, str):
            raise ValueError(f"bad status record {record!r:.80}")
    except Exception as exc:  # noqa: BLE001 - hostile bytes: RecursionError, MemoryError ...
        reason = f"{type(exc).__name__}: {exc}"[:200]
        return CaseOutcome("error", None, f"the result of case {i} was tampered with ({reason})")
    message = message[:500]
    if status != "ok":
        return CaseOutcome(status, None, message)
    try:
        outputs = caseio.load_npz_strict(
            workdir / case_out(i), max_total_bytes=max_output_bytes, max_members=MAX_OUTPUT_ARRAYS
        )
    except caseio.BadArrayFile as exc:
        return CaseOutcome("error", None, f"the returned value could not be read back: {exc}")
    return CaseOutcome("ok", outputs, "")


#: The most arrays one case may return (a harness returns a handful).
MAX_OUTPUT_ARRAYS = 64
