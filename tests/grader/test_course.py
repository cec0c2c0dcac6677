"""Course files (grader/course.py) and `cnnlab init`: parsing, every kind of error with its line
and a "did you mean", the course secret's place, the ignore rules."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from grader import course as courselib
from grader import registry, seeds
from grader.cli import main
from grader.course import CourseFileError, init_course, load_course


@pytest.fixture(autouse=True)
def config_home(tmp_path, monkeypatch):
    """Keep every course secret these tests make inside tmp_path."""
    home = tmp_path / "config"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home))
    monkeypatch.delenv(seeds.SECRET_ENV, raising=False)
    monkeypatch.delenv(seeds.SECRET_FILE_ENV, raising=False)
    return home


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cnnlab.toml"
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def issues(path: Path) -> list[tuple[int, str]]:
    with pytest.raises(CourseFileError) as caught:
        load_course(path)
    return [(i.line, i.message) for i in caught.value.issues]


GOOD = """
[course]
name = "CNN"
id = "cnn-test"

[assignments.hw1]
title = "Sizes"
topics = ["shapes"]
exercises = ["conv2d_params", "q2_output_size"]
seed = 11
points = { conv2d_params = 5 }
time_limits_s = { conv2d_params = 4.5 }

[assignments.hw2]
topics = ["pooling"]
time_limit_s = 7
per_student = true
"""


def test_a_course_file_selects_exercises_by_topic_and_name_in_registry_order(tmp_path):
    course = load_course(write(tmp_path, GOOD))
    hw1, hw2 = course.assignments.values()
    assert hw1.exercises == ("conv_output_size", "conv2d_params", "q2_output_size")
    assert (hw1.seed, hw1.per_student, hw1.title) == (11, False, "Sizes")
    assert hw1.points == {"conv2d_params": 5.0}
    assert hw1.time_limits_s == {"conv2d_params": 4.5}
    assert hw2.exercises == ("maxpool2d_forward", "maxpool2d_backward")
    assert hw2.time_limits_s == dict.fromkeys(hw2.exercises, 7.0)
    assert (hw2.seed, hw2.per_student, hw2.title) == (None, True, "hw2")
    assert course.secret_file == courselib.config_dir() / "secrets" / "cnn-test.secret"


def test_the_view_of_an_assignment_is_what_the_registry_returns(tmp_path):
    hw1 = load_course(write(tmp_path, GOOD)).assignments["hw1"]
    with registry.use_view(hw1.view()):
        specs = registry.all_specs()
        assert [s.name for s in specs] == list(hw1.exercises)
        params = registry.get("conv2d_params")
        assert (params.points, params.timeout_s) == (5.0, 4.5)
        assert os.environ[registry.VIEW_ENV]  # workers and child processes inherit it
        with pytest.raises(Exception, match="'dense_params' is not in assignment 'hw1'"):
            registry.select(["dense_params"])
        with pytest.raises(Exception, match="Did you mean 'conv2d_params'"):
            registry.select(["conv2d_param"])
    assert registry.VIEW_ENV not in os.environ
    assert registry.get("conv2d_params").points == 1


@pytest.mark.parametrize(
    "text, expected",
    [
        (
            """
            [assignments.hw1]
            topics = ["shapes"]
            seed = 3
            point = { conv_output_size = 2 }
            """,
            [(4, "unknown key 'point' in [assignments.hw1]. Did you mean 'points'")],
        ),
        (
            """
            [course]
            nmae = "x"
            [assignments.hw1]
            topics = ["shapes"]
            """,
            [(2, "unknown key 'nmae' in [course]. Did you mean 'name'")],
        ),
        (
            """
            [assignments.hw1]
            exercises = [
                "conv_output_size",
                "maxpool_backward",
            ]
            """,
            [
                (
                    4,
                    "unknown exercise 'maxpool_backward' in assignments.hw1.exercises. Did you "
                    "mean 'maxpool2d_backward'",
                )
            ],
        ),
        (
            """
            [assignments.hw1]
            topics = ["shapes", "poolnig"]
            """,
            [(2, "unknown topic 'poolnig' in assignments.hw1.topics. Did you mean 'pooling'")],
        ),
        (
            """
            [assignments.hw1]
            topics = ["shapes"]

            [assignments.hw1.points]
            conv_output_sze = 3
            """,
            [
                (
                    5,
                    "unknown exercise 'conv_output_sze' in assignments.hw1.points. Did you mean "
                    "'conv_output_size'",
                )
            ],
        ),
        (
            """
            [assignments.hw1]
            topics = ["shapes"]
            points = { dense_params = 3 }
            """,
            [(3, "names 'dense_params', which assignment 'hw1' does not include")],
        ),
        (
            """
            [assignments.hw1]
            topics = ["shapes"]
            seed = 5

            [assignments.hw2]
            topics = ["params"]
            seed = 5
            """,
            [(7, "assignment 'hw2' has the same seed as 'hw1' (5)")],
        ),
        (
            """
            [assignments.hw1]
            topics = ["shapes"]
            seed = -1
            time_limit_s = 0
            per_student = "yes"
            points = { conv_output_size = "20" }
            """,
            [
                (3, "assignments.hw1.seed must be a whole number between 0 and"),
                (4, "assignments.hw1.time_limit_s (seconds) must be a positive number (at most"),
                (5, "assignments.hw1.per_student must be true or false"),
                (6, "must be a positive number, got '20' (a string: drop the quotes)"),
            ],
        ),
        (
            """
            [assignments."hw 1"]
            topics = ["shapes"]
            """,
            [(1, "assignment name 'hw 1' must start with a letter or digit")],
        ),
        (
            """
            [assignments.hw1]
            title = "nothing"
            """,
            [(1, "assignment 'hw1' selects no exercise")],
        ),
        ("[course]\nname = 'x'\n", [(0, "no assignments: add one")]),
    ],
    ids=[
        "unknown-assignment-key",
        "unknown-course-key",
        "unknown-exercise-multiline",
        "unknown-topic",
        "unknown-exercise-in-points-table",
        "points-outside-assignment",
        "shared-seed",
        "bad-values",
        "bad-assignment-name",
        "empty-assignment",
        "no-assignments",
    ],
)
def test_every_problem_is_reported_with_its_line(tmp_path, text, expected):
    found = issues(write(tmp_path, text))
    assert len(found) == len(expected), found
    for (line, message), (want_line, want) in zip(found, expected, strict=True):
        assert line == want_line and want in message, (line, message)


def test_a_toml_syntax_error_names_the_line_and_column(tmp_path):
    path = write(tmp_path, '[assignments.hw1]\ntopics = ["shapes"\nseed = 3\n')
    with pytest.raises(CourseFileError) as caught:
        load_course(path)
    message = str(caught.value)
    assert "cnnlab.toml:3: column" in message and "not valid TOML" in message
    assert "seed = 3" in message  # the offending line is shown


def test_course_file_errors_are_exit_2_with_the_file_and_line(tmp_path, monkeypatch):
    write(tmp_path, '[assignments.hw1]\nexercises = ["conv2d_parms"]\n')
    monkeypatch.chdir(tmp_path)
    for args in (["list"], ["generate", "--no-notebooks"], ["release"], ["grade"]):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 2, (args, result.output)
        assert "cnnlab.toml:2: unknown exercise 'conv2d_parms'" in result.output
        assert "Did you mean 'conv2d_params'" in result.output
        assert "Traceback" not in result.output
    assert not (tmp_path / "problemsets").exists() and not (tmp_path / "release").exists()


def test_an_unknown_or_missing_assignment_name_is_exit_2(tmp_path, monkeypatch):
    write(tmp_path, GOOD)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["list", "--assignment", "hw3"])
    assert result.exit_code == 2
    assert "has no assignment 'hw3'. Did you mean 'hw2', 'hw1'?" in result.output
    result = CliRunner().invoke(main, ["generate"])
    assert result.exit_code == 2
    assert "has 2 assignments (hw1, hw2): choose one with --assignment NAME" in result.output


def test_course_is_found_in_a_parent_folder_or_given_explicitly(tmp_path, monkeypatch):
    path = write(tmp_path, GOOD)
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    assert courselib.find_course_file(deep) == path
    monkeypatch.chdir(deep)
    result = CliRunner().invoke(main, ["list", "--assignment", "hw1"])
    assert result.exit_code == 0, result.output
    assert "assignment hw1: Sizes" in result.output
    assert "conv2d_params" in result.output and "5 pts 4.5 s" in result.output
    assert "dense_params" not in result.output
    elsewhere = tmp_path.parent / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    result = CliRunner().invoke(main, ["list", "--course", str(path), "--assignment", "hw2"])
    assert result.exit_code == 0 and "maxpool2d_backward" in result.output
    result = CliRunner().invoke(main, ["list", "--course", str(elsewhere)])
    assert result.exit_code == 2 and "no course file there" in result.output
    result = CliRunner().invoke(main, ["list", "--assignment", "hw1"])
    assert result.exit_code == 2 and "no course file (cnnlab.toml)" in result.output


def test_list_in_a_course_shows_its_assignments(tmp_path, monkeypatch):
    write(tmp_path, GOOD)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["list"])
    assert result.exit_code == 0, result.output
    assert "27 exercises" in result.output
    assert "hw1" in result.output and "seed 11, one problem set" in result.output
    assert "seed from the course secret, per-student variants" in result.output


# --------------------------------------------------------------------------- seeds and secret


def test_problem_seeds_are_fixed_or_derived_from_the_secret_and_differ(tmp_path):
    course = load_course(write(tmp_path, GOOD))
    hw1, hw2 = course.assignments.values()
    assert course.problem_seed(hw1) == 11  # no secret needed
    with pytest.raises(Exception, match="no course secret: .*cnnlab.toml keeps it in"):
        course.problem_seed(hw2)
    course.secret_file.parent.mkdir(parents=True)
    course.secret_file.write_text("s3cret\n")
    derived = course.problem_seed(hw2)
    assert derived == seeds.derive_problem_seed(b"s3cret", "hw2") != 11
    assert derived != seeds.derive_problem_seed(b"s3cret", "hw1")
    assert derived != seeds.derive_problem_seed(b"other", "hw2")
    # a student's seed never depends on the problem-set seed, only on the secret and name
    assert seeds.derive_seed(b"s3cret", "s1", "hw2") != derived


def test_the_secret_comes_from_the_flag_the_variable_the_course_file_then_the_value(
    tmp_path, monkeypatch
):
    course = load_course(write(tmp_path, GOOD))
    course.secret_file.parent.mkdir(parents=True)
    course.secret_file.write_text("from-course\n")
    flag = tmp_path / "flag.secret"
    flag.write_text("from-flag\n")
    env_file = tmp_path / "env.secret"
    env_file.write_text("from-env-file\n")
    monkeypatch.setenv(seeds.SECRET_ENV, "from-env-value")
    assert course.secret(flag) == b"from-flag"
    assert course.secret() == b"from-course"
    monkeypatch.setenv(seeds.SECRET_FILE_ENV, str(env_file))
    assert course.secret() == b"from-env-file"
    monkeypatch.delenv(seeds.SECRET_FILE_ENV)
    course.secret_file.unlink()
    assert course.secret() == b"from-env-value"


def test_out_dirs_are_per_assignment_and_per_student(tmp_path):
    course = load_course(write(tmp_path, GOOD))
    hw1, hw2 = course.assignments.values()
    outs = {course.out_dir(k, a) for k in courselib.OUT_DIRS for a in (hw1, hw2)}
    assert len(outs) == 8
    assert course.out_dir("generate", hw1) == tmp_path / "problemsets" / "hw1"
    assert course.out_dir("release", hw1, "../s 1") == (
        tmp_path / "students" / "hw1" / "_s_1" / "release"
    )


# --------------------------------------------------------------------------- init


def test_init_writes_a_course_that_loads_with_distinct_seeds(tmp_path, config_home):
    report = init_course(tmp_path / "cnn", name="CNN 2026")
    course = load_course(report.course_file)
    assert list(course.assignments) == ["hw1", "hw2", "hw3"]
    fixed = [a.seed for a in course.assignments.values()]
    assert None not in fixed and len(set(fixed)) == 3
    assert report.secret_created and report.warnings == ()
    assert report.secret_file == course.secret_file
    assert report.secret_file.is_relative_to(config_home / "cnnlab" / "secrets")
    assert stat.S_IMODE(report.secret_file.stat().st_mode) == 0o600
    assert len(report.secret_file.read_text().strip()) == 64
    text = report.course_file.read_text()
    assert report.secret_file.read_text().strip() not in text
    assert "per-student variant" in text  # says why the seeds are not a student's secret


def test_init_refuses_an_existing_course_and_keeps_an_existing_secret(tmp_path):
    secret = tmp_path / "elsewhere" / "my.secret"
    secret.parent.mkdir()
    secret.write_text("keep me\n")
    report = init_course(tmp_path / "cnn", secret_file=secret)
    assert not report.secret_created and secret.read_text() == "keep me\n"
    assert load_course(report.course_file).secret_file == secret
    before = report.course_file.read_text()
    with pytest.raises(Exception, match="exists already: this folder is a course"):
        init_course(tmp_path / "cnn")
    assert report.course_file.read_text() == before


def test_init_falls_back_to_an_ignored_secret_inside_with_a_warning(tmp_path, monkeypatch):
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("")  # the config "folder" is a file: the secret cannot go there
    monkeypatch.setenv("XDG_CONFIG_HOME", str(blocked))
    result = CliRunner().invoke(main, ["init", str(tmp_path / "cnn")])
    assert result.exit_code == 0, result.output
    inside = tmp_path / "cnn" / ".cnnlab" / "secret"
    assert inside.is_file()
    assert "warning: cannot write the course secret" in result.stderr
    assert "inside the course folder" in result.stderr
    course = load_course(tmp_path / "cnn" / "cnnlab.toml")
    assert course.secret_file.resolve() == inside.resolve()


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_the_ignore_rules_cover_everything_secret_bearing(tmp_path, monkeypatch):
    folder = tmp_path / "cnn"
    folder.mkdir()
    subprocess.run(["git", "init", "-q", str(folder)], check=True)
    inside = folder / "keys" / "course.secret"
    init_course(folder, secret_file=inside)
    course = load_course(folder / "cnnlab.toml")
    a = course.assignments["hw1"]
    secret_bearing = [
        inside,
        folder / ".cnnlab" / "secret",
        course.out_dir("generate", a) / "solutions" / "params.py",
        course.out_dir("generate", a, "s1") / "solutions" / "params.py",
        course.out_dir("generate", a, "s1") / "exercises" / "params.py",
        course.out_dir("release", a, "s1") / "README.md",
        folder / "submissions" / "s1" / "params.py",
        course.out_dir("batch", a) / "gradebook.sqlite",
        course.out_dir("batch", a) / "grades.csv",
        course.out_dir("export", a),
    ]
    public = [
        folder / "cnnlab.toml",
        course.out_dir("generate", a) / "exercises" / "params.py",
        course.out_dir("release", a) / "README.md",
    ]
    for path in secret_bearing + public:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    check = subprocess.run(
        ["git", "-C", str(folder), "check-ignore", *map(str, secret_bearing + public)],
        capture_output=True,
        text=True,
    )
    ignored = {Path(line).resolve() for line in check.stdout.split()}
    assert ignored == {p.resolve() for p in secret_bearing}
