"""Exercises 4.x: max pooling forward and backward (lecture: "BackProp of MaxPooling layer").

Conventions (DESIGN.md): ties send the gradient to the **first** maximum of the window in
row-major order; where windows overlap the gradients **accumulate**.
"""

from __future__ import annotations

import numpy as np

from cnnref import pooling
from grader.exercises._common import case
from grader.registry import Case, ExerciseSpec, Mistake, Outputs, register

#: The lecture's activation map and upstream gradient (3x3 pool, stride 1).
LECTURE_X = np.array(
    [[2, 4, 8, 3, 6], [9, 3, 4, 2, 5], [5, 4, 6, 3, 1], [2, 3, 1, 3, 4], [2, 7, 4, 5, 7]],
    dtype=np.float64,
)
LECTURE_DOUT = np.array([[1, 3, 1], [1, 4, 2], [6, 2, 1]], dtype=np.float64)


def _pool_cases(rng: np.random.Generator, *, with_dout: bool = False) -> list[Case]:
    r = lambda lo, hi: int(rng.integers(lo, hi + 1))  # noqa: E731
    small_ints = lambda shape: rng.integers(0, 4, size=shape).astype(np.float64)  # noqa: E731
    specs = [
        (
            "the lecture's 5x5 example, pool 3x3, stride 1 — overlapping windows",
            LECTURE_X[None, None].copy(),
            3,
            1,
        ),
        (
            "pool 2x2, stride 2, small integers — ties in the windows, non-square input",
            small_ints((2, r(2, 3), 4, 6)),
            2,
            2,
        ),
        (
            "pool 3x3, stride 2, small integers — overlapping windows with ties, batch of one",
            small_ints((1, 2, r(6, 8), r(7, 9))),
            3,
            2,
        ),
        (
            "pool 2x2, the default stride (= pool size), odd 7x5 input — the last row and "
            "column are dropped",
            rng.standard_normal((r(2, 3), 2, 7, 5)),
            2,
            None,
        ),
        (
            "pool 2x2, stride 3 — gaps between windows",
            rng.standard_normal((2, r(1, 3), r(7, 9), r(8, 10))),
            2,
            3,
        ),
    ]
    cases = []
    for label, x, pool, stride in specs:
        inputs = {"x": x, "pool_size": pool}
        if stride is not None:
            inputs["stride"] = stride
        if with_dout:
            s = pool if stride is None else stride
            oh, ow = (x.shape[2] - pool) // s + 1, (x.shape[3] - pool) // s + 1
            if x is not None and x.shape == (1, 1, 5, 5):
                dout = LECTURE_DOUT[None, None].copy()
            else:
                dout = rng.integers(1, 10, size=(x.shape[0], x.shape[1], oh, ow)).astype(float)
            inputs["dout"] = dout
        shape = "x".join(map(str, x.shape))
        cases.append(case(f"x {shape}, {label}", **inputs))
    return cases


def _maxpool_forward(c: Case) -> Outputs:
    out, _ = pooling.maxpool2d_forward(c["x"], pool_size=c["pool_size"], stride=c.get("stride"))
    return {"out": out}


def _avgpool_forward(c: Case) -> Outputs:
    out, _ = pooling.avgpool2d_forward(c["x"], pool_size=c["pool_size"], stride=c.get("stride"))
    return {"out": out}


def _stride_one_forward(c: Case) -> Outputs | None:
    if c.get("stride", c["pool_size"]) == 1:
        return None
    out, _ = pooling.maxpool2d_forward(c["x"], pool_size=c["pool_size"], stride=1)
    return {"out": out}


register(
    ExerciseSpec(
        name="maxpool2d_forward",
        number="4.1",
        topic="pooling",
        title="Max pooling forward pass (any pool size and stride, overlapping windows)",
        points=2,
        function="maxpool2d_forward",
        harness="forward",
        make_cases=_pool_cases,
        reference=_maxpool_forward,
        reference_function=pooling.maxpool2d_forward,
        mistakes=(
            Mistake(
                "average_instead_of_max",
                "average instead of max: max pooling keeps the largest value of each window",
                _avgpool_forward,
            ),
            Mistake(
                "stride_ignored",
                "stride ignored: window (i, j) starts at row i*stride, column j*stride "
                "(and stride=None means stride = pool_size)",
                _stride_one_forward,
            ),
        ),
    )
)


def _route_backward(c: Case, *, route: str, accumulate: bool = True) -> Outputs:
    """Max-pool backward written with loops, routing each gradient by ``route``:
    ``"first"``/``"last"`` maximum, ``"all"`` maxima, or ``"every"`` element of the window;
    ``accumulate=False`` overwrites instead of adding where windows overlap.
    """
    x, dout, p = c["x"], c["dout"], c["pool_size"]
    s = c.get("stride") or p
    dx = np.zeros_like(x)
    n_, c_, oh, ow = dout.shape
    for n in range(n_):
        for ch in range(c_):
            for i in range(oh):
                for j in range(ow):
                    win = x[n, ch, i * s : i * s + p, j * s : j * s + p]
                    if route == "every":
                        mask = np.ones_like(win, dtype=bool)
                    else:
                        mask = win == win.max()
                        if route in ("first", "last"):
                            flat = np.flatnonzero(mask)
                            pick = flat[0] if route == "first" else flat[-1]
                            mask = np.zeros(win.size, dtype=bool)
                            mask[pick] = True
                            mask = mask.reshape(win.shape)
                    target = dx[n, ch, i * s : i * s + p, j * s : j * s + p]
                    if accumulate:
                        target[mask] += dout[n, ch, i, j]
                    else:
                        target[mask] = dout[n, ch, i, j]
    return {"dx": dx}


def _maxpool_context(c: Case) -> dict:
    """The forward's expected output on the case, for the backward's feedback."""
    out, _ = pooling.maxpool2d_forward(c["x"], pool_size=c["pool_size"], stride=c.get("stride"))
    return {
        "forward_out": out,
        "cache_advice": "e.g. where each window's maximum is: the first maximum in row-major "
        "order, as np.argmax of the window flattened row by row gives it, not a column-major "
        "(order='F') index, and the window's offset i*stride, j*stride",
    }


def _maxpool_backward(c: Case) -> Outputs:
    _, cache = pooling.maxpool2d_forward(c["x"], pool_size=c["pool_size"], stride=c.get("stride"))
    return {"dx": pooling.maxpool2d_backward(c["dout"], cache)}


register(
    ExerciseSpec(
        name="maxpool2d_backward",
        number="4.2",
        topic="pooling",
        title="Max pooling backward pass (first maximum wins, overlapping windows accumulate)",
        points=4,
        function="maxpool2d_backward",
        harness="backward_dx",
        make_cases=lambda rng: _pool_cases(rng, with_dout=True),
        reference=_maxpool_backward,
        reference_function=pooling.maxpool2d_backward,
        uses=("maxpool2d_forward",),
        context=_maxpool_context,
        explain="backward_cache",
        mistakes=(
            Mistake(
                "gradient_to_every_element",
                "gradient sent to every element of the window: only the maximum of each window "
                "receives its gradient, the other elements get 0",
                lambda c: _route_backward(c, route="every"),
            ),
            Mistake(
                "overlap_overwritten",
                "overlapping windows overwritten instead of accumulated: where two windows share "
                "a maximum, its gradient is the sum of both (the lecture's +1, +3, +4), so use +=",
                lambda c: _route_backward(c, route="first", accumulate=False),
            ),
            Mistake(
                "ties_to_last_maximum",
                "ties sent to the last maximum: when a window has several equal maxima only the "
                "first in row-major order receives the gradient (as PyTorch does)",
                lambda c: _route_backward(c, route="last"),
            ),
            Mistake(
                "ties_to_all_maxima",
                "ties sent to every maximum: when a window has several equal maxima only the "
                "first in row-major order receives the gradient (as PyTorch does)",
                lambda c: _route_backward(c, route="all"),
            ),
        ),
    )
)
