"""The exercise specs: what cnnlab needs to grade average pooling and to name mistakes.

A spec ties together (see docs/authoring.md):

* ``make_cases``: the randomized check cases, drawn from the generator cnnlab passes in (never
  from ``np.random`` directly: the same seed must give the same cases). Each case is the
  keyword arguments of one student call, with a label saying what makes it hard;
* ``reference``: the expected outputs of a case, from ``reference.py``;
* ``mistakes``: known wrong answers, each computed on the case, so that a student whose
  outputs equal one of them is told what they did;
* ``harness``: how the sandboxed child calls the student's function (a built-in harness:
  ``forward`` returns ``out`` of ``(out, cache)``; ``backward_dx`` makes the cache with the
  student's own forward, then returns the backward's ``dx``).
"""

from __future__ import annotations

import numpy as np

from avgpool_plugin import reference
from grader.authoring import case
from grader.registry import Case, ExerciseSpec, Mistake, Outputs


def _pool_cases(rng: np.random.Generator, *, with_dout: bool) -> list[Case]:
    """Five cases: tiling windows, overlap, the default stride with a dropped border, overlap
    in a batch of one, and gaps between windows."""
    r = lambda lo, hi: int(rng.integers(lo, hi + 1))  # noqa: E731
    shapes = [
        ("pool 2x2, stride 2 — windows tile the input", (2, r(1, 3), 4, 6), 2, 2),
        ("pool 3x3, stride 1 — overlapping windows accumulate", (1, 2, r(5, 6), r(5, 7)), 3, 1),
        (
            "pool 2x2, default stride (= pool size), odd 5x7 input — the last row and column "
            "are in no window",
            (r(1, 2), 2, 5, 7),
            2,
            None,
        ),
        ("pool 3x3, stride 2 — windows overlap by one, batch of one", (1, 3, 7, r(7, 9)), 3, 2),
        ("pool 2x2, stride 3 — gaps between windows", (2, 1, r(7, 8), 8), 2, 3),
    ]
    cases = []
    for label, shape, pool, stride in shapes:
        inputs: Case = {"x": rng.standard_normal(shape), "pool_size": pool}
        if stride is not None:
            inputs["stride"] = stride
        if with_dout:
            s = pool if stride is None else stride
            out_shape = (shape[0], shape[1], (shape[2] - pool) // s + 1, (shape[3] - pool) // s + 1)
            inputs["dout"] = rng.integers(1, 10, size=out_shape).astype(np.float64)
        cases.append(case(f"x {'x'.join(map(str, shape))}, {label}", **inputs))
    return cases


# ----------------------------------------------------------------------------- forward


def _forward(c: Case) -> Outputs:
    out, _ = reference.avgpool2d_forward(c["x"], pool_size=c["pool_size"], stride=c.get("stride"))
    return {"out": out}


def _windows(c: Case, stride: int | None = None) -> np.ndarray:
    """Every p x p window of ``x``: shape (N, C, H_out, W_out, p, p)."""
    p = c["pool_size"]
    s = stride or c.get("stride") or p
    view = np.lib.stride_tricks.sliding_window_view(c["x"], (p, p), axis=(2, 3))
    return view[:, :, ::s, ::s]


def _max_instead(c: Case) -> Outputs:
    return {"out": _windows(c).max(axis=(-2, -1))}


def _sum_instead(c: Case) -> Outputs:
    return {"out": _windows(c).sum(axis=(-2, -1))}


def _stride_ignored(c: Case) -> Outputs | None:
    """The right output size, but window (i, j) starts at row i, column j (no stride)."""
    if c.get("stride", c["pool_size"]) == 1:
        return None  # this case cannot show the mistake
    out_h, out_w = _windows(c).shape[2:4]
    return {"out": _windows(c, stride=1)[:, :, :out_h, :out_w].mean(axis=(-2, -1))}


AVGPOOL2D_FORWARD = ExerciseSpec(
    name="avgpool2d_forward",
    number="4.3",
    topic="pooling",
    title="Average pooling forward pass (the mean of each window)",
    points=1,
    function="avgpool2d_forward",
    harness="forward",
    make_cases=lambda rng: _pool_cases(rng, with_dout=False),
    reference=_forward,
    reference_function=reference.avgpool2d_forward,
    mistakes=(
        Mistake(
            "max_instead_of_average",
            "max instead of average: average pooling keeps the mean of each window",
            _max_instead,
        ),
        Mistake(
            "sum_instead_of_average",
            "sum instead of average: divide each window's sum by its p*p elements",
            _sum_instead,
        ),
        Mistake(
            "stride_ignored",
            "stride ignored: window (i, j) starts at row i*stride, column j*stride, not at "
            "row i, column j (and stride=None means stride = pool_size)",
            _stride_ignored,
        ),
    ),
)


# ----------------------------------------------------------------------------- backward


def _backward(c: Case) -> Outputs:
    _, cache = reference.avgpool2d_forward(c["x"], pool_size=c["pool_size"], stride=c.get("stride"))
    return {"dx": reference.avgpool2d_backward(c["dout"], cache)}


def _spread(c: Case, *, divide_by: int | None, accumulate: bool = True) -> Outputs:
    """The backward written with loops: each window's ``dout / divide_by`` to all its
    elements; ``accumulate=False`` overwrites where windows overlap."""
    x, dout, p = c["x"], c["dout"], c["pool_size"]
    s = c.get("stride") or p
    dx = np.zeros_like(x)
    for i in range(dout.shape[2]):
        for j in range(dout.shape[3]):
            share = dout[:, :, i, j, None, None] / (divide_by or 1)
            if accumulate:
                dx[:, :, i * s : i * s + p, j * s : j * s + p] += share
            else:
                dx[:, :, i * s : i * s + p, j * s : j * s + p] = share
    return {"dx": dx}


def _to_maximum(c: Case) -> Outputs:
    """Max-pool routing: each window's whole gradient to its (first) maximum."""
    x, dout, p = c["x"], c["dout"], c["pool_size"]
    s = c.get("stride") or p
    dx = np.zeros_like(x)
    for n in range(x.shape[0]):
        for ch in range(x.shape[1]):
            for i in range(dout.shape[2]):
                for j in range(dout.shape[3]):
                    window = x[n, ch, i * s : i * s + p, j * s : j * s + p]
                    u, v = np.unravel_index(np.argmax(window), window.shape)
                    dx[n, ch, i * s + u, j * s + v] += dout[n, ch, i, j]
    return {"dx": dx}


AVGPOOL2D_BACKWARD = ExerciseSpec(
    name="avgpool2d_backward",
    number="4.4",
    topic="pooling",
    title="Average pooling backward pass (each window shares its gradient equally)",
    points=3,
    function="avgpool2d_backward",
    harness="backward_dx",
    make_cases=lambda rng: _pool_cases(rng, with_dout=True),
    reference=_backward,
    reference_function=reference.avgpool2d_backward,
    uses=("avgpool2d_forward",),
    mistakes=(
        Mistake(
            "gradient_not_divided",
            "gradient not divided: each of the p*p elements of a window gets dout / (p*p), "
            "because each contributes 1/(p*p) of the mean",
            lambda c: _spread(c, divide_by=None),
        ),
        Mistake(
            "divided_by_pool_size",
            "divided by p instead of p*p: a p x p window has p*p elements",
            lambda c: _spread(c, divide_by=c["pool_size"]),
        ),
        Mistake(
            "overlap_overwritten",
            "overlapping windows overwritten instead of accumulated: an element in several "
            "windows receives the sum of their shares, so use +=",
            lambda c: _spread(c, divide_by=c["pool_size"] ** 2, accumulate=False),
        ),
        Mistake(
            "routed_to_maximum",
            "gradient sent to the maximum of each window (that is max pooling's backward): "
            "in average pooling every element of the window gets an equal share",
            _to_maximum,
        ),
    ),
)

#: What the entry point registers (``pyproject.toml``).
EXERCISES = [AVGPOOL2D_FORWARD, AVGPOOL2D_BACKWARD]
