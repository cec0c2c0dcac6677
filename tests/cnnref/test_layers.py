"""cnnref.layers against torch.nn.functional (the oracle): conv2d, dense, relu."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from strategies import as_pair, conv_cases, make_array, seeds

from cnnref.layers import (
    Conv2dCache,
    DenseCache,
    conv2d_backward,
    conv2d_forward,
    dense_backward,
    dense_forward,
    relu_backward,
    relu_forward,
)


def _tf_same_pads(n: int, k_eff: int, s: int) -> tuple[int, int]:
    """TensorFlow's documented "same" padding: out = ceil(n/s), extra pixel after."""
    out = -(-n // s)
    total = max((out - 1) * s + k_eff - n, 0)
    return total // 2, total - total // 2


def _torch_conv(case, dout_seed: int):
    """Forward and the three gradients from torch for a ConvCase."""
    x = torch.tensor(case.x, requires_grad=True)
    w = torch.tensor(case.w, requires_grad=True)
    b = torch.tensor(case.b, requires_grad=True)
    (sh, sw), (dh, dw) = as_pair(case.stride), as_pair(case.dilation)
    kh, kw = case.w.shape[2:]
    xin, pad = x, 0
    if case.padding == "same":
        top, bottom = _tf_same_pads(case.x.shape[2], dh * (kh - 1) + 1, sh)
        left, right = _tf_same_pads(case.x.shape[3], dw * (kw - 1) + 1, sw)
        xin = F.pad(x, (left, right, top, bottom))
    elif case.padding != "valid":
        pad = as_pair(case.padding)
    out = F.conv2d(xin, w, b, stride=(sh, sw), padding=pad, dilation=(dh, dw))
    dout = make_array(dout_seed, tuple(out.shape))
    out.backward(torch.tensor(dout))
    return out.detach().numpy(), dout, x.grad.numpy(), w.grad.numpy(), b.grad.numpy()


@given(case=conv_cases(), dout_seed=seeds)
def test_conv2d_matches_torch_forward_and_all_gradients(case, dout_seed):
    out_t, dout, dx_t, dw_t, db_t = _torch_conv(case, dout_seed)
    out, cache = conv2d_forward(
        case.x, case.w, case.b, stride=case.stride, padding=case.padding, dilation=case.dilation
    )
    assert out.shape == out_t.shape
    np.testing.assert_allclose(out, out_t, rtol=1e-10, atol=1e-10)
    dx, dw, db = conv2d_backward(dout, cache)
    assert (dx.shape, dw.shape, db.shape) == (case.x.shape, case.w.shape, case.b.shape)
    np.testing.assert_allclose(dx, dx_t, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(dw, dw_t, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(db, db_t, rtol=1e-10, atol=1e-10)


@pytest.mark.filterwarnings("ignore:Using padding=.same.")
def test_conv2d_same_padding_matches_torch_same_for_stride_one():
    # torch's own padding="same" (stride 1) also puts an odd extra pixel after.
    x, w, b = make_array(0, (2, 3, 7, 6)), make_array(1, (4, 3, 4, 3)), make_array(2, (4,))
    out, _ = conv2d_forward(x, w, b, padding="same", dilation=(1, 2))
    expected = F.conv2d(*map(torch.tensor, (x, w, b)), padding="same", dilation=(1, 2))
    np.testing.assert_allclose(out, expected.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "n, k, s, pads",
    # TensorFlow's documented examples of "same": out = ceil(n/s), odd extra after.
    [
        (32, 5, 2, (1, 2)),
        (5, 3, 1, (1, 1)),
        (4, 2, 1, (0, 1)),
        (13, 6, 5, (1, 2)),
        (7, 1, 3, (0, 0)),
    ],
)
def test_conv2d_same_padding_split(n, k, s, pads):
    x = np.ones((1, 1, n, n))
    out, cache = conv2d_forward(x, np.ones((1, 1, k, k)), np.zeros(1), stride=s, padding="same")
    assert out.shape[2:] == (-(-n // s),) * 2
    assert (cache.pad_top, cache.pad_bottom, cache.pad_left, cache.pad_right) == (*pads, *pads)


def test_conv2d_cache_is_a_namedtuple_of_plain_values():
    _, cache = conv2d_forward(np.ones((1, 2, 5, 5)), np.ones((3, 2, 3, 3)), np.zeros(3), stride=2)
    assert isinstance(cache, Conv2dCache)
    assert all(type(v) is int for v in cache[2:])
    assert isinstance(cache.x, np.ndarray) and isinstance(cache.w, np.ndarray)


def test_conv2d_worked_example_from_the_lecture_sizes():
    # 5x5 input, k=3, p=1, s=2 -> 3x3; the same conv again -> 2x2.
    w, b = np.ones((1, 1, 3, 3)), np.zeros(1)
    out1, _ = conv2d_forward(np.ones((1, 1, 5, 5)), w, b, stride=2, padding=1)
    out2, _ = conv2d_forward(out1, w, b, stride=2, padding=1)
    assert out1.shape[2:] == (3, 3) and out2.shape[2:] == (2, 2)
    # With ones everywhere, each output counts the real (unpadded) pixels of its window.
    np.testing.assert_array_equal(out1[0, 0], [[4, 6, 4], [6, 9, 6], [4, 6, 4]])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(x=np.ones((2, 3, 5))), "x must have 4 dimensions"),
        (dict(w=np.ones((4, 2, 3, 3))), "input channels"),
        (dict(b=np.ones(5)), "b must have shape"),
        (dict(stride=-1), "stride must be a positive int"),
        (dict(stride=0), "stride must be a positive int"),
        (dict(dilation=(1, 0)), "dilation must be a positive int"),
        (dict(padding=-1), "padding must be an int >= 0"),
        (dict(padding="full"), "padding must be"),
        (dict(w=np.ones((4, 3, 6, 3))), "padded input is 5x5"),
        (dict(dilation=3), "kernel spans 7x7"),
        (dict(x=[[1.0]]), "x must be a numpy array"),
    ],
)
def test_conv2d_bad_arguments_name_the_argument(kwargs, match):
    args = dict(x=np.ones((2, 3, 5, 5)), w=np.ones((4, 3, 3, 3)), b=np.zeros(4))
    args.update(kwargs)
    x, w, b = args.pop("x"), args.pop("w"), args.pop("b")
    with pytest.raises(ValueError, match=match):
        conv2d_forward(x, w, b, **args)


def test_conv2d_backward_rejects_wrong_dout_shape():
    _, cache = conv2d_forward(np.ones((1, 1, 5, 5)), np.ones((2, 1, 3, 3)), np.zeros(2))
    with pytest.raises(
        ValueError, match=r"dout must have the forward output's shape \(1, 2, 3, 3\)"
    ):
        conv2d_backward(np.ones((1, 2, 3, 4)), cache)


@given(
    n=st.integers(1, 4),
    extra=st.sampled_from([(), (3,), (2, 3)]),
    d_in=st.integers(1, 6),
    d_out=st.integers(1, 6),
    seed=seeds,
)
def test_dense_matches_torch(n, extra, d_in, d_out, seed):
    x = make_array(seed, (n, d_in, *extra))
    flat = int(np.prod(x.shape[1:]))
    w, b, dout = make_array(seed + 1, (flat, d_out)), make_array(seed + 2, (d_out,)), None
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    out_t = F.linear(xt.reshape(n, flat), wt.T, bt)  # torch stores (D_out, D_in)
    dout = make_array(seed + 3, (n, d_out))
    out_t.backward(torch.tensor(dout))
    out, cache = dense_forward(x, w, b)
    assert isinstance(cache, DenseCache)
    np.testing.assert_allclose(out, out_t.detach().numpy(), rtol=1e-12, atol=1e-12)
    dx, dw, db = dense_backward(dout, cache)
    assert dx.shape == x.shape
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dw, wt.grad.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(db, bt.grad.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "x, w, b, match",
    [
        (np.ones(3), np.ones((3, 2)), np.ones(2), r"x must be a numpy array of shape \(N, D_in\)"),
        (np.ones((2, 4)), np.ones((3, 2)), np.ones(2), "w must have 4 rows"),
        (np.ones((2, 3)), np.ones((3, 2)), np.ones(3), r"b must have shape \(2,\)"),
        (np.ones((2, 3)), np.ones(3), np.ones(3), "w must have 2 dimensions"),
    ],
)
def test_dense_bad_arguments(x, w, b, match):
    with pytest.raises(ValueError, match=match):
        dense_forward(x, w, b)


@given(seed=seeds, shape=st.sampled_from([(5,), (2, 3), (2, 3, 4, 5)]))
def test_relu_matches_torch_including_zeros(seed, shape):
    x = make_array(seed, shape, ties=True) - 1.5  # values -1.5, -0.5, 0.5, 1.5
    x.flat[0] = 0.0  # the kink: torch's gradient there is 0
    xt = torch.tensor(x, requires_grad=True)
    out_t = torch.relu(xt)
    dout = make_array(seed + 1, shape)
    out_t.backward(torch.tensor(dout))
    out, cache = relu_forward(x)
    np.testing.assert_array_equal(out, out_t.detach().numpy())
    np.testing.assert_array_equal(relu_backward(dout, cache), xt.grad.numpy())


def test_relu_backward_rejects_wrong_shape():
    _, cache = relu_forward(np.ones((2, 3)))
    with pytest.raises(ValueError, match="dout must have the forward input's shape"):
        relu_backward(np.ones((3, 2)), cache)
