"""LMS layouts (Canvas, Moodle, Blackboard, nbgrader, one entry per student), each student's
files read as hostile input, and a batch that goes on when one student's files are hostile."""

from __future__ import annotations

import os
import shutil
import zipfile
from pathlib import Path

import pytest

from grader import seeds
from grader.classroom import batch, layouts
from grader.classroom.gradebook import GRADED, UNREADABLE, Gradebook
from grader.classroom.layouts import Entry, content_hash, detect_layout, discover, load_entry
from grader.errors import SubmissionError
from grader.results import Status

ROOT = Path(__file__).resolve().parents[3]
SOLUTIONS = ROOT / "solutions"
TOPICS = ("architectures", "layers", "params", "pooling", "questions", "receptive", "saliency")


def _zip(path: Path, members: dict[str, str]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, text in members.items():
            zf.writestr(name, text)
    return path


# -- Canvas --------------------------------------------------------------------------------


def canvas_class(root: Path) -> Path:
    """Two students, nine files each, in one flat folder as Canvas's Download Submissions
    leaves it (today's flat discovery makes 18 "students" of it)."""
    root.mkdir(parents=True)
    for name, uid, sid, late in (("doejane", 1111, 501, ""), ("roesmith", 2222, 502, "_LATE")):
        for topic in (*TOPICS, "shapes", "transfer"):
            (root / f"{name}{late}_{uid}_{sid}_{topic}.py").write_text(f"# {name} {topic}\n")
    (root / "README.txt").write_text("downloaded from Canvas")
    return root


def test_canvas_flat_download_is_one_entry_per_student(tmp_path):
    root = canvas_class(tmp_path / "subs")
    assert detect_layout(root) == "canvas"
    found = discover(root)
    assert found.layout == "canvas"
    assert [(e.student, e.name, e.late, len(e.members)) for e in found.entries] == [
        ("1111", "doejane", False, 9),
        ("2222", "roesmith", True, 9),
    ]
    assert [p.name for p, _ in found.skipped] == ["README.txt"]
    sub = load_entry(found.entries[0])
    assert sorted(sub.files.values())[:2] == ["architectures.py", "layers.py"]  # names restored


def test_canvas_resubmission_newest_wins(tmp_path):
    root = tmp_path / "subs"
    root.mkdir()
    (root / "doejane_1111_501_pooling.py").write_text("OLD = True\n")
    (root / "doejane_1111_501_pooling-1.py").write_text("NEW = 1\n")
    (root / "doejane_1111_501_pooling-2.py").write_text("NEWEST = 2\n")
    (root / "doejane_1111_501_shapes.py").write_text("def conv_output_size():\n    return 1\n")
    (root / "doejane1111_question_77_888_answer.py").write_text("Q = 1\n")  # a quiz upload
    (entry,) = discover(root, layout="canvas").entries
    members = dict(entry.members)
    assert members["pooling.py"].name == "doejane_1111_501_pooling-2.py"
    assert "answer.py" in members and "shapes.py" in members
    assert any("pooling.py" in n and "replaced by the newer" in n for n in entry.notes)
    sub = load_entry(entry)
    assert sub.modules["pooling"] == "NEWEST = 2\n"
    assert any("replaced by the newer" in line for line in sub.summary())


def test_canvas_upload_of_a_zip_is_opened(tmp_path):
    root = tmp_path / "subs"
    root.mkdir()
    _zip(root / "doejane_1111_501_hw3.zip", {"hw3/pooling.py": "def maxpool2d_forward():\n  1\n"})
    (entry,) = discover(root).entries
    assert load_entry(entry).files == {"pooling": "hw3/pooling.py"}


# -- Moodle --------------------------------------------------------------------------------


def test_moodle_folders_with_a_zip_and_online_text(tmp_path):
    root = tmp_path / "subs"
    jane = root / "Jane Doe_123456_assignsubmission_file_"
    jane.mkdir(parents=True)
    _zip(jane / "hw3.zip", {"hw3/pooling.py": "def maxpool2d_forward():\n    return 1\n"})
    (root / "Jane Doe_123456_assignsubmission_onlinetext_").mkdir()
    anon = root / "Participant_654321_assignsubmission_file_"
    (anon / "src").mkdir(parents=True)
    (anon / "src" / "shapes.py").write_text("def conv_output_size():\n    return 1\n")
    assert detect_layout(root) == "moodle"
    found = discover(root)
    assert [(e.student, e.name) for e in found.entries] == [
        ("123456", "Jane Doe"),
        ("654321", "Participant"),  # blind marking
    ]
    assert [why for _, why in found.skipped] == [
        "Moodle onlinetext submission, not files: not graded"
    ]
    assert load_entry(found.entries[0]).files == {"pooling": "hw3/pooling.py"}  # was unreadable
    assert load_entry(found.entries[1]).files == {"shapes": "src/shapes.py"}


def test_moodle_flat_download(tmp_path):
    root = tmp_path / "subs"
    root.mkdir()
    for topic in ("pooling", "layers"):
        (root / f"Jane Doe_123456_assignsubmission_file_{topic}.py").write_text(f"# {topic}\n")
    (root / "Ann Lee_777_assignsubmission_file_hw.ipynb").write_text("{}")
    found = discover(root)
    assert found.layout == "moodle"
    assert [(e.student, sorted(dict(e.members))) for e in found.entries] == [
        ("123456", ["layers.py", "pooling.py"]),
        ("777", ["hw.ipynb"]),
    ]


# -- Blackboard ----------------------------------------------------------------------------


def test_blackboard_newest_attempt_wins(tmp_path):
    root = tmp_path / "subs"
    root.mkdir()
    old, new = "2026-01-30-10-00-00", "2026-01-31-23-59-59"
    (root / f"HW 3_jdoe_attempt_{old}.txt").write_text("Name: Jane Doe (jdoe)")
    (root / f"HW 3_jdoe_attempt_{old}_pooling.py").write_text("OLD = 1\n")
    (root / f"HW 3_jdoe_attempt_{new}.txt").write_text("Name: Jane Doe (jdoe)")
    (root / f"HW 3_jdoe_attempt_{new}_pooling.py").write_text("NEW = 1\n")
    (root / f"HW 3_amoe_attempt_{new}_shapes.py").write_text("X = 1\n")
    assert detect_layout(root) == "blackboard"
    found = discover(root)
    assert [e.student for e in found.entries] == ["amoe", "jdoe"]
    jdoe = found.entries[1]
    assert load_entry(jdoe).modules == {"pooling": "NEW = 1\n"}
    assert jdoe.notes == (f"attempt of {old} replaced by the newer attempt of {new}",)


# -- choosing a layout ---------------------------------------------------------------------


def test_layout_detection_and_explicit_choice(tmp_path):
    plain = tmp_path / "plain"
    (plain / "alice").mkdir(parents=True)
    (plain / "bob.py").write_text("")
    assert detect_layout(plain) == "folders"
    with pytest.raises(SubmissionError, match="no Canvas submissions.*lastnamefirstname_12345"):
        discover(plain, layout="canvas")
    with pytest.raises(SubmissionError, match="unknown layout 'd2l'"):
        discover(plain, layout="d2l")
    course = tmp_path / "course"
    (course / "submitted" / "alice" / "cnn").mkdir(parents=True)
    assert detect_layout(course) == "nbgrader" and discover(course).nbgrader
    with pytest.raises(SubmissionError, match="no submitted/ folder"):
        discover(plain, layout="nbgrader")
    archive = _zip(tmp_path / "submissions.zip", {"a.py": ""})
    with pytest.raises(SubmissionError, match="unzip it first"):
        discover(archive)


def test_lms_prefixed_names_are_restored_inside_a_students_folder(tmp_path):
    alice = tmp_path / "alice"
    alice.mkdir()
    (alice / "alice_1_2_layers.py").write_text("def helper():\n    return 1\n")
    (alice / "alice_1_2_pooling.py").write_text("from layers import helper\n")
    sub = load_entry(Entry("alice", "cnn", alice, "folder"))
    assert sub.files == {"layers": "layers.py", "pooling": "pooling.py"}


# -- content hashes and hostile entries ------------------------------------------------------


def test_content_hash_of_lms_entries_and_refused_zips(tmp_path):
    root = tmp_path / "subs"
    root.mkdir()
    (root / "doejane_1111_501_pooling.py").write_text("A = 1\n")
    (entry,) = discover(root).entries
    h1 = content_hash(entry)
    (root / "doejane_1111_501_pooling-1.py").write_text("A = 2\n")  # a resubmission
    (entry,) = discover(root).entries
    assert content_hash(entry) != h1
    bad = _zip(tmp_path / "eve.zip", {"../../escape.py": "x = 1"})
    eve = Entry("eve", "cnn", bad, "zip")
    assert content_hash(eve) == content_hash(eve)  # the zip's own bytes: --resume keeps it
    with pytest.raises(SubmissionError, match="unsafe path"):
        load_entry(eve)
    fifo_dir = tmp_path / "fifo"
    fifo_dir.mkdir()
    os.mkfifo(fifo_dir / "layers.py")
    with pytest.raises(SubmissionError, match="named pipe"):
        content_hash(Entry("f", "cnn", fifo_dir, "folder"))


def _hostile_class(root: Path, solutions_copy: Path) -> Path:
    """One folder per student: a correct one and one of each kind of hostile file."""
    for student in ("alice", "zero", "link", "fifo", "dirlink"):
        (root / student).mkdir(parents=True)
    shutil.copy(SOLUTIONS / "shapes.py", root / "alice" / "shapes.py")
    shutil.copy(SOLUTIONS / "shapes.py", root / "zero" / "shapes.py")
    (root / "zero" / "layers.py").symlink_to("/dev/zero")
    (root / "link" / "shapes.py").symlink_to(solutions_copy / "shapes.py")
    os.mkfifo(root / "fifo" / "shapes.py")
    (root / "dirlink" / "answers").symlink_to(solutions_copy, target_is_directory=True)
    (root / "dirlink" / "mine.py").write_text("from answers.shapes import conv_output_size\n")
    return root


@pytest.mark.slow
def test_hostile_files_make_that_student_unreadable_and_the_batch_goes_on(tmp_path):
    """SECURITY 37 through the real engine and sandbox: today a layers.py linked to /dev/zero
    kills the whole batch with MemoryError before anyone is graded."""
    solutions_copy = tmp_path / "course" / "solutions"
    shutil.copytree(SOLUTIONS, solutions_copy, ignore=shutil.ignore_patterns("notebooks"))
    root = _hostile_class(tmp_path / "subs", solutions_copy)
    entries = list(batch.discover(root).entries)
    with Gradebook(tmp_path / "g.sqlite") as book:
        summary = batch.run_batch(
            entries,
            book,
            policy=batch.SeedPolicy(fixed=seeds.DEFAULT_SEED),
            exercises=["conv_output_size"],
            in_process=True,  # the real grade_entry, in this process's sandbox
        )
        rows = {r.student: r for r in book.submissions()}
    assert summary.graded == 1 and summary.unreadable == 4
    assert rows["alice"].status == GRADED and rows["alice"].score == rows["alice"].max_score
    expected = {
        "zero": "layers.py is a symbolic link to something outside the submission",
        "link": "shapes.py is a symbolic link to something outside the submission",
        "fifo": "shapes.py is a named pipe (FIFO), not a file",
        "dirlink": "answers is a symbolic link to something outside the submission",
    }
    for student, message in expected.items():
        assert rows[student].status == UNREADABLE, student
        assert message in rows[student].message
        assert rows[student].score == 0
        assert all(r.status is Status.ERROR for r in rows[student].results)


@pytest.mark.slow
def test_cnnlab_batch_on_a_canvas_download(tmp_path):
    from click.testing import CliRunner

    from grader.cli import main

    root = tmp_path / "canvas"
    root.mkdir()
    wrong = (SOLUTIONS / "shapes.py").read_text().replace("// s + 1", "// s + 2")
    assert wrong != (SOLUTIONS / "shapes.py").read_text()
    # jane: first upload wrong, the resubmission (Canvas renames it shapes-1.py) right
    (root / "doejane_1111_501_shapes.py").write_text(wrong)
    (root / "doejane_1111_501_shapes-1.py").write_text((SOLUTIONS / "shapes.py").read_text())
    (root / "doejane_1111_501_pooling.py").write_text((SOLUTIONS / "pooling.py").read_text())
    # sam: late, one notebook, renamed by the download
    shutil.copy(
        SOLUTIONS / "notebooks" / "pooling.ipynb", root / "roesam_LATE_2222_502_pooling (1).ipynb"
    )
    (root / "zoe_3333_503_shapes.py").symlink_to("/dev/zero")  # hostile
    out = tmp_path / "out"
    args = ["batch", str(root), "--out", str(out), "--seed", str(seeds.DEFAULT_SEED)]
    args += ["-e", "conv_output_size", "-e", "maxpool2d_forward"]
    result = CliRunner().invoke(main, args, env={})
    assert result.exit_code == 0, result.output
    assert "layout: canvas (3 students)" in result.output
    assert "note: 1111 (doejane): doejane_1111_501_shapes.py replaced by the newer" in (
        result.output
    )
    assert "late: 2222 (roesam)" in result.output
    with Gradebook(out / "gradebook.sqlite") as book:
        rows = {r.student: r for r in book.submissions()}
    assert set(rows) == {"1111", "2222", "3333"}
    assert rows["1111"].score == rows["1111"].max_score  # the newest shapes.py was graded
    sam = {r.name: r for r in rows["2222"].results}
    assert sam["maxpool2d_forward"].passed and not sam["conv_output_size"].passed
    assert rows["3333"].status == UNREADABLE and "symbolic link" in rows["3333"].message


def test_layouts_are_offered_on_the_command_line():
    assert set(layouts.LAYOUTS) == {"auto", "folders", "canvas", "moodle", "blackboard", "nbgrader"}
