"""The exported Gradescope autograder, end to end, as Gradescope runs it: ``cnnlab export
gradescope`` builds the zip (with a wheel of this checkout), its ``setup.sh`` installs torch and
that wheel into a fresh virtual environment (nothing of the checkout on its path), and its
``run_autograder`` grades what students upload against a temporary ``/autograder`` root: one
``.py``, one notebook, nine notebooks, and a nested folder (a GitHub or zip upload) with a
notebook next to a ``utils.py``. Correct work gets full marks, and the output says what was
graded.

Slow (a torch install, about a minute on two idle cores): one environment is built per test
session (the ``autograder`` fixture in ``tests/conftest.py``) and shared by every case and by
``tests/test_wheel_install.py``. pip installs from wherever this machine's pip configuration
points (``pip install torch==2.13.0`` must work offline here).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from wheel_support import EXERCISES, clean_env

ROOT = Path(__file__).resolve().parents[3]
SOLUTIONS = ROOT / "solutions"
NOTEBOOKS = SOLUTIONS / "notebooks"

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("fresh-venv")]


def _one_py(sub: Path) -> str:
    shutil.copy(SOLUTIONS / "pooling.py", sub / "pooling.py")
    return "Graded 1 file: pooling.py"


def _one_notebook(sub: Path) -> str:
    shutil.copy(NOTEBOOKS / "pooling.ipynb", sub / "pooling.ipynb")
    return "Graded 1 file: pooling.ipynb"


def _nine_notebooks(sub: Path) -> str:
    for nb in NOTEBOOKS.glob("*.ipynb"):
        shutil.copy(nb, sub / nb.name)
    assert len(list(sub.glob("*.ipynb"))) == 9
    return "Graded 9 files: architectures.ipynb, layers.ipynb, params.ipynb"


def _nested_with_utils(sub: Path) -> str:
    hw = sub / "cnn-homework-main" / "hw3"
    hw.mkdir(parents=True)
    (sub / "cnn-homework-main" / "README.md").write_text("# my homework\n")
    (sub / "cnn-homework-main" / ".git").mkdir()
    (sub / "cnn-homework-main" / ".git" / "config").write_text("[core]\n")
    shutil.copy(SOLUTIONS / "pooling.py", hw / "utils.py")
    cell = {
        "cell_type": "code",
        "metadata": {},
        "source": "from utils import *  # my functions live in utils.py\n",
        "outputs": [],
        "execution_count": 1,
    }
    nb = {"cells": [cell], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    (hw / "Pooling (1).ipynb").write_text(json.dumps(nb))
    return "Graded 2 files: cnn-homework-main/hw3/Pooling (1).ipynb, cnn-homework-main/hw3/utils.py"


@pytest.mark.parametrize(
    "build",
    [_one_py, _one_notebook, _nine_notebooks, _nested_with_utils],
    ids=["one-py", "one-notebook", "nine-notebooks", "nested-folder"],
)
def test_run_autograder_gives_full_marks_for_correct_work(autograder, tmp_path, build):
    source, python = autograder
    root = tmp_path / "autograder"
    shutil.copytree(source, root / "source")
    submission = root / "submission"
    submission.mkdir()
    graded = build(submission)
    (root / "submission_metadata.json").write_text(
        json.dumps({"users": [{"email": "jane@uni.edu", "sid": "s1", "name": "Jane"}], "id": 1})
    )
    proc = subprocess.run(
        ["bash", str(root / "source" / "run_autograder")],
        cwd=tmp_path,
        env=clean_env(AUTOGRADER_ROOT=str(root), CNNLAB_PYTHON=str(python)),
        capture_output=True,
        text=True,
        timeout=600,
    )
    results = root / "results" / "results.json"
    assert results.is_file(), (proc.stdout + proc.stderr)[-4000:]
    doc = json.loads(results.read_text())
    assert proc.returncode == 0, (doc, proc.stderr[-2000:])
    assert [t["name"] for t in doc["tests"]] == list(EXERCISES)
    assert all(t["score"] == t["max_score"] > 0 for t in doc["tests"]), doc["tests"]
    assert doc["score"] == sum(t["max_score"] for t in doc["tests"])
    assert graded in doc["output"]  # what was graded
