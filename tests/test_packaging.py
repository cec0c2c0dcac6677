"""A non-editable install carries everything the package reads at run time."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_ships_checkpoint_templates_and_exercise_specs(tmp_path):
    from grader.classroom.gradescope import build_wheel  # the builder `cnnlab export` uses

    build_wheel(ROOT, tmp_path)  # offline with this environment's setuptools, else isolated
    (wheel,) = tmp_path.glob("cnnlab-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in (
        "cnnref/checkpoints/small_cnn_source.pt",
        "cnnref/checkpoints/small_cnn_source.json",
        "grader/templates/module.py.j2",
        "grader/templates/notebook.j2",
        "grader/templates/questions.py.j2",
        "grader/templates/student_readme.md.j2",
        "grader/exercises/__init__.py",
        "grader/exercises/pooling.py",
        "grader/commands/grade.py",
    ):
        assert required in names, f"{required} missing from {wheel.name}"
    # the console script is declared
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "cnnlab = grader.cli:main" in zipfile.ZipFile(wheel).read(entry).decode()
