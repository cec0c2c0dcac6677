"""Class reports that lose nothing (issue 10.11-10.12, SECURITY.md case 38): one test per kind.

Layers that stop each attack: unique reversible feedback file names and an owner line checked
before every write (grader.classroom.batch.safe_filename / feedback_path); OWASP escaping of CSV
cells (grader.sanitize.csv_cell, used by gradebook.to_csv); Markdown escaping and fences
(grader.sanitize.md_text / md_code_block, used by batch.feedback_markdown); id normalisation
(grader.seeds.normalize_student_id, used by batch.normalize_entries, the gradebook and
derive_seed); and a permission check before SQLite opens the gradebook (Gradebook)."""

from __future__ import annotations

import csv
import io
import os
import shutil
import tempfile
import unicodedata
from pathlib import Path

import pytest

from grader import seeds
from grader.classroom import batch
from grader.classroom.batch import Entry, SeedPolicy
from grader.classroom.gradebook import (
    THIS_RUN_GRADED,
    THIS_RUN_KEPT,
    THIS_RUN_MISSING,
    Gradebook,
    GradedSubmission,
    this_run_status,
    to_csv,
)
from grader.errors import ConfigError, GraderFailure, SubmissionError
from grader.results import Result, Status, SubmissionResult

FAKE = "tests_classroom_fake:fake_grade"
SECRET = b"class-report-secret"

#: Ids that collapsed onto one file name, or escaped the folder, before the fix.
HOSTILE_IDS = [
    "Jane Doe",
    "Jane_Doe",
    "jane_doe",
    "jane doe",
    "学生",
    "张三",
    "Alice",
    "alice",
    "..",
    ".hidden",
    "CON",
    "a\\b",
    "x" * 300,
]


def _row(student: str, output: str = "", feedback: str = "wrong", seed: int = 1234567):
    return GradedSubmission(
        student=student,
        assignment="hw1",
        status="graded",
        score=1.0,
        max_score=2.0,
        seed=seed,
        source="x",
        content_hash="h",
        config_hash="c",
        attempts=1,
        wall_s=0.1,
        message="",
        graded_at="2026-01-01T00:00:00+00:00",
        results=(
            Result("conv_output_size", 0.0, 1.0, Status.FAILED, feedback, output=output),
            Result("dense_params", 1.0, 1.0, Status.PASSED, "ok"),
        ),
    )


def test_every_id_gets_its_own_feedback_file_and_the_index_maps_back(tmp_path):
    names = {sid: batch.safe_filename(sid) for sid in HOSTILE_IDS}
    assert len(set(names.values())) == len(HOSTILE_IDS), names  # unique
    for name in names.values():
        assert "/" not in name and "\\" not in name and not name.startswith(".")
        assert len(name) <= 100 and name == name.lower()  # one file even on macOS/Windows
    assert batch.safe_filename("s1234") == "s1234"  # plain ids stay readable
    fb = tmp_path / "fb"
    for sid in HOSTILE_IDS:
        batch.write_feedback(fb, _row(sid))
    files = sorted((fb / "hw1").glob("*.md"))
    assert len(files) == len(HOSTILE_IDS)  # nothing overwritten
    owners = {batch.feedback_owner(f) for f in files}
    assert owners == {(seeds.normalize_student_id(s), "hw1") for s in HOSTILE_IDS}
    batch.feedback_index(fb, [_row(s) for s in HOSTILE_IDS])
    index = list(csv.DictReader((fb / "hw1" / "index.csv").open(encoding="utf-8")))
    back = {r["file"]: r["student"] for r in index}
    for sid in HOSTILE_IDS:
        assert back[names[sid] + ".md"] == seeds.normalize_student_id(sid)


def test_a_file_of_another_student_is_never_overwritten(tmp_path):
    fb = tmp_path / "fb"
    mine = batch.feedback_path(fb, _row("Jane Doe"))
    mine.parent.mkdir(parents=True)
    mine.write_text("<!-- cnnlab feedback for student=someone%20else assignment=hw1 -->\nkeep")
    written = batch.write_feedback(fb, _row("Jane Doe"))
    assert written != mine and mine.read_text().endswith("keep")
    assert batch.feedback_owner(written) == ("Jane Doe", "hw1")
    assert batch.write_feedback(fb, _row("Jane Doe")) == written  # regrading replaces its own
    legacy = batch.feedback_path(fb, _row("alice"))  # written by an older cnnlab
    legacy.write_text("# Feedback for alice — hw1\n\nold")
    assert batch.write_feedback(fb, _row("alice")) == legacy  # still alice's: replaced
    unknown = batch.feedback_path(fb, _row("jane_doe"))
    unknown.write_text("a file someone put there")
    batch.feedback_path(fb, _row("jane_doe")).write_text(
        "<!-- cnnlab feedback for student=x assignment=hw1 -->"
    )
    with pytest.raises(GraderFailure, match="not\n?.*overwritten"):
        batch.feedback_path(fb, _row("jane_doe"))


def test_feedback_markdown_cannot_be_broken_out_of_and_names_no_seed():
    row = _row(
        "# <img src=x onerror=alert(1)>",
        output="```\n[phish](http://evil.example)\n```\x1b[31m\x00",
        feedback="ValueError: <script>x</script> *bold*",
        seed=1234567,
    )
    text = batch.feedback_markdown(row)
    assert "1234567" not in text  # the seed gives the problem set's solutions away
    heading = text.splitlines()[1]
    assert heading.startswith("# Feedback for \\# \\<img")
    assert "<" not in heading.replace("\\<", "")  # every < is escaped: no HTML
    assert "<script>" not in text and "\\<script\\>" in text
    assert "\x1b" not in text and "\x00" not in text
    start = text.index("Your code printed:")
    fence = text[start:].splitlines()[2]
    ticks = fence.removesuffix("text")
    assert set(ticks) == {"`"} and len(ticks) >= 4
    assert text[start:].count(ticks) == 2  # the student's ``` closes nothing


@pytest.mark.parametrize(
    "student",
    ['=HYPERLINK("http://evil","click")', "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(1)"],
)
def test_grades_csv_escapes_formulas(student):
    row = _row(student)
    row = GradedSubmission(**{**row.__dict__, "message": "=1+1\x00"})
    text = to_csv([row], ["conv_output_size", "dense_params"], this_run={})
    (parsed,) = list(csv.DictReader(io.StringIO(text)))
    assert parsed["student"] == "'" + student
    assert parsed["message"] == "'=1+1␀"
    assert parsed["total"] == "1"  # numbers are left alone


def _class(root: Path, names: list[str], text: str = "") -> list[Entry]:
    root.mkdir(parents=True, exist_ok=True)
    for name in names:
        (root / f"{name}.py").write_text(text)
    return list(batch.discover(root).entries)


def _fake_module(tmp_path: Path, monkeypatch) -> str:
    (tmp_path / "tests_classroom_fake.py").write_text(
        "from grader.results import Result, Status, SubmissionResult\n"
        "def fake_grade(entry, *, seed, exercises):\n"
        "    r = Result('dense_params', 1.0, 1.0, Status.PASSED, 'ok')\n"
        "    return SubmissionResult(seed=seed, exercises=(r,), student=entry.student)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return FAKE


def test_a_decomposed_unicode_folder_name_is_the_same_student_and_seed(tmp_path, monkeypatch):
    fake = _fake_module(tmp_path, monkeypatch)
    nfd = unicodedata.normalize("NFD", "José")
    entries = _class(tmp_path / "subs", [nfd])
    with Gradebook(tmp_path / "g.sqlite") as book:
        batch.run_batch(
            entries,
            book,
            policy=SeedPolicy(secret=SECRET),
            grade_fn=fake,
            in_process=True,
            exercises=["dense_params"],
        )
        row = book.get("José", "cnn")  # typed, NFC
    assert row is not None and row.student == "José"
    assert row.seed == seeds.derive_seed(SECRET, "José", "cnn")
    # both spellings at once are one student twice: refused before anything is written
    both = _class(tmp_path / "subs2", [nfd, "José"])
    with pytest.raises(SubmissionError, match="same student"):
        batch.normalize_entries(both)


def test_a_student_removed_from_the_submissions_is_flagged(tmp_path, monkeypatch):
    fake = _fake_module(tmp_path, monkeypatch)
    book_path = tmp_path / "g.sqlite"
    with Gradebook(book_path) as book:
        first = _class(tmp_path / "subs", ["alice", "bob"])
        batch.run_batch(first, book, policy=SeedPolicy(fixed=1), grade_fn=fake, in_process=True)
        (tmp_path / "subs" / "bob.py").unlink()
        second = _class(tmp_path / "subs", ["alice"])
        summary = batch.run_batch(
            second,
            book,
            policy=SeedPolicy(fixed=1),
            grade_fn=fake,
            in_process=True,
            resume=True,
        )
        rows = book.submissions()
    present = {(e.student, e.assignment) for e in second}
    graded = {(r.student, r.assignment) for r in summary.rows}
    status = {
        r.student: this_run_status(r, present=present, graded=graded, kept=set(summary.kept))
        for r in rows
    }
    assert status == {"alice": THIS_RUN_KEPT, "bob": THIS_RUN_MISSING}
    text = to_csv(
        rows,
        ["dense_params"],
        this_run={(r.student, r.assignment): status[r.student] for r in rows},
    )
    by = {r["student"]: r for r in csv.DictReader(io.StringIO(text))}
    assert by["bob"]["this_run"] == "missing from this run" and by["bob"]["total"] == "1"
    assert THIS_RUN_GRADED == "graded"


def _as_other_user():
    """Root ignores permission bits: drop the effective uid to nobody for the check."""
    import contextlib

    @contextlib.contextmanager
    def cm():
        if os.geteuid() != 0:
            yield
            return
        os.seteuid(65534)
        try:
            yield
        finally:
            os.seteuid(0)

    return cm()


def test_a_read_only_gradebook_folder_says_permission_not_corruption():
    base = Path(tempfile.mkdtemp(prefix="cnnlab-ro-"))  # not under pytest's 0700 folders
    try:
        os.chmod(base, 0o755)
        folder = base / "gradebook"
        folder.mkdir()
        with Gradebook(folder / "gradebook.sqlite") as book:
            book.record(
                SubmissionResult(
                    seed=1, exercises=(Result("a", 1.0, 1.0, Status.PASSED, "ok"),), student="s"
                ),
                assignment="hw1",
                content_hash="h",
                config_hash="c",
            )
        before = (folder / "gradebook.sqlite").read_bytes()
        os.chmod(folder, 0o555)
        with _as_other_user(), pytest.raises(ConfigError) as info:
            Gradebook(folder / "gradebook.sqlite")
        message = str(info.value)
        assert "not a cnnlab gradebook" not in message
        assert "read-only" in message and "chmod" in message and "--out" in message
        assert (folder / "gradebook.sqlite").read_bytes() == before
    finally:
        os.chmod(base / "gradebook", 0o755)
        shutil.rmtree(base)


@pytest.mark.slow
def test_cnnlab_batch_keeps_every_student_and_flags_the_missing(tmp_path):
    """The whole command: hostile ids graded into distinct files and escaped CSV cells; a
    student removed later stays, flagged; two Unicode spellings of one id are refused (exit 2)
    before anything is written."""
    from click.testing import CliRunner

    from grader.cli import main

    plain = Path(__file__).resolve().parents[2] / "fixtures" / "submissions" / "plain_loops"
    subs, out = tmp_path / "subs", tmp_path / "out"
    ids = ["Jane Doe", "Jane_Doe", '=HYPERLINK("evil.example","x")', "学生"]
    for sid in ids:
        shutil.copytree(plain, subs / sid)
    args = ["batch", str(subs), "--out", str(out), "--seed", "7", "-e", "dense_params"]
    first = CliRunner().invoke(main, args, env={})
    assert first.exit_code == 0, first.output
    feedback = sorted((out / "feedback" / "cnn").glob("*.md"))
    assert len(feedback) == len(ids)  # nobody's feedback overwritten
    assert all("seed" not in f.read_text().lower() for f in feedback)
    rows = list(csv.DictReader((out / "grades.csv").open(encoding="utf-8")))
    assert sorted(r["student"] for r in rows) == sorted(
        ["'" + ids[2], "Jane Doe", "Jane_Doe", "学生"]
    )
    assert {r["this_run"] for r in rows} == {"graded"}

    shutil.rmtree(subs / "Jane_Doe")
    second = CliRunner().invoke(main, [*args, "--resume"], env={})
    assert second.exit_code == 0, second.output
    assert "missing from this run" in second.output and "Jane_Doe" in second.output
    rows = {r["student"]: r for r in csv.DictReader((out / "grades.csv").open(encoding="utf-8"))}
    assert rows["Jane_Doe"]["this_run"] == "missing from this run"
    assert rows["Jane_Doe"]["total"] == rows["Jane Doe"]["total"]  # the old grade is kept
    assert rows["Jane Doe"]["this_run"] == "unchanged, kept (--resume)"

    before = (out / "grades.csv").read_bytes()
    shutil.copytree(plain, subs / unicodedata.normalize("NFD", "José"))
    shutil.copytree(plain, subs / "José")
    twice = CliRunner().invoke(main, args, env={})
    assert twice.exit_code == 2 and "same student" in twice.output
    assert "Traceback" not in twice.output
    assert (out / "grades.csv").read_bytes() == before  # nothing written
