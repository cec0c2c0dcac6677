"""`cnnlab doctor`, and grading for credit without a filesystem layer: `cnnlab batch` and the
Gradescope autograder refuse unless ``--allow-weak-sandbox`` is given, and then every report
says so; `cnnlab grade` runs and prints one line.

The weak machine is simulated with ``$CNNLAB_SANDBOX_LAYERS_OFF=landlock`` (tests only).
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from grader.cli import main
from grader.sandbox.layers import LAYERS_OFF_ENV, filesystem_layer_probe

REPO = Path(__file__).resolve().parents[3]
CORRECT = REPO / "tests" / "fixtures" / "submissions" / "plain_loops"
WEAK = {LAYERS_OFF_ENV: "landlock"}

pytestmark = pytest.mark.skipif(
    filesystem_layer_probe() is not None, reason=f"no Landlock here: {filesystem_layer_probe()}"
)


def test_the_probe_sees_the_layer_and_its_absence(monkeypatch):
    assert filesystem_layer_probe() is None
    monkeypatch.setenv(LAYERS_OFF_ENV, "landlock")
    assert "switched off" in (filesystem_layer_probe() or "")


def test_doctor_says_which_layers_hold_and_exits_by_it():
    env = {k: v for k, v in os.environ.items() if k != LAYERS_OFF_ENV}
    cmd = [sys.executable, "-m", "grader.cli", "doctor"]
    strong = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert strong.returncode == 0, strong.stdout + strong.stderr
    assert "landlock" in strong.stdout and "attack refused" in strong.stdout
    weak = subprocess.run(cmd, capture_output=True, text=True, env=env | WEAK, timeout=600)
    assert weak.returncode == 1, weak.stdout + weak.stderr
    assert "weak sandbox" in weak.stdout and "switched off" in weak.stdout


@pytest.fixture()
def klass(tmp_path):
    subs = tmp_path / "submissions"
    shutil.copytree(CORRECT, subs / "alice")
    return subs


def _batch(subs: Path, out: Path, *extra: str, env: dict) -> object:
    args = ["batch", str(subs), "--out", str(out), "--seed", "3", "-e", "conv_output_size"]
    return CliRunner().invoke(main, [*args, *extra], env=env)


def test_batch_refuses_a_weak_sandbox_for_credit(klass, tmp_path):
    result = _batch(klass, tmp_path / "out", env=WEAK)
    assert result.exit_code == 2, result.output
    assert "refusing to grade for credit" in result.output
    assert "--allow-weak-sandbox" in result.output
    assert not (tmp_path / "out" / "grades.csv").exists()


@pytest.mark.slow
def test_batch_with_allow_weak_sandbox_says_so_in_every_report(klass, tmp_path):
    out = tmp_path / "out"
    result = _batch(klass, out, "--allow-weak-sandbox", env=WEAK)
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO((out / "grades.csv").read_text())))
    assert rows and all(r["sandbox"].startswith("graded in a weak sandbox") for r in rows)
    feedback = list((out / "feedback").rglob("*.md"))
    assert feedback
    for path in feedback:
        head = path.read_text().splitlines()[:5]
        assert any("graded in a weak sandbox" in line for line in head), head
    from grader.classroom.batch import feedback_owner

    assert all(feedback_owner(p) is not None for p in feedback)  # the owner line stays first


@pytest.mark.slow
def test_batch_on_a_strong_sandbox_adds_nothing(klass, tmp_path):
    out = tmp_path / "out"
    env = {LAYERS_OFF_ENV: ""}
    result = _batch(klass, out, env=env)
    assert result.exit_code == 0, result.output
    assert "sandbox" not in (out / "grades.csv").read_text().splitlines()[0]


@pytest.mark.slow
def test_grade_runs_on_a_weak_sandbox_with_one_line():
    cmd = [sys.executable, "-m", "grader.cli", "grade", str(CORRECT), "-e", "conv_output_size"]
    env = {k: v for k, v in os.environ.items() if k != LAYERS_OFF_ENV}
    weak = subprocess.run(cmd, capture_output=True, text=True, env=env | WEAK, timeout=600)
    assert weak.returncode == 0, weak.stdout + weak.stderr
    assert weak.stderr.count("weak sandbox") == 1
    strong = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert strong.returncode == 0 and "weak sandbox" not in strong.stderr


def _autograder(tmp_path: Path, *extra: str) -> Path:
    fake_wheel = tmp_path / "cnnlab-0.1.0-py3-none-any.whl"
    fake_wheel.write_bytes(b"stand-in")
    zip_path = tmp_path / "autograder.zip"
    args = ["export", "gradescope", "--out", str(zip_path), "--wheel", str(fake_wheel)]
    result = CliRunner().invoke(main, [*args, "--seed", "5", "-e", "conv_output_size", *extra])
    assert result.exit_code == 0, result.output
    root = tmp_path / "autograder"
    with zipfile.ZipFile(zip_path) as zf:
        zf.extractall(root / "source")
    shutil.copytree(CORRECT, root / "submission")
    return root


def _run_autograder(root: Path) -> tuple[int, dict]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CNNLAB_")} | WEAK
    proc = subprocess.run(
        [sys.executable, "-m", "grader.classroom.gradescope", "run", "--root", str(root)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    return proc.returncode, json.loads((root / "results" / "results.json").read_text())


def test_gradescope_gives_no_score_on_a_weak_sandbox(tmp_path):
    code, doc = _run_autograder(_autograder(tmp_path))
    assert code == 3
    assert "score" not in doc and "no filesystem sandbox layer" in doc["output"]


@pytest.mark.slow
def test_gradescope_with_allow_weak_sandbox_says_so(tmp_path):
    code, doc = _run_autograder(_autograder(tmp_path, "--allow-weak-sandbox"))
    assert code == 0, doc
    assert doc["output"].startswith("Note: graded in a weak sandbox")
    assert doc["extra_data"]["weak_sandbox"] and doc["score"] > 0
