"""Exercises 2.x: counting parameters and multiply-accumulates (lecture: "Review", MobileNet)."""

from __future__ import annotations

import numpy as np

from cnnref import params
from grader.exercises._common import case, int_out, kernel_area
from grader.registry import Case, ExerciseSpec, Mistake, Outputs, register

# ----------------------------------------------------------------------------- conv2d_params


def _conv2d_params_cases(rng: np.random.Generator) -> list[Case]:
    f = int(rng.choice([8, 16, 32, 64]))
    kh, kw = int(rng.choice([1, 3])), int(rng.choice([5, 7]))
    c2 = int(rng.choice([16, 32, 64]))
    c3 = int(rng.choice([4, 6, 8]))
    g3 = int(rng.choice([2, c3 // 2]))
    c4, f4 = int(rng.integers(64, 257)), int(rng.integers(64, 513))
    return [
        case(
            f"{f} 3x3 filters on an RGB image (the lecture's first example)",
            in_channels=3,
            out_channels=f,
            kernel_size=3,
            bias=True,
            groups=1,
        ),
        case(
            f"{kh}x{kw} kernel (non-square), no bias",
            in_channels=c2,
            out_channels=2 * c2,
            kernel_size=(kh, kw),
            bias=False,
            groups=1,
        ),
        case(
            f"depthwise: groups = in_channels = {c2}",
            in_channels=c2,
            out_channels=c2 * 2,
            kernel_size=3,
            bias=True,
            groups=c2,
        ),
        case(
            f"{g3} groups over {c3} channels, 5x5",
            in_channels=c3,
            out_channels=c3 * 3,
            kernel_size=5,
            bias=True,
            groups=g3,
        ),
        case(
            f"a wide layer: {c4} -> {f4} channels, 3x3",
            in_channels=c4,
            out_channels=f4,
            kernel_size=3,
            bias=True,
            groups=1,
        ),
    ]


def _conv2d_params_variant(
    c: Case, *, weights_per_filter=None, bias: bool | None = None, use_groups: bool = True
) -> Outputs:
    f, area = c["out_channels"], kernel_area(c["kernel_size"])
    groups = c.get("groups", 1) if use_groups else 1
    per_filter = (
        weights_per_filter(c, area) if weights_per_filter else area * c["in_channels"] // groups
    )
    with_bias = c.get("bias", True) if bias is None else bias
    return int_out(f * per_filter + (f if with_bias else 0))


register(
    ExerciseSpec(
        name="conv2d_params",
        number="2.1",
        topic="params",
        title="Parameters of a convolution layer (filters x filter volume + biases)",
        points=1,
        function="conv2d_params",
        harness="call",
        make_cases=_conv2d_params_cases,
        reference=lambda c: int_out(params.conv2d_params(**c)),
        reference_function=params.conv2d_params,
        mistakes=(
            Mistake(
                "bias_forgotten",
                "bias forgotten: every filter has one bias, add out_channels when bias=True",
                lambda c: _conv2d_params_variant(c, bias=False),
            ),
            Mistake(
                "input_channels_forgotten",
                "input channels forgotten: a filter spans every input channel (of its group), "
                "so its volume is k_h x k_w x in_channels/groups",
                lambda c: _conv2d_params_variant(c, weights_per_filter=lambda _c, area: area),
            ),
            Mistake(
                "groups_ignored",
                "groups ignored: with groups=g each filter sees only in_channels/g channels",
                lambda c: _conv2d_params_variant(c, use_groups=False),
            ),
        ),
    )
)

# ----------------------------------------------------------------------------- dense_params


def _dense_params_cases(rng: np.random.Generator) -> list[Case]:
    d_in, d_out = int(rng.integers(10, 2000)), int(rng.integers(2, 300))
    return [
        case(
            "a 16x16x16 map flattened into 512 units (the lecture's Dense1)",
            in_features=16 * 16 * 16,
            out_features=512,
            bias=True,
        ),
        case("512 units into 4 (the lecture's Dense2)", in_features=512, out_features=4, bias=True),
        case(f"{d_in} -> {d_out}, no bias", in_features=d_in, out_features=d_out, bias=False),
        case(f"{d_out} -> {d_in}, the default bias", in_features=d_out, out_features=d_in),
    ]


def _dense_variant(c: Case, *, extra) -> Outputs:
    return int_out(c["in_features"] * c["out_features"] + extra(c))


register(
    ExerciseSpec(
        name="dense_params",
        number="2.2",
        topic="params",
        title="Parameters of a fully connected layer",
        points=1,
        function="dense_params",
        harness="call",
        make_cases=_dense_params_cases,
        reference=lambda c: int_out(params.dense_params(**c)),
        reference_function=params.dense_params,
        mistakes=(
            Mistake(
                "bias_forgotten",
                "bias forgotten: every unit has one bias, add out_features when bias=True",
                lambda c: _dense_variant(c, extra=lambda _c: 0),
            ),
            Mistake(
                "bias_per_input",
                "one bias per input instead of one per unit: add out_features, not in_features",
                lambda c: _dense_variant(
                    c, extra=lambda c: c["in_features"] if c.get("bias", True) else 0
                ),
            ),
        ),
    )
)

# ------------------------------------------------------------------- depthwise separable


def _separable_params_cases(rng: np.random.Generator) -> list[Case]:
    c2, f2 = int(rng.integers(8, 129)), int(rng.integers(8, 257))
    c3, f3 = int(rng.integers(3, 65)), int(rng.integers(8, 129))
    kh, kw = int(rng.choice([3, 5])), int(rng.choice([1, 7]))
    return [
        case(
            "5x5, 3 -> 256 channels (the lecture's MobileNet example)",
            in_channels=3,
            out_channels=256,
            kernel_size=5,
            bias=True,
        ),
        case(
            f"3x3, {c2} -> {f2} channels", in_channels=c2, out_channels=f2, kernel_size=3, bias=True
        ),
        case(
            f"{kh}x{kw} kernel (non-square), {c3} -> {f3} channels, no bias",
            in_channels=c3,
            out_channels=f3,
            kernel_size=(kh, kw),
            bias=False,
        ),
        case(
            f"3x3, {f3} -> {c3} channels, the default bias",
            in_channels=f3,
            out_channels=c3,
            kernel_size=3,
        ),
    ]


def _separable_params_variant(
    c: Case, *, depthwise_bias: bool = True, pointwise: bool = True, ordinary: bool = False
) -> Outputs:
    ch, f, area, bias = (
        c["in_channels"],
        c["out_channels"],
        kernel_area(c["kernel_size"]),
        c.get("bias", True),
    )
    if ordinary:
        return int_out(f * ch * area + (f if bias else 0))
    total = ch * area + (ch if bias and depthwise_bias else 0)
    if pointwise:
        total += ch * f + (f if bias else 0)
    return int_out(total)


register(
    ExerciseSpec(
        name="depthwise_separable_params",
        number="2.3",
        topic="params",
        title="Parameters of a depthwise-separable convolution (MobileNet)",
        points=1,
        function="depthwise_separable_params",
        harness="call",
        make_cases=_separable_params_cases,
        reference=lambda c: int_out(params.depthwise_separable_params(**c)),
        reference_function=params.depthwise_separable_params,
        mistakes=(
            Mistake(
                "counted_as_ordinary_conv",
                "counted as an ordinary convolution: a depthwise-separable layer is a depthwise "
                "k x k convolution (one filter per input channel) followed by a 1x1 pointwise one",
                lambda c: _separable_params_variant(c, ordinary=True),
            ),
            Mistake(
                "pointwise_forgotten",
                "the pointwise 1x1 convolution forgotten: add in_channels x out_channels weights "
                "(and out_channels biases)",
                lambda c: _separable_params_variant(c, pointwise=False),
            ),
            Mistake(
                "depthwise_bias_forgotten",
                "the depthwise convolution's biases forgotten: with bias=True both convolutions "
                "have biases (in_channels for the depthwise, out_channels for the pointwise)",
                lambda c: _separable_params_variant(c, depthwise_bias=False),
            ),
        ),
    )
)


def _separable_macs_cases(rng: np.random.Generator) -> list[Case]:
    c2, f2 = int(rng.integers(8, 129)), int(rng.integers(8, 257))
    h, w = int(rng.integers(4, 33)), int(rng.integers(4, 33))
    while w == h:
        w = int(rng.integers(4, 33))
    kh, kw = int(rng.choice([3, 5])), int(rng.choice([1, 7]))
    return [
        case(
            "5x5, 3 -> 256 channels on a 12x12 output (the lecture's MobileNet example)",
            in_channels=3,
            out_channels=256,
            kernel_size=5,
            out_h=12,
            out_w=12,
        ),
        case(
            f"3x3, {c2} -> {f2} channels on a {h}x{w} output (non-square)",
            in_channels=c2,
            out_channels=f2,
            kernel_size=3,
            out_h=h,
            out_w=w,
        ),
        case(
            f"{kh}x{kw} kernel (non-square), {f2} -> {c2} channels, {w}x{w} output",
            in_channels=f2,
            out_channels=c2,
            kernel_size=(kh, kw),
            out_h=w,
            out_w=w,
        ),
        case(
            "1x1 output, 3x3, 32 -> 64 channels",
            in_channels=32,
            out_channels=64,
            kernel_size=3,
            out_h=1,
            out_w=1,
        ),
    ]


def _separable_macs_variant(
    c: Case, *, ordinary: bool = False, pointwise: bool = True, per_pixel: bool = True
) -> Outputs:
    ch, f, area = c["in_channels"], c["out_channels"], kernel_area(c["kernel_size"])
    pixels = c["out_h"] * c["out_w"] if per_pixel else 1
    if ordinary:
        return int_out(area * ch * f * pixels)
    return int_out((area * ch + (ch * f if pointwise else 0)) * pixels)


register(
    ExerciseSpec(
        name="depthwise_separable_macs",
        number="2.4",
        topic="params",
        title="Multiply-accumulates of a depthwise-separable convolution",
        points=1,
        function="depthwise_separable_macs",
        harness="call",
        make_cases=_separable_macs_cases,
        reference=lambda c: int_out(params.depthwise_separable_macs(**c)),
        reference_function=params.depthwise_separable_macs,
        mistakes=(
            Mistake(
                "counted_as_ordinary_conv",
                "counted as an ordinary convolution (k x k x C x F per output pixel): the "
                "depthwise part costs k x k x C and the pointwise part C x F per output pixel",
                lambda c: _separable_macs_variant(c, ordinary=True),
            ),
            Mistake(
                "pointwise_forgotten",
                "the pointwise 1x1 convolution forgotten: it costs C x F MACs per output pixel",
                lambda c: _separable_macs_variant(c, pointwise=False),
            ),
            Mistake(
                "output_size_forgotten",
                "not multiplied by the output size: every output pixel costs the same MACs, "
                "so multiply by out_h x out_w",
                lambda c: _separable_macs_variant(c, per_pixel=False),
            ),
        ),
    )
)
