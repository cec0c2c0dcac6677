"""``nbgrader autograde`` that grades cnnlab's check cells in the sandbox, without a kernel.

nbgrader's autograde runs every submitted notebook in a Jupyter kernel (its ``Execute``
preprocessor): a kernel start per notebook and, with cnnlab's check cells, a grading service
per kernel; the student's code runs unsandboxed in that kernel as the instructor's user.
:class:`ExecuteInSandbox` replaces ``Execute``: a notebook with cnnlab check cells is graded as
``cnnlab grade <notebook>`` grades it, in one :class:`grader.sandbox.runner.Sandbox` kept warm
for the whole ``nbgrader autograde`` run (every student and notebook), and each check cell gets
the outputs a kernel-side check would show
(:func:`grader.problemset.nbgrader_bridge.check_outputs`: cnnlab's feedback, then the points as
the cell's value, which nbgrader records as partial credit). No student code runs in a kernel,
so nothing a student defines can change what a check cell reports. A notebook without cnnlab
check cells is executed by nbgrader's ``Execute`` as usual. The student's other cells are not
run for display, so the autograded notebook shows no outputs for them.

:class:`FlagGraderErrors` runs after ``SaveAutoGrades``: a check the grader itself could not
grade (``grader_error``) has no auto score and is marked "needs manual grade", never a 0.

Use it from ``nbgrader_config.py``::

    from grader.problemset.nbgrader_autograde import configure_autograde
    configure_autograde(c, seed=2026)   # the seed the notebooks were generated with

Needs nbgrader (``pip install 'cnnlab[nbgrader]'``); never shipped in a student bundle.
"""

from __future__ import annotations

import atexit
import json
import os
import secrets
import tempfile
import warnings
from pathlib import Path
from typing import Any

from nbconvert.exporters.exporter import ResourcesDict
from nbformat.notebooknode import NotebookNode, from_dict
from nbgrader.api import Gradebook, MissingEntry
from nbgrader.preprocessors import Execute, NbGraderPreprocessor
from nbgrader.utils import is_grade
from traitlets import Integer
from traitlets.config import Config

from grader.problemset.nbgrader_bridge import (
    SEED_ENV,
    cell_points,
    check_outputs,
    notebook_checks,
)

#: ``resources`` key under which :class:`ExecuteInSandbox` lists the grade ids of checks the
#: grader failed on, for :class:`FlagGraderErrors`.
GRADER_ERRORS = "cnnlab_grader_errors"

_SANDBOX: Any = None
_WARNED = False  # the public-default-seed warning was given in this process
#: (seed, exercise) -> prepared exercise, for the whole autograde run (one seed for the class).
_PREPARED: dict[tuple[int, str], Any] = {}


def _sandbox() -> Any:
    global _SANDBOX
    if _SANDBOX is None:
        from grader.sandbox.runner import Sandbox

        _SANDBOX = Sandbox()
        atexit.register(close_sandbox)
    return _SANDBOX


def close_sandbox() -> None:
    """Stop the sandbox kept for this process (``atexit`` does it at the end of autograde)."""
    global _SANDBOX
    sandbox, _SANDBOX = _SANDBOX, None
    if sandbox is not None:
        sandbox.close()


def _prepared(seed: int, names: list[str]) -> list[Any]:
    from grader import engine, registry
    from grader.results import Result

    out = []
    for spec in registry.select(names):
        key = (seed, spec.name)
        if key not in _PREPARED:
            (item,) = engine.prepare_all([spec], seed)
            if isinstance(item, Result):
                out.append(item)  # a grader error; not cached, so the next notebook retries
                continue
            _PREPARED[key] = item
        out.append(_PREPARED[key])
    return out


def grade_checks(
    nb: NotebookNode,
    notebook_name: str,
    *,
    seed: int,
    student: str | None = None,
    names: list[str] | None = None,
) -> dict[str, dict[str, Any]]:
    """Grade every exercise the check cells of ``nb`` name (or ``names``), as ``cnnlab grade``
    grades the notebook; exercise -> record (``SubmissionResult.to_dict()["exercises"]``
    entries).

    A submission cnnlab cannot read (no code, an unreadable cell) scores 0 with the reason as
    feedback; a grader failure becomes ``grader_error`` records (never a score).
    """
    from grader import engine
    from grader.errors import GraderFailure, SubmissionError, UnknownExerciseError
    from grader.submission import load_submission

    if names is None:
        names = list(dict.fromkeys(name for _, name in notebook_checks(nb)))
    try:
        prepared = _prepared(seed, names)
    except UnknownExerciseError as exc:
        return {n: _record(n, 0.0, "grader_error", f"{exc}") for n in names}
    points = {getattr(p, "name", None): float(getattr(p, "points", 0)) for p in prepared}
    with tempfile.TemporaryDirectory(prefix="cnnlab-autograde-") as tmp:
        path = Path(tmp) / f"{notebook_name}.ipynb"
        path.write_text(json.dumps(nb), encoding="utf-8")  # nbgrader validated it already
        try:
            submission = load_submission(path)
        except SubmissionError as exc:
            return {n: _record(n, points.get(n, 0.0), "error", str(exc)) for n in names}
        try:
            result = engine.grade_prepared(
                submission, prepared, seed=seed, sandbox=_sandbox(), student=student
            )
        except GraderFailure as exc:
            close_sandbox()
            return {n: _record(n, points.get(n, 0.0), "grader_error", str(exc)) for n in names}
    return {r["name"]: r for r in result.to_dict()["exercises"]}


def _record(name: str, max_score: float, status: str, feedback: str) -> dict[str, Any]:
    return {"name": name, "score": 0.0, "max_score": max_score, "status": status,
            "feedback": feedback, "output": ""}  # fmt: skip


def resolve_seed(configured: int | None) -> int:
    """The configured seed, else ``$CNNLAB_GRADING_SEED``.

    Raises:
        ValueError: neither is set (autograde must not grade with a random seed).
    """
    if configured is not None:
        return int(configured)
    raw = os.environ.get(SEED_ENV, "").strip()
    if raw:
        return int(raw)
    raise ValueError(
        "cnnlab: no grading seed. Put `configure_autograde(c, seed=N)` in nbgrader_config.py, "
        "N being the seed the notebooks were generated with (docs/instructors.md)"
    )


class ExecuteInSandbox(Execute):
    """nbgrader's ``Execute``, except that a notebook with cnnlab check cells is graded in
    cnnlab's sandbox instead of run in a kernel (see the module docstring)."""

    seed = Integer(
        None,
        allow_none=True,
        help="Seed the check cases and the numeric questions are graded with: the seed the "
        "notebooks were generated with (default: $CNNLAB_GRADING_SEED).",
    ).tag(config=True)

    def preprocess(
        self, nb: NotebookNode, resources: ResourcesDict, km: Any = None
    ) -> tuple[NotebookNode, ResourcesDict]:
        checks = notebook_checks(nb)
        if not checks:
            return super().preprocess(nb, resources, km=km)
        # the check cells nbgrader grades (RestoreCheckCells gave them back their metadata); a
        # check cell pasted from another notebook is nobody's grade cell and stays empty
        graded = [(i, n) for i, n in checks if is_grade(nb.cells[i])]
        checks = graded or checks
        seed = resolve_seed(self.seed)
        info = resources.get("nbgrader", {})
        name = info.get("notebook") or "notebook"
        wanted = list(dict.fromkeys(n for _, n in checks))
        records = grade_checks(nb, name, seed=seed, student=info.get("student"), names=wanted)
        errors = []
        for count, (index, exercise) in enumerate(checks, start=1):
            cell = nb.cells[index]
            record = records.get(exercise) or _record(
                exercise, 0.0, "grader_error", "cnnlab returned no result for this exercise"
            )
            points = cell_points(cell, float(record.get("max_score") or 0.0))
            cell.outputs = [from_dict(o) for o in check_outputs(record, points, count)]
            cell.execution_count = count
            if record["status"] == "grader_error":
                errors.append(cell.metadata.get("nbgrader", {}).get("grade_id"))
                self.log.warning(
                    "cnnlab could not grade %s of %s (%s): flagged for manual grading; "
                    "rerun autograde for this student",
                    exercise,
                    info.get("student"),
                    record.get("feedback", ""),
                )
        resources[GRADER_ERRORS] = [e for e in errors if e]
        return nb, resources


class RestoreCheckCells(NbGraderPreprocessor):
    """In ``nbgrader autograde``'s first pass, before ``OverwriteCells``: gives a notebook
    back the nbgrader metadata its cells lost (re-saved by an editor that drops it: cells
    are recognised by content) and puts back cnnlab check cells a student deleted
    (:func:`grader.problemset.nbgrader_gradebook.restore_cells`). cnnlab grades the answers
    by content either way; without this nbgrader would record no score for such a notebook
    and ask for a manual grade of every cell, where ``cnnlab batch --nbgrader-gradebook``
    records cnnlab's scores."""

    def preprocess(
        self, nb: NotebookNode, resources: ResourcesDict
    ) -> tuple[NotebookNode, ResourcesDict]:
        from grader.problemset.nbgrader_gradebook import restore_cells, source_cells

        info = resources["nbgrader"]
        with Gradebook(info["db_url"]) as gb:
            cells = source_cells(gb, info["notebook"], info["assignment"])
        notes = restore_cells(nb, cells)
        if notes:
            nb.cells = [from_dict(cell) for cell in nb.cells]
            for note in notes:
                self.log.warning(
                    "cnnlab: %s, %s.ipynb: %s", info.get("student"), info["notebook"], note
                )
        return nb, resources


class FlagGraderErrors(NbGraderPreprocessor):
    """After ``SaveAutoGrades``: a check cnnlab could not grade keeps no auto score and is
    marked as needing a manual grade (a grader failure is never a grade)."""

    def preprocess(
        self, nb: NotebookNode, resources: ResourcesDict
    ) -> tuple[NotebookNode, ResourcesDict]:
        flagged = resources.get(GRADER_ERRORS) or []
        if not flagged:
            return nb, resources
        info = resources["nbgrader"]
        with Gradebook(info["db_url"]) as gb:
            for grade_id in flagged:
                try:
                    grade = gb.find_grade(
                        grade_id, info["notebook"], info["assignment"], info["student"]
                    )
                except MissingEntry:
                    continue
                grade.auto_score = None
                grade.needs_manual_grade = True
            gb.db.commit()
        return nb, resources


def autograde_preprocessors() -> list[type]:
    """nbgrader's autograde preprocessors with ``Execute`` replaced by
    :class:`ExecuteInSandbox` and :class:`FlagGraderErrors` after ``SaveAutoGrades``."""
    from nbgrader.converters import Autograde
    from nbgrader.preprocessors import SaveAutoGrades

    out: list[type] = []
    for pp in Autograde.class_traits()["autograde_preprocessors"].default():
        out.append(ExecuteInSandbox if pp is Execute else pp)
        if pp is SaveAutoGrades:
            out.append(FlagGraderErrors)
    return out


def sanitize_preprocessors() -> list[type]:
    """nbgrader's first autograde pass with :class:`RestoreCheckCells` before
    ``OverwriteCells``."""
    from nbgrader.converters import Autograde
    from nbgrader.preprocessors import OverwriteCells

    out: list[type] = []
    for pp in Autograde.class_traits()["sanitize_preprocessors"].default():
        if pp is OverwriteCells:
            out.append(RestoreCheckCells)
        out.append(pp)
    return out


def configure_autograde(c: Config, *, seed: int) -> Config:
    """Make ``nbgrader autograde`` grade cnnlab's check cells in the sandbox with ``seed``
    (call it in ``nbgrader_config.py`` with the ``c = get_config()`` object).

    nbgrader's first pass gets :class:`RestoreCheckCells` (metadata put back by content,
    deleted check cells put back), so that nbgrader records cnnlab's score for every check.
    ``seed`` must be the staff's own: the check cases are drawn from it, so with cnnlab's
    public default (2026) a student could compute them; a warning says so.

    It also sets ``$CNNLAB_GRADING_SEED`` for the commands that still run kernels (``nbgrader
    validate``; an instructor's own notebooks), so a kernel-side check grades with the same seed,
    and makes the notebooks that do run in kernels ignore the ``skip-execution`` tag (nbclient
    skips a cell with that tag and nbgrader gives a test cell without output full marks: a
    student could tag a test cell) by skipping only a random tag nobody knows.
    """
    from grader.engine import check_seed
    from grader.seeds import DEFAULT_SEED

    global _WARNED
    seed = check_seed(int(seed) if isinstance(seed, str) and seed.strip().isdigit() else seed)
    if seed == DEFAULT_SEED and not _WARNED:  # nbgrader may load its config twice: say it once
        _WARNED = True
        warnings.warn(
            f"cnnlab: grading with seed {DEFAULT_SEED}, cnnlab's public default: anyone with "
            "cnnlab's source can compute its check cases and hard-code the answers. Generate "
            "the notebooks with a seed of your own (`cnnlab generate --seed N`, N kept among "
            "the staff) and grade with that N (docs/instructors.md)",
            UserWarning,
            stacklevel=2,
        )
    c.Autograde.sanitize_preprocessors = sanitize_preprocessors()
    c.Autograde.autograde_preprocessors = autograde_preprocessors()
    c.ExecuteInSandbox.seed = seed
    c.Execute.skip_cells_with_tag = f"cnnlab-never-skip-{secrets.token_hex(8)}"
    os.environ[SEED_ENV] = str(seed)
    return c
