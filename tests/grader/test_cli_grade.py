"""`cnnlab grade` end to end: CliRunner for output and files, a real subprocess for exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest
from click.testing import CliRunner
from grading_support import MISTAKES, PLAIN_LOOPS, build_mistake_submission, write_stubs

from grader.cli import main

FEW = ["-e", "conv_output_size", "-e", "dense_params"]


def _invoke(*args):
    return CliRunner().invoke(main, ["grade", *args], catch_exceptions=False)


def test_passing_submission_table_seed_and_reports(tmp_path):
    out = tmp_path / "deep" / "dir"
    result = _invoke(
        str(PLAIN_LOOPS),
        *FEW,
        "--seed",
        "12",
        "--json",
        str(out / "r.json"),
        "--gradescope",
        str(out / "gs.json"),
        "--junit",
        str(out / "j.xml"),
    )
    assert result.exit_code == 0, result.output
    assert "conv_output_size" in result.output and "passed" in result.output
    assert f"repeat with: cnnlab grade {PLAIN_LOOPS} --seed 12" in result.output
    doc = json.loads((out / "r.json").read_text())
    assert doc["seed"] == 12 and [e["status"] for e in doc["exercises"]] == ["passed", "passed"]
    assert doc["score"] == doc["max_score"] == 3
    gs = json.loads((out / "gs.json").read_text())
    assert [t["status"] for t in gs["tests"]] == ["passed", "passed"]
    assert len(ET.parse(out / "j.xml").getroot().find("testsuite").findall("testcase")) == 2


def test_without_seed_a_fresh_one_is_printed(tmp_path):
    seeds = set()
    for _ in range(2):
        result = _invoke(str(PLAIN_LOOPS), "-e", "dense_params", "--json", str(tmp_path / "r.json"))
        assert result.exit_code == 0
        seed = json.loads((tmp_path / "r.json").read_text())["seed"]
        assert f"--seed {seed}" in result.output
        seeds.add(seed)
    assert len(seeds) == 2


def test_mistake_submission_exits_1_and_names_the_mistake(tmp_path):
    folder = build_mistake_submission(
        tmp_path, "conv_output_size", MISTAKES / "conv_output_size__ceil_instead_of_floor.py"
    )
    result = _invoke(str(folder), *FEW, "--seed", "3", "--json", str(tmp_path / "r.json"))
    assert result.exit_code == 1
    doc = json.loads((tmp_path / "r.json").read_text())
    first = doc["exercises"][0]
    assert first["status"] == "failed" and first["mistake"] == "ceil_instead_of_floor"
    assert "ceil instead of floor" in first["feedback"]


def test_unfilled_stubs_are_not_implemented(tmp_path):
    stubs = write_stubs(tmp_path / "stubs")
    result = _invoke(str(stubs), *FEW, "--seed", "1", "--json", str(tmp_path / "r.json"))
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    doc = json.loads((tmp_path / "r.json").read_text())
    assert {e["status"] for e in doc["exercises"]} == {"not_implemented"}
    assert "Exercise 1.1: conv_output_size" in doc["exercises"][0]["feedback"]


def test_the_layers_solution_graded_alone_has_full_marks(tmp_path):
    """Its DenseCache (a NamedTuple the stub provides) is not a misspelt DenseBlock: the
    architectures' exercises are left out, not scored 0 with "rename yours"."""
    from pathlib import Path

    solution = Path(__file__).resolve().parents[2] / "solutions" / "layers.py"
    result = _invoke(str(solution), "--seed", "5", "--json", str(tmp_path / "r.json"))
    doc = json.loads((tmp_path / "r.json").read_text())
    assert result.exit_code == 0, result.output
    assert "DenseBlock" not in {e["name"] for e in doc["exercises"]}
    assert doc["score"] == doc["max_score"] > 0


def test_a_backward_whose_forward_is_a_stub_says_to_finish_the_forward(tmp_path):
    """The backward is graded on the cache of the student's own forward: while the forward is
    the stub, the backward's row says that, not the forward's NotImplementedError alone."""
    stubs = write_stubs(tmp_path / "stubs")
    (tmp_path / "pooling.py").write_text((stubs / "pooling.py").read_text())
    args = [str(tmp_path / "pooling.py"), "-e", "maxpool2d_backward", "--seed", "1"]
    result = _invoke(*args, "--json", str(tmp_path / "r.json"))
    (row,) = json.loads((tmp_path / "r.json").read_text())["exercises"]
    assert row["status"] == "not_implemented", result.output
    assert "maxpool2d_backward uses your maxpool2d_forward to make its cache" in row["feedback"]
    assert row["feedback"].endswith("finish maxpool2d_forward first")


@pytest.mark.parametrize(
    "args,needle",
    [
        (["does/not/exist"], "no such"),
        ([str(PLAIN_LOOPS), "-e", "maxpool2d_backwrd"], "Did you mean 'maxpool2d_backward'"),
        ([str(PLAIN_LOOPS), "-e", "q1"], "Did you mean 'q1_conv_layer_params'?"),  # a prefix
        ([str(PLAIN_LOOPS), "-e", "Q3"], "Did you mean 'q3_dilated_output_size'?"),
        ([str(PLAIN_LOOPS), "-e", "pool"], "Did you mean 'maxpool2d_forward', 'maxpool2d_b"),
        ([str(PLAIN_LOOPS), "-e", "3.1"], "Exercise 3.1 is 'conv2d_forward'"),
        ([str(PLAIN_LOOPS), "-e", "layers"], "'layers' is a topic; its exercises are"),
        ([str(PLAIN_LOOPS), "--seed", "-4"], "--seed"),
        ([str(PLAIN_LOOPS), "--json", "/"], "is a folder"),
    ],
)
def test_bad_invocations_exit_2_with_a_clear_message(args, needle):
    result = CliRunner().invoke(main, ["grade", *args])
    assert result.exit_code == 2, result.output
    assert needle in result.output
    assert "Traceback" not in result.output


def test_notebook_that_is_not_json_exits_2(tmp_path):
    nb = tmp_path / "hw.ipynb"
    nb.write_text("{ this is not json")
    result = CliRunner().invoke(main, ["grade", str(nb)])
    assert result.exit_code == 2
    assert "hw.ipynb" in result.output and "Traceback" not in result.output


def test_existing_report_is_not_clobbered_when_grading_fails_to_start(tmp_path):
    report = tmp_path / "r.json"
    report.write_text("previous")
    result = CliRunner().invoke(main, ["grade", "missing/", "--json", str(report)])
    assert result.exit_code == 2
    assert report.read_text() == "previous"


@pytest.mark.slow
def test_exit_codes_in_a_real_subprocess(tmp_path):
    def run(*args):
        return subprocess.run(
            [sys.executable, "-c", "from grader.cli import main; main()", "grade", *args],
            capture_output=True,
            text=True,
            timeout=120,
        )

    ok = run(str(PLAIN_LOOPS), "-e", "dense_params", "--seed", "5")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "dense_params" in ok.stdout and "passed" in ok.stdout
    folder = build_mistake_submission(
        tmp_path, "dense_params", MISTAKES / "dense_params__bias_forgotten.py"
    )
    failed = run(str(folder), "-e", "dense_params", "--seed", "5")
    assert failed.returncode == 1 and "bias forgotten" in failed.stdout
    bad = run(str(tmp_path / "nope"), "-e", "dense_params")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "no such" in bad.stderr


# -- which seed grades the numeric questions (issue 10.5-10.7) -----------------------------

Q = ["-e", "q1_conv_layer_params", "-e", "q2_output_size", "-e", "q7_dense_params"]


def _questions(tmp_path, seed, *, header=True, name="sub"):
    from grader.exercises import questions
    from grader.problemset.generate import render_topic

    folder = tmp_path / name
    folder.mkdir()
    text = render_topic("questions", questions.QUESTIONS, seed=seed, solution=True)
    if not header:
        text = "\n".join(ln for ln in text.splitlines() if "cnnlab generate" not in ln) + "\n"
    (folder / "questions.py").write_text(text)
    return folder


def _statuses(path):
    return {e["name"]: e["status"] for e in json.loads(path.read_text())["exercises"]}


def test_an_explicit_seed_beats_the_header_of_questions_py(tmp_path):
    # a classmate's (or an edited) questions.py names seed 41; the grader asked for 7
    folder = _questions(tmp_path, 41)
    out = tmp_path / "r.json"
    result = _invoke(str(folder), *Q, "--seed", "7", "--json", str(out))
    assert result.exit_code == 1, result.output
    assert set(_statuses(out).values()) == {"failed"}  # graded against problem set 7
    result = _invoke(str(folder), *Q, "--seed", "7", "--problem-seed", "41", "--json", str(out))
    assert result.exit_code == 0 and set(_statuses(out).values()) == {"passed"}


def test_without_any_seed_the_header_is_a_self_check_hint_and_the_output_says_so(tmp_path):
    folder = _questions(tmp_path, 41)
    out = tmp_path / "r.json"
    result = _invoke(str(folder), *Q, "--json", str(out))
    assert result.exit_code == 0, result.output
    assert "self-check only" in result.output
    doc = json.loads(out.read_text())
    assert set(_statuses(out).values()) == {"passed"} and "self-check" in doc["notes"][0]
    # repeating the run repeats it exactly, questions included
    assert f"--seed {doc['seed']} --problem-seed 41" in " ".join(result.output.split())


def test_questions_without_a_known_problem_set_are_not_failed_but_reported(tmp_path):
    folder = _questions(tmp_path, 41, header=False)
    (folder / "shapes.py").write_text((PLAIN_LOOPS / "shapes.py").read_text())
    out = tmp_path / "r.json"
    result = _invoke(str(folder), *Q, "-e", "conv_output_size", "--json", str(out))
    assert result.exit_code == 0, result.output  # what was graded passed
    assert "not graded" in result.output and "expected" not in result.output
    doc = json.loads(out.read_text())
    assert [e["name"] for e in doc["exercises"]] == ["conv_output_size"]
    assert sorted(doc["not_graded"]) == sorted(Q[1::2])
    only = _invoke(str(folder), *Q)  # nothing else to grade: a clear error, exit 2
    assert only.exit_code == 2 and "--problem-seed" in only.output


def test_a_students_derived_seed_is_never_shown(tmp_path, monkeypatch):
    from grader import seeds

    monkeypatch.setenv("CNNLAB_COURSE_SECRET", "s3cret-for-the-test")
    derived = seeds.derive_seed("s3cret-for-the-test", "s9")
    folder = _questions(tmp_path, derived)  # s9's own problem set (header names the seed)
    out = tmp_path / "r"
    result = _invoke(
        str(folder),
        *Q,
        "--student",
        " s9 ",
        "--json",
        f"{out}.json",
        "--junit",
        f"{out}.xml",
        "--gradescope",
        f"{out}.gs.json",
    )
    assert result.exit_code == 0, result.output
    assert "--student s9" in result.output
    for text in (result.output, *(p.read_text() for p in tmp_path.glob("r.*"))):
        assert str(derived) not in text
    assert json.loads((tmp_path / "r.json").read_text())["seed"] is None


def test_a_hidden_problem_sets_answers_are_not_in_the_feedback(tmp_path, monkeypatch):
    """Red-team F4: graded with the student's hidden problem seed, a wrong answer's feedback
    says it is wrong without the answer (which a resubmission could copy); with a seed the
    student chose, the expected value is shown as before (the control)."""
    from grader import engine, registry

    folder = _questions(tmp_path, 41)
    expected = {
        s.name: engine.prepare(s, 1234567).cases[0].expected["answer"]
        for s in registry.select(list(Q[1::2]))
    }
    monkeypatch.setenv("CNNLAB_ASSIGNED_SEED", "1234567")
    result = _invoke(str(folder), *Q, "--json", str(tmp_path / "r.json"))
    assert result.exit_code == 1
    text = result.output + (tmp_path / "r.json").read_text()
    assert "the expected value is not shown" in text
    for name, answer in expected.items():
        assert f"expected {answer}" not in text, name
    monkeypatch.delenv("CNNLAB_ASSIGNED_SEED", raising=False)  # grade pops it
    shown = _invoke(str(folder), *Q, "--problem-seed", "1234567")
    assert shown.exit_code == 1 and "expected " in shown.output


def test_the_autograders_assigned_seed_beats_the_header_and_is_not_shown(tmp_path, monkeypatch):
    folder = _questions(tmp_path, 41)
    monkeypatch.setenv("CNNLAB_ASSIGNED_SEED", "1234567")
    result = _invoke(str(folder), *Q, "--json", str(tmp_path / "r.json"))
    assert result.exit_code == 1  # graded against the assigned problem set, not the header's
    assert "1234567" not in result.output and "not shown" in result.output
