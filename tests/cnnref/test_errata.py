"""One test per entry of docs/errata.md: each computes the corrected value with cnnref.

Architecture totals are compared with the counts torchvision publishes (hard-coded here;
``cnnref.architectures`` has its own tests).
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import torch
import torch.nn.functional as F

from cnnref.params import (
    Conv2D,
    Dense,
    Flatten,
    MaxPool2D,
    conv2d_macs,
    conv2d_params,
    dense_params,
    depthwise_separable_macs,
    depthwise_separable_params,
    summary,
)
from cnnref.receptive import receptive_field
from cnnref.shapes import conv_output_size

ERRATA = Path(__file__).resolve().parents[2] / "docs" / "errata.md"


def test_every_erratum_names_a_test_that_exists():
    named = set(re.findall(r"`(test_\w+)`", ERRATA.read_text()))
    defined = {name for name in globals() if name.startswith("test_")}
    assert len(named) >= 8
    assert named <= defined


def test_output_size_is_floor_not_ceil():
    n, k, p, s = 6, 3, 0, 2
    slide = math.ceil((n + 2 * p - k) / s) + 1
    torch_size = F.conv2d(torch.zeros(1, 1, n, n), torch.zeros(1, 1, k, k), stride=s).shape[-1]
    assert conv_output_size(n, k, s, p) == torch_size == 2 != slide
    # The slide's own example is exact, so both formulas agree there.
    assert conv_output_size(5, 3, 2, 1) == math.ceil((5 + 2 - 3) / 2) + 1 == 3


def test_mobilenet_macs_use_one_output_size():
    # 2,764,800 needs a 12x12 output: a 16x16 input with "valid" 5x5.
    side = conv_output_size(16, 5)
    assert side == 12
    assert conv2d_macs(3, 256, 5, side, side) == 2_764_800
    slide_dw = 25 * 3 * (12 * 12) + 3 * 256 * (8 * 8)
    assert slide_dw == 59_952
    assert depthwise_separable_macs(3, 256, 5, 12, 12) == 121_392 != slide_dw
    assert conv2d_macs(3, 256, 5, 8, 8) == 1_228_800
    assert depthwise_separable_macs(3, 256, 5, 8, 8) == 53_952
    ratio = conv2d_macs(3, 256, 5, 12, 12) / depthwise_separable_macs(3, 256, 5, 12, 12)
    assert math.isclose(ratio, 1 / (1 / 256 + 1 / 25))
    assert (conv2d_params(3, 256, 5), depthwise_separable_params(3, 256, 5)) == (19_456, 1_102)


def _vgg16(classes: int):
    layers = []
    for width, repeat in ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3)):
        layers += [Conv2D(width, 3, padding="same") for _ in range(repeat)] + [MaxPool2D(2)]
    layers += [Flatten(), Dense(4096), Dense(4096), Dense(classes)]
    return summary((224, 224, 3), layers)


def test_vgg16_parameter_counts():
    imagenet = _vgg16(1000)
    assert imagenet.total_params == 138_357_544  # torchvision's published count
    assert imagenet.rows[-4].output_shape == (7 * 7 * 512,)
    conv_part = sum(r.params for r in imagenet.rows if r.name.startswith("conv2d"))
    assert conv_part == 14_714_688
    assert _vgg16(2).total_params == 134_268_738 == 134_268_737 + 1
    assert _vgg16(1).total_params == 134_264_641


def test_model_sizes_in_memory():
    mib = 2**20
    assert round(138_357_544 * 4 / mib, 1) == 527.8
    assert round(138_357_544 * 4 / 1e6, 1) == 553.4
    assert round(61_100_840 * 4 / mib, 1) == 233.1  # torchvision AlexNet


def _resnet(blocks, *, bottleneck: bool, stem_kernel: int, classes: int) -> int:
    """Parameters of a torchvision-style ResNet (convolutions without bias, BatchNorm with
    2 parameters per channel, 1x1 projection shortcuts where the shape changes)."""

    def bn(c: int) -> int:
        return 2 * c

    total = conv2d_params(3, 64, stem_kernel, bias=False) + bn(64)
    channels = 64
    for width, count, stride in zip((64, 128, 256, 512), blocks, (1, 2, 2, 2), strict=True):
        for index in range(count):
            out = 4 * width if bottleneck else width
            if bottleneck:
                total += conv2d_params(channels, width, 1, bias=False) + bn(width)
                total += conv2d_params(width, width, 3, bias=False) + bn(width)
                total += conv2d_params(width, out, 1, bias=False) + bn(out)
            else:
                total += conv2d_params(channels, width, 3, bias=False) + bn(width)
                total += conv2d_params(width, width, 3, bias=False) + bn(width)
            if (index == 0 and stride != 1) or channels != out:
                total += conv2d_params(channels, out, 1, bias=False) + bn(out)
            channels = out
    return total + dense_params(channels, classes)


RESNETS = {
    18: ((2, 2, 2, 2), False, 11_689_512, "11.174M"),
    34: ((3, 4, 6, 3), False, 21_797_672, "21.282M"),
    50: ((3, 4, 6, 3), True, 25_557_032, "23.521M"),
    101: ((3, 4, 23, 3), True, 44_549_160, "42.513M"),
    152: ((3, 8, 36, 3), True, 60_192_808, "58.157M"),
}


def test_resnet_table_is_the_cifar10_variant():
    for depth, (blocks, bottleneck, published, slide) in RESNETS.items():
        imagenet = _resnet(blocks, bottleneck=bottleneck, stem_kernel=7, classes=1000)
        assert imagenet == published, depth
        cifar = _resnet(blocks, bottleneck=bottleneck, stem_kernel=3, classes=10)
        assert f"{cifar / 1e6:.3f}M" == slide, depth
        without_fc = imagenet - dense_params(4 * 512 if bottleneck else 512, 1000)
        if depth == 18:
            assert without_fc == 11_176_512 and f"{without_fc / 1e6:.3f}M" != slide


def _densenet121(input_channels_of_layer) -> int:
    k, k0, total = 32, 64, 0
    total += conv2d_params(3, k0, 7, bias=False) + 2 * k0
    channels = k0
    for block, layers in enumerate((6, 12, 24, 16)):
        for l in range(1, layers + 1):
            c_in = input_channels_of_layer(channels, k, l)
            total += 2 * c_in + conv2d_params(c_in, 4 * k, 1, bias=False)
            total += 2 * 4 * k + conv2d_params(4 * k, k, 3, bias=False)
        channels += k * layers
        if block < 3:
            total += 2 * channels + conv2d_params(channels, channels // 2, 1, bias=False)
            channels //= 2
    return total + 2 * channels + dense_params(channels, 1000)


def test_densenet_layer_inputs_are_k0_plus_k_times_l_minus_1():
    assert _densenet121(lambda k0, k, l: k0 + k * (l - 1)) == 7_978_856  # torchvision
    assert _densenet121(lambda k0, k, l: k0 + k * l) != 7_978_856
    # And the channels really are that many: run the first block's concatenation in torch.
    k0, k, x = 64, 32, torch.zeros(1, 64, 8, 8)
    for l in range(1, 7):
        assert x.shape[1] == k0 + k * (l - 1)
        new = F.conv2d(x, torch.zeros(k, k0 + k * (l - 1), 3, 3), padding=1)
        x = torch.cat([x, new], dim=1)
    assert x.shape[1] == 256


def test_dilation_enters_through_the_effective_kernel():
    # k=3, d=2 spans 5 pixels: 9 -> 5 with no padding; torch agrees.
    out = F.conv1d(torch.zeros(1, 1, 9), torch.zeros(1, 1, 3), dilation=2)
    assert conv_output_size(9, 3, dilation=2) == out.shape[-1] == 5
    assert [r.rf for r in receptive_field([Conv2D(1, 3, dilation=2)] * 2, 32)] == [5, 9]


def test_alexnet_input_227():
    assert conv_output_size(227, 11, stride=4) == 55
    assert conv_output_size(224, 11, stride=4) == 54
