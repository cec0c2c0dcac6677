"""Exercise 5.x: receptive fields of a conv/pool stack (lecture: "Layers Receptive Field")."""

from __future__ import annotations

import numpy as np

from cnnref import receptive
from grader.exercises._common import case
from grader.sandbox.harness import (
    LAYER_CONV,
    LAYER_POOL,
    PADDING_CODES,
    MissingFunction,
    build_layers,
)
from grader.registry import Case, ExerciseSpec, Mistake, Outputs, register

_SAME, _VALID = -1, -2


def _conv(k: int, s: int = 1, p: int = _VALID, d: int = 1) -> list[int]:
    return [LAYER_CONV, k, s, p, d]


def _pool(k: int, s: int = 0) -> list[int]:
    return [LAYER_POOL, k, s, 0, 1]  # stride 0 = None (the pool size)


def _describe(row: list[int]) -> str:
    kind, k, s, p, d = row
    if kind == LAYER_POOL:
        return f"pool{k}" + (f"/s{s}" if s else "")
    pad = PADDING_CODES.get(p, p)
    return (
        f"conv{k}"
        + (f"/s{s}" if s != 1 else "")
        + (f"/d{d}" if d != 1 else "")
        + (f"/p{pad}" if pad != "valid" else "")
    )


def _receptive_cases(rng: np.random.Generator) -> list[Case]:
    r = lambda lo, hi: int(rng.integers(lo, hi + 1))  # noqa: E731
    d2 = r(2, 3)
    stacks = [
        (
            "the lecture's two 3x3 convolutions, padding 1, stride 2 on a 5-pixel input",
            [_conv(3, 2, 1), _conv(3, 2, 1)],
            5,
        ),
        (
            "VGG-style: 3x3 convolutions with padding 1 and 2x2 pooling",
            [_conv(3, 1, 1), _conv(3, 1, 1), _pool(2), _conv(3, 1, 1), _conv(3, 1, 1), _pool(2)],
            r(28, 40),
        ),
        (
            f"dilated 3x3 convolutions (dilation 1, {d2}, {2 * d2}) with 'same' padding",
            [_conv(3, 1, _SAME, 1), _conv(3, 1, _SAME, d2), _conv(3, 1, _SAME, 2 * d2)],
            r(20, 40),
        ),
        (
            "7x7/2 'same' convolution, 3x3/2 pooling (overlap), an odd input size",
            [_conv(7, 2, _SAME), _pool(3, 2), _conv(3, 1, 1), _conv(3, 2)],
            2 * r(40, 60) + 1,
        ),
        (
            "even kernels (2x2/2 then 4x4): half-pixel starts",
            [_conv(2, 2), _conv(4, 1, 1), _pool(2, 1)],
            r(12, 20),
        ),
    ]
    cases = []
    for label, rows, size in stacks:
        table = np.array(rows, dtype=np.int64)
        arch = " -> ".join(_describe(row) for row in rows)
        cases.append(case(f"input {size}: {arch} ({label})", layers=table, input_size=size))
    return cases


def _records(c: Case) -> list:
    def get(name: str):
        raise MissingFunction(name)  # the reference uses the look-alike layer objects

    return receptive.receptive_field(build_layers(get, c["layers"]), c["input_size"])


def _receptive_reference(c: Case) -> Outputs:
    records = _records(c)
    return {
        "n_out": np.array([rec.n_out for rec in records], dtype=np.int64),
        "jump": np.array([rec.jump for rec in records], dtype=np.int64),
        "rf": np.array([rec.rf for rec in records], dtype=np.int64),
        "start": np.array([rec.start for rec in records], dtype=np.float64),
    }


def _rf_variant(c: Case, *, jump_in_rf: str = "in") -> Outputs:
    """``rf`` with the jump of the previous layer (right), none, or the new one (wrong)."""
    records = _records(c)
    rf, prev_jump, values = 1, 1, []
    for row, rec in zip(c["layers"].tolist(), records, strict=True):
        kind, k, _s, _p, d = row
        k_eff = (d if kind == LAYER_CONV else 1) * (k - 1) + 1
        factor = {"in": prev_jump, "none": 1, "out": rec.jump}[jump_in_rf]
        rf += (k_eff - 1) * factor
        prev_jump = rec.jump
        values.append(rf)
    return {"rf": np.array(values, dtype=np.int64)}


def _dilation_ignored(c: Case) -> Outputs | None:
    table = c["layers"].copy()
    if (table[:, 4] == 1).all():
        return None
    table[:, 4] = 1
    try:
        return _receptive_reference({**c, "layers": table})
    except ValueError:
        return None


register(
    ExerciseSpec(
        name="receptive_field",
        number="5.1",
        topic="receptive",
        title="Receptive field, jump and start of every layer of a conv/pool stack",
        points=3,
        function="receptive_field",
        harness="receptive",
        make_cases=_receptive_cases,
        reference=_receptive_reference,
        reference_function=receptive.receptive_field,
        mistakes=(
            Mistake(
                "jump_ignored",
                "receptive field without the jump: each layer adds (k-1) x jump_in input pixels, "
                "where jump_in is the product of the strides before it",
                lambda c: _rf_variant(c, jump_in_rf="none"),
            ),
            Mistake(
                "jump_updated_too_early",
                "the new jump used too early: rf grows by (k-1) x the jump of the layer's "
                "*input* (the strides before it), update the jump after the rf",
                lambda c: _rf_variant(c, jump_in_rf="out"),
            ),
            Mistake(
                "dilation_ignored",
                "dilation ignored: a kernel of size k with dilation d spans d(k-1)+1 pixels",
                _dilation_ignored,
            ),
        ),
    )
)
