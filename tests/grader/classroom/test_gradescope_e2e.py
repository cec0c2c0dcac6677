"""The exported Gradescope autograder, end to end, as Gradescope runs it: ``cnnlab export
gradescope`` builds the zip (with a wheel of this checkout), its ``setup.sh`` installs torch and
that wheel into a fresh virtual environment (nothing of the checkout on its path), and its
``run_autograder`` grades what students upload against a temporary ``/autograder`` root: one
``.py``, one notebook, nine notebooks, and a nested folder (a GitHub or zip upload) with a
notebook next to a ``utils.py``. Correct work gets full marks, and the output says what was
graded.

Slow (a torch install, about a minute on two idle cores): one environment is built per run and
shared by every case. pip installs from wherever this machine's pip configuration points
(``pip install torch==2.13.0`` must work offline here).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
SOLUTIONS = ROOT / "solutions"
NOTEBOOKS = SOLUTIONS / "notebooks"
EXERCISES = ("maxpool2d_forward", "maxpool2d_backward")
SEED = 2026

pytestmark = pytest.mark.slow


def _clean_env(**extra: str) -> dict[str, str]:
    """The environment Gradescope's container would give: nothing of this checkout or of the
    test's own virtual environment."""
    drop = ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME", "CNNLAB_COURSE_SECRET")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    venv_bin = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p != venv_bin)
    return {**env, **extra}


@pytest.fixture(scope="module")
def autograder(tmp_path_factory):
    """``(source folder, python of the fresh venv)``: the zip exported and set up once."""
    from click.testing import CliRunner

    from grader.cli import main

    base = tmp_path_factory.mktemp("gradescope")
    archive = base / "autograder.zip"  # the export builds the wheel of this checkout itself
    args = ["export", "gradescope", "--seed", str(SEED), "--out", str(archive)]
    for name in EXERCISES:
        args += ["-e", name]
    exported = CliRunner().invoke(main, args, env={})
    assert exported.exit_code == 0, exported.output
    source = base / "source"
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(source)
    venv = base / "venv"
    made = subprocess.run(
        [sys.executable, "-m", "venv", str(venv)], capture_output=True, text=True, timeout=600
    )
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    setup = subprocess.run(
        ["bash", str(source / "setup.sh")],
        cwd=base,
        env=_clean_env(CNNLAB_PYTHON=str(python), PIP_NO_COMPILE="1"),
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert setup.returncode == 0, (setup.stdout + setup.stderr)[-4000:]
    where = subprocess.run(
        [str(python), "-c", "import grader, torch; print(grader.__file__, torch.__version__)"],
        cwd=base,
        env=_clean_env(),
        capture_output=True,
        text=True,
    )
    installed, torch_version = where.stdout.split()
    assert installed.startswith(str(venv)), installed  # the wheel, not this checkout
    assert torch_version.startswith("2.13.0")
    return source, python


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
        env=_clean_env(AUTOGRADER_ROOT=str(root), CNNLAB_PYTHON=str(python)),
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
