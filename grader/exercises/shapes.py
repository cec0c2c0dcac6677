"""Exercise 1.x: output sizes (lecture: "Layers Receptive Field", the n_out formula)."""

from __future__ import annotations

import math

import numpy as np

from cnnref import shapes
from grader.exercises._common import case, int_out
from grader.registry import Case, ExerciseSpec, Mistake, Outputs, register


def _conv_output_size_cases(rng: np.random.Generator) -> list[Case]:
    cases = []
    # floor != ceil: the stride does not divide n + 2p - k (the lecture's erratum).
    k, s, p = int(rng.choice([3, 5])), int(rng.choice([2, 3])), int(rng.integers(0, 3))
    n = int(rng.integers(8, 30))
    while (n + 2 * p - k) % s == 0:
        n += 1
    cases.append(
        case(
            f"n_in={n}, kernel {k}, stride {s}, padding {p} — the stride does not divide "
            "n + 2p - k, so floor and ceil differ",
            n_in=n,
            kernel_size=k,
            stride=s,
            padding=p,
            dilation=1,
        )
    )
    # dilation
    d, s = int(rng.choice([2, 3])), int(rng.choice([1, 2]))
    n, p = int(rng.integers(10, 40)), int(rng.integers(0, 3))
    cases.append(
        case(
            f"n_in={n}, kernel 3, dilation {d}, stride {s}, padding {p} — a dilated kernel "
            f"spans {d * 2 + 1} pixels",
            n_in=n,
            kernel_size=3,
            stride=s,
            padding=p,
            dilation=d,
        )
    )
    # padding on both sides, stride 1
    k = int(rng.choice([3, 5, 7]))
    p, n = int(rng.integers(1, 4)), int(rng.integers(k, 40))
    cases.append(
        case(
            f"n_in={n}, kernel {k}, padding {p} — padding is added on both sides",
            n_in=n,
            kernel_size=k,
            stride=1,
            padding=p,
            dilation=1,
        )
    )
    # "same" with a stride: ceil(n / s)
    n = int(rng.integers(5, 40)) * 2 + 1
    k = int(rng.choice([3, 5]))
    cases.append(
        case(
            f"n_in={n}, kernel {k}, stride 2, padding 'same' — Keras' 'same' gives ceil(n/s)",
            n_in=n,
            kernel_size=k,
            stride=2,
            padding="same",
            dilation=1,
        )
    )
    # defaults only
    n, k = int(rng.integers(6, 64)), int(rng.choice([1, 3, 5]))
    cases.append(
        case(f"n_in={n}, kernel {k}, the defaults (stride 1, no padding)", n_in=n, kernel_size=k)
    )
    # the lecture's convolution: 5x5 input, 3x3 kernel, padding 1, stride 2 -> 3
    cases.append(
        case(
            "n_in=5, kernel 3, stride 2, padding 1 — the lecture's example",
            n_in=5,
            kernel_size=3,
            stride=2,
            padding=1,
            dilation=1,
        )
    )
    return cases


def _conv_output_size_reference(c: Case) -> Outputs:
    return int_out(shapes.conv_output_size(**c))


def _formula(
    c: Case, *, rounding=math.floor, use_dilation: bool = True, pad_sides: int = 2
) -> Outputs | None:
    padding = c.get("padding", 0)
    if isinstance(padding, str):
        return None  # the mistakes are about the formula with a numeric padding
    k, s, d = c["kernel_size"], c.get("stride", 1), c.get("dilation", 1)
    extent = (d if use_dilation else 1) * (k - 1) + 1
    return int_out(rounding((c["n_in"] + pad_sides * padding - extent) / s) + 1)


register(
    ExerciseSpec(
        name="conv_output_size",
        number="1.1",
        topic="shapes",
        title="Output size of a convolution or pooling layer (floor, padding, stride, dilation)",
        points=2,
        function="conv_output_size",
        harness="call",
        make_cases=_conv_output_size_cases,
        reference=_conv_output_size_reference,
        reference_function=shapes.conv_output_size,
        mistakes=(
            Mistake(
                "ceil_instead_of_floor",
                "ceil instead of floor: the lecture slide's ceil is an erratum; a window that "
                "does not fit is dropped, so use floor ((n + 2p - d(k-1) - 1) // s + 1)",
                lambda c: _formula(c, rounding=math.ceil),
            ),
            Mistake(
                "dilation_ignored",
                "dilation ignored: a kernel of size k with dilation d spans d(k-1)+1 pixels",
                lambda c: _formula(c, use_dilation=False),
            ),
            Mistake(
                "padding_counted_once",
                "padding counted once instead of twice: p pixels are added on each side, 2p in all",
                lambda c: _formula(c, pad_sides=1),
            ),
        ),
    )
)
