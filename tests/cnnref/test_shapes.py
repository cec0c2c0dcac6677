"""cnnref.shapes: output sizes checked against the shapes torch actually produces."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from cnnref.shapes import conv_output_size, effective_kernel_size, same_padding


@given(
    n=st.integers(1, 40),
    k=st.integers(1, 7),
    s=st.integers(1, 3),
    p=st.integers(0, 3),
    d=st.integers(1, 3),
)
def test_conv_output_size_equals_torch_output_shape(n, k, s, p, d):
    if d * (k - 1) + 1 > n + 2 * p:
        with pytest.raises(ValueError, match="more than the padded input"):
            conv_output_size(n, k, s, p, d)
        return
    out = F.conv1d(torch.zeros(1, 1, n), torch.zeros(1, 1, k), stride=s, padding=p, dilation=d)
    assert conv_output_size(n, k, s, p, d) == out.shape[-1]


@given(n=st.integers(1, 40), k=st.integers(1, 7), s=st.integers(1, 3), d=st.integers(1, 3))
def test_same_is_ceil_n_over_s_and_its_padding_produces_that_size(n, k, s, d):
    assert conv_output_size(n, k, s, "same", d) == math.ceil(n / s)
    before, after = same_padding(n, k, s, d)
    assert 0 <= after - before <= 1  # the odd pixel goes after (bottom/right)
    padded = F.pad(torch.zeros(1, 1, n), (before, after))
    out = F.conv1d(padded, torch.zeros(1, 1, k), stride=s, dilation=d)
    assert out.shape[-1] == math.ceil(n / s)


@pytest.mark.parametrize(
    "n, k, s, expected", [(32, 5, 2, (1, 2)), (5, 3, 1, (1, 1)), (4, 2, 1, (0, 1))]
)
def test_same_padding_tensorflow_examples(n, k, s, expected):
    assert same_padding(n, k, s) == expected


def test_valid_is_no_padding():
    assert conv_output_size(7, 3, 2, "valid") == conv_output_size(7, 3, 2, 0) == 3
    assert conv_output_size(7, 3, padding="VALID") == 5


def test_lecture_worked_example_5x5_k3_p1_s2():
    first = conv_output_size(5, 3, stride=2, padding=1)
    assert first == 3
    assert conv_output_size(first, 3, stride=2, padding=1) == 2


def test_lecture_same_padding_examples():
    assert conv_output_size(32, 3, 1, "same") == 32  # Conv1
    assert conv_output_size(32, 5, 2, "same") == 16  # Conv2


def test_floor_differs_from_the_lectures_ceil_when_the_division_is_inexact():
    # 6x6 input, k=3, p=0, s=2: (6 - 3)/2 = 1.5 -> floor gives 2, the slide's ceil gives 3.
    n, k, p, s = 6, 3, 0, 2
    ceil_formula = math.ceil((n + 2 * p - k) / s) + 1
    torch_size = F.conv1d(torch.zeros(1, 1, n), torch.zeros(1, 1, k), stride=s).shape[-1]
    assert conv_output_size(n, k, s, p) == torch_size == 2
    assert ceil_formula == 3


@pytest.mark.parametrize("k, d, expected", [(3, 1, 3), (3, 2, 5), (3, 3, 7), (1, 5, 1), (5, 2, 9)])
def test_effective_kernel_size(k, d, expected):
    assert effective_kernel_size(k, d) == expected


@pytest.mark.parametrize(
    "args, match",
    [
        ((5, 3, -1), "stride must be a positive int, got -1"),
        ((5, 3, 0), "stride must be a positive int, got 0"),
        ((5, 0), "kernel_size must be a positive int, got 0"),
        ((0, 3), "n_in must be a positive int, got 0"),
        ((5, 3, 1, -2), "padding must be an int >= 0, got -2"),
        ((5, 3, 1, "full"), 'padding must be an int >= 0, "same" or "valid"'),
        ((5, 3, 1, 0, 0), "dilation must be a positive int, got 0"),
        ((5, 7), "kernel_size 7 with dilation 1 spans 7 pixels"),
        ((5, 3, 1, 0, 3), "spans 7 pixels, more than the padded input"),
        ((5.0, 3), "n_in must be an int"),
        ((5, True), "kernel_size must be an int"),
    ],
)
def test_bad_arguments_name_the_argument(args, match):
    with pytest.raises(ValueError, match=match):
        conv_output_size(*args)


def test_effective_kernel_size_rejects_bad_dilation():
    with pytest.raises(ValueError, match="dilation must be a positive int"):
        effective_kernel_size(3, 0)
