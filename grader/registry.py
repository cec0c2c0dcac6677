"""The exercise registry: one :class:`ExerciseSpec` per exercise.

Everything downstream reads this: the engine (what to run, what to compare), generation
(stubs, solutions, notebooks), the bundle (public check cases) and batch reports (mistakes).
Specs are declared in ``grader/exercises/<topic>.py`` and registered on import.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from grader.errors import UnknownExerciseError

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


def register(spec: ExerciseSpec) -> ExerciseSpec:
    """Add ``spec``; a second spec with the same name is a programming error."""
    if spec.name in _REGISTRY:
        raise ValueError(f"exercise {spec.name!r} registered twice")
    _REGISTRY[spec.name] = spec
    return spec


def _load() -> None:
    # Importing the package registers every exercise (grader/exercises/__init__.py).
    import grader.exercises  # noqa: F401


def all_specs() -> list[ExerciseSpec]:
    """Every registered exercise, in registration (= exercise number) order."""
    _load()
    return list(_REGISTRY.values())


def names() -> list[str]:
    return [s.name for s in all_specs()]


def get(name: str) -> ExerciseSpec:
    """The spec called ``name``; an unknown name raises with a "did you mean"."""
    _load()
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise UnknownExerciseError(
            f"unknown exercise {name!r}.{hint} Run `cnnlab list` to see every exercise."
        ) from None


def select(requested: Iterable[str] | None) -> list[ExerciseSpec]:
    """Specs for the requested names in registry order; all of them when none requested."""
    requested = list(requested or [])
    if not requested:
        return all_specs()
    wanted = {get(n).name for n in requested}
    return [s for s in all_specs() if s.name in wanted]
