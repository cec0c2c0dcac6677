"""`cnnlab init`: create a course (cnnlab.toml, the course secret, git ignore rules).

A thin shell over :func:`grader.course.init_course`.
"""

from __future__ import annotations

import click

from grader.commands._common import translate_errors


@click.command("init")
@click.argument("folder", default=".", required=False, metavar="[DIR]")
@click.option("--name", help="The course's name (default: the folder's name).")
@click.option(
    "--secret-file",
    metavar="FILE",
    help="Where to keep the course secret (default: your cnnlab config folder, outside "
    "every repository). An existing file is kept as the secret.",
)
@translate_errors
def init_command(folder: str, name: str | None, secret_file: str | None) -> None:
    """Create a course in DIR (default: here): cnnlab.toml, a course secret, ignore rules.

    cnnlab.toml names the assignments (their exercises by name or topic, points, time limits,
    problem-set seeds); every command reads it (--assignment NAME). The course secret, from
    which each student's own seed is derived, is written outside the folder (your cnnlab
    config folder, mode 600) unless --secret-file says otherwise; .gitignore gets rules for
    everything secret-bearing the commands write (solutions, gradebooks, autograder zips).
    An existing cnnlab.toml is never overwritten.

    \b
    Example:
      cnnlab init cnn-2026 --name "CNNs, spring 2026"
      cd cnn-2026 && cnnlab list && cnnlab generate --assignment hw1
    """
    from grader.course import init_course

    report = init_course(folder, name=name, secret_file=secret_file)
    click.echo(f"created {report.course_file}")
    what = "new course secret" if report.secret_created else "existing course secret kept"
    click.echo(f"{what}: {report.secret_file} (back it up; never commit or share it)")
    click.echo(f"ignore rules: {report.gitignore}")
    for warning in report.warnings:
        click.echo(f"warning: {warning}", err=True)
    click.echo("next: edit the assignments in cnnlab.toml, then `cnnlab list`")
