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

import contextlib
import os
import sys
import sysconfig
import traceback
from collections.abc import Callable, Iterable
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
        arr = np.array(value, order="C")  # a C-ordered copy (0-d stays 0-d), never a view
        if arr.dtype.kind in "biuf":
            return arr
    raise BadReturn(f"{what} must be a number or an array of numbers, got {type(value).__name__}")


#: Longest text (bytes of UTF-8) a harness sends back in a text output.
TEXT_BYTES = 2000


def text_array(text: str, limit: int = TEXT_BYTES) -> np.ndarray:
    """``text`` as a 1-d ``uint8`` array of its UTF-8 bytes (cut to ``limit`` bytes).

    Outputs must be numeric arrays, so a harness that needs to report words (an error
    message, a module's parameter names) sends them this way; the parent decodes them with
    :func:`grader.compare.array_text` as untrusted data, never as code.
    """
    data = text.encode("utf-8", errors="replace")[:limit]
    return np.frombuffer(data, dtype=np.uint8).copy()


def _library_roots() -> tuple[str, ...]:
    """Folders whose frames are not the student's: the standard library, site-packages,
    numpy, torch (when imported) and the grader itself."""
    roots = set()
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        with_path = sysconfig.get_paths().get(key)
        if with_path:
            roots.add(os.path.realpath(with_path))
    for name in ("numpy", "torch", "grader"):
        module = sys.modules.get(name)
        if module is not None and getattr(module, "__file__", None):
            roots.add(os.path.realpath(os.path.dirname(module.__file__)))
    return tuple(sorted(roots))


def student_frame(tb: Any) -> tuple[str, str, int] | None:
    """``(function, file as shown, line)`` of the innermost frame of ``tb`` that is the
    student's code (not the standard library, site-packages, numpy, torch or the grader).

    Files are shown by name: ``architectures.py``, or ``hw.ipynb, cell 3`` for a notebook cell
    (compiled as ``<hw.ipynb cell 3>``).
    """
    roots = _library_roots()
    found = None
    for frame, lineno in traceback.walk_tb(tb):
        fname = frame.f_code.co_filename
        if fname.startswith("<") and fname.endswith(">"):
            inner = fname[1:-1]
            if " cell " not in inner:
                continue  # <string>, <frozen ...>: not a file of the student
            notebook, _, cell = inner.rpartition(" cell ")
            shown = f"{notebook}, cell {cell}"
        else:
            real = os.path.realpath(fname)
            if any(real == r or real.startswith(r + os.sep) for r in roots):
                continue
            shown = os.path.basename(fname)
        found = (frame.f_code.co_name, shown, lineno)
    return found


def describe_error(exc: BaseException) -> tuple[str, str]:
    """``exc`` as ``("RuntimeError: message", "forward (architectures.py, line 40)")``:
    what went wrong, and where in the student's code (empty when not in their code)."""
    try:
        text = " ".join(str(exc).split())
    except Exception:  # a student's __str__ may raise
        text = "(the exception's message could not be shown)"
    what = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    where = student_frame(exc.__traceback__)
    at = ""
    if where is not None:
        func, shown, line = where
        at = f"{shown}, line {line}" if func == "<module>" else f"{func} ({shown}, line {line})"
    return what, at


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


def import_harness_modules() -> list[str]:
    """Import every ``grader/sandbox/harness_*.py`` (each registers its harnesses); their names."""
    import importlib
    import pkgutil

    import grader.sandbox

    names = sorted(
        info.name
        for info in pkgutil.iter_modules(grader.sandbox.__path__)
        if info.name.startswith("harness_")
    )
    for name in names:
        importlib.import_module(f"grader.sandbox.{name}")
    return names


def needs_torch(harness_names: Iterable[str]) -> bool:
    """Whether any of these harnesses is a torch harness (``harness_torch``): the sandbox then
    preloads torch in its fork server (about 5 s of start-up saved per child that uses it,
    about 5 s of start-up wasted where none does; a child that imports torch anyway still
    can, at its own cost)."""
    if not HARNESSES:
        import_harness_modules()
    return any(
        getattr(HARNESSES.get(name), "__module__", "").endswith("_torch") for name in harness_names
    )


#: Harnesses whose child takes optimizer steps (the fork server then takes one first).
OPTIMIZER_HARNESSES = frozenset({"fine_tune", "param_groups"})


def needs_optimizer(harness_names: Iterable[str]) -> bool:
    """Whether any of these harnesses trains (see :data:`OPTIMIZER_HARNESSES`)."""
    return any(name in OPTIMIZER_HARNESSES for name in harness_names)


@harness("call")
def call(get: Getter, function: str, case: dict[str, Any]) -> dict[str, np.ndarray]:
    """Call ``function(**case)`` and return its value as ``{"out": array}``."""
    return to_outputs(get(function)(**case))


@harness("forward")
def forward(get: Getter, function: str, case: dict[str, Any]) -> dict[str, np.ndarray]:
    """Call a ``*_forward(**case) -> (out, cache)`` and return ``{"out": out}``."""
    value = get(function)(**case)
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise BadReturn(
            f"{function} must return a pair (out, cache), got {type(value).__name__}"
            + (f" of length {len(value)}" if isinstance(value, (tuple, list)) else "")
        )
    return {"out": as_array(value[0], "out (the first value returned)")}


def forward_name(backward: str) -> str:
    """The forward function whose cache a backward consumes: ``x_backward`` -> ``x_forward``."""
    stem = backward[: -len("_backward")] if backward.endswith("_backward") else backward
    return f"{stem}_forward"


def _run_backward(
    get: Getter, function: str, case: dict[str, Any], names: tuple[str, ...]
) -> dict[str, np.ndarray]:
    """Make the cache with the student's own forward (as in CS231n), then call the backward.

    ``case`` holds the forward's keyword arguments plus ``dout``, the upstream gradient, whose
    shape is the correct forward output's shape. Besides the gradients, the outputs hold
    ``forward_out`` (what the student's forward returned, not scored), so that the parent can
    tell a wrong backward from a backward misled by its forward's cache.
    """
    forward_kwargs = {k: v for k, v in case.items() if k != "dout"}
    dout = case["dout"]
    fwd = forward_name(function)
    try:
        value = get(fwd)(**forward_kwargs)
    except NotImplementedError as exc:  # the forward's stub: say which function to finish
        said = f" ({exc})" if str(exc) else ""
        raise NotImplementedError(
            f"{function} uses your {fwd} to make its cache, and {fwd} is not implemented "
            f"yet{said}: finish {fwd} first"
        ) from None
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise BadReturn(
            f"{function} uses your {fwd} to make its cache, and {fwd} must return a pair "
            f"(out, cache), got {type(value).__name__}"
        )
    out, cache = value
    out_shape = getattr(out, "shape", None)
    if out_shape is not None and tuple(out_shape) != tuple(dout.shape):
        raise BadReturn(
            f"{function} uses your {fwd} to make its cache, but {fwd} returned out of shape "
            f"{tuple(out_shape)} where {tuple(dout.shape)} is expected: fix {fwd} first"
        )
    outputs = to_outputs(get(function)(dout, cache), names)
    # the forward's out, when it is numbers (otherwise the backward is graded as it is)
    with contextlib.suppress(BadReturn):
        outputs["forward_out"] = as_array(out, "out")
    return outputs


@harness("backward")
def backward(get: Getter, function: str, case: dict[str, Any]) -> dict[str, np.ndarray]:
    """A layer backward returning ``(dx, dw, db)``, fed by the student's own forward."""
    return _run_backward(get, function, case, ("dx", "dw", "db"))


@harness("backward_dx")
def backward_dx(get: Getter, function: str, case: dict[str, Any]) -> dict[str, np.ndarray]:
    """A parameter-free backward returning only ``dx`` (max pooling), fed by its forward."""
    return _run_backward(get, function, case, ("dx",))


#: Codes of the ``layers`` int array of the receptive-field harness: one row per layer,
#: ``(kind, size, stride, padding, dilation)``; kind 0 = Conv2D (size = kernel_size),
#: kind 1 = MaxPool2D (size = pool_size, stride 0 = None); padding -1 = "same", -2 = "valid",
#: else pixels on each side.
LAYER_CONV, LAYER_POOL = 0, 1
PADDING_CODES = {-1: "same", -2: "valid"}
RECEPTIVE_FIELDS = ("n_out", "jump", "rf", "start")


class Conv2D:
    """Look-alike of ``params.Conv2D`` (the reference's objects cannot exist in the child)."""

    def __init__(self, filters, kernel_size, stride=1, padding="valid", dilation=1):
        self.filters = filters
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = padding
        self.dilation = dilation

    def __repr__(self) -> str:
        return (
            f"Conv2D({self.filters}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding!r}, dilation={self.dilation})"
        )


class MaxPool2D:
    """Look-alike of ``params.MaxPool2D``."""

    def __init__(self, pool_size, stride=None, padding="valid"):
        self.pool_size = pool_size
        self.stride = stride
        self.padding = padding

    def __repr__(self) -> str:
        return f"MaxPool2D({self.pool_size}, stride={self.stride})"


def build_layers(get: Getter, table: np.ndarray) -> list[Any]:
    """Layer objects from the int table; the student's own ``Conv2D``/``MaxPool2D`` classes
    when the submission defines them (so ``isinstance`` in their code works), else look-alikes.
    """

    def cls(name: str, fallback: type) -> Any:
        try:
            found = get(name)
        except MissingFunction:
            return fallback
        return found if isinstance(found, type) else fallback

    conv_cls, pool_cls = cls("Conv2D", Conv2D), cls("MaxPool2D", MaxPool2D)
    built = []
    for kind, size, stride, padding, dilation in np.asarray(table).tolist():
        if kind == LAYER_CONV:
            pad = PADDING_CODES.get(padding, padding)
            built.append(conv_cls(8, size, stride=stride, padding=pad, dilation=dilation))
        else:
            built.append(pool_cls(size, stride=stride or None))
    return built


def _field(record: Any, name: str, i: int) -> Any:
    if isinstance(record, dict):
        if name in record:
            return record[name]
    elif hasattr(record, name):
        return getattr(record, name)
    raise BadReturn(
        f"record {i} of the returned list has no field {name!r}; each record needs "
        f"{', '.join(RECEPTIVE_FIELDS)}"
    )


@harness("receptive")
def receptive(get: Getter, function: str, case: dict[str, Any]) -> dict[str, np.ndarray]:
    """``receptive_field(layers, input_size)``: one record per layer, as four arrays."""
    layers = build_layers(get, case["layers"])
    records = get(function)(layers, case["input_size"])
    if not isinstance(records, (list, tuple)):
        raise BadReturn(f"{function} must return a list of records, got {type(records).__name__}")
    if len(records) != len(layers):
        raise BadReturn(
            f"{function} returned {len(records)} records for {len(layers)} layers: "
            "return one record per layer"
        )
    return {
        name: as_array([_field(r, name, i) for i, r in enumerate(records)], name)
        for name in RECEPTIVE_FIELDS
    }
