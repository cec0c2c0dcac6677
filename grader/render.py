"""Renderers: a :class:`grader.results.SubmissionResult` as a terminal table, JSON,
Gradescope's ``results.json`` and JUnit XML. Rendering never grades and never changes a result.

``grader_error`` is shown as "grader error" with no score in the table; in Gradescope and JUnit
it is a failed test / an ``<error>`` whose message says the grader failed, not the student.

Everything a student's code controls (printed output, exception messages in the feedback, the
student id) passes through :mod:`grader.sanitize` in every renderer: no ANSI escapes or
control characters reach a terminal, the JSON is valid for strict parsers, the JUnit XML is
valid XML 1.0, and Gradescope's ``results.json`` stays within :data:`GRADESCOPE_MAX_BYTES`.
A seed that must stay hidden (``result.extra["seed_hidden"]``, see :mod:`grader.seeds`) is
never rendered; Gradescope's output never names a seed at all.

Pictures (:class:`grader.results.Picture`, kept by the engine for small maps of a failed case)
are drawn after the table: expected and received side by side, the cells that differ marked
(``[4]`` and in colour in the terminal, bold in Markdown); :func:`pictures_markdown` gives the
same for a per-student feedback file and :func:`picture_png` a PNG of the saliency maps.
Which cells differ was decided when grading; drawing only shows it.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from grader.errors import ConfigError
from grader.results import Picture, Result, Status, SubmissionResult
from grader.sanitize import clean_doc, clean_text, fit_json, truncate

__all__ = [
    "PNG_EXERCISES",
    "STATUS_STYLE",
    "gradescope_json",
    "gradescope_results",
    "json_report",
    "junit_xml",
    "picture_lines",
    "picture_png",
    "pictures_markdown",
    "print_table",
    "write_picture_files",
    "table_text",
    "write_report",
]

#: Gradescope's specification (autograder_samples, docs/specs.md) documents no size limit for
#: results.json; we keep it under 1 MB so that a flood of student output can never make it
#: unreadable or too large to store, and each test's printed output under 16 kB (the start and
#: the end are kept, around a marker saying how much was cut).
GRADESCOPE_MAX_BYTES = 1_000_000
GRADESCOPE_OUTPUT_CHARS = 16_000
#: Exercises whose pictures are images, drawn as a PNG in the per-student feedback folder.
PNG_EXERCISES = frozenset({"saliency_map"})

STATUS_STYLE = {
    Status.PASSED: ("passed", "bold green"),
    Status.FAILED: ("failed", "bold red"),
    Status.NOT_IMPLEMENTED: ("not implemented", "yellow"),
    Status.ERROR: ("error", "bold red"),
    Status.TIMEOUT: ("timeout", "bold red"),
    Status.MEMORY: ("memory", "bold red"),
    Status.CRASHED: ("crashed", "bold red"),
    Status.GRADER_ERROR: ("grader error", "bold magenta"),
}


def _points(x: float) -> str:
    return f"{x:.2f}".rstrip("0").rstrip(".")


def _score_cell(r: Result) -> str:
    if r.status is Status.GRADER_ERROR:
        return f"— / {_points(r.max_score)}"
    return f"{_points(r.score)} / {_points(r.max_score)}"


def _table(result: SubmissionResult) -> Table:
    table = Table(show_lines=False, expand=False)
    table.add_column("exercise", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("score", justify="right", no_wrap=True)
    table.add_column("feedback", overflow="fold")
    for r in result.exercises:
        word, style = STATUS_STYLE[r.status]
        table.add_row(r.name, Text(word, style=style), _score_cell(r), Text(clean_text(r.feedback)))
    return table


def seed_hidden(result: SubmissionResult) -> bool:
    """True when the result's seed must not be shown (derived from the course secret, the
    grader's assigned seed, the course's or the bundle's problem seed)."""
    return bool(result.extra.get("seed_hidden"))


def notes(result: SubmissionResult) -> list[str]:
    """What the person grading must be told about this run (e.g. which problem set the numeric
    questions were checked against, or why they were not graded)."""
    return [clean_text(n) for n in result.extra.get("notes") or ()]


def summary_lines(result: SubmissionResult, *, path: str | None = None) -> list[str]:
    """The total line, the notes, and the line that says how to repeat the run (without the
    seed when it is hidden)."""
    n = len(result.exercises)
    passed = sum(r.passed for r in result.exercises)
    errors = sum(r.status is Status.GRADER_ERROR for r in result.exercises)
    total = (
        f"Total: {_points(result.score)} / {_points(result.max_score)} points, "
        f"{passed} of {n} exercises passed"
    )
    if errors:
        total += f"; the grader failed on {errors} (not your code: report it)"
    lines = [total, *notes(result)]
    source = clean_text(path if path is not None else result.source)
    source_kind = result.extra.get("seed_source")
    if source_kind == "student" and result.student:
        lines.append(
            f"Graded with the seed of student {clean_text(result.student)} (derived from the "
            f"course secret, not shown); repeat with: cnnlab grade {source} --student "
            f"{clean_text(result.student)}"
        )
    elif seed_hidden(result):
        lines.append("Graded with the seed your course assigned (not shown).")
    else:
        repeat = f"cnnlab grade {source} --seed {result.seed}"
        problem = result.extra.get("problem_seed")
        if result.extra.get("problem_seed_source") == "header" and problem != result.seed:
            repeat += f" --problem-seed {problem}"
        lines.append(f"Seed {result.seed}; repeat with: {repeat}")
    return lines


# ----------------------------------------------------------------------------- pictures


def _formatter(picture: Picture):
    """A cell formatter for the picture's numbers: whole numbers as such; otherwise the
    fewest significant digits (3 to 8) that make every differing pair of cells look
    different."""
    if picture.integer:
        return lambda v: str(int(v))
    values = [v for row in (*picture.expected, *picture.received) for v in row]
    if all(float(v).is_integer() and abs(v) < 1e9 for v in values):
        return lambda v: str(int(v))
    pairs = [
        (e, r)
        for er, rr, dr in zip(picture.expected, picture.received, picture.differs, strict=False)
        for e, r, d in zip(er, rr, dr, strict=False)
        if d
    ]
    for digits in range(3, 9):
        if all(f"{e:.{digits}g}" != f"{r:.{digits}g}" for e, r in pairs):
            break
    return lambda v, digits=digits: f"{v:.{digits}g}"


def _picture_heading(picture: Picture) -> str:
    where = f"case {picture.case}" + (f": {picture.label}" if picture.label else "")
    return f"{picture.title}, {where}"


def picture_lines(picture: Picture, *, color: bool = True) -> list[Text]:
    """``picture`` as lines of text: a heading, then the expected map and the received one
    side by side; differing cells are in brackets (and coloured when ``color``)."""
    fmt = _formatter(picture)
    cells = [[fmt(v) for v in row] for row in (*picture.expected, *picture.received)]
    width = max((len(c) for row in cells for c in row), default=1) + 2
    cols = max((len(row) for row in picture.expected), default=0)
    grid = cols * width
    lines = [
        Text(_picture_heading(picture) + " (cells in [ ] differ)", style="bold" if color else ""),
        Text("expected".ljust(grid) + "   " + "yours"),
    ]
    for e_row, r_row, d_row in zip(
        picture.expected, picture.received, picture.differs, strict=False
    ):
        line = Text()
        for side, row in (("expected", e_row), ("yours", r_row)):
            if side == "yours":
                line.append(" │ ")
            for value, differs in zip(row, d_row, strict=False):
                shown = f"[{fmt(value)}]" if differs else f" {fmt(value)} "
                style = ""
                if differs and color:
                    style = "bold green" if side == "expected" else "bold red"
                line.append(shown.rjust(width), style=style)
        lines.append(line)
    return lines


def pictures_markdown(result: Result, *, image: str | None = None) -> list[str]:
    """Markdown lines for ``result``'s pictures: one table per map, expected cells on the
    left, received on the right, differing cells in bold; then ``image`` (a relative path to
    :func:`picture_png`'s file) when given."""
    lines: list[str] = []
    for picture in result.pictures:
        fmt = _formatter(picture)
        cols = max((len(row) for row in picture.expected), default=0)
        lines += [f"**{_picture_heading(picture)}** (differing cells in bold)", ""]
        header = ["expected", *[""] * (cols - 1), "", "yours", *[""] * (cols - 1)]
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "|".join(["---:"] * cols + ["---"] + ["---:"] * cols) + "|")
        for e_row, r_row, d_row in zip(
            picture.expected, picture.received, picture.differs, strict=False
        ):
            marked = [
                [f"**{fmt(v)}**" if d else fmt(v) for v, d in zip(row, d_row, strict=False)]
                for row in (e_row, r_row)
            ]
            lines.append("| " + " | ".join([*marked[0], "", *marked[1]]) + " |")
        lines.append("")
    if image:
        lines += [f"![{result.name}: expected and yours, side by side]({image})", ""]
    return lines


def picture_png(result: Result) -> bytes | None:
    """A PNG of ``result``'s pictures: each map's expected and received values side by side
    on one colour scale, differing cells circled. ``None`` when there is nothing to draw.
    Uses matplotlib's Agg backend (no display needed)."""
    if not result.pictures:
        return None
    import matplotlib

    matplotlib.use("Agg", force=False)
    import numpy as np
    from matplotlib.figure import Figure

    n = len(result.pictures)
    fig = Figure(figsize=(6.4, 3.0 * n), dpi=100)
    axes = fig.subplots(n, 2, squeeze=False)
    for row, picture in enumerate(result.pictures):
        expected = np.asarray(picture.expected, dtype=float)
        received = np.asarray(picture.received, dtype=float)
        finite = np.concatenate([expected.ravel(), received[np.isfinite(received)].ravel()])
        lo, hi = float(finite.min()), float(finite.max())
        differs = np.argwhere(np.asarray(picture.differs, dtype=bool))
        for col, (title, data) in enumerate((("expected", expected), ("yours", received))):
            ax = axes[row][col]
            image = ax.imshow(data, cmap="viridis", vmin=lo, vmax=hi if hi > lo else lo + 1)
            ax.set_title(f"{picture.title} — {title}", fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
            if len(differs):
                ax.scatter(
                    differs[:, 1],
                    differs[:, 0],
                    s=30,
                    facecolors="none",
                    edgecolors="red",
                    linewidths=1.0,
                )
        fig.colorbar(image, ax=axes[row].tolist(), shrink=0.8)
    fig.suptitle(
        f"{result.name}, case {result.pictures[0].case}: expected and yours "
        "(red circles: cells that differ)",
        fontsize=10,
    )
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def write_picture_files(folder: str | os.PathLike[str], results) -> dict[str, str]:
    """Write :func:`picture_png` of every result of :data:`PNG_EXERCISES` that has pictures
    into ``folder`` (``<exercise>.png``, atomically); returns ``{exercise: "folder/file"}``,
    paths relative to ``folder``'s parent (where the feedback Markdown lives)."""
    folder = Path(folder)
    written: dict[str, str] = {}
    for r in results:
        if r.name not in PNG_EXERCISES or r.passed:
            continue
        data = picture_png(r)
        if data is None:
            continue
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"{r.name}.png"
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        written[r.name] = f"{folder.name}/{target.name}"
    return written


def print_table(
    result: SubmissionResult,
    *,
    console: Console | None = None,
    path: str | None = None,
    pictures: bool = True,
) -> None:
    """Print the table (exercise, status, score, feedback), then, for each exercise that
    failed with a small map, that map expected and received side by side, and the total and
    the seed."""
    console = console or Console()
    if not result.exercises:
        console.print("No exercises were graded.")
    else:
        console.print(_table(result))
    if pictures:
        color = console.color_system is not None
        for r in result.exercises:
            if r.passed or not r.pictures:
                continue
            console.print()
            console.print(Text(f"{r.name}:", style="bold" if color else ""))
            for line in picture_lines(r.pictures[0], color=color):
                console.print(line, highlight=False, soft_wrap=True)
        console.print()
    for line in summary_lines(result, path=path):
        console.print(line, highlight=False, markup=False, soft_wrap=True)


def table_text(result: SubmissionResult, *, width: int = 120, path: str | None = None) -> str:
    """:func:`print_table` as plain text (no colour), e.g. for logs and tests."""
    buffer = io.StringIO()
    console = Console(file=buffer, width=width, color_system=None, force_terminal=False)
    print_table(result, console=console, path=path)
    return buffer.getvalue()


def json_report(result: SubmissionResult) -> str:
    """The ``--json`` document of DESIGN.md: score, max_score, seed, exercises[] (plus
    ``notes`` and ``not_graded`` when there are any). Texts are cleaned; a hidden seed is
    written as ``null``."""
    doc = result.to_dict()
    if seed_hidden(result):
        doc["seed"] = None
    if notes(result):
        doc["notes"] = notes(result)
    if result.extra.get("not_graded"):
        doc["not_graded"] = dict(result.extra["not_graded"])
    return json.dumps(clean_doc(doc), indent=2, ensure_ascii=False) + "\n"


def gradescope_results(
    result: SubmissionResult,
    *,
    visibility: str = "visible",
    max_bytes: int = GRADESCOPE_MAX_BYTES,
) -> dict[str, Any]:
    """Gradescope's ``results.json``: ``score`` and ``tests[]`` (name, score,
    max_score, status ``"passed"``/``"failed"``, output, visibility).

    Every text is cleaned (:func:`grader.sanitize.clean_text`) and declared ``"text"``
    (``output_format``, ``test_output_format``, ``test_name_format``), so Gradescope renders
    nothing of it as HTML or Markdown; a test's printed output is cut to
    :data:`GRADESCOPE_OUTPUT_CHARS` and the whole document to ``max_bytes`` with a visible
    marker. No seed is ever written: students see this file.
    """
    tests = []
    for r in result.exercises:
        output = clean_text(r.feedback)
        if r.status is not Status.PASSED:
            output = f"[{STATUS_STYLE[r.status][0]}] {output}"
        if r.output:
            printed = truncate(clean_text(r.output), GRADESCOPE_OUTPUT_CHARS)
            output += f"\n\nYour code printed:\n{printed}"
        tests.append(
            {
                "name": r.name,
                "name_format": "text",
                "score": 0.0 if r.status is Status.GRADER_ERROR else float(r.score),
                "max_score": float(r.max_score),
                "status": "passed" if r.passed else "failed",
                "output": output,
                "output_format": "text",
                "visibility": visibility,
            }
        )
    lines = summary_lines(result)[:-1]  # the total and the notes; never the seed line
    for name, reason in (result.extra.get("not_graded") or {}).items():
        lines.append(f"{name}: not graded ({reason})")
    doc = {
        "score": float(sum(t["score"] for t in tests)),
        "output": "\n".join(lines),
        "output_format": "text",
        "test_output_format": "text",
        "test_name_format": "text",
        "visibility": visibility,
        "tests": tests,
        "execution_time": round(sum(r.wall_s for r in result.exercises), 3),
    }
    return fit_json(doc, max_bytes)


def gradescope_json(result: SubmissionResult, **kwargs: Any) -> str:
    """:func:`gradescope_results` as the text of ``results.json`` (UTF-8, within the budget)."""
    doc = gradescope_results(result, **kwargs)
    return json.dumps(doc, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


#: Statuses JUnit reports as a ``<failure>`` (an answer that is wrong, unfilled or missing);
#: every other one that did not pass is an ``<error>``.
UNANSWERED_OR_WRONG = (Status.FAILED, Status.NOT_IMPLEMENTED)


def junit_xml(result: SubmissionResult) -> str:
    """JUnit XML: one ``<testcase>`` per exercise; ``<failure>`` for wrong or unfilled
    answers, ``<error>`` when the code did not run to the end or the grader failed."""
    failures = sum(r.status in UNANSWERED_OR_WRONG for r in result.exercises)
    errors = sum(not r.passed and r.status not in UNANSWERED_OR_WRONG for r in result.exercises)
    suite = ET.Element(
        "testsuite",
        {
            "name": "cnnlab" + (f".{clean_text(result.student)}" if result.student else ""),
            "tests": str(len(result.exercises)),
            "failures": str(failures),
            "errors": str(errors),
            "skipped": "0",
            "time": f"{sum(r.wall_s for r in result.exercises):.3f}",
        },
    )
    props = ET.SubElement(suite, "properties")
    if not seed_hidden(result):
        ET.SubElement(props, "property", {"name": "seed", "value": str(result.seed)})
    ET.SubElement(props, "property", {"name": "score", "value": _points(result.score)})
    ET.SubElement(props, "property", {"name": "max_score", "value": _points(result.max_score)})
    for r in result.exercises:
        case = ET.SubElement(
            suite,
            "testcase",
            {"classname": "cnnlab", "name": r.name, "time": f"{r.wall_s:.3f}"},
        )
        if not r.passed:
            tag = "failure" if r.status in UNANSWERED_OR_WRONG else "error"
            feedback = clean_text(r.feedback)
            element = ET.SubElement(case, tag, {"type": r.status.value, "message": feedback})
            element.text = (
                f"{r.status.value}: {feedback}\nscore {_points(r.score)} / {_points(r.max_score)}"
            )
        if r.output:
            ET.SubElement(case, "system-out").text = clean_text(r.output)
    root = ET.Element("testsuites")
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def check_report_path(path: str | os.PathLike[str], option: str) -> Path:
    """Refuse, before grading (or any slow work), a report path that cannot be written: a
    folder, a path under a file, a folder or file without write permission. Missing folders
    are fine (:func:`write_report` makes them).

    Raises:
        ConfigError: saying which, and what to do next.
    """
    path = Path(path)
    if path.is_dir():
        raise ConfigError(
            f"{option} {str(path)!r} is a folder: give a file name, e.g. {path / 'results.json'}"
        )
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ConfigError(
                    f"{option} {str(path)!r}: {str(parent)!r} is a file, not a folder"
                )
            if not os.access(parent, os.W_OK | os.X_OK) or (
                path.exists() and not os.access(path, os.W_OK)
            ):
                raise ConfigError(
                    f"{option} {str(path)!r}: no permission to write there; choose another path"
                )
            break
    return path


def write_report(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` to ``path`` atomically, creating missing parent folders; an existing
    file is only replaced once the new one is complete."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise ConfigError(
            f"cannot write {str(path)!r}: {exc.strerror}; choose another path"
        ) from exc
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise ConfigError(
                f"cannot write {str(path)!r}: {exc.strerror}; choose another path"
            ) from exc
        raise
    return path
