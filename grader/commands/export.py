"""`cnnlab export ...`: package cnnlab's grading for a hosted grading service."""

from __future__ import annotations

import tempfile
from pathlib import Path

import click

from grader import seeds, vcs
from grader.commands._common import CourseContext, course_options, translate_errors
from grader.errors import ConfigError


@click.group("export")
def export() -> None:
    """Export an autograder for a hosted grading service.

    \b
    Example:
      cnnlab export gradescope --out autograder.zip
    """


@export.command("gradescope")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("autograder.zip"),
    show_default=True,
    help="The zip to upload to Gradescope.",
)
@click.option(
    "--secret-file",
    type=click.Path(path_type=Path),
    help="Course secret for per-student seeds (shipped inside the zip: keep it private). "
    "Default: $CNNLAB_COURSE_SECRET_FILE or $CNNLAB_COURSE_SECRET.",
)
@click.option(
    "--seed",
    type=click.IntRange(0, 2**31 - 2),
    help="Grade every submission with this one seed instead (no secret in the zip).",
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
    "--id-field",
    type=click.Choice(["email", "sid"]),
    default="email",
    show_default=True,
    help="Field of Gradescope's submission_metadata.json that is the student id of per-student "
    "seeds: the id you generated their problem set with (`cnnlab generate --student ID`) and "
    "name their batch folder after. Gradescope always records the e-mail; sid only when your "
    "roster has student ids.",
)
@click.option(
    "--wheel",
    type=click.Path(path_type=Path),
    help="A cnnlab wheel or sdist to ship; default: built from this source checkout.",
)
@click.option(
    "--allow-weak-sandbox",
    is_flag=True,
    help="Let the autograder grade even where its container has no filesystem sandbox layer "
    "(every results.json then says so). Without it such a container gives no score.",
)
@click.option(
    "--plugin-wheel",
    "plugin_wheels",
    multiple=True,
    type=click.Path(path_type=Path),
    help="A wheel of an exercise plugin the autograder needs (repeatable); default: built "
    "from the folder each plugin was installed from.",
)
@course_options("export")
@translate_errors
def gradescope(
    out: Path,
    secret_file: Path | None,
    seed: int | None,
    exercises: tuple[str, ...],
    assignment: str,
    id_field: str,
    wheel: Path | None,
    plugin_wheels: tuple[Path, ...],
    course: CourseContext,
    allow_weak_sandbox: bool = False,
) -> None:
    """Build a Gradescope autograder zip (setup.sh, run_autograder, a cnnlab wheel).

    setup.sh installs torch (CPU), cnnlab and the wheels of the exercise plugins the
    exercises come from (and fails if an exercise is then missing); run_autograder grades the
    submission in cnnlab's sandbox and writes /autograder/results/results.json after the
    student's code has exited. Each submission is graded with the seed derived from the course
    secret and the submitter's id (submission_metadata.json), as `cnnlab batch` does, or with
    --seed N.

    \b
    Example:
      cnnlab export gradescope --out autograder.zip --secret-file ~/course/secret.txt
      cnnlab export gradescope --seed 7 -e maxpool2d_backward --out pool.zip
      cnnlab export gradescope --assignment hw1    # in a course: autograder/hw1.zip
    """
    from grader import plugins, registry
    from grader.classroom import gradescope as exportlib

    if course.active and not exercises:
        exercises = course.assignment.exercises
    specs = registry.select(list(exercises))  # unknown names fail here with a "did you mean"
    if seed is not None and secret_file is not None:
        raise ConfigError("give --seed N (one seed for everyone) or --secret-file, not both")
    if seed is None and secret_file is None:
        seed = course.shared_seed()  # an assignment without per-student variants: its seed
    out = course.out(out, "export")
    secret = None
    if seed is None:
        try:
            secret = seeds.load_secret(secret_file)
        except ConfigError as exc:
            raise ConfigError(f"{exc}; or pass --seed N to grade everyone with one seed") from None
    config = exportlib.AutograderConfig(
        assignment=assignment,
        exercises=tuple(s.name for s in specs) if exercises else (),
        seed=seed,
        id_field=id_field,
        allow_weak_sandbox=allow_weak_sandbox,
        view=course.assignment.view().to_json() if course.active else None,
    )
    with tempfile.TemporaryDirectory(prefix="cnnlab-plugins-") as tmp:
        extra = plugins.plugin_wheels([s.name for s in specs], Path(tmp), plugin_wheels)
        path = exportlib.build_autograder(
            out, config=config, secret=secret, wheel=wheel, extra_wheels=extra
        )
    size_mb = path.stat().st_size / 1e6
    how = (
        f"seed {seed} for everyone"
        if seed is not None
        else f"per-student seeds from each submitter's {id_field}"
    )
    click.echo(f"wrote {path} ({size_mb:.1f} MB, {len(specs)} exercises, {how})")
    for whl in extra:
        click.echo(f"  with the plugin wheel {whl.name}")
    if secret is not None:
        click.echo("it contains the course secret: upload it to Gradescope, never share it")
    what = (
        "the course secret"
        if secret is not None
        else "the grading seed of every student (with it anyone can regenerate the solutions)"
    )
    warning = vcs.secret_warning(path, what)
    if warning:
        click.echo(warning, err=True)
