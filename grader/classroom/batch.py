"""Grading a class: find every student's submission, grade each in isolation, keep a gradebook.

The pipeline, one small step each:

1. :func:`discover` turns a submissions folder into :class:`Entry` records (one per student and
   assignment): folders, ``.zip`` files, ``.py`` files, notebooks, and nbgrader's
   ``submitted/<student>/<assignment>/`` layout. The student id is the entry's name.
2. :func:`content_hash` fingerprints an entry's files, so ``--resume`` can tell an already
   graded submission from a changed resubmission.
3. :func:`run_batch` grades the entries in worker processes (``jobs`` of them, each with its
   own sandbox), writes each result to the :class:`~grader.classroom.gradebook.Gradebook` in one
   transaction as soon as it is finished, retries a grader failure once and records it as
   ``grader_error`` (never a score), and writes a feedback file per student.
4. The command (``grader/commands/batch.py``) then writes the CSV and the PNG report.

Student code never runs in this process or in the workers: the engine runs it in sandboxed
children. A worker only prepares cases, compares outputs and reports back; a worker that dies
or hangs (a grader fault) is killed and replaced, and its submission retried once.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import importlib
import io
import json
import multiprocessing
import os
import re
import signal
import stat
import tempfile
import time
import traceback
import unicodedata
import urllib.parse
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any, Literal

from grader import seeds
from grader.classroom.gradebook import (
    GRADER_ERROR,
    UNREADABLE,
    Gradebook,
    GradedSubmission,
    write_atomic,
)
from grader.errors import ConfigError, GraderFailure, SubmissionError
from grader.results import Result, Status, SubmissionResult
from grader.sanitize import clean_text, csv_cell, md_code_block, md_text, truncate

# -- limits for .zip submissions (a zip bomb or a path traversal must not hurt the batch) ---

#: Most members a submission zip may hold.
ZIP_MAX_MEMBERS = 500
#: Most bytes one extracted member may have.
ZIP_MAX_MEMBER_BYTES = 16 * 1024 * 1024
#: Most bytes a whole extracted submission may have.
ZIP_MAX_TOTAL_BYTES = 64 * 1024 * 1024
#: The grading function workers call: the engine in the worker's sandbox.
DEFAULT_GRADE_FN = "grader.classroom.batch:grade_entry"
#: Seconds a worker may take to start (import torch, the registry) before it is replaced.
WORKER_START_TIMEOUT_S = 300.0
#: Worker start failures after which the batch stops trying (the grader cannot run here).
MAX_WORKER_START_FAILURES = 3
#: Files taken out of a zip; everything else (data, caches, binaries) is left in it.
GRADABLE_SUFFIXES = (".py", ".ipynb")

_IGNORED_NAMES = {"__MACOSX", "__pycache__", "Thumbs.db", "desktop.ini"}

EntryKind = Literal["folder", "file", "notebook", "zip"]


@dataclass(frozen=True)
class Entry:
    """One student's submission of one assignment, as found on disk.

    Attributes:
        student: student id, the entry's name (``alice`` for ``alice/``, ``alice.zip``,
            ``alice.py``, ``alice.ipynb`` or nbgrader's ``submitted/alice/<assignment>/``).
        assignment: assignment name (nbgrader's folder name, else the batch's assignment).
        path: the folder, file or zip to grade.
        kind: ``folder``, ``file`` (.py), ``notebook`` (.ipynb) or ``zip``.
    """

    student: str
    assignment: str
    path: Path
    kind: EntryKind


@dataclass(frozen=True)
class Discovery:
    """What :func:`discover` found.

    Attributes:
        entries: gradable entries, sorted by (assignment, student).
        skipped: ``(path, reason)`` for everything that was not taken (shown as warnings).
        nbgrader: True when the folder had nbgrader's ``submitted/`` layout.
    """

    entries: tuple[Entry, ...]
    skipped: tuple[tuple[Path, str], ...] = ()
    nbgrader: bool = False


def _ignored(p: Path) -> bool:
    return p.name.startswith(".") or p.name in _IGNORED_NAMES or p.name.startswith("~$")


def _kind_of(p: Path) -> EntryKind | None:
    if p.is_dir():
        return "folder"
    suffix = p.suffix.lower()
    return {".py": "file", ".ipynb": "notebook", ".zip": "zip"}.get(suffix)  # type: ignore[return-value]


def _student_id(name: str) -> str:
    return name.strip()


def discover(
    root: str | Path,
    *,
    assignment: str = seeds.DEFAULT_ASSIGNMENT,
    only_assignment: str | None = None,
    exclude: Iterable[Path] = (),
) -> Discovery:
    """Find one submission per student in ``root``.

    Layouts understood:

    * a folder with one entry per student: ``alice/`` (a folder of ``.py`` files or
      notebooks), ``bob.zip``, ``carol.py``, ``dave.ipynb``;
    * nbgrader: ``root/submitted/<student>/<assignment>/`` or ``root`` being ``submitted/``
      itself; every assignment found is graded unless ``only_assignment`` names one.

    Args:
        root: the submissions folder.
        assignment: assignment name given to entries of the flat layout.
        only_assignment: nbgrader layout: grade only this assignment.
        exclude: paths never taken as a submission (the batch's own --out folder).

    Returns:
        The entries found and what was skipped.

    Raises:
        SubmissionError: ``root`` is missing or not a folder, holds no submission, or holds
            two entries for the same student.
    """
    root = Path(root)
    if not root.exists():
        raise SubmissionError(
            f"no such folder {str(root)!r}: pass the folder holding one folder, .zip, .py or "
            ".ipynb per student (or nbgrader's course folder with submitted/)"
        )
    if not root.is_dir():
        raise SubmissionError(
            f"{str(root)!r} is a file: `cnnlab batch` takes a folder of submissions; "
            f"to grade one submission run `cnnlab grade {root}`"
        )
    nb_root = None
    if root.name == "submitted":
        nb_root = root
    elif (root / "submitted").is_dir():
        nb_root = root / "submitted"
    if nb_root is not None:
        return _discover_nbgrader(nb_root, only_assignment)

    entries: list[Entry] = []
    skipped: list[tuple[Path, str]] = []
    seen: dict[str, Path] = {}
    excluded = {q.resolve() for q in exclude}
    for p in sorted(root.iterdir()):
        if _ignored(p) or p.resolve() in excluded:
            continue
        kind = _kind_of(p)
        if kind is None:
            skipped.append((p, "not a folder, .zip, .py or .ipynb"))
            continue
        student = _student_id(p.stem if kind != "folder" else p.name)
        if student in seen:
            raise SubmissionError(
                f"two submissions for student {student!r}: {seen[student].name} and {p.name}; "
                "keep one of them (or move the other out of the folder) and run again"
            )
        seen[student] = p
        entries.append(Entry(student, assignment, p, kind))
    if not entries:
        raise SubmissionError(
            f"no submissions in {str(root)!r}: expected one folder, .zip, .py or .ipynb per "
            "student, or nbgrader's submitted/<student>/<assignment>/ layout"
        )
    return Discovery(tuple(entries), tuple(skipped))


def _discover_nbgrader(submitted: Path, only_assignment: str | None) -> Discovery:
    entries: list[Entry] = []
    skipped: list[tuple[Path, str]] = []
    found_assignments: set[str] = set()
    for student_dir in sorted(submitted.iterdir()):
        if _ignored(student_dir):
            continue
        if not student_dir.is_dir():
            skipped.append((student_dir, "nbgrader layout: expected a folder per student"))
            continue
        for assignment_dir in sorted(student_dir.iterdir()):
            if _ignored(assignment_dir) or not assignment_dir.is_dir():
                continue
            found_assignments.add(assignment_dir.name)
            if only_assignment is not None and assignment_dir.name != only_assignment:
                continue
            entries.append(
                Entry(_student_id(student_dir.name), assignment_dir.name, assignment_dir, "folder")
            )
    if not entries:
        if only_assignment is not None and found_assignments:
            raise SubmissionError(
                f"no submission of assignment {only_assignment!r} in {str(submitted)!r}; "
                f"assignments found: {', '.join(sorted(found_assignments))}"
            )
        raise SubmissionError(
            f"no submissions in {str(submitted)!r}: nbgrader's layout is "
            "submitted/<student>/<assignment>/ with the notebooks inside"
        )
    entries.sort(key=lambda e: (e.assignment, e.student))
    return Discovery(tuple(entries), tuple(skipped), nbgrader=True)


# -- content hash --------------------------------------------------------------------------


def _gradable_files(folder: Path) -> list[Path]:
    out = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not _ignored(Path(d)))
        for name in sorted(filenames):
            p = Path(dirpath) / name
            if not _ignored(p) and p.suffix.lower() in GRADABLE_SUFFIXES:
                out.append(p)
    return out


def content_hash(entry: Entry) -> str:
    """SHA-256 of what is graded: a folder's ``.py``/``.ipynb`` files (relative path and
    bytes; nbgrader's ``timestamp.txt`` and caches do not count), or the file's bytes.

    Raises:
        SubmissionError: the entry cannot be read.
    """
    h = hashlib.sha256()
    try:
        if entry.path.is_dir():
            for p in _gradable_files(entry.path):
                rel = p.relative_to(entry.path).as_posix().encode()
                h.update(len(rel).to_bytes(4, "big") + rel)
                data = p.read_bytes()
                h.update(len(data).to_bytes(8, "big") + data)
        else:
            with entry.path.open("rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
    except OSError as exc:
        raise SubmissionError(f"cannot read {str(entry.path)!r}: {exc.strerror}") from exc
    return h.hexdigest()


# -- safe zip extraction -------------------------------------------------------------------


def extract_zip(
    archive: Path,
    dest: Path,
    *,
    max_members: int = ZIP_MAX_MEMBERS,
    max_member_bytes: int = ZIP_MAX_MEMBER_BYTES,
    max_total_bytes: int = ZIP_MAX_TOTAL_BYTES,
) -> Path:
    """Extract the ``.py`` and ``.ipynb`` files of ``archive`` into ``dest``, safely.

    Refused (with :class:`SubmissionError`): absolute paths or ``..`` (path traversal),
    symbolic links, encrypted members, more than ``max_members`` members, a member larger
    than ``max_member_bytes`` or a total above ``max_total_bytes``. Sizes are enforced
    while streaming, not trusted from the zip's headers (a zip bomb lies about them).

    Returns:
        ``dest``.
    """
    name = archive.name
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise SubmissionError(
            f"{name} is not a readable zip file ({exc}); ask the student to zip their folder again"
        ) from exc
    with zf:
        infos = zf.infolist()
        if len(infos) > max_members:
            raise SubmissionError(
                f"{name} holds {len(infos)} files (more than {max_members}); a submission "
                "needs only its .py files or notebook"
            )
        total = 0
        dest.mkdir(parents=True, exist_ok=True)
        for info in infos:
            member = info.filename.replace("\\", "/")
            parts = [p for p in member.split("/") if p not in ("", ".")]
            if (
                member.startswith("/")
                or re.match(r"^[A-Za-z]:", member)
                or any(p == ".." for p in parts)
            ):
                raise SubmissionError(
                    f"{name} contains the unsafe path {info.filename!r} (outside the "
                    "submission); it was not extracted"
                )
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise SubmissionError(
                    f"{name} contains a symbolic link ({info.filename!r}); links are not "
                    "accepted, zip the files themselves"
                )
            if info.flag_bits & 0x1:
                raise SubmissionError(f"{name} is encrypted; submit an unencrypted zip")
            if info.is_dir() or not parts:
                continue
            if any(_ignored(Path(p)) for p in parts) or not parts[-1].lower().endswith(
                GRADABLE_SUFFIXES
            ):
                continue
            if info.file_size > max_member_bytes:
                raise SubmissionError(
                    f"{name}: {info.filename} is {info.file_size} bytes (limit "
                    f"{max_member_bytes}); a submission needs only source code"
                )
            target = dest.joinpath(*parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            written = 0
            try:
                with zf.open(info) as src, target.open("wb") as out:
                    while chunk := src.read(1 << 16):
                        written += len(chunk)
                        total += len(chunk)
                        if written > max_member_bytes or total > max_total_bytes:
                            raise SubmissionError(
                                f"{name} expands to more than "
                                f"{min(max_member_bytes, max_total_bytes)} bytes (a zip bomb?); "
                                "it was not graded"
                            )
                        out.write(chunk)
            except (zipfile.BadZipFile, OSError, EOFError, RuntimeError) as exc:
                raise SubmissionError(f"{name} is damaged ({exc}); ask for a new zip") from exc
    return dest


# -- what to grade inside an entry ---------------------------------------------------------


def resolve_gradable(folder: Path, *, depth: int = 3) -> tuple[Path, list[Path]]:
    """Find what to grade in a student's folder.

    Returns:
        ``(path, notebooks)``: ``path`` is the folder if it holds ``.py`` files, the notebook
        if it holds exactly one; with several notebooks and no ``.py`` file, ``path`` is the
        folder and ``notebooks`` lists them (they are combined into one submission). A folder
        holding only one sub-folder (a zip of a folder) is descended into.

    Raises:
        SubmissionError: no ``.py`` or ``.ipynb`` file was found.
    """
    children = [c for c in folder.iterdir() if not _ignored(c)] if folder.is_dir() else []
    py = [c for c in children if c.is_file() and c.suffix.lower() == ".py"]
    nbs = sorted(c for c in children if c.is_file() and c.suffix.lower() == ".ipynb")
    if py:
        return folder, []
    if len(nbs) == 1:
        return nbs[0], []
    if nbs:
        return folder, nbs
    dirs = [c for c in children if c.is_dir()]
    if len(dirs) == 1 and depth > 0:
        return resolve_gradable(dirs[0], depth=depth - 1)
    raise SubmissionError(
        f"no .py file or notebook in {folder.name!r}: a submission is a folder of .py files, "
        "a .py file or an .ipynb notebook"
    )


def load_notebooks(folder: Path, notebooks: list[Path]) -> Any:
    """One submission from several notebooks (nbgrader's one notebook per topic): each
    notebook is a module named after it, executed cell by cell in the sandbox exactly as
    ``cnnlab grade <notebook>`` does, so a broken cell only costs the functions it defines.

    Raises:
        SubmissionError: a notebook cannot be read; two notebooks give the same module name.
    """
    from grader.submission import Submission, load_submission

    modules: dict[str, str] = {}
    files: dict[str, str] = {}
    cells: dict[str, tuple[str, ...]] = {}
    for nb in notebooks:
        sub = load_submission(nb)
        for name, source in sub.modules.items():
            if name in modules:
                raise SubmissionError(
                    f"{nb.name} and {Path(files[name]).name} give the same module name "
                    f"{name!r}; rename one of them"
                )
            modules[name] = source
            files[name] = sub.files.get(name, str(nb))
            if name in sub.cells:
                cells[name] = sub.cells[name]
    return Submission(
        path=folder.resolve(),
        kind="folder",
        modules=dict(sorted(modules.items())),
        files=files,
        cells=cells,
    )


# -- grading one entry (runs in a worker) --------------------------------------------------


@dataclass(frozen=True)
class Task:
    """One grading job sent to a worker.

    Attributes:
        entry: the submission.
        seed: the seed its cases are drawn from.
        exercises: exercise names to grade (``None``: all).
        grade_fn: ``"module:function"`` of the grading function (the engine's by default;
            tests substitute their own).
    """

    entry: Entry
    seed: int
    exercises: tuple[str, ...] | None
    grade_fn: str = DEFAULT_GRADE_FN


@dataclass(frozen=True)
class Outcome:
    """What a worker reports for one task.

    Attributes:
        kind: ``graded`` (a result), ``unreadable`` (the submission could not be read: the
            student's fault, scored 0) or ``grader_failure`` (our fault: retry, never a score).
        result: the grading result as ``SubmissionResult.to_dict()`` (``graded``).
        message: the reason (``unreadable``, ``grader_failure``).
        wall_s: seconds spent.
    """

    kind: Literal["graded", "unreadable", "grader_failure"]
    result: dict[str, Any] | None
    message: str
    wall_s: float


_SANDBOX: Any = None


def _sandbox() -> Any:
    """This worker's sandbox (one per worker process, started on first use)."""
    global _SANDBOX
    if _SANDBOX is None:
        from grader.sandbox.runner import Sandbox

        _SANDBOX = Sandbox()
    return _SANDBOX


def _close_sandbox() -> None:
    global _SANDBOX
    if _SANDBOX is not None:
        try:
            _SANDBOX.close()
        finally:
            _SANDBOX = None


#: Prepared exercises (cases and expected outputs) kept per worker, keyed by
#: (seed, exercises): with one seed for everyone the reference runs once per worker instead of
#: once per submission. Per-student seeds never repeat, so only the last few are kept.
_PREPARED: dict[tuple[int, tuple[str, ...] | None], list[Any]] = {}
_PREPARED_KEEP = 2


def _prepared(seed: int, exercises: tuple[str, ...] | None) -> list[Any]:
    """``engine.prepare_all`` for (seed, exercises), cached unless preparing failed."""
    from grader import engine, registry
    from grader.results import Result as _Result

    key = (seed, exercises)
    cached = _PREPARED.get(key)
    if cached is not None:
        return cached
    prepared = engine.prepare_all(registry.select(list(exercises) if exercises else None), seed)
    if not any(isinstance(p, _Result) for p in prepared):  # a failed prepare is retried
        while len(_PREPARED) >= _PREPARED_KEEP:
            _PREPARED.pop(next(iter(_PREPARED)))
        _PREPARED[key] = prepared
    return prepared


def grade_entry(entry: Entry, *, seed: int, exercises: tuple[str, ...] | None) -> SubmissionResult:
    """Grade one entry with the engine in this process's sandbox (zip: extracted to a
    temporary folder first, removed afterwards).

    Raises:
        SubmissionError: the submission cannot be read (bad zip, no code, bad notebook).
        GraderFailure: the grader failed.
    """
    from grader import engine
    from grader.submission import load_submission

    with tempfile.TemporaryDirectory(prefix="cnnlab-batch-") as tmp:
        tmp_path = Path(tmp)
        folder = entry.path
        if entry.kind == "zip":
            folder = extract_zip(entry.path, tmp_path / "unzipped")
        if entry.kind in ("file", "notebook"):
            submission = load_submission(entry.path)
        else:
            target, notebooks = resolve_gradable(folder)
            loader = (lambda t: load_notebooks(t, notebooks)) if notebooks else load_submission
            submission = loader(target)
        result = engine.grade_prepared(
            submission,
            _prepared(engine.check_seed(seed), exercises),
            seed=seed,
            sandbox=_sandbox(),
            student=entry.student,
        )
    return SubmissionResult(
        seed=result.seed,
        exercises=result.exercises,
        source=str(entry.path),
        student=entry.student,
        extra=result.extra,
    )


def _resolve_fn(dotted: str) -> Callable[..., SubmissionResult]:
    module, _, name = dotted.partition(":")
    return getattr(importlib.import_module(module), name)


def run_task(task: Task) -> Outcome:
    """Grade one task, turning every failure into an :class:`Outcome` (never raises)."""
    start = time.perf_counter()
    try:
        fn = _resolve_fn(task.grade_fn)
        result = fn(task.entry, seed=task.seed, exercises=task.exercises)
    except SubmissionError as exc:
        return Outcome("unreadable", None, str(exc), time.perf_counter() - start)
    except GraderFailure as exc:
        return Outcome("grader_failure", None, str(exc), time.perf_counter() - start)
    except Exception as exc:  # a bug of the grader, not the student's doing
        tb = traceback.format_exception_only(type(exc), exc)[-1].strip()
        return Outcome("grader_failure", None, f"internal error: {tb}", time.perf_counter() - start)
    wall = time.perf_counter() - start
    if result.has_grader_error:
        bad = [r.name for r in result.exercises if r.status is Status.GRADER_ERROR]
        msg = "grader error in " + ", ".join(bad)
        return Outcome("grader_failure", result.to_dict(), msg, wall)
    return Outcome("graded", result.to_dict(), "", wall)


def _terminate(signum: int, frame: Any) -> None:
    """SIGTERM in a worker: stop the sandbox (its fork server lives in its own session, out
    of reach of a kill of our process group), then exit at once."""
    with contextlib.suppress(BaseException):
        _close_sandbox()
    os._exit(128 + signum)


def _warm_up(grade_fn: str) -> None:
    """Import what grading needs (the registry, the engine, the grading function), so that
    the per-submission watchdog measures grading, not a worker's start."""
    from grader import registry

    registry.all_specs()
    _resolve_fn(grade_fn)
    if grade_fn == DEFAULT_GRADE_FN:
        _sandbox().start()  # the fork server preloads numpy and torch: do it before "ready"


def _worker_main(conn: Connection, grade_fn: str) -> None:
    """A worker process: warm up, send ``"ready"`` (or ``("failed", reason)``), then grade
    tasks from ``conn`` until it sends ``None``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent coordinates Ctrl-C
    signal.signal(signal.SIGTERM, _terminate)  # stopped by the parent: take the sandbox along
    with contextlib.suppress(OSError):
        os.setsid()  # own process group: the parent can kill us and whatever we started
    try:
        _warm_up(grade_fn)
    except Exception as exc:
        conn.send(("failed", traceback.format_exception_only(type(exc), exc)[-1].strip()))
        return
    conn.send("ready")
    try:
        while True:
            try:
                task = conn.recv()
            except EOFError:
                return
            if task is None:
                return
            conn.send(run_task(task))
    finally:
        _close_sandbox()


# -- the batch -----------------------------------------------------------------------------


@dataclass(frozen=True)
class SeedPolicy:
    """How each student's seed is chosen: one ``fixed`` seed for everyone, or derived from
    the course ``secret``, the assignment and the student id (``grader.seeds.derive_seed``)."""

    fixed: int | None = None
    secret: bytes | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if (self.fixed is None) == (self.secret is None):
            raise ConfigError(
                "give either a course secret (per-student seeds) or --seed N (one seed for "
                "everyone), not both and not neither"
            )

    def seed_for(self, student: str, assignment: str) -> int:
        """The student's seed (grading and problem set alike; :func:`grader.seeds.resolve`):
        the fixed seed, else ``derive_seed(secret, normalised student id, assignment)``."""
        if self.fixed is not None:
            sources = seeds.SeedSources(assigned=self.fixed)
        else:
            assert self.secret is not None
            derived = seeds.derive_seed(self.secret, student, assignment)
            sources = seeds.SeedSources(student=student, student_seed=derived)
        return seeds.resolve(sources).grading

    def fingerprint(self) -> str:
        """Identifies the policy without revealing the secret."""
        if self.fixed is not None:
            return f"fixed:{self.fixed}"
        assert self.secret is not None
        return "secret:" + hashlib.sha256(b"cnnlab-seed-policy\0" + self.secret).hexdigest()[:16]


def config_hash(policy: SeedPolicy, exercises: Iterable[str] | None) -> str:
    """Hash of the grading configuration (seed policy, exercise selection)."""
    doc = {"seeds": policy.fingerprint(), "exercises": sorted(exercises) if exercises else None}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class BatchSummary:
    """Counts of one batch run (what the command prints and turns into an exit status).

    Attributes:
        total: entries found.
        skipped_resume: entries skipped because they were already graded (``--resume``).
        graded: entries graded in this run without a grader error.
        unreadable: entries whose submission could not be read (scored 0).
        grader_errors: entries left as ``grader_error`` after the retry.
        retried: entries that were retried after a grader failure.
        interrupted: the run was stopped (Ctrl-C) before every entry was graded.
        wall_s: seconds the run took.
        rows: the gradebook rows written in this run.
        kept: ``(student, assignment)`` of the entries skipped by ``--resume``.
    """

    total: int = 0
    skipped_resume: int = 0
    graded: int = 0
    unreadable: int = 0
    grader_errors: int = 0
    retried: int = 0
    interrupted: bool = False
    wall_s: float = 0.0
    rows: list[GradedSubmission] = field(default_factory=list)
    kept: list[tuple[str, str]] = field(default_factory=list)


#: Called after each entry is written: ``(row, done, total)``.
ProgressFn = Callable[[GradedSubmission, int, int], None]


def _blank_result(
    entry: Entry, seed: int, specs: list[Any], status: Status, message: str
) -> SubmissionResult:
    """A result with every exercise at ``status`` (unreadable: error, scored 0; grader
    failure: grader_error, never a score)."""
    return SubmissionResult(
        seed=seed,
        exercises=tuple(
            Result(
                name=s.name,
                score=0.0,
                max_score=float(s.points),
                status=status,
                feedback=message,
            )
            for s in specs
        ),
        source=str(entry.path),
        student=entry.student,
    )


class _Worker:
    """A worker process and the task it is running."""

    def __init__(self, ctx: Any, grade_fn: str) -> None:
        parent, child = ctx.Pipe()
        self.conn: Connection = parent
        self.process = ctx.Process(target=_worker_main, args=(child, grade_fn), daemon=True)
        self.process.start()
        child.close()
        self.ready = False
        self.born = time.monotonic()
        self.task: Task | None = None
        self.attempt = 0
        self.started = 0.0

    def send(self, task: Task, attempt: int) -> None:
        self.task, self.attempt, self.started = task, attempt, time.monotonic()
        self.conn.send(task)

    def kill(self) -> None:
        """SIGTERM (the worker closes its sandbox), then SIGKILL to its process group."""
        pid = self.process.pid
        if pid is not None and self.process.is_alive():
            self.process.terminate()
            self.process.join(timeout=3)
        if pid is not None and self.process.is_alive():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            self.process.kill()
        self.process.join(timeout=5)
        self.conn.close()

    def stop(self) -> None:
        with contextlib.suppress(BrokenPipeError, OSError):
            self.conn.send(None)
        self.process.join(timeout=10)
        if self.process.is_alive():
            self.kill()
        else:
            self.conn.close()


def run_batch(
    entries: Iterable[Entry],
    gradebook: Gradebook,
    *,
    policy: SeedPolicy,
    exercises: list[str] | None = None,
    jobs: int = 1,
    resume: bool = False,
    feedback_dir: Path | None = None,
    submission_timeout_s: float | None = None,
    grade_fn: str = DEFAULT_GRADE_FN,
    in_process: bool = False,
    on_progress: ProgressFn | None = None,
    on_start: Callable[[int, int], None] | None = None,
    stop_requested: Callable[[], bool] | None = None,
) -> BatchSummary:
    """Grade every entry and write each result to ``gradebook`` as soon as it is finished.

    Args:
        entries: what :func:`discover` found.
        gradebook: where each result is written (one transaction per submission).
        policy: how seeds are chosen.
        exercises: exercise names to grade (``None``: every registered exercise).
        jobs: worker processes grading in parallel, each with its own sandbox.
        resume: skip entries already graded with the same content and configuration.
        feedback_dir: write ``<assignment>/<student>.md`` feedback there as each result is
            written (:func:`write_feedback`: unique file names, never over another student's).
        submission_timeout_s: a worker silent for longer than this on one submission is
            killed and the submission counted as a grader failure (the sandbox limits each
            exercise; this only catches a hung grader). Default: twice the sum of the
            exercises' time limits plus a minute.
        grade_fn: ``"module:function"`` grading one entry (tests substitute their own).
        in_process: grade in this process, one at a time (tests and debugging; no watchdog).
        on_progress: called after each written row with ``(row, done, total_to_grade)``.
        on_start: called once with ``(to_grade, skipped)`` before grading starts.
        stop_requested: polled between results; when it returns True no new submission is
            started, running ones are abandoned and the summary is marked ``interrupted``.

    Returns:
        Counts and the rows written.
    """
    from grader import registry

    start = time.perf_counter()
    specs = registry.select(exercises)
    names = tuple(s.name for s in specs) if exercises else None
    cfg = config_hash(policy, names)
    entries = normalize_entries(entries)
    summary = BatchSummary(total=len(entries))

    queue: list[tuple[Task, str, int]] = []  # (task, content hash, attempt)
    for entry in entries:
        seed = policy.seed_for(entry.student, entry.assignment)
        try:
            digest = content_hash(entry)
        except SubmissionError as exc:
            row = gradebook.record(
                _blank_result(entry, seed, specs, Status.ERROR, str(exc)),
                assignment=entry.assignment,
                content_hash="unreadable",
                config_hash=cfg,
                status=UNREADABLE,
                message=str(exc),
            )
            summary.unreadable += 1
            summary.rows.append(row)
            continue
        if resume and gradebook.is_done(entry.student, entry.assignment, digest, cfg):
            summary.skipped_resume += 1
            summary.kept.append((entry.student, entry.assignment))
            continue
        queue.append((Task(entry, seed, names, grade_fn), digest, 1))

    to_grade = len(queue) + summary.unreadable
    done = summary.unreadable
    if on_start is not None:
        on_start(to_grade, summary.skipped_resume)
    if submission_timeout_s is None:
        submission_timeout_s = 2.0 * sum(s.timeout_s for s in specs) + 60.0

    def finish(task: Task, digest: str, attempt: int, outcome: Outcome) -> None:
        nonlocal done
        entry = task.entry
        if outcome.kind == "grader_failure" and attempt == 1:
            summary.retried += 1
            queue.append((task, digest, 2))
            return
        if outcome.kind == "graded":
            assert outcome.result is not None
            result = SubmissionResult.from_dict(outcome.result)
            result = SubmissionResult(
                seed=result.seed,
                exercises=result.exercises,
                source=str(entry.path),
                student=entry.student,
            )
            status, message = None, ""
            summary.graded += 1
        elif outcome.kind == "unreadable":
            result = _blank_result(entry, task.seed, specs, Status.ERROR, outcome.message)
            status, message = UNREADABLE, outcome.message
            summary.unreadable += 1
        else:
            if outcome.result is not None:
                result = SubmissionResult.from_dict(outcome.result)
                result = SubmissionResult(
                    seed=result.seed,
                    exercises=result.exercises,
                    source=str(entry.path),
                    student=entry.student,
                )
            else:
                result = _blank_result(
                    entry,
                    task.seed,
                    specs,
                    Status.GRADER_ERROR,
                    f"the grader failed (not your code): {outcome.message}",
                )
            status, message = GRADER_ERROR, f"{outcome.message} (after {attempt} attempts)"
            summary.grader_errors += 1
        row = gradebook.record(
            result,
            assignment=entry.assignment,
            content_hash=digest,
            config_hash=cfg,
            attempts=attempt,
            wall_s=outcome.wall_s,
            status=status,
            message=message,
        )
        summary.rows.append(row)
        if feedback_dir is not None:
            write_feedback(feedback_dir, row)
        done += 1
        if on_progress is not None:
            on_progress(row, done, to_grade)

    def stopping() -> bool:
        return stop_requested is not None and stop_requested()

    if in_process:
        while queue and not stopping():
            task, digest, attempt = queue.pop(0)
            finish(task, digest, attempt, run_task(task))
        summary.interrupted = bool(queue)
        _close_sandbox()
        summary.wall_s = time.perf_counter() - start
        return summary

    ctx = multiprocessing.get_context("spawn")
    workers: list[_Worker] = []
    pending: dict[int, tuple[Task, str, int]] = {}  # id(worker) -> job
    start_failures: list[str] = []

    def died(w: _Worker) -> Outcome:
        return Outcome(
            "grader_failure",
            None,
            f"the grading worker died (exit code {w.process.exitcode})",
            time.monotonic() - w.started,
        )

    try:
        n_workers = max(1, min(jobs, len(queue)))
        workers = [_Worker(ctx, grade_fn) for _ in range(n_workers)] if queue else []
        while (queue or pending) and not stopping():
            for w in workers:
                if w.ready and id(w) not in pending and queue:
                    job = queue.pop(0)
                    try:
                        w.send(job[0], job[2])
                    except (BrokenPipeError, OSError):
                        queue.insert(0, job)
                        continue
                    pending[id(w)] = job
            ready = wait([w.conn for w in workers], timeout=0.5)
            for i, w in enumerate(list(workers)):
                if not w.ready:  # still starting
                    message = None
                    if w.conn in ready:
                        try:
                            hello = w.conn.recv()
                        except (EOFError, OSError):
                            hello = None
                        if hello == "ready":
                            w.ready = True
                            continue
                        message = hello[1] if isinstance(hello, tuple) else "it exited"
                    elif not w.process.is_alive():
                        message = f"it exited with code {w.process.exitcode}"
                    elif time.monotonic() - w.born > WORKER_START_TIMEOUT_S:
                        message = f"it did not start within {WORKER_START_TIMEOUT_S:.0f} s"
                    if message is not None:
                        start_failures.append(message)
                        w.kill()
                        workers[i] = None  # type: ignore[call-overload]
                    continue
                job = pending.get(id(w))
                if job is None:
                    continue
                outcome: Outcome | None = None
                replace = False
                if w.conn in ready:
                    try:
                        outcome = w.conn.recv()
                    except (EOFError, OSError):
                        outcome, replace = died(w), True
                elif not w.process.is_alive():
                    outcome, replace = died(w), True
                elif time.monotonic() - w.started > submission_timeout_s:
                    outcome = Outcome(
                        "grader_failure",
                        None,
                        f"grading took longer than {submission_timeout_s:.0f} s and was stopped",
                        time.monotonic() - w.started,
                    )
                    replace = True
                if outcome is None:
                    continue
                del pending[id(w)]
                finish(job[0], job[1], job[2], outcome)
                if replace:
                    w.kill()
                    workers[i] = None  # type: ignore[call-overload]
            workers = [w for w in workers if w is not None]
            if len(start_failures) > MAX_WORKER_START_FAILURES:
                # The grader cannot run at all here: every remaining submission is a grader
                # error (never a score), and the message says why.
                reason = f"no grading worker could start ({start_failures[-1]})"
                while queue:
                    task, digest, _attempt = queue.pop(0)
                    finish(task, digest, 2, Outcome("grader_failure", None, reason, 0.0))
                continue
            while queue and len(workers) < min(jobs, len(queue) + len(pending)):
                workers.append(_Worker(ctx, grade_fn))
        summary.interrupted = bool(queue or pending)
    finally:
        for w in workers:
            if id(w) in pending or not w.ready:
                w.kill()
            else:
                w.stop()
    summary.wall_s = time.perf_counter() - start
    return summary


# -- per-student feedback ------------------------------------------------------------------

#: A file-name-safe id is used as it is: lower case ASCII letters, digits and ``._@+-``,
#: starting with a letter, digit or ``_`` (lower case only, so two ids never differ only in
#: case: macOS and Windows file systems would take them for one file).
_PLAIN_NAME = re.compile(r"[a-z0-9_][a-z0-9._@+-]{0,99}")
#: Device names Windows refuses as file names (also with an extension).
_WINDOWS_RESERVED = {"con", "prn", "aux", "nul"} | {
    f"{d}{i}" for d in ("com", "lpt") for i in range(10)
}
#: First line of every feedback file: whose it is (percent-encoded, so it is ASCII and can hold
#: no "-->"). Read back before a file is replaced, so one student's file never overwrites
#: another's.
_OWNER = "<!-- cnnlab feedback for student={student} assignment={assignment} -->"
_OWNER_RE = re.compile(r"^<!-- cnnlab feedback for student=(\S*) assignment=(\S*) -->$")
_LEGACY_OWNER_RE = re.compile(r"^# Feedback for (.+) — (.+)$")
#: Hex digits of SHA-256 in a file name (40 bits: a clash is checked for, never assumed away).
_HASH_CHARS = 10


def _slug(text: str) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9._@+-]+", "_", ascii_text.lower()).strip("._-")
    return slug[:60].rstrip("._-") or "student"


def safe_filename(student: str, *, hash_chars: int = _HASH_CHARS, plain: bool = True) -> str:
    """A file name (without suffix) for a student id, unique per id and readable.

    The id is normalised first (:func:`grader.seeds.normalize_student_id`). A plain id
    (``alice``, ``s1234``, ``alice@uni.edu``) is its own file name. Any other id (``Jane Doe``,
    ``Jane_Doe``, ``学生``, ``../x``, ``CON``) becomes a readable slug, ``~`` and the first
    ``hash_chars`` hex digits of SHA-256 of the exact id: ``jane_doe~3f2a…``. A plain name never
    contains ``~``, so the two kinds never meet; two ids that share a slug differ in the hash.
    The mapping is reversible through the first line of each feedback file and the folder's
    ``index.csv`` (:func:`feedback_index`). ``plain=False`` gives the hashed form even for a
    plain id (the fallback when a file of that name is someone else's).
    """
    sid = seeds.normalize_student_id(student)
    base = sid.split(".")[0]
    if (
        plain
        and _PLAIN_NAME.fullmatch(sid)
        and base not in _WINDOWS_RESERVED
        and not sid.endswith(".")
    ):
        return sid
    digest = hashlib.sha256(sid.encode("utf-8")).hexdigest()[:hash_chars]
    return f"{_slug(sid)}~{digest}"


def _owner_line(row: GradedSubmission) -> str:
    return _OWNER.format(
        student=urllib.parse.quote(row.student, safe="@"),
        assignment=urllib.parse.quote(row.assignment, safe=""),
    )


def feedback_owner(path: Path) -> tuple[str, str] | None:
    """``(student, assignment)`` a feedback file was written for, from its first line
    (``None`` when the file is missing or was not written by cnnlab)."""
    try:
        with path.open(encoding="utf-8", errors="replace") as fh:
            first = fh.readline().rstrip("\n")
    except OSError:
        return None
    found = _OWNER_RE.match(first)
    if found is not None:
        return urllib.parse.unquote(found.group(1)), urllib.parse.unquote(found.group(2))
    legacy = _LEGACY_OWNER_RE.match(first)  # written by cnnlab before the owner line existed
    if legacy is not None:
        return legacy.group(1), legacy.group(2)
    return None


def feedback_markdown(row: GradedSubmission, images: dict[str, str] | None = None) -> str:
    """One student's feedback as Markdown: total, a table of exercises, then each
    exercise's feedback, its pictures (expected next to received, ``images``: PNGs by
    exercise) and the output the code printed.

    Everything that comes from the student (id, error messages, printed output) is escaped
    (:func:`grader.sanitize.md_text`) or fenced (:func:`grader.sanitize.md_code_block`), and the
    seed is never named: with it the student could regenerate their problem set's solutions.
    The pictures hold only the grader's numbers and case labels.
    """
    from grader.render import pictures_markdown

    total = "not available (grader error)" if row.score is None else f"{row.score:g}"
    lines = [
        _owner_line(row),
        f"# Feedback for {md_text(row.student)} — {md_text(row.assignment)}",
        "",
        f"**Score: {total} / {row.max_score:g}**  ",
        f"Graded {row.graded_at}.",
        "",
    ]
    if row.status == GRADER_ERROR:
        lines += [
            "> The grader itself failed on part of this submission. This is not your fault and",
            "> it is not counted as a score: your instructor will regrade it.",
            "",
        ]
    elif row.status == UNREADABLE:
        lines += [f"> Your submission could not be read: {md_text(row.message)}", ""]
    lines += ["| exercise | status | score |", "|---|---|---|"]
    for r in row.results:
        score = "—" if r.status is Status.GRADER_ERROR else f"{r.score:g} / {r.max_score:g}"
        lines.append(f"| {md_text(r.name)} | {r.status.value} | {score} |")
    lines.append("")
    for r in row.results:
        if r.status is Status.PASSED and not r.output:
            continue
        feedback = md_text(r.feedback) if r.feedback else "(no feedback)"
        lines += [f"## {md_text(r.name)} — {r.status.value}", "", feedback, ""]
        lines += pictures_markdown(r, image=(images or {}).get(r.name))
        if r.output:
            text = truncate(clean_text(r.output), FEEDBACK_OUTPUT_CHARS)
            lines += ["Your code printed:", "", md_code_block(text), ""]
    return "\n".join(lines)


#: Characters of printed output kept per exercise in a feedback file (start and end).
FEEDBACK_OUTPUT_CHARS = 4000


def feedback_path(feedback_dir: Path, row: GradedSubmission) -> Path:
    """Where ``row``'s feedback goes: ``feedback_dir/<assignment>/<student>.md`` with both
    names from :func:`safe_filename`. Should a file of that name exist and not be this
    student's (its first line names another student, or it was not written by cnnlab), the
    name with the full SHA-256 of the id is used instead: no file is ever overwritten unless it
    is this student's own feedback.

    Raises:
        GraderFailure: even the full-hash name is taken by another file (never overwritten).
    """
    folder = feedback_dir / safe_filename(row.assignment)
    me = (seeds.normalize_student_id(row.student), row.assignment)
    candidates = (
        safe_filename(row.student),
        safe_filename(row.student, hash_chars=64, plain=False),
    )
    for name in candidates:
        path = folder / f"{name}.md"
        if not path.exists() or feedback_owner(path) == me:
            return path
    raise GraderFailure(
        f"{path} exists and is not the feedback of student {row.student!r}; it was not "
        "overwritten: move it away and run again"
    )


def write_feedback(feedback_dir: Path, row: GradedSubmission) -> Path:
    """Write ``feedback_dir/<assignment>/<student>.md`` atomically (never over another
    student's file: see :func:`feedback_path`), with the saliency maps as PNGs in
    ``<assignment>/<student>/`` beside it (:func:`grader.render.write_picture_files`)."""
    from grader.render import write_picture_files

    path = feedback_path(feedback_dir, row)
    images = write_picture_files(path.with_suffix(""), row.results)
    return write_atomic(path, feedback_markdown(row, images))


def feedback_index(feedback_dir: Path, rows: Iterable[GradedSubmission]) -> list[Path]:
    """Write ``index.csv`` (``student,assignment,file``) into each assignment's feedback
    folder, for the rows whose feedback file exists: the way back from a file name to the
    exact id. Returns the files written."""
    by_folder: dict[Path, list[tuple[str, str, str]]] = {}
    for row in rows:
        path = feedback_path(feedback_dir, row)
        if path.exists():
            by_folder.setdefault(path.parent, []).append((row.student, row.assignment, path.name))
    written = []
    for folder, entries in sorted(by_folder.items()):
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["student", "assignment", "file"])
        for student, assignment, name in sorted(entries):
            writer.writerow([csv_cell(student), csv_cell(assignment), name])
        written.append(write_atomic(folder / "index.csv", buf.getvalue()))
    return written


# -- student ids ---------------------------------------------------------------------------


def normalize_entries(entries: Iterable[Entry]) -> list[Entry]:
    """``entries`` with their student ids normalised (:func:`grader.seeds.normalize_student_id`:
    NFC, whitespace, e-mail case), so a macOS folder name in decomposed Unicode is the same
    student, with the same seed and gradebook row, as the id typed.

    Raises:
        SubmissionError: two entries are one student once normalised (``José/`` and
            ``José/`` in two Unicode forms, ``Alice@uni.edu/`` and ``alice@uni.edu.zip``).
    """
    seen: dict[tuple[str, str], Entry] = {}
    out = []
    for entry in entries:
        try:
            student = seeds.normalize_student_id(entry.student)
        except ConfigError as exc:
            raise SubmissionError(f"{entry.path.name!r} gives no student id: {exc}") from exc
        key = (student, entry.assignment)
        if key in seen:
            raise SubmissionError(
                f"two submissions for student {student!r} (assignment {entry.assignment!r}): "
                f"{seen[key].path.name!r} and {entry.path.name!r} name the same student once "
                "Unicode and spacing are normalised; keep one of them and run again"
            )
        seen[key] = entry
        out.append(entry if entry.student == student else replace(entry, student=student))
    return out
