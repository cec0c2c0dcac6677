"""`cnnlab batch`: grade a whole class into a SQLite gradebook, a CSV, feedback files and a
PNG report. The work is done by :mod:`grader.classroom.batch`; this is the command-line shell."""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Any

import click

from grader import seeds, vcs
from grader.commands._common import EXIT_GRADER, CourseContext, course_options, translate_errors
from grader.errors import ConfigError
from grader.sanitize import clean_text

EXIT_INTERRUPTED = 130


@click.command("batch")
@click.argument("submissions", type=click.Path(path_type=Path))
@click.option(
    "-j",
    "--jobs",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Submissions graded in parallel (worker processes, each with its own sandbox).",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path),
    default=Path("gradebook"),
    show_default=True,
    help="Folder for gradebook.sqlite, grades.csv, report.png and feedback/.",
)
@click.option(
    "--resume",
    is_flag=True,
    help="Skip students already graded with the same files and settings (a changed "
    "resubmission, and any grader error, is graded again).",
)
@click.option(
    "--secret-file",
    type=click.Path(path_type=Path),
    help="File holding the course secret; each student's seed is derived from it and the "
    "student id. Default: $CNNLAB_COURSE_SECRET_FILE or $CNNLAB_COURSE_SECRET.",
)
@click.option(
    "--seed",
    type=click.IntRange(0, 2**31 - 2),
    help="Grade everyone with this one seed instead of per-student seeds (no secret needed).",
)
@click.option(
    "-e",
    "--exercise",
    "exercises",
    multiple=True,
    metavar="NAME",
    help="Grade only this exercise (repeatable). Default: all.",
)
@click.option(
    "--layout",
    type=click.Choice(["auto", "folders", "canvas", "moodle", "blackboard", "nbgrader"]),
    default="auto",
    show_default=True,
    help="How SUBMISSIONS is laid out: one folder/.zip/.py/.ipynb per student (folders), an "
    "LMS download (canvas, moodle, blackboard; unzipped) or nbgrader's submitted/ folder. "
    "auto detects it from the file names (see docs/batch.md).",
)
@click.option(
    "--submission-timeout",
    type=click.FloatRange(1.0),
    default=None,
    help="Seconds after which a grading worker stuck on one submission is killed (a grader "
    "fault, recorded as grader_error). Default: twice the exercises' time limits + 60 s.",
)
@click.option(
    "--allow-weak-sandbox",
    is_flag=True,
    help="Grade even where the sandbox has no filesystem layer (see `cnnlab doctor`); every "
    "report then says so. Without it such a machine refuses to grade for credit.",
)
@click.option(
    "--nbgrader-gradebook",
    is_flag=True,
    help="nbgrader course only: also write every score and feedback into the course's nbgrader "
    "gradebook (gradebook.db, and autograded/), so formgrader and `nbgrader export` show them "
    "without `nbgrader autograde`.",
)
@course_options("batch")
@translate_errors
def batch(
    submissions: Path,
    jobs: int,
    out_dir: Path,
    resume: bool,
    secret_file: Path | None,
    seed: int | None,
    exercises: tuple[str, ...],
    assignment: str | None,
    layout: str,
    submission_timeout: float | None,
    course: CourseContext,
    allow_weak_sandbox: bool = False,
    nbgrader_gradebook: bool = False,
) -> None:
    """Grade a class: one submission per student in SUBMISSIONS.

    SUBMISSIONS holds one folder, .zip, .py or .ipynb per student (the name is the student
    id), is an unzipped Canvas, Moodle or Blackboard download (detected from the file names,
    or chosen with --layout), or is an nbgrader course folder with
    submitted/<student>/<assignment>/. Each student
    is graded with a seed derived from the course secret and their id, so nobody can shop
    for easy numbers; --seed N grades everyone with one seed instead.

    Each result is written to OUT/gradebook.sqlite as soon as it is graded (Ctrl-C keeps
    every finished grade; --resume continues). At the end OUT/grades.csv (one row per
    student), OUT/report.png (score distributions and the most common mistakes) and
    OUT/feedback/<assignment>/<student>.md are written.

    --assignment: in a course (cnnlab.toml), the assignment graded (its exercises, points,
    time limits; one seed for everyone unless it has per-student variants; OUT defaults to
    gradebook/<assignment>/). nbgrader layout: grade only this assignment (default: every one
    found). Flat layout: the name stored in the gradebook and used in per-student seeds
    (default 'cnn').

    Exit status: 0 the batch completed (even if students failed), 2 bad input, 3 a grader
    error remains (those students have no score: rerun with --resume), 130 interrupted.

    \b
    Example:
      export CNNLAB_COURSE_SECRET_FILE=~/course/secret.txt
      cnnlab batch submissions/ --jobs 2 --out gradebook/
      cnnlab batch submissions/ --out gradebook/ --resume
      cnnlab batch nbgrader-course/ --assignment cnn --seed 7 -e maxpool2d_backward
      cnnlab batch nbgrader-course/ --seed 2026 --nbgrader-gradebook
      cnnlab batch canvas-download/ --layout canvas --out gradebook/
      cnnlab batch submissions/ --assignment hw1       # in a course: gradebook/hw1/
    """
    from grader import registry
    from grader.classroom import batch as batchlib
    from grader.classroom import report
    from grader.classroom.gradebook import Gradebook, this_run_status, to_csv, write_atomic

    if seed is not None and secret_file is not None:
        raise ConfigError("give --seed N (one seed for everyone) or --secret-file, not both")
    weak = _weak_sandbox_gate(allow_weak_sandbox)
    if seed is None and secret_file is None:
        seed = course.shared_seed()  # an assignment without per-student variants: its seed
    out_dir = course.out(out_dir, "batch", param="out_dir")
    if course.active and not exercises:
        exercises = course.assignment.exercises
    if seed is not None:
        policy = batchlib.SeedPolicy(fixed=seed)
    else:
        try:
            policy = batchlib.SeedPolicy(secret=seeds.load_secret(secret_file))
        except ConfigError as exc:
            raise ConfigError(
                f"{exc}; or pass --seed N to grade everyone with one seed "
                "(then students could share answers to the same numbers)"
            ) from None
    specs = registry.select(list(exercises))  # unknown names fail here, before any work
    if not specs:
        raise ConfigError("no exercises are registered: run `cnnlab list` to check the install")
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"--out {str(out_dir)!r} is a file; pass a folder")

    found = batchlib.discover(
        submissions,
        assignment=assignment or seeds.DEFAULT_ASSIGNMENT,
        only_assignment=assignment,
        exclude=[out_dir],
        layout=layout,
    )
    entries = batchlib.normalize_entries(found.entries)  # duplicates: exit 2, nothing written
    if found.layout != "folders":
        click.echo(f"layout: {found.layout} ({len(found.entries)} students)", err=True)
    for entry in found.entries:  # what the layout decided: a newer upload won, a late flag
        who = f"{entry.student} ({entry.name})" if entry.name else entry.student
        for note in entry.notes:
            click.echo(f"note: {who}: {note}", err=True)
        if entry.late:
            click.echo(f"late: {who} (marked late by the LMS)", err=True)
    for path, reason in found.skipped:
        click.echo(f"skipped {clean_text(path.name)}: {clean_text(reason)}", err=True)
    if nbgrader_gradebook:  # fail before grading, not after
        from grader.problemset import nbgrader_gradebook as nbgb

        nb_course = nbgb.course_root(submissions)
        nbgb.check_course(nb_course, {e.assignment for e in found.entries})

    out_dir.mkdir(parents=True, exist_ok=True)
    _check_writable(out_dir)
    warning = vcs.secret_warning(out_dir, "every student's grades, feedback and seeds")
    if warning:
        click.echo(warning, err=True)
    stop = _StopFlag()
    with Gradebook(out_dir / "gradebook.sqlite") as book, _Progress() as progress, stop:
        summary = batchlib.run_batch(
            entries,
            book,
            policy=policy,
            exercises=list(exercises) or None,
            jobs=jobs,
            resume=resume,
            feedback_dir=out_dir / "feedback",
            submission_timeout_s=submission_timeout,
            on_start=progress.start,
            on_progress=progress.advance,
            stop_requested=stop.is_set,
        )
        assignments = sorted({e.assignment for e in entries})
        rows = [r for a in assignments for r in book.submissions(a)]
        names = [s.name for s in specs]
        present = {(e.student, e.assignment) for e in entries}
        graded = {(r.student, r.assignment) for r in summary.rows}
        kept = set(summary.kept)
        this_run = {
            (r.student, r.assignment): this_run_status(r, present=present, graded=graded, kept=kept)
            for r in rows
        }
        missing = [r for r in rows if (r.student, r.assignment) not in present]
        csv_text = to_csv(rows, names, this_run=this_run)
        if weak:
            csv_text = _with_weak_column(csv_text, weak)
            _mark_feedback_weak(out_dir / "feedback", weak)
        csv_path = write_atomic(out_dir / "grades.csv", csv_text)
        batchlib.feedback_index(out_dir / "feedback", rows)
        png_path = None
        if rows:
            png_path = report.write_report(
                out_dir / "report.png",
                rows,
                exercises=specs,
                title=f"cnnlab batch: assignment {', '.join(assignments)}",
            )

    if nbgrader_gradebook:
        # the students found in submitted/ now (a student removed since keeps nbgrader's rows)
        wrote = nbgb.write_grades(
            nb_course, [r for r in rows if (r.student, r.assignment) in present]
        )
        click.echo(
            f"nbgrader:  {len(wrote.submissions)} submissions, {wrote.grades} grades in "
            f"{nbgb.db_url(nb_course)}"
            + (f" ({wrote.flagged} left for a manual grade)" if wrote.flagged else "")
        )
    n_flagged = sum(1 for r in rows if r.status == "grader_error")
    graded = [r.score / r.max_score for r in rows if r.score is not None and r.max_score]
    mean = f", mean {100 * sum(graded) / len(graded):.0f}%" if graded else ""
    click.echo(
        f"{summary.graded + summary.unreadable + summary.grader_errors} graded in "
        f"{summary.wall_s:.1f} s ({summary.skipped_resume} skipped as already graded, "
        f"{summary.unreadable} unreadable, {summary.retried} retried){mean}"
    )
    if weak:
        click.echo(f"WEAK SANDBOX: {weak} (said in grades.csv and every feedback file)", err=True)
    click.echo(f"gradebook: {out_dir / 'gradebook.sqlite'}")
    click.echo(f"grades:    {csv_path}")
    if png_path is not None:
        click.echo(f"report:    {png_path}")
    click.echo(f"feedback:  {out_dir / 'feedback'}")
    if missing:
        who = ", ".join(r.student for r in missing[:10]) + (" …" if len(missing) > 10 else "")
        click.echo(
            f"{len(missing)} student(s) in the gradebook have no submission in {submissions} "
            f"any more ({who}): their older grades are kept and marked 'missing from this run' "
            "in grades.csv",
            err=True,
        )
    if summary.interrupted:
        click.echo(
            "interrupted: every finished grade is saved; run the same command with --resume "
            "to grade the rest",
            err=True,
        )
        sys.exit(EXIT_INTERRUPTED)
    if n_flagged:
        click.echo(
            f"{n_flagged} submission(s) have a grader error and no score (flagged in "
            "grades.csv); run again with --resume to retry them",
            err=True,
        )
        sys.exit(EXIT_GRADER)


def _check_writable(out_dir: Path) -> None:
    """Refuse, before any grading, an --out folder this process cannot write to (a grade that
    cannot be saved is work lost)."""
    import tempfile

    try:
        with tempfile.NamedTemporaryFile(dir=out_dir, prefix=".cnnlab-write-test-"):
            pass
    except OSError as exc:
        raise ConfigError(
            f"cannot write into --out {str(out_dir)!r} ({exc.strerror}): the gradebook, "
            "grades.csv and the feedback go there; make the folder writable (e.g. `chmod u+w "
            f"{out_dir}`) or pass another --out folder. Nothing was graded."
        ) from exc


class _StopFlag:
    """First Ctrl-C: stop starting new submissions and save; second: stop at once."""

    def __init__(self) -> None:
        self._set = False
        self._old: Any = None

    def is_set(self) -> bool:
        return self._set

    def _handle(self, signum: int, frame: Any) -> None:
        if self._set:
            raise KeyboardInterrupt
        self._set = True
        click.echo("\nstopping after saving what is finished (Ctrl-C again to quit now)", err=True)

    def __enter__(self) -> _StopFlag:
        try:
            self._old = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread (e.g. a test runner): no handler
            self._old = None
        return self

    def __exit__(self, *exc: object) -> None:
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)


class _Progress:
    """A rich progress bar on a terminal (counts and time left); one line per submission
    otherwise (logs, CI)."""

    def __init__(self) -> None:
        from rich.console import Console

        self.console = Console(stderr=True)
        self.live = self.console.is_terminal
        self.bar: Any = None
        self.task: Any = None
        self.counts = {"passed all": 0, "some failed": 0, "unreadable": 0, "grader error": 0}

    def __enter__(self) -> _Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()

    def start(self, to_grade: int, skipped: int) -> None:
        if skipped:
            self.console.print(f"{skipped} already graded (--resume): skipped")
        if not self.live:
            self.console.print(f"grading {to_grade} submissions")
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.bar = Progress(
            TextColumn("grading"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("left"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[counts]}"),
            console=self.console,
        )
        self.task = self.bar.add_task("grading", total=to_grade, counts="")
        self.bar.start()

    def advance(self, row: Any, done: int, total: int) -> None:
        if row.status == "grader_error":
            key = "grader error"
        elif row.status == "unreadable":
            key = "unreadable"
        elif all(r.status.value == "passed" for r in row.results):
            key = "passed all"
        else:
            key = "some failed"
        self.counts[key] += 1
        counts = " · ".join(f"{k} {v}" for k, v in self.counts.items() if v)
        if self.bar is not None:
            self.bar.update(self.task, completed=done, counts=counts)
        else:
            score = "—" if row.score is None else f"{row.score:g}"
            who = clean_text(row.student)
            self.console.print(
                f"[{done:>{len(str(total))}}/{total}] {who}: {score}/{row.max_score:g} ({key})",
                highlight=False,
                markup=False,
            )


#: What a report says when grading ran without the filesystem layer.
WEAK_NOTE = "graded in a weak sandbox"


def _weak_sandbox_gate(allowed: bool) -> str | None:
    """``None`` when the sandbox's filesystem layer holds here; else, with
    ``--allow-weak-sandbox``, the note every report carries; without it, a refusal."""
    from grader.sandbox.layers import filesystem_layer_probe

    reason = filesystem_layer_probe()
    if reason is None:
        return None
    if not allowed:
        raise ConfigError(
            f"refusing to grade for credit: the sandbox has no filesystem layer here ({reason}), "
            "so a student's code could read the reference and classmates' files. Run "
            "`cnnlab doctor` for details; grade on a machine where it holds (Linux 5.13+), or "
            "pass --allow-weak-sandbox to grade anyway (every report will say so)"
        )
    return f"{WEAK_NOTE}: {reason}"


def _with_weak_column(csv_text: str, note: str) -> str:
    """``csv_text`` with a ``sandbox`` column holding ``note`` on every row."""
    import csv
    import io

    rows = list(csv.reader(io.StringIO(csv_text)))
    if not rows:
        return csv_text
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*rows[0], "sandbox"])
    for row in rows[1:]:
        writer.writerow([*row, note])
    return out.getvalue()


def _mark_feedback_weak(folder: Path, note: str) -> None:
    """Put ``note`` under the title of every feedback file (each rewritten atomically; the
    owner line stays first)."""
    from grader.classroom.gradebook import write_atomic

    line = f"> **Note:** {note}."
    for path in sorted(folder.rglob("*.md")) if folder.is_dir() else []:
        lines = path.read_text(encoding="utf-8").split("\n")
        if line in lines:
            continue
        title = next((i for i, text in enumerate(lines) if text.startswith("# ")), 0)
        lines[title + 1 : title + 1] = ["", line]
        write_atomic(path, "\n".join(lines))
