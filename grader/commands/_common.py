"""What every command shares: the error boundary, exit codes and the course options.

Exit status (DESIGN.md): 0 every graded exercise passed, 1 some did not, 2 bad invocation or
unreadable input, 3 the grader itself failed.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from grader.errors import CnnlabError, ConfigError, GraderFailure

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
            raise CliError(describe_os_error(exc)) from exc

    return wrapper  # type: ignore[return-value]


#: The temporary name of an atomic write (``tempfile.mkstemp(prefix=".NAME.", suffix=...)``
#: / ``mkdtemp(prefix=".NAME.")``): the user knows NAME, not this.
_ATOMIC_TEMP = re.compile(r"^\.(?P<name>.+)\.[A-Za-z0-9_]{8}(?:\.tmp|\.png)?$")


def describe_os_error(exc: OSError) -> str:
    """``exc`` as a user's problem with a path they chose: the path they gave (not the
    temporary name of an atomic write), a path component that is a file where a folder must
    be, and what to do next."""
    if not exc.filename:
        return f"{exc.strerror or exc}. Check the paths you gave, or choose another (e.g. --out)."
    path = Path(os.fsdecode(exc.filename))
    temp = _ATOMIC_TEMP.match(path.name)
    if temp:
        path = path.with_name(temp["name"])
    where = [path, *path.parents] if exc.errno in (errno.EEXIST, errno.ENOTDIR) else path.parents
    for parent in where:  # e.g. --out report.txt/grid.png
        if parent.exists() or parent.is_symlink():
            if not parent.is_dir():
                return f"{str(parent)!r} is a file, not a folder; choose another path (e.g. --out)"
            break
    return (
        f"cannot use {str(path)!r}: {exc.strerror or exc}. Check that the folder exists and "
        "is writable, or choose another path (e.g. --out)."
    )


# ----------------------------------------------------------------------------- courses

COURSE_HELP = (
    "Course file (cnnlab.toml) to read; default: the one in the current folder or the "
    "nearest parent, if any."
)
ASSIGNMENT_HELP = (
    "Assignment: with a course file, one of its assignments (its exercises, points, time "
    "limits, seed and output folder); without one, the name mixed into per-student seeds."
)


class CourseContext:
    """What a command knows about the course it runs in (see :func:`course_options`).

    Attributes:
        course: the parsed course file, or ``None`` (then everything behaves as without one).
        assignment: the selected assignment of ``course`` (``None`` without a course, and for
            ``cnnlab list`` without ``--assignment``).
        name: the assignment name that goes into per-student seeds and gradebooks.
    """

    def __init__(self, course: Any, assignment: Any, name: str | None) -> None:
        self.course = course
        self.assignment = assignment
        self.name = name

    @property
    def active(self) -> bool:
        """Whether an assignment of a course file is in force."""
        return self.assignment is not None

    def problem_seed(self, secret_file: str | None = None) -> int | None:
        """The assignment's problem-set seed (``None`` without a course)."""
        if not self.active:
            return None
        secret = None
        if self.assignment.seed is None:
            secret = self.course.secret(secret_file)
        return self.course.problem_seed(self.assignment, secret)

    def shared_seed(self, secret_file: str | None = None) -> int | None:
        """The one seed everybody is graded with: the problem-set seed of an assignment that
        is not ``per_student``; ``None`` when each student has their own seed (or no course)."""
        if not self.active or self.assignment.per_student:
            return None
        return self.problem_seed(secret_file)

    def out(self, value: Any, kind: str, *, param: str = "out", student: str | None = None) -> Any:
        """``value`` when the user gave ``--out`` (or there is no course); otherwise the
        course's folder for ``kind`` and this assignment (``problemsets/hw1`` ...), so that
        assignments never overwrite each other."""
        if not self.active:
            return value
        source = click.get_current_context().get_parameter_source(param)
        if source not in (click.core.ParameterSource.DEFAULT, None):
            return value
        target = self.course.out_dir(kind, self.assignment, student)
        return type(value)(target) if isinstance(value, Path) else str(target)


def _inherited_view() -> Any:
    """The assignment view this process was started under, if any (``None`` in a student
    bundle, which has no registry)."""
    try:
        from grader.registry import active_view
    except ImportError:
        return None
    return active_view()


def _resolve_course(
    kind: str, course_path: str | None, assignment: str | None, bundle_mode: bool
) -> CourseContext:
    from grader.seeds import DEFAULT_ASSIGNMENT

    default = None if kind in ("batch", "list") else DEFAULT_ASSIGNMENT
    if bundle_mode:  # saved check cases (a student bundle) fix the exercises: no course
        if course_path is not None:
            raise ConfigError(
                "--course cannot be combined with saved check cases (--cases, or grading "
                "inside a student bundle): the cases already fix the exercises"
            )
        return CourseContext(None, None, assignment or default)
    from grader import course as courselib

    if course_path is None and assignment is None:
        view = _inherited_view()
        if view is not None:
            # started by a command that chose the assignment (the Gradescope autograder's
            # grading process): its view is in force, no course file is read again
            return CourseContext(None, None, view.assignment)
    if course_path is not None:
        path = Path(course_path)
        if path.is_dir():
            path = path / courselib.COURSE_FILE
        if not path.is_file():
            raise ConfigError(
                f"--course {course_path!r}: no course file there; create one with "
                "`cnnlab init`, or leave --course out"
            )
    else:
        path = courselib.find_course_file()
    if path is None:
        if kind == "list" and assignment is not None:
            raise ConfigError(
                f"--assignment {assignment}: no course file (cnnlab.toml) in this folder or "
                "its parents; create one with `cnnlab init`, or pass --course PATH"
            )
        return CourseContext(None, None, assignment or default)
    course = courselib.load_course(path)
    if kind == "list" and assignment is None:
        return CourseContext(course, None, None)
    chosen = course.assignment(assignment)
    return CourseContext(course, chosen, chosen.name)


def _warn_plugin_problems() -> None:
    from grader import registry

    problems = registry.plugin_problems()
    if problems:
        click.echo(
            f"warning: {len(problems)} plugin problem(s); the exercises concerned are left "
            "out (`cnnlab list` shows them):",
            err=True,
        )
        for problem in problems[:5]:
            click.echo(f"  {problem}", err=True)


@contextlib.contextmanager
def _course_environment(ctx: CourseContext) -> Any:
    """The assignment's registry view, and the course secret file as
    ``$CNNLAB_COURSE_SECRET_FILE`` (unless one is set), for the command and what it starts."""
    from grader.seeds import SECRET_FILE_ENV

    if not ctx.active:
        yield
        return
    from grader import registry

    secret_file = ctx.course.secret_file
    set_secret = not os.environ.get(SECRET_FILE_ENV) and secret_file.is_file()
    if set_secret:
        os.environ[SECRET_FILE_ENV] = str(secret_file)
    try:
        with registry.use_view(ctx.assignment.view()):
            yield
    finally:
        if set_secret:
            os.environ.pop(SECRET_FILE_ENV, None)


def course_options(kind: str, *, bundle_param: str | None = None) -> Callable[[F], F]:
    """Add ``--course PATH`` and ``--assignment NAME`` to a command (``kind``: generate,
    release, grade, batch, export, list) and pass it ``assignment`` (the name for seeds) and
    ``course`` (a :class:`CourseContext`).

    With a course file (``--course``, else ``cnnlab.toml`` in the current folder or a parent)
    ``--assignment`` must name one of its assignments (the only one may be left out); the
    command then runs under that assignment's registry view (its exercises, with its points
    and time limits: :class:`grader.registry.AssignmentView`), with the course's secret file
    as ``$CNNLAB_COURSE_SECRET_FILE`` unless one is set. Without a course file nothing
    changes. ``bundle_param`` names a parameter that, when set, means the command runs in a
    student bundle (``grade --cases``): the course file is then ignored unless asked for.
    A bad course file is an error with exit status 2, before the command does anything.
    """

    def decorate(fn: F) -> F:
        @click.option("--course", "course_path", metavar="PATH", help=COURSE_HELP)
        @click.option("--assignment", metavar="NAME", help=ASSIGNMENT_HELP)
        @functools.wraps(fn)
        @translate_errors
        def wrapper(*args: Any, course_path: str | None, assignment: str | None, **kwargs: Any):
            bundle_mode = bool(bundle_param and kwargs.get(bundle_param))
            ctx = _resolve_course(kind, course_path, assignment, bundle_mode)
            if not bundle_mode and kind != "list":
                _warn_plugin_problems()
            with _course_environment(ctx):
                return fn(*args, assignment=ctx.name, course=ctx, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate
