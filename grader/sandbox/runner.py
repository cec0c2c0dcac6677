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
from grader.sandbox import caseio
from grader.sandbox.child import (
    OUTPUT_FILE,
    SUBMISSION_FILE,
    case_in,
    case_out,
    case_status,
)
from grader.submission import Submission

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
    """What the child may never open: the reference, the grader, ``solutions/``, the secret.

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
    return [p.resolve() for p in paths]


def _world_readable(path: str | os.PathLike[str]) -> bool:
    """Whether any user can read ``path`` (every folder on the way searchable by others)."""
    p = Path(path).resolve()
    try:
        if not p.stat().st_mode & 0o004:
            return False
        return all(parent.stat().st_mode & 0o001 for parent in p.parents)
    except OSError:
        return False


def _unprivileged_user() -> tuple[int, int] | None:
    """(uid, gid) of ``nobody`` when running as root and ``nobody`` could run Python here.

    If the interpreter, numpy or torch live where ``nobody`` cannot read them (say a pyenv
    under ``/root``), a child that dropped to ``nobody`` could not import anything lazily, so
    it keeps running as root and the audit hook does the work alone (docs/security.md).
    """
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam("nobody")
    except KeyError:
        return None
    needed = [Path(os.__file__).parent, Path(np.__file__).parent, Path(sys.executable)]
    if not all(_world_readable(p) for p in needed):
        return None
    return entry.pw_uid, entry.pw_gid


def _library_dirs() -> list[str]:
    """Where ``import torch`` may ``ctypes``-load its shared libraries from: site-packages."""
    import site
    import sysconfig

    dirs = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    dirs.update(site.getsitepackages())
    return sorted(dirs)


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
    }


class _Server:
    """The running fork server process and its line protocol."""

    def __init__(self, preload_torch: bool, base: Path) -> None:
        self.log_path = base / "forkserver.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - lives as long as the server
        root = str(Path(__file__).resolve().parents[2])
        bootstrap = (
            f"import sys; sys.path.insert(0, {root!r}); "
            "from grader.sandbox.forkserver import main; main()"
        )
        argv = [sys.executable, "-I", "-c", bootstrap]
        if not preload_torch:
            argv.append("--no-torch")
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
        return self.proc.poll() is None

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


def _kill_group(pid: int) -> None:
    for kill in (os.killpg, os.kill):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            kill(pid, signal.SIGKILL)


class Sandbox:
    """Runs student functions in sandboxed children. A context manager; not thread-safe.

    Args:
        limits: default resource limits of every run.
        preload_torch: import torch in the fork server (costs its start-up ~1-2 s once;
            without it a child that imports torch pays that on every run).
        drop_privileges: run children as ``nobody`` when the grader runs as root (the
            default, ``None``, does so when possible; ``False`` never does).
        forbidden_paths: extra files/folders the child may not open, on top of
            :func:`default_forbidden_paths`.
        workroot: where the per-run temporary folders go (default: the system temp dir).

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
        drop_privileges: bool | None = None,
        forbidden_paths: Iterable[str | os.PathLike[str]] = (),
        workroot: str | os.PathLike[str] | None = None,
    ) -> None:
        self.limits = limits
        self.preload_torch = preload_torch
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
            except OSError as exc:
                raise GraderFailure(f"cannot create the sandbox's temporary folder: {exc}") from exc
        self._server = _Server(self.preload_torch, self._base)

    def close(self) -> None:
        """Stop the fork server and remove the temporary folders."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        base, self._base = self._base, None
        if base is not None:
            shutil.rmtree(base, ignore_errors=True)

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

        Returns:
            One :class:`CaseOutcome` per case. A timeout or crash on case ``k`` keeps the
            results of cases before ``k`` and gives ``k`` and later cases that status.

        Raises:
            GraderFailure: the sandbox itself failed (not the student's fault).
        """
        with self._lock:
            return self._run(submission, harness, function, list(cases), module_hint, timeout_s)

    def _run(
        self,
        submission: Submission,
        harness: str,
        function: str,
        cases: list[dict[str, Any]],
        module_hint: str | None,
        timeout_s: float | None,
    ) -> RunOutcome:
        t0 = time.monotonic()
        self.start()
        assert self._server is not None and self._base is not None
        server = self._server
        wall_limit = float(self.limits.wall_s if timeout_s is None else timeout_s)
        cpu_limit = max(float(self.limits.cpu_s), wall_limit if timeout_s is not None else 0.0)
        self._runs += 1
        workdir = self._base / f"run-{self._runs:05d}"
        try:
            workdir.mkdir(mode=0o700)
            (workdir / SUBMISSION_FILE).write_text(submission.to_json(), encoding="utf-8")
            for i, case in enumerate(cases):
                caseio.save_npz(workdir / case_in(i), caseio.encode_case(case))
        except caseio.CaseEncodingError:
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        except OSError as exc:
            shutil.rmtree(workdir, ignore_errors=True)
            raise GraderFailure(f"cannot write the sandbox's input files: {exc}") from exc
        limits = {
            "wall_s": wall_limit,
            "cpu_s": cpu_limit,
            "memory_mb": self.limits.memory_mb,
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
            "drop_to": ({"uid": self.drop_to[0], "gid": self.drop_to[1]} if self.drop_to else None),
            "policy": {
                "forbidden": self.forbidden,
                "blocked_modules": ["cnnref", "solutions"],
                "allowed_grader_modules": [],  # the server fills in what it preloaded
                "library_dirs": _library_dirs(),
            },
        }
        try:
            report, timed_out = self._exchange(server, request, wall_limit)
            outcome = self._collect(workdir, len(cases), report, timed_out, wall_limit, cpu_limit)
        except GraderFailure:
            self._discard_server()
            raise
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
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
        server.send(request)
        started = server.read(SERVER_REPLY_S)
        if started.get("event") != "started":
            raise GraderFailure(f"the fork server did not start a child: {started or 'no reply'}")
        pid = int(started["pid"])
        timed_out = False
        report = server.read(wall_limit)
        if not report:  # the wall-clock limit: kill the whole group from outside
            timed_out = True
            _kill_group(pid)
            report = server.read(SERVER_REPLY_S)
            if not report:
                raise GraderFailure(f"the fork server did not reap child {pid} after SIGKILL")
        _kill_group(pid)  # finished or not: nothing the child started outlives the run
        if report.get("event") != "exited" or report.get("pid") != pid:
            raise GraderFailure(f"unexpected message from the fork server: {report}")
        if not str(report.get("setup", "")).startswith("S"):
            raise GraderFailure(
                "the sandboxed child could not set itself up: "
                f"{str(report.get('setup', ''))[1:] or 'no report'}"
            )
        return report, timed_out

    def _collect(
        self,
        workdir: Path,
        n_cases: int,
        report: dict[str, Any],
        timed_out: bool,
        wall_limit: float,
        cpu_limit: float,
    ) -> tuple[tuple[CaseOutcome, ...], str]:
        output = _read_output(workdir / OUTPUT_FILE, self.limits.output_bytes)
        results: list[CaseOutcome] = []
        for i in range(n_cases):
            status_file = workdir / case_status(i)
            if not status_file.is_file():
                break
            results.append(_read_case(workdir, i, status_file))
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
        if sig is not None:
            name = _signal_name(sig)
            if sig in (signal.SIGSEGV, signal.SIGABRT, signal.SIGBUS) and self._near_memory(report):
                return "memory", (
                    f"ran out of memory (limit {self.limits.memory_mb} MB above the "
                    f"interpreter; the process died with {name})"
                )
            return "crashed", f"crashed with {name}"
        return "crashed", f"exited with status {code} before returning a result"

    def _near_memory(self, report: dict[str, Any]) -> bool:
        server = self._server
        if server is None:
            return False
        peak = int(report.get("maxrss_kb") or 0) * 1024
        return peak >= 0.8 * self.limits.memory_mb * _MB


def _signal_name(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


def _read_output(path: Path, cap: int) -> str:
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            data = fh.read(cap)
    except OSError:
        return ""
    text = data.decode("utf-8", errors="replace")
    if size > cap:
        text += f"\n[... output cut: {size} bytes printed, the first {cap} kept]"
    return text


def _read_case(workdir: Path, i: int, status_file: Path) -> CaseOutcome:
    """Case ``i``'s status and outputs, validated; anything odd is the student's error."""
    try:
        if status_file.stat().st_size > STATUS_FILE_BYTES:
            raise ValueError("status file too large")
        record = json.loads(status_file.read_text(encoding="utf-8", errors="replace"))
        status, message = record["status"], record["message"]
        if status not in CHILD_STATUSES or not isinstance(message, str):
            raise ValueError(f"bad status record {record!r:.80}")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return CaseOutcome("error", None, f"the result of case {i} was tampered with ({exc})")
    message = message[:500]
    if status != "ok":
        return CaseOutcome(status, None, message)
    try:
        outputs = caseio.load_npz_strict(workdir / case_out(i))
    except caseio.BadArrayFile as exc:
        return CaseOutcome("error", None, f"the returned value could not be read back: {exc}")
    return CaseOutcome("ok", outputs, "")
