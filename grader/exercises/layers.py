"""Exercises 3.x: convolution and fully connected layers, forward and backward (numpy, NCHW).

The backward exercises use the student's own forward to make the cache (CS231n style): the
``backward`` harness calls ``<name>_forward(**inputs)`` and then ``<name>_backward(dout, cache)``.
"""

from __future__ import annotations

import numpy as np

from cnnref import layers
from grader.exercises._common import case
from grader.registry import Case, ExerciseSpec, Mistake, Outputs, register

# ----------------------------------------------------------------------------- convolution


def _conv_geometry(rng: np.random.Generator) -> list[tuple[str, dict]]:
    """(label, shapes and hyperparameters) of the convolution cases: always the hard ones."""

    def draw(n, c, f, h, w, kh, kw, stride, padding, dilation):
        return dict(
            n=n, c=c, f=f, h=h, w=w, kh=kh, kw=kw, stride=stride, padding=padding, dilation=dilation
        )

    r = lambda lo, hi: int(rng.integers(lo, hi + 1))  # noqa: E731
    h2 = r(7, 9)
    w2 = h2 + r(1, 3)
    return [
        (
            "batch of one, 3x3 kernel, padding 1",
            draw(1, r(2, 3), r(2, 4), r(4, 6), r(4, 6), 3, 3, 1, 1, 1),
        ),
        (
            f"non-square {h2}x{w2} input, 2x3 kernel, stride 2 (a partial window is dropped)",
            draw(r(2, 3), r(1, 3), r(2, 3), h2, w2, 2, 3, 2, 0, 1),
        ),
        (
            "dilation 2 with padding 2 (the 3x3 kernel spans 5x5 pixels)",
            draw(2, r(2, 3), r(2, 3), r(6, 8), r(6, 8), 3, 3, 1, 2, 2),
        ),
        (
            "stride 3 with padding 1, 3x3 kernel",
            draw(r(2, 3), r(2, 3), r(2, 4), r(8, 10), r(7, 10), 3, 3, 3, 1, 1),
        ),
        (
            "a plain 1x1 convolution over 4 channels (a pointwise layer)",
            draw(r(2, 3), 4, r(2, 5), r(3, 5), r(3, 5), 1, 1, 1, 0, 1),
        ),
    ]


def _conv_out_hw(g: dict) -> tuple[int, int]:
    p, s, d = g["padding"], g["stride"], g["dilation"]
    oh = (g["h"] + 2 * p - d * (g["kh"] - 1) - 1) // s + 1
    ow = (g["w"] + 2 * p - d * (g["kw"] - 1) - 1) // s + 1
    return oh, ow


def _conv_forward_cases(rng: np.random.Generator, *, with_dout: bool = False) -> list[Case]:
    cases = []
    for label, g in _conv_geometry(rng):
        inputs = dict(
            x=rng.standard_normal((g["n"], g["c"], g["h"], g["w"])),
            w=rng.standard_normal((g["f"], g["c"], g["kh"], g["kw"])),
            b=rng.standard_normal(g["f"]),
            stride=g["stride"],
            padding=g["padding"],
            dilation=g["dilation"],
        )
        if with_dout:
            inputs["dout"] = rng.standard_normal((g["n"], g["f"], *_conv_out_hw(g)))
        cases.append(case(f"x {g['n']}x{g['c']}x{g['h']}x{g['w']}, {label}", **inputs))
    return cases


def _conv_forward(c: Case, **changes) -> Outputs | None:
    kwargs = {k: v for k, v in c.items() if k != "dout"}
    kwargs.update(changes)
    try:
        out, _ = layers.conv2d_forward(**kwargs)
    except ValueError:
        return None  # the variant does not fit this case
    return {"out": out}


register(
    ExerciseSpec(
        name="conv2d_forward",
        number="3.1",
        topic="layers",
        title="Convolution forward pass (cross-correlation with stride, padding, dilation)",
        points=3,
        function="conv2d_forward",
        harness="forward",
        make_cases=_conv_forward_cases,
        reference=_conv_forward,
        reference_function=layers.conv2d_forward,
        mistakes=(
            Mistake(
                "bias_forgotten",
                "bias forgotten: add b[f] to every output of filter f",
                lambda c: _conv_forward(c, b=np.zeros_like(c["b"])),
            ),
            Mistake(
                "kernel_flipped",
                "kernel flipped: deep-learning convolution is cross-correlation, "
                "out = sum w[f, c, u, v] * x[c, i*s + u*d, j*s + v*d], without flipping w",
                lambda c: _conv_forward(c, w=np.ascontiguousarray(c["w"][:, :, ::-1, ::-1])),
            ),
            Mistake(
                "dilation_ignored",
                "dilation ignored: tap (u, v) of the kernel reads x[i*s + u*d, j*s + v*d]",
                lambda c: _conv_forward(c, dilation=1) if c["dilation"] != 1 else None,
            ),
            Mistake(
                "padding_ignored",
                "padding ignored: pad x with p zeros on every side before sliding the kernel",
                lambda c: _conv_forward(c, padding=0) if c["padding"] else None,
            ),
        ),
    )
)


def _conv_context(c: Case) -> dict:
    """The forward's expected output on the case, for the backward's feedback."""
    kwargs = {k: v for k, v in c.items() if k != "dout"}
    out, _ = layers.conv2d_forward(**kwargs)
    return {
        "forward_out": out,
        "cache_advice": "x as it was given (unpadded, or padded consistently with the "
        "backward), w, b and the stride, padding and dilation",
    }


def _conv_backward(c: Case) -> Outputs:
    kwargs = {k: v for k, v in c.items() if k != "dout"}
    _, cache = layers.conv2d_forward(**kwargs)
    dx, dw, db = layers.conv2d_backward(c["dout"], cache)
    return {"dx": dx, "dw": dw, "db": db}


def _conv_backward_averaged(c: Case) -> Outputs:
    grads = _conv_backward(c)
    n = c["x"].shape[0]
    return {"dx": grads["dx"], "dw": grads["dw"] / n, "db": grads["db"] / n}


def _conv_backward_last_example(c: Case) -> Outputs | None:
    if c["x"].shape[0] == 1:
        return None
    grads = _conv_backward(c)
    last = _conv_backward({**c, "x": c["x"][-1:], "dout": c["dout"][-1:]})
    return {"dx": grads["dx"], "dw": last["dw"], "db": last["db"]}


def _conv_backward_no_db(c: Case) -> Outputs:
    grads = _conv_backward(c)
    return {**grads, "db": np.zeros_like(grads["db"])}


register(
    ExerciseSpec(
        name="conv2d_backward",
        number="3.2",
        topic="layers",
        title="Convolution backward pass: dx, dw and db",
        points=4,
        function="conv2d_backward",
        harness="backward",
        make_cases=lambda rng: _conv_forward_cases(rng, with_dout=True),
        reference=_conv_backward,
        reference_function=layers.conv2d_backward,
        uses=("conv2d_forward",),
        context=_conv_context,
        explain="backward_cache",
        mistakes=(
            Mistake(
                "dw_averaged_over_batch",
                "dw and db averaged over the batch: the loss sums over the examples, so sum "
                "their gradients (no division by N)",
                _conv_backward_averaged,
            ),
            Mistake(
                "dw_not_summed_over_batch",
                "dw and db not summed over the batch: each example overwrote the previous one's "
                "gradient; accumulate (+=) over n",
                _conv_backward_last_example,
            ),
            Mistake(
                "db_forgotten",
                "db forgotten: db[f] is the sum of dout[:, f] over the batch and both spatial axes",
                _conv_backward_no_db,
            ),
        ),
    )
)

# ----------------------------------------------------------------------------- dense


def _dense_cases(rng: np.random.Generator, *, with_dout: bool = False) -> list[Case]:
    r = lambda lo, hi: int(rng.integers(lo, hi + 1))  # noqa: E731
    square = r(3, 6)
    shapes = [
        ("batch of one", (1, r(3, 7)), r(2, 6)),
        (f"square weights ({square}x{square})", (r(2, 4), square), square),
        ("x of shape (N, C, H, W), flattened per example", (r(2, 3), 2, r(2, 3), r(2, 3)), r(2, 5)),
        ("a wider layer", (r(3, 5), r(8, 12)), r(5, 9)),
    ]
    cases = []
    for label, x_shape, d_out in shapes:
        d_in = int(np.prod(x_shape[1:]))
        inputs = dict(
            x=rng.standard_normal(x_shape),
            w=rng.standard_normal((d_in, d_out)),
            b=rng.standard_normal(d_out),
        )
        if with_dout:
            inputs["dout"] = rng.standard_normal((x_shape[0], d_out))
        cases.append(case(f"x {'x'.join(map(str, x_shape))} -> {d_out} units, {label}", **inputs))
    return cases


def _dense_forward(c: Case, **changes) -> Outputs:
    out, _ = layers.dense_forward(**{"x": c["x"], "w": c["w"], "b": c["b"], **changes})
    return {"out": out}


def _dense_forward_transposed(c: Case) -> Outputs | None:
    x, w = c["x"], c["w"]
    if w.shape[0] != w.shape[1]:
        return None
    return {"out": x.reshape(x.shape[0], -1) @ w.T + c["b"]}


register(
    ExerciseSpec(
        name="dense_forward",
        number="3.3",
        topic="layers",
        title="Fully connected forward pass (flattening each example)",
        points=2,
        function="dense_forward",
        harness="forward",
        make_cases=_dense_cases,
        reference=_dense_forward,
        reference_function=layers.dense_forward,
        mistakes=(
            Mistake(
                "bias_forgotten",
                "bias forgotten: out = x @ w + b",
                lambda c: _dense_forward(c, b=np.zeros_like(c["b"])),
            ),
            Mistake(
                "weight_transposed",
                "weight transposed: w has shape (D_in, D_out), so out = x @ w (not x @ w.T)",
                _dense_forward_transposed,
            ),
        ),
    )
)


def _dense_context(c: Case) -> dict:
    """The forward's expected output on the case, for the backward's feedback."""
    out, _ = layers.dense_forward(c["x"], c["w"], c["b"])
    return {
        "forward_out": out,
        "cache_advice": "the original x with its shape (N, C, H, W), so that dx can be "
        "reshaped back to it, and w and b",
    }


def _dense_backward(c: Case) -> Outputs:
    _, cache = layers.dense_forward(c["x"], c["w"], c["b"])
    dx, dw, db = layers.dense_backward(c["dout"], cache)
    return {"dx": dx, "dw": dw, "db": db}


def _dense_backward_transposed(c: Case) -> Outputs | None:
    w = c["w"]
    if w.shape[0] != w.shape[1]:
        return None
    grads = _dense_backward(c)
    return {**grads, "dx": (c["dout"] @ w).reshape(c["x"].shape)}


def _dense_backward_averaged(c: Case) -> Outputs | None:
    n = c["x"].shape[0]
    if n == 1:
        return None
    grads = _dense_backward(c)
    return {"dx": grads["dx"], "dw": grads["dw"] / n, "db": grads["db"] / n}


def _dense_backward_no_db(c: Case) -> Outputs:
    grads = _dense_backward(c)
    return {**grads, "db": np.zeros_like(grads["db"])}


def _dense_backward_flat_dx(c: Case) -> Outputs | None:
    if c["x"].ndim == 2:
        return None
    grads = _dense_backward(c)
    return {**grads, "dx": grads["dx"].reshape(c["x"].shape[0], -1)}


register(
    ExerciseSpec(
        name="dense_backward",
        number="3.4",
        topic="layers",
        title="Fully connected backward pass: dx, dw and db",
        points=3,
        function="dense_backward",
        harness="backward",
        make_cases=lambda rng: _dense_cases(rng, with_dout=True),
        reference=_dense_backward,
        reference_function=layers.dense_backward,
        uses=("dense_forward",),
        context=_dense_context,
        explain="backward_cache",
        mistakes=(
            Mistake(
                "weight_transposed",
                "transposed weight in dx: w is (D_in, D_out), so dx = dout @ w.T",
                _dense_backward_transposed,
            ),
            Mistake(
                "dw_averaged_over_batch",
                "dw and db averaged over the batch: sum the examples' gradients (no division by N)",
                _dense_backward_averaged,
            ),
            Mistake(
                "db_forgotten",
                "db forgotten: db is dout summed over the batch, dout.sum(axis=0)",
                _dense_backward_no_db,
            ),
            Mistake(
                "dx_not_reshaped",
                "dx not reshaped: it must have the shape of the forward's x (N, C, H, W), "
                "not the flattened (N, D_in)",
                _dense_backward_flat_dx,
            ),
        ),
    )
)
