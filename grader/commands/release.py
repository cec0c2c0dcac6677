"""`cnnlab release`: write the student bundle (stubs, notebooks, grader runtime, public cases),
for everyone, one student, or every student of a roster in one run.

A thin shell over :mod:`grader.problemset.bundle`; typed errors become messages and exit status 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from grader.commands._common import CourseContext, course_options, translate_errors


@click.command("release")
@click.option(
    "--out",
    default="release",
    show_default=True,
    metavar="DIR",
    help="Folder to write the bundle into (must be empty, or pass --force); with --students, "
    "one sub-folder per student.",
)
@click.option(
    "--seed",
    type=click.IntRange(0, 2**31 - 2),
    help="Seed of the problem set (default: the default seed). Keep it private: it is the "
    "seed you grade with.",
)
@click.option(
    "--student",
    metavar="ID",
    help="Release this student's variant (seed derived from the course secret and the id).",
)
@click.option(
    "--students",
    "roster",
    metavar="CSV",
    help="Release every student of this roster (a CSV with an `id` column, as nbgrader's "
    "student import reads it) into OUT/<id>/, in one run.",
)
@click.option(
    "--secret-file",
    metavar="FILE",
    help="File holding the course secret (default $CNNLAB_COURSE_SECRET_FILE, "
    "else $CNNLAB_COURSE_SECRET).",
)
@click.option("--force", is_flag=True, help="Replace non-empty output folders.")
@course_options("release")
@translate_errors
def release_command(
    out: str,
    seed: int | None,
    student: str | None,
    roster: str | None,
    secret_file: str | None,
    assignment: str,
    force: bool,
    course: CourseContext,
) -> None:
    """Write the bundle students receive: stubs, notebooks, grader runtime, public cases.

    The bundle holds no reference code, no solutions, no course secret and not the problem
    set's seed. Students install it with `pip install -e .` in its folder and grade with
    `cnnlab grade exercises/`, against public check cases drawn from a public seed that a
    CSPRNG draws once per release run (recorded in cnnlab-bundle.json); you grade their
    submissions with the problem set's seed (`--seed N`, or `--student ID` for variants).

    \b
    Example:
      cnnlab release --out release/
      cnnlab release --student s1234 --secret-file ~/course.secret --out bundles/s1234
      cnnlab release --students roster.csv --secret-file ~/course.secret --out bundles/
      cnnlab release --assignment hw1              # in a course: release/hw1/
    """
    from grader.commands.generate import resolve_seed
    from grader.errors import ConfigError
    from grader.problemset.bundle import write_bundle

    if roster is not None:
        if student is not None or seed is not None:
            raise ConfigError(
                "--students releases every student of the roster with their own seed: drop "
                "--student and --seed"
            )
        _release_roster(
            Path(roster), Path(course.out(out, "release")), secret_file, assignment, force
        )
        return
    if seed is None and student is None:
        seed = course.problem_seed(secret_file)  # the assignment's seed (None: no course)
    out = course.out(out, "release", student=student)
    resolved = resolve_seed(seed, student, secret_file, assignment)
    bundle = write_bundle(Path(out), seed=resolved, student=student, force=force)
    who = f"student {student}" if student is not None else "the problem set"
    click.echo(
        f"wrote the student bundle for {who} to {bundle.out}/ ({len(bundle.files)} files; "
        f"public check cases use seed {bundle.public_seed}, drawn for this release)"
    )
    click.echo(f"students run: cd {bundle.out} && pip install -e . && cnnlab grade exercises/")


def _release_roster(
    roster: Path, out: Path, secret_file: str | None, assignment: str, force: bool
) -> None:
    """Every student's bundle into ``out/<student>/``: the roster and every target folder are
    checked before anything is written; the runtime and the public cases are made once."""
    from grader.errors import ConfigError
    from grader.problemset.bundle import prepare_release, write_bundle
    from grader.problemset.roster import read_roster
    from grader.seeds import derive_seed, load_secret

    students = read_roster(roster)
    secret = load_secret(secret_file)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {str(out)!r} is a file; pass a folder")
    existing = {p.name.casefold(): p.name for p in out.iterdir()} if out.is_dir() else {}
    clash = [
        (s, existing[s.casefold()])
        for s in students
        if s.casefold() in existing and existing[s.casefold()] != s
    ]
    if clash:  # S1/ next to s1/: one folder on macOS and Windows, and one student
        s, there = clash[0]
        raise ConfigError(
            f"{str(out)!r} already has a folder {there!r} for student {s!r}: ids that differ "
            "only in case are one folder on macOS and Windows; use the id as written before, "
            "or another --out"
        )
    busy = [s for s in students if (out / s).is_dir() and any((out / s).iterdir())]
    if busy and not force:
        shown = ", ".join(busy[:5]) + (f" and {len(busy) - 5} more" if len(busy) > 5 else "")
        raise ConfigError(
            f"{len(busy)} bundle folder(s) in {str(out)!r} are not empty ({shown}); pass "
            "another --out, or --force to replace them"
        )
    seeds = {s: derive_seed(secret, s, assignment) for s in students}
    out.mkdir(parents=True, exist_ok=True)
    with _Progress(len(students)) as progress:
        progress.step("public check cases")
        with prepare_release(avoid_seeds=seeds.values()) as release:
            for s in students:
                progress.step(s)
                write_bundle(out / s, seed=seeds[s], student=s, force=force, release=release)
                progress.done(s)
    click.echo(
        f"wrote {len(students)} student bundle{'s' if len(students) != 1 else ''} to "
        f"{out}/<student>/ (public check cases use "
        f"seed {release.public_seed}, drawn for this release)"
    )


class _Progress:
    """A rich progress bar on a terminal; one line per student otherwise (logs, CI)."""

    def __init__(self, total: int) -> None:
        from rich.console import Console

        self.console = Console(stderr=True)
        self.total = total
        self.count = 0
        self.bar: Any = None
        if self.console.is_terminal:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self.bar = Progress(
                TextColumn("releasing"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.description}"),
                console=self.console,
            )
            self.task = self.bar.add_task("", total=total)

    def __enter__(self) -> _Progress:
        if self.bar is not None:
            self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()

    def step(self, what: str) -> None:
        if self.bar is not None:
            self.bar.update(self.task, description=what)

    def done(self, student: str) -> None:
        self.count += 1
        if self.bar is not None:
            self.bar.update(self.task, completed=self.count)
        else:
            self.console.print(
                f"[{self.count}/{self.total}] {student}", highlight=False, markup=False
            )
