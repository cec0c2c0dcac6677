"""The one shared Hypothesis strategies module of the cnnref tests.

Strategies draw hyperparameters (shapes, strides 1-3, paddings, dilations 1-3) and a seed;
arrays are then made with numpy from that seed, which is much faster than drawing every
element and still shrinks well (Hypothesis shrinks the hyperparameters and the seed).
``ties=True`` arrays hold small integers, so windows contain repeated maxima.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
from hypothesis import strategies as st

seeds = st.integers(min_value=0, max_value=2**32 - 1)
strides = st.integers(min_value=1, max_value=3)
dilations = st.integers(min_value=1, max_value=3)


def make_array(seed: int, shape: tuple[int, ...], *, ties: bool = False) -> np.ndarray:
    """A float64 array of ``shape``: standard normal, or small integers (0..3) when ``ties``."""
    rng = np.random.default_rng(seed)
    if ties:
        return rng.integers(0, 4, size=shape).astype(np.float64)
    return rng.standard_normal(shape)


def _pair_or_int(elements: st.SearchStrategy[int]) -> st.SearchStrategy[Any]:
    return st.one_of(elements, st.tuples(elements, elements))


def as_pair(value: Any) -> tuple[int, int]:
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


class ConvCase(NamedTuple):
    x: np.ndarray
    w: np.ndarray
    b: np.ndarray
    stride: Any
    padding: Any
    dilation: Any


@st.composite
def conv_cases(draw, *, allow_strings: bool = True) -> ConvCase:
    """A conv2d problem that fits: batch 1-3 (often 1), channels 1-4 (often 1), kernels 1-4,
    non-square inputs and kernels, int/pair strides and dilations, int/pair/"same"/"valid"
    padding."""
    n = draw(st.sampled_from([1, 1, 2, 3]))
    c = draw(st.sampled_from([1, 1, 2, 3, 4]))
    f = draw(st.integers(1, 4))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    stride = draw(_pair_or_int(strides))
    dilation = draw(_pair_or_int(dilations))
    pad_choices = [_pair_or_int(st.integers(0, 2))]
    if allow_strings:
        pad_choices.append(st.sampled_from(["same", "valid"]))
    padding = draw(st.one_of(*pad_choices))
    dh, dw = as_pair(dilation)
    ext = (dh * (kh - 1) + 1, dw * (kw - 1) + 1)
    if isinstance(padding, str):
        # "same" always fits; "valid" needs the kernel to fit the input.
        low = (1, 1) if padding == "same" else ext
    else:
        ph, pw = as_pair(padding)
        low = (max(1, ext[0] - 2 * ph), max(1, ext[1] - 2 * pw))
    h = draw(st.integers(low[0], low[0] + 7))
    w = draw(st.integers(low[1], low[1] + 7))
    seed = draw(seeds)
    return ConvCase(
        x=make_array(seed, (n, c, h, w)),
        w=make_array(seed + 1, (f, c, kh, kw)),
        b=make_array(seed + 2, (f,)),
        stride=stride,
        padding=padding,
        dilation=dilation,
    )


class PoolCase(NamedTuple):
    x: np.ndarray
    pool_size: Any
    stride: Any


@st.composite
def pool_cases(draw, *, ties: bool | None = None) -> PoolCase:
    """A pooling problem: windows 1-4 (int or pair), stride None (= window) or 1-3 (so
    windows often overlap), non-square inputs; ``ties`` None draws either kind of input."""
    pool = draw(_pair_or_int(st.integers(1, 4)))
    stride = draw(st.one_of(st.none(), _pair_or_int(strides)))
    ph, pw = as_pair(pool)
    n = draw(st.sampled_from([1, 1, 2]))
    c = draw(st.sampled_from([1, 1, 2, 3]))
    h = draw(st.integers(ph, ph + 7))
    w = draw(st.integers(pw, pw + 7))
    if ties is None:
        ties = draw(st.booleans())
    return PoolCase(make_array(draw(seeds), (n, c, h, w), ties=ties), pool, stride)
