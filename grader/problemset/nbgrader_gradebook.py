"""Grades from ``cnnlab batch`` into nbgrader's gradebook, through nbgrader's own API.

An nbgrader course graded with ``cnnlab batch COURSE --nbgrader-gradebook`` gets, for each
student and assignment, exactly what ``nbgrader autograde`` would have recorded, without running
it: with :class:`nbgrader.api.Gradebook`, the student, the submission (its time from nbgrader's
``submitted/<student>/<assignment>/timestamp.txt``), each check cell's grade (``auto_score``:
cnnlab's score on the cell's points; a grader failure has none and needs a manual grade) and
cnnlab's feedback as the auto comment of the exercise's answer cell (the same text the check
cell prints). It also writes ``autograded/<student>/<assignment>/<notebook>.ipynb``: the
submitted notebook with each check cell's outputs filled in, plus ``timestamp.txt``, which is
what formgrader lists and ``nbgrader generate_feedback`` renders. ``nbgrader export`` and
formgrader then show the grades.

The assignment must be in the gradebook (``nbgrader generate_assignment`` made it): its
notebooks and grade cells say which cell holds which exercise (``test_<exercise>``), and the
answer cells carry the exercise's name. Cells that are not cnnlab checks (an instructor's
manually graded answers) are left as they are.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import re
import tempfile
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grader.errors import ConfigError
from grader.problemset.nbgrader_bridge import (
    cell_points,
    cell_text,
    check_message,
    check_outputs,
    checked_exercise,
    defined_names,
    is_check_cell,
    scaled_score,
)

#: Where nbgrader keeps its gradebook in a course folder, by default.
DEFAULT_DB = "gradebook.db"


def course_root(submissions: str | os.PathLike[str]) -> Path:
    """The nbgrader course folder for a ``cnnlab batch`` argument (the course folder itself,
    or its ``submitted/`` folder).

    Raises:
        ConfigError: the folder has no nbgrader ``submitted/`` layout.
    """
    path = Path(submissions)
    if path.name == "submitted" and path.is_dir():
        return path.parent
    if (path / "submitted").is_dir():
        return path
    raise ConfigError(
        f"{str(path)!r} is not an nbgrader course (no submitted/ folder): --nbgrader-gradebook "
        "needs nbgrader's course folder, the one holding submitted/<student>/<assignment>/"
    )


def _import_api() -> Any:
    try:
        from nbgrader import api
    except ImportError as exc:
        raise ConfigError(
            "writing into nbgrader's gradebook needs nbgrader: pip install 'cnnlab[nbgrader]'"
        ) from exc
    return api


def db_url(course: Path, db: str | os.PathLike[str] | None = None) -> str:
    """SQLAlchemy URL of the course's gradebook (``sqlite:///COURSE/gradebook.db``)."""
    if db is not None and "://" in str(db):
        return str(db)
    path = Path(db) if db is not None else course / DEFAULT_DB
    return f"sqlite:///{path.resolve()}"


@dataclass(frozen=True)
class CellMap:
    """Where an assignment's exercises live in nbgrader's gradebook.

    Attributes:
        grade_cells: exercise -> (notebook, grade cell name, max score).
        answer_cells: exercise -> (notebook, solution cell name): the comment's cell.
    """

    grade_cells: dict[str, tuple[str, str, float]]
    answer_cells: dict[str, tuple[str, str]]


def cell_map(gradebook: Any, assignment: str, where: str) -> CellMap:
    """Map exercises to the assignment's cells (grade cell ``test_<exercise>``, solution cell
    ``<exercise>``).

    Raises:
        ConfigError: the assignment is not in the gradebook.
    """
    api = _import_api()
    try:
        record = gradebook.find_assignment(assignment)
    except api.MissingEntry:
        raise ConfigError(
            f"assignment {assignment!r} is not in nbgrader's gradebook {where}: run "
            f"`nbgrader generate_assignment {assignment}` in the course folder first"
        ) from None
    grade_cells: dict[str, tuple[str, str, float]] = {}
    answer_cells: dict[str, tuple[str, str]] = {}
    for notebook in record.notebooks:
        for cell in notebook.grade_cells:
            if cell.name.startswith("test_"):
                grade_cells[cell.name[len("test_") :]] = (
                    notebook.name,
                    cell.name,
                    float(cell.max_score),
                )
        for cell in notebook.solution_cells:
            answer_cells[cell.name] = (notebook.name, cell.name)
    return CellMap(grade_cells, answer_cells)


@dataclass(frozen=True)
class SourceCell:
    """One cell of an assignment's source notebook as nbgrader's gradebook keeps it
    (``generate_assignment`` saved it): a locked, grade or solution cell.

    Attributes:
        name: its ``grade_id`` (``test_<exercise>`` for a check cell, ``<exercise>`` for an
            answer cell).
        cell_type: ``code`` or ``markdown``.
        source: the released source.
        locked: whether nbgrader restores the source of a submitted copy (``OverwriteCells``).
        checksum: nbgrader's checksum of the released cell.
        grade: a grade cell (autograder test or manually graded answer).
        solution: a solution (answer) cell.
        points: a grade cell's points, else ``None``.
    """

    name: str
    cell_type: str
    source: str
    locked: bool
    checksum: str | None
    grade: bool
    solution: bool
    points: float | None

    def metadata(self) -> dict[str, Any]:
        """The cell's ``nbgrader`` metadata as ``generate_assignment`` released it."""
        meta: dict[str, Any] = {
            "grade": self.grade,
            "grade_id": self.name,
            "locked": self.locked,
            "schema_version": 3,
            "solution": self.solution,
        }
        if self.checksum:
            meta["checksum"] = self.checksum
        if self.grade:
            meta["points"] = self.points
        return meta


def source_cells(gradebook: Any, notebook: str, assignment: str) -> list[SourceCell]:
    """The source cells of ``notebook`` (its name without ``.ipynb``) in ``assignment``, in
    notebook order, from nbgrader's gradebook; ``[]`` when the gradebook does not have it."""
    api = _import_api()
    try:
        record = gradebook.find_notebook(notebook, assignment)
    except api.MissingEntry:
        return []
    points = {c.name: float(c.max_score) for c in record.grade_cells}
    solutions = {c.name for c in record.solution_cells}
    return [
        SourceCell(
            name=c.name,
            cell_type=c.cell_type,
            source=c.source or "",
            locked=bool(c.locked),
            checksum=c.checksum,
            grade=c.name in points,
            solution=c.name in solutions,
            points=points.get(c.name),
        )
        for c in record.source_cells
    ]


def _grade_id(cell: dict[str, Any]) -> str | None:
    meta = cell.get("metadata")
    nb = meta.get("nbgrader") if isinstance(meta, dict) else None
    grade_id = nb.get("grade_id") if isinstance(nb, dict) else None
    return grade_id if isinstance(grade_id, str) and grade_id else None


def _released_cell(cell: SourceCell) -> dict[str, Any]:
    out: dict[str, Any] = {
        "cell_type": cell.cell_type,
        "id": re.sub(r"[^A-Za-z0-9_-]", "-", f"cnnlab-{cell.name}")[:64],
        "metadata": {"deletable": False, "editable": False, "nbgrader": cell.metadata()},
        "source": cell.source,
    }
    if cell.cell_type == "code":
        out["execution_count"] = None
        out["outputs"] = []
    return out


def restore_cells(document: dict[str, Any], cells: list[SourceCell]) -> list[str]:
    """Put back, in a submitted notebook, what cnnlab's grading of it does not depend on but
    nbgrader's recording of the grades does; returns one line per change, for the log.

    * **Metadata, by content** (a notebook re-saved without nbgrader's metadata): a cnnlab
      check cell gets its grade cell's metadata (``test_<exercise>``, points), a code cell
      defining an answer cell's function or class (``def maxpool2d_forward``) that answer
      cell's, and a cell whose source is a locked cell's exact source that cell's. A grade id
      the notebook already has is never given twice.
    * **Deleted check cells**: a cnnlab check cell of the source that is missing is put back
      as released, after the answer cell of its exercise (else after the nearest earlier
      source cell the notebook has, else at the end), so that nbgrader records cnnlab's score
      for it instead of asking for a manual grade. Other grade cells are left to nbgrader
      (``OverwriteCells.add_missing_cells``).

    Args:
        document: the notebook as JSON (``dict``; an ``nbformat.NotebookNode`` works too),
            changed in place.
        cells: its source cells (:func:`source_cells`).
    """
    if not cells:
        return []
    notes: list[str] = []
    by_name = {c.name: c for c in cells}
    nb_cells = document.setdefault("cells", [])
    for index, cell in enumerate(nb_cells):
        meta = cell.get("metadata")
        nb = meta.get("nbgrader") if isinstance(meta, dict) else None
        if nb is None or not isinstance(meta, dict):
            continue
        grade_id = _grade_id(cell)
        if not isinstance(nb, dict) or not nb:
            # emptied by nbgrader's DeduplicateIds (a copied cell): without this, nbgrader's
            # CheckCellMetadata takes it for an old format and stops autograde (nbgrader #1083)
            del meta["nbgrader"]
        elif grade_id is not None and grade_id not in by_name:
            # pasted from another notebook: nbgrader would drop its grade_id and then fail on
            # the cell ("does not have a grade_id"); it is nobody's cell here
            del meta["nbgrader"]
            notes.append(
                f"cell {index + 1}: metadata of {grade_id}, not a cell of this notebook, removed"
            )
    present = {g for g in (_grade_id(c) for c in nb_cells) if g}
    locked_sources = {c.source: c for c in cells if c.locked and not c.grade}
    for index, cell in enumerate(nb_cells):
        if _grade_id(cell) is not None:
            continue
        found: SourceCell | None = None
        exercise = checked_exercise(cell)
        if exercise is not None:
            found = by_name.get(f"test_{exercise}")
        elif cell.get("cell_type") == "code":
            text = cell_text(cell)
            for name in defined_names(text):
                if name in by_name and by_name[name].solution:
                    found = by_name[name]
                    break
            if found is None and text in locked_sources:
                found = locked_sources[text]
        if found is None or found.name in present or found.cell_type != cell.get("cell_type"):
            continue
        cell.setdefault("metadata", {})["nbgrader"] = found.metadata()
        present.add(found.name)
        notes.append(f"cell {index + 1}: nbgrader metadata put back ({found.name})")
    order = [c.name for c in cells]
    for position, source in enumerate(cells):
        if source.name in present or not (
            source.grade
            and source.name.startswith("test_")
            and is_check_cell({"cell_type": source.cell_type, "source": source.source})
        ):
            continue
        where = {g: i for i, c in enumerate(nb_cells) if (g := _grade_id(c))}
        anchor = where.get(source.name[len("test_") :])
        if anchor is None:
            earlier = [where[n] for n in order[:position] if n in where]
            anchor = max(earlier) if earlier else len(nb_cells) - 1
        nb_cells.insert(anchor + 1, _released_cell(source))
        present.add(source.name)
        notes.append(f"{source.name}: deleted check cell put back as released")
    return notes


def check_course(course: Path, assignments: Iterable[str], db: str | None = None) -> None:
    """Fail early (before grading) when the gradebook or an assignment is missing.

    Raises:
        ConfigError: no gradebook, or an assignment nbgrader does not know.
    """
    api = _import_api()
    url = db_url(course, db)
    if url.startswith("sqlite:///") and not Path(url[len("sqlite:///") :]).is_file():
        raise ConfigError(
            f"no nbgrader gradebook at {url[len('sqlite:///') :]}: run `nbgrader "
            "generate_assignment <assignment>` in the course folder first"
        )
    with api.Gradebook(url) as gb:
        for assignment in sorted(set(assignments)):
            cell_map(gb, assignment, url)


def _timestamp(course: Path, student: str, assignment: str) -> datetime.datetime | None:
    from nbgrader.utils import parse_utc

    stamp = course / "submitted" / student / assignment / "timestamp.txt"
    try:
        return parse_utc(stamp.read_text().strip())
    except (OSError, ValueError, TypeError):
        return None


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _overwrite_cells(document: dict[str, Any], notebook: str, assignment: str, url: str) -> Any:
    """nbgrader's own ``OverwriteCells`` on ``document``, as autograde's first pass runs it:
    edited locked cells get their released source, changed cell types their released type."""
    import nbformat
    from nbgrader.preprocessors import OverwriteCells

    info = {"notebook": notebook, "assignment": assignment, "db_url": url}
    with warnings.catch_warnings():  # nbformat renames a copied cell's duplicate id, noisily
        warnings.simplefilter("ignore")
        notebook_node = nbformat.reads(json.dumps(document), as_version=4)  # lines joined
    nb, _ = OverwriteCells(log=_QUIET).preprocess(notebook_node, {"nbgrader": info})
    return nb


#: nbgrader's warnings about the cells it restores ("Attribute 'checksum' ... has changed!"):
#: batch records the scores; the warnings are not shown.
_QUIET = logging.getLogger("cnnlab.nbgrader")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False


def write_autograded(
    course: Path,
    student: str,
    assignment: str,
    records: dict[str, dict[str, Any]],
    released: dict[str, list[SourceCell]] | None = None,
    db_url: str | None = None,
) -> list[Path]:
    """``autograded/<student>/<assignment>/``: each submitted notebook with its check cells'
    outputs filled from ``records`` (exercise -> record), and ``timestamp.txt``.

    With ``released`` (notebook name -> its :func:`source_cells`) and the gradebook's
    ``db_url``, each notebook first gets back what ``nbgrader autograde`` would put back
    (:func:`restore_cells`, then nbgrader's ``OverwriteCells``), so formgrader shows the
    released check cells with cnnlab's outputs, never a student's edit of them."""
    source = course / "submitted" / student / assignment
    dest = course / "autograded" / student / assignment
    written = []
    for notebook in sorted(source.glob("*.ipynb")):
        try:
            document = json.loads(notebook.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # unreadable: cnnlab batch already recorded why
        if not isinstance(document, dict):
            continue
        cells = (released or {}).get(notebook.stem, [])
        restore_cells(document, cells)
        if cells and db_url is not None:
            document = _overwrite_cells(document, notebook.stem, assignment, db_url)
        graded = {c.name for c in cells if c.grade}
        count = 0
        for cell in document.get("cells", []):
            name = checked_exercise(cell)
            if name is None or name not in records:
                continue
            if graded and _grade_id(cell) not in graded:
                continue  # a check cell nbgrader does not grade here (pasted): as autograde
            count += 1
            record = records[name]
            points = cell_points(cell, float(record.get("max_score") or 0.0))
            cell["outputs"] = check_outputs(record, points, count)
            cell["execution_count"] = count
        target = dest / notebook.name
        _write_atomic(target, json.dumps(document, indent=1, ensure_ascii=False) + "\n")
        written.append(target)
    stamp = source / "timestamp.txt"
    if stamp.is_file():
        _write_atomic(dest / "timestamp.txt", stamp.read_text())
    return written


@dataclass
class GradebookWrite:
    """What :func:`write_grades` wrote.

    Attributes:
        submissions: (student, assignment) pairs written.
        grades: grade cells given a score (or flagged for a manual grade).
        flagged: grade cells left for a manual grade (grader errors).
        unmatched: exercise names graded by cnnlab with no ``test_<name>`` cell in nbgrader.
    """

    submissions: list[tuple[str, str]] = field(default_factory=list)
    grades: int = 0
    flagged: int = 0
    unmatched: set[str] = field(default_factory=set)


def write_grades(
    course: str | os.PathLike[str],
    rows: Iterable[Any],
    *,
    db: str | None = None,
    autograded: bool = True,
) -> GradebookWrite:
    """Write ``cnnlab batch`` rows into the course's nbgrader gradebook.

    Args:
        course: the nbgrader course folder (holding ``submitted/`` and ``gradebook.db``).
        rows: :class:`grader.classroom.gradebook.GradedSubmission` rows (student, assignment,
            status, results).
        db: another gradebook (a path or an SQLAlchemy URL); default ``COURSE/gradebook.db``.
        autograded: also write ``autograded/<student>/<assignment>/`` (what formgrader lists).

    Raises:
        ConfigError: nbgrader is not installed, or an assignment is not in the gradebook.
    """
    api = _import_api()
    course = Path(course)
    url = db_url(course, db)
    out = GradebookWrite()
    maps: dict[str, CellMap] = {}
    released: dict[str, dict[str, list[SourceCell]]] = {}
    with api.Gradebook(url) as gb:
        for row in rows:
            assignment, student = row.assignment, row.student
            if assignment not in maps:
                maps[assignment] = cell_map(gb, assignment, url)
            cells = maps[assignment]
            gb.update_or_create_student(student)
            timestamp = _timestamp(course, student, assignment)
            try:
                submission = gb.find_submission(assignment, student)
                if timestamp is not None:
                    submission.timestamp = timestamp
            except api.MissingEntry:
                with warnings.catch_warnings():
                    # nbgrader's add_submission makes SQLAlchemy warn about its own autoflush
                    # (harmless: the rows are added; nbgrader autograde prints the same)
                    warnings.simplefilter("ignore")
                    gb.add_submission(assignment, student, timestamp=timestamp)
            records: dict[str, dict[str, Any]] = {}
            for result in row.results:
                record = result.to_dict()
                records[result.name] = record
                where = cells.grade_cells.get(result.name)
                if where is None:
                    out.unmatched.add(result.name)
                    continue
                notebook, cell_name, points = where
                grade = gb.find_grade(cell_name, notebook, assignment, student)
                if record["status"] == "grader_error":
                    grade.auto_score = None
                    grade.needs_manual_grade = True
                    out.flagged += 1
                else:
                    grade.auto_score = scaled_score(record, points)
                    grade.needs_manual_grade = grade.manual_score is not None
                out.grades += 1
                answer = cells.answer_cells.get(result.name)
                if answer is not None:
                    comment = gb.find_comment(answer[1], answer[0], assignment, student)
                    comment.auto_comment = check_message(record, points)
            gb.db.commit()
            if autograded:
                if assignment not in released:
                    released[assignment] = {
                        nb.name: source_cells(gb, nb.name, assignment)
                        for nb in gb.find_assignment(assignment).notebooks
                    }
                write_autograded(
                    course, student, assignment, records, released[assignment], db_url=url
                )
            out.submissions.append((student, assignment))
    return out
