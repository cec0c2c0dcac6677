"""Batch grading: discovery (flat, zip, nbgrader), safe zip extraction, content hashes, seed
policy, and the orchestration (gradebook rows, retry, grader_error, resume, interruption,
worker death and hangs) with a fake grading function standing in for the engine."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
import zipfile
from pathlib import Path

import pytest

from grader import seeds
from grader.classroom import batch
from grader.classroom.batch import Entry, SeedPolicy
from grader.classroom.gradebook import GRADED, GRADER_ERROR, UNREADABLE, Gradebook
from grader.errors import ConfigError, GraderFailure, SubmissionError
from grader.registry import all_specs
from grader.results import Result, Status, SubmissionResult

FAKE = f"{__name__}:fake_grade"


def fake_grade(entry: Entry, *, seed: int, exercises) -> SubmissionResult:
    """Stands in for the engine. The submission's text decides what happens:
    ``GRADER_FAIL_ONCE`` fails the first attempt only, ``GRADER_FAIL`` always, ``BUG`` raises
    a KeyError, ``DIE`` kills the worker, ``HANG`` sleeps, ``SCORE=k`` passes k exercises."""
    if entry.kind == "zip":
        with zipfile.ZipFile(entry.path) as zf:
            text = "".join(zf.read(n).decode() for n in zf.namelist())
    elif entry.path.is_dir():
        text = "".join(p.read_text() for p in sorted(entry.path.rglob("*.py")))
    else:
        text = entry.path.read_text()
    if "GRADER_FAIL_ONCE" in text:
        marker = entry.path.parent / f".failed-once-{entry.student}"
        if not marker.exists():
            marker.write_text("x")
            raise GraderFailure("transient failure")
    elif "GRADER_FAIL" in text:
        raise GraderFailure("the reference crashed")
    if "BUG" in text:
        raise KeyError("oops")
    if "DIE" in text:
        os._exit(9)
    if "HANG" in text:
        time.sleep(600)
    specs = [s for s in all_specs() if not exercises or s.name in exercises]
    k = int(text.split("SCORE=")[1].split()[0]) if "SCORE=" in text else len(specs)
    results = tuple(
        Result(
            name=s.name,
            score=float(s.points) if i < k else 0.0,
            max_score=float(s.points),
            status=Status.PASSED if i < k else Status.FAILED,
            feedback="ok" if i < k else "wrong",
            mistake=None if i < k or not s.mistakes else s.mistakes[0].name,
        )
        for i, s in enumerate(specs)
    )
    return SubmissionResult(seed=seed, exercises=results, student=entry.student)


def grade_zip(entry: Entry, *, seed: int, exercises) -> SubmissionResult:
    """What ``grade_entry`` does with a zip (safe extraction), then the fake grading."""
    with tempfile.TemporaryDirectory() as tmp:
        batch.extract_zip(entry.path, Path(tmp))
    return fake_grade(entry, seed=seed, exercises=exercises)


# -- discovery -----------------------------------------------------------------------------


def _zip(path: Path, members: dict[str, str]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, text in members.items():
            zf.writestr(name, text)
    return path


def _flat_class(root: Path) -> Path:
    (root / "alice").mkdir(parents=True)
    (root / "alice" / "layers.py").write_text("SCORE=1\n")
    _zip(root / "bob.zip", {"bob/layers.py": "SCORE=2\n"})
    (root / "carol.py").write_text("SCORE=0\n")
    (root / "dave.ipynb").write_text("{}")
    (root / "README.txt").write_text("instructions")
    (root / ".DS_Store").write_text("")
    (root / "__MACOSX").mkdir()
    return root


def test_discover_flat_layout(tmp_path):
    found = batch.discover(_flat_class(tmp_path / "subs"))
    assert [(e.student, e.kind) for e in found.entries] == [
        ("alice", "folder"),
        ("bob", "zip"),
        ("carol", "file"),
        ("dave", "notebook"),
    ]
    assert {e.assignment for e in found.entries} == {seeds.DEFAULT_ASSIGNMENT}
    assert [p.name for p, _ in found.skipped] == ["README.txt"]
    assert not found.nbgrader
    without = batch.discover(tmp_path / "subs", exclude=[tmp_path / "subs" / "alice"])
    assert [e.student for e in without.entries] == ["bob", "carol", "dave"]  # e.g. --out


def test_discover_nbgrader_layout(tmp_path):
    course = tmp_path / "course"
    for student, assignments in {"alice": ["cnn", "hw2"], "bob": ["cnn"]}.items():
        for a in assignments:
            d = course / "submitted" / student / a
            d.mkdir(parents=True)
            (d / "problems.ipynb").write_text("{}")
            (d / "timestamp.txt").write_text("2026-01-01")
    found = batch.discover(course)
    assert found.nbgrader
    assert [(e.assignment, e.student) for e in found.entries] == [
        ("cnn", "alice"),
        ("cnn", "bob"),
        ("hw2", "alice"),
    ]
    only = batch.discover(course / "submitted", only_assignment="hw2")
    assert [(e.assignment, e.student) for e in only.entries] == [("hw2", "alice")]
    with pytest.raises(SubmissionError, match="assignments found: cnn, hw2"):
        batch.discover(course, only_assignment="hw9")


@pytest.mark.parametrize(
    "setup,match",
    [
        (lambda root: None, "no such folder"),
        (lambda root: root.write_text("x"), "is a file"),
        (lambda root: root.mkdir(), "no submissions"),
        (
            lambda root: (root.mkdir(), (root / "al.py").write_text(""), (root / "al").mkdir()),
            "two submissions for student 'al'",
        ),
    ],
    ids=["missing", "file", "empty", "duplicate"],
)
def test_discover_bad_input_says_what_to_do(tmp_path, setup, match):
    root = tmp_path / "subs"
    setup(root)
    with pytest.raises(SubmissionError, match=match):
        batch.discover(root)


def test_content_hash_follows_code_not_timestamps(tmp_path):
    d = tmp_path / "alice"
    d.mkdir()
    (d / "layers.py").write_text("a = 1\n")
    (d / "timestamp.txt").write_text("1")
    entry = Entry("alice", "cnn", d, "folder")
    h1 = batch.content_hash(entry)
    (d / "timestamp.txt").write_text("2")
    (d / "__pycache__").mkdir()
    (d / "__pycache__" / "x.py").write_text("junk")
    assert batch.content_hash(entry) == h1
    (d / "layers.py").write_text("a = 2\n")
    assert batch.content_hash(entry) != h1
    (d / "layers.py").write_text("a = 1\n")
    (d / "layers.py").rename(d / "pooling.py")  # same bytes, other file name
    assert batch.content_hash(entry) != h1


# -- zip safety ----------------------------------------------------------------------------


def test_extract_zip_takes_only_code(tmp_path):
    z = _zip(
        tmp_path / "a.zip",
        {"a/layers.py": "x = 1", "a/nb.ipynb": "{}", "a/data.bin": "zz", "__MACOSX/a/._l.py": ""},
    )
    out = batch.extract_zip(z, tmp_path / "out")
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert files == ["a/layers.py", "a/nb.ipynb"]


@pytest.mark.parametrize(
    "member", ["../evil.py", "/etc/evil.py", "a/../../evil.py", "C:/evil.py", "a\\..\\..\\evil.py"]
)
def test_extract_zip_refuses_path_traversal(tmp_path, member):
    z = _zip(tmp_path / "a.zip", {member: "x = 1"})
    with pytest.raises(SubmissionError, match="unsafe path"):
        batch.extract_zip(z, tmp_path / "out" / "inner")
    assert not (tmp_path / "evil.py").exists() and not (tmp_path / "out" / "evil.py").exists()


def test_extract_zip_refuses_symlinks(tmp_path):
    z = tmp_path / "a.zip"
    with zipfile.ZipFile(z, "w") as zf:
        info = zipfile.ZipInfo("link.py")
        info.external_attr = 0o120777 << 16  # a symbolic link
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(SubmissionError, match="symbolic link"):
        batch.extract_zip(z, tmp_path / "out")


def test_extract_zip_stops_a_zip_bomb_while_streaming(tmp_path):
    z = tmp_path / "bomb.zip"
    with zipfile.ZipFile(z, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a.py", "0" * 5_000_000)
    assert z.stat().st_size < 50_000  # tiny on disk
    with pytest.raises(SubmissionError, match="zip bomb"):
        batch.extract_zip(z, tmp_path / "out", max_total_bytes=1_000_000)
    with pytest.raises(SubmissionError, match="limit"):  # the declared size alone is refused too
        batch.extract_zip(z, tmp_path / "out2", max_member_bytes=1_000_000)


def test_extract_zip_refuses_too_many_members_and_garbage(tmp_path):
    z = _zip(tmp_path / "many.zip", {f"m{i}.py": "" for i in range(20)})
    with pytest.raises(SubmissionError, match="holds 20 files"):
        batch.extract_zip(z, tmp_path / "out", max_members=10)
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(SubmissionError, match="not a readable zip"):
        batch.extract_zip(bad, tmp_path / "out3")


def _notebook(path: Path, *cells: str) -> Path:
    nb = {
        "cells": [
            {
                "cell_type": "code",
                "id": f"c{i}",
                "metadata": {},
                "source": c,
                "outputs": [],
                "execution_count": None,
            }
            for i, c in enumerate(cells)
        ],
        "metadata": {},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(nb))
    return path


def test_load_entry_finds_code_at_any_depth(tmp_path):
    from grader.classroom.layouts import load_entry

    one = _notebook(tmp_path / "one" / "hw3" / "p.ipynb", "def f():\n    return 1\n")
    sub = load_entry(Entry("one", "cnn", tmp_path / "one", "folder"))
    assert sub.files == {"p": "hw3/p.ipynb"} and sub.symbols["p"] == {"f": "def"}
    assert one.is_file()
    _notebook(tmp_path / "two" / "a.ipynb", "def f():\n    return 1\n")
    _notebook(tmp_path / "two" / "b.ipynb", "def g():\n    return 2\n")
    sub = load_entry(Entry("two", "cnn", tmp_path / "two", "folder"))
    assert sorted(sub.modules) == ["a", "b"]
    (tmp_path / "none").mkdir()
    (tmp_path / "none" / "notes.txt").write_text("")
    with pytest.raises(SubmissionError, match="no .py file or notebook"):
        load_entry(Entry("none", "cnn", tmp_path / "none", "folder"))


# -- seeds ---------------------------------------------------------------------------------


def test_seed_policy():
    with pytest.raises(ConfigError):
        SeedPolicy()
    with pytest.raises(ConfigError):
        SeedPolicy(fixed=1, secret=b"s")
    fixed = SeedPolicy(fixed=5)
    assert fixed.seed_for("a", "cnn") == fixed.seed_for("b", "cnn") == 5
    per = SeedPolicy(secret=b"course-secret")
    assert per.seed_for("alice", "cnn") == seeds.derive_seed(b"course-secret", "alice", "cnn")
    assert per.seed_for("alice", "cnn") != per.seed_for("bob", "cnn")
    assert "course-secret" not in per.fingerprint() and "course-secret" not in repr(per)
    assert batch.config_hash(per, None) != batch.config_hash(fixed, None)
    assert batch.config_hash(fixed, ["a"]) != batch.config_hash(fixed, None)


# -- orchestration -------------------------------------------------------------------------


def _class(root: Path, texts: dict[str, str]) -> list[Entry]:
    root.mkdir(parents=True, exist_ok=True)
    for student, text in texts.items():
        (root / f"{student}.py").write_text(text)
    return list(batch.discover(root).entries)


def _run(entries, book, **kw):
    kw.setdefault("policy", SeedPolicy(fixed=3))
    kw.setdefault("grade_fn", FAKE)
    kw.setdefault("in_process", True)
    return batch.run_batch(entries, book, **kw)


def test_batch_writes_rows_feedback_and_counts(tmp_path):
    n = len(all_specs())
    entries = _class(tmp_path / "subs", {"alice": "", "bob": "SCORE=1", "carol": "SCORE=0"})
    progress = []
    with Gradebook(tmp_path / "g.sqlite") as book:
        summary = _run(
            entries,
            book,
            feedback_dir=tmp_path / "fb",
            on_progress=lambda row, done, total: progress.append((row.student, done, total)),
        )
        rows = {r.student: r for r in book.submissions()}
    assert summary.graded == 3 and summary.grader_errors == 0 and not summary.interrupted
    assert progress == [("alice", 1, 3), ("bob", 2, 3), ("carol", 3, 3)]
    total = sum(s.points for s in all_specs())
    assert rows["alice"].score == total and rows["alice"].status == GRADED
    assert rows["carol"].score == 0 and len(rows["carol"].results) == n
    assert all(r.seed == 3 for r in rows.values())
    text = (tmp_path / "fb" / "cnn" / "bob.md").read_text()
    assert "Feedback for bob" in text and "| exercise | status | score |" in text
    assert "wrong" in text  # the failed exercises' feedback


def test_grader_failure_is_retried_once_then_flagged(tmp_path):
    entries = _class(
        tmp_path / "subs", {"flaky": "GRADER_FAIL_ONCE", "broken": "GRADER_FAIL", "bug": "BUG"}
    )
    with Gradebook(tmp_path / "g.sqlite") as book:
        summary = _run(entries, book, feedback_dir=tmp_path / "fb")
        rows = {r.student: r for r in book.submissions()}
    assert summary.retried == 3 and summary.grader_errors == 2 and summary.graded == 1
    assert rows["flaky"].status == GRADED and rows["flaky"].attempts == 2
    for who in ("broken", "bug"):
        assert rows[who].status == GRADER_ERROR and rows[who].score is None
        assert rows[who].attempts == 2
        assert all(r.status is Status.GRADER_ERROR for r in rows[who].results)
    assert "the reference crashed" in rows["broken"].message
    assert "KeyError" in rows["bug"].message
    assert "not your fault" in (tmp_path / "fb" / "cnn" / "broken.md").read_text()


def test_unreadable_submission_scores_zero_and_the_batch_goes_on(tmp_path):
    root = tmp_path / "subs"
    root.mkdir()
    (root / "bad.zip").write_bytes(b"garbage")
    _zip(root / "good.zip", {"good/x.py": "SCORE=1"})
    entries = list(batch.discover(root).entries)

    with Gradebook(tmp_path / "g.sqlite") as book:
        summary = _run(entries, book, grade_fn=f"{__name__}:grade_zip")
        rows = {r.student: r for r in book.submissions()}
    assert summary.unreadable == 1 and summary.graded == 1
    assert rows["bad"].status == UNREADABLE and rows["bad"].score == 0.0
    assert "not a readable zip" in rows["bad"].message
    assert all(r.status is Status.ERROR for r in rows["bad"].results)
    assert rows["good"].status == GRADED


def test_resume_skips_graded_and_regrades_changes(tmp_path):
    root = tmp_path / "subs"
    entries = _class(root, {"alice": "SCORE=1", "bob": "GRADER_FAIL", "carol": "SCORE=2"})
    with Gradebook(tmp_path / "g.sqlite") as book:
        _run(entries, book)
        (root / "carol.py").write_text("SCORE=0")  # a resubmission
        (root / "bob.py").write_text("SCORE=3")  # the grader is fixed
        graded = []
        summary = _run(
            list(batch.discover(root).entries),
            book,
            resume=True,
            on_progress=lambda row, d, t: graded.append(row.student),
        )
        rows = {r.student: r for r in book.submissions()}
        assert summary.skipped_resume == 1 and sorted(graded) == ["bob", "carol"]
        assert rows["bob"].status == GRADED and rows["carol"].score == 0
        # another exercise selection is another configuration: nothing is skipped
        names = [all_specs()[0].name]
        again = _run(list(batch.discover(root).entries), book, resume=True, exercises=names)
        assert again.skipped_resume == 0 and again.graded == 3


def test_stop_request_keeps_finished_grades_and_resume_finishes(tmp_path):
    root = tmp_path / "subs"
    entries = _class(root, {f"s{i}": "SCORE=1" for i in range(4)})
    done = []
    with Gradebook(tmp_path / "g.sqlite") as book:
        summary = _run(
            entries,
            book,
            on_progress=lambda row, d, t: done.append(row.student),
            stop_requested=lambda: len(done) >= 2,
        )
        assert summary.interrupted and [r.student for r in book.submissions()] == ["s0", "s1"]
        rest = _run(entries, book, resume=True)
        assert rest.skipped_resume == 2 and rest.graded == 2 and not rest.interrupted
        assert len(book.submissions()) == 4


@pytest.mark.slow
def test_workers_survive_dying_and_hanging_graders(tmp_path):
    root = tmp_path / "subs"
    texts = {f"ok{i}": "SCORE=1" for i in range(4)}
    texts |= {"dies": "DIE", "hangs": "HANG"}
    entries = _class(root, texts)
    with Gradebook(tmp_path / "g.sqlite") as book:
        summary = _run(entries, book, in_process=False, jobs=2, submission_timeout_s=3.0)
        rows = {r.student: r for r in book.submissions()}
    assert len(rows) == 6 and summary.graded == 4 and summary.grader_errors == 2
    assert rows["dies"].status == GRADER_ERROR and "worker died" in rows["dies"].message
    assert rows["hangs"].status == GRADER_ERROR and "longer than 3 s" in rows["hangs"].message
    assert all(rows[f"ok{i}"].status == GRADED for i in range(4))
    assert summary.wall_s < 60


@pytest.mark.slow
def test_workers_that_cannot_start_give_grader_errors_not_a_hang(tmp_path):
    entries = _class(tmp_path / "subs", {"a": "SCORE=1", "b": "SCORE=1"})
    with Gradebook(tmp_path / "g.sqlite") as book:
        summary = _run(entries, book, in_process=False, jobs=2, grade_fn="no_such_module:fn")
        rows = book.submissions()
    assert summary.grader_errors == 2 and summary.graded == 0 and not summary.interrupted
    assert all(r.status == GRADER_ERROR and r.score is None for r in rows)
    assert all("no grading worker could start" in r.message for r in rows)
    assert "no_such_module" in rows[0].message


def test_feedback_file_names_are_safe(tmp_path):
    assert batch.safe_filename("../../etc/passwd").startswith("etc_passwd~")
    assert batch.safe_filename("alice@uni.edu") == "alice@uni.edu"
    assert "/" not in batch.safe_filename("a/b")
    assert batch.safe_filename("...").startswith("student~")


def test_several_notebooks_are_one_submission_executed_cell_by_cell(tmp_path):
    """nbgrader's one notebook per topic: one module per notebook, cells kept apart, so a
    broken cell does not take the rest of its notebook down (as with `cnnlab grade nb`)."""
    from grader.classroom.layouts import load_entry
    from grader.submission import Submission

    _notebook(tmp_path / "layers.ipynb", "def f():\n    return 1\n", "def broken(:\n")
    _notebook(tmp_path / "pool.ipynb", "def g():\n    return 2\n")
    sub = load_entry(Entry("s", "cnn", tmp_path, "folder"))
    assert isinstance(sub, Submission)
    assert sorted(sub.modules) == ["layers", "pool"]
    assert [c.strip() for c in sub.cells["layers"]] == ["def f():\n    return 1", "def broken(:"]
    assert sub.files["pool"] == "pool.ipynb"


# -- the command, end to end with the real engine and sandbox -------------------------------

ROOT = Path(__file__).resolve().parents[3]
SOLUTIONS = ROOT / "solutions"
MISTAKES = ROOT / "tests" / "fixtures" / "submissions" / "mistakes"
E2E_EXERCISES = ["conv_output_size", "maxpool2d_backward", "q2_output_size"]


def _real_class(root: Path, out: Path) -> Path:
    root.mkdir(parents=True)
    shutil.copytree(SOLUTIONS, root / "alice", ignore=shutil.ignore_patterns("notebooks", ".*"))
    # bob: the solutions with the ceil-instead-of-floor mistake, zipped inside a folder
    with zipfile.ZipFile(root / "bob.zip", "w") as zf:
        for p in sorted(SOLUTIONS.glob("*.py")):
            text = p.read_text()
            if p.name == "shapes.py":
                text += (
                    "\n\n" + (MISTAKES / "conv_output_size__ceil_instead_of_floor.py").read_text()
                )
            zf.writestr(f"bob/{p.name}", text)
    # carol: hostile. Prints a fake verdict, tries to wreck the gradebook, exits at import.
    (root / "carol.py").write_text(
        "import os, sys\n"
        "print('PASSED 100/100')\n"
        "try:\n"
        f"    open({str(out / 'gradebook.sqlite')!r}, 'wb').write(b'owned')\n"
        "except Exception as exc:\n"
        "    print('blocked:', exc)\n"
        "sys.exit(0)\n"
    )
    shutil.copy(SOLUTIONS / "notebooks" / "pooling.ipynb", root / "dave.ipynb")
    _zip(root / "eve.zip", {"../../escape.py": "x = 1"})
    return root


@pytest.mark.slow
def test_cnnlab_batch_end_to_end(tmp_path):
    from click.testing import CliRunner

    from grader.cli import main

    out = tmp_path / "out"
    subs = _real_class(tmp_path / "subs", out)
    args = ["batch", str(subs), "--out", str(out), "--seed", str(seeds.DEFAULT_SEED), "-j", "2"]
    for name in E2E_EXERCISES:
        args += ["-e", name]
    result = CliRunner().invoke(main, args, env={})
    assert result.exit_code == 0, result.output
    assert "5 graded" in result.output and "1 unreadable" in result.output

    with Gradebook(out / "gradebook.sqlite") as book:  # still a gradebook: carol wrote nothing
        rows = {r.student: r for r in book.submissions()}
    assert set(rows) == {"alice", "bob", "carol", "dave", "eve"}
    points = sum(s.points for s in all_specs() if s.name in E2E_EXERCISES)
    assert rows["alice"].score == rows["alice"].max_score == points
    bob = {r.name: r for r in rows["bob"].results}
    assert bob["conv_output_size"].status is Status.FAILED
    assert bob["conv_output_size"].mistake == "ceil_instead_of_floor"
    assert bob["maxpool2d_backward"].status is Status.PASSED
    assert rows["carol"].score == 0 and rows["carol"].status == GRADED
    assert all(not r.passed for r in rows["carol"].results)
    dave = {r.name: r for r in rows["dave"].results}  # one notebook: only pooling is there
    assert dave["maxpool2d_backward"].passed and not dave["conv_output_size"].passed
    assert rows["eve"].status == UNREADABLE and "unsafe path" in rows["eve"].message
    assert not (tmp_path / "escape.py").exists()

    lines = (out / "grades.csv").read_text().splitlines()
    assert lines[0].startswith("student,assignment,total,max_total,conv_output_size")
    assert len(lines) == 6 and lines[1].startswith(f"alice,cnn,{points:g},{points:g},")
    assert (out / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "ceil" in (out / "feedback" / "cnn" / "bob.md").read_text()

    again = CliRunner().invoke(main, [*args, "--resume"], env={})
    assert again.exit_code == 0, again.output
    assert "5 already graded" in again.output  # the same bytes give the same outcome

    no_secret = CliRunner().invoke(main, ["batch", str(subs), "--out", str(out)], env={})
    assert no_secret.exit_code == 2 and "--seed N" in no_secret.output


def test_cnnlab_batch_bad_input(tmp_path):
    from click.testing import CliRunner

    from grader.cli import main

    runner = CliRunner()
    missing = runner.invoke(main, ["batch", str(tmp_path / "nope"), "--seed", "1"], env={})
    assert missing.exit_code == 2 and "no such folder" in missing.output
    (tmp_path / "subs").mkdir()
    (tmp_path / "subs" / "a.py").write_text("")
    typo = runner.invoke(main, ["batch", str(tmp_path / "subs"), "--seed", "1", "-e", "maxpol"])
    assert typo.exit_code == 2 and "cnnlab list" in typo.output
    both = runner.invoke(
        main, ["batch", str(tmp_path / "subs"), "--seed", "1", "--secret-file", "s"], env={}
    )
    assert both.exit_code == 2 and "not both" in both.output
    assert "Traceback" not in missing.output + typo.output + both.output


@pytest.mark.slow
def test_ctrl_c_keeps_finished_grades(tmp_path):
    """SIGINT to a running `cnnlab batch`: exit 130, finished rows kept, CSV written."""
    import signal
    import sqlite3
    import subprocess
    import sys

    subs = tmp_path / "subs"
    subs.mkdir()
    for i in range(4):  # each one loops until the sandbox's time limit
        (subs / f"s{i}.py").write_text(
            "def conv_output_size(n_in, kernel_size, stride=1, padding=0, dilation=1):\n"
            "    while True:\n        pass\n"
        )
    out = tmp_path / "out"
    cmd = [sys.executable, "-c", "import sys; from grader.cli import main; sys.exit(main())"]
    cmd += ["batch", str(subs), "--out", str(out), "--seed", "1", "-e", "conv_output_size"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CNNLAB_COURSE_SECRET")}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    db = out / "gradebook.sqlite"
    deadline = time.monotonic() + 120
    rows = 0
    while time.monotonic() < deadline and proc.poll() is None:
        if db.exists():
            with contextlib.suppress(sqlite3.Error):
                con = sqlite3.connect(db)
                rows = con.execute("SELECT COUNT(*) FROM submissions").fetchone()[0]
                con.close()
        if rows >= 1:
            break
        time.sleep(0.2)
    assert rows >= 1, "no submission was graded in time"
    proc.send_signal(signal.SIGINT)
    output = proc.communicate(timeout=60)[0].decode()
    assert proc.returncode == 130, output
    assert "--resume" in output and "Traceback" not in output
    with Gradebook(db) as book:
        kept = book.submissions()
    assert 1 <= len(kept) < 4
    assert all(r.results[0].status is Status.TIMEOUT for r in kept)
    assert len((out / "grades.csv").read_text().splitlines()) == 1 + len(kept)
