"""Comparators: is a student's output the expected one, and if not, what exactly differs.

Runs in the parent only, on data that came out of the child as plain ``np.ndarray``. The
checks, in order, for every named output:

1. **type**: exactly ``np.ndarray`` (no subclass, no object that claims to be equal);
2. **dtype kind**: an integer answer (the expected array has an integer dtype) must be an
   integer array — ``28.0`` for a parameter count is refused with a message; a floating answer
   must be floating-point of at least 32 bits: ``float64`` is what the reference computes,
   ``float32`` is accepted (the tolerance below still applies), ``float16`` is refused
   (it cannot hold the answer to the tolerance), integers and booleans are refused;
3. **shape**, exactly — a wrong shape that would broadcast is still wrong;
4. **finiteness**: a NaN or an infinity anywhere fails, naming its index;
5. **values**: integers must be equal; floats must satisfy
   ``|received - expected| <= atol + rtol * |expected|`` everywhere. On failure the message
   names the output, the worst index (largest excess over the tolerance), the expected and the
   received value, and how many values differ:
   ``"dx[0, 2, 1, 3]: expected 4.0, got 1.0 (12 of 96 values differ)"``.

``outputs_match`` is the same test without the messages, used to recognise known mistakes.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

__all__ = [
    "POSTPROCESS",
    "check_output",
    "check_outputs",
    "format_index",
    "format_value",
    "outputs_match",
]


def format_index(name: str, index: tuple[int, ...]) -> str:
    """``"dx"`` and ``(0, 2)`` as ``"dx[0, 2]"``; a 0-d output is just its name."""
    if not index:
        return name
    return f"{name}[{', '.join(str(int(i)) for i in index)}]"


def format_value(value: np.generic | float | int) -> str:
    """A scalar as a student would write it: ``7``, ``4.0``, ``0.3333333``, ``nan``."""
    if isinstance(value, (np.integer, int)) and not isinstance(value, (bool, np.bool_)):
        return str(int(value))
    if isinstance(value, (np.bool_, bool)):
        return str(bool(value))
    f = float(value)
    if np.isnan(f):
        return "nan"
    if np.isinf(f):
        return "inf" if f > 0 else "-inf"
    if f == int(f) and abs(f) < 1e15:
        return f"{f:.1f}"
    return f"{f:.7g}"


def _shape(shape: tuple[int, ...]) -> str:
    if not shape:
        return "a scalar"
    return f"shape {tuple(int(n) for n in shape)}"


def _kind_problem(name: str, expected: np.ndarray, received: np.ndarray) -> str | None:
    ek, rk = expected.dtype.kind, received.dtype.kind
    sample = format_value(received.flat[0]) if received.size else ""
    got = f"{received.dtype}" + (f" ({sample})" if received.ndim == 0 else "")
    if ek in "iu":
        if rk not in "iu":
            return (
                f"{name} must be an integer, got {got}: return an int "
                "(use // for division and int(...) around math.floor/ceil)"
            )
        return None
    if ek == "f":
        if rk == "f" and received.dtype.itemsize < 4:
            return f"{name} is {received.dtype}, which is too imprecise: compute in float64"
        if rk != "f":
            return (
                f"{name} must be a floating-point array, got {got}: "
                "compute it in float64 (e.g. np.zeros(shape) or x.astype(float))"
            )
        return None
    if ek == "b" and rk != "b":
        return f"{name} must be a boolean array, got {got}"
    return None


def check_output(
    name: str, expected: np.ndarray, received: object, *, rtol: float, atol: float
) -> str | None:
    """``None`` when ``received`` is ``expected`` to tolerance, else one line saying why not.

    Args:
        name: the output's name, used in the message (``"out"``, ``"dx"``, ``"rf"``).
        expected: the reference output (shape ``S``).
        received: what the student's code returned for it.
        rtol, atol: float tolerances; integers and booleans are compared exactly.
    """
    if type(received) is not np.ndarray:
        return f"{name} must be a numpy array or a number, got {type(received).__name__}"
    if received.dtype.kind not in "biuf":
        return f"{name} has dtype {received.dtype}, which is not a number type"
    kind = _kind_problem(name, expected, received)
    if kind:
        return kind
    if received.shape != expected.shape:
        return f"{name} has {_shape(received.shape)}, expected {_shape(expected.shape)}"
    if received.dtype.kind == "f":
        bad = ~np.isfinite(received)
        if bad.any():
            idx = tuple(int(i) for i in np.argwhere(bad)[0])
            return (
                f"{format_index(name, idx)} is {format_value(received[idx])}: every value "
                f"must be finite ({int(bad.sum())} of {received.size} are not)"
            )
    if expected.dtype.kind in "iub" or received.dtype.kind in "iub":
        wrong = received != expected
        if not wrong.any():
            return None
        idx = tuple(int(i) for i in np.argwhere(wrong)[0])
    else:
        exp = expected.astype(np.float64)
        rec = received.astype(np.float64)
        excess = np.abs(rec - exp) - (atol + rtol * np.abs(exp))
        wrong = excess > 0
        if not wrong.any():
            return None
        idx = tuple(int(i) for i in np.unravel_index(int(np.argmax(excess)), excess.shape))
    msg = (
        f"{format_index(name, idx)}: expected {format_value(expected[idx])}, "
        f"got {format_value(received[idx])}"
    )
    if expected.ndim:
        msg += f" ({int(wrong.sum())} of {expected.size} values differ)"
    return msg


def check_outputs(
    expected: Mapping[str, np.ndarray],
    received: Mapping[str, object] | None,
    *,
    rtol: float,
    atol: float,
) -> str | None:
    """Check every expected output in order; the first problem found, or ``None``."""
    if received is None:
        return "no result came back"
    for name, exp in expected.items():
        if name not in received:
            return f"the result has no {name!r}"
        problem = check_output(name, exp, received[name], rtol=rtol, atol=atol)
        if problem:
            return problem
    return None


def outputs_match(
    a: Mapping[str, np.ndarray], b: Mapping[str, object] | None, *, rtol: float, atol: float
) -> bool:
    """Whether ``b`` has every output of ``a`` with the same shape and values (to tolerance).

    Dtype kinds are not required to agree (a mistake is recognised by its numbers), but types
    are: only plain ``np.ndarray`` can match.
    """
    if b is None:
        return False
    for name, x in a.items():
        y = b.get(name)
        if type(y) is not np.ndarray or y.dtype.kind not in "biuf" or y.shape != x.shape:
            return False
        if x.dtype.kind == "f" or y.dtype.kind == "f":
            xf, yf = x.astype(np.float64), y.astype(np.float64)
            if not np.all(np.isfinite(yf)) or not np.allclose(
                yf, xf, rtol=rtol, atol=atol, equal_nan=False
            ):
                return False
        elif not np.array_equal(x, y):
            return False
    return True


# ----------------------------------------------------------------------------- parent-side scorers
#
# Some checks need data the child must never see (held-out labels of a training exercise): the
# child returns raw predictions and one of these turns them, with the case's hidden data, into
# the outputs that are compared. A scorer returns ``(outputs, problem)``: ``problem`` is a
# readable message when the student's result falls short, else ``None``.


def accuracy_shortfall(
    received: Mapping[str, object], hidden: Mapping[str, object]
) -> tuple[dict[str, np.ndarray], str | None]:
    """Held-out accuracy of ``received["predictions"]`` against ``hidden["test_labels"]``.

    Output ``accuracy_shortfall`` is ``max(0, target - accuracy)``: 0 when the target
    (``hidden["target_accuracy"]``) is reached.
    """
    labels = np.asarray(hidden["test_labels"])
    target = float(hidden["target_accuracy"])
    predictions = received.get("predictions")
    if type(predictions) is not np.ndarray or predictions.dtype.kind not in "iu":
        return {}, "the model's predictions on the held-out images are not integer class indices"
    if predictions.shape != labels.shape:
        return {}, (
            f"predictions have shape {_shape(predictions.shape)}, "
            f"expected {_shape(labels.shape)} (one class per held-out image)"
        )
    accuracy = float(np.mean(predictions == labels))
    shortfall = round(max(0.0, target - accuracy), 6)
    outputs = {"accuracy_shortfall": np.asarray(shortfall, dtype=np.float64)}
    if shortfall > 0:
        return outputs, (
            f"held-out accuracy {accuracy:.1%} is below the target {target:.0%} "
            "(train the new head longer, with a larger learning rate, or check that the "
            "optimizer gets the trainable parameters)"
        )
    return outputs, None


POSTPROCESS = {"accuracy_shortfall": accuracy_shortfall}
