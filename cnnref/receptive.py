"""Receptive fields of a stack of convolution and pooling layers (one spatial axis).

For each layer, with the effective kernel ``k = d(k_raw - 1) + 1`` and the padding ``p``
added before the first input pixel (left/top)::

    n_out = floor((n_in + p_before + p_after - k) / s) + 1
    jump  = jump_in * s                      # distance, in input pixels, between adjacent outputs
    rf    = rf_in + (k - 1) * jump_in        # input pixels one output sees
    start = start_in + ((k - 1) / 2 - p_before) * jump_in

``start`` is the centre of the receptive field of the *first* output unit, in the coordinates
of the network's input, where input pixel centres sit at 0, 1, 2, ... So with padding
``start`` can be negative (the first unit is centred on a padded pixel), and with an even
kernel it is a half-integer. The input itself is ``n_out = input_size, jump = 1, rf = 1,
start = 0``. ``"same"`` padding follows TensorFlow (an odd total puts the extra pixel
after, so ``p_before = total // 2``).

Layers are duck-typed, because the grader passes look-alike objects into the sandbox:

- a convolution has ``kernel_size``, ``stride``, ``padding``, ``dilation``
  (e.g. :class:`cnnref.params.Conv2D`);
- a pooling layer has ``pool_size`` and ``stride`` (``None`` means ``pool_size``), and
  optionally ``padding`` (default ``"valid"``) (e.g. :class:`cnnref.params.MaxPool2D`).

Sizes may be ints or equal pairs (square); for non-square layers compute each axis by passing
look-alikes with that axis's numbers. :func:`receptive_field` is self-contained (numpy-free,
this module only), because the exercise generator copies its source into student solutions.
"""

from __future__ import annotations

from typing import Any, NamedTuple

__all__ = ["ReceptiveField", "receptive_field"]


class ReceptiveField(NamedTuple):
    """Receptive-field arithmetic after one layer (see the module docstring).

    Attributes:
        n_out: output size along the axis.
        jump: input pixels between the centres of adjacent outputs.
        rf: receptive field size, in input pixels.
        start: centre of the first output's receptive field (input pixel centres are 0, 1, ...).
    """

    n_out: int
    jump: int
    rf: int
    start: float


def _one_axis(value: Any, name: str, where: str, *, minimum: int) -> int:
    """An int, or a pair with equal entries, as one int >= ``minimum``."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2 or value[0] != value[1]:
            raise ValueError(
                f"{where}: {name} must be an int or a square pair, got {value!r}; for a "
                "non-square layer compute each axis separately"
            )
        value = value[0]
    if isinstance(value, bool) or not hasattr(value, "__index__") or int(value) < minimum:
        kind = "a positive int" if minimum == 1 else f"an int >= {minimum}"
        raise ValueError(f"{where}: {name} must be {kind}, got {value!r}")
    return int(value)


def receptive_field(layers: list[Any], input_size: int) -> list[ReceptiveField]:
    """Output size, jump, receptive field and start of every layer of a conv/pool stack.

    Example: two 3x3 convolutions (stride 1, no padding) see 5x5 of the input::

        receptive_field([Conv2D(8, 3), Conv2D(8, 3)], 32)
        # [ReceptiveField(n_out=30, jump=1, rf=3, start=1.0),
        #  ReceptiveField(n_out=28, jump=1, rf=5, start=2.0)]

    Args:
        layers: convolution and pooling layers (or look-alikes), input side first.
        input_size: input size along the axis (e.g. 32 for a 32x32 image).

    Returns:
        One :class:`ReceptiveField` per layer, in order.

    Raises:
        ValueError: ``input_size`` is not a positive int, a layer is neither a convolution
            nor a pooling layer, has a bad hyperparameter, or no longer fits its input.
    """
    n = _one_axis(input_size, "input_size", "receptive_field", minimum=1)
    jump, rf, start = 1, 1, 0.0
    records = []
    for index, layer in enumerate(layers):
        where = f"layers[{index}] ({type(layer).__name__})"
        if hasattr(layer, "pool_size"):
            k = _one_axis(layer.pool_size, "pool_size", where, minimum=1)
            stride = getattr(layer, "stride", None)
            s = k if stride is None else _one_axis(stride, "stride", where, minimum=1)
            d = 1
            padding = getattr(layer, "padding", "valid")
        elif hasattr(layer, "kernel_size"):
            k = _one_axis(layer.kernel_size, "kernel_size", where, minimum=1)
            s = _one_axis(getattr(layer, "stride", 1), "stride", where, minimum=1)
            d = _one_axis(getattr(layer, "dilation", 1), "dilation", where, minimum=1)
            padding = getattr(layer, "padding", 0)
        else:
            raise ValueError(
                f"{where} is neither a convolution (kernel_size, stride, padding, dilation) nor a "
                "pooling layer (pool_size, stride); receptive fields stop before Flatten/Dense"
            )
        k_eff = d * (k - 1) + 1
        if isinstance(padding, str):
            mode = padding.lower()
            if mode == "valid":
                before = after = 0
            elif mode == "same":
                total = max((-(-n // s) - 1) * s + k_eff - n, 0)
                before, after = total // 2, total - total // 2
            else:
                raise ValueError(
                    f'{where}: padding must be an int, "same" or "valid", got {padding!r}'
                )
        else:
            before = after = _one_axis(padding, "padding", where, minimum=0)
        if k_eff > n + before + after:
            raise ValueError(
                f"{where}: the kernel spans {k_eff} pixels but its padded input has "
                f"{n + before + after}; the stack is too deep for input_size {input_size}"
            )
        n = (n + before + after - k_eff) // s + 1
        start = start + ((k_eff - 1) / 2 - before) * jump
        rf = rf + (k_eff - 1) * jump
        jump = jump * s
        records.append(ReceptiveField(n_out=n, jump=jump, rf=rf, start=start))
    return records
