"""Grading a class: find every student's submission, grade each in isolation, keep a gradebook.

The pipeline, one small step each:

1. :func:`discover` turns a submissions folder into :class:`Entry` records (one per student and
   assignment) for its layout (:mod:`grader.classroom.layouts`): folders, ``.zip`` files,
   ``.py`` files, notebooks; Canvas, Moodle and Blackboard downloads; nbgrader's
   ``submitted/<student>/<assignment>/``.
2. :func:`content_hash` fingerprints an entry's files, so ``--resume`` can tell an already
   graded submission from a changed resubmission. It reads the files as hostile input, as the
   workers do (:mod:`grader.submission`): a student whose files cannot be read is recorded as
   unreadable with the reason, and the batch goes on.
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
import time
import traceback
import unicodedata
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any, Literal

from grader import seeds
from grader.classroom import layouts
from grader.classroom.gradebook import (
    GRADER_ERROR,
    UNREADABLE,
    Gradebook,
    GradedSubmission,
    write_atomic,
)
from grader.classroom.layouts import Discovery, Entry, content_hash, load_entry
from grader.errors import ConfigError, GraderFailure, SubmissionError
from grader.results import Result, Status, SubmissionResult
from grader.sanitize import clean_text, csv_cell, md_code_block, md_text, truncate
from grader.submission import ZIP_MAX_MEMBERS as ZIP_LIMIT_MEMBERS
from grader.submission import ZIP_MAX_TOTAL_BYTES as ZIP_LIMIT_TOTAL_BYTES

# -- limits for .zip submissions (a zip bomb or a path traversal must not hurt the batch) ---

#: Most members a submission zip may hold.
ZIP_MAX_MEMBERS = ZIP_LIMIT_MEMBERS
#: Most bytes one extracted member may have.
ZIP_MAX_MEMBER_BYTES = 16 * 1024 * 1024
#: Most bytes a whole extracted submission may have.
ZIP_MAX_TOTAL_BYTES = ZIP_LIMIT_TOTAL_BYTES
#: The grading function workers call: the engine in the worker's sandbox.
DEFAULT_GRADE_FN = "grader.classroom.batch:grade_entry"
#: Seconds a worker may take to start (import torch, the registry) before it is replaced.
WORKER_START_TIMEOUT_S = 300.0
#: Worker start failures after which the batch stops trying (the grader cannot run here).
MAX_WORKER_START_FAILURES = 3
#: Files taken out of a zip; everything else (data, caches, binaries) is left in it.
GRADABLE_SUFFIXES = (".py", ".ipynb")


def discover(
    root: str | Path,
    *,
    assignment: str = seeds.DEFAULT_ASSIGNMENT,
    only_assignment: str | None = None,
    exclude: Iterable[Path] = (),
    layout: str = "auto",
) -> Discovery:
    """Find one submission per student in ``root``: see :func:`grader.classroom.layouts.discover`
    (folders, zips, files, notebooks; Canvas, Moodle and Blackboard downloads; nbgrader)."""
    return layouts.discover(
        root,
        layout=layout,
        assignment=assignment,
        only_assignment=only_assignment,
        exclude=exclude,
    )


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

    The checks are :func:`grader.submission.zip_sources`'s (absolute paths and ``..``,
    symbolic links, encrypted members, names that clash, member count; sizes counted while
    decompressing, never trusted from the headers); nothing is written before every member
    passed them. Batch grading reads zips in memory and never calls this; it is for a person
    who wants to look at a submission.

    Returns:
        ``dest``.

    Raises:
        SubmissionError: the zip is refused (the message says why and what to do).
    """
    from grader.submission import zip_sources

    sources, _notes = zip_sources(
        archive, label=archive.name, max_members=max_members, max_total_bytes=max_total_bytes
    )
    contents = []
    for source in sources:
        data = source.read()
        if len(data) > max_member_bytes:
            raise SubmissionError(
                f"{archive.name}: {source.relpath} is {len(data)} bytes (limit "
                f"{max_member_bytes}); a submission needs only source code"
            )
        contents.append((source.relpath, data))
    dest.mkdir(parents=True, exist_ok=True)
    for relpath, data in contents:
        target = dest.joinpath(*relpath.split("/"))
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return dest


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
    """Grade one entry with the engine in this process's sandbox. The student's files are read
    as hostile input (:func:`grader.classroom.layouts.load_entry`: zips in memory, nothing is
    extracted to disk).

    Raises:
        SubmissionError: the submission cannot be read (bad zip, no code, a link leaving the
            submission, a FIFO or device, a damaged sole notebook).
        GraderFailure: the grader failed.
    """
    from grader import engine

    submission = load_entry(entry)
    result = engine.grade_prepared(
        submission,
        _prepared(engine.check_seed(seed), exercises),
        seed=seed,
        sandbox=_sandbox(),
        student=entry.student,
        label_not_submitted=True,
    )
    return SubmissionResult(
        seed=result.seed,
        exercises=result.exercises,
        source=str(entry.path),
        student=entry.student,
        extra={**result.extra, "graded_files": submission.summary()},
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
