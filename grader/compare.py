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
   ``|received - expected| <= atol + rtol * |expected|`` everywhere. A ``float32`` answer
   computed in float32 loses digits where a sum cancels (a value near 0 made of terms near
   1), so for it ``rtol`` is at least :data:`FLOAT32_RTOL` and ``atol`` at least
   ``FLOAT32_RTOL`` times the largest ``|expected|`` of that output. On failure the message
   names the output, the worst index (largest excess over the tolerance), the expected and the
   received value, and how many values differ:
   ``"dx[0, 2, 1, 3]: expected 4.0, got 1.0 (12 of 96 values differ)"``.

``outputs_match`` is the same test without the messages, used to recognise known mistakes;
``differing_cells`` says where, so that renderers can mark the cells (:func:`pictures`).

Everything here is data in, data out: no student code runs in the parent.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = [
    "EXPLAIN",
    "PICTURE_SIDE",
    "POSTPROCESS",
    "RuntimeProblem",
    "check_output",
    "check_outputs",
    "differing_cells",
    "failing_output",
    "format_index",
    "format_value",
    "outputs_match",
    "pictures",
    "tolerances",
]

#: Largest map (cells per side) kept as a picture: about what a reader takes in at a glance
#: (the lecture's 5x5 max-pool example, an 8x8 feature map); larger maps get only the message.
PICTURE_SIDE = 10
#: At most this many maps of one output are kept per result.
PICTURE_MAPS = 4
#: Relative tolerance a float32 answer always gets (float32 keeps about 7 digits; sums of a
#: few hundred terms lose one or two of them).
FLOAT32_RTOL = 1e-5


def tolerances(
    expected: np.ndarray, received: np.ndarray, *, rtol: float, atol: float
) -> tuple[float, float]:
    """The ``(rtol, atol)`` a received array is held to: the exercise's own, widened for a
    ``float32`` (or narrower) float answer to what float32 arithmetic can reach."""
    if received.dtype.kind == "f" and received.dtype.itemsize <= 4 and expected.size:
        finite = expected[np.isfinite(expected)] if expected.dtype.kind == "f" else expected
        scale = float(np.max(np.abs(finite))) if finite.size else 0.0
        return max(rtol, FLOAT32_RTOL), max(atol, FLOAT32_RTOL * scale)
    return rtol, atol


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


#: Said instead of the expected value when it must stay hidden (see ``conceal``).
CONCEALED = (
    "the expected value is not shown: these numbers are your own problem set's, graded for credit"
)


def check_output(
    name: str,
    expected: np.ndarray,
    received: object,
    *,
    rtol: float,
    atol: float,
    conceal: bool = False,
) -> str | None:
    """``None`` when ``received`` is ``expected`` to tolerance, else one line saying why not.

    Args:
        name: the output's name, used in the message (``"out"``, ``"dx"``, ``"rf"``).
        expected: the reference output (shape ``S``).
        received: what the student's code returned for it.
        rtol, atol: float tolerances; integers and booleans are compared exactly.
        conceal: say which value is wrong without the expected one (a numeric question whose
            answer is the student's own and graded for credit: the feedback must not be a
            way to learn it and resubmit).
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
        rtol, atol = tolerances(expected, received, rtol=rtol, atol=atol)
        exp = expected.astype(np.float64)
        rec = received.astype(np.float64)
        excess = np.abs(rec - exp) - (atol + rtol * np.abs(exp))
        wrong = excess > 0
        if not wrong.any():
            return None
        idx = tuple(int(i) for i in np.unravel_index(int(np.argmax(excess)), excess.shape))
    if conceal:
        msg = f"{format_index(name, idx)}: {format_value(received[idx])} is wrong ({CONCEALED})"
    else:
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
    conceal: bool = False,
) -> str | None:
    """Check every expected output in order; the first problem found, or ``None``
    (``conceal``: see :func:`check_output`)."""
    if received is None:
        return "no result came back"
    for name, exp in expected.items():
        if name not in received:
            return f"the result has no {name!r}"
        problem = check_output(name, exp, received[name], rtol=rtol, atol=atol, conceal=conceal)
        if problem:
            return problem
    return None


def failing_output(
    expected: Mapping[str, np.ndarray],
    received: Mapping[str, object] | None,
    *,
    rtol: float,
    atol: float,
) -> str | None:
    """The name of the first output :func:`check_outputs` complains about, or ``None``."""
    if received is None:
        return None
    for name, exp in expected.items():
        if name not in received or check_output(name, exp, received[name], rtol=rtol, atol=atol):
            return name
    return None


def _excess(expected: np.ndarray, received: np.ndarray, rtol: float, atol: float) -> np.ndarray:
    """How far each received value is outside the tolerance (> 0 means it differs)."""
    if expected.dtype.kind in "iub" and received.dtype.kind in "iub":
        return (received != expected).astype(np.float64)
    rtol, atol = tolerances(expected, received, rtol=rtol, atol=atol)
    exp = expected.astype(np.float64)
    rec = received.astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        excess = np.abs(rec - exp) - (atol + rtol * np.abs(exp))
    return np.where(np.isfinite(rec), excess, np.inf)


def differing_cells(
    expected: np.ndarray, received: np.ndarray, *, rtol: float, atol: float
) -> np.ndarray:
    """Boolean array of ``expected``'s shape: where ``received`` is outside the tolerance
    (same rule as :func:`check_output`; a NaN or infinity always differs).

    Raises:
        ValueError: the shapes differ (nothing can be compared cell by cell).
    """
    if expected.shape != received.shape:
        raise ValueError(f"shapes differ: {expected.shape} and {received.shape}")
    return _excess(expected, received, rtol, atol) > 0


def pictures(
    name: str,
    expected: np.ndarray,
    received: object,
    *,
    rtol: float,
    atol: float,
    case: int,
    label: str = "",
) -> tuple:
    """Small maps of output ``name`` where ``received`` differs from ``expected``, worst first.

    A map is the last two axes (one row for a 1-d output); only outputs whose maps have at
    most :data:`PICTURE_SIDE` cells per side, of the same shape and a numeric dtype, give
    pictures, at most :data:`PICTURE_MAPS` of them. The records hold plain numbers only.

    Returns:
        a tuple of :class:`grader.results.Picture` (empty when nothing can be drawn).
    """
    from grader.results import Picture

    if type(received) is not np.ndarray or received.dtype.kind not in "biuf":
        return ()
    if received.shape != expected.shape or expected.ndim == 0 or expected.size == 0:
        return ()
    rows, cols = (1, expected.shape[0]) if expected.ndim == 1 else expected.shape[-2:]
    if rows > PICTURE_SIDE or cols > PICTURE_SIDE:
        return ()
    excess = _excess(expected, received, rtol, atol)
    lead = expected.shape[:-2] if expected.ndim >= 2 else ()
    maps = []
    for index in np.ndindex(*lead) if lead else [()]:
        worst = float(np.max(excess[index])) if excess[index].size else 0.0
        if worst > 0:
            maps.append((-worst, index))
    maps.sort()
    integer = expected.dtype.kind in "iub" and received.dtype.kind in "iub"

    def as_rows(arr: np.ndarray) -> tuple:
        arr = np.atleast_2d(arr)
        cast = int if integer else float
        return tuple(tuple(cast(v) for v in row) for row in arr.tolist())

    out = []
    for _, index in maps[:PICTURE_MAPS]:
        out.append(
            Picture(
                output=name,
                index=tuple(int(i) for i in index),
                case=int(case),
                label=label,
                expected=as_rows(expected[index]),
                received=as_rows(received[index]),
                differs=tuple(
                    tuple(bool(v) for v in row) for row in np.atleast_2d(excess[index] > 0).tolist()
                ),
                integer=integer,
            )
        )
    return tuple(out)


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
            r, a = tolerances(x, y, rtol=rtol, atol=atol)
            if not np.all(np.isfinite(yf)) or not np.allclose(
                yf, xf, rtol=r, atol=a, equal_nan=False
            ):
                return False
        elif not np.array_equal(x, y):
            return False
    return True


# ----------------------------------------------------------------------------- parent-side scorers
#
# Some checks need data the child must never see (held-out labels of a training exercise), or
# turn what the child measured into verdicts: the child returns raw data and one of these
# turns it, with the case (its inputs and hidden data), into the outputs that are compared.
# A scorer returns ``(outputs, problem)``: ``problem`` is a readable message when the
# student's result falls short, else ``None``; a :class:`RuntimeProblem` says the student's
# code raised (the exercise's status becomes ``error``).


class RuntimeProblem(str):
    """A scorer's problem that is an exception of the student's code (status ``error``)."""


def array_text(value: object, limit: int = 20000) -> str:
    """The text a harness sent as a ``uint8`` array (:func:`grader.sandbox.harness.text_array`);
    ``""`` for anything else. Decoded with replacement: it is untrusted data."""
    if type(value) is not np.ndarray or value.dtype != np.uint8 or value.ndim != 1:
        return ""
    return value[:limit].tobytes().decode("utf-8", errors="replace")


def _int_scalar(value: object) -> int | None:
    if type(value) is not np.ndarray or value.dtype.kind not in "iu" or value.shape != ():
        return None
    return int(value)


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


#: Buffers of a BatchNorm layer: its running statistics.
_RUNNING_STATISTICS = ("running_mean", "running_var", "num_batches_tracked")


def fine_tune(
    received: Mapping[str, object], case: Any
) -> tuple[dict[str, np.ndarray], str | None]:
    """The fine-tuning exercise: held-out accuracy, a frozen base left as it was, no
    gradients carried over from one step to the next.

    Reads ``received["predictions"]``, ``received["state.<name>"]`` (the base's state after
    training) and ``received["stale_gradient_steps"]``; the base's state before training is
    ``case.inputs["weights"]``, the module classes are ``case.hidden["base_modules"]``.

    Outputs: ``accuracy_shortfall`` (0 when the target is reached), ``frozen_parameters_kept``
    and ``running_statistics_kept`` (1 when nothing changed), ``stale_gradient_steps``.
    """
    outputs, accuracy_problem = accuracy_shortfall(received, case.hidden)
    if not outputs:
        return outputs, accuracy_problem
    modules: Mapping[str, str] = case.hidden.get("base_modules", {})
    before = {k: v for k, v in case.inputs["weights"].items() if k.startswith("features.")}
    changed_params: list[str] = []
    changed_stats: dict[str, list[str]] = {}
    for key, value in before.items():
        after = received.get(f"state.{key}")
        same = (
            type(after) is np.ndarray
            and after.shape == np.shape(value)
            and np.array_equal(after, np.asarray(value))
        )
        if same:
            continue
        module, _, leaf = key.rpartition(".")
        if leaf in _RUNNING_STATISTICS:
            changed_stats.setdefault(module, []).append(leaf)
        else:
            changed_params.append(key)
    stale = _int_scalar(received.get("stale_gradient_steps"))
    outputs["frozen_parameters_kept"] = np.asarray(int(not changed_params), dtype=np.int64)
    outputs["running_statistics_kept"] = np.asarray(int(not changed_stats), dtype=np.int64)
    outputs["stale_gradient_steps"] = np.asarray(-1 if stale is None else stale, dtype=np.int64)
    problems = []
    if stale is None:
        problems.append("the training loop's gradient check did not come back")
    elif stale > 0:
        problems.append(
            f"gradients piled up across steps: {stale} backward pass(es) added to the gradient "
            "of an earlier step, so each update used the sum of all gradients so far. Call "
            "optimizer.zero_grad() once per step, before loss.backward()"
        )
    for module, leaves in changed_stats.items():
        kind = modules.get(module, "BatchNorm")
        problems.append(
            f"the frozen base's {kind} at {module} ran in training mode during fit: its "
            f"running statistics ({', '.join(leaves)}) changed. model.train() switches every "
            "module to training mode; after it, put the frozen base's BatchNorm layers back "
            "in eval mode (e.g. model.features.eval()) so they keep the pretrained statistics"
        )
    if changed_params:
        shown = ", ".join(changed_params[:3]) + (" ..." if len(changed_params) > 3 else "")
        problems.append(
            f"the frozen base was trained: {shown} changed. Optimise only the parameters that "
            "require grad (the new head) and leave the base frozen"
        )
    if accuracy_problem:
        problems.append(accuracy_problem)
    return outputs, ("; ".join(problems) or None)


def _signature(value: object) -> list[tuple[str, tuple[int, ...]]] | None:
    """A block's state-dict entries from its JSON text (``None`` when unreadable)."""
    import json

    try:
        raw = json.loads(array_text(value))
        return [(str(name), tuple(int(n) for n in shape)) for name, shape in raw]
    except (ValueError, TypeError):
        return None


def _reference_signature(case: Any) -> list[tuple[str, tuple[int, ...]]]:
    from grader.sandbox.harness_torch import unpack_state

    return [(k, tuple(v.shape)) for k, v in unpack_state(case.inputs["state"])]


def block(received: Mapping[str, object], case: Any) -> tuple[Mapping[str, object], str | None]:
    """A block (VGG, ResNet, DenseNet): its forward pass's error, or reference weights that
    found no place in it (names and shapes, see
    :func:`grader.sandbox.harness_torch.match_state`); the values are compared after.

    When the forward pass raised, only ``forward_error`` and ``num_params`` are kept (what a
    known mistake that also raises is recognised by) and the problem is a
    :class:`RuntimeProblem` with the error and its place in the student's code.
    """
    from grader.sandbox.harness_torch import match_state

    error = array_text(received.get("forward_error"))
    if error:
        at = array_text(received.get("forward_error_at"))
        kind, _, message = error.partition(": ")
        where = f"{kind} in {at}" if at else kind
        keep = {k: received[k] for k in ("forward_error", "num_params") if k in received}
        return keep, RuntimeProblem(
            f"the forward pass raised {where}" + (f": {message}" if message else "")
        )
    theirs = _signature(received.get("state_names"))
    if theirs is None:
        return received, "the block's parameter names did not come back"
    ours = _reference_signature(case)
    found = match_state(ours, theirs)
    missing, extra = found.missing(ours), found.extra(theirs)
    if not missing and not extra:
        return received, None
    have, want = dict(theirs), dict(ours)
    items = [
        f"{k} has shape {have[k]}, expected {want[k]}"
        if k in have
        else f"no {k} (expected shape {want[k]})"
        for k in missing
    ]
    items += [f"{k} {have[k]} is not in the reference block (set to 0)" for k in extra]
    more = f", and {len(items) - 4} more" if len(items) > 4 else ""
    return received, (
        "the reference's weights are loaded into your block by name, as torchvision names "
        f"them (see the docstring), and they do not fit: {'; '.join(items[:4])}{more}"
    )


def answer_check(
    received: Mapping[str, object], case: Any
) -> tuple[dict[str, np.ndarray], str | None]:
    """A numeric question graded without its answer: the student's ``answer`` is hashed
    (:mod:`grader.answers`) and compared with the digests in ``case.hidden``.

    Output ``answer``: 0 for the right answer, ``k`` (from 1) when it is the ``k``-th known
    mistake's answer (``case.hidden["mistakes"]``, in order), -1 for anything else.
    """
    from grader import answers

    hidden = case.hidden
    value = received.get("answer")
    if type(value) is not np.ndarray or value.dtype.kind not in "iuf" or value.shape != ():
        return {}, "the answer must be one number"
    integer = bool(hidden["integer"])
    if integer and value.dtype.kind == "f":
        problem = _kind_problem("the answer", np.asarray(0), value)
        return {}, problem or "the answer must be a whole number"
    quantum = None if integer else float(hidden["quantum"])
    number = int(value) if value.dtype.kind in "iu" else float(value)
    salt = bytes.fromhex(str(hidden["salt"]))
    cost = {k: int(v) for k, v in dict(hidden["cost"]).items()}
    digests = {answers.digest(t, salt, cost) for t in answers.candidate_texts(number, quantum)}
    if str(hidden["digest"]) in digests:
        return {"answer": np.asarray(0, dtype=np.int64)}, None
    code = -1
    for k, (_slug, mistake_digest) in enumerate(hidden["mistakes"], 1):
        if str(mistake_digest) in digests:
            code = k
            break
    return {"answer": np.asarray(code, dtype=np.int64)}, (
        f"{format_value(value[()])} is not the answer (checked against a salted hash of the "
        "answer: the answer itself is not in your bundle)"
    )


POSTPROCESS = {
    "answer_check": answer_check,
    "accuracy_shortfall": lambda received, case: accuracy_shortfall(received, case.hidden),
    "fine_tune": fine_tune,
    "block": block,
}


# ----------------------------------------------------------------------------- explainers
#
# An explainer turns a failing case's raw problem into what happened, from the case's hidden
# context (module names, the forward's expected output): ``fn(problem, *, failing, case,
# received, function, rtol, atol) -> str``, where ``failing`` names the first wrong output.


#: Modules whose training/eval mode changes what they compute.
_MODE_MATTERS = re.compile(r"Norm|Dropout")


def _differing(case: Any, received: Mapping[str, object], name: str) -> list[int]:
    exp, got = case.expected.get(name), received.get(name)
    if type(got) is not np.ndarray or exp is None or got.shape != exp.shape or exp.ndim != 1:
        return []
    return [int(i) for i in np.flatnonzero(got != exp)]


def explain_module_flags(
    problem: str,
    *,
    failing: str | None,
    case: Any,
    received: Mapping[str, object],
    function: str,
    **_: Any,
) -> str:
    """Per-module and per-parameter flags (``freeze``): name the module or the parameter."""
    if failing == "training":
        names = [str(n) for n in case.hidden.get("module_names", ())]
        classes = [str(c) for c in case.hidden.get("module_classes", ())]
        got = received["training"]
        differing = [i for i in _differing(case, received, "training") if i < len(names)]
        # the modules whose mode changes what they compute come first
        differing.sort(key=lambda i: (not _MODE_MATTERS.search(classes[i]), i))
        parts = []
        for i in differing[:2]:
            where = f"at {names[i]}" if names[i] else "(the model itself)"
            now = "training" if int(got[i]) else "eval"
            was = "eval" if int(got[i]) else "training"
            parts.append(
                f"the {classes[i]} {where} is in {now} mode after {function}, but was in "
                f"{was} mode before"
            )
        if parts:
            more = len(differing) - len(parts)
            others = f" (and {more} other module(s))" if more > 0 else ""
            return (
                f"{'; '.join(parts)}{others}: {function} only sets requires_grad and leaves "
                f"every module's mode as it was ({problem})"
            )
    if failing == "requires_grad":
        names = [str(n) for n in case.hidden.get("parameter_names", ())]
        got = received["requires_grad"]
        parts = []
        for i in _differing(case, received, "requires_grad")[:3]:
            if i >= len(names):
                continue
            if int(got[i]):
                parts.append(f"{names[i]} still requires grad")
            else:
                parts.append(
                    f"{names[i]} was frozen, but it is not part of the module given to {function}"
                )
        if parts:
            return f"{'; '.join(parts)} ({problem})"
    if failing == "values_kept":
        return (
            f"{function} changed some weights' values: freezing only sets requires_grad "
            f"and must not change any weight ({problem})"
        )
    return problem


def explain_head(
    problem: str,
    *,
    failing: str | None,
    case: Any,
    received: Mapping[str, object],
    function: str,
    **_: Any,
) -> str:
    """``replace_head``'s outputs in words: which head, which base parameter, which flag."""
    head = "model.classifier[-1]" if str(case.inputs.get("head")) == "classifier" else "model.fc"
    if failing == "head_shape":
        got, exp = received.get("head_shape"), case.expected["head_shape"]
        if type(got) is np.ndarray and got.shape == exp.shape:
            return (
                f"after {function} the head {head} maps {int(got[1])} features to "
                f"{int(got[0])} classes, expected {int(exp[1])} to {int(exp[0])}: put a new "
                f"nn.Linear(in_features, num_classes) in its place ({problem})"
            )
    if failing == "head_bias":
        has = bool(int(np.asarray(received["head_bias"])))
        return (
            f"the new head {head} {'has' if has else 'has no'} bias, but the old one "
            f"{'had none' if has else 'had one'}: keep bias=old.bias is not None ({problem})"
        )
    if failing == "head_trainable":
        return (
            f"the new head {head} does not learn: some of its parameters have "
            f"requires_grad=False ({problem})"
        )
    if failing == "base_requires_grad":
        names = [str(n) for n in case.hidden.get("base_parameter_names", ())]
        got = received["base_requires_grad"]
        parts = [
            f"{names[i]} {'requires grad' if int(got[i]) else 'is frozen'} after {function}, "
            f"but {'was frozen' if int(got[i]) else 'required grad'} before"
            for i in _differing(case, received, "base_requires_grad")[:2]
            if i < len(names)
        ]
        if parts:
            return (
                f"{'; '.join(parts)}: {function} changes only the head and leaves the base's "
                f"requires_grad as it was ({problem})"
            )
    if failing == "base_kept":
        return f"{function} changed weights of the base; it must replace the head only"
    if failing == "returned_model":
        return f"{function} must return the model it changed (end with return model)"
    if failing == "logits_shape":
        return f"after {function} the model's output has the wrong shape ({problem})"
    return problem


def explain_saliency_state(problem: str, *, failing: str | None, function: str, **_: Any) -> str:
    """The saliency map's side effects: the model's mode, and gradients left on parameters."""
    if failing == "mode_kept":
        return (
            f"the model's mode was not restored: {function} got the model in training mode and "
            "left it in another mode. Remember was_training = model.training, call model.eval() "
            "for the map, and model.train(was_training) before returning"
        )
    if failing == "grads_untouched":
        return (
            f"parameter gradients were left behind: after {function} the model's parameters "
            "have .grad set, which the next optimizer step would use. Take the gradient with "
            "torch.autograd.grad(score, images), which touches no parameter, or set every "
            "parameter's .grad back to None"
        )
    return problem


def _forward_of(backward: str) -> str:
    stem = backward[: -len("_backward")] if backward.endswith("_backward") else backward
    return f"{stem}_forward"


#: Gradients of a layer's backward that do not depend on its forward's cache (``db`` is a
#: sum of ``dout``): a wrong one is never a cache problem.
CACHE_FREE_GRADIENTS = frozenset({"db"})


def _common_factor(
    pairs: list[tuple[np.ndarray, object]], *, rtol: float, atol: float
) -> float | None:
    """The constant ``k`` (not 1) with ``got == k * expected`` for every pair, when there is
    one: a doubled, halved or negated gradient. ``None`` otherwise."""
    factor: float | None = None
    for expected, got in pairs:
        got = np.asarray(got)
        if got.shape != expected.shape or not np.issubdtype(got.dtype, np.number):
            return None
        big = np.abs(expected) > max(atol, 1e-12)
        if not big.any():
            return None
        ratios = got[big] / expected[big]
        k = float(np.median(ratios))
        if not np.isfinite(k) or np.isclose(k, 1.0):
            return None
        if not np.allclose(got, k * expected, rtol=max(rtol, 1e-6), atol=atol):
            return None
        if factor is not None and not np.isclose(k, factor):
            return None
        factor = k
    return round(factor, 6) if factor is not None else None


def explain_backward_cache(
    problem: str,
    *,
    case: Any,
    received: Mapping[str, object],
    function: str,
    rtol: float,
    atol: float,
    **_: Any,
) -> str:
    """A backward fed by the student's own forward: say whether the forward was right on this
    case, and so whether to look at the cache or at the forward first."""
    expected = case.hidden.get("forward_out")
    got = received.get("forward_out")
    if expected is None or got is None:
        return problem
    forward = _forward_of(function)
    expected = np.asarray(expected)
    if outputs_match({"out": expected}, {"out": got}, rtol=rtol, atol=atol):
        if any(
            outputs_match(outputs, received, rtol=rtol, atol=atol)
            for outputs in case.mistakes.values()
        ):  # a known mistake of the backward itself: the feedback names it; no cache hunt
            return f"{problem}. Your {forward} gives the right output on this case"
        failing = [
            name
            for name, want in case.expected.items()
            if name in received
            and not outputs_match({name: want}, {name: received[name]}, rtol=rtol, atol=atol)
        ]
        if failing and set(failing) <= CACHE_FREE_GRADIENTS:
            return (
                f"{problem}. Your {forward} gives the right output on this case, and "
                f"{', '.join(failing)} does not depend on the cache (the bias gradient sums "
                f"dout over every axis but the channels): check how {function} computes it"
            )
        scale = _common_factor(
            [(np.asarray(case.expected[n]), received[n]) for n in failing], rtol=rtol, atol=atol
        )
        if scale is not None:
            return (
                f"{problem}. Your {forward} gives the right output on this case, and "
                f"{', '.join(failing)} is {scale:g} times the expected values everywhere: a "
                "factor or a sign in the backward's formula, not the cache"
            )
        advice = str(case.hidden.get("cache_advice", ""))
        return (
            f"{problem}. Your {forward} gives the right output on this case, and {function} "
            f"runs on the cache your {forward} made: check what the forward stores in its "
            f"cache{' (' + advice + ')' if advice else ''} and how {function} reads it back"
        )
    wrong = check_output("out", expected, got, rtol=rtol, atol=atol)
    return (
        f"{problem}. {function} runs on the cache of your {forward}, whose output is wrong "
        f"on this case ({wrong}): fix {forward} first"
    )


def explain_block(problem: str, *, case: Any, received: Mapping[str, object], **_: Any) -> str:
    """A block whose entries have other names than torchvision's: say how they were matched."""
    from grader.sandbox.harness_torch import match_state

    theirs = _signature(received.get("state_names")) or []
    ours = _reference_signature(case)
    found = match_state(ours, theirs)
    renamed = [(b, a) for a, b in found.pairs.items() if a != b]
    if found.by == "name" or not renamed:
        return problem
    theirs_name, ours_name = renamed[0]
    how = "by position" if found.by == "order" else "by the ends of their names"
    return (
        f"{problem}. Your block's entries have other names than torchvision's (e.g. "
        f"{theirs_name} for {ours_name}), so the reference's weights were matched {how}: use "
        "torchvision's names (see the docstring) so that each weight lands where it belongs"
    )


EXPLAIN = {
    "module_flags": explain_module_flags,
    "replace_head": explain_head,
    "saliency_state": explain_saliency_state,
    "backward_cache": explain_backward_cache,
    "block": explain_block,
}
