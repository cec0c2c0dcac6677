"""Parameter and multiply-accumulate (MAC) counts, and a Keras-style model summary.

Counts follow the lecture's rule "n_filters x filter_volume + biases". A MAC is one
multiply-add; a convolution with ``F`` filters of size ``k_h x k_w`` over ``C`` channels that
produces an ``out_h x out_w`` map costs ``k_h k_w (C / groups) F out_h out_w`` MACs (bias
additions are not counted, as in the lecture's MobileNet slide).

The counting functions are self-contained (the exercise generator copies their source).
:func:`summary` computes output shapes with :mod:`cnnref.shapes`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

__all__ = [
    "Conv2D",
    "Dense",
    "Flatten",
    "MaxPool2D",
    "Summary",
    "SummaryRow",
    "conv2d_macs",
    "conv2d_params",
    "dense_params",
    "depthwise_separable_macs",
    "depthwise_separable_params",
    "summary",
]


def _check_int(value: object, name: str, *, minimum: int = 1) -> int:
    """``value`` as an int, or a ValueError naming ``name`` and what was expected."""
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    value = int(value)
    if value < minimum:
        kind = "a positive int" if minimum == 1 else f"an int >= {minimum}"
        raise ValueError(f"{name} must be {kind}, got {value}")
    return value


def _kernel_area(kernel_size: int | tuple[int, int]) -> int:
    """``k_h * k_w`` of an int or ``(k_h, k_w)`` kernel size."""
    if isinstance(kernel_size, (tuple, list)):
        if len(kernel_size) != 2:
            raise ValueError(
                f"kernel_size must be an int or a pair (k_h, k_w), got {kernel_size!r}"
            )
        return _check_int(kernel_size[0], "kernel_size") * _check_int(kernel_size[1], "kernel_size")
    k = _check_int(kernel_size, "kernel_size")
    return k * k


def _check_groups(in_channels: int, out_channels: int, groups: int) -> tuple[int, int, int]:
    """``(in_channels, out_channels, groups)`` checked: positive ints, groups dividing both."""
    c = _check_int(in_channels, "in_channels")
    f = _check_int(out_channels, "out_channels")
    g = _check_int(groups, "groups")
    if c % g or f % g:
        raise ValueError(
            f"groups must divide in_channels and out_channels, got groups={g} with "
            f"in_channels={c}, out_channels={f}"
        )
    return c, f, g


def conv2d_params(
    in_channels: int,
    out_channels: int,
    kernel_size: int | tuple[int, int],
    bias: bool = True,
    groups: int = 1,
) -> int:
    """Number of parameters of a 2-D convolution.

    ``out_channels * (in_channels / groups) * k_h * k_w`` weights, plus ``out_channels``
    biases when ``bias``. E.g. 16 filters of 3x3 on RGB: ``16*3*3*3 + 16 = 448``.

    Args:
        in_channels: input channels C (>= 1).
        out_channels: filters F (>= 1).
        kernel_size: k or ``(k_h, k_w)``.
        bias: whether each filter has a bias.
        groups: channel groups (1 ordinary, ``in_channels`` depthwise); must divide both
            channel counts.

    Returns:
        The parameter count.

    Raises:
        ValueError: a count is not a positive int, or ``groups`` does not divide the channels.
    """
    c, f, g = _check_groups(in_channels, out_channels, groups)
    return f * (c // g) * _kernel_area(kernel_size) + (f if bias else 0)


def dense_params(in_features: int, out_features: int, bias: bool = True) -> int:
    """Number of parameters of a fully connected layer: ``D_in * D_out (+ D_out)``.

    Args:
        in_features: inputs D_in (>= 1).
        out_features: units D_out (>= 1).
        bias: whether each unit has a bias.

    Returns:
        The parameter count, e.g. ``4096*512 + 512 = 2,097,664``.
    """
    d_in = _check_int(in_features, "in_features")
    d_out = _check_int(out_features, "out_features")
    return d_in * d_out + (d_out if bias else 0)


def depthwise_separable_params(
    in_channels: int,
    out_channels: int,
    kernel_size: int | tuple[int, int],
    bias: bool = True,
) -> int:
    """Parameters of a depthwise-separable convolution (MobileNet).

    A depthwise convolution (one ``k_h x k_w`` filter per input channel, ``C`` biases)
    followed by a pointwise 1x1 convolution (``C * F`` weights, ``F`` biases):
    ``(k_h k_w C + C) + (C F + F)``. The lecture's example (5x5, C=3, F=256) has 1,102.

    Args:
        in_channels: input channels C.
        out_channels: output channels F of the pointwise convolution.
        kernel_size: k or ``(k_h, k_w)`` of the depthwise convolution.
        bias: whether both convolutions have biases.

    Returns:
        The parameter count.
    """
    c = _check_int(in_channels, "in_channels")
    f = _check_int(out_channels, "out_channels")
    depthwise = c * _kernel_area(kernel_size) + (c if bias else 0)
    pointwise = c * f + (f if bias else 0)
    return depthwise + pointwise


def conv2d_macs(
    in_channels: int,
    out_channels: int,
    kernel_size: int | tuple[int, int],
    out_h: int,
    out_w: int,
    groups: int = 1,
) -> int:
    """Multiply-accumulates of a 2-D convolution producing an ``out_h x out_w`` map.

    ``k_h k_w (C / groups) F out_h out_w``; e.g. 5x5 on 3 channels, 256 filters, 12x12
    output: 2,764,800.

    Args:
        in_channels: input channels C.
        out_channels: filters F.
        kernel_size: k or ``(k_h, k_w)``.
        out_h: output height (>= 1).
        out_w: output width (>= 1).
        groups: channel groups; must divide both channel counts.

    Returns:
        The MAC count (biases not counted).
    """
    c, f, g = _check_groups(in_channels, out_channels, groups)
    area = _check_int(out_h, "out_h") * _check_int(out_w, "out_w")
    return _kernel_area(kernel_size) * (c // g) * f * area


def depthwise_separable_macs(
    in_channels: int,
    out_channels: int,
    kernel_size: int | tuple[int, int],
    out_h: int,
    out_w: int,
) -> int:
    """Multiply-accumulates of a depthwise-separable convolution.

    Depthwise ``k_h k_w C out_h out_w`` plus pointwise ``C F out_h out_w`` (both on the same
    ``out_h x out_w`` map: the 1x1 pointwise convolution does not change the size).

    Args:
        in_channels: input channels C.
        out_channels: output channels F.
        kernel_size: k or ``(k_h, k_w)`` of the depthwise convolution.
        out_h: output height.
        out_w: output width.

    Returns:
        The MAC count, e.g. 121,392 for 5x5, C=3, F=256 on a 12x12 output.
    """
    c = _check_int(in_channels, "in_channels")
    f = _check_int(out_channels, "out_channels")
    area = _check_int(out_h, "out_h") * _check_int(out_w, "out_w")
    return _kernel_area(kernel_size) * c * area + c * f * area


# --------------------------------------------------------------------------- layer descriptions


def _pair(value: int | tuple[int, int], name: str, *, minimum: int = 1) -> tuple[int, int]:
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
        return (
            _check_int(value[0], name, minimum=minimum),
            _check_int(value[1], name, minimum=minimum),
        )
    v = _check_int(value, name, minimum=minimum)
    return (v, v)


def _padding_arg(padding: int | str | tuple[int, int]) -> int | str | tuple[int, int]:
    if isinstance(padding, str):
        if padding.lower() not in ("same", "valid"):
            raise ValueError(f'padding must be "same", "valid" or an int >= 0, got {padding!r}')
        return padding.lower()
    return _pair(padding, "padding", minimum=0)


@dataclass(frozen=True)
class Conv2D:
    """A 2-D convolution as Keras describes it (``Conv2D(filters, kernel_size, ...)``).

    Attributes:
        filters: number of filters F (output channels).
        kernel_size: k or ``(k_h, k_w)``.
        stride: s or ``(s_h, s_w)``.
        padding: ``"valid"`` (default, as in Keras), ``"same"``, or zero padding p per side.
        dilation: d or ``(d_h, d_w)``.
        use_bias: whether each filter has a bias.
        name: layer name in the summary; default ``conv2d``, ``conv2d_1``, ...
    """

    filters: int
    kernel_size: int | tuple[int, int]
    stride: int | tuple[int, int] = 1
    padding: int | str | tuple[int, int] = "valid"
    dilation: int | tuple[int, int] = 1
    use_bias: bool = True
    name: str | None = None

    def __post_init__(self) -> None:
        _check_int(self.filters, "filters")
        _pair(self.kernel_size, "kernel_size")
        _pair(self.stride, "stride")
        _pair(self.dilation, "dilation")
        object.__setattr__(self, "padding", _padding_arg(self.padding))


@dataclass(frozen=True)
class MaxPool2D:
    """A 2-D max-pooling layer (Keras ``MaxPooling2D``).

    Attributes:
        pool_size: p or ``(p_h, p_w)``.
        stride: s or ``(s_h, s_w)``; ``None`` means ``pool_size``.
        padding: ``"valid"`` (default) or ``"same"``.
        name: layer name in the summary; default ``max_pooling2d``, ...
    """

    pool_size: int | tuple[int, int] = 2
    stride: int | tuple[int, int] | None = None
    padding: str = "valid"
    name: str | None = None

    def __post_init__(self) -> None:
        _pair(self.pool_size, "pool_size")
        if self.stride is not None:
            _pair(self.stride, "stride")
        if not isinstance(self.padding, str) or self.padding.lower() not in ("same", "valid"):
            raise ValueError(
                f'padding of MaxPool2D must be "same" or "valid", got {self.padding!r}'
            )
        object.__setattr__(self, "padding", self.padding.lower())


@dataclass(frozen=True)
class Flatten:
    """Flattens ``(H, W, C)`` to ``(H*W*C,)``; no parameters."""

    name: str | None = None


@dataclass(frozen=True)
class Dense:
    """A fully connected layer (Keras ``Dense(units)``), applied to the last axis.

    Attributes:
        units: output features.
        use_bias: whether each unit has a bias.
        name: layer name in the summary; default ``dense``, ``dense_1``, ...
    """

    units: int
    use_bias: bool = True
    name: str | None = None

    def __post_init__(self) -> None:
        _check_int(self.units, "units")


Layer = Conv2D | MaxPool2D | Flatten | Dense

_DEFAULT_NAMES = {Conv2D: "conv2d", MaxPool2D: "max_pooling2d", Flatten: "flatten", Dense: "dense"}


class SummaryRow(NamedTuple):
    """One line of a :class:`Summary`.

    Attributes:
        name: layer name, e.g. ``"conv2d_1"``.
        output_shape: Keras-style shape without the batch axis: ``(H, W, C)`` or ``(D,)``.
        params: number of parameters of the layer.
    """

    name: str
    output_shape: tuple[int, ...]
    params: int


@dataclass(frozen=True)
class Summary:
    """The result of :func:`summary`; ``str()`` gives a table like Keras' ``model.summary()``.

    Attributes:
        input_shape: ``(H, W, C)``.
        rows: one :class:`SummaryRow` per layer.
        total_params: sum of the rows' params.
        kinds: the layers' class names (``"Conv2D"``, ...), in the order of ``rows``.
    """

    input_shape: tuple[int, int, int]
    rows: tuple[SummaryRow, ...]
    total_params: int
    kinds: tuple[str, ...] = field(default=())

    def __str__(self) -> str:
        kinds = self.kinds or ("",) * len(self.rows)
        cells = [
            (
                f"{row.name} ({kind})" if kind else row.name,
                "(None, " + ", ".join(str(d) for d in row.output_shape) + ")",
                f"{row.params:,}",
            )
            for row, kind in zip(self.rows, kinds, strict=True)
        ]
        head = ("Layer (type)", "Output Shape", "Param #")
        widths = [max(len(head[i]), *(len(c[i]) for c in cells)) + 2 for i in range(3)]
        width = sum(widths)
        lines = [
            f"Input shape: (None, {', '.join(str(d) for d in self.input_shape)})",
            "=" * width,
            "".join(h.ljust(w) for h, w in zip(head, widths, strict=True)).rstrip(),
            "=" * width,
        ]
        for i, c in enumerate(cells):
            lines.append("".join(v.ljust(w) for v, w in zip(c, widths, strict=True)).rstrip())
            lines.append(("-" if i < len(cells) - 1 else "=") * width)
        if not cells:
            lines.append("=" * width)
        lines.append(f"Total params: {self.total_params:,}")
        return "\n".join(lines)


def summary(input_shape: tuple[int, int, int], layers: list[Layer]) -> Summary:
    """Per-layer output shapes and parameter counts of a sequential Keras-style model.

    Example (the lecture's network)::

        summary((32, 32, 3), [Conv2D(8, 3, padding="same"),
                              Conv2D(16, 5, stride=2, padding="same"),
                              Flatten(), Dense(512), Dense(4)]).total_params  # 2,103,156

    Args:
        input_shape: ``(H, W, C)`` of one input (Keras' HWC wording, no batch axis).
        layers: :class:`Conv2D`, :class:`MaxPool2D`, :class:`Flatten`, :class:`Dense`.

    Returns:
        A :class:`Summary` with ``.rows`` and ``.total_params``.

    Raises:
        ValueError: a bad input shape, an unknown layer, a layer that does not fit the shape
            it receives (a kernel larger than its input, a Conv2D after Flatten).
    """
    from cnnref.shapes import conv_output_size

    if not isinstance(input_shape, (tuple, list)) or len(input_shape) != 3:
        raise ValueError(f"input_shape must be (H, W, C), got {input_shape!r}")
    shape: tuple[int, ...] = tuple(_check_int(d, "input_shape") for d in input_shape)
    counters: dict[str, int] = {}
    rows: list[SummaryRow] = []
    kinds: list[str] = []
    for index, layer in enumerate(layers):
        kind = type(layer)
        if kind not in _DEFAULT_NAMES:
            raise ValueError(
                f"layers[{index}] must be Conv2D, MaxPool2D, Flatten or Dense, got {kind.__name__}"
            )
        base = _DEFAULT_NAMES[kind]
        name = layer.name
        if not name:  # Keras numbers only the layers it names itself
            seen = counters.get(base, 0)
            counters[base] = seen + 1
            name = base if seen == 0 else f"{base}_{seen}"
        where = f"layers[{index}] ({name})"
        if isinstance(layer, (Conv2D, MaxPool2D)):
            if len(shape) != 3:
                raise ValueError(
                    f"{where} needs an (H, W, C) input, got {shape}; put it before Flatten"
                )
            h, w, c = shape
            if isinstance(layer, Conv2D):
                kernel, stride, dilation = (
                    _pair(layer.kernel_size, "kernel_size"),
                    _pair(layer.stride, "stride"),
                    _pair(layer.dilation, "dilation"),
                )
                padding = layer.padding
                out_c = layer.filters
                n_params = conv2d_params(c, out_c, kernel, bias=layer.use_bias)
            else:
                kernel = _pair(layer.pool_size, "pool_size")
                stride = _pair(
                    layer.stride if layer.stride is not None else layer.pool_size, "stride"
                )
                dilation, padding, out_c, n_params = (1, 1), layer.padding, c, 0
            pads = padding if isinstance(padding, str) else None
            try:
                out_h = conv_output_size(h, kernel[0], stride[0], pads or padding[0], dilation[0])
                out_w = conv_output_size(w, kernel[1], stride[1], pads or padding[1], dilation[1])
            except ValueError as err:
                raise ValueError(f"{where} does not fit its input {shape}: {err}") from None
            shape = (out_h, out_w, out_c)
        elif isinstance(layer, Flatten):
            n = 1
            for d in shape:
                n *= d
            shape, n_params = (n,), 0
        else:
            n_params = dense_params(shape[-1], layer.units, bias=layer.use_bias)
            shape = (*shape[:-1], layer.units)
        rows.append(SummaryRow(name, shape, n_params))
        kinds.append(kind.__name__)
    return Summary(
        input_shape=tuple(input_shape),
        rows=tuple(rows),
        total_params=sum(r.params for r in rows),
        kinds=tuple(kinds),
    )
