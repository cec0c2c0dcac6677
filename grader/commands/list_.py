"""`cnnlab list`: the exercises that exist, with number, topic and points."""

from __future__ import annotations

import click

from grader import registry
from grader.commands._common import translate_errors


@click.command("list")
@click.option("--topic", help="Only exercises of this lecture topic (e.g. pooling).")
@translate_errors
def list_exercises(topic: str | None) -> None:
    """List every exercise: number, name, topic and points.

    \b
    Example:
      cnnlab list
      cnnlab list --topic pooling
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
    if not specs:
        click.echo("No exercises are registered yet.")
        return
    width = max(len(s.name) for s in specs)
    for s in specs:
        click.echo(f"{s.number:>5}  {s.name:<{width}}  {s.topic:<12} {s.points:g} pts  {s.title}")
    click.echo(f"{len(specs)} exercises, {sum(s.points for s in specs):g} points")
