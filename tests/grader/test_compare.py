"""The comparators: type, dtype kind, shape, finiteness, values, and the message they give."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from grader.compare import check_output, check_outputs, format_index, format_value, outputs_match

TOL = {"rtol": 1e-6, "atol": 1e-8}


def test_equal_float_arrays_pass_within_tolerance():
    expected = np.linspace(-3, 3, 12).reshape(3, 4)
    assert check_output("out", expected, expected + 1e-10, **TOL) is None


def test_message_names_output_worst_index_expected_and_received():
    expected = np.zeros((1, 3, 2, 4))
    received = expected.copy()
    received[0, 2, 1, 3] = 1.0
    received[0, 0, 0, 0] = 1e-3  # smaller error: not the worst
    msg = check_output("dx", expected, received, **TOL)
    assert msg == "dx[0, 2, 1, 3]: expected 0.0, got 1.0 (2 of 24 values differ)"


def test_integer_answer_must_be_an_integer():
    msg = check_output("out", np.asarray(448), np.asarray(448.0), **TOL)
    assert msg is not None and "must be an integer" in msg and "448.0" in msg


def test_integers_compare_exactly():
    assert check_output("out", np.asarray(448), np.asarray(448), **TOL) is None
    assert (
        check_output("out", np.asarray(448), np.asarray(449), **TOL) == "out: expected 448, got 449"
    )


def test_float_answer_refuses_integers_and_float16_accepts_float32():
    expected = np.ones((2, 2))
    assert "floating-point" in check_output("dx", expected, np.ones((2, 2), dtype=int), **TOL)
    assert "float16" in check_output("dx", expected, np.ones((2, 2), dtype=np.float16), **TOL)
    assert check_output("dx", expected, np.ones((2, 2), dtype=np.float32), **TOL) is None


def test_wrong_shape_that_would_broadcast_fails():
    expected = np.full(5, 5.0)
    msg = check_output("out", expected, np.asarray(5.0), **TOL)
    assert msg == "out has a scalar, expected shape (5,)"
    msg = check_output("out", np.ones((2, 3)), np.ones((3, 2)), **TOL)
    assert msg == "out has shape (3, 2), expected shape (2, 3)"


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_fail_with_their_index(bad):
    received = np.zeros((2, 3))
    received[1, 2] = bad
    msg = check_output("dw", np.zeros((2, 3)), received, **TOL)
    assert msg.startswith("dw[1, 2] is ") and "finite" in msg


def test_only_plain_ndarrays_are_accepted():
    class Sneaky(np.ndarray):
        def __eq__(self, other):  # pragma: no cover - never called
            return True

    fake = np.zeros(3).view(Sneaky)
    assert "numpy array" in check_output("out", np.ones(3), fake, **TOL)
    assert "numpy array" in check_output("out", np.ones(3), [1.0, 1.0, 1.0], **TOL)
    assert "not a number type" in check_output("out", np.ones(2), np.array(["a", "b"]), **TOL)


def test_check_outputs_reports_missing_and_first_problem():
    expected = {"dx": np.zeros(2), "dw": np.zeros(2)}
    assert check_outputs(expected, None, **TOL) == "no result came back"
    assert check_outputs(expected, {"dx": np.zeros(2)}, **TOL) == "the result has no 'dw'"
    msg = check_outputs(expected, {"dx": np.zeros(2), "dw": np.ones(2)}, **TOL)
    assert msg.startswith("dw[0]: expected 0.0, got 1.0")


def test_outputs_match_requires_shape_values_and_plain_arrays():
    a = {"out": np.arange(4.0)}
    assert outputs_match(a, {"out": np.arange(4.0) + 1e-12}, **TOL)
    assert not outputs_match(a, {"out": np.arange(4.0) + 1}, **TOL)
    assert not outputs_match(a, {"out": np.arange(4.0).reshape(2, 2)}, **TOL)
    assert not outputs_match(a, {"other": np.arange(4.0)}, **TOL)
    assert not outputs_match(a, {"out": np.array([0.0, 1.0, 2.0, np.nan])}, **TOL)
    assert outputs_match({"n": np.asarray(7)}, {"n": np.asarray(7)}, **TOL)
    assert not outputs_match({"n": np.asarray(7)}, {"n": np.asarray(8)}, **TOL)


def test_formatting():
    assert format_index("dx", (0, 2)) == "dx[0, 2]"
    assert format_index("out", ()) == "out"
    assert format_value(np.int64(7)) == "7"
    assert format_value(4.0) == "4.0"
    assert format_value(1 / 3) == "0.3333333"
    assert format_value(float("nan")) == "nan"


@given(
    shape=st.lists(st.integers(1, 4), min_size=1, max_size=4).map(tuple),
    data=st.data(),
    delta=st.floats(1e-3, 1e3),
)
def test_a_single_wrong_value_is_found_at_its_index(shape, data, delta):
    expected = np.arange(int(np.prod(shape)), dtype=float).reshape(shape)
    index = tuple(data.draw(st.integers(0, n - 1)) for n in shape)
    received = expected.copy()
    received[index] += delta
    msg = check_output("g", expected, received, **TOL)
    assert msg is not None
    assert msg.startswith(format_index("g", index) + ":")
    assert "(1 of" in msg
