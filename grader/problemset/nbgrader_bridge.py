"""The bridge between nbgrader notebooks and cnnlab's sandboxed grader.

Each autograded test cell of a generated notebook calls :func:`check`. It does not run the
student's functions in the notebook's kernel: it copies the notebook's setup and answer cells
(the cells nbgrader marks ``solution``, plus the locked setup cell) into a fresh notebook file
in a temporary folder and runs ``cnnlab grade`` on it in a *separate process*, which in turn
runs the code in cnnlab's sandbox and compares in the parent. So a student cannot pass by
patching ``np.allclose``, the comparison or the expected values in the kernel.

What is *not* protected: the test cell itself runs in the student's kernel, after the student's
cells. A student who redefines ``subprocess``, ``json`` or :func:`check` in an earlier cell can
still fake the cell's outcome in ``nbgrader autograde``. For a grade nobody can tamper with,
grade the submitted notebooks outside the kernel with ``cnnlab batch`` / ``cnnlab grade`` (see
``docs/instructors.md``); nbgrader's own checksums only stop edits of the locked cells.

This module runs in student bundles: it imports nothing of ``cnnref`` or ``grader.exercises``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

#: Where a student bundle keeps its public check cases, relative to the folder holding grader/.
BUNDLE_CASES = "cases"
CASES_ENV = "CNNLAB_CASES_DIR"


class CheckFailed(AssertionError):
    """An exercise did not pass; the message is cnnlab's feedback (nbgrader shows it)."""


class CheckError(RuntimeError):
    """The check could not run (no notebook file, the grader failed); never a pass."""


def answer_cells(notebook: dict[str, Any]) -> list[dict[str, Any]]:
    """The code cells to grade: nbgrader ``solution`` cells and the locked setup cell.

    Test cells (``grade`` without ``solution``) and the student's own scratch cells are left
    out, so grading the copy never re-runs a check or a plot.
    """
    keep = []
    for cell in notebook.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if meta.get("solution") or meta.get("grade_id") == "setup":
            keep.append(cell)
    return keep


def _bundle_cases() -> Path | None:
    here = Path(__file__).resolve().parents[2] / BUNDLE_CASES
    return here if (here / "manifest.json").is_file() else None


def check(
    exercise: str, *, notebook: str, seed: int | None = None, timeout_s: float = 600.0
) -> None:
    """Grade one exercise of ``notebook`` with cnnlab in a separate process.

    Args:
        exercise: the exercise name, e.g. ``"maxpool2d_backward"``.
        notebook: the notebook's file name, relative to the current folder (Jupyter and
            ``nbgrader autograde`` run a notebook in its own folder).
        seed: grading seed; ``None`` means the public check cases of a student bundle when
            there are some, else a fresh seed.
        timeout_s: wall-clock limit of the whole check.

    Raises:
        CheckFailed: the exercise did not pass; the message is the feedback.
        CheckError: the notebook is not there, or the grader itself failed.
    """
    path = Path(notebook)
    if not path.is_file():
        raise CheckError(
            f"cannot find {notebook!r} in {os.getcwd()}: save the notebook and run it from "
            "the folder it is in"
        )
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckError(f"cannot read {notebook!r}: {exc}; save the notebook and retry") from exc
    env = {k: v for k, v in os.environ.items() if not k.startswith("CNNLAB_COURSE_SECRET")}
    if seed is None and CASES_ENV not in env and (cases := _bundle_cases()) is not None:
        env[CASES_ENV] = str(cases)
    if seed is None and CASES_ENV in env:
        manifest = json.loads((Path(env[CASES_ENV]) / "manifest.json").read_text())
        names = {entry["name"] for entry in manifest.get("exercises", [])}
        if exercise not in names:
            print(
                f"{exercise} has no public check: it is checked when your work is graded "
                "(a public check would give the answer away)."
            )
            return
    copy = {**document, "cells": answer_cells(document)}
    with tempfile.TemporaryDirectory(prefix="cnnlab-check-") as tmp:
        target = Path(tmp) / path.name
        target.write_text(json.dumps(copy), encoding="utf-8")
        report = Path(tmp) / "result.json"
        command = [
            sys.executable,
            "-c",
            "from grader.cli import main; main(prog_name='cnnlab')",
            "grade",
            str(target),
            "-e",
            exercise,
            "--json",
            str(report),
        ]
        if seed is not None:
            command += ["--seed", str(int(seed))]
            env.pop(CASES_ENV, None)
        try:
            done = subprocess.run(
                command, capture_output=True, text=True, env=env, timeout=timeout_s, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise CheckError(f"the check of {exercise} took longer than {timeout_s:g} s") from exc
        if not report.is_file():
            detail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            raise CheckError(f"cnnlab could not grade {exercise}: {' '.join(detail)}")
        result = json.loads(report.read_text())
    (record,) = [r for r in result["exercises"] if r["name"] == exercise]
    if record["status"] == "grader_error":
        raise CheckError(f"the grader failed (not your code): {record['feedback']}")
    if record["status"] != "passed":
        raise CheckFailed(
            f"{exercise}: {record['status']}, {record['score']:g} of {record['max_score']:g} "
            f"points. {record['feedback']}"
        )
    print(f"{exercise} passed: {record['score']:g} of {record['max_score']:g} points.")
