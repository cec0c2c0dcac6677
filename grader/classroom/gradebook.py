"""The gradebook: one SQLite file (standard library ``sqlite3``) holding every graded submission.

A row of ``submissions`` is one (student, assignment); rows of ``results`` are its exercises.
Each submission is written in one transaction as soon as it is graded, so an interrupted batch
leaves every finished grade on disk and never half of one.

Resume key: ``(student, assignment)`` plus the ``content_hash`` of the submission's files and
the ``config_hash`` of the grading configuration (seed policy and exercise selection). A
submission is skipped by ``--resume`` only when both hashes match and it was graded without a
grader error; a changed resubmission, a different exercise selection or a previous grader
error is graded again (and replaces the old row).

A grader failure is stored with ``status = 'grader_error'`` and a NULL score: exports leave
the total blank and flag it instead of counting it as 0.

Student ids are stored normalised (:func:`grader.seeds.normalize_student_id`: NFC, spacing,
e-mail case), so a macOS folder name and the typed id are one row.
"""

from __future__ import annotations

import csv
import io
import os
import sqlite3
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from grader.errors import ConfigError
from grader.results import Result, Status, SubmissionResult
from grader.sanitize import csv_cell
from grader.seeds import normalize_student_id

SCHEMA_VERSION = "1"

#: Submission-level status values stored in ``submissions.status``.
GRADED = "graded"  # every exercise has a student-caused status (passed, failed, error, ...)
GRADER_ERROR = "grader_error"  # at least one exercise could not be graded by us: no total
UNREADABLE = "unreadable"  # the submission itself could not be read (bad zip, bad notebook)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS submissions (
    student      TEXT NOT NULL,
    assignment   TEXT NOT NULL,
    status       TEXT NOT NULL,
    score        REAL,              -- NULL when status = 'grader_error'
    max_score    REAL NOT NULL,
    seed         INTEGER,
    source       TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    config_hash  TEXT NOT NULL,
    attempts     INTEGER NOT NULL,
    wall_s       REAL NOT NULL,
    message      TEXT NOT NULL DEFAULT '',
    graded_at    TEXT NOT NULL,
    PRIMARY KEY (student, assignment)
);
CREATE TABLE IF NOT EXISTS results (
    student    TEXT NOT NULL,
    assignment TEXT NOT NULL,
    position   INTEGER NOT NULL,
    exercise   TEXT NOT NULL,
    score      REAL,                -- NULL when status = 'grader_error'
    max_score  REAL NOT NULL,
    status     TEXT NOT NULL,
    feedback   TEXT NOT NULL,
    mistake    TEXT,
    output     TEXT NOT NULL,
    wall_s     REAL NOT NULL,
    PRIMARY KEY (student, assignment, exercise),
    FOREIGN KEY (student, assignment) REFERENCES submissions (student, assignment)
        ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS results_by_exercise ON results (exercise, status);
"""


@dataclass(frozen=True)
class GradedSubmission:
    """One row of ``submissions`` with its exercise results.

    Attributes:
        student: student id (the entry name in the submissions folder).
        assignment: assignment name (nbgrader assignment, or the batch's ``--assignment``).
        status: ``graded``, ``grader_error`` or ``unreadable``.
        score: total points, ``None`` when a grader error leaves it unknown.
        max_score: points available.
        seed: the seed the cases were drawn from (``None`` if never graded).
        source: the path that was graded.
        content_hash: hash of the submission's files (see ``grader.classroom.batch.content_hash``).
        config_hash: hash of the grading configuration.
        attempts: how many times grading was tried (2 after a retried grader failure).
        wall_s: wall-clock seconds of the last attempt.
        message: why a submission is ``unreadable`` or ``grader_error`` (empty otherwise).
        graded_at: ISO-8601 UTC time the row was written.
        results: the exercise results, in registry order.
    """

    student: str
    assignment: str
    status: str
    score: float | None
    max_score: float
    seed: int | None
    source: str
    content_hash: str
    config_hash: str
    attempts: int
    wall_s: float
    message: str
    graded_at: str
    results: tuple[Result, ...]

    @property
    def flagged(self) -> bool:
        """True when a person must look at this row (grader error: no trustworthy score)."""
        return self.status == GRADER_ERROR


def _writable(path: Path) -> bool:
    try:
        return os.access(path, os.W_OK, effective_ids=os.access in os.supports_effective_ids)
    except OSError:
        return False


def _is_access_problem(exc: sqlite3.DatabaseError) -> bool:
    """SQLite's words for a file it may not write (read-only file, folder or file system)."""
    text = str(exc).lower()
    return any(w in text for w in ("readonly", "read-only", "unable to open", "permission"))


def submission_status(result: SubmissionResult) -> str:
    """``grader_error`` if any exercise is a grader error, else ``graded``."""
    return GRADER_ERROR if result.has_grader_error else GRADED


class Gradebook:
    """A SQLite gradebook file. Use as a context manager, or call :meth:`close`.

    Args:
        path: the ``.sqlite`` file; created (with its folder) if missing.

    Raises:
        ConfigError: the file exists but is not a cnnlab gradebook, or cannot be opened.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"cannot create the gradebook folder {str(self.path.parent)!r} "
                f"({exc.strerror}); pass an --out folder you can write to"
            ) from exc
        self._refuse_read_only()
        try:
            self._conn = sqlite3.connect(str(self.path), timeout=30.0, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(
                f"cannot open the gradebook {str(self.path)!r} ({exc}); pass an --out folder "
                "you can write to"
            ) from exc
        self._conn.row_factory = sqlite3.Row
        try:
            self._conn.execute("PRAGMA foreign_keys = ON")
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute("PRAGMA synchronous = FULL")
            self._conn.executescript(_SCHEMA)
            found = self._conn.execute(
                "SELECT value FROM meta WHERE key = 'schema_version'"
            ).fetchone()
            if found is None:
                self._conn.execute(
                    "INSERT INTO meta (key, value) VALUES ('schema_version', ?)", (SCHEMA_VERSION,)
                )
            elif found["value"] != SCHEMA_VERSION:
                raise ConfigError(
                    f"the gradebook {str(self.path)!r} has schema version {found['value']}, this "
                    f"cnnlab writes version {SCHEMA_VERSION}; use a new --out folder"
                )
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            if _is_access_problem(exc):
                raise ConfigError(self._read_only_message(str(exc))) from exc
            raise ConfigError(
                f"{str(self.path)!r} is not a cnnlab gradebook ({exc}); move it away or pass "
                "another --out folder"
            ) from exc

    def _read_only_message(self, why: str) -> str:
        return (
            f"cannot write the gradebook {str(self.path)!r}: {why}. Every grade is saved there "
            f"as soon as it is graded, so cnnlab needs to write the file and its folder "
            f"{str(self.path.parent)!r} (SQLite keeps its journal beside it): make them "
            f"writable (e.g. `chmod u+w {self.path.parent} {self.path}`) or pass another --out "
            "folder; nothing was graded or changed"
        )

    def _refuse_read_only(self) -> None:
        """A clear error, before SQLite's own, when the file or its folder is read-only."""
        folder = self.path.parent
        if not _writable(folder):
            raise ConfigError(
                self._read_only_message("its folder is read-only (permission denied)")
            )
        if self.path.exists() and not _writable(self.path):
            raise ConfigError(self._read_only_message("the file is read-only (permission denied)"))

    # -- context manager -------------------------------------------------------------------

    def __enter__(self) -> Gradebook:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._conn.close()

    # -- writing ---------------------------------------------------------------------------

    def record(
        self,
        result: SubmissionResult,
        *,
        assignment: str,
        content_hash: str,
        config_hash: str,
        attempts: int = 1,
        wall_s: float = 0.0,
        status: str | None = None,
        message: str = "",
    ) -> GradedSubmission:
        """Write one graded submission (replacing an older row) in a single transaction.

        Args:
            result: what the engine returned; ``result.student`` (normalised) is the key.
            assignment: assignment name.
            content_hash: hash of the submission's files.
            config_hash: hash of the grading configuration.
            attempts: grading attempts made.
            wall_s: wall time of the grading.
            status: overrides the submission status (``unreadable``); by default it is
                ``grader_error`` if any exercise is one, else ``graded``.
            message: reason shown for ``unreadable`` / ``grader_error`` rows.

        Returns:
            The row as written.
        """
        if not result.student:
            raise ValueError("a gradebook row needs SubmissionResult.student")
        student = normalize_student_id(result.student)
        status = status or submission_status(result)
        total = None if status == GRADER_ERROR else result.score
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(
                "DELETE FROM results WHERE student = ? AND assignment = ?",
                (student, assignment),
            )
            conn.execute(
                "INSERT OR REPLACE INTO submissions (student, assignment, status, score, "
                "max_score, seed, source, content_hash, config_hash, attempts, wall_s, message, "
                "graded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    student,
                    assignment,
                    status,
                    total,
                    result.max_score,
                    result.seed,
                    result.source,
                    content_hash,
                    config_hash,
                    attempts,
                    wall_s,
                    message,
                    now,
                ),
            )
            conn.executemany(
                "INSERT INTO results (student, assignment, position, exercise, score, "
                "max_score, status, feedback, mistake, output, wall_s) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        student,
                        assignment,
                        position,
                        r.name,
                        None if r.status is Status.GRADER_ERROR else r.score,
                        r.max_score,
                        r.status.value,
                        r.feedback,
                        r.mistake,
                        r.output,
                        r.wall_s,
                    )
                    for position, r in enumerate(result.exercises)
                ],
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return GradedSubmission(
            student=student,
            assignment=assignment,
            status=status,
            score=total,
            max_score=result.max_score,
            seed=result.seed,
            source=result.source,
            content_hash=content_hash,
            config_hash=config_hash,
            attempts=attempts,
            wall_s=wall_s,
            message=message,
            graded_at=now,
            results=tuple(result.exercises),
        )

    # -- reading ---------------------------------------------------------------------------

    def is_done(self, student: str, assignment: str, content_hash: str, config_hash: str) -> bool:
        """True when this exact submission was graded with this configuration, without a
        grader error (what ``--resume`` skips)."""
        row = self._conn.execute(
            "SELECT status, content_hash, config_hash FROM submissions "
            "WHERE student = ? AND assignment = ?",
            (normalize_student_id(student), assignment),
        ).fetchone()
        return (
            row is not None
            and row["status"] != GRADER_ERROR
            and row["content_hash"] == content_hash
            and row["config_hash"] == config_hash
        )

    def get(self, student: str, assignment: str) -> GradedSubmission | None:
        """The row of one student, or ``None``."""
        key = (normalize_student_id(student), assignment)
        rows = list(self._iter("WHERE student = ? AND assignment = ?", key))
        return rows[0] if rows else None

    def submissions(self, assignment: str | None = None) -> list[GradedSubmission]:
        """Every row (of one assignment if given), ordered by assignment then student."""
        if assignment is None:
            return list(self._iter("", ()))
        return list(self._iter("WHERE assignment = ?", (assignment,)))

    def _iter(self, where: str, args: tuple) -> Iterator[GradedSubmission]:
        subs = self._conn.execute(
            f"SELECT * FROM submissions {where} ORDER BY assignment, student", args
        ).fetchall()
        for s in subs:
            rows = self._conn.execute(
                "SELECT * FROM results WHERE student = ? AND assignment = ? ORDER BY position",
                (s["student"], s["assignment"]),
            ).fetchall()
            results = tuple(
                Result(
                    name=r["exercise"],
                    score=0.0 if r["score"] is None else float(r["score"]),
                    max_score=float(r["max_score"]),
                    status=Status(r["status"]),
                    feedback=r["feedback"],
                    mistake=r["mistake"],
                    output=r["output"],
                    wall_s=float(r["wall_s"]),
                )
                for r in rows
            )
            yield GradedSubmission(
                student=s["student"],
                assignment=s["assignment"],
                status=s["status"],
                score=None if s["score"] is None else float(s["score"]),
                max_score=float(s["max_score"]),
                seed=s["seed"],
                source=s["source"],
                content_hash=s["content_hash"],
                config_hash=s["config_hash"],
                attempts=int(s["attempts"]),
                wall_s=float(s["wall_s"]),
                message=s["message"],
                graded_at=s["graded_at"],
                results=results,
            )

    def exercise_names(self, assignment: str | None = None) -> list[str]:
        """Exercise names that occur, in their grading order (first position seen)."""
        where, args = ("WHERE assignment = ?", (assignment,)) if assignment else ("", ())
        rows = self._conn.execute(
            f"SELECT exercise, MIN(position) AS pos FROM results {where} "
            "GROUP BY exercise ORDER BY pos, exercise",
            args,
        ).fetchall()
        return [r["exercise"] for r in rows]


# -- exports -------------------------------------------------------------------------------


def _fmt(x: float | None) -> str:
    return "" if x is None else f"{x:g}"


#: Values of the ``this_run`` column of :func:`to_csv`.
THIS_RUN_GRADED = "graded"
THIS_RUN_KEPT = "unchanged, kept (--resume)"
THIS_RUN_PENDING = "not graded yet (interrupted)"
THIS_RUN_MISSING = "missing from this run"


def this_run_status(
    row: GradedSubmission,
    *,
    present: set[tuple[str, str]],
    graded: set[tuple[str, str]],
    kept: set[tuple[str, str]],
) -> str:
    """Where a gradebook row stands in the latest run: ``graded`` now, ``unchanged, kept
    (--resume)``, ``not graded yet (interrupted)``, or ``missing from this run`` (the student's
    submission is no longer in the submissions folder: the row is an older grade)."""
    key = (row.student, row.assignment)
    if key in graded:
        return THIS_RUN_GRADED
    if key in kept:
        return THIS_RUN_KEPT
    if key in present:
        return THIS_RUN_PENDING
    return THIS_RUN_MISSING


def to_csv(
    rows: list[GradedSubmission],
    exercises: list[str],
    *,
    this_run: dict[tuple[str, str], str] | None = None,
) -> str:
    """The class as CSV: one row per student, total and per-exercise scores.

    A grader error leaves its cells blank (never 0) and sets ``flag`` to ``grader_error``;
    an unreadable submission scores 0 with ``flag`` ``unreadable``. ``this_run`` maps
    (student, assignment) to :func:`this_run_status` (a row absent from it, e.g. a student
    removed from the submissions folder, is ``missing from this run``); without it the column
    is left blank.

    Every text cell goes through :func:`grader.sanitize.csv_cell` (OWASP's CSV-injection
    advice: a cell starting with ``=``, ``+``, ``-``, ``@``, tab or CR gets a leading ``'``;
    control characters are made visible). The file is for the staff: it holds the seeds.
    """
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow(
        [
            "student",
            "assignment",
            "total",
            "max_total",
            *exercises,
            "flag",
            "this_run",
            "seed",
            "message",
        ]
    )
    for row in rows:
        by_name = {r.name: r for r in row.results}
        cells = []
        for name in exercises:
            r = by_name.get(name)
            if r is None or r.status is Status.GRADER_ERROR:
                cells.append("")
            else:
                cells.append(_fmt(r.score))
        flag = "" if row.status == GRADED else row.status
        where = ""
        if this_run is not None:
            where = this_run.get((row.student, row.assignment), THIS_RUN_MISSING)
        writer.writerow(
            [
                csv_cell(row.student),
                csv_cell(row.assignment),
                _fmt(row.score),
                _fmt(row.max_score),
                *cells,
                csv_cell(flag),
                csv_cell(where),
                "" if row.seed is None else row.seed,
                csv_cell(row.message),
            ]
        )
    return buf.getvalue()


def write_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
