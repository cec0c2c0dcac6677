"""Reference implementation of average pooling (numpy, NCHW, CS231n's forward/backward style).

Output size (no padding, floor, as ``torch.nn.functional.avg_pool2d``):
``H_out = floor((H - p) / s) + 1`` and ``W_out = floor((W - p) / s) + 1``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class AvgPoolCache(NamedTuple):
    """What :func:`avgpool2d_backward` needs from the forward pass.

    Attributes:
        x_shape: shape (N, C, H, W) of the forward input.
        pool_size: side p of the square p x p windows.
        stride: step s between windows, in pixels.
    """

    x_shape: tuple[int, int, int, int]
    pool_size: int
    stride: int


def avgpool2d_forward(
    x: np.ndarray, *, pool_size: int, stride: int | None = None
) -> tuple[np.ndarray, AvgPoolCache]:
    """Forward pass of average pooling, like ``torch.nn.functional.avg_pool2d`` (no padding).

    Each output element is the mean of one window:
    ``out[n, c, i, j] = mean(x[n, c, i*s : i*s + p, j*s : j*s + p])``.

    Args:
        x: input, shape (N, C, H, W).
        pool_size: side p of the square windows.
        stride: step s between windows; ``None`` means s = p (windows tile the input).

    Returns:
        ``(out, cache)``: ``out`` of shape (N, C, H_out, W_out) with
        ``H_out = (H - p) // s + 1``, ``W_out = (W - p) // s + 1``; ``cache`` for
        :func:`avgpool2d_backward`.
    """
    p = pool_size
    s = p if stride is None else stride
    n, c, h, w = x.shape
    out_h, out_w = (h - p) // s + 1, (w - p) // s + 1
    out = np.zeros((n, c, out_h, out_w), dtype=x.dtype)
    for i in range(out_h):
        for j in range(out_w):
            out[:, :, i, j] = x[:, :, i * s : i * s + p, j * s : j * s + p].mean(axis=(2, 3))
    return out, AvgPoolCache((n, c, h, w), p, s)


def avgpool2d_backward(dout: np.ndarray, cache: AvgPoolCache) -> np.ndarray:
    """Backward pass of :func:`avgpool2d_forward`.

    Each window's upstream gradient is shared equally: every element of window (i, j)
    receives ``dout[n, c, i, j] / p**2``. Where windows overlap (s < p) the shares of all the
    windows covering an element add up; an element no window covers gets 0.

    Args:
        dout: upstream gradient, shape (N, C, H_out, W_out).
        cache: what :func:`avgpool2d_forward` returned with ``out``.

    Returns:
        dx: gradient with respect to x, shape (N, C, H, W).
    """
    p, s = cache.pool_size, cache.stride
    dx = np.zeros(cache.x_shape, dtype=dout.dtype)
    for i in range(dout.shape[2]):
        for j in range(dout.shape[3]):
            dx[:, :, i * s : i * s + p, j * s : j * s + p] += dout[:, :, i, j, None, None] / p**2
    return dx
