"""`cnnlab new-exercise`: scaffold a plugin package with one exercise of your own.

A thin shell over :func:`grader.scaffold.new_exercise`.
"""

from __future__ import annotations

import click

from grader.commands._common import translate_errors


@click.command("new-exercise")
@click.argument("name")
@click.option(
    "--topic",
    required=True,
    help="Lecture topic (the student module <topic>.py it goes into), e.g. pooling; "
    "`cnnlab list` shows the topics. A new topic gets a module of its own.",
)
@click.option(
    "--out",
    metavar="DIR",
    help="Folder for the package (default: ./cnnlab-<name>); must not exist or be empty.",
)
@translate_errors
def new_exercise_command(name: str, topic: str, out: str | None) -> None:
    """Scaffold a package with exercise NAME of your own, registered with cnnlab.

    The package has a pyproject.toml with the `cnnlab.exercises` entry point, the reference
    function, an ExerciseSpec with one case and one known mistake, and a test that grades it
    through cnnlab's sandbox. It works as generated (a ReLU placeholder): install it, run its
    tests, then make it your exercise (docs/authoring.md).

    \b
    Example:
      cnnlab new-exercise avgpool2d_backward --topic pooling
      pip install -e cnnlab-avgpool2d-backward && cnnlab list
    """
    from grader import registry
    from grader.scaffold import new_exercise

    made = new_exercise(name, topic, out)
    click.echo(f"wrote {made.out}/ (exercise {made.number} {name!r}, topic {topic!r}):")
    for rel in made.files:
        click.echo(f"  {rel}")
    if topic not in registry.topics():
        click.echo(f"note: {topic!r} is a new topic: students get it as {topic}.py")
    click.echo(
        f"next: pip install -e {made.out} && python -m pytest {made.out}/tests && cnnlab list"
    )
