"""The SQLite gradebook: round trip, atomic writes, resume keys, CSV with flagged grader errors."""

from __future__ import annotations

import csv
import io
import sqlite3

import pytest

from grader.classroom.gradebook import (
    GRADED,
    GRADER_ERROR,
    UNREADABLE,
    Gradebook,
    to_csv,
    write_atomic,
)
from grader.errors import ConfigError
from grader.results import Result, Status, SubmissionResult


def _result(student: str, statuses: list[Status], *, seed: int = 7, mistake=None):
    return SubmissionResult(
        seed=seed,
        exercises=tuple(
            Result(
                name=f"ex{i}",
                score=2.0 if st is Status.PASSED else 0.0,
                max_score=2.0,
                status=st,
                feedback=f"feedback {i}",
                mistake=mistake if st is Status.FAILED else None,
                output="printed\n" if i == 0 else "",
                wall_s=0.1,
            )
            for i, st in enumerate(statuses)
        ),
        source=f"subs/{student}",
        student=student,
    )


@pytest.fixture()
def book(tmp_path):
    with Gradebook(tmp_path / "out" / "gradebook.sqlite") as gb:
        yield gb


def test_round_trip_keeps_every_field(book):
    res = _result("alice", [Status.PASSED, Status.FAILED], mistake="bias_forgotten")
    book.record(res, assignment="cnn", content_hash="h1", config_hash="c1", wall_s=1.5)
    row = book.get("alice", "cnn")
    assert row is not None
    assert row.status == GRADED
    assert row.score == 2.0 and row.max_score == 4.0 and row.seed == 7
    assert row.results == res.exercises
    assert row.wall_s == 1.5 and row.attempts == 1
    assert book.exercise_names() == ["ex0", "ex1"]


def test_grader_error_has_no_score(book):
    res = _result("bob", [Status.PASSED, Status.GRADER_ERROR])
    row = book.record(res, assignment="cnn", content_hash="h", config_hash="c", attempts=2)
    assert row.status == GRADER_ERROR and row.score is None and row.flagged
    stored = book.get("bob", "cnn")
    assert stored.score is None and stored.attempts == 2
    raw = book._conn.execute("SELECT score FROM results WHERE exercise = 'ex1'").fetchone()
    assert raw[0] is None  # not a 0 in the database either


def test_rerecord_replaces_the_old_row(book):
    book.record(
        _result("alice", [Status.FAILED, Status.FAILED, Status.FAILED]),
        assignment="cnn",
        content_hash="h1",
        config_hash="c",
    )
    book.record(
        _result("alice", [Status.PASSED]), assignment="cnn", content_hash="h2", config_hash="c"
    )
    row = book.get("alice", "cnn")
    assert [r.name for r in row.results] == ["ex0"]
    assert row.content_hash == "h2" and row.score == 2.0
    assert len(book.submissions()) == 1


def test_a_failed_write_leaves_the_previous_grade_intact(book):
    book.record(
        _result("alice", [Status.PASSED]), assignment="cnn", content_hash="h1", config_hash="c"
    )
    dup = SubmissionResult(
        seed=1,
        exercises=(
            Result("same", 0.0, 1.0, Status.FAILED, "x"),
            Result("same", 0.0, 1.0, Status.FAILED, "x"),  # violates the primary key mid-write
        ),
        student="alice",
    )
    with pytest.raises(sqlite3.IntegrityError):
        book.record(dup, assignment="cnn", content_hash="h2", config_hash="c")
    row = book.get("alice", "cnn")
    assert row.content_hash == "h1" and row.score == 2.0 and len(row.results) == 1


def test_is_done_matches_content_config_and_status(book):
    book.record(_result("a", [Status.PASSED]), assignment="cnn", content_hash="h", config_hash="c")
    book.record(
        _result("b", [Status.GRADER_ERROR]), assignment="cnn", content_hash="h", config_hash="c"
    )
    assert book.is_done("a", "cnn", "h", "c")
    assert not book.is_done("a", "cnn", "changed", "c")  # a resubmission is regraded
    assert not book.is_done("a", "cnn", "h", "other-exercises")
    assert not book.is_done("a", "other-assignment", "h", "c")
    assert not book.is_done("b", "cnn", "h", "c")  # grader errors are retried
    assert not book.is_done("nobody", "cnn", "h", "c")


def test_reopening_keeps_rows(tmp_path):
    path = tmp_path / "g.sqlite"
    with Gradebook(path) as gb:
        gb.record(
            _result("a", [Status.PASSED]), assignment="cnn", content_hash="h", config_hash="c"
        )
    with Gradebook(path) as gb:
        assert [r.student for r in gb.submissions()] == ["a"]


def test_a_file_that_is_not_a_gradebook_is_refused(tmp_path):
    bogus = tmp_path / "gradebook.sqlite"
    bogus.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(ConfigError, match="not a cnnlab gradebook"):
        Gradebook(bogus)
    assert bogus.read_bytes().startswith(b"this is not sqlite")  # nothing was overwritten


def test_csv_blanks_grader_errors_and_flags_them(book):
    book.record(
        _result("alice", [Status.PASSED, Status.FAILED]),
        assignment="cnn",
        content_hash="h",
        config_hash="c",
    )
    book.record(
        _result("bob", [Status.PASSED, Status.GRADER_ERROR]),
        assignment="cnn",
        content_hash="h",
        config_hash="c",
    )
    book.record(
        _result("carol", [Status.ERROR, Status.ERROR]),
        assignment="cnn",
        content_hash="h",
        config_hash="c",
        status=UNREADABLE,
        message="not a zip",
    )
    text = to_csv(book.submissions(), ["ex0", "ex1"])
    rows = list(csv.DictReader(io.StringIO(text)))
    by = {r["student"]: r for r in rows}
    assert list(rows[0]) == [
        "student",
        "assignment",
        "total",
        "max_total",
        "ex0",
        "ex1",
        "flag",
        "this_run",
        "seed",
        "message",
    ]
    assert by["alice"]["total"] == "2" and by["alice"]["ex1"] == "0" and by["alice"]["flag"] == ""
    assert by["bob"]["total"] == "" and by["bob"]["ex0"] == "2" and by["bob"]["ex1"] == ""
    assert by["bob"]["flag"] == "grader_error"
    assert by["carol"]["total"] == "0" and by["carol"]["flag"] == "unreadable"
    assert by["carol"]["message"] == "not a zip"


def test_write_atomic_replaces_whole_file(tmp_path):
    target = tmp_path / "sub" / "grades.csv"
    write_atomic(target, "old\n")
    write_atomic(target, "new\n")
    assert target.read_text() == "new\n"
    assert [p.name for p in target.parent.iterdir()] == ["grades.csv"]  # no temp file left
