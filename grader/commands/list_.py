"""`cnnlab list`: the exercises that exist (built-in and plugins), with number, topic and points;
the course's assignments; and any plugin that could not be loaded."""

from __future__ import annotations

import click

from grader import registry
from grader.commands._common import CourseContext, course_options, translate_errors


@click.command("list")
@click.option("--topic", help="Only exercises of this lecture topic (e.g. pooling).")
@course_options("list")
@translate_errors
def list_exercises(topic: str | None, assignment: str | None, course: CourseContext) -> None:
    """List every exercise: number, name, topic, points and where it comes from.

    Exercises of installed plugins (entry point group `cnnlab.exercises`) are listed after
    the built-in ones; a plugin that cannot be loaded is reported at the end (the built-in
    exercises are unaffected). In a course folder (cnnlab.toml) the course's assignments are
    listed too; --assignment NAME lists that assignment's exercises with its points and
    time limits.

    \b
    Example:
      cnnlab list
      cnnlab list --topic pooling
      cnnlab list --assignment hw1
    """
    specs = registry.all_specs()
    if topic:
        topics = sorted({s.topic for s in specs})
        specs = [s for s in specs if s.topic == topic]
        if not specs:
            raise click.BadParameter(
                f"no exercise has topic {topic!r}; topics: {', '.join(topics) or 'none yet'}",
                param_hint="--topic",
            )
    if course.active:
        a = course.assignment
        click.echo(f"assignment {a.name}: {a.title}")
    if not specs:
        click.echo("No exercises are registered yet.")
    else:
        width = max(len(s.name) for s in specs)
        for s in specs:
            source = registry.origin(s.name)
            where = f"  [plugin {source.distribution or source.entry_point}]" if source else ""
            limit = f" {s.timeout_s:g} s" if course.active else ""
            click.echo(
                f"{s.number:>5}  {s.name:<{width}}  {s.topic:<12} {s.points:g} pts{limit}  "
                f"{s.title}{where}"
            )
        click.echo(f"{len(specs)} exercises, {sum(s.points for s in specs):g} points")
    if course.course is not None and not course.active:
        click.echo(f"\nassignments in {course.course.path.name} ({course.course.name}):")
        for a in course.course.assignments.values():
            seed = "seed from the course secret" if a.seed is None else f"seed {a.seed}"
            variants = "per-student variants" if a.per_student else "one problem set"
            click.echo(
                f"  {a.name:<10} {len(a.exercises):>2} exercises  {a.title} ({seed}, {variants})"
            )
    problems = registry.plugin_problems()
    if problems:
        click.echo(f"\n{len(problems)} plugin problem(s): these exercises are left out", err=True)
        for problem in problems:
            click.echo(f"  {problem}", err=True)
