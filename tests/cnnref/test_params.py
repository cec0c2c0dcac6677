"""cnnref.params: counts against torch.nn modules, MACs counted by running a convolution,
the lecture's worked examples, and the Keras-style summary."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from cnnref.params import (
    Conv2D,
    Dense,
    Flatten,
    MaxPool2D,
    Summary,
    SummaryRow,
    conv2d_macs,
    conv2d_params,
    dense_params,
    depthwise_separable_macs,
    depthwise_separable_params,
    summary,
)


def _n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


kernels = st.one_of(st.integers(1, 5), st.tuples(st.integers(1, 5), st.integers(1, 5)))


@given(
    groups=st.integers(1, 4),
    c_per_group=st.integers(1, 4),
    f_per_group=st.integers(1, 4),
    kernel=kernels,
    bias=st.booleans(),
)
def test_conv2d_params_equal_torch_conv2d(groups, c_per_group, f_per_group, kernel, bias):
    c, f = groups * c_per_group, groups * f_per_group
    module = nn.Conv2d(c, f, kernel, groups=groups, bias=bias, device="meta")
    assert conv2d_params(c, f, kernel, bias=bias, groups=groups) == _n_params(module)


@given(d_in=st.integers(1, 300), d_out=st.integers(1, 300), bias=st.booleans())
def test_dense_params_equal_torch_linear(d_in, d_out, bias):
    module = nn.Linear(d_in, d_out, bias=bias, device="meta")
    assert dense_params(d_in, d_out, bias=bias) == _n_params(module)


@given(c=st.integers(1, 8), f=st.integers(1, 40), kernel=kernels, bias=st.booleans())
def test_depthwise_separable_params_equal_torch_depthwise_then_pointwise(c, f, kernel, bias):
    module = nn.Sequential(
        nn.Conv2d(c, c, kernel, groups=c, bias=bias, device="meta"),
        nn.Conv2d(c, f, 1, bias=bias, device="meta"),
    )
    assert depthwise_separable_params(c, f, kernel, bias=bias) == _n_params(module)


def _macs_by_running(c, f, kernel, h, w, groups=1):
    """Count multiplies by convolving ones with ones (no padding, no bias): every output
    value is then the number of products summed into it."""
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    out = F.conv2d(
        torch.ones(1, c, h, w, dtype=torch.float64),
        torch.ones(f, c // groups, kh, kw, dtype=torch.float64),
        groups=groups,
    )
    return int(out.sum().item()), out.shape[2], out.shape[3]


@given(
    groups=st.integers(1, 3),
    c_per_group=st.integers(1, 3),
    f_per_group=st.integers(1, 3),
    kernel=kernels,
    extra=st.tuples(st.integers(0, 6), st.integers(0, 6)),
)
def test_conv2d_macs_equal_products_counted_by_torch(
    groups, c_per_group, f_per_group, kernel, extra
):
    c, f = groups * c_per_group, groups * f_per_group
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    macs, oh, ow = _macs_by_running(c, f, kernel, kh + extra[0], kw + extra[1], groups)
    assert conv2d_macs(c, f, kernel, oh, ow, groups=groups) == macs


@given(c=st.integers(1, 4), f=st.integers(1, 5), k=st.integers(1, 5), extra=st.integers(0, 5))
def test_depthwise_separable_macs_equal_products_counted_by_torch(c, f, k, extra):
    depthwise, oh, ow = _macs_by_running(c, c, k, k + extra, k + extra, groups=c)
    pointwise, _, _ = _macs_by_running(c, f, 1, oh, ow)
    assert depthwise_separable_macs(c, f, k, oh, ow) == depthwise + pointwise


# ------------------------------------------------------------------ the lecture's examples


def test_lecture_single_filter_28():
    assert conv2d_params(3, 1, 3) == 28


def test_lecture_16_filters_448():
    assert conv2d_params(3, 16, 3) == 448


def test_lecture_conv1_224_and_conv2_3216():
    assert conv2d_params(3, 8, 3) == 224
    assert conv2d_params(8, 16, 5) == 3216


def _lecture_network() -> Summary:
    return summary(
        (32, 32, 3),
        [
            Conv2D(8, 3, stride=1, padding="same"),
            Conv2D(16, 5, stride=2, padding="same"),
            Flatten(),
            Dense(512),
            Dense(4),
        ],
    )


def test_lecture_network_summary():
    result = _lecture_network()
    assert result.rows == (
        SummaryRow("conv2d", (32, 32, 8), 224),
        SummaryRow("conv2d_1", (16, 16, 16), 3216),
        SummaryRow("flatten", (4096,), 0),
        SummaryRow("dense", (512,), 2_097_664),
        SummaryRow("dense_1", (4,), 2052),
    )
    assert sum(r.params for r in result.rows if r.name.startswith("dense")) == 2_099_716
    assert result.total_params == 2_103_156


def test_lecture_network_matches_torch_modules():
    # The same network in torch; "same" for the stride-2 5x5 conv on 32 is pad (1, 2).
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ZeroPad2d((1, 2, 1, 2)),
        nn.Conv2d(8, 16, 5, stride=2),
        nn.Flatten(),
        nn.Linear(4096, 512),
        nn.Linear(512, 4),
    )
    result = _lecture_network()
    assert result.total_params == _n_params(net)
    x = torch.zeros(1, 3, 32, 32)
    shapes = []
    for layer in net:
        x = layer(x)
        if not isinstance(layer, nn.ZeroPad2d):
            shapes.append(tuple(x.shape[1:]))
    # torch is CHW, the summary HWC.
    hwc = [(s[1], s[2], s[0]) if len(s) == 3 else s for s in shapes]
    assert [r.output_shape for r in result.rows] == hwc


def test_lecture_mobilenet_numbers():
    assert conv2d_macs(3, 256, 5, 12, 12) == 2_764_800
    assert conv2d_params(3, 256, 5) == 19_456
    assert depthwise_separable_params(3, 256, 5) == 1_102


# ------------------------------------------------------------------ summary


def test_summary_with_pooling_dilation_and_dense_on_a_feature_map():
    result = summary(
        (28, 30, 1),
        [
            Conv2D(6, (5, 3), padding=2, dilation=(1, 2), name="c1"),
            MaxPool2D(2),
            Conv2D(4, 3, stride=(2, 1), use_bias=False),
            MaxPool2D((3, 2), stride=1, padding="same"),
            Dense(7),
            Flatten(),
        ],
    )
    x = torch.zeros(1, 1, 28, 30)
    c1 = nn.Conv2d(1, 6, (5, 3), padding=2, dilation=(1, 2))
    c2 = nn.Conv2d(6, 4, 3, stride=(2, 1), bias=False)
    x1 = c1(x)
    x2 = F.max_pool2d(x1, 2)
    x3 = c2(x2)
    hwc = lambda t: (t.shape[2], t.shape[3], t.shape[1])  # noqa: E731
    assert (
        [r.output_shape for r in result.rows]
        == [
            hwc(x1),
            hwc(x2),
            hwc(x3),
            hwc(x3),  # "same" pooling with stride 1 keeps the size
            (*hwc(x3)[:2], 7),  # Keras Dense acts on the last axis
            (hwc(x3)[0] * hwc(x3)[1] * 7,),
        ]
    )
    assert [r.params for r in result.rows] == [_n_params(c1), 0, _n_params(c2), 0, 4 * 7 + 7, 0]
    assert result.rows[0].name == "c1" and result.rows[2].name == "conv2d"
    assert result.rows[1].name == "max_pooling2d" and result.rows[3].name == "max_pooling2d_1"


def test_summary_str_is_a_keras_like_table():
    text = str(_lecture_network())
    assert "Layer (type)" in text and "Output Shape" in text and "Param #" in text
    assert "conv2d_1 (Conv2D)" in text
    assert "(None, 16, 16, 16)" in text
    assert "2,097,664" in text
    assert text.strip().endswith("Total params: 2,103,156")


@pytest.mark.parametrize(
    "input_shape, layers, match",
    [
        ((32, 32), [Flatten()], r"input_shape must be \(H, W, C\)"),
        ((32, 32, 0), [Flatten()], "input_shape must be a positive int"),
        (
            (32, 32, 3),
            [Flatten(), Conv2D(4, 3)],
            r"layers\[1\] \(conv2d\) needs an \(H, W, C\) input",
        ),
        ((4, 4, 3), [Conv2D(4, 5)], r"layers\[0\] \(conv2d\) does not fit its input \(4, 4, 3\)"),
        (
            (4, 4, 3),
            [nn.ReLU()],
            r"layers\[0\] must be Conv2D, MaxPool2D, Flatten or Dense, got ReLU",
        ),
    ],
)
def test_summary_bad_input(input_shape, layers, match):
    with pytest.raises(ValueError, match=match):
        summary(input_shape, layers)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: Conv2D(0, 3), "filters must be a positive int"),
        (lambda: Conv2D(4, 3, stride=-1), "stride must be a positive int"),
        (lambda: Conv2D(4, 3, padding="full"), 'padding must be "same", "valid"'),
        (lambda: MaxPool2D(2, padding=1), "padding of MaxPool2D must be"),
        (lambda: Dense(0), "units must be a positive int"),
    ],
)
def test_layer_descriptions_validate(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize(
    "call, match",
    [
        (
            lambda: conv2d_params(3, 4, 3, groups=2),
            "groups must divide in_channels and out_channels",
        ),
        (lambda: conv2d_params(-3, 4, 3), "in_channels must be a positive int, got -3"),
        (lambda: conv2d_params(3, 4, (3, 3, 3)), "kernel_size must be an int or a pair"),
        (lambda: dense_params(0, 4), "in_features must be a positive int, got 0"),
        (lambda: conv2d_macs(3, 4, 3, 0, 5), "out_h must be a positive int"),
        (lambda: depthwise_separable_macs(3, 4, 3, 5, -5), "out_w must be a positive int"),
    ],
)
def test_counting_bad_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()
