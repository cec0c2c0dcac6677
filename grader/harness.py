"""Child-side harnesses: how the sandboxed child calls a student's function on one case and
turns what it returns into named numpy arrays.

This module runs *inside* the child. It must never import ``cnnref``, ``grader.exercises`` or
anything else that holds reference code or secrets: numpy always, torch lazily where needed.
Whatever a harness returns is written to ``.npz`` by the child and re-validated by the parent
(exact ``np.ndarray``, numeric dtype, no pickle), so nothing here is trusted.

A harness is ``fn(get, function, case) -> dict[str, np.ndarray]`` where ``get(name)`` returns
the student's callable called ``name`` (raising :class:`MissingFunction` if there is none),
``function`` is the exercise's student function and ``case`` the decoded case (numpy arrays
and Python scalars/strings).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

Getter = Callable[[str], Callable[..., Any]]
Harness = Callable[[Getter, str, dict[str, Any]], dict[str, np.ndarray]]

HARNESSES: dict[str, Harness] = {}


class MissingFunction(LookupError):
    """The submission defines no function of that name (the child reports status ``error``)."""


class BadReturn(TypeError):
    """The student's function returned something that is not numbers (status ``error``)."""


def harness(name: str) -> Callable[[Harness], Harness]:
    """Register a harness under ``name`` (the ``ExerciseSpec.harness`` key)."""

    def deco(fn: Harness) -> Harness:
        if name in HARNESSES:
            raise ValueError(f"harness {name!r} registered twice")
        HARNESSES[name] = fn
        return fn

    return deco


def as_array(value: Any, what: str) -> np.ndarray:
    """``value`` (ndarray, tensor, number, bool, nested list) as a plain numeric ndarray."""
    if type(value).__module__.startswith("torch"):
        value = value.detach().cpu().numpy()
    if isinstance(value, (bool, int, float, np.generic, np.ndarray, list, tuple)):
        arr = np.array(value)  # a copy, never a view of student memory
        if arr.dtype.kind in "biuf":
            return np.ascontiguousarray(arr)
    raise BadReturn(f"{what} must be a number or an array of numbers, got {type(value).__name__}")


def to_outputs(value: Any, names: tuple[str, ...] = ("out",)) -> dict[str, np.ndarray]:
    """A student's return value as named arrays.

    One name: the whole value is one array. Several names: the value must be a tuple/list of
    that length (e.g. ``(dx, dw, db)``).
    """
    if len(names) == 1:
        return {names[0]: as_array(value, "the return value")}
    if not isinstance(value, (tuple, list)) or len(value) != len(names):
        raise BadReturn(
            f"expected a tuple of {len(names)} values ({', '.join(names)}), "
            f"got {type(value).__name__}"
            + (f" of length {len(value)}" if isinstance(value, (tuple, list)) else "")
        )
    return {n: as_array(v, n) for n, v in zip(names, value, strict=True)}


@harness("call")
def call(get: Getter, function: str, case: dict[str, Any]) -> dict[str, np.ndarray]:
    """Call ``function(**case)`` and return its value as ``{"out": array}``."""
    return to_outputs(get(function)(**case))
