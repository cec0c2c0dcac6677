"""Every click command has --help text with an example, and the CLI's basics work."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from grader.cli import main


def _commands(group: click.Group, prefix: tuple[str, ...] = ()):
    for name, cmd in group.commands.items():
        path = (*prefix, name)
        yield path, cmd
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, path)


ALL = list(_commands(main))


def test_there_are_commands():
    assert ("list",) in [p for p, _ in ALL]


@pytest.mark.parametrize("path,cmd", ALL, ids=[" ".join(p) for p, _ in ALL])
def test_every_command_has_help_with_example(path, cmd):
    result = CliRunner().invoke(main, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert cmd.help and len(cmd.help.strip()) > 20, f"{' '.join(path)} has no help text"
    assert "Example" in result.output, f"`cnnlab {' '.join(path)} --help` shows no example"


def test_version():
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert "cnnlab, version" in result.output


def test_unknown_command_is_usage_error():
    result = CliRunner().invoke(main, ["grdae"])
    assert result.exit_code == 2


@pytest.mark.parametrize(
    "args",
    [
        ["release", "--out", "/proc/cnnlab-test"],
        ["export", "gradescope", "--out", "/proc/cnnlab-test.zip", "--seed", "1"],
        ["saliency", "--out", "/proc/cnnlab-test.png"],
    ],
    ids=["release", "export", "saliency"],
)
def test_unwritable_output_is_a_clear_error_not_a_traceback(args):
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert "cannot use" in result.output and "choose another path" in result.output
