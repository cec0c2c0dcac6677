"""The real nbgrader pipeline on a generated notebook, offline: generate_assignment, student
copies (filled with the solutions / unfilled / one known mistake), autograde, the gradebook's
scores and the feedback. The check cells grade in cnnlab's sandbox, not in the kernel."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from grader import registry
from grader.problemset import nbgrader_bridge
from grader.problemset.generate import render_notebook
from grader.seeds import DEFAULT_SEED

TOPIC = "params"
ASSIGNMENT = "cnn"


def _nbgrader(course: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(course / ".jupyter")}
    done = subprocess.run(
        [sys.executable, "-m", "nbgrader", *args],
        cwd=course,
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert done.returncode == 0, f"nbgrader {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done


def _strip_markers(source: str) -> str:
    return "\n".join(line for line in source.split("\n") if "### " not in line)


def _student_copy(released: dict, source: dict, *, mistake: bool = False) -> dict:
    """The released notebook with each answer cell filled the way a student would."""
    answers = {
        c["metadata"]["nbgrader"]["grade_id"]: _strip_markers(c["source"])
        for c in source["cells"]
        if c["metadata"].get("nbgrader", {}).get("solution")
    }
    copy = json.loads(json.dumps(released))
    for cell in copy["cells"]:
        meta = cell["metadata"].get("nbgrader", {})
        if meta.get("solution"):
            cell["source"] = answers[meta["grade_id"]]
            if mistake and meta["grade_id"] == "dense_params":
                body = cell["source"].split('"""')
                cell["source"] = (
                    '"""'.join(body[:-1]) + '"""\n    return in_features * out_features\n'
                )
    return copy


@pytest.mark.slow
def test_nbgrader_pipeline_scores_solution_blank_and_known_mistake(tmp_path):
    pytest.importorskip("nbgrader")
    course = tmp_path / "course"
    (course / "source" / ASSIGNMENT).mkdir(parents=True)
    (course / "nbgrader_config.py").write_text(
        "c = get_config()\n"
        f"c.CourseDirectory.root = {str(course)!r}\n"
        f"c.CourseDirectory.course_id = {ASSIGNMENT!r}\n"
        "c.Execute.timeout = 600\n"
    )
    # two of the topic's exercises keep the run short: 3 students x 2 sandboxed checks
    specs = [registry.get("conv2d_params"), registry.get("dense_params")]
    source_text = render_notebook(TOPIC, specs, seed=DEFAULT_SEED, solution=True)
    (course / "source" / ASSIGNMENT / f"{TOPIC}.ipynb").write_text(source_text)

    _nbgrader(course, "generate_assignment", ASSIGNMENT, "--force")
    released_path = course / "release" / ASSIGNMENT / f"{TOPIC}.ipynb"
    released = json.loads(released_path.read_text())
    released_text = released_path.read_text()
    assert "BEGIN SOLUTION" not in released_text and f"seed = {DEFAULT_SEED}" not in released_text

    source = json.loads(source_text)
    copies = {
        "alice": _student_copy(released, source),
        "bob": released,
        "carol": _student_copy(released, source, mistake=True),
    }
    for student, notebook in copies.items():
        folder = course / "submitted" / student / ASSIGNMENT
        folder.mkdir(parents=True)
        (folder / f"{TOPIC}.ipynb").write_text(json.dumps(notebook))
        (folder / "timestamp.txt").write_text("2026-01-01 10:00:00.000000 UTC")

    _nbgrader(course, "autograde", ASSIGNMENT, "--create", "--force")
    from nbgrader.api import Gradebook

    total = sum(s.points for s in specs)
    dense_points = registry.get("dense_params").points
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        scores = {
            student: gradebook.find_submission(ASSIGNMENT, student).score for student in copies
        }
        max_score = gradebook.find_assignment(ASSIGNMENT).max_score
    assert max_score == total
    assert scores == {"alice": total, "bob": 0, "carol": total - dense_points}

    _nbgrader(course, "generate_feedback", ASSIGNMENT, "--force")
    feedback = (course / "feedback" / "carol" / ASSIGNMENT / f"{TOPIC}.html").read_text()
    message = registry.get("dense_params").mistakes[0].message
    assert message.split(":")[0] in feedback  # "bias forgotten"
    assert re.search(r"every unit has one bias", feedback)
    blank = (course / "feedback" / "bob" / ASSIGNMENT / f"{TOPIC}.html").read_text()
    assert "not_implemented" in blank


def test_answer_cells_skip_checks_and_scratch_cells():
    notebook = {
        "cells": [
            {"cell_type": "code", "metadata": {"nbgrader": {"grade_id": "setup"}}, "source": "a"},
            {"cell_type": "code", "metadata": {}, "source": "scratch"},
            {"cell_type": "code", "metadata": {"nbgrader": {"solution": True}}, "source": "b"},
            {"cell_type": "code", "metadata": {"nbgrader": {"grade": True}}, "source": "check"},
            {"cell_type": "markdown", "metadata": {"nbgrader": {"solution": True}}, "source": "x"},
        ]
    }
    assert [c["source"] for c in nbgrader_bridge.answer_cells(notebook)] == ["a", "b"]


def test_check_without_the_notebook_file_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(nbgrader_bridge.CheckError, match="run it from the folder"):
        nbgrader_bridge.check("conv2d_params", notebook="params.ipynb")


@pytest.mark.slow
def test_check_grades_outside_the_kernel(tmp_path, monkeypatch):
    """Patching numpy's comparison in the calling process does not make a wrong answer pass:
    the comparison happens in another process."""
    import numpy as np

    specs = [registry.get("conv2d_params")]
    text = render_notebook(TOPIC, specs, seed=DEFAULT_SEED, solution=False)
    (tmp_path / f"{TOPIC}.ipynb").write_text(text)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(np, "allclose", lambda *a, **k: True)
    monkeypatch.setattr(np, "array_equal", lambda *a, **k: True)
    with pytest.raises(nbgrader_bridge.CheckFailed, match="not_implemented"):
        nbgrader_bridge.check("conv2d_params", notebook=f"{TOPIC}.ipynb", seed=5)
    solved = render_notebook(TOPIC, specs, seed=DEFAULT_SEED, solution=True)
    doc = json.loads(solved)
    for cell in doc["cells"]:
        cell["source"] = _strip_markers(cell["source"])
    (tmp_path / f"{TOPIC}.ipynb").write_text(json.dumps(doc))
    nbgrader_bridge.check("conv2d_params", notebook=f"{TOPIC}.ipynb", seed=5)


def test_source_notebook_hides_the_grading_seed_in_hidden_tests():
    specs = [s for s in registry.all_specs() if s.topic == TOPIC]
    doc = json.loads(render_notebook(TOPIC, specs, seed=DEFAULT_SEED, solution=True))
    tests = [c for c in doc["cells"] if c["metadata"]["nbgrader"]["grade"]]
    assert all(f"seed = {DEFAULT_SEED}" in c["source"] for c in tests)
    assert all("### BEGIN HIDDEN TESTS" in c["source"] for c in tests)
