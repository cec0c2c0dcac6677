"""The exercise registry: one :class:`ExerciseSpec` per exercise.

Everything downstream reads this: the engine (what to run, what to compare), generation
(stubs, solutions, notebooks), the bundle (public check cases) and batch reports (mistakes).

Where specs come from, in this order:

1. the built-in exercises, declared in ``grader/exercises/<topic>.py`` and registered on import;
2. instructors' plugins: every entry point of the group ``cnnlab.exercises``
   (:mod:`grader.plugins`), loaded on first use. Each spec a plugin provides must pass
   :func:`grader.authoring.check_spec` and must not reuse a name; a plugin that fails to import
   or a spec that fails is recorded (:func:`plugin_problems`, shown by ``cnnlab list``) and
   left out, so a broken plugin never takes the built-in exercises down.

An *assignment view* (:class:`AssignmentView`, set by the ``--assignment`` of a course file,
:mod:`grader.course`) narrows what :func:`all_specs` and :func:`select` return to one
assignment's exercises, with its point and time-limit overrides. The view lives in the
environment variable :data:`VIEW_ENV`, so the processes a command starts (batch workers, the
grading process of the Gradescope autograder) see the same exercises as the command itself.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from grader.errors import UnknownExerciseError, did_you_mean, exercise_hint

if TYPE_CHECKING:  # pragma: no cover
    from grader.plugins import PluginProblem, PluginSource

#: One randomized check case: the keyword arguments of the student call, as plain data
#: (numpy arrays, Python ints/floats/strs, tuples of those). Never a live object.
Case = dict[str, Any]
#: What a run produced (student, reference or known mistake): named numpy arrays.
Outputs = dict[str, np.ndarray]


@dataclass(frozen=True)
class Mistake:
    """A known wrong answer, recognised so that feedback can name it.

    Attributes:
        name: slug, e.g. ``"bias_forgotten"``; counted in batch reports.
        message: says what the student did and how to fix it, e.g.
            "gradient sent to every element of the window: only the maximum receives it".
        produce: computes the wrong outputs this mistake gives on a case.
    """

    name: str
    message: str
    produce: Callable[[Case], Outputs]


@dataclass(frozen=True)
class ExerciseSpec:
    """Everything the grader and the generator know about one exercise.

    Attributes:
        name: registry key and ``-e`` name, e.g. ``"conv2d_backward"``.
        number: exercise number shown to students, e.g. ``"3.2"``.
        topic: lecture topic (module of ``exercises/``): ``shapes``, ``params``, ``layers``,
            ``pooling``, ``receptive``, ``saliency``, ``transfer``, ``architectures``.
        title: one line for tables and notebooks.
        points: maximum score.
        function: the student function the harness calls (same name as in ``cnnref``).
        harness: key of the child-side harness in ``grader.sandbox.harness`` that calls it.
        make_cases: draws the randomized cases from a seeded generator; must include the
            hard cases (ties, overlap, padding, dilation, batch of one, non-square, floor!=ceil).
        reference: the expected outputs of a case, computed in the parent from ``cnnref``.
        mistakes: known wrong variants, each with a message that names it.
        reference_function: the ``cnnref`` callable the stub mirrors (signature, docstring,
            and the solution body for generated solutions).
        uses: other student functions the harness also calls (a backward uses the forward).
        rtol, atol: float tolerances; integer outputs are compared exactly.
        timeout_s: wall-clock limit of one child run.
        question: for numeric questions, the text (with the case's numbers) shown to students.
        hidden: case keys that stay in the parent: the reference and the mistakes see them,
            the child never does (e.g. held-out labels of a training exercise).
        postprocess: name of a parent-side scorer in ``grader.compare.POSTPROCESS`` that turns
            what the child returned plus the hidden keys into the outputs that are compared.
        context: computes, in the parent, data that explains a failure without being scored
            (e.g. the forward pass's expected output for a backward exercise, the names of a
            model's modules); stored with the hidden keys, never sent to the child.
        explain: name of a parent-side explainer in ``grader.compare.EXPLAIN`` that turns a
            failing case's raw problem ("training[3]: expected 1, got 0") into what happened
            ("the BatchNorm1d at features.2 was left in training mode").
    """

    name: str
    number: str
    topic: str
    title: str
    points: float
    function: str
    harness: str
    make_cases: Callable[[np.random.Generator], list[Case]]
    reference: Callable[[Case], Outputs]
    mistakes: tuple[Mistake, ...] = ()
    reference_function: Callable[..., Any] | None = None
    uses: tuple[str, ...] = ()
    rtol: float = 1e-6
    atol: float = 1e-8
    timeout_s: float = 10.0
    question: str | None = None
    tags: frozenset[str] = field(default_factory=frozenset)
    hidden: tuple[str, ...] = ()
    postprocess: str | None = None
    context: Callable[[Case], dict[str, Any]] | None = None
    explain: str | None = None


_REGISTRY: dict[str, ExerciseSpec] = {}
#: Names of the built-in exercises (registered by ``grader.exercises``).
_BUILTIN: set[str] = set()
#: Exercise name -> the plugin entry point that provided it.
_ORIGIN: dict[str, PluginSource] = {}
_PROBLEMS: list[PluginProblem] = []
_PLUGINS_LOADED = False
#: While a plugin is imported, specs it passes to :func:`register` itself are collected here
#: (and checked like the ones its entry point names) instead of being registered unchecked.
_CAPTURE: list[ExerciseSpec] | None = None


def register(spec: ExerciseSpec) -> ExerciseSpec:
    """Add ``spec``; a second spec with the same name is a programming error."""
    if _CAPTURE is not None:
        _CAPTURE.append(spec)
        return spec
    if spec.name in _REGISTRY:
        raise ValueError(f"exercise {spec.name!r} registered twice")
    _REGISTRY[spec.name] = spec
    return spec


def _load() -> None:
    # Importing the package registers every built-in exercise (grader/exercises/__init__.py).
    global _PLUGINS_LOADED
    if not _BUILTIN:
        import grader.exercises  # noqa: F401

        _BUILTIN.update(_REGISTRY)
    if not _PLUGINS_LOADED:
        _PLUGINS_LOADED = True  # first: a plugin that imports the registry must not recurse
        _load_plugins()


def _load_plugins() -> None:
    """Register every plugin's specs that pass their self-check; record the others."""
    global _CAPTURE
    from grader import authoring, plugins
    from grader.plugins import PluginProblem

    for source, ep in plugins.discover():
        _CAPTURE = []
        try:
            specs = plugins.load(ep)
            specs += [s for s in _CAPTURE if all(s is not t for t in specs)]
        except plugins.PluginLoadError as exc:
            _PROBLEMS.append(PluginProblem(source, str(exc)))
            continue
        finally:
            _CAPTURE = None
        if not specs:
            _PROBLEMS.append(PluginProblem(source, "it provides no exercise"))
            continue
        for spec in specs:
            name = getattr(spec, "name", None)
            if isinstance(name, str) and name in _REGISTRY:
                other = _ORIGIN.get(name)
                by = "a built-in exercise" if other is None else other.describe()
                _PROBLEMS.append(
                    PluginProblem(
                        source,
                        f"the name is already taken by {by}; rename the plugin's exercise",
                        exercise=name,
                    )
                )
                continue
            problems = authoring.check_spec(spec, [*_REGISTRY.values(), *specs])
            if problems:
                _PROBLEMS.extend(
                    PluginProblem(source, p, exercise=name if isinstance(name, str) else None)
                    for p in problems
                )
                continue
            _REGISTRY[spec.name] = spec
            _ORIGIN[spec.name] = source


def reload_plugins() -> None:
    """Forget every plugin and load the entry points again (after installing one in-process)."""
    global _PLUGINS_LOADED
    _load()
    for name in list(_ORIGIN):
        _REGISTRY.pop(name, None)
    _ORIGIN.clear()
    _PROBLEMS.clear()
    from grader import plugins

    plugins.refresh()
    _PLUGINS_LOADED = True
    _load_plugins()


def plugin_problems() -> list[PluginProblem]:
    """Plugins (or plugin specs) that could not be registered, each with the reason."""
    _load()
    return list(_PROBLEMS)


def origin(name: str) -> PluginSource | None:
    """The plugin entry point that provided exercise ``name``; ``None`` for a built-in one."""
    _load()
    return _ORIGIN.get(name)


def is_builtin(name: str) -> bool:
    """Whether ``name`` is one of cnnlab's own exercises."""
    _load()
    return name in _BUILTIN


def topics() -> list[str]:
    """Every topic of a registered exercise (built-in or plugin), in registry order."""
    _load()
    seen: list[str] = []
    for spec in _REGISTRY.values():
        if spec.topic not in seen:
            seen.append(spec.topic)
    return seen


# ----------------------------------------------------------------------------- assignment view

#: Environment variable holding the active :class:`AssignmentView` as JSON.
VIEW_ENV = "CNNLAB_ASSIGNMENT_VIEW"


@dataclass(frozen=True)
class AssignmentView:
    """One assignment's exercises with its overrides (see the module docstring).

    Attributes:
        assignment: its name, e.g. ``"hw1"``.
        exercises: the exercise names it grades, in registry order.
        points: exercise name -> maximum score that replaces the spec's ``points``.
        timeout_s: exercise name -> wall-clock limit (seconds) that replaces ``timeout_s``.
    """

    assignment: str
    exercises: tuple[str, ...]
    points: Mapping[str, float] = field(default_factory=dict)
    timeout_s: Mapping[str, float] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(
            {
                "assignment": self.assignment,
                "exercises": list(self.exercises),
                "points": dict(self.points),
                "timeout_s": dict(self.timeout_s),
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> AssignmentView:
        doc = json.loads(text)
        return cls(
            assignment=str(doc["assignment"]),
            exercises=tuple(str(n) for n in doc["exercises"]),
            points={str(k): float(v) for k, v in doc.get("points", {}).items()},
            timeout_s={str(k): float(v) for k, v in doc.get("timeout_s", {}).items()},
        )

    def apply(self, spec: ExerciseSpec) -> ExerciseSpec:
        """``spec`` with this assignment's points and time limit."""
        changes: dict[str, Any] = {}
        if spec.name in self.points:
            changes["points"] = self.points[spec.name]
        if spec.name in self.timeout_s:
            changes["timeout_s"] = self.timeout_s[spec.name]
        return dataclasses.replace(spec, **changes) if changes else spec


_VIEW_CACHE: tuple[str, AssignmentView] | None = None


def active_view() -> AssignmentView | None:
    """The assignment view in force in this process (``$CNNLAB_ASSIGNMENT_VIEW``), if any."""
    global _VIEW_CACHE
    text = os.environ.get(VIEW_ENV)
    if not text:
        return None
    if _VIEW_CACHE is None or _VIEW_CACHE[0] != text:
        try:
            _VIEW_CACHE = (text, AssignmentView.from_json(text))
        except (ValueError, KeyError, TypeError) as exc:
            from grader.errors import ConfigError

            raise ConfigError(
                f"${VIEW_ENV} is not a valid assignment view ({exc}); unset it"
            ) from None
    return _VIEW_CACHE[1]


@contextmanager
def use_view(view: AssignmentView | None) -> Iterator[AssignmentView | None]:
    """Make ``view`` the active assignment view (for this process and the ones it starts)
    until the block ends; ``None`` leaves everything as it is."""
    if view is None:
        yield None
        return
    before = os.environ.get(VIEW_ENV)
    os.environ[VIEW_ENV] = view.to_json()
    try:
        yield view
    finally:
        if before is None:
            os.environ.pop(VIEW_ENV, None)
        else:
            os.environ[VIEW_ENV] = before


# ----------------------------------------------------------------------------- lookups


def all_specs() -> list[ExerciseSpec]:
    """Every registered exercise, in registration (= exercise number) order: the built-in
    ones, then the plugins'. Under an assignment view: that assignment's exercises only."""
    _load()
    view = active_view()
    if view is None:
        return list(_REGISTRY.values())
    wanted = set(view.exercises)
    return [view.apply(s) for s in _REGISTRY.values() if s.name in wanted]


def all_registered() -> list[ExerciseSpec]:
    """Every registered exercise, ignoring any assignment view (what a course file may name)."""
    _load()
    return list(_REGISTRY.values())


def names() -> list[str]:
    return [s.name for s in all_specs()]


def _unknown(name: str, tail: str) -> UnknownExerciseError:
    hint = exercise_hint(name, _REGISTRY.values())
    broken = [
        p
        for p in _PROBLEMS
        if p.exercise == name or (p.exercise is None and p.source.entry_point == name)
    ]
    if broken:
        tail += f" (a plugin provides it but was not loaded: {broken[0]})"
    return UnknownExerciseError(f"unknown exercise {name!r}.{hint} {tail}")


def get(name: str) -> ExerciseSpec:
    """The spec called ``name`` (with the active assignment's overrides when it is one of the
    assignment's exercises); an unknown name raises with a "did you mean"."""
    _load()
    try:
        spec = _REGISTRY[name]
    except KeyError:
        raise _unknown(name, "Run `cnnlab list` to see every exercise.") from None
    view = active_view()
    return view.apply(spec) if view is not None and name in view.exercises else spec


def select(requested: Iterable[str] | None) -> list[ExerciseSpec]:
    """Specs for the requested names in registry order; all of them when none requested.

    Under an assignment view only the assignment's exercises can be selected.
    """
    requested = list(requested or [])
    if not requested:
        return all_specs()
    view = active_view()
    for n in requested:
        get(n)  # unknown names fail with a "did you mean"
        if view is not None and n not in view.exercises:
            hint = did_you_mean(n, view.exercises)
            raise UnknownExerciseError(
                f"exercise {n!r} is not in assignment {view.assignment!r}.{hint} "
                f"The assignment has: {', '.join(view.exercises)}."
            )
    wanted = set(requested)
    return [s for s in all_specs() if s.name in wanted]
