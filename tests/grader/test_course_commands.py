"""Three assignments of one course file, end to end through the command line: each is
generated, released, graded, batch-graded and exported on its own, with its own exercises,
points, time limits, seed and output folder."""

from __future__ import annotations

import csv
import json
import shutil
import textwrap
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from grader import registry, seeds
from grader.cli import main
from grader.course import load_course
from grader.problemset.generate import question_text

COURSE = """
[course]
name = "CNN test course"
id = "cnn-test-course"

[assignments.hw1]
title = "Output sizes"
exercises = ["conv_output_size", "q2_output_size"]
seed = 101
points = { conv_output_size = 5 }

[assignments.hw2]
title = "Max pooling"
topics = ["pooling"]
seed = 202
time_limits_s = { maxpool2d_backward = 7 }

[assignments.hw3]
title = "Dense layers, one variant per student"
exercises = ["dense_params", "q7_dense_params"]
per_student = true
"""
SECRET = "course-secret-for-tests"
EXPECTED = {
    "hw1": ({"conv_output_size", "q2_output_size"}, {"shapes", "questions"}, 6.0),
    "hw2": ({"maxpool2d_forward", "maxpool2d_backward"}, {"pooling"}, 6.0),
    "hw3": ({"dense_params", "q7_dense_params"}, {"params", "questions"}, 2.0),
}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def course_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("course")
    (folder / "cnnlab.toml").write_text(textwrap.dedent(COURSE).lstrip())
    return folder


@pytest.fixture(autouse=True)
def inside(course_dir, monkeypatch):
    monkeypatch.chdir(course_dir)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(course_dir / "config"))
    monkeypatch.delenv(seeds.SECRET_FILE_ENV, raising=False)
    monkeypatch.delenv(registry.VIEW_ENV, raising=False)
    monkeypatch.setenv(seeds.SECRET_ENV, SECRET)


@pytest.fixture
def generated(course_dir) -> Path:
    """Every assignment's problem set (generated once; later calls find them unchanged)."""
    for name in EXPECTED:
        if not (course_dir / "problemsets" / name / "solutions").is_dir():
            cnnlab("generate", "--assignment", name, "--no-notebooks")
    return course_dir / "problemsets"


def cnnlab(*args: str, code: int | tuple[int, ...] = 0):
    result = CliRunner().invoke(main, list(args))
    codes = (code,) if isinstance(code, int) else code
    assert result.exit_code in codes, (args, result.output, result.exception)
    return result


def problem_seeds(course_dir) -> dict[str, int]:
    course = load_course(course_dir / "cnnlab.toml")
    return {name: course.problem_seed(a, SECRET.encode()) for name, a in course.assignments.items()}


def test_each_assignment_has_its_own_seed(course_dir):
    found = problem_seeds(course_dir)
    assert found["hw1"] == 101 and found["hw2"] == 202
    assert found["hw3"] == seeds.derive_problem_seed(SECRET, "hw3")
    assert len(set(found.values())) == 3


@pytest.mark.parametrize("name", ["hw1", "hw2", "hw3"])
def test_generate_writes_each_assignment_to_its_own_folder(course_dir, name):
    cnnlab("generate", "--assignment", name, "--no-notebooks")
    folder = course_dir / "problemsets" / name
    exercises, topics, total = EXPECTED[name]
    assert {p.stem for p in (folder / "exercises").glob("*.py")} == topics
    assert {p.stem for p in (folder / "solutions").glob("*.py")} == topics
    readme = (folder / "exercises" / "README.md").read_text()
    for other in {"conv_output_size", "maxpool2d_backward", "dense_params"} - exercises:
        assert other not in readme
    if "questions" in topics:  # the question numbers are this assignment's seed's
        questions = (folder / "exercises" / "questions.py").read_text()
        seed = problem_seeds(course_dir)[name]
        (q,) = [registry.get(n) for n in exercises if n.startswith("q")]
        assert " ".join(question_text(q, seed).split()) in " ".join(questions.split())
        assert " ".join(question_text(q, seed + 1).split()) not in " ".join(questions.split())
    if name == "hw1":
        assert "conv_output_size (5 points)" in (folder / "exercises" / "shapes.py").read_text()


def test_generate_without_an_assignment_in_a_course_of_three_is_an_error():
    result = cnnlab("generate", code=2)
    assert "has 3 assignments (hw1, hw2, hw3): choose one with --assignment NAME" in result.output


@pytest.mark.parametrize("name", ["hw1", "hw2", "hw3"])
def test_release_bundles_only_the_assignments_exercises(course_dir, name):
    cnnlab("release", "--assignment", name)
    bundle = course_dir / "release" / name
    exercises, topics, _ = EXPECTED[name]
    checked = {n for n in exercises if not n.startswith("q")}
    assert {p.stem for p in (bundle / "cases").glob("*.npz")} == checked
    manifest = json.loads((bundle / "cases" / "manifest.json").read_text())
    text = json.dumps(manifest)
    if name == "hw1":
        assert '"points": 5.0' in text  # the override travels with the public cases
    if name == "hw2":
        assert '"timeout_s": 7.0' in text


def _grade(course_dir, name: str, path: Path, *extra: str) -> dict:
    out = course_dir / f"grade-{name}.json"
    cnnlab("grade", str(path), "--assignment", name, "--json", str(out), *extra, code=(0, 1))
    return json.loads(out.read_text())


@pytest.mark.parametrize("name", ["hw1", "hw2", "hw3"])
def test_grading_an_assignment_uses_its_exercises_points_and_seed(course_dir, generated, name):
    exercises, _, total = EXPECTED[name]
    doc = _grade(course_dir, name, course_dir / "problemsets" / name / "solutions")
    assert {e["name"] for e in doc["exercises"]} == exercises
    assert doc["max_score"] == doc["score"] == total, doc
    if name != "hw3":  # one problem set for everyone: graded with its (hidden) seed
        notes = " ".join(doc.get("notes", []))
        assert doc["seed"] is None and "seed" not in notes and "problem set" not in notes, notes
    # another assignment's solutions are graded against this assignment's exercises
    other = {"hw1": "hw2", "hw2": "hw1", "hw3": "hw1"}[name]
    doc = _grade(course_dir, name, course_dir / "problemsets" / other / "solutions")
    graded = {e["name"] for e in doc["exercises"]}
    # a student's own check leaves out what nothing in the folder is meant for, and says so
    notes = " ".join(doc.get("notes", []))
    assert graded and graded <= exercises, doc
    assert all(f"-e {name}" in notes for name in exercises - graded), notes
    assert doc["score"] < total


def test_the_course_seed_names_the_problem_set_of_a_shared_assignment(
    course_dir, generated, tmp_path
):
    solutions = course_dir / "problemsets" / "hw1" / "solutions"
    other = tmp_path / "cnnlab.toml"  # the same assignment with another seed
    other.write_text(textwrap.dedent(COURSE).replace("seed = 101", "seed = 102"))
    out = tmp_path / "other.json"
    cnnlab(
        "grade",
        str(solutions),
        "--course",
        str(other),
        "--assignment",
        "hw1",
        "--json",
        str(out),
        code=1,
    )
    results = {e["name"]: e for e in json.loads(out.read_text())["exercises"]}
    assert results["conv_output_size"]["status"] == "passed"
    assert results["q2_output_size"]["status"] == "failed"  # seed 102's numbers, not 101's
    # an explicit --seed draws other check cases but the questions stay the assignment's
    doc = _grade(course_dir, "hw1", solutions, "--seed", "7")
    assert doc["score"] == doc["max_score"] and doc["seed"] is None  # hidden: the course names it


def test_a_per_student_variant_is_generated_and_graded_with_the_students_seed(course_dir):
    cnnlab("generate", "--assignment", "hw3", "--student", "alice", "--no-notebooks")
    variant = course_dir / "students" / "hw3" / "alice" / "problemset"
    assert "cnnlab generate --student alice" in (variant / "exercises" / "questions.py").read_text()
    doc = _grade(course_dir, "hw3", variant / "solutions", "--student", "alice")
    assert doc["score"] == doc["max_score"] == 2.0 and doc["seed"] is None
    doc = _grade(course_dir, "hw3", variant / "solutions", "--student", "bob")
    results = {e["name"]: e["status"] for e in doc["exercises"]}
    assert results == {"dense_params": "passed", "q7_dense_params": "failed"}


def _submissions(course_dir, name: str) -> Path:
    subs = course_dir / "submissions" / name
    shutil.copytree(course_dir / "problemsets" / name / "solutions", subs / "alice")
    shutil.copytree(course_dir / "problemsets" / name / "exercises", subs / "bob")
    return subs


@pytest.mark.parametrize("name", ["hw1", "hw2", "hw3"])
def test_batch_grades_each_assignment_into_its_own_gradebook(course_dir, generated, name):
    exercises, _, total = EXPECTED[name]
    subs = _submissions(course_dir, name)
    cnnlab("batch", str(subs), "--assignment", name)
    book = course_dir / "gradebook" / name
    rows = {r["student"]: r for r in csv.DictReader((book / "grades.csv").open())}
    assert set(rows) == {"alice", "bob"}
    assert {r["assignment"] for r in rows.values()} == {name}
    columns = set(next(iter(rows.values())))
    assert exercises <= columns
    assert not ({"conv_output_size", "maxpool2d_backward", "dense_params"} - exercises) & columns
    assert float(rows["alice"]["max_total"]) == total
    if name == "hw3":  # per-student variants: each student's own seed (and full marks for
        # alice only on the coding exercise: her questions are the shared problem set's)
        for student in ("alice", "bob"):
            assert int(rows[student]["seed"]) == seeds.derive_seed(SECRET, student, "hw3")
        assert float(rows["alice"]["dense_params"]) == 1
    else:  # one problem set for everyone: the assignment's seed
        assert {int(r["seed"]) for r in rows.values()} == {problem_seeds(course_dir)[name]}
        assert float(rows["alice"]["total"]) == total
    assert float(rows["bob"]["total"]) == 0


def test_the_gradescope_export_of_an_assignment_carries_its_settings(course_dir, tmp_path):
    fake_wheel = tmp_path / "cnnlab-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(fake_wheel, "w") as whl:
        for name in (
            "grader/engine.py",
            "grader/sandbox/runner.py",
            "grader/exercises/__init__.py",
        ):
            whl.writestr(name, "")
    cnnlab("export", "gradescope", "--assignment", "hw1", "--wheel", str(fake_wheel))
    with zipfile.ZipFile(course_dir / "autograder" / "hw1.zip") as zf:
        config = json.loads(zf.read("cnnlab_autograder.json"))
        names = zf.namelist()
    assert config["assignment"] == "hw1" and config["seed"] == 101
    assert set(config["exercises"]) == EXPECTED["hw1"][0]
    assert config["view"]["points"] == {"conv_output_size": 5.0}
    assert "course_secret" not in names  # one seed for everyone: no secret shipped
    cnnlab("export", "gradescope", "--assignment", "hw3", "--wheel", str(fake_wheel))
    with zipfile.ZipFile(course_dir / "autograder" / "hw3.zip") as zf:
        config = json.loads(zf.read("cnnlab_autograder.json"))
        assert zf.read("course_secret").decode() == SECRET  # per-student seeds
    assert config["seed"] is None and config["assignment"] == "hw3"


def test_the_autograder_grades_with_the_assignments_points_and_time_limits(
    course_dir, generated, tmp_path
):
    from grader.classroom import gradescope

    hw1 = load_course(course_dir / "cnnlab.toml").assignments["hw1"]
    config = gradescope.AutograderConfig(
        assignment="hw1", exercises=("conv_output_size",), seed=101, view=hw1.view().to_json()
    )
    assert gradescope.AutograderConfig.from_json(config.to_json()) == config
    root = tmp_path / "autograder"
    (root / "submission").mkdir(parents=True)
    shutil.copy(course_dir / "problemsets" / "hw1" / "solutions" / "shapes.py", root / "submission")
    code, stderr = gradescope._grade_once(root, config, 101, 101, tmp_path)
    assert code == 0, stderr
    (result,) = json.loads((tmp_path / "result.json").read_text())["exercises"]
    assert result["max_score"] == result["score"] == 5.0  # the course's points, not the spec's 2
