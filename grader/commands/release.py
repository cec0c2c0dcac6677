"""`cnnlab release`: write the student bundle (stubs, notebooks, grader runtime, public cases).

A thin shell over :mod:`grader.problemset.bundle`; typed errors become messages and exit status 2.
"""

from __future__ import annotations

from pathlib import Path

import click

from grader.commands._common import translate_errors
from grader.seeds import DEFAULT_ASSIGNMENT


@click.command("release")
@click.option(
    "--out",
    default="release",
    show_default=True,
    metavar="DIR",
    help="Folder to write the bundle into (must be empty, or pass --force).",
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
    "--secret-file",
    metavar="FILE",
    help="File holding the course secret (default $CNNLAB_COURSE_SECRET_FILE, "
    "else $CNNLAB_COURSE_SECRET).",
)
@click.option(
    "--assignment",
    default=DEFAULT_ASSIGNMENT,
    show_default=True,
    help="Assignment name mixed into a student's seed.",
)
@click.option("--force", is_flag=True, help="Replace a non-empty --out folder.")
@translate_errors
def release_command(
    out: str,
    seed: int | None,
    student: str | None,
    secret_file: str | None,
    assignment: str,
    force: bool,
) -> None:
    """Write the bundle students receive: stubs, notebooks, grader runtime, public cases.

    The bundle holds no reference code, no solutions and no course secret. Students grade
    inside it with `python -m grader grade exercises/`, against public check cases drawn
    from a fresh public seed; you grade their submissions with the problem set's seed
    (`cnnlab grade --seed N`, or `--student ID` for per-student variants).

    \b
    Example:
      cnnlab release --out release/
      cnnlab release --student s1234 --secret-file ~/course.secret --out bundles/s1234
    """
    from grader.commands.generate import resolve_seed
    from grader.problemset.bundle import write_bundle

    resolved = resolve_seed(seed, student, secret_file, assignment)
    bundle = write_bundle(Path(out), seed=resolved, student=student, force=force)
    who = f"student {student}" if student is not None else f"seed {resolved}"
    click.echo(
        f"wrote the student bundle for {who} to {bundle.out}/ ({len(bundle.files)} files; "
        f"public check cases use seed {bundle.public_seed})"
    )
    click.echo(f"students run: cd {bundle.out} && python -m grader grade exercises/")
