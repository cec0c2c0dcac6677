"""What every command shares: the error boundary and exit codes.

Exit status (DESIGN.md): 0 every graded exercise passed, 1 some did not, 2 bad invocation or
unreadable input, 3 the grader itself failed.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import click

from grader.errors import CnnlabError, GraderFailure

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_GRADER = 0, 1, 2, 3

F = TypeVar("F", bound=Callable[..., Any])


class CliError(click.ClickException):
    """A user error: message on stderr, exit status 2."""

    exit_code = EXIT_USAGE


class GraderCliError(click.ClickException):
    """The grader failed: exit status 3."""

    exit_code = EXIT_GRADER

    def format_message(self) -> str:
        return f"the grader itself failed (not your code): {self.message}"


def translate_errors(fn: F) -> F:
    """Turn the library's typed errors into click exceptions with the right exit status."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except CnnlabError as exc:
            raise CliError(str(exc)) from exc
        except GraderFailure as exc:
            raise GraderCliError(str(exc)) from exc
        except OSError as exc:
            # a path the user gave cannot be read or written (missing folder, no permission,
            # disk full): their environment, not a grader bug
            where = f" {exc.filename!r}" if exc.filename else ""
            raise CliError(
                f"cannot use{where}: {exc.strerror or exc}. Check that the folder exists and "
                "is writable, or choose another path (e.g. --out)."
            ) from exc

    return wrapper  # type: ignore[return-value]
