"""`cnnlab grade`: grade a submission and show a table; optionally write JSON/Gradescope/JUnit.

A thin shell: :func:`grader.engine.grade` does the work and raises typed errors, which
``translate_errors`` turns into messages and exit status 2 (3 for a grader failure).
This module must not import ``cnnref`` or ``grader.exercises`` (it runs in student bundles).
"""

from __future__ import annotations

from pathlib import Path

import click

from grader import render
from grader.commands._common import (
    EXIT_FAILED,
    EXIT_GRADER,
    EXIT_OK,
    CourseContext,
    course_options,
    translate_errors,
)

CASES_ENV = "CNNLAB_CASES_DIR"
#: The autograder hands the grading process its seed here (never on the command line, never
#: printed): the Gradescope run_autograder's seed, derived from the course secret or fixed.
ASSIGNED_SEED_ENV = "CNNLAB_ASSIGNED_SEED"
ASSIGNED_CASES_SEED_ENV = "CNNLAB_ASSIGNED_CASES_SEED"
#: The list of generated files in exercises/ and solutions/ (grader.problemset.generate).
GENERATED_MANIFEST = ".cnnlab-generated"

NEXT_STEPS = """
Next steps (you just graded the reference solutions):
  students     fill in exercises/*.py (or exercises/notebooks/), then: cnnlab grade exercises/
  instructors  read docs/instructors.md: make, release (nbgrader or a plain folder) and grade
  TAs          read docs/batch.md: grade a whole class with cnnlab batch"""


def next_steps(path: str) -> str | None:
    """What a newcomer does next, after grading the checkout's generated ``solutions/``
    (the README's first command); ``None`` for anything else."""
    folder = Path(path)
    if folder.name != "solutions" or not (folder / GENERATED_MANIFEST).is_file():
        return None
    if not (folder.parent / "exercises" / GENERATED_MANIFEST).is_file():
        return None
    return NEXT_STEPS


@click.command("grade")
@click.argument("path", default="exercises/", required=False)
@click.option(
    "-e",
    "--exercise",
    "exercises",
    multiple=True,
    metavar="NAME",
    help="Grade only this exercise (repeat for several); `cnnlab list` shows the names.",
)
@click.option(
    "--seed",
    type=click.IntRange(0, 2**31 - 2),
    help="Seed of the random check cases; default: a fresh one, printed so you can repeat the "
    "run. It also names your problem set (the numbers of the questions) when nothing else does.",
)
@click.option(
    "--problem-seed",
    type=click.IntRange(0, 2**31 - 2),
    help="Seed of the problem set you received (the numbers in the numeric questions); "
    "default: the course's or the bundle's record, else --seed, else the first line of "
    "questions.py (a self-check hint only).",
)
@click.option(
    "--json",
    "json_path",
    metavar="FILE",
    help="Also write the results as JSON (its seed is null when it must stay hidden: --student).",
)
@click.option(
    "--gradescope", "gradescope_path", metavar="FILE", help="Also write Gradescope's results.json."
)
@click.option("--junit", "junit_path", metavar="FILE", help="Also write JUnit XML.")
@click.option(
    "--cases",
    "cases_dir",
    metavar="DIR",
    envvar=CASES_ENV,
    help="Grade against saved public check cases (a student bundle without the reference); "
    f"default ${CASES_ENV}.",
)
@click.option(
    "--student",
    metavar="ID",
    help="Grade this student's variant: the seed is derived from the course secret and the id.",
)
@click.option(
    "--secret-file",
    metavar="FILE",
    help="Course secret for --student (default $CNNLAB_COURSE_SECRET_FILE, "
    "else $CNNLAB_COURSE_SECRET).",
)
@click.option("--assigned-seed", envvar=ASSIGNED_SEED_ENV, hidden=True, type=int, default=None)
@click.option(
    "--assigned-cases-seed", envvar=ASSIGNED_CASES_SEED_ENV, hidden=True, type=int, default=None
)
@course_options("grade", bundle_param="cases_dir")
@translate_errors
def grade_command(
    path: str,
    exercises: tuple[str, ...],
    seed: int | None,
    problem_seed: int | None,
    json_path: str | None,
    gradescope_path: str | None,
    junit_path: str | None,
    cases_dir: str | None,
    student: str | None = None,
    secret_file: str | None = None,
    assigned_seed: int | None = None,
    assigned_cases_seed: int | None = None,
    assignment: str | None = None,
    course: CourseContext | None = None,
) -> None:
    """Grade your code: run every exercise on random check cases and show what went wrong.

    PATH is a folder (default: exercises/; every .py file and notebook in it and its
    sub-folders, recognised by the functions they define), one .py file, a Jupyter notebook
    (.ipynb) or a .zip of them. Your code runs in a separate, limited process. Exit status: 0
    all passed, 1 some did not, 2 bad invocation or unreadable input, 3 the grader failed.

    \b
    Example:
      cnnlab grade                              # the exercises/ folder
      cnnlab grade exercises/ -e maxpool2d_backward
      cnnlab grade my_solutions.ipynb --seed 7 --json out/results.json
      cnnlab grade exercises/ --problem-seed 2026      # the questions of problem set 2026
      cnnlab grade submissions/s1234/ --student s1234 --secret-file ~/course.secret
      cnnlab grade submissions/s1234/ --assignment hw1      # in a course (cnnlab.toml)
    """
    import os

    from grader import engine, seeds

    for name in (ASSIGNED_SEED_ENV, ASSIGNED_CASES_SEED_ENV):
        os.environ.pop(name, None)  # student code never inherits them
    sources = seeds.SeedSources(assigned=assigned_seed, assigned_cases=assigned_cases_seed)
    if student is not None:
        from grader.errors import ConfigError

        if seed is not None or problem_seed is not None:
            raise ConfigError(
                "pass either --seed/--problem-seed or --student: a student's seed is derived "
                "from the course secret"
            )
        student = seeds.normalize_student_id(student)
        sources = seeds.SeedSources(
            student=student,
            student_seed=seeds.derive_seed(
                seeds.load_secret(secret_file), student, assignment or seeds.DEFAULT_ASSIGNMENT
            ),
        )
    elif course is not None and course.active and not course.assignment.per_student:
        # one problem set for everyone: the assignment's seed names it and, unless --seed
        # (or the autograder) gives one, draws the check cases too
        shared = course.problem_seed(secret_file)
        sources = seeds.SeedSources(
            assigned=assigned_seed if (assigned_seed is not None or seed is not None) else shared,
            assigned_cases=assigned_cases_seed,
            course=shared,
        )

    reports = {
        "--json": json_path,
        "--gradescope": gradescope_path,
        "--junit": junit_path,
    }
    targets = {opt: render.check_report_path(p, opt) for opt, p in reports.items() if p}
    result = engine.grade(
        path,
        seed=seed,
        exercises=list(exercises) or None,
        cases_dir=Path(cases_dir) if cases_dir else None,
        student=student,
        problem_seed=problem_seed,
        sources=sources,
        # a class submission (the autograder, a TA grading one student): every exercise
        # counts, a missing one as not_submitted; a student's own check leaves those out
        complete=student is not None or assigned_seed is not None or bool(gradescope_path),
    )
    texts = {
        "--json": lambda: render.json_report(result),
        "--gradescope": lambda: render.gradescope_json(result),
        "--junit": lambda: render.junit_xml(result),
    }
    render.print_table(result, path=path)
    hint = next_steps(path)
    if hint:
        click.echo(hint)
    from grader.sandbox.layers import filesystem_layer_probe

    weak = filesystem_layer_probe()
    if weak:  # a self-check runs with what there is; one line says so
        click.echo(
            f"note: weak sandbox here ({weak}); fine for checking your own work, "
            "`cnnlab doctor` tells more",
            err=True,
        )
    for opt, target in targets.items():
        render.write_report(target, texts[opt]())
        click.echo(f"wrote {target}")
    if result.has_grader_error:
        code = EXIT_GRADER
    elif result.all_passed:
        code = EXIT_OK
    else:
        code = EXIT_FAILED
    raise SystemExit(code)
