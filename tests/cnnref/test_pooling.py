"""cnnref.pooling against torch.nn.functional (the oracle), including ties and overlap,
and the lecture's 5x5 max-pool example."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from strategies import as_pair, make_array, pool_cases, seeds

from cnnref.pooling import (
    AvgPoolCache,
    MaxPoolCache,
    avgpool2d_backward,
    avgpool2d_forward,
    maxpool2d_backward,
    maxpool2d_forward,
)

# The lecture's activation of layer L, its 3x3 stride-1 max-pool, and the slide's upstream
# gradient.
LECTURE_X = np.array(
    [
        [2, 4, 8, 3, 6],
        [9, 3, 4, 2, 5],
        [5, 4, 6, 3, 1],
        [2, 3, 1, 3, 4],
        [2, 7, 4, 5, 7],
    ],
    dtype=np.float64,
)
LECTURE_OUT = [[9, 8, 8], [9, 6, 6], [7, 7, 7]]
LECTURE_DOUT = np.array([[1, 3, 1], [1, 4, 2], [6, 2, 1]], dtype=np.float64)


def _torch_pool(fn, case, dout_seed):
    x = torch.tensor(case.x, requires_grad=True)
    stride = None if case.stride is None else as_pair(case.stride)
    out = fn(x, as_pair(case.pool_size), stride)
    dout = make_array(dout_seed, tuple(out.shape))
    out.backward(torch.tensor(dout))
    return out.detach().numpy(), dout, x.grad.numpy()


@given(case=pool_cases(), dout_seed=seeds)
def test_maxpool_matches_torch(case, dout_seed):
    out_t, dout, dx_t = _torch_pool(F.max_pool2d, case, dout_seed)
    out, cache = maxpool2d_forward(case.x, pool_size=case.pool_size, stride=case.stride)
    assert isinstance(cache, MaxPoolCache)
    np.testing.assert_array_equal(out, out_t)
    np.testing.assert_allclose(maxpool2d_backward(dout, cache), dx_t, rtol=1e-12, atol=1e-12)


@given(case=pool_cases(ties=True), dout_seed=seeds)
def test_maxpool_ties_go_to_the_first_maximum_like_torch(case, dout_seed):
    # Integer inputs 0..3: most windows hold a repeated maximum.
    out_t, dout, dx_t = _torch_pool(F.max_pool2d, case, dout_seed)
    out, cache = maxpool2d_forward(case.x, pool_size=case.pool_size, stride=case.stride)
    np.testing.assert_array_equal(out, out_t)
    np.testing.assert_allclose(maxpool2d_backward(dout, cache), dx_t, rtol=1e-12, atol=1e-12)


@given(case=pool_cases(), dout_seed=seeds)
def test_avgpool_matches_torch(case, dout_seed):
    out_t, dout, dx_t = _torch_pool(F.avg_pool2d, case, dout_seed)
    out, cache = avgpool2d_forward(case.x, pool_size=case.pool_size, stride=case.stride)
    assert isinstance(cache, AvgPoolCache)
    np.testing.assert_allclose(out, out_t, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(avgpool2d_backward(dout, cache), dx_t, rtol=1e-12, atol=1e-12)


def test_lecture_maxpool_forward():
    out, _ = maxpool2d_forward(LECTURE_X[None, None], pool_size=3, stride=1)
    np.testing.assert_array_equal(out[0, 0], LECTURE_OUT)


def test_lecture_maxpool_backward_accumulates_over_overlapping_windows():
    _, cache = maxpool2d_forward(LECTURE_X[None, None], pool_size=3, stride=1)
    dx = maxpool2d_backward(LECTURE_DOUT[None, None], cache)[0, 0]
    expected = np.zeros((5, 5))
    expected[1, 0] = 1 + 1  # the 9: windows (0,0) and (1,0)
    expected[0, 2] = 3 + 1  # the 8: windows (0,1) and (0,2)
    expected[2, 2] = 4 + 2  # the 6: windows (1,1) and (1,2)
    expected[4, 1] = 6 + 2  # the first 7 of the bottom row: windows (2,0) and (2,1)
    expected[4, 4] = 1  # the last 7: window (2,2)
    np.testing.assert_array_equal(dx, expected)
    assert dx.sum() == LECTURE_DOUT.sum()  # nothing lost, nothing duplicated


def test_maxpool_tie_within_one_window_goes_to_the_first_in_row_major_order():
    x = np.array([[[[1.0, 5.0], [5.0, 5.0]]]])
    _, cache = maxpool2d_forward(x, pool_size=2)
    dx = maxpool2d_backward(np.array([[[[7.0]]]]), cache)
    np.testing.assert_array_equal(dx[0, 0], [[0, 7], [0, 0]])


def test_maxpool_stride_none_means_pool_size():
    x = make_array(3, (2, 3, 8, 6))
    a, _ = maxpool2d_forward(x, pool_size=(2, 3))
    b, _ = maxpool2d_forward(x, pool_size=(2, 3), stride=(2, 3))
    assert a.shape == (2, 3, 4, 2)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("fn", [maxpool2d_forward, avgpool2d_forward])
@pytest.mark.parametrize(
    "x, kwargs, match",
    [
        (np.ones((3, 4, 4)), dict(pool_size=2), r"x must be a numpy array of shape \(N, C, H, W\)"),
        (np.ones((1, 1, 4, 4)), dict(pool_size=0), "pool_size must be a positive int"),
        (np.ones((1, 1, 4, 4)), dict(pool_size=2, stride=-1), "stride must be a positive int"),
        (np.ones((1, 1, 4, 4)), dict(pool_size=(5, 2)), "pool_size 5x2 is larger than the input"),
    ],
)
def test_pool_bad_arguments(fn, x, kwargs, match):
    with pytest.raises(ValueError, match=match):
        fn(x, **kwargs)


@pytest.mark.parametrize(
    "forward, backward",
    [(maxpool2d_forward, maxpool2d_backward), (avgpool2d_forward, avgpool2d_backward)],
)
def test_pool_backward_rejects_wrong_dout_shape(forward, backward):
    _, cache = forward(np.ones((1, 1, 4, 4)), pool_size=2)
    with pytest.raises(
        ValueError, match=r"dout must have the forward output's shape \(1, 1, 2, 2\)"
    ):
        backward(np.ones((1, 1, 3, 2)), cache)
