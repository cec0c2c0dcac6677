"""A course: ``cnnlab.toml`` names the assignments; the course secret lives outside the repository.

A course is a folder with a ``cnnlab.toml`` (``cnnlab init`` writes one)::

    [course]
    name = "cnn-2026"
    id = "cnn-2026-3f9a1c"              # names the secret file in the user's config folder
    # secret_file = "~/secrets/cnn.txt" # optional: another place for the course secret

    [assignments.hw1]
    title = "Parameters and output sizes"
    topics = ["shapes", "params"]       # every exercise of these lecture topics ...
    exercises = ["q2_output_size"]      # ... plus these, by name (built-in or a plugin's)
    seed = 1618033                      # the problem-set seed (optional, see below)
    per_student = false                 # true: every student gets their own variant
    time_limit_s = 20                   # wall-clock limit of each exercise's run
    points = { conv2d_params = 2 }      # point overrides
    time_limits_s = { conv2d_params = 5 }

Every command takes ``--assignment NAME`` (and ``--course PATH``; by default the
``cnnlab.toml`` of the current folder or a parent is used). :func:`load_course` checks the
file strictly: a TOML error or an unknown key, exercise, topic or assignment is a
:class:`CourseFileError` naming the file, the line and, for a misspelling, what was meant.

Seeds. A student's seed is ``derive_seed(secret, student, assignment)``
(:mod:`grader.seeds`): it depends on the course secret and the assignment's *name* only, never
on ``seed``. The assignment's ``seed`` is the seed of its shared problem set (what ``cnnlab
release`` hands to everyone when ``per_student`` is false, and what grading then uses). It is
therefore not something a student could use against a per-student variant; for a shared
problem set it is what the staff grade with, so keep the course repository private, or leave
``seed`` out: the seed is then derived from the course secret
(:func:`grader.seeds.derive_problem_seed`) and the file holds nothing sensitive at all.
Two assignments never share a seed (a fixed seed used twice is an error; derived seeds differ
by name).

Nothing in ``cnnlab.toml`` is secret: the course secret itself is a file in the user's
configuration folder (``~/.config/cnnlab/secrets/<id>.secret`` on Linux), or where
``secret_file`` says; ``cnnlab init`` makes it (mode 600) and git-ignores it when it has to
be inside the course folder.
"""

from __future__ import annotations

import math
import os
import re
import secrets
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grader.errors import ConfigError, did_you_mean

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

COURSE_FILE = "cnnlab.toml"
#: Folder (inside the course) for a secret that cannot live in the user's config folder.
LOCAL_SECRET = Path(".cnnlab") / "secret"
MAX_SEED = 2**31 - 1
MAX_TIME_LIMIT_S = 3600.0
_ASSIGNMENT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_COURSE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
TOP_KEYS = ("course", "assignments")
COURSE_KEYS = ("name", "id", "secret_file")
ASSIGNMENT_KEYS = (
    "title",
    "exercises",
    "topics",
    "seed",
    "per_student",
    "time_limit_s",
    "points",
    "time_limits_s",
)
#: Where each command writes, relative to the course folder, when ``--out`` is not given.
OUT_DIRS = {
    "generate": "problemsets/{assignment}",
    "release": "release/{assignment}",
    "batch": "gradebook/{assignment}",
    "export": "autograder/{assignment}.zip",
}
#: Per-student variants (``--student ID``): one folder per assignment and student.
STUDENT_OUT_DIRS = {
    "generate": "students/{assignment}/{student}/problemset",
    "release": "students/{assignment}/{student}/release",
}
#: What ``cnnlab init`` git-ignores: everything the commands write that holds the course
#: secret, solutions, a student's own variant, students' work or grades (what
#: :func:`grader.vcs.secret_warning` warns about when it is not ignored).
IGNORE_RULES = (
    "# cnnlab: never commit these (course secret, solutions, per-student variants, "
    "submissions, grades, autograder zips)",
    "/.cnnlab/",
    "*.secret",
    "solutions/",
    "/students/",
    "/submissions/",
    "/gradebook/",
    "/autograder/",
    "*.sqlite",
)
IGNORE_MARK = IGNORE_RULES[0]


# --------------------------------------------------------------------------- errors


@dataclass(frozen=True)
class CourseIssue:
    """One problem of a course file: its line (1-based; 0 when unknown) and message."""

    line: int
    message: str


class CourseFileError(ConfigError):
    """A course file that cannot be read or used: each issue with its file and line."""

    def __init__(self, path: Path, issues: Sequence[CourseIssue]) -> None:
        self.path = path
        self.issues = tuple(issues)
        shown = _display(path)
        lines = [
            f"{shown}:{i.line}: {i.message}" if i.line else f"{shown}: {i.message}" for i in issues
        ]
        head = (
            f"{shown} has {len(lines)} problems:\n  " + "\n  ".join(lines)
            if len(lines) > 1
            else lines[0]
        )
        super().__init__(head)


def _display(path: Path) -> str:
    """``path`` relative to the current folder when it is inside it, else absolute."""
    try:
        return str(Path(path).absolute().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


# --------------------------------------------------------------------------- line finding


def _split_key(text: str) -> tuple[str, ...]:
    """``a."b.c".d`` -> ``("a", "b.c", "d")``."""
    parts, buf, quote = [], "", ""
    for ch in text.strip():
        if quote:
            if ch == quote:
                quote = ""
            else:
                buf += ch
        elif ch in "\"'":
            quote = ch
        elif ch == ".":
            parts.append(buf.strip())
            buf = ""
        else:
            buf += ch
    parts.append(buf.strip())
    return tuple(parts)


def _strip_comment(line: str) -> str:
    quote = ""
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch == "#":
            return line[:i]
    return line


_HEADER = re.compile(r"^\s*\[\[?\s*([^\[\]]+?)\s*\]\]?\s*$")
_KEY = re.compile(
    r"""^\s*((?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*'))*)\s*=\s*(.*)$"""
)
_INLINE_KEY = re.compile(r"""(?:^|[{,])\s*([A-Za-z0-9_-]+|"[^"]*"|'[^']*')\s*=""")
_STRING = re.compile(r""""((?:[^"\\]|\\.)*)"|'([^']*)'""")


class _Locator:
    """Finds the line of a key, a table or a string value in TOML text (tomllib keeps no
    positions). Good enough for the files people write; falls back to the closest table."""

    def __init__(self, text: str) -> None:
        self.keys: dict[tuple[str, ...], int] = {}
        self.values: dict[tuple[tuple[str, ...], str], int] = {}
        current: tuple[str, ...] = ()
        open_array: tuple[str, ...] | None = None
        depth = 0
        for lineno, raw in enumerate(text.splitlines(), 1):
            line = _strip_comment(raw)
            if open_array is not None:
                self._strings(open_array, line, lineno)
                depth += line.count("[") - line.count("]")
                if depth <= 0:
                    open_array = None
                continue
            header = _HEADER.match(line)
            if header:
                current = _split_key(header.group(1))
                self.keys.setdefault(current, lineno)
                continue
            key = _KEY.match(line)
            if not key:
                continue
            path = current + _split_key(key.group(1))
            self.keys.setdefault(path, lineno)
            value = key.group(2)
            self._strings(path, value, lineno)
            if value.lstrip().startswith("{"):
                for sub in _INLINE_KEY.finditer(value):
                    self.keys.setdefault(path + _split_key(sub.group(1)), lineno)
            if value.lstrip().startswith("["):
                depth = value.count("[") - value.count("]")
                if depth > 0:
                    open_array = path

    def _strings(self, path: tuple[str, ...], text: str, lineno: int) -> None:
        for m in _STRING.finditer(text):
            value = m.group(1) if m.group(1) is not None else m.group(2)
            self.values.setdefault((path, value), lineno)

    def line(self, *path: str, value: str | None = None) -> int:
        """The line of ``value`` inside ``path``, else of ``path``, else of its closest parent."""
        if value is not None and (path, value) in self.values:
            return self.values[(path, value)]
        for n in range(len(path), 0, -1):
            if path[:n] in self.keys:
                return self.keys[path[:n]]
        return 0


# --------------------------------------------------------------------------- the model


@dataclass(frozen=True)
class Assignment:
    """One assignment of a course file.

    Attributes:
        name: its key, e.g. ``"hw1"`` (also the name mixed into per-student seeds).
        title: one line for people.
        exercises: the exercises it grades, in registry (exercise-number) order.
        seed: its problem-set seed when the file fixes one; ``None``: derived from the secret.
        per_student: each student gets their own variant (seed from the secret and their id);
            otherwise everyone gets the problem set of ``seed``.
        points: exercise -> maximum score overriding the exercise's own.
        time_limits_s: exercise -> wall-clock limit (seconds) of one run of its cases.
        line: where it starts in the file.
    """

    name: str
    title: str
    exercises: tuple[str, ...]
    seed: int | None = None
    per_student: bool = False
    points: dict[str, float] = field(default_factory=dict)
    time_limits_s: dict[str, float] = field(default_factory=dict)
    line: int = 0

    def view(self) -> Any:
        """The :class:`grader.registry.AssignmentView` that makes the registry this assignment."""
        from grader.registry import AssignmentView

        return AssignmentView(
            assignment=self.name,
            exercises=self.exercises,
            points=dict(self.points),
            timeout_s=dict(self.time_limits_s),
        )


@dataclass(frozen=True)
class Course:
    """A parsed ``cnnlab.toml``.

    Attributes:
        path: the course file.
        name: the course's name.
        id: names the course secret's file in the user's config folder.
        secret_file: where the course secret is (it may not exist yet).
        assignments: by name, in file order.
    """

    path: Path
    name: str
    id: str
    secret_file: Path
    assignments: dict[str, Assignment]

    @property
    def root(self) -> Path:
        """The course folder (the one holding ``cnnlab.toml``)."""
        return self.path.parent

    def assignment(self, name: str | None) -> Assignment:
        """The assignment called ``name``; with ``None``, the only one (else an error).

        Raises:
            ConfigError: an unknown name (with a "did you mean"), or ``None`` when the course
                has several assignments.
        """
        names = list(self.assignments)
        if name is None:
            if len(names) == 1:
                return self.assignments[names[0]]
            raise ConfigError(
                f"{_display(self.path)} has {len(names)} assignments ({', '.join(names)}): "
                "choose one with --assignment NAME"
            )
        if name not in self.assignments:
            raise ConfigError(
                f"{_display(self.path)} has no assignment {name!r}.{did_you_mean(name, names)} "
                f"Its assignments: {', '.join(names)}."
            )
        return self.assignments[name]

    def problem_seed(self, assignment: Assignment, secret: bytes | None = None) -> int:
        """The assignment's problem-set seed: the file's ``seed``, else derived from the
        course secret (read from :meth:`secret` when not given).

        Raises:
            ConfigError: no fixed seed and no course secret.
        """
        if assignment.seed is not None:
            return assignment.seed
        from grader.seeds import derive_problem_seed

        return derive_problem_seed(self.secret() if secret is None else secret, assignment.name)

    def secret(self, explicit: str | os.PathLike[str] | None = None) -> bytes:
        """The course secret: from ``explicit``, ``$CNNLAB_COURSE_SECRET_FILE``, this course's
        secret file, then ``$CNNLAB_COURSE_SECRET``, in that order.

        Raises:
            ConfigError: none of them holds a secret (the message says where it should be).
        """
        from grader.seeds import SECRET_ENV, SECRET_FILE_ENV, load_secret

        if explicit or os.environ.get(SECRET_FILE_ENV):
            return load_secret(explicit)
        if self.secret_file.is_file():
            return load_secret(self.secret_file)
        if os.environ.get(SECRET_ENV):
            return load_secret(None)
        raise ConfigError(
            f"no course secret: {_display(self.path)} keeps it in {self.secret_file}, which "
            "does not exist. Copy the course secret there (mode 600), or set "
            "CNNLAB_COURSE_SECRET_FILE / pass --secret-file"
        )

    def out_dir(self, kind: str, assignment: Assignment, student: str | None = None) -> Path:
        """Where ``kind`` (generate, release, batch, export) writes for ``assignment`` (and
        ``student``) when ``--out`` is not given: one folder per assignment, so that
        assignments never overwrite each other."""
        if student is not None and kind in STUDENT_OUT_DIRS:
            rel = STUDENT_OUT_DIRS[kind].format(
                assignment=assignment.name, student=safe_path_part(student)
            )
        else:
            rel = OUT_DIRS[kind].format(assignment=assignment.name)
        return self.root / rel


def safe_path_part(text: str) -> str:
    """``text`` as one safe path component (a student id as a folder name)."""
    cleaned = re.sub(r"[^A-Za-z0-9._@+-]", "_", text.strip()).lstrip(".")
    return cleaned or "_"


# --------------------------------------------------------------------------- finding, loading


def find_course_file(start: str | os.PathLike[str] | None = None) -> Path | None:
    """The ``cnnlab.toml`` in ``start`` (default: the current folder) or its nearest parent."""
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / COURSE_FILE
        if candidate.is_file():
            return candidate
    return None


def config_dir() -> Path:
    """The user's cnnlab configuration folder (``~/.config/cnnlab`` on Linux)."""
    import click

    return Path(click.get_app_dir("cnnlab"))


def default_secret_file(course_id: str) -> Path:
    """Where the secret of course ``course_id`` lives by default: outside every repository."""
    return config_dir() / "secrets" / f"{course_id}.secret"


def _toml_error(path: Path, text: str, exc: tomllib.TOMLDecodeError) -> CourseFileError:
    message = str(exc)
    found = re.search(r"\(at line (\d+), column (\d+)\)", message)
    line = int(found.group(1)) if found else getattr(exc, "lineno", 0) or 0
    column = int(found.group(2)) if found else getattr(exc, "colno", 0) or 0
    message = re.sub(r"\s*\(at line \d+, column \d+\)", "", message) or "invalid TOML"
    where = f"column {column}: " if column else ""
    lines = text.splitlines()
    shown = f"\n    {lines[line - 1].rstrip()}" if 0 < line <= len(lines) else ""
    return CourseFileError(
        path,
        [
            CourseIssue(
                line,
                f"{where}{message} (not valid TOML; see https://toml.io){shown}",
            )
        ],
    )


def load_course(path: str | os.PathLike[str]) -> Course:
    """Read and check a course file against the registered exercises (built-in and plugins).

    Raises:
        CourseFileError: the file cannot be read, is not TOML, or names an unknown key,
            assignment, exercise or topic, or holds a value of the wrong kind; every problem
            is listed with its line.
    """
    path = Path(path).absolute()
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "it is not UTF-8 text"
        raise CourseFileError(
            path, [CourseIssue(0, f"cannot read the course file: {reason or exc}")]
        ) from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _toml_error(path, text, exc) from None
    return _Parser(path, text).course(doc)


class _Parser:
    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.where = _Locator(text)
        self.issues: list[CourseIssue] = []

    def issue(self, path: Sequence[str], message: str, value: str | None = None) -> None:
        self.issues.append(CourseIssue(self.where.line(*path, value=value), message))

    def unknown_keys(self, table: dict, allowed: Sequence[str], path: Sequence[str]) -> None:
        where = f"[{'.'.join(path)}]" if path else "the top level"
        for key in table:
            if key not in allowed:
                self.issue(
                    (*path, key),
                    f"unknown key {key!r} in {where}.{did_you_mean(key, allowed)} "
                    f"Allowed: {', '.join(allowed)}.",
                )

    def course(self, doc: dict) -> Course:
        from grader import registry

        self.unknown_keys(doc, TOP_KEYS, ())
        meta = doc.get("course", {})
        if not isinstance(meta, dict):
            self.issue(("course",), "[course] must be a table (name, id, secret_file)")
            meta = {}
        self.unknown_keys(meta, COURSE_KEYS, ("course",))
        name = self.string(meta, "name", ("course",)) or self.path.parent.name or "course"
        course_id = self.string(meta, "id", ("course",)) or name
        if not _COURSE_ID.match(course_id):
            self.issue(
                ("course", "id"),
                f"course id {course_id!r} must be letters, digits, '.', '_' or '-' "
                "(it names the secret file)",
            )
        secret_text = self.string(meta, "secret_file", ("course",))
        if secret_text:
            secret_file = Path(secret_text).expanduser()
            if not secret_file.is_absolute():
                secret_file = self.path.parent / secret_file
        else:
            secret_file = default_secret_file(course_id)

        specs = registry.all_registered()
        known = {s.name: s for s in specs}
        topics = registry.topics()
        table = doc.get("assignments")
        assignments: dict[str, Assignment] = {}
        if table is None or (isinstance(table, dict) and not table):
            self.issue(
                (),
                'no assignments: add one, e.g.\n    [assignments.hw1]\n    topics = ["pooling"]',
            )
        elif not isinstance(table, dict):
            self.issue(("assignments",), "assignments must be tables: [assignments.hw1]")
        else:
            for a_name, body in table.items():
                parsed = self.assignment(a_name, body, known, topics, specs)
                if parsed is not None:
                    assignments[a_name] = parsed
            seen: dict[int, str] = {}
            for a in assignments.values():
                if a.seed is None:
                    continue
                if a.seed in seen:
                    self.issue(
                        ("assignments", a.name, "seed"),
                        f"assignment {a.name!r} has the same seed as {seen[a.seed]!r} "
                        f"({a.seed}): each assignment needs its own problem-set seed (or "
                        "leave `seed` out to derive it from the course secret)",
                    )
                seen.setdefault(a.seed, a.name)
        if self.issues:
            raise CourseFileError(self.path, sorted(self.issues, key=lambda i: i.line))
        return Course(self.path, name, course_id, secret_file, assignments)

    def string(self, table: dict, key: str, path: Sequence[str]) -> str | None:
        value = table.get(key)
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            self.issue((*path, key), f"{'.'.join((*path, key))} must be a non-empty string")
            return None
        return value.strip()

    def names(self, body: dict, key: str, path: tuple[str, ...]) -> list[str]:
        value = body.get(key, [])
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.issue((*path, key), f"{'.'.join((*path, key))} must be a list of names")
            return []
        return value

    def number(
        self, value: Any, path: tuple[str, ...], what: str, upper: float | None = None
    ) -> float | None:
        ok = (
            isinstance(value, (int, float))
            and not isinstance(value, bool)
            and math.isfinite(value)
            and value > 0
            and (upper is None or value <= upper)
        )
        if not ok:
            limit = f" (at most {upper:g})" if upper is not None else ""
            given = f"{value!r}" + (
                " (a string: drop the quotes)" if isinstance(value, str) else ""
            )
            self.issue(
                path, f"{'.'.join(path)} ({what}) must be a positive number{limit}, got {given}"
            )
            return None
        return float(value)

    def assignment(
        self,
        name: str,
        body: Any,
        known: dict[str, Any],
        topics: list[str],
        specs: list[Any],
    ) -> Assignment | None:
        path = ("assignments", name)
        if not isinstance(body, dict):
            self.issue(path, f"assignments.{name} must be a table: [assignments.{name}]")
            return None
        if not _ASSIGNMENT_NAME.match(name):
            self.issue(
                path,
                f"assignment name {name!r} must start with a letter or digit and hold only "
                "letters, digits, '_' and '-' (it names folders and goes into seeds)",
            )
        self.unknown_keys(body, ASSIGNMENT_KEYS, path)
        title = self.string(body, "title", path) or name
        issues_before = len(self.issues)
        wanted: set[str] = set()
        for topic in self.names(body, "topics", path):
            if topic not in topics:
                self.issue(
                    (*path, "topics"),
                    f"unknown topic {topic!r} in assignments.{name}.topics."
                    f"{did_you_mean(topic, topics)} Topics: {', '.join(topics)}.",
                    value=topic,
                )
                continue
            wanted.update(s.name for s in specs if s.topic == topic)
        for exercise in self.names(body, "exercises", path):
            if exercise not in known:
                self.issue(
                    (*path, "exercises"),
                    f"unknown exercise {exercise!r} in assignments.{name}.exercises."
                    f"{did_you_mean(exercise, known)}{_plugin_hint(exercise)} "
                    "`cnnlab list` shows every exercise.",
                    value=exercise,
                )
                continue
            wanted.add(exercise)
        exercises = tuple(s.name for s in specs if s.name in wanted)
        if not exercises and len(self.issues) == issues_before:
            self.issue(
                path,
                f"assignment {name!r} selects no exercise: give `topics = [...]` and/or "
                "`exercises = [...]`",
            )

        seed = body.get("seed")
        if seed is not None and (
            isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < MAX_SEED
        ):
            self.issue(
                (*path, "seed"),
                f"assignments.{name}.seed must be a whole number "
                f"between 0 and {MAX_SEED - 1}, got {seed!r}",
            )
            seed = None
        per_student = body.get("per_student", False)
        if not isinstance(per_student, bool):
            self.issue(
                (*path, "per_student"), f"assignments.{name}.per_student must be true or false"
            )
            per_student = False

        limits: dict[str, float] = {}
        if "time_limit_s" in body:
            every = self.number(
                body["time_limit_s"], (*path, "time_limit_s"), "seconds", MAX_TIME_LIMIT_S
            )
            if every is not None:
                limits.update(dict.fromkeys(exercises, every))
        limits.update(
            self.per_exercise(
                body, "time_limits_s", path, exercises, known, "seconds", MAX_TIME_LIMIT_S
            )
        )
        points = self.per_exercise(body, "points", path, exercises, known, "points", None)
        return Assignment(
            name=name,
            title=title,
            exercises=exercises,
            seed=seed,
            per_student=per_student,
            points=points,
            time_limits_s=limits,
            line=self.where.line(*path),
        )

    def per_exercise(
        self,
        body: dict,
        key: str,
        path: tuple[str, ...],
        exercises: tuple[str, ...],
        known: dict[str, Any],
        unit: str,
        upper: float | None,
    ) -> dict[str, float]:
        table = body.get(key, {})
        if not isinstance(table, dict):
            self.issue(
                (*path, key),
                f"{'.'.join((*path, key))} must be a table of "
                f"exercise = {unit}, e.g. {key} = {{ conv2d_params = 2 }}",
            )
            return {}
        out: dict[str, float] = {}
        for exercise, value in table.items():
            where = (*path, key, exercise)
            if exercise not in known:
                self.issue(
                    where,
                    f"unknown exercise {exercise!r} in {'.'.join((*path, key))}."
                    f"{did_you_mean(exercise, exercises or known)}",
                )
                continue
            if exercise not in exercises:
                self.issue(
                    where,
                    f"{'.'.join((*path, key))} names {exercise!r}, which assignment "
                    f"{path[1]!r} does not include: add it to its exercises (or topics), or "
                    "remove this line",
                )
                continue
            number = self.number(value, where, unit, upper)
            if number is not None:
                out[exercise] = number
        return out


def _plugin_hint(name: str) -> str:
    from grader import registry

    broken = [
        p
        for p in registry.plugin_problems()
        if p.exercise == name or (p.exercise is None and p.source.entry_point == name)
    ]
    return f" (a plugin provides it but was not loaded: {broken[0]})" if broken else ""


# --------------------------------------------------------------------------- init


@dataclass(frozen=True)
class InitReport:
    """What :func:`init_course` did.

    Attributes:
        course_file: the ``cnnlab.toml`` written.
        secret_file: where the course secret is.
        secret_created: whether a new secret was written (``False``: one was there already).
        gitignore: the ``.gitignore`` that holds the ignore rules.
        warnings: things the instructor must know (a secret inside the course folder).
    """

    course_file: Path
    secret_file: Path
    secret_created: bool
    gitignore: Path
    warnings: tuple[str, ...]


def course_file_text(name: str, course_id: str, seeds: Sequence[int], secret_line: str) -> str:
    """The ``cnnlab.toml`` that ``cnnlab init`` writes: three assignments as in a three-week
    course (edit them), each with its own problem-set seed."""
    hw1, hw2, hw3 = seeds
    return f"""# cnnlab course file (cnnlab init). Every command reads it: pass --assignment NAME.
# docs/courses.md explains every key; `cnnlab list` shows the exercises and topics.
#
# Nothing here is the course secret: that lives in the file named below, outside this folder.
# A student's own seed comes from that secret, the assignment's name and the student id, so
# nothing in this file helps against a per-student variant. `seed` is the seed of an
# assignment's shared problem set (per_student = false), which you grade with: keep this
# repository private, or delete the `seed` lines to derive those seeds from the secret too.

[course]
name = "{name}"
id = "{course_id}"
{secret_line}
[assignments.hw1]
title = "Parameters and output sizes"
topics = ["shapes", "params"]
exercises = ["q1_conv_layer_params", "q2_output_size", "q3_dilated_output_size"]
seed = {hw1}
per_student = false
# points = {{ conv2d_params = 2 }}          # point overrides, by exercise
# time_limits_s = {{ conv2d_params = 5 }}   # per-exercise time limits (seconds)

[assignments.hw2]
title = "Layers, pooling and receptive fields"
topics = ["layers", "pooling", "receptive"]
seed = {hw2}
per_student = false
time_limit_s = 20

[assignments.hw3]
title = "Saliency maps and transfer learning"
topics = ["saliency", "transfer"]
seed = {hw3}
per_student = true
"""


def _is_inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True


def _write_secret(path: Path) -> bool:
    """Create ``path`` with a fresh secret (mode 600); ``False`` if one exists already."""
    if path.exists():
        if not path.is_file() or not path.read_bytes().strip():
            raise ConfigError(
                f"{path} exists but holds no course secret; remove it or pass --secret-file"
            )
        return False
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_hex(32) + "\n")
    return True


def _ignore_rules(folder: Path, extra: Sequence[str]) -> Path:
    """Append cnnlab's ignore rules (and ``extra`` paths) to ``folder/.gitignore``, once."""
    gitignore = folder / ".gitignore"
    existing = gitignore.read_text(encoding="utf-8") if gitignore.is_file() else ""
    present = set(existing.splitlines())
    missing = [r for r in (*IGNORE_RULES, *extra) if r not in present]
    if missing:
        if IGNORE_MARK in present:
            missing = [r for r in missing if r != IGNORE_MARK]
        text = existing + ("\n" if existing and not existing.endswith("\n") else "")
        text += ("\n" if existing.strip() else "") + "\n".join(missing) + "\n"
        gitignore.write_text(text, encoding="utf-8")
    return gitignore


def init_course(
    folder: str | os.PathLike[str],
    *,
    name: str | None = None,
    secret_file: str | os.PathLike[str] | None = None,
) -> InitReport:
    """Create a course in ``folder``: ``cnnlab.toml``, the course secret and ignore rules.

    The secret goes to ``secret_file``, else to the user's config folder
    (:func:`default_secret_file`), else, when that cannot be written, to ``.cnnlab/secret`` in
    the course, git-ignored, with a warning. An existing secret file is kept (never
    overwritten).

    Raises:
        ConfigError: ``folder`` already holds a ``cnnlab.toml``, or is a file, or a bad name.
    """
    folder = Path(folder).absolute()
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{str(folder)!r} is a file; pass a folder for the course")
    course_file = folder / COURSE_FILE
    if course_file.exists():
        raise ConfigError(
            f"{_display(course_file)} exists already: this folder is a course. Edit that file "
            "(docs/courses.md), or run `cnnlab init` in another folder"
        )
    name = (name or folder.name or "course").strip()
    if not name or any(c in name for c in '"\\\n'):
        raise ConfigError(f"course name {name!r} must be a non-empty line without quotes")
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.") or "course"
    course_id = f"{slug[:60]}-{secrets.token_hex(3)}"
    folder.mkdir(parents=True, exist_ok=True)

    warnings: list[str] = []
    extra_ignores: list[str] = []
    if secret_file is not None:
        target = Path(secret_file).expanduser().absolute()
        created = _write_secret(target)
    else:
        target = default_secret_file(course_id)
        try:
            created = _write_secret(target)
        except OSError as exc:
            fallback = folder / LOCAL_SECRET
            warnings.append(
                f"cannot write the course secret to {target} ({exc.strerror or exc}); it is "
                f"in {fallback} instead"
            )
            target = fallback
            created = _write_secret(target)
    inside = _is_inside(target, folder)
    if inside:
        rel = target.resolve().relative_to(folder.resolve()).as_posix()
        extra_ignores.append(f"/{rel}")
        warnings.append(
            f"the course secret is inside the course folder ({rel}). It is git-ignored, but "
            "anything that copies the whole folder (a zip, rsync, a CI cache, a shared drive) "
            "copies the secret with it: move it outside (e.g. into "
            f"{config_dir() / 'secrets'}) and set secret_file in {COURSE_FILE}"
        )
    if secret_file is None and not inside:
        shown = str(target)
        home = str(Path.home())
        if shown.startswith(home + os.sep):
            shown = "~" + shown[len(home) :]
        secret_line = (
            f"# The course secret is in {shown} (the default place for this id).\n"
            '# To keep it elsewhere: secret_file = "/path/to/the/secret"\n'
        )
    else:
        written = f"/{target.resolve().relative_to(folder.resolve()).as_posix()}" if inside else ""
        value = written.lstrip("/") if inside else str(target)
        secret_line = f'secret_file = "{value}"\n'
    seeds: list[int] = []
    while len(seeds) < 3:
        seed = secrets.randbelow(MAX_SEED)
        if seed not in seeds:
            seeds.append(seed)
    gitignore = _ignore_rules(folder, extra_ignores)
    text = course_file_text(name, course_id, seeds, secret_line)
    fd = os.open(course_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    return InitReport(course_file, target, created, gitignore, tuple(warnings))
