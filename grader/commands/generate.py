"""`cnnlab generate`: regenerate the problem set (stubs, solutions, notebooks) for a seed.

A thin shell over :mod:`grader.problemset.generate`; the library raises typed errors, which
``translate_errors`` turns into messages and exit status 2.
"""

from __future__ import annotations

from pathlib import Path

import click

from grader.commands._common import CourseContext, course_options, translate_errors
from grader.seeds import DEFAULT_ASSIGNMENT, DEFAULT_SEED


def resolve_seed(
    seed: int | None,
    student: str | None,
    secret_file: str | None,
    assignment: str = DEFAULT_ASSIGNMENT,
) -> int:
    """The seed to use: derived from the course secret with ``student``, else ``seed``, else
    the default seed.

    Raises:
        ConfigError: both a seed and a student were given, or the secret is missing.
    """
    from grader.errors import ConfigError
    from grader.seeds import derive_seed, load_secret

    if student is not None:
        if seed is not None:
            raise ConfigError(
                "pass either --seed or --student, not both: a student's seed is derived from "
                "the course secret"
            )
        return derive_seed(load_secret(secret_file), student, assignment)
    return DEFAULT_SEED if seed is None else seed


@click.command("generate")
@click.option(
    "--seed",
    type=click.IntRange(0, 2**31 - 2),
    help=f"Seed of the numbers in questions and of every random choice (default {DEFAULT_SEED}).",
)
@click.option(
    "--out",
    "out",
    default=".",
    show_default=True,
    metavar="DIR",
    help="Folder to write exercises/ and solutions/ into (the default regenerates them in place).",
)
@click.option(
    "--student",
    metavar="ID",
    help="Make this student's variant: its seed is derived from the course secret and the id.",
)
@click.option(
    "--secret-file",
    metavar="FILE",
    help="File holding the course secret (default $CNNLAB_COURSE_SECRET_FILE, "
    "else $CNNLAB_COURSE_SECRET). Never commit it.",
)
@click.option(
    "--no-notebooks", is_flag=True, help="Skip the notebooks (only the .py modules and README)."
)
@click.option(
    "--force",
    is_flag=True,
    help="Overwrite generated files even if they were edited since (your edits are lost).",
)
@course_options("generate")
@translate_errors
def generate_command(
    seed: int | None,
    out: str,
    student: str | None,
    secret_file: str | None,
    assignment: str,
    no_notebooks: bool,
    force: bool,
    course: CourseContext,
) -> None:
    """Regenerate the problem set from the reference: stubs, solutions and notebooks.

    Writes exercises/ (student stubs, README, notebooks/) and solutions/ (reference solutions
    and the nbgrader source notebooks) under --out, one file at a time and atomically. The
    same seed always gives the same files; another seed gives other numbers in the questions.
    A file edited since it was generated is never overwritten without --force.

    \b
    Example:
      cnnlab generate                              # default seed, in place
      cnnlab generate --seed 7 --out /tmp/ps7
      cnnlab generate --student s1234 --secret-file ~/course.secret --out variants/s1234
      cnnlab generate --assignment hw1             # in a course: problemsets/hw1/
    """
    from grader.problemset.generate import generate

    if seed is None and student is None:
        seed = course.problem_seed(secret_file)  # the assignment's seed (None: no course)
    out = course.out(out, "generate", student=student)
    resolved = resolve_seed(seed, student, secret_file, assignment)
    report = generate(
        Path(out), seed=resolved, student=student, force=force, notebooks=not no_notebooks
    )
    where = Path(out)
    what = f"student {student}" if student is not None else f"seed {resolved}"
    click.echo(
        f"generated the problem set for {what} in {where}/: {len(report.written)} written, "
        f"{len(report.unchanged)} unchanged, {len(report.removed)} removed"
    )
    for rel in report.written:
        click.echo(f"  wrote {where / rel}")
    for rel in report.removed:
        click.echo(f"  removed {where / rel}")
    if student is not None:
        from grader import vcs

        warning = vcs.secret_warning(
            where, f"student {student}'s problem set with its solutions (solutions/)"
        )
        if warning:
            click.echo(warning, err=True)
