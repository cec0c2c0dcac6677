"""Output sizes of convolution and pooling layers (one spatial axis at a time).

The output-size formula uses **floor**::

    n_out = floor((n_in + 2p - d(k - 1) - 1) / s) + 1

The lecture prints a ceil; that agrees with floor only when the division is exact (see
``docs/errata.md``). ``padding="same"`` follows Keras/TensorFlow: ``n_out = ceil(n_in / s)``,
with the total padding split so that an odd extra pixel goes to the bottom/right
(:func:`same_padding`). ``padding="valid"`` means no padding.

Every public function here is self-contained (numpy, builtins and this module's private
helpers only), because the exercise generator copies their source into student solutions.
"""

from __future__ import annotations

__all__ = ["conv_output_size", "effective_kernel_size", "same_padding"]


def _check_int(value: object, name: str, *, minimum: int) -> int:
    """``value`` as an int, or a ValueError naming ``name`` and what was expected."""
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    value = int(value)  # numpy integers too
    if value < minimum:
        kind = "a positive int" if minimum == 1 else f"an int >= {minimum}"
        raise ValueError(f"{name} must be {kind}, got {value}")
    return value


def effective_kernel_size(k: int, dilation: int = 1) -> int:
    """Extent of a dilated kernel: ``d(k - 1) + 1`` input pixels.

    Args:
        k: kernel size along one axis (>= 1).
        dilation: spacing between kernel taps (>= 1; 1 means an ordinary kernel).

    Returns:
        The number of input pixels the kernel spans, e.g. 5 for ``k=3, dilation=2``.

    Raises:
        ValueError: ``k`` or ``dilation`` is not a positive int.
    """
    k = _check_int(k, "kernel_size", minimum=1)
    dilation = _check_int(dilation, "dilation", minimum=1)
    return dilation * (k - 1) + 1


def same_padding(
    n_in: int, kernel_size: int, stride: int = 1, dilation: int = 1
) -> tuple[int, int]:
    """Keras/TensorFlow ``"same"`` padding along one axis, as ``(before, after)``.

    The output has ``ceil(n_in / stride)`` pixels. The total padding is
    ``max((n_out - 1) * s + d(k - 1) + 1 - n_in, 0)``; ``before = total // 2`` and the odd
    pixel, if any, goes ``after`` (bottom/right), as TensorFlow does.

    Args:
        n_in: input size along the axis (>= 1).
        kernel_size: kernel size k (>= 1).
        stride: stride s (>= 1).
        dilation: dilation d (>= 1).

    Returns:
        ``(pad_before, pad_after)``, e.g. ``(1, 2)`` for ``n_in=32, k=5, s=2``.
    """
    n_in = _check_int(n_in, "n_in", minimum=1)
    k = _check_int(kernel_size, "kernel_size", minimum=1)
    s = _check_int(stride, "stride", minimum=1)
    d = _check_int(dilation, "dilation", minimum=1)
    n_out = -(-n_in // s)  # ceil(n_in / s)
    total = max((n_out - 1) * s + d * (k - 1) + 1 - n_in, 0)
    return total // 2, total - total // 2


def conv_output_size(
    n_in: int,
    kernel_size: int,
    stride: int = 1,
    padding: int | str = 0,
    dilation: int = 1,
) -> int:
    """Output size of a convolution or pooling layer along one axis.

    ``n_out = floor((n_in + 2p - d(k - 1) - 1) / s) + 1`` for an int padding ``p``;
    ``"valid"`` is ``p = 0``; ``"same"`` gives ``ceil(n_in / s)`` (Keras/TensorFlow).

    Args:
        n_in: input size along the axis (>= 1).
        kernel_size: kernel size k (>= 1).
        stride: stride s (>= 1).
        padding: zero padding p added on *each* side (>= 0), or ``"same"`` / ``"valid"``.
        dilation: dilation d (>= 1).

    Returns:
        The output size, e.g. 3 for ``n_in=5, kernel_size=3, stride=2, padding=1``.

    Raises:
        ValueError: an argument is out of range, ``padding`` is an unknown string, or the
            (dilated) kernel is larger than the padded input.
    """
    n_in = _check_int(n_in, "n_in", minimum=1)
    k = _check_int(kernel_size, "kernel_size", minimum=1)
    s = _check_int(stride, "stride", minimum=1)
    d = _check_int(dilation, "dilation", minimum=1)
    if isinstance(padding, str):
        mode = padding.lower()
        if mode == "same":
            return -(-n_in // s)
        if mode != "valid":
            raise ValueError(f'padding must be an int >= 0, "same" or "valid", got {padding!r}')
        p = 0
    else:
        p = _check_int(padding, "padding", minimum=0)
    extent = d * (k - 1) + 1
    if extent > n_in + 2 * p:
        raise ValueError(
            f"kernel_size {k} with dilation {d} spans {extent} pixels, more than the padded "
            f"input ({n_in} + 2*{p} = {n_in + 2 * p}); use a smaller kernel or more padding"
        )
    return (n_in + 2 * p - extent) // s + 1
